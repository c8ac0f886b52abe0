//! Domain values written into SQL text as literals.
//!
//! Statuses go into the statement text, not into bound parameters: Postgres matches a partial
//! index such as `deliveries_due … WHERE status IN ('scheduled', 'retrying')` only when the
//! query's own predicate names those constants (a generic plan with `$1` cannot use it). The
//! statements that need them are built once, at first use, into a `static` [`Sql`], so the
//! text sent is the same as a hand-written literal and costs nothing per call.

use std::sync::LazyLock;

use super::common::delivery_cols;
use crate::domain::disable;
use crate::domain::health;
use crate::domain::state::{DeliveryStatus, Transition};

/// A statement built once from domain constants.
pub(crate) type Sql = LazyLock<String>;

/// `'delivering'`.
pub(crate) fn status(s: DeliveryStatus) -> String {
    text(s.as_str())
}

/// `'scheduled', 'retrying'`: the inside of an `IN (…)`.
pub(crate) fn statuses(ss: &[DeliveryStatus]) -> String {
    ss.iter().map(|s| status(*s)).collect::<Vec<_>>().join(", ")
}

/// A string literal, quotes doubled.
pub(crate) fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

// --- Destinations ---------------------------------------------------------------------------

/// The pending deliveries of a deleted destination are cancelled (`$1` destination, `$2` now).
pub(crate) static CANCEL_PENDING_OF_DESTINATION: Sql = Sql::new(|| {
    let t = Transition::CANCEL_PENDING;
    format!(
        "UPDATE deliveries SET status = {to}, finalized_at = $2, updated_at = $2, \
         last_error = {why} WHERE destination_id = $1 AND status IN ({from})",
        to = status(t.to),
        from = statuses(t.from),
        why = text(disable::DESTINATION_DELETED),
    )
});

/// The health sample: deliveries read, succeeded, failed (`$1` destination, `$2` id bound of
/// the window, `$3` sample size).
pub(crate) static HEALTH_COUNTS: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*), \
           COALESCE(SUM(CASE WHEN status IN ({succeeded}) THEN 1 ELSE 0 END), 0), \
           COALESCE(SUM(CASE WHEN status IN ({failed}) THEN 1 ELSE 0 END), 0) \
         FROM (SELECT status FROM deliveries WHERE destination_id = $1 AND id >= $2 \
               ORDER BY id DESC LIMIT $3) AS sample",
        succeeded = statuses(health::SUCCEEDED),
        failed = statuses(health::FAILED),
    )
});

/// The newest outcome among the sample (`$1` destination, `$2` sample size).
pub(crate) static HEALTH_LAST: Sql = Sql::new(|| {
    format!(
        "SELECT status, last_status_code, last_error, updated_at FROM \
           (SELECT id, status, last_status_code, last_error, updated_at FROM deliveries \
            WHERE destination_id = $1 ORDER BY id DESC LIMIT $2) AS recent \
         WHERE status IN ({outcome}) ORDER BY id DESC LIMIT 1",
        outcome = statuses(health::WITH_OUTCOME),
    )
});

// --- Deliveries: manual retries, replays, recoveries ---------------------------------------

/// A manual retry (`$1` delivery, `$2` now, `$3` the status it was read in).
pub(crate) static RETRY: Sql = Sql::new(|| {
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $2, manual = TRUE, \
         finalized_at = NULL, lease_expires_at = NULL, updated_at = $2 \
         WHERE id = $1 AND status = $3 RETURNING {cols}",
        to = status(Transition::RESCHEDULE),
        cols = delivery_cols!(),
    )
});

/// A replay of a finished delivery (`$1` delivery, `$2` now, `$3` the status it was read in).
pub(crate) static REPLAY: Sql = Sql::new(|| {
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $2, manual = TRUE, \
         finalized_at = NULL, updated_at = $2 WHERE id = $1 AND status = $3",
        to = status(Transition::RESCHEDULE),
    )
});

/// A replay to a destination that never had a delivery of the event.
pub(crate) static REPLAY_NEW: Sql = Sql::new(|| {
    format!(
        "INSERT INTO deliveries (id, tenant_id, event_id, destination_id, topic, status, \
           next_attempt_at, manual, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, {to}, $6, TRUE, $6, $6)",
        to = status(Transition::RESCHEDULE),
    )
});

/// What a recovery would schedule (`$1` destination, `$2` tenant, `$3` since).
pub(crate) static RECOVER_COUNT: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*) FROM deliveries WHERE destination_id = $1 AND tenant_id = $2 \
         AND status IN ({from}) AND created_at >= $3",
        from = statuses(Transition::RECOVER.from),
    )
});

/// One batch of a recovery (`$4` now, `$5` the recovery).
pub(crate) static RECOVER_BATCH: Sql = Sql::new(|| {
    let t = Transition::RECOVER;
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $4, manual = TRUE, \
         finalized_at = NULL, updated_at = $4, recovery_id = $5 WHERE id IN ( \
           SELECT id FROM deliveries WHERE destination_id = $1 AND tenant_id = $2 \
           AND status IN ({from}) AND created_at >= $3 ORDER BY id LIMIT 1000)",
        to = status(t.to),
        from = statuses(t.from),
    )
});

// --- The scheduler ---------------------------------------------------------------------------

/// An attempt's outcome (`$3` the next status, which `Finish::next` says and the domain allows
/// from `delivering`), applied only to the claim that made it.
pub(crate) static FINISH: Sql = Sql::new(|| {
    format!(
        "UPDATE deliveries SET status = $3, next_attempt_at = $4, lease_expires_at = NULL, \
         manual = FALSE, last_status_code = $5, last_error = $6, updated_at = $7, \
         finalized_at = $8, attempt_count = attempt_count - $9 \
         WHERE id = $1 AND status = {from} AND attempt_count = $2",
        from = status(DeliveryStatus::Delivering),
    )
});

/// The head of the set-wise success update; a `VALUES` list follows, then
/// [`SUCCEED_MANY_TAIL`]. `VALUES` columns are column1, column2, … in both SQLite and Postgres.
pub(crate) static SUCCEED_MANY_HEAD: Sql = Sql::new(|| {
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = NULL, lease_expires_at = NULL, \
         manual = FALSE, last_status_code = v.column3, last_error = NULL, \
         updated_at = v.column4, finalized_at = v.column4 FROM (",
        to = status(Transition::SUCCEED.to),
    )
});

pub(crate) static SUCCEED_MANY_TAIL: Sql = Sql::new(|| {
    format!(
        ") AS v WHERE deliveries.id = v.column1 AND deliveries.status IN ({from}) \
         AND deliveries.attempt_count = v.column2 RETURNING deliveries.id",
        from = statuses(Transition::SUCCEED.from),
    )
});

/// Expired leases (`$1` now).
pub(crate) static RESCUE: Sql = Sql::new(|| {
    let t = Transition::RESCUE;
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $1, lease_expires_at = NULL, \
         updated_at = $1 WHERE status IN ({from}) AND lease_expires_at <= $1",
        to = status(t.to),
        from = statuses(t.from),
    )
});

/// A send interrupted by shutdown (`$1` delivery, `$2` its attempt, `$3` now).
pub(crate) static RELEASE: Sql = Sql::new(|| {
    let t = Transition::RELEASE;
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $3, lease_expires_at = NULL, \
         last_error = {why}, updated_at = $3 \
         WHERE id = $1 AND status IN ({from}) AND attempt_count = $2",
        to = status(t.to),
        from = statuses(t.from),
        why = text(disable::INTERRUPTED),
    )
});

/// Pending deliveries due at `$1`, and the oldest due time among them.
pub(crate) static QUEUE_STATS: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*), MIN(next_attempt_at) FROM deliveries \
         WHERE status IN ({pending}) AND next_attempt_at <= $1",
        pending = statuses(DeliveryStatus::PENDING),
    )
});

pub(crate) static NEXT_DUE: Sql = Sql::new(|| {
    format!(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ({pending})",
        pending = statuses(DeliveryStatus::PENDING),
    )
});

/// Limited destinations with due work (`$1` now).
pub(crate) static LIMITED_CANDIDATES: Sql = Sql::new(|| {
    format!(
        "SELECT d.id FROM destinations d \
         WHERE (d.max_in_flight IS NOT NULL OR d.rate_limit IS NOT NULL OR d.fifo) AND d.enabled \
         AND EXISTS (SELECT 1 FROM deliveries x WHERE x.destination_id = d.id \
           AND x.status IN ({pending}) AND x.next_attempt_at <= $1)",
        pending = statuses(DeliveryStatus::PENDING),
    )
});

/// A destination's deliveries in flight (`$1` destination).
pub(crate) static IN_FLIGHT: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*) FROM deliveries WHERE destination_id = $1 AND status = {delivering}",
        delivering = status(DeliveryStatus::Delivering),
    )
});

/// The oldest unfinished delivery of a FIFO destination (`$1` destination).
pub(crate) static FIFO_HEAD: Sql = Sql::new(|| {
    format!(
        "SELECT id, status, next_attempt_at FROM deliveries WHERE destination_id = $1 \
         AND status IN ({unfinished}) ORDER BY id LIMIT 1",
        unfinished = statuses(DeliveryStatus::UNFINISHED),
    )
});

/// Claims one delivery (`$1` delivery, `$2` lease until, `$3` now).
pub(crate) static CLAIM_ONE: Sql = Sql::new(|| {
    let t = Transition::CLAIM;
    format!(
        "UPDATE deliveries SET status = {to}, lease_expires_at = $2, \
         attempt_count = attempt_count + 1, updated_at = $3 \
         WHERE id = $1 AND status IN ({from}) RETURNING id",
        to = status(t.to),
        from = statuses(t.from),
    )
});

/// Claims up to `$4` due deliveries of one destination (`$1`), oldest due first (`$2` now,
/// `$3` lease until).
pub(crate) static CLAIM_OF_DESTINATION: Sql = Sql::new(|| {
    let t = Transition::CLAIM;
    format!(
        "UPDATE deliveries SET status = {to}, lease_expires_at = $3, \
         attempt_count = attempt_count + 1, updated_at = $2 \
         WHERE id IN (SELECT id FROM deliveries WHERE destination_id = $1 \
           AND status IN ({from}) AND next_attempt_at <= $2 \
           ORDER BY next_attempt_at, id LIMIT $4) RETURNING id",
        to = status(t.to),
        from = statuses(t.from),
    )
});

// --- Maintenance -----------------------------------------------------------------------------

/// Up to `$2` events created before `$1` with nothing left to deliver. Events still being
/// delivered are kept whatever their age: retention never drops accepted work.
pub(crate) static PURGE: Sql = Sql::new(|| {
    format!(
        "DELETE FROM events WHERE id IN ( \
           SELECT e.id FROM events e WHERE e.created_at < $1 AND NOT EXISTS ( \
             SELECT 1 FROM deliveries x WHERE x.event_id = e.id \
             AND x.status IN ({unfinished})) \
           ORDER BY e.created_at LIMIT $2)",
        unfinished = statuses(DeliveryStatus::UNFINISHED),
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_statuses_read_as_the_partial_index_predicate_spells_them() {
        assert_eq!(statuses(DeliveryStatus::PENDING), "'scheduled', 'retrying'");
    }

    #[test]
    fn statements_carry_the_statuses_as_literals() {
        assert!(CLAIM_OF_DESTINATION.contains("status IN ('scheduled', 'retrying')"));
        assert!(RESCUE.contains("SET status = 'retrying'"));
        assert!(PURGE.contains("IN ('scheduled', 'retrying', 'delivering')"));
        assert!(RELEASE.contains("last_error = 'interrupted by shutdown'"));
    }

    #[test]
    fn quotes_inside_a_literal_are_doubled() {
        assert_eq!(text("it's"), "'it''s'");
    }
}
