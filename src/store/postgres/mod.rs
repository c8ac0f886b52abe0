//! The production store: Postgres as the queue, shared by any number of Herald processes.
//!
//! Workers claim due deliveries with `FOR UPDATE SKIP LOCKED`, so two processes never claim the
//! same row and never wait for each other. Publishing sends `NOTIFY herald_work` inside the
//! transaction (delivered on commit), and every process `LISTEN`s, so an idle worker on any node
//! starts a new delivery within milliseconds instead of at its next poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Notify, mpsc};

use crate::inbound::waiters::Waiters;

use super::common::*;
use super::rows;
use super::seal::Keyring;
use super::{
    CallbackQuery, Claimed, DeliveryQuery, Finish, Finished, NewEvent, Published, Result, Scope,
    StoreError, TokenRecord,
};
use crate::domain::model::{Attempt, Delivery, Destination, Event, Recovery, Tenant};
use crate::domain::state::DeliveryStatus;
use crate::domain::time::Millis;
use crate::inbound::model::{Callback, CallbackEndpoint, Ingested};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock key of the maintenance leader ("HERALD01" in ASCII).
const MAINTENANCE_LOCK: i64 = 0x4845_5241_4c44_3031;

/// The advisory lock key serializing claims of limited destinations ("HERALD02").
const LIMITS_LOCK: i64 = 0x4845_5241_4c44_3032;

/// The advisory lock key serializing the start-up encryption key check ("HERALD03").
const KEYS_LOCK: i64 = 0x4845_5241_4c44_3033;

/// The channel publishers notify and workers listen on.
const WORK_CHANNEL: &str = "herald_work";
/// The channel ingest notifies (payload: the endpoint id) and every process's waiters listen on.
const CALLBACK_CHANNEL: &str = "herald_callbacks";

#[derive(Debug, Clone)]
pub struct PostgresStore {
    read: PgPool,
    /// The same pool as `read`: Postgres handles concurrent writers itself.
    write: PgPool,
    /// Seals and opens the credential columns (see [`super::seal`]). Every node sharing the
    /// database needs the same keys.
    keys: Arc<Keyring>,
    /// Endpoint ids with new callbacks, for [`spawn_callback_notifier`].
    callback_notices: mpsc::UnboundedSender<String>,
}

impl PostgresStore {
    pub async fn connect(url: &str, keys: Arc<Keyring>) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self {
            read: pool.clone(),
            callback_notices: spawn_callback_notifier(pool.clone()),
            write: pool,
            keys,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.write
    }

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

    /// Tells every process that `endpoint_id` has a new callback, right after its commit (see
    /// [`spawn_callback_notifier`] for why not inside the transaction).
    fn announce_callback(&self, endpoint_id: &str) {
        let _ = self.callback_notices.send(endpoint_id.to_string());
    }

    /// Moves each endpoint's cursor on by `n`; returns the new last cursors, in order. Two
    /// round trips whatever the batch: lock the rows in id order (so concurrent batches on
    /// several nodes cannot deadlock), then one `UPDATE … FROM UNNEST`. A round trip per
    /// endpoint was what capped group-committed ingest.
    async fn take_cursors(
        tx: &mut Transaction<'_, Postgres>,
        counts: &[(&str, i64)],
    ) -> Result<Vec<i64>> {
        let ids: Vec<&str> = counts.iter().map(|c| c.0).collect();
        let ns: Vec<i64> = counts.iter().map(|c| c.1).collect();
        let locked: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM callback_endpoints WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
        if locked.len() != ids.len() {
            return Err(StoreError::NotFound("callback endpoint"));
        }
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
}

/// Sends `NOTIFY herald_callbacks` (payload: the endpoint id) for callbacks just committed,
/// outside their transactions, coalescing whatever has queued up into one statement. Endpoint
/// ids are short ASCII, far below NOTIFY's 8000-byte payload limit.
///
/// Why not inside the ingest transaction: Postgres serializes the commits of all transactions
/// that notified (a global lock held through the WAL flush), which capped capture at one
/// commit per flush, about 1,400 callbacks/s on the benchmark machine. Outside, ingests commit
/// in parallel and share flushes. The price: if the process dies between a commit and its
/// notice, waiters on *other* nodes find that callback at their next read (at the latest when
/// their wait times out); waiters on this node are woken by the service in any case.
fn spawn_callback_notifier(pool: PgPool) -> mpsc::UnboundedSender<String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        // Ends when the last store handle (and so the last sender) is dropped.
        while rx.recv_many(&mut ids, 1024).await > 0 {
            ids.sort_unstable();
            ids.dedup();
            if let Err(e) = sqlx::query("SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id")
                .bind(CALLBACK_CHANNEL)
                .bind(&ids)
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, endpoints = ids.len(),
                    "NOTIFY of new callbacks failed; other nodes' waiters find them at their next read");
            }
            ids.clear();
        }
    });
    tx
}

impl super::common::HasDb for PostgresStore {
    type Db = Postgres;
}

impl_store!(PostgresStore, {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.write).await?;
        Ok(())
    }

    async fn claim(&self, limit: u32, now: Millis, lease_until: Millis) -> Result<Vec<Claimed>> {
        // Destinations with limits first, serialized across nodes (see `claim_limited`).
        let mut tx = self.write.begin().await?;
        let ids = Self::claim_limited(&mut tx, limit, now, lease_until).await?;
        let mut claimed = if ids.is_empty() {
            vec![]
        } else {
            const SQL: &str = concat!(
                "SELECT x.id AS delivery_id, x.tenant_id, x.event_id, x.destination_id, x.topic, \
                 x.attempt_count, x.manual, e.data, e.created_at AS event_created_at, \
                 r.slug AS reply_slug, ",
                rows::claim_destination_cols!(),
                " FROM deliveries x JOIN events e ON e.id = x.event_id \
                 LEFT JOIN destinations d ON d.id = x.destination_id \
                 LEFT JOIN callback_endpoints r ON r.event_id = x.event_id WHERE x.id = ANY($1)"
            );
            sqlx::query_as::<_, rows::ClaimRow>(SQL)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
        };
        tx.commit().await?;
        let rest = (limit as usize).saturating_sub(claimed.len());
        if rest > 0 {
            // Everything else in one statement, one round trip, committed on return: lock due
            // rows (skipping rows another worker holds), mark them delivering, and return them
            // joined with what the send needs.
            const SQL: &str = concat!(
                "WITH due AS ( \
                   SELECT x.id FROM deliveries x \
                   WHERE x.status IN ('scheduled', 'retrying') AND x.next_attempt_at <= $1 \
                   AND NOT EXISTS (SELECT 1 FROM destinations d WHERE d.id = x.destination_id \
                     AND (d.max_in_flight IS NOT NULL OR d.rate_limit IS NOT NULL OR d.fifo)) \
                   ORDER BY x.next_attempt_at LIMIT $3 FOR UPDATE OF x SKIP LOCKED \
                 ), claimed AS ( \
                   UPDATE deliveries x SET status = 'delivering', lease_expires_at = $2, \
                     attempt_count = x.attempt_count + 1, updated_at = $1 \
                   FROM due WHERE x.id = due.id \
                   RETURNING x.id, x.tenant_id, x.event_id, x.destination_id, x.topic, \
                     x.attempt_count, x.manual, x.next_attempt_at \
                 ) \
                 SELECT x.id AS delivery_id, x.tenant_id, x.event_id, x.destination_id, x.topic, \
                   x.attempt_count, x.manual, e.data, e.created_at AS event_created_at, \
                   r.slug AS reply_slug, ",
                rows::claim_destination_cols!(),
                " FROM claimed x JOIN events e ON e.id = x.event_id \
                 LEFT JOIN destinations d ON d.id = x.destination_id \
                 LEFT JOIN callback_endpoints r ON r.event_id = x.event_id \
                 ORDER BY x.next_attempt_at"
            );
            claimed.extend(
                sqlx::query_as::<_, rows::ClaimRow>(SQL)
                    .bind(now)
                    .bind(lease_until)
                    .bind(rest as i64)
                    .fetch_all(&self.write)
                    .await?,
            );
        }
        claimed.into_iter().map(|r| r.open(&self.keys)).collect()
    }

    fn watch_for_callbacks(&self, waiters: Arc<Waiters>) {
        let pool = self.write.clone();
        tokio::spawn(async move {
            let mut backoff = super::reconnect_backoff();
            loop {
                if let Err(e) = listen_for_callbacks(&pool, &waiters, &mut backoff).await {
                    let wait = super::next_wait(&mut backoff);
                    tracing::warn!(error = %e, ?wait, "LISTEN (callbacks) connection lost; reconnecting");
                    // Notifications sent while the listener was down are lost: wake everyone
                    // to re-read the store.
                    waiters.notify_all();
                    tokio::time::sleep(wait).await;
                }
            }
        });
    }

    fn watch_for_work(&self, wake: Arc<Notify>) {
        let pool = self.write.clone();
        tokio::spawn(async move {
            let mut backoff = super::reconnect_backoff();
            loop {
                match listen(&pool, &wake, &mut backoff).await {
                    Ok(()) => return,
                    Err(e) => {
                        let wait = super::next_wait(&mut backoff);
                        tracing::warn!(error = %e, ?wait, "LISTEN connection lost; reconnecting");
                        // Work published while the listener was down is found by polling, and
                        // one wake now makes the worker look at once.
                        wake.notify_one();
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
    }
});

/// Waits for the advisory lock `key`, held until the transaction ends.
async fn advisory_xact_lock(tx: &mut Transaction<'_, Postgres>, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn listen(
    pool: &PgPool,
    wake: &Notify,
    backoff: &mut backon::ExponentialBackoff,
) -> std::result::Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(WORK_CHANNEL).await?;
    *backoff = super::reconnect_backoff();
    loop {
        listener.recv().await?;
        wake.notify_one();
    }
}

async fn listen_for_callbacks(
    pool: &PgPool,
    waiters: &Waiters,
    backoff: &mut backon::ExponentialBackoff,
) -> std::result::Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CALLBACK_CHANNEL).await?;
    *backoff = super::reconnect_backoff();
    // Anything stored before LISTEN took effect is found by the waiters' own store reads.
    waiters.notify_all();
    loop {
        let n = listener.recv().await?;
        waiters.notify(n.payload());
    }
}
