//! A destination's health as the portal shows it: how many of the last day's deliveries
//! succeeded, and how the latest one went.

use super::state::DeliveryStatus;
use super::time::Millis;

/// The window the success rate covers.
pub const HEALTH_WINDOW_MS: Millis = 24 * 3_600_000;
/// At most this many of a destination's newest deliveries are read: enough for a rate that
/// means something, and a bounded index walk however busy the destination is (counting a
/// day of 100,000 deliveries would cost the overview tens of milliseconds per destination).
pub const HEALTH_SAMPLE: u32 = 1000;

/// The statuses counted as succeeded.
pub const SUCCEEDED: &[DeliveryStatus] = &[DeliveryStatus::Succeeded];
/// The statuses counted as failed: at least one attempt failed and none succeeded.
pub const FAILED: &[DeliveryStatus] = &[DeliveryStatus::Failed, DeliveryStatus::Retrying];
/// The statuses that say something about the receiver: the last outcome is the newest of these.
pub const WITH_OUTCOME: &[DeliveryStatus] = &[
    DeliveryStatus::Succeeded,
    DeliveryStatus::Failed,
    DeliveryStatus::Retrying,
];

/// Read from the destination's newest deliveries created in the window (at most
/// [`HEALTH_SAMPLE`]), counting those that have an outcome: `succeeded`, or
/// `failed`/`retrying` (at least one attempt failed and none succeeded). Deliveries still
/// waiting for their first attempt, skipped or cancelled ones say nothing about the receiver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationHealth {
    /// How many deliveries were read (all the window's, unless it is [`HEALTH_SAMPLE`]).
    pub sampled: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// The newest outcome among the destination's latest [`HEALTH_SAMPLE`] deliveries, of
    /// any age.
    pub last: Option<LastOutcome>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LastOutcome {
    pub status: DeliveryStatus,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub at: Millis,
}

impl DestinationHealth {
    /// Percent succeeded, `None` when nothing was attempted in the window.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.succeeded + self.failed;
        (total > 0).then(|| self.succeeded as f64 * 100.0 / total as f64)
    }

    /// How the portal grades it: `good` (≥ 99 %), `degraded` (≥ 90 %), `failing`, or `idle`.
    pub fn grade(&self) -> &'static str {
        match self.success_rate() {
            None => "idle",
            Some(r) if r >= 99.0 => "good",
            Some(r) if r >= 90.0 => "degraded",
            Some(_) => "failing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(succeeded: u64, failed: u64) -> DestinationHealth {
        DestinationHealth {
            sampled: succeeded + failed,
            succeeded,
            failed,
            last: None,
        }
    }

    #[test]
    fn the_success_rate_is_the_share_of_deliveries_with_an_outcome_that_succeeded() {
        assert_eq!(health(3, 1).success_rate(), Some(75.0));
        assert_eq!(health(0, 0).success_rate(), None);
    }

    #[test]
    fn an_outcome_is_a_success_or_a_failure_and_nothing_else() {
        for s in DeliveryStatus::ALL {
            let counted = SUCCEEDED.contains(&s) || FAILED.contains(&s);
            assert_eq!(WITH_OUTCOME.contains(&s), counted, "{s}");
        }
        assert!(!SUCCEEDED.iter().any(|s| FAILED.contains(s)));
    }

    #[test]
    fn grades_follow_the_success_rate() {
        assert_eq!(health(0, 0).grade(), "idle");
        assert_eq!(health(99, 1).grade(), "good");
        assert_eq!(health(95, 5).grade(), "degraded");
        assert_eq!(health(1, 1).grade(), "failing");
    }
}
