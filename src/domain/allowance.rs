//! How many deliveries a claim may take of a destination with limits: `max_in_flight`,
//! `rate_limit` (attempts per second) and FIFO ordering (one at a time, oldest first).
//!
//! The store reads the destination's limits and load under a lock that serializes every claim
//! of a limited destination, asks [`allowance`], claims that many and records the rate window
//! (`store`'s `claim_limited`).

use super::model::{DestinationOptions, Ordering};
use super::state::DeliveryStatus;
use super::time::Millis;

/// A destination's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_in_flight: Option<u32>,
    pub rate_limit: Option<u32>,
    pub fifo: bool,
}

impl Limits {
    pub fn of(options: &DestinationOptions) -> Self {
        Limits {
            max_in_flight: options.max_in_flight,
            rate_limit: options.rate_limit,
            fifo: options.ordering == Some(Ordering::Fifo),
        }
    }

    /// Whether a claim must go through [`allowance`] at all.
    pub fn any(&self) -> bool {
        self.max_in_flight.is_some() || self.rate_limit.is_some() || self.fifo
    }
}

/// What a destination is doing now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Deliveries `delivering` (claimed, not finished).
    pub in_flight: u64,
    /// Attempts already claimed in the current rate window (see [`used_in_window`]).
    pub sent_this_second: u64,
}

/// The rate window `now` falls in: rate limits count claims per wall-clock second.
pub fn rate_window(now: Millis) -> i64 {
    now.div_euclid(1000)
}

/// The claims counted in the current window, from the stored window and its count: a count
/// from an earlier second no longer counts.
pub fn used_in_window(stored_window: Option<i64>, stored_count: u64, now: Millis) -> u64 {
    if stored_window == Some(rate_window(now)) {
        stored_count
    } else {
        0
    }
}

/// How many of the destination's due deliveries a claim with `budget` left may take: the
/// least of the budget, the free in-flight slots, the rest of this second's rate and, for
/// FIFO, one if nothing is in flight.
pub fn allowance(budget: u32, limits: Limits, load: Load) -> u64 {
    let mut allowance = i64::from(budget);
    let in_flight = load.in_flight as i64;
    if let Some(m) = limits.max_in_flight {
        allowance = allowance.min(i64::from(m) - in_flight);
    }
    if let Some(r) = limits.rate_limit {
        allowance = allowance.min(i64::from(r) - load.sent_this_second as i64);
    }
    if limits.fifo {
        allowance = allowance.min(1 - in_flight);
    }
    allowance.max(0) as u64
}

/// FIFO: only the oldest unfinished delivery may go, and only once it is due; everything
/// behind it waits, retries included. `head` is that delivery's status and due time.
pub fn fifo_head_may_go(status: DeliveryStatus, due: Option<Millis>, now: Millis) -> bool {
    status.is_pending() && due.is_some_and(|due| due <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_in_flight: Option<u32>, rate_limit: Option<u32>, fifo: bool) -> Limits {
        Limits {
            max_in_flight,
            rate_limit,
            fifo,
        }
    }

    fn load(in_flight: u64, sent_this_second: u64) -> Load {
        Load {
            in_flight,
            sent_this_second,
        }
    }

    #[test]
    fn no_limits_allow_the_whole_budget() {
        assert_eq!(allowance(64, Limits::default(), load(1000, 1000)), 64);
    }

    #[test]
    fn max_in_flight_allows_only_the_free_slots() {
        assert_eq!(allowance(64, limits(Some(10), None, false), load(7, 0)), 3);
        assert_eq!(allowance(2, limits(Some(10), None, false), load(7, 0)), 2);
    }

    #[test]
    fn a_destination_at_its_limit_gets_nothing() {
        assert_eq!(allowance(64, limits(Some(10), None, false), load(10, 0)), 0);
        assert_eq!(allowance(64, limits(Some(10), None, false), load(12, 0)), 0);
        assert_eq!(allowance(64, limits(None, Some(5), false), load(0, 5)), 0);
    }

    #[test]
    fn the_rate_limit_allows_the_rest_of_the_second() {
        assert_eq!(allowance(64, limits(None, Some(5), false), load(0, 2)), 3);
    }

    #[test]
    fn fifo_allows_one_and_only_when_nothing_is_in_flight() {
        assert_eq!(allowance(64, limits(None, None, true), load(0, 0)), 1);
        assert_eq!(allowance(64, limits(None, None, true), load(1, 0)), 0);
    }

    #[test]
    fn the_tightest_limit_wins() {
        assert_eq!(
            allowance(64, limits(Some(10), Some(4), false), load(2, 1)),
            3
        );
        assert_eq!(
            allowance(64, limits(Some(10), Some(4), true), load(0, 1)),
            1
        );
    }

    #[test]
    fn a_count_from_an_earlier_second_no_longer_counts() {
        assert_eq!(used_in_window(Some(rate_window(5_999)), 7, 5_999), 7);
        assert_eq!(used_in_window(Some(rate_window(5_999)), 7, 6_000), 0);
        assert_eq!(used_in_window(None, 7, 6_000), 0);
    }

    #[test]
    fn the_fifo_head_goes_only_when_pending_and_due() {
        use DeliveryStatus::*;
        assert!(fifo_head_may_go(Scheduled, Some(10), 10));
        assert!(fifo_head_may_go(Retrying, Some(9), 10));
        assert!(!fifo_head_may_go(Retrying, Some(11), 10));
        assert!(!fifo_head_may_go(Delivering, Some(0), 10));
        assert!(!fifo_head_may_go(Scheduled, None, 10));
    }

    #[test]
    fn limits_are_read_from_the_options() {
        let o = DestinationOptions {
            max_in_flight: Some(3),
            ordering: Some(Ordering::Fifo),
            ..Default::default()
        };
        assert_eq!(Limits::of(&o), limits(Some(3), None, true));
        assert!(Limits::of(&o).any());
        assert!(!Limits::of(&DestinationOptions::default()).any());
    }
}
