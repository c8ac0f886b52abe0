//! Events and their deliveries: publishing (the fan-out written in one transaction), reading,
//! manual retries, replays and recoveries, and the scheduler's side — the claim of
//! destinations with limits, and the finish of every attempt.
//!
//! A finish is where a destination's failure streak is kept and where the destination is
//! disabled, on 410 Gone or when the streak crosses the auto-disable limits: the rule is
//! [`crate::domain::disable`]'s, the SQL that records it is [`Deliveries::finish_in_tx`]'s.
//!
//! Statements whose predicates name statuses carry them as literals (see [`sql`]).

use std::collections::{HashMap, HashSet};

use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Transaction, Type,
};

use super::attempts::Attempts;
use super::destinations::DESTINATIONS_OF_TENANT;
use super::inbound::Inbound;
use crate::domain::allowance::{self, Limits, Load};
use crate::domain::callback::{CallbackEndpoint, Verification};
use crate::domain::disable::{self, Streak};
use crate::domain::ids::{self, Kind};
use crate::domain::model::{Attempt, Delivery, Destination, Event, Recovery};
use crate::domain::state::{DeliveryStatus, Transition};
use crate::domain::time::Millis;
use crate::store::columns::{self, Columns, Write};
use crate::store::dialect::{Dialect, RowsAffected};
use crate::store::sql::{self, Sql};
use crate::store::{
    DeliveryQuery, Finish, Finished, NewEvent, Published, Result, Scope, StoreError, rows,
};

/// The columns of [`rows::EventRow`].
const EVENT: &str =
    "id, tenant_id, topic, data, metadata, idempotency_key, schema_version, created_at";

/// The columns of [`rows::DeliveryRow`].
const DELIVERY: &str = "id, tenant_id, event_id, destination_id, topic, status, attempt_count, \
    next_attempt_at, last_status_code, last_error, created_at, updated_at, finalized_at";

/// Rows per multi-row insert of a publish: under both databases' bind-parameter limits.
const EVENTS_PER_INSERT: usize = 1000;
const DELIVERIES_PER_INSERT: usize = 2000;

/// Successes per set-wise finish (see [`Deliveries::finish_batch`]).
const SUCCESSES_PER_STATEMENT: usize = 500;

/// Deliveries per batch of a recovery: each batch is its own short transaction.
const RECOVERY_BATCH: u64 = 1000;

// --- Events ---------------------------------------------------------------------------------

static GET_EVENT: Sql = Sql::new(|| {
    format!("SELECT {EVENT} FROM events WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)")
});

static LIST_EVENTS: Sql = Sql::new(|| {
    format!(
        "SELECT {EVENT} FROM events WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    )
});

// --- Deliveries -----------------------------------------------------------------------------

/// `$1` tenant, `$2` status, `$3` destination, `$4` topic, `$5` event, `$6` the id to list
/// after, `$7` limit, `$8` and `$9` the id bounds of the time range: each filter is off when
/// its value is `NULL`.
static LIST_DELIVERIES: Sql = Sql::new(|| {
    format!(
        "SELECT {DELIVERY} FROM deliveries WHERE tenant_id = $1 \
         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR destination_id = $3) \
         AND ($4 IS NULL OR topic = $4) AND ($5 IS NULL OR event_id = $5) \
         AND ($6 IS NULL OR id < $6) AND ($8 IS NULL OR id >= $8) \
         AND ($9 IS NULL OR id < $9) ORDER BY id DESC LIMIT $7"
    )
});

static GET_DELIVERY: Sql = Sql::new(|| {
    format!("SELECT {DELIVERY} FROM deliveries WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)")
});

/// A manual retry (`$1` delivery, `$2` now, `$3` the status it was read in).
static RETRY: Sql = Sql::new(|| {
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $2, manual = TRUE, \
         finalized_at = NULL, lease_expires_at = NULL, updated_at = $2 \
         WHERE id = $1 AND status = $3 RETURNING {DELIVERY}",
        to = sql::status(Transition::RESCHEDULE),
    )
});

/// A replay of a finished delivery (`$1` delivery, `$2` now, `$3` the status it was read in).
static REPLAY: Sql = Sql::new(|| {
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $2, manual = TRUE, \
         finalized_at = NULL, updated_at = $2 WHERE id = $1 AND status = $3",
        to = sql::status(Transition::RESCHEDULE),
    )
});

/// A replay to a destination that never had a delivery of the event.
static REPLAY_NEW: Write = Write::insert("deliveries");

/// What a recovery would schedule (`$1` destination, `$2` tenant, `$3` since).
static RECOVER_COUNT: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*) FROM deliveries WHERE destination_id = $1 AND tenant_id = $2 \
         AND status IN ({from}) AND created_at >= $3",
        from = sql::statuses(Transition::RECOVER.from),
    )
});

/// One batch of a recovery (`$1` destination, `$2` tenant, `$3` since, `$4` now, `$5` the
/// recovery).
static RECOVER_BATCH: Sql = Sql::new(|| {
    let t = Transition::RECOVER;
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $4, manual = TRUE, \
         finalized_at = NULL, updated_at = $4, recovery_id = $5 WHERE id IN ( \
           SELECT id FROM deliveries WHERE destination_id = $1 AND tenant_id = $2 \
           AND status IN ({from}) AND created_at >= $3 ORDER BY id LIMIT {RECOVERY_BATCH})",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
    )
});

// --- The scheduler: finishes ----------------------------------------------------------------

/// An attempt's outcome, applied only to the claim that made it: the delivery must still be
/// `delivering` with the claimed attempt number (the keys).
static FINISH: Write = Write::update("deliveries", || {
    format!("status = {}", sql::status(DeliveryStatus::Delivering))
});

/// The head of the set-wise success update; a `VALUES` list of (delivery, claimed attempt,
/// status code, now) follows, then [`SUCCEED_MANY_TAIL`]. `VALUES` columns are column1,
/// column2, … in both SQLite and Postgres.
static SUCCEED_MANY_HEAD: Sql = Sql::new(|| {
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = NULL, lease_expires_at = NULL, \
         manual = FALSE, last_status_code = v.column3, last_error = NULL, \
         updated_at = v.column4, finalized_at = v.column4 FROM (",
        to = sql::status(Transition::SUCCEED.to),
    )
});

static SUCCEED_MANY_TAIL: Sql = Sql::new(|| {
    format!(
        ") AS v WHERE deliveries.id = v.column1 AND deliveries.status IN ({from}) \
         AND deliveries.attempt_count = v.column2 RETURNING deliveries.id",
        from = sql::statuses(Transition::SUCCEED.from),
    )
});

/// A success ends the destination's failure streak (`$1` destination).
const END_STREAK: &str = "UPDATE destinations SET consecutive_failures = 0, \
    failing_since = NULL WHERE id = $1 \
    AND (consecutive_failures > 0 OR failing_since IS NOT NULL)";

/// A failure lengthens it (`$1` destination, `$2` now).
const LENGTHEN_STREAK: &str = "UPDATE destinations SET \
    consecutive_failures = consecutive_failures + 1, failing_since = COALESCE(failing_since, $2) \
    WHERE id = $1";

/// The streak as the auto-disable rule reads it (`$1` destination).
const STREAK: &str = "SELECT consecutive_failures, failing_since FROM destinations WHERE id = $1";

/// The destination disabled by an outcome (`$1` destination, `$2` tenant, `$3` reason, `$4`
/// now); only if it is still enabled, so the first reason stays.
const DISABLE: &str = "UPDATE destinations SET enabled = FALSE, disabled_reason = $3, \
    disabled_at = $4, updated_at = $4 WHERE id = $1 AND tenant_id = $2 AND enabled";

/// Expired leases (`$1` now).
static RESCUE: Sql = Sql::new(|| {
    let t = Transition::RESCUE;
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $1, lease_expires_at = NULL, \
         updated_at = $1 WHERE status IN ({from}) AND lease_expires_at <= $1",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
    )
});

/// A send interrupted by shutdown (`$1` delivery, `$2` its attempt, `$3` now).
static RELEASE: Sql = Sql::new(|| {
    let t = Transition::RELEASE;
    format!(
        "UPDATE deliveries SET status = {to}, next_attempt_at = $3, lease_expires_at = NULL, \
         last_error = {why}, updated_at = $3 \
         WHERE id = $1 AND status IN ({from}) AND attempt_count = $2",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
        why = sql::text(disable::INTERRUPTED),
    )
});

/// Pending deliveries due at `$1`, and the oldest due time among them.
static QUEUE_STATS: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*), MIN(next_attempt_at) FROM deliveries \
         WHERE status IN ({pending}) AND next_attempt_at <= $1",
        pending = sql::statuses(DeliveryStatus::PENDING),
    )
});

static NEXT_DUE: Sql = Sql::new(|| {
    format!(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ({pending})",
        pending = sql::statuses(DeliveryStatus::PENDING),
    )
});

// --- The scheduler: the claim of destinations with limits -----------------------------------

/// Limited destinations with due work (`$1` now).
static LIMITED_CANDIDATES: Sql = Sql::new(|| {
    format!(
        "SELECT d.id FROM destinations d \
         WHERE (d.max_in_flight IS NOT NULL OR d.rate_limit IS NOT NULL OR d.fifo) AND d.enabled \
         AND EXISTS (SELECT 1 FROM deliveries x WHERE x.destination_id = d.id \
           AND x.status IN ({pending}) AND x.next_attempt_at <= $1)",
        pending = sql::statuses(DeliveryStatus::PENDING),
    )
});

/// A destination's limits and rate window (`$1` destination).
const LIMITS: &str = "SELECT max_in_flight, rate_limit, fifo, rate_window_start, \
    rate_window_count FROM destinations WHERE id = $1";

/// A destination's deliveries in flight (`$1` destination).
static IN_FLIGHT: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*) FROM deliveries WHERE destination_id = $1 AND status = {delivering}",
        delivering = sql::status(DeliveryStatus::Delivering),
    )
});

/// The oldest unfinished delivery of a FIFO destination (`$1` destination).
static FIFO_HEAD: Sql = Sql::new(|| {
    format!(
        "SELECT id, status, next_attempt_at FROM deliveries WHERE destination_id = $1 \
         AND status IN ({unfinished}) ORDER BY id LIMIT 1",
        unfinished = sql::statuses(DeliveryStatus::UNFINISHED),
    )
});

/// Claims one delivery (`$1` delivery, `$2` lease until, `$3` now).
static CLAIM_ONE: Sql = Sql::new(|| {
    let t = Transition::CLAIM;
    format!(
        "UPDATE deliveries SET status = {to}, lease_expires_at = $2, \
         attempt_count = attempt_count + 1, updated_at = $3 \
         WHERE id = $1 AND status IN ({from}) RETURNING id",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
    )
});

/// Claims up to `$4` due deliveries of one destination (`$1`), oldest due first (`$2` now,
/// `$3` lease until).
static CLAIM_OF_DESTINATION: Sql = Sql::new(|| {
    let t = Transition::CLAIM;
    format!(
        "UPDATE deliveries SET status = {to}, lease_expires_at = $3, \
         attempt_count = attempt_count + 1, updated_at = $2 \
         WHERE id IN (SELECT id FROM deliveries WHERE destination_id = $1 \
           AND status IN ({from}) AND next_attempt_at <= $2 \
           ORDER BY next_attempt_at, id LIMIT $4) RETURNING id",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
    )
});

/// The rate window after a claim (`$1` destination, `$2` window start, `$3` sends in it).
const MOVE_RATE_WINDOW: &str =
    "UPDATE destinations SET rate_window_start = $2, rate_window_count = $3 WHERE id = $1";

/// A delivery a publish creates.
struct NewDelivery<'a> {
    id: String,
    event: &'a NewEvent,
    destination_id: String,
    status: DeliveryStatus,
}

/// The queries of events and deliveries, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Deliveries: Dialect {
    async fn publish(&self, events: &[NewEvent], now: Millis) -> Result<Vec<Published>>;
    async fn get_event(&self, scope: Scope<'_>, id: &str) -> Result<Option<Event>>;
    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>>;
    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>>;
    async fn get_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Option<Delivery>>;
    async fn retry_delivery(&self, scope: Scope<'_>, id: &str, now: Millis) -> Result<Delivery>;
    async fn replay_event(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        destination_ids: Option<&[String]>,
        now: Millis,
    ) -> Result<u32>;
    async fn recover_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
        dry_run: bool,
        now: Millis,
    ) -> Result<Recovery>;
    async fn get_recovery(&self, tenant_id: &str, id: &str) -> Result<Option<Recovery>>;

    async fn finish_batch(&self, fs: &[Finish]) -> Result<Vec<Finished>>;
    /// One outcome, inside the caller's transaction (see `Store::finish_batch`): the attempt
    /// logged, the delivery moved on, the destination's failure streak kept, and the
    /// destination disabled when the outcome says so (410) or the streak crosses the limits.
    async fn finish_in_tx(tx: &mut Transaction<'_, Self::Db>, f: &Finish) -> Result<Finished>;
    async fn rescue_expired(&self, now: Millis) -> Result<u64>;
    async fn release(&self, delivery_id: &str, attempt: u32, now: Millis) -> Result<bool>;
    async fn queue_stats(&self, now: Millis) -> Result<(u64, Option<Millis>)>;
    async fn next_due(&self) -> Result<Option<Millis>>;

    /// Claims, inside `tx`, up to `budget` due deliveries of destinations that have limits
    /// (`max_in_flight`, `rate_limit`, FIFO ordering), respecting them; returns the claimed
    /// ids. All such claims are serialized (`Dialect::limits_lock`), so two nodes never both
    /// see a free slot and both take it. The dialects' claims call it first.
    async fn claim_limited(
        tx: &mut Transaction<'_, Self::Db>,
        budget: u32,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<String>>;
}

#[async_trait::async_trait]
impl<S> Deliveries for S
where
    S: Dialect + Attempts + Inbound,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> String: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<String>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> i64: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> i32: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<i32>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> bool: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'r> rows::DestinationRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::EventRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::DeliveryRow: FromRow<'r, <S::Db as Database>::Row>,
{
    async fn publish(&self, events: &[NewEvent], now: Millis) -> Result<Vec<Published>> {
        let mut tx = self.write().begin().await?;
        let mut destinations: HashMap<&str, Vec<Destination>> = HashMap::new();
        // Keys published earlier in this same call: a repeat returns that event.
        let mut keys: HashMap<(&str, &str), usize> = HashMap::new();
        let mut out: Vec<Published> = Vec::with_capacity(events.len());
        let mut new_events: Vec<&NewEvent> = Vec::with_capacity(events.len());
        let mut new_deliveries: Vec<NewDelivery> = Vec::new();
        for ev in events {
            if let Some(key) = &ev.idempotency_key {
                if let Some(&i) = keys.get(&(ev.tenant_id.as_str(), key.as_str())) {
                    let first = out[i].clone();
                    out.push(Published {
                        created: false,
                        ..first
                    });
                    continue;
                }
                let existing: Option<(String, Option<i64>)> = sqlx::query_as(
                    "SELECT id, schema_version FROM events \
                     WHERE tenant_id = $1 AND idempotency_key = $2",
                )
                .bind(&ev.tenant_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((id, schema_version)) = existing {
                    let n: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE event_id = $1")
                            .bind(&id)
                            .fetch_one(&mut *tx)
                            .await?;
                    let reply_slug: Option<String> = sqlx::query_scalar(
                        "SELECT slug FROM callback_endpoints WHERE event_id = $1",
                    )
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    out.push(Published {
                        id,
                        deliveries: n as u32,
                        created: false,
                        reply_slug,
                        schema_version,
                        deprecated: false,
                    });
                    continue;
                }
            }
            if !destinations.contains_key(ev.tenant_id.as_str()) {
                let tenant: Option<String> =
                    sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                        .bind(&ev.tenant_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if tenant.is_none() {
                    return Err(StoreError::NotFound("tenant"));
                }
                let ds = sqlx::query_as::<_, rows::DestinationRow>(DESTINATIONS_OF_TENANT.as_str())
                    .bind(&ev.tenant_id)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|r| r.open(self.keys()))
                    .collect::<Result<Vec<_>>>()?;
                destinations.insert(ev.tenant_id.as_str(), ds);
            }
            let ds = &destinations[ev.tenant_id.as_str()];
            if let Some(target) = &ev.destination_id
                && !ds.iter().any(|d| &d.id == target)
            {
                return Err(StoreError::NotFound("destination"));
            }
            // The data is parsed only when a filter needs to look inside it.
            let data = if ds.iter().any(|d| d.filter.is_some()) {
                serde_json::from_str(ev.data.get()).unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::Null
            };
            let plan = crate::domain::fanout::plan(
                ds,
                &ev.topic,
                &ev.metadata,
                &data,
                ev.destination_id.as_deref(),
            );
            for (d, status) in &plan {
                new_deliveries.push(NewDelivery {
                    id: ids::new_id(Kind::Delivery),
                    event: ev,
                    destination_id: d.id.clone(),
                    status: *status,
                });
            }
            if let Some(key) = &ev.idempotency_key {
                keys.insert((ev.tenant_id.as_str(), key.as_str()), out.len());
            }
            new_events.push(ev);
            out.push(Published {
                id: ev.id.clone(),
                deliveries: plan.len() as u32,
                created: true,
                reply_slug: ev.reply.as_ref().map(|r| r.slug.clone()),
                schema_version: ev.schema_version,
                deprecated: false,
            });
        }
        // Multi-row inserts: one statement per few hundred rows instead of one per row.
        for chunk in new_events.chunks(EVENTS_PER_INSERT) {
            columns::insert_rows("events", chunk, |cols, ev| {
                cols.set("id", &ev.id)
                    .set("tenant_id", &ev.tenant_id)
                    .set("topic", &ev.topic)
                    .set("data", ev.data.get())
                    .set("metadata", rows::to_json(&ev.metadata))
                    .set("idempotency_key", &ev.idempotency_key)
                    .set("traceparent", &ev.traceparent)
                    .set("schema_version", ev.schema_version)
                    .set("created_at", now);
            })?
            .execute(&mut *tx)
            .await
            .map_err(rows::idempotency_conflict)?;
        }
        // Reply channels (docs/reply-channels.md) belong to their event: created after it, in
        // the same transaction.
        for ev in &new_events {
            if let Some(r) = &ev.reply {
                let channel = CallbackEndpoint {
                    id: r.endpoint_id.clone(),
                    slug: r.slug.clone(),
                    tenant_id: Some(ev.tenant_id.clone()),
                    label: Some(format!("reply channel of {}", ev.id)),
                    verification: Verification::None,
                    metadata: serde_json::json!({}),
                    event_id: Some(ev.id.clone()),
                    last_cursor: 0,
                    received: 0,
                    duplicates: 0,
                    rejected: 0,
                    expires_at: Some(r.expires_at),
                    created_at: now,
                };
                self.insert_endpoint_in_tx(&mut tx, &channel).await?;
            }
        }
        let scheduled_any = new_deliveries
            .iter()
            .any(|d| d.status == DeliveryStatus::Scheduled);
        for chunk in new_deliveries.chunks(DELIVERIES_PER_INSERT) {
            columns::insert_rows("deliveries", chunk, |cols, d| {
                let finalized = d.status.is_terminal().then_some(now);
                let reason = d
                    .status
                    .is_terminal()
                    .then_some(disable::DESTINATION_DISABLED);
                cols.set("id", &d.id)
                    .set("tenant_id", &d.event.tenant_id)
                    .set("event_id", &d.event.id)
                    .set("destination_id", &d.destination_id)
                    .set("topic", &d.event.topic)
                    .set("status", d.status.as_str())
                    .set("next_attempt_at", now)
                    .set("last_error", reason)
                    .set("created_at", now)
                    .set("updated_at", now)
                    .set("finalized_at", finalized);
            })?
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.map_err(rows::idempotency_conflict)?;
        if scheduled_any {
            // After the commit, not inside the transaction: the hot path (see
            // `PostgresStore::announce_work_committed`).
            self.announce_work_committed();
        }
        Ok(out)
    }

    async fn get_event(&self, scope: Scope<'_>, id: &str) -> Result<Option<Event>> {
        sqlx::query_as::<_, rows::EventRow>(GET_EVENT.as_str())
            .bind(id)
            .bind(scope.tenant())
            .fetch_optional(self.read())
            .await?
            .map(Event::try_from)
            .transpose()
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        sqlx::query_as::<_, rows::EventRow>(LIST_EVENTS.as_str())
            .bind(tenant_id)
            .bind(after)
            .bind(limit as i64)
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(Event::try_from)
            .collect()
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        // Time ranges as id ranges: ids are time-sortable (see `ids::time_bound`).
        let bound = |t: Option<Millis>| t.map(|t| ids::time_bound(Kind::Delivery, t));
        sqlx::query_as::<_, rows::DeliveryRow>(LIST_DELIVERIES.as_str())
            .bind(&q.tenant_id)
            .bind(q.status.map(|s| s.as_str()))
            .bind(&q.destination_id)
            .bind(&q.topic)
            .bind(&q.event_id)
            .bind(&q.after)
            .bind(q.limit as i64)
            .bind(bound(q.since))
            .bind(bound(q.until))
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(Delivery::try_from)
            .collect()
    }

    async fn get_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Option<Delivery>> {
        let Some(row) = sqlx::query_as::<_, rows::DeliveryRow>(GET_DELIVERY.as_str())
            .bind(id)
            .bind(scope.tenant())
            .fetch_optional(self.read())
            .await?
        else {
            return Ok(None);
        };
        let mut delivery = Delivery::try_from(row)?;
        delivery.attempts = Some(self.attempts_of(id).await?);
        Ok(Some(delivery))
    }

    async fn retry_delivery(&self, scope: Scope<'_>, id: &str, now: Millis) -> Result<Delivery> {
        let mut tx = self.write().begin().await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT status FROM deliveries WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)",
        )
        .bind(id)
        .bind(scope.tenant())
        .fetch_optional(&mut *tx)
        .await?;
        let from = rows::status(&current.ok_or(StoreError::NotFound("delivery"))?)?;
        if !from.can_transition(Transition::RESCHEDULE) {
            return Err(StoreError::Conflict(format!(
                "the delivery is {from}; wait for the attempt in flight to finish"
            )));
        }
        let row = sqlx::query_as::<_, rows::DeliveryRow>(RETRY.as_str())
            .bind(id)
            .bind(now)
            .bind(from.as_str())
            .fetch_one(&mut *tx)
            .await?;
        Self::announce_work(&mut tx).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn replay_event(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        destination_ids: Option<&[String]>,
        now: Millis,
    ) -> Result<u32> {
        let mut tx = self.write().begin().await?;
        let event = sqlx::query_as::<_, rows::EventRow>(GET_EVENT.as_str())
            .bind(event_id)
            .bind(scope.tenant())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("event"))?;
        let existing: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, destination_id, status FROM deliveries WHERE event_id = $1")
                .bind(event_id)
                .fetch_all(&mut *tx)
                .await?;
        let targets: Vec<String> = match destination_ids {
            Some(ids) => ids.to_vec(),
            None => existing.iter().map(|(_, d, _)| d.clone()).collect(),
        };
        let mut scheduled = 0;
        for dst in &targets {
            match existing.iter().find(|(_, d, _)| d == dst) {
                Some((id, _, status)) => {
                    let from = rows::status(status)?;
                    if !from.is_terminal() {
                        continue; // already on its way
                    }
                    sqlx::query(REPLAY.as_str())
                        .bind(id)
                        .bind(now)
                        .bind(status)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    let owned: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM destinations WHERE id = $1 AND tenant_id = $2",
                    )
                    .bind(dst)
                    .bind(&event.tenant_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if owned.is_none() {
                        return Err(StoreError::NotFound("destination"));
                    }
                    let mut cols = Columns::new();
                    cols.set("id", ids::new_id(Kind::Delivery))
                        .set("tenant_id", &event.tenant_id)
                        .set("event_id", event_id)
                        .set("destination_id", dst)
                        .set("topic", &event.topic)
                        .set("status", Transition::RESCHEDULE.as_str())
                        .set("next_attempt_at", now)
                        .set("manual", true)
                        .set("created_at", now)
                        .set("updated_at", now);
                    REPLAY_NEW.query(cols)?.execute(&mut *tx).await?;
                }
            }
            scheduled += 1;
        }
        if scheduled > 0 {
            Self::announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(scheduled)
    }

    async fn recover_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
        dry_run: bool,
        now: Millis,
    ) -> Result<Recovery> {
        let enabled: Option<bool> =
            sqlx::query_scalar("SELECT enabled FROM destinations WHERE id = $1 AND tenant_id = $2")
                .bind(destination_id)
                .bind(tenant_id)
                .fetch_optional(self.read())
                .await?;
        match enabled {
            None => return Err(StoreError::NotFound("destination")),
            Some(false) if !dry_run => {
                return Err(StoreError::Conflict(
                    "the destination is disabled; enable it before recovering".into(),
                ));
            }
            _ => {}
        }
        let id = ids::new_id(Kind::Recovery);
        let mut recovery = Recovery {
            id: id.clone(),
            tenant_id: tenant_id.into(),
            destination_id: destination_id.into(),
            since,
            count: 0,
            created_at: now,
            progress: Default::default(),
            done: true,
        };
        if dry_run {
            let n: i64 = sqlx::query_scalar(RECOVER_COUNT.as_str())
                .bind(destination_id)
                .bind(tenant_id)
                .bind(since)
                .fetch_one(self.read())
                .await?;
            recovery.count = n as u64;
            return Ok(recovery);
        }
        sqlx::query(
            "INSERT INTO recoveries (id, tenant_id, destination_id, since, count, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(destination_id)
        .bind(since)
        .bind(now)
        .execute(self.write())
        .await?;
        // Bounded batches, each its own short transaction: a recovery of a million
        // deliveries never holds a million row locks.
        loop {
            let mut tx = self.write().begin().await?;
            let r = sqlx::query(RECOVER_BATCH.as_str())
                .bind(destination_id)
                .bind(tenant_id)
                .bind(since)
                .bind(now)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            let n = r.rows_affected();
            recovery.count += n;
            sqlx::query("UPDATE recoveries SET count = count + $2 WHERE id = $1")
                .bind(&id)
                .bind(n as i64)
                .execute(&mut *tx)
                .await?;
            if n > 0 {
                Self::announce_work(&mut tx).await?;
            }
            tx.commit().await?;
            if n < RECOVERY_BATCH {
                break;
            }
        }
        Ok(self.get_recovery(tenant_id, &id).await?.unwrap_or(recovery))
    }

    async fn get_recovery(&self, tenant_id: &str, id: &str) -> Result<Option<Recovery>> {
        let row: Option<(String, String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, tenant_id, destination_id, since, count, created_at FROM recoveries \
             WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(self.read())
        .await?;
        let Some((id, tenant_id, destination_id, since, count, created_at)) = row else {
            return Ok(None);
        };
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM deliveries WHERE recovery_id = $1 GROUP BY status",
        )
        .bind(&id)
        .fetch_all(self.read())
        .await?;
        let done = counts
            .iter()
            .all(|(s, _)| rows::status(s).is_ok_and(|s| s.is_terminal()));
        Ok(Some(Recovery {
            id,
            tenant_id,
            destination_id,
            since,
            count: count as u64,
            created_at,
            progress: counts.into_iter().map(|(s, n)| (s, n as u64)).collect(),
            done,
        }))
    }

    async fn finish_batch(&self, fs: &[Finish]) -> Result<Vec<Finished>> {
        if let Some(out) = self.finish_successes_in_one_statement(fs).await? {
            return Ok(out);
        }
        let mut tx = self.write().begin().await?;
        let mut out = vec![Finished::default(); fs.len()];
        // Successes — the bulk of the traffic — are written set-wise: one insert for
        // all their attempts, one update for all their deliveries, one streak reset.
        // Failures (streaks, auto-disable, 410) take the row-by-row path.
        let (fast, slow): (Vec<usize>, Vec<usize>) = (0..fs.len())
            .partition(|&i| fs[i].next == DeliveryStatus::Succeeded && fs[i].attempt.is_some());
        for &i in &slow {
            out[i] = Self::finish_in_tx(&mut tx, &fs[i]).await?;
        }
        for chunk in fast.chunks(SUCCESSES_PER_STATEMENT) {
            let attempts: Vec<(&Attempt, &str)> = chunk
                .iter()
                .map(|&i| {
                    let a = fs[i].attempt.as_ref().expect("fast path has an attempt");
                    (a, fs[i].tenant_id.as_str())
                })
                .collect();
            Self::insert_attempts(&mut tx, &attempts).await?;

            let mut q = sqlx::QueryBuilder::<S::Db>::new(SUCCEED_MANY_HEAD.as_str());
            q.push_values(chunk, |mut b, &i| {
                let f = &fs[i];
                let code = f
                    .attempt
                    .as_ref()
                    .and_then(|a| a.status_code)
                    .map(i32::from);
                b.push_bind(&f.delivery_id)
                    .push_bind(f.attempt_number as i32)
                    .push_bind(code)
                    .push_bind(f.now);
            });
            q.push(SUCCEED_MANY_TAIL.as_str());
            let applied: HashSet<String> = q
                .build_query_scalar::<String>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();

            let mut reset: Vec<&str> = Vec::new();
            for &i in chunk {
                if applied.contains(&fs[i].delivery_id) {
                    out[i].applied = true;
                    if !reset.contains(&fs[i].destination_id.as_str()) {
                        reset.push(&fs[i].destination_id);
                    }
                }
            }
            if !reset.is_empty() {
                let mut q = sqlx::QueryBuilder::<S::Db>::new(
                    "UPDATE destinations SET consecutive_failures = 0, failing_since = NULL \
                     WHERE (consecutive_failures > 0 OR failing_since IS NOT NULL) AND id IN (",
                );
                let mut ids = q.separated(", ");
                for id in &reset {
                    ids.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn finish_in_tx(tx: &mut Transaction<'_, Self::Db>, f: &Finish) -> Result<Finished> {
        debug_assert!(DeliveryStatus::Delivering.can_transition(f.next));
        if let Some(a) = &f.attempt {
            Self::insert_attempt(tx, a, &f.tenant_id).await?;
        }
        let status_code = f
            .attempt
            .as_ref()
            .and_then(|a| a.status_code)
            .map(i32::from);
        // Nothing was sent: the claim's attempt is given back.
        let attempt_count = f.attempt_number as i32 - i32::from(f.attempt.is_none());
        let mut cols = Columns::new();
        cols.key("id", &f.delivery_id)
            .key("attempt_count", f.attempt_number as i32)
            .set("status", f.next.as_str())
            .set("next_attempt_at", f.next_attempt_at)
            .set("lease_expires_at", None::<i64>)
            .set("manual", false)
            .set("last_status_code", status_code)
            .set("last_error", &f.last_error)
            .set("updated_at", f.now)
            .set("finalized_at", f.next.is_terminal().then_some(f.now))
            .set("attempt_count", attempt_count);
        let r = FINISH.query(cols)?.execute(&mut **tx).await?;
        let applied = r.rows_affected() > 0;
        let mut disabled = None;
        if applied && f.attempt.is_some() {
            if f.next == DeliveryStatus::Succeeded {
                sqlx::query(END_STREAK)
                    .bind(&f.destination_id)
                    .execute(&mut **tx)
                    .await?;
            } else {
                sqlx::query(LENGTHEN_STREAK)
                    .bind(&f.destination_id)
                    .bind(f.now)
                    .execute(&mut **tx)
                    .await?;
                let reason = match &f.disable_destination {
                    Some(reason) => Some(reason.clone()),
                    None => {
                        let streak: Option<(i32, Option<i64>)> = sqlx::query_as(STREAK)
                            .bind(&f.destination_id)
                            .fetch_optional(&mut **tx)
                            .await?;
                        streak.and_then(|(n, since)| {
                            let streak = Streak {
                                consecutive_failures: n as u32,
                                failing_since: since,
                            };
                            f.auto_disable.reason(streak, f.now)
                        })
                    }
                };
                if let Some(reason) = reason {
                    let r = sqlx::query(DISABLE)
                        .bind(&f.destination_id)
                        .bind(&f.tenant_id)
                        .bind(&reason)
                        .bind(f.now)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() > 0 {
                        disabled = Some(reason);
                    }
                }
            }
        }
        Ok(Finished { applied, disabled })
    }

    async fn rescue_expired(&self, now: Millis) -> Result<u64> {
        let r = sqlx::query(RESCUE.as_str())
            .bind(now)
            .execute(self.write())
            .await?;
        if r.rows_affected() > 0 {
            let mut tx = self.write().begin().await?;
            Self::announce_work(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(r.rows_affected())
    }

    async fn release(&self, delivery_id: &str, attempt: u32, now: Millis) -> Result<bool> {
        let r = sqlx::query(RELEASE.as_str())
            .bind(delivery_id)
            .bind(attempt as i32)
            .bind(now)
            .execute(self.write())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn queue_stats(&self, now: Millis) -> Result<(u64, Option<Millis>)> {
        let (n, oldest): (i64, Option<i64>) = sqlx::query_as(QUEUE_STATS.as_str())
            .bind(now)
            .fetch_one(self.read())
            .await?;
        Ok((n as u64, oldest))
    }

    async fn next_due(&self) -> Result<Option<Millis>> {
        Ok(sqlx::query_scalar(NEXT_DUE.as_str())
            .fetch_one(self.read())
            .await?)
    }

    async fn claim_limited(
        tx: &mut Transaction<'_, Self::Db>,
        budget: u32,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<String>> {
        let candidates: Vec<String> = sqlx::query_scalar(LIMITED_CANDIDATES.as_str())
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
        if candidates.is_empty() || budget == 0 {
            return Ok(vec![]);
        }
        Self::limits_lock(tx).await?;
        let mut claimed = Vec::new();
        for dst in candidates {
            let Some(left) = budget.checked_sub(claimed.len() as u32).filter(|&n| n > 0) else {
                break;
            };
            type LimitsRow = (Option<i32>, Option<i32>, bool, Option<i64>, i32);
            let (max_in_flight, rate_limit, fifo, window, used): LimitsRow = sqlx::query_as(LIMITS)
                .bind(&dst)
                .fetch_one(&mut **tx)
                .await?;
            let in_flight: i64 = sqlx::query_scalar(IN_FLIGHT.as_str())
                .bind(&dst)
                .fetch_one(&mut **tx)
                .await?;
            let limits = Limits {
                max_in_flight: max_in_flight.map(|n| n.max(0) as u32),
                rate_limit: rate_limit.map(|n| n.max(0) as u32),
                fifo,
            };
            let used = allowance::used_in_window(window, used.max(0) as u64, now);
            let load = Load {
                in_flight: in_flight.max(0) as u64,
                sent_this_second: used,
            };
            let allowance = allowance::allowance(left, limits, load);
            if allowance == 0 {
                continue;
            }
            let ids: Vec<String> = if fifo {
                // Publish order: only the oldest unfinished delivery may go, and only
                // once it is due; everything behind it waits, retries included.
                let head: Option<(String, String, Option<i64>)> =
                    sqlx::query_as(FIFO_HEAD.as_str())
                        .bind(&dst)
                        .fetch_optional(&mut **tx)
                        .await?;
                match head {
                    Some((id, status, due))
                        if allowance::fifo_head_may_go(rows::status(&status)?, due, now) =>
                    {
                        sqlx::query_scalar(CLAIM_ONE.as_str())
                            .bind(&id)
                            .bind(lease_until)
                            .bind(now)
                            .fetch_all(&mut **tx)
                            .await?
                    }
                    _ => vec![],
                }
            } else {
                sqlx::query_scalar(CLAIM_OF_DESTINATION.as_str())
                    .bind(&dst)
                    .bind(now)
                    .bind(lease_until)
                    .bind(allowance as i64)
                    .fetch_all(&mut **tx)
                    .await?
            };
            if rate_limit.is_some() && !ids.is_empty() {
                sqlx::query(MOVE_RATE_WINDOW)
                    .bind(&dst)
                    .bind(allowance::rate_window(now))
                    .bind((used + ids.len() as u64) as i32)
                    .execute(&mut **tx)
                    .await?;
            }
            claimed.extend(ids);
        }
        Ok(claimed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_carry_the_statuses_as_literals() {
        assert!(CLAIM_OF_DESTINATION.contains("status IN ('scheduled', 'retrying')"));
        assert!(RESCUE.contains("SET status = 'retrying'"));
        assert!(RELEASE.contains("last_error = 'interrupted by shutdown'"));
    }

    #[test]
    fn a_recovery_batch_is_as_long_as_the_loop_expects() {
        assert!(RECOVER_BATCH.contains(&format!("LIMIT {RECOVERY_BATCH})")));
    }
}
