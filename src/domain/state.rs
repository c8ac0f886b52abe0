//! The delivery state machine.
//!
//! ```text
//!  scheduled ──claim──▶ delivering ──2xx──▶ succeeded
//!      ▲                 │   ▲
//!      │ manual retry    │   └──claim── retrying ◀──failure, attempts left──┘
//!      │                 ├──failure, attempts exhausted / 410──▶ failed
//!  (terminal states)     └──lease expired (worker crashed)──▶ retrying
//!  scheduled ──destination disabled at publish──▶ skipped
//!  scheduled | retrying ──destination deleted / operator──▶ cancelled
//!  delivering ──destination disabled / deleted before the send──▶ skipped / cancelled
//! ```
//!
//! [`DeliveryStatus::can_transition`] is the one place these rules live. The changes the stores
//! make are named here as [`Transition`]s (each one allowed, a unit test checks), and the stores
//! write them into their SQL from these constants. A store applies a change only to a row still
//! in the expected state (`UPDATE … WHERE status = $expected`), so a worker whose lease expired
//! cannot overwrite the outcome of the worker that took over.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Scheduled,
    Delivering,
    Retrying,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 7] = [
        Self::Scheduled,
        Self::Delivering,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Delivering => "delivering",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Waiting for a worker to claim it (see [`Self::is_pending`]).
    pub const PENDING: &'static [DeliveryStatus] = &[Self::Scheduled, Self::Retrying];

    /// Not finished: pending or in flight. Retention keeps the events that have any.
    pub const UNFINISHED: &'static [DeliveryStatus] =
        &[Self::Scheduled, Self::Retrying, Self::Delivering];

    /// What a recovery schedules again: deliveries that never reached their receiver.
    pub const RECOVERABLE: &'static [DeliveryStatus] = &[Self::Failed, Self::Skipped];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Terminal states carry `finalized_at`; only a manual retry leaves them.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }

    /// Waiting for a worker to claim it.
    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Scheduled | Self::Retrying)
    }

    /// The allowed transitions. Everything else is a bug or a race lost.
    pub const fn can_transition(self, to: DeliveryStatus) -> bool {
        use DeliveryStatus::*;
        match (self, to) {
            // A worker claims due work.
            (Scheduled | Retrying, Delivering) => true,
            // The outcome of an attempt; `Retrying` also when a lease expires.
            (Delivering, Succeeded | Retrying | Failed) => true,
            // The destination was disabled or deleted between the claim and the send.
            (Delivering, Skipped | Cancelled) => true,
            // Destination deleted, or an operator cancels pending work.
            (Scheduled | Retrying, Cancelled) => true,
            // Manual retry / recovery: a finished delivery is scheduled again.
            (Succeeded | Failed | Skipped | Cancelled, Scheduled) => true,
            // A manual retry of a delivery waiting for its next attempt brings it forward.
            (Retrying, Scheduled) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of state a store makes, by name: from any of `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: &'static [DeliveryStatus],
    pub to: DeliveryStatus,
}

impl Transition {
    /// A worker claims due work.
    pub const CLAIM: Transition = Transition {
        from: DeliveryStatus::PENDING,
        to: DeliveryStatus::Delivering,
    };
    /// An attempt succeeded (the set-wise path for batches of successes).
    pub const SUCCEED: Transition = Transition {
        from: &[DeliveryStatus::Delivering],
        to: DeliveryStatus::Succeeded,
    };
    /// The lease of a claim expired (its worker died): due again now.
    pub const RESCUE: Transition = Transition {
        from: &[DeliveryStatus::Delivering],
        to: DeliveryStatus::Retrying,
    };
    /// A shutdown interrupted the send: given back, due again now.
    pub const RELEASE: Transition = Transition {
        from: &[DeliveryStatus::Delivering],
        to: DeliveryStatus::Retrying,
    };
    /// The destination was deleted: its pending deliveries are cancelled.
    pub const CANCEL_PENDING: Transition = Transition {
        from: DeliveryStatus::PENDING,
        to: DeliveryStatus::Cancelled,
    };
    /// A recovery schedules failed and skipped deliveries again.
    pub const RECOVER: Transition = Transition {
        from: DeliveryStatus::RECOVERABLE,
        to: DeliveryStatus::Scheduled,
    };
    /// A manual retry or a replay: from wherever `can_transition` allows (the store reads the
    /// current status, asks, and updates only a row still in it).
    pub const RESCHEDULE: DeliveryStatus = DeliveryStatus::Scheduled;

    /// Every named transition, for the test that each is allowed.
    pub const ALL: [Transition; 6] = [
        Self::CLAIM,
        Self::SUCCEED,
        Self::RESCUE,
        Self::RELEASE,
        Self::CANCEL_PENDING,
        Self::RECOVER,
    ];

    /// Whether every `from` may go to `to`.
    pub fn is_allowed(&self) -> bool {
        self.from.iter().all(|from| from.can_transition(self.to))
    }
}

/// What caused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Scheduled,
    Manual,
}

impl Trigger {
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Self {
        if s == "manual" {
            Trigger::Manual
        } else {
            Trigger::Scheduled
        }
    }
}

/// Why an attempt failed, as recorded in the attempt log.
///
/// `timeout`, `connect`, `dns`, `tls` and `blocked_address` apply to both destination types;
/// `status` and `body_too_large` only to webhooks; `amqp`, `unroutable` and `nack` only to
/// RabbitMQ destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Timeout,
    Connect,
    Dns,
    Tls,
    BlockedAddress,
    Status,
    BodyTooLarge,
    Internal,
    /// The broker refused the connection or closed the channel: a missing exchange
    /// (`NOT_FOUND`), bad credentials (`ACCESS_REFUSED`), a forced close. The error says which.
    Amqp,
    /// The exchange has no queue bound for the routing key: the broker returned the message
    /// (published `mandatory`, so it is not silently dropped).
    Unroutable,
    /// The broker negatively acknowledged the message (it could not take responsibility for
    /// it, e.g. a queue's length limit with `reject-publish`).
    Nack,
}

impl ErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Dns => "dns",
            ErrorKind::Tls => "tls",
            ErrorKind::BlockedAddress => "blocked_address",
            ErrorKind::Status => "status",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::Internal => "internal",
            ErrorKind::Amqp => "amqp",
            ErrorKind::Unroutable => "unroutable",
            ErrorKind::Nack => "nack",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("bogus"), None);
    }

    #[test]
    fn only_a_claim_leads_into_delivering() {
        for from in DeliveryStatus::ALL {
            assert_eq!(from.can_transition(Delivering), from.is_pending(), "{from}");
        }
    }

    #[test]
    fn terminal_states_are_left_only_by_rescheduling() {
        for from in DeliveryStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in DeliveryStatus::ALL {
                assert_eq!(from.can_transition(to), to == Scheduled, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn every_transition_the_stores_make_is_allowed() {
        for t in Transition::ALL {
            assert!(t.is_allowed(), "{t:?}");
        }
    }

    #[test]
    fn the_status_sets_agree_with_the_predicates() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::PENDING.contains(&s), s.is_pending(), "{s}");
            assert_eq!(
                DeliveryStatus::UNFINISHED.contains(&s),
                !s.is_terminal(),
                "{s}"
            );
        }
        assert!(DeliveryStatus::RECOVERABLE.iter().all(|s| s.is_terminal()));
    }

    #[test]
    fn a_manual_retry_leaves_every_state_but_a_fresh_claim_or_a_send() {
        for from in DeliveryStatus::ALL {
            let allowed = from.can_transition(Transition::RESCHEDULE);
            assert_eq!(allowed, !matches!(from, Scheduled | Delivering), "{from}");
        }
    }

    #[test]
    fn an_attempt_ends_in_success_retry_or_failure() {
        assert!(Delivering.can_transition(Succeeded));
        assert!(Delivering.can_transition(Retrying));
        assert!(Delivering.can_transition(Failed));
        assert!(!Delivering.can_transition(Scheduled));
        assert!(!Delivering.can_transition(Delivering));
    }
}
