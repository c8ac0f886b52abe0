//! The production store: Postgres as the queue, shared by any number of Herald processes.
//!
//! Workers claim due deliveries with `FOR UPDATE SKIP LOCKED`, so two processes never claim the
//! same row and never wait for each other. Publishing sends `NOTIFY herald_work` right after its
//! commit (coalesced, see [`notify`]), and every process `LISTEN`s, so an idle worker on
//! any node starts a new delivery within milliseconds instead of at its next poll. (Rarer writes
//! that schedule work, such as replays and recoveries, notify inside their transaction.)

mod unnest;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
mod notify;

use notify::{CALLBACK_CHANNEL, Notifier, WORK_CHANNEL};

use super::dialect::{Dialect, Pools};
use super::queries::Deliveries;
use super::rows;
use super::seal::Keyring;
use super::sql::{self, Sql};
use super::{Claimed, Finish, Finished, Result, StoreError};
use crate::domain::callback::{Callback, Ingested};
use crate::domain::model::Attempt;
use crate::domain::state::{DeliveryStatus, Transition};
use crate::domain::time::Millis;
use unnest::{Arrays, Unnest};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock key of the maintenance leader ("HERALD01" in ASCII).
const MAINTENANCE_LOCK: i64 = 0x4845_5241_4c44_3031;

/// The advisory lock key serializing claims of limited destinations ("HERALD02").
const LIMITS_LOCK: i64 = 0x4845_5241_4c44_3032;

/// The advisory lock key serializing the start-up encryption key check ("HERALD03").
const KEYS_LOCK: i64 = 0x4845_5241_4c44_3033;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// `read` and `write` are the same pool: Postgres handles concurrent writers itself.
    pools: Pools<Postgres>,
    /// Endpoint ids with new callbacks, sent to the other nodes (see [`Notifier`]).
    callback_notices: Notifier,
    /// Publishes with due deliveries, for the `herald_work` notifier.
    work_notices: Notifier,
}

impl PostgresStore {
    pub async fn connect(url: &str, keys: Arc<Keyring>) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out by default: one more round trip per
            // statement, a good part of each capture's cost. A connection used within the
            // last second is taken as alive (if Postgres went away meanwhile, that one
            // statement fails and is retried like any other failure); one idle for longer
            // is still pinged, and replaced if dead.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(1) {
                        use sqlx::Connection;
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        Ok(Self {
            callback_notices: Notifier::start(pool.clone(), CALLBACK_CHANNEL),
            work_notices: Notifier::start(pool.clone(), WORK_CHANNEL),
            pools: Pools {
                read: pool.clone(),
                write: pool,
                keys,
            },
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pools.write
    }
}

#[async_trait::async_trait]
impl Dialect for PostgresStore {
    type Db = Postgres;

    /// Maintenance (retention) runs on one node at a time: whoever takes this transaction-scoped
    /// advisory lock does the work, the others skip their turn. No lock outlives its
    /// transaction, so a crashed leader never blocks the rest.
    async fn maintenance_lock(tx: &mut Transaction<'_, Postgres>) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(MAINTENANCE_LOCK)
            .fetch_one(&mut **tx)
            .await?)
    }

    /// Serializes claims of limited destinations across every node, for this transaction.
    async fn limits_lock(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        advisory_xact_lock(tx, LIMITS_LOCK).await
    }

    /// Replaced row versions stay in the table files until vacuumed, and rewriting tables
    /// (`VACUUM FULL`) takes locks a node should not take on its own at start: SECURITY.md
    /// tells the operator to run it once after upgrading an existing database.
    async fn scrub_replaced_values(&self) -> Result<()> {
        Ok(())
    }

    /// Serializes the start-up encryption key check of every node, for this transaction.
    async fn keys_lock(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        advisory_xact_lock(tx, KEYS_LOCK).await
    }

    /// Tells every listening worker there is new due work (sent when the transaction commits).
    async fn announce_work(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WORK_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// `NOTIFY herald_event_types` in the changing transaction: Postgres sends it at commit.
    async fn announce_catalog(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(notify::CATALOG_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Tells every listening worker that a publish just committed due work: through the same
    /// coalescing notifier as callbacks ([`Notifier`]), because a `NOTIFY` inside each
    /// publish transaction serialized their commits. This process's own worker is woken
    /// directly by the service.
    fn announce_work_committed(&self) {
        self.work_notices.send(String::new());
    }

    /// Tells every process that `endpoint_id` has a new callback, right after its commit (see
    /// [`Notifier`] for why not inside the transaction).
    fn announce_callback(&self, endpoint_id: &str) {
        self.callback_notices.send(endpoint_id.to_string());
    }

    /// Other processes share the database: their notices, as a stream the caller drives.
    fn listen(&self) -> Option<crate::store::NewsStream> {
        Some(notify::news(self.pools.write.clone()))
    }

    /// Sends the notices still queued and ends both notifier tasks.
    async fn close_notifiers(&self) {
        self.work_notices.close().await;
        self.callback_notices.close().await;
    }

    /// Locks the rows of `ids` (sorted) for this transaction, in id order: batches that share
    /// endpoints queue behind each other instead of deadlocking. `NotFound` if one is gone.
    async fn lock_endpoints(tx: &mut Transaction<'_, Postgres>, ids: &[&str]) -> Result<()> {
        let locked: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM callback_endpoints WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        if locked.len() != ids.len() {
            return Err(StoreError::NotFound("callback endpoint"));
        }
        Ok(())
    }

    /// Moves each endpoint's cursor on by `n` (rows already locked by [`Self::lock_endpoints`]);
    /// returns the new last cursors, in order. One `UPDATE … FROM UNNEST` whatever the batch: a
    /// round trip per endpoint was what capped group-committed ingest.
    async fn take_cursors(
        tx: &mut Transaction<'_, Postgres>,
        counts: &[(&str, i64)],
    ) -> Result<Vec<i64>> {
        let ids: Vec<&str> = counts.iter().map(|c| c.0).collect();
        let ns: Vec<i64> = counts.iter().map(|c| c.1).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE callback_endpoints e SET last_cursor = e.last_cursor + v.n, \
             received_count = e.received_count + v.n \
             FROM UNNEST($1::text[], $2::int8[]) AS v(id, n) WHERE e.id = v.id \
             RETURNING e.id, e.last_cursor",
        )
        .bind(&ids)
        .bind(&ns)
        .fetch_all(&mut **tx)
        .await?;
        let last: std::collections::HashMap<String, i64> = rows.into_iter().collect();
        ids.iter()
            .map(|id| {
                last.get(*id)
                    .copied()
                    .ok_or(StoreError::NotFound("callback endpoint"))
            })
            .collect()
    }

    /// Records a batch of successful attempts in one autocommitted statement: insert the
    /// attempt rows, mark each delivery `succeeded` if it is still ours (`delivering` with
    /// the claimed attempt number; otherwise its lease expired and another worker took it
    /// over), and end the failure streak of the destinations that succeeded. One round trip
    /// and one prepared statement for any batch size, where the transaction of separate
    /// statements took five round trips and a statement per batch size. Returns whether each
    /// outcome applied, in order.
    ///
    /// Failures take the transaction (`finish_in_tx`): they read streaks and may disable a
    /// destination, which depends on what the statements before them wrote.
    async fn finish_successes_in_one_statement(
        &self,
        fs: &[Finish],
    ) -> Result<Option<Vec<Finished>>> {
        let Some(attempts) = fs
            .iter()
            .map(|f| {
                f.attempt
                    .as_ref()
                    .filter(|_| f.next == DeliveryStatus::Succeeded)
            })
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let col = |f: fn(&Attempt) -> Option<&str>| attempts.iter().map(|a| f(a)).collect();
        let mut v = Arrays::new();
        v.array("id", "text", col(|a| Some(&a.id)))
            .array("delivery_id", "text", col(|a| Some(&a.delivery_id)))
            .array(
                "attempt",
                "int4",
                attempts.iter().map(|a| a.attempt as i32).collect(),
            )
            .array("trigger", "text", col(|a| Some(a.trigger.as_str())))
            .array(
                "started_at",
                "int8",
                attempts.iter().map(|a| a.started_at).collect(),
            )
            .array(
                "duration_ms",
                "int8",
                attempts.iter().map(|a| a.duration_ms as i64).collect(),
            )
            .array("url", "text", col(|a| a.url.as_deref()))
            .array(
                "status_code",
                "int4",
                attempts
                    .iter()
                    .map(|a| a.status_code.map(i32::from))
                    .collect(),
            )
            .array(
                "error_kind",
                "text",
                col(|a| a.error_kind.map(|k| k.as_str())),
            )
            .array("error", "text", col(|a| a.error.as_deref()))
            .array(
                "request_headers",
                "text",
                attempts
                    .iter()
                    .map(|a| rows::to_json(&a.request_headers))
                    .collect(),
            )
            .array(
                "response_headers",
                "text",
                attempts
                    .iter()
                    .map(|a| rows::to_json(&a.response_headers))
                    .collect(),
            )
            .array("response_body", "text", col(|a| a.response_body.as_deref()))
            .array(
                "tenant_id",
                "text",
                fs.iter().map(|f| f.tenant_id.as_str()).collect(),
            )
            .array(
                "claimed_attempt",
                "int4",
                fs.iter().map(|f| f.attempt_number as i32).collect(),
            )
            .array("now", "int8", fs.iter().map(|f| f.now).collect());
        let (sql, args) = FINISH_SUCCESSES_ONE_STATEMENT.bind(v)?;
        let applied: std::collections::HashSet<String> = sqlx::query_scalar_with(sql, args)
            .fetch_all(&self.pools.write)
            .await?
            .into_iter()
            .collect();
        Ok(Some(
            fs.iter()
                .map(|f| Finished {
                    applied: applied.contains(&f.delivery_id),
                    disabled: None,
                })
                .collect(),
        ))
    }

    /// Stores a batch of captures in one autocommitted statement: one round trip and one WAL
    /// flush for the batch, where a transaction of separate statements took five round trips
    /// and a second transaction for the notices. What it does, in order:
    ///
    /// 1. locks every endpoint row of the batch, in id order (so concurrent batches, on this
    ///    node or another, queue behind each other and never deadlock), and checks all exist;
    /// 2. finds the callbacks whose sender's delivery id was stored before (`dup`);
    /// 3. moves each endpoint's cursor on by its new accepted callbacks, and counts rejected
    ///    ones and duplicates;
    /// 4. inserts the new callbacks, accepted ones numbered on from the old cursor in batch
    ///    order, rejected ones without a cursor;
    ///
    /// Other nodes' waiters hear of the new callbacks from the [`Notifier`].
    ///
    /// If an endpoint is gone, nothing is written and `NotFound` sends the batch one by one. A
    /// duplicate stored by a concurrent batch after this statement's snapshot breaks the
    /// unique dedupe index instead: the statement fails whole, and the one-by-one path (which
    /// reads after taking the lock) answers `Duplicate`. Returns `None`, writing nothing, for
    /// a batch that repeats a delivery id within itself (the one-by-one path orders those).
    async fn ingest_in_one_statement(&self, cs: &[Callback]) -> Result<Option<Vec<Ingested>>> {
        use crate::domain::callback::CallbackStatus;
        let mut keys = std::collections::HashSet::new();
        for c in cs {
            if c.status == CallbackStatus::Accepted
                && let Some(k) = &c.dedupe_key
                && !keys.insert((c.endpoint_id.as_str(), k.as_str()))
            {
                return Ok(None);
            }
        }
        let endpoints: std::collections::HashSet<&str> =
            cs.iter().map(|c| c.endpoint_id.as_str()).collect();
        let col = |f: fn(&Callback) -> Option<&str>| cs.iter().map(f).collect();
        let mut v = Arrays::new();
        v.array("id", "text", col(|c| Some(&c.id)))
            .array("endpoint_id", "text", col(|c| Some(&c.endpoint_id)))
            .array("tenant_id", "text", col(|c| c.tenant_id.as_deref()))
            .array("method", "text", col(|c| Some(&c.method)))
            .array("path", "text", col(|c| Some(&c.path)))
            .array("query", "text", col(|c| c.query.as_deref()))
            .array(
                "headers",
                "text",
                cs.iter().map(|c| rows::to_json(&c.headers)).collect(),
            )
            .array(
                "body",
                "bytea",
                cs.iter().map(|c| c.body.as_slice()).collect(),
            )
            .array("content_type", "text", col(|c| c.content_type.as_deref()))
            .array("remote_addr", "text", col(|c| c.remote_addr.as_deref()))
            .array(
                "received_at",
                "int8",
                cs.iter().map(|c| c.received_at).collect(),
            )
            .array("verified", "bool", cs.iter().map(|c| c.verified).collect())
            .array("status", "text", col(|c| Some(c.status.as_str())))
            .array("reject_reason", "text", col(|c| c.reject_reason.as_deref()))
            .array("dedupe_key", "text", col(|c| c.dedupe_key.as_deref()))
            .array(
                "a2a_task_id",
                "text",
                col(|c| c.a2a.as_ref().map(|a| a.task_id.as_str())),
            )
            .array(
                "a2a_state",
                "text",
                col(|c| c.a2a.as_ref().and_then(|a| a.state.as_deref())),
            )
            .array("acked_at", "int8", cs.iter().map(|c| c.acked_at).collect())
            .plain("endpoints", endpoints.len() as i64);
        let (sql, args) = INGEST_ONE_STATEMENT.bind(v)?;
        let rows: Vec<(Option<String>, Option<i64>, Option<String>)> =
            sqlx::query_as_with(sql, args)
                .fetch_all(&self.pools.write)
                .await?;
        let mut by_id: std::collections::HashMap<String, Ingested> = Default::default();
        for (id, cursor, original_id) in rows {
            let Some(id) = id else { continue };
            let r = match (cursor, original_id) {
                (_, Some(original_id)) => Ingested::Duplicate { original_id },
                (Some(cursor), None) => Ingested::Stored { cursor },
                (None, None) => Ingested::Rejected,
            };
            by_id.insert(id, r);
        }
        if by_id.is_empty() {
            return Err(StoreError::NotFound("callback endpoint"));
        }
        let out = cs
            .iter()
            .map(|c| {
                by_id.remove(&c.id).ok_or_else(|| {
                    StoreError::Corrupt(format!("callback {} missing from its batch", c.id))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for (c, r) in cs.iter().zip(&out) {
            if matches!(r, Ingested::Stored { .. }) {
                self.announce_callback(&c.endpoint_id);
            }
        }
        Ok(Some(out))
    }

    const KIND: &'static str = "postgres";

    fn pools(&self) -> &Pools<Self::Db> {
        &self.pools
    }

    /// `migrations/postgres`: the same tables and columns as the SQLite schema, in Postgres'
    /// types, so the shared queries run on both.
    async fn migrate_schema(&self) -> Result<()> {
        MIGRATOR.run(&self.pools.write).await?;
        Ok(())
    }

    /// Differs from the SQLite claim because several processes claim at once: the free
    /// destinations are claimed in one autocommitted statement that skips rows another
    /// worker holds, and only a due limited destination costs the serialized transaction.
    async fn claim_due(
        &self,
        limit: u32,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<Claimed>> {
        // Destinations with limits are claimed apart, serialized across nodes (see
        // `claim_limited`), and left out of the free claim below. There are usually none, so
        // one autocommitted look (an index-only scan of `destinations_limited`) decides whether
        // the serialized transaction is needed at all.
        let limited: Vec<(String, bool)> = sqlx::query_as(LIMITED.as_str())
            .bind(now)
            .fetch_all(&self.pools.write)
            .await?;
        let mut claimed = vec![];
        if limited.iter().any(|(_, due)| *due) {
            let mut tx = self.pools.write.begin().await?;
            let ids = Self::claim_limited(&mut tx, limit, now, lease_until).await?;
            if !ids.is_empty() {
                claimed = sqlx::query_as::<_, rows::ClaimRow>(CLAIMED_LIMITED.as_str())
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        let rest = (limit as usize).saturating_sub(claimed.len());
        if rest > 0 {
            // Everything else in one statement, one round trip, committed on return: lock due
            // rows (skipping rows another worker holds), mark them delivering, and return them
            // joined with what the send needs.
            //
            // The shape is chosen for the planner. Excluding limited destinations by a list
            // (not `NOT EXISTS` on `destinations`) leaves a plain filter, so `deliveries_due` is
            // walked in order and the walk stops after `$3` rows; with the anti-join the
            // planner, misled by a young table's statistics, read and sorted the whole backlog
            // on every claim (10 ms per 64 rows at an 8,000 backlog, against 0.2 ms). The
            // update finds its rows by `ctid` (a TID scan; the row lock keeps them in place)
            // rather than by a join on `id` it liked to plan as a sequential scan.
            //
            // A destination that gains limits between the look above and this statement may
            // have one batch claimed without them, as a send already in flight would be.
            let excluded: Vec<&str> = limited.iter().map(|(id, _)| id.as_str()).collect();
            claimed.extend(
                sqlx::query_as::<_, rows::ClaimRow>(CLAIM_FREE.as_str())
                    .bind(now)
                    .bind(lease_until)
                    .bind(rest as i64)
                    .bind(&excluded)
                    .fetch_all(&self.pools.write)
                    .await?,
            );
        }
        rows::open_claims(claimed, &self.pools.keys)
    }
}

/// A batch of captures in one statement (see [`PostgresStore::ingest_in_one_statement`]): the
/// rows to insert, the endpoints to lock, the duplicates to count, the notices to send.
static INGEST_ONE_STATEMENT: Unnest = Unnest::new(|p| {
    format!(
        "\
WITH v AS ( \
  SELECT * FROM UNNEST({arrays}) WITH ORDINALITY AS v({columns}, ord) \
), locked AS ( \
  SELECT e.id FROM callback_endpoints e WHERE e.id IN (SELECT endpoint_id FROM v) \
  ORDER BY e.id FOR UPDATE \
), checked AS ( \
  SELECT count(*) = {endpoints} AS ok FROM locked \
), dup AS ( \
  SELECT v.id, o.id AS original_id FROM v CROSS JOIN LATERAL ( \
    SELECT c.id FROM callbacks c WHERE c.endpoint_id = v.endpoint_id \
      AND c.dedupe_key = v.dedupe_key AND c.status = 'accepted' LIMIT 1) o \
  WHERE v.status = 'accepted' AND v.dedupe_key IS NOT NULL \
), fresh AS ( \
  SELECT v.*, row_number() OVER (PARTITION BY v.endpoint_id, v.status ORDER BY v.ord) AS k \
  FROM v WHERE NOT EXISTS (SELECT 1 FROM dup WHERE dup.id = v.id) \
), counts AS ( \
  SELECT v.endpoint_id, \
    count(*) FILTER (WHERE v.status = 'accepted' AND d.id IS NULL) AS accepted, \
    count(*) FILTER (WHERE v.status = 'rejected') AS rejected, \
    count(d.id) AS duplicates \
  FROM v LEFT JOIN dup d ON d.id = v.id GROUP BY v.endpoint_id \
), upd AS ( \
  UPDATE callback_endpoints e SET last_cursor = e.last_cursor + c.accepted, \
    received_count = e.received_count + c.accepted, \
    rejected_count = e.rejected_count + c.rejected, \
    duplicate_count = e.duplicate_count + c.duplicates \
  FROM counts c WHERE e.id = c.endpoint_id AND (SELECT ok FROM checked) \
  RETURNING e.id, e.last_cursor - c.accepted AS base, c.accepted \
), ins AS ( \
  INSERT INTO callbacks (id, endpoint_id, tenant_id, cursor, method, path, query, headers, body, \
    content_type, remote_addr, received_at, verified, status, reject_reason, dedupe_key, \
    a2a_task_id, a2a_state, acked_at) \
  SELECT f.id, f.endpoint_id, f.tenant_id, \
    CASE WHEN f.status = 'accepted' THEN u.base + f.k END, f.method, f.path, f.query, \
    f.headers, f.body, f.content_type, f.remote_addr, f.received_at, f.verified, f.status, \
    f.reject_reason, f.dedupe_key, f.a2a_task_id, f.a2a_state, f.acked_at \
  FROM fresh f JOIN upd u ON u.id = f.endpoint_id \
  RETURNING id, cursor \
) \
SELECT i.id, i.cursor, NULL::text AS original_id FROM ins i \
UNION ALL SELECT d.id, NULL, d.original_id FROM dup d WHERE (SELECT ok FROM checked)",
        arrays = p.arrays,
        columns = p.columns,
        endpoints = p.param("endpoints"),
    )
});

/// Limited destinations, and whether each has due work (`$1` now).
static LIMITED: Sql = Sql::new(|| {
    format!(
        "SELECT d.id, d.enabled AND EXISTS (SELECT 1 FROM deliveries x \
           WHERE x.destination_id = d.id AND x.status IN ({pending}) \
           AND x.next_attempt_at <= $1) \
         FROM destinations d \
         WHERE d.max_in_flight IS NOT NULL OR d.rate_limit IS NOT NULL OR d.fifo",
        pending = sql::statuses(DeliveryStatus::PENDING),
    )
});

/// The claim of destinations without limits (see `claim_due` for why this shape).
static CLAIM_FREE: Sql = Sql::new(|| {
    let t = Transition::CLAIM;
    format!(
        "WITH due AS ( \
           SELECT x.ctid AS row_id, x.id FROM deliveries x \
           WHERE x.status IN ({from}) AND x.next_attempt_at <= $1 \
           AND x.destination_id <> ALL($4) \
           ORDER BY x.next_attempt_at LIMIT $3 FOR UPDATE OF x SKIP LOCKED \
         ), claimed AS ( \
           UPDATE deliveries x SET status = {to}, lease_expires_at = $2, \
             attempt_count = x.attempt_count + 1, updated_at = $1 \
           FROM due WHERE x.ctid = due.row_id AND x.id = due.id \
           RETURNING x.id, x.tenant_id, x.event_id, x.destination_id, x.topic, \
             x.attempt_count, x.manual, x.next_attempt_at \
         ) \
         SELECT x.id AS delivery_id, x.tenant_id, x.event_id, x.destination_id, x.topic, \
           x.attempt_count, x.manual, e.data, e.created_at AS event_created_at, \
           r.slug AS reply_slug, e.traceparent, {destination} \
         FROM claimed x JOIN events e ON e.id = x.event_id \
         LEFT JOIN destinations d ON d.id = x.destination_id \
         LEFT JOIN callback_endpoints r ON r.event_id = x.event_id \
         ORDER BY x.next_attempt_at",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
        destination = rows::CLAIM_DESTINATION,
    )
});

/// The claimed deliveries of limited destinations loaded for sending (`$1` their ids). Differs
/// from the SQLite version because Postgres takes the ids as an array (`ANY`); their order is
/// the claim's, as `claim_limited` returns them.
static CLAIMED_LIMITED: Sql =
    Sql::new(|| format!("{} WHERE x.id = ANY($1)", rows::CLAIMED.as_str()));

/// A batch of successful outcomes in one statement (see
/// [`PostgresStore::finish_successes_in_one_statement`]).
static FINISH_SUCCESSES_ONE_STATEMENT: Unnest = Unnest::new(|p| {
    let t = Transition::SUCCEED;
    format!(
        "\
WITH v AS ( \
  SELECT * FROM UNNEST({arrays}) AS v({columns}) \
), ins AS ( \
  INSERT INTO attempts (id, delivery_id, attempt, trigger, started_at, duration_ms, url, \
    status_code, error_kind, error, request_headers, response_headers, response_body, tenant_id) \
  SELECT id, delivery_id, attempt, trigger, started_at, duration_ms, url, status_code, \
    error_kind, error, request_headers, response_headers, response_body, tenant_id FROM v \
), upd AS ( \
  UPDATE deliveries x SET status = {to}, next_attempt_at = NULL, lease_expires_at = NULL, \
    manual = FALSE, last_status_code = v.status_code, last_error = NULL, updated_at = v.now, \
    finalized_at = v.now \
  FROM v WHERE x.id = v.delivery_id AND x.status IN ({from}) \
    AND x.attempt_count = v.claimed_attempt \
  RETURNING x.id, x.destination_id \
), reset AS ( \
  UPDATE destinations d SET consecutive_failures = 0, failing_since = NULL \
  WHERE d.id IN (SELECT destination_id FROM upd) \
    AND (d.consecutive_failures > 0 OR d.failing_since IS NOT NULL) \
) \
SELECT id FROM upd",
        arrays = p.arrays,
        columns = p.columns,
        to = sql::status(t.to),
        from = sql::statuses(t.from),
    )
});

/// Waits for the advisory lock `key`, held until the transaction ends.
async fn advisory_xact_lock(tx: &mut Transaction<'_, Postgres>, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
