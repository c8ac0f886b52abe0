//! When a destination is disabled, and the words that say why.
//!
//! A destination is disabled at once when its endpoint answers 410 Gone, or when its attempts
//! keep failing: after [`AutoDisable::after_failures`] consecutive failed attempts, or after
//! [`AutoDisable::after_ms`] of nothing but failures, whichever comes first. The store keeps
//! the failure streak and records the decision (`store::queries::deliveries`, with each
//! finish); the decision itself is made here.
//!
//! A streak ends with a success, and also when a disabled destination is enabled again: the
//! failures that disabled it are not held against it a second time, or its first failure
//! after being fixed would disable it at once (`store::queries::destinations` resets it).

use super::time::Millis;

/// The reason a 410 Gone disables a destination with.
pub const GONE: &str = "the endpoint answered 410 Gone";

/// The `last_error` of a delivery that was skipped because its destination is disabled (at
/// publish, or between the claim and the send).
pub const DESTINATION_DISABLED: &str = "destination disabled";

/// The `last_error` of a delivery cancelled because its destination was deleted.
pub const DESTINATION_DELETED: &str = "destination deleted";

/// The `last_error` of a delivery whose send was interrupted by a shutdown and given back.
pub const INTERRUPTED: &str = "interrupted by shutdown";

/// The failure-streak limits (0 = that limit is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AutoDisable {
    pub after_failures: u32,
    pub after_ms: Millis,
}

/// A destination's current run of failed attempts, as the store keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    /// Failed attempts since the last success (this one included).
    pub consecutive_failures: u32,
    /// When the first of them happened.
    pub failing_since: Option<Millis>,
}

impl AutoDisable {
    /// The reason to disable a destination whose streak, after a failed attempt at `now`, is
    /// `streak`; `None` while it stays enabled. The count is checked first, so a destination
    /// crossing both limits at once reads as failing that many times.
    pub fn reason(&self, streak: Streak, now: Millis) -> Option<String> {
        let n = streak.consecutive_failures;
        if self.after_failures > 0 && n >= self.after_failures {
            Some(format!("{n} consecutive failed attempts"))
        } else if self.after_ms > 0
            && streak
                .failing_since
                .is_some_and(|t| now - t >= self.after_ms)
        {
            Some(format!(
                "only failures for {} hours",
                self.after_ms / 3_600_000
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3_600_000;

    fn streak(n: u32, since: Option<Millis>) -> Streak {
        Streak {
            consecutive_failures: n,
            failing_since: since,
        }
    }

    #[test]
    fn a_streak_reaching_the_failure_limit_disables_with_its_count() {
        let limits = AutoDisable {
            after_failures: 5,
            after_ms: 0,
        };
        assert_eq!(limits.reason(streak(4, Some(0)), HOUR), None);
        assert_eq!(
            limits.reason(streak(5, Some(0)), HOUR).as_deref(),
            Some("5 consecutive failed attempts")
        );
    }

    #[test]
    fn failing_for_the_time_limit_disables_with_its_hours() {
        let limits = AutoDisable {
            after_failures: 0,
            after_ms: 72 * HOUR,
        };
        assert_eq!(limits.reason(streak(1, Some(0)), 72 * HOUR - 1), None);
        assert_eq!(
            limits.reason(streak(1, Some(0)), 72 * HOUR).as_deref(),
            Some("only failures for 72 hours")
        );
    }

    #[test]
    fn the_count_wins_when_both_limits_are_crossed() {
        let limits = AutoDisable {
            after_failures: 3,
            after_ms: HOUR,
        };
        assert_eq!(
            limits.reason(streak(3, Some(0)), 2 * HOUR).as_deref(),
            Some("3 consecutive failed attempts")
        );
    }

    #[test]
    fn limits_of_zero_never_disable() {
        let off = AutoDisable::default();
        assert_eq!(off.reason(streak(1_000_000, Some(0)), 1_000 * HOUR), None);
    }

    #[test]
    fn a_streak_without_a_start_is_not_timed() {
        let limits = AutoDisable {
            after_failures: 0,
            after_ms: HOUR,
        };
        assert_eq!(limits.reason(streak(2, None), 10 * HOUR), None);
    }
}
