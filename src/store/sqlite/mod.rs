//! The embedded store: one SQLite file, WAL mode, a single writer connection.
//!
//! SQLite allows one writer at a time. Rather than let concurrent write transactions fail with
//! `SQLITE_BUSY`, every write goes through a one-connection pool (writers queue in Rust), while
//! reads use a separate pool and, thanks to WAL, never wait for the writer. The claim needs no
//! `SKIP LOCKED`: with one writer, claims are serialized by construction.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use super::dialect::{Dialect, Pools};
use super::queries::Deliveries;
use super::rows;
use super::seal::Keyring;
use super::sql::{self, Sql};
use super::{Claimed, Finish, Finished, Result, StoreError};
use crate::domain::callback::{Callback, Ingested};
use crate::domain::state::Transition;
use crate::domain::time::Millis;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Claims up to `$3` due deliveries of destinations without limits (`$1` now, `$2` lease
/// until). Differs from the Postgres claim because SQLite has one writer: no `SKIP LOCKED`,
/// and the limited destinations are left out with a plain `NOT EXISTS`.
static CLAIM_FREE: Sql = Sql::new(|| {
    let t = Transition::CLAIM;
    format!(
        "UPDATE deliveries SET status = {to}, lease_expires_at = $2, \
         attempt_count = attempt_count + 1, updated_at = $1 \
         WHERE id IN (SELECT x.id FROM deliveries x WHERE x.status IN ({from}) \
                      AND x.next_attempt_at <= $1 AND NOT EXISTS (SELECT 1 FROM destinations d \
                        WHERE d.id = x.destination_id \
                        AND (d.max_in_flight IS NOT NULL OR d.rate_limit IS NOT NULL OR d.fifo)) \
                      ORDER BY x.next_attempt_at LIMIT $3) \
         RETURNING id",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
    )
});

/// The claimed deliveries loaded for sending (`$1` their ids, a JSON array). Differs from the
/// Postgres version because SQLite has no array parameters: the ids go in as JSON and
/// `json_each` unpacks them. In due order, as the Postgres claim returns them.
static CLAIMED: Sql = Sql::new(|| {
    format!(
        "{} WHERE x.id IN (SELECT value FROM json_each($1)) ORDER BY x.next_attempt_at, x.id",
        rows::CLAIMED.as_str()
    )
});

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pools: Pools<Sqlite>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file a `sqlite://path` URL names; credentials
    /// are sealed with `keys`.
    pub async fn connect(url: &str, keys: Arc<Keyring>) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives a power cut, matching Postgres' default durability.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self {
            pools: Pools { read, write, keys },
        })
    }
}

#[async_trait::async_trait]
impl Dialect for SqliteStore {
    type Db = Sqlite;

    /// The single writer already serializes claims of limited destinations.
    async fn limits_lock(_tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// The single writer already serializes the start-up key check.
    async fn keys_lock(_tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// After values were sealed, their clear (or old-key) versions still sit in the WAL and
    /// in freed pages of the file: rewrite the file and empty the WAL so they are gone from
    /// disk. Rare (an upgrade or a key rotation) and quick for a database of this size.
    async fn scrub_replaced_values(&self) -> Result<()> {
        sqlx::query("VACUUM").execute(&self.pools.write).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pools.write)
            .await?;
        Ok(())
    }

    /// One process owns an SQLite file: maintenance needs no lock between nodes.
    async fn maintenance_lock(_tx: &mut Transaction<'_, Sqlite>) -> Result<bool> {
        Ok(true)
    }

    /// Nothing to announce: no other process shares the file, and this process's catalog cache
    /// is dropped by the service that made the change.
    async fn announce_catalog(_tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// Nothing to announce: the worker in this process is woken by the in-process notifier.
    async fn announce_work(_tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// Nothing to announce: the worker in this process is woken by the in-process notifier.
    fn announce_work_committed(&self) {}

    /// Nothing to announce: waiters in this process are woken by the service after commit.
    fn announce_callback(&self, _endpoint_id: &str) {}

    /// Always the transaction of separate statements: SQLite runs in-process, so statements
    /// cost no round trips (see `PostgresStore::ingest_in_one_statement`).
    async fn ingest_in_one_statement(&self, _cs: &[Callback]) -> Result<Option<Vec<Ingested>>> {
        Ok(None)
    }

    /// Always the transaction of separate statements, as for captures.
    async fn finish_successes_in_one_statement(
        &self,
        _fs: &[Finish],
    ) -> Result<Option<Vec<Finished>>> {
        Ok(None)
    }

    /// Nothing to lock: SQLite has one writer, so a batch's transaction holds every row.
    async fn lock_endpoints(_tx: &mut Transaction<'_, Sqlite>, _ids: &[&str]) -> Result<()> {
        Ok(())
    }

    /// Moves each endpoint's cursor on by `n`; returns the new last cursors, in order. One
    /// statement per endpoint costs nothing here: SQLite runs in-process.
    async fn take_cursors(
        tx: &mut Transaction<'_, Sqlite>,
        counts: &[(&str, i64)],
    ) -> Result<Vec<i64>> {
        let mut lasts = Vec::with_capacity(counts.len());
        for (endpoint_id, n) in counts {
            let last: Option<i64> = sqlx::query_scalar(
                "UPDATE callback_endpoints SET last_cursor = last_cursor + $2, \
                 received_count = received_count + $2 WHERE id = $1 RETURNING last_cursor",
            )
            .bind(endpoint_id)
            .bind(n)
            .fetch_optional(&mut **tx)
            .await?;
            lasts.push(last.ok_or(StoreError::NotFound("callback endpoint"))?);
        }
        Ok(lasts)
    }

    const KIND: &'static str = "sqlite";

    fn pools(&self) -> &Pools<Self::Db> {
        &self.pools
    }

    /// `migrations/sqlite`: the same tables and columns as the Postgres schema, in SQLite's
    /// types, so the shared queries run on both.
    async fn migrate_schema(&self) -> Result<()> {
        MIGRATOR.run(&self.pools.write).await?;
        Ok(())
    }

    /// Differs from the Postgres claim because SQLite has one writer: the limited and the
    /// free destinations are claimed in one transaction with no row locks to take or skip,
    /// and the claimed rows are loaded after, in the same transaction.
    async fn claim_due(
        &self,
        limit: u32,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<Claimed>> {
        let mut tx = self.pools.write.begin().await?;
        let mut ids = Self::claim_limited(&mut tx, limit, now, lease_until).await?;
        let free: Vec<String> = sqlx::query_scalar(CLAIM_FREE.as_str())
            .bind(now)
            .bind(lease_until)
            .bind((limit as usize).saturating_sub(ids.len()) as i64)
            .fetch_all(&mut *tx)
            .await?;
        ids.extend(free);
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let claimed = sqlx::query_as::<_, rows::ClaimRow>(CLAIMED.as_str())
            .bind(rows::to_json(&ids))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows::open_claims(claimed, &self.pools.keys)
    }
}
