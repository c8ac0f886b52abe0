//! What each SQL dialect must provide to the shared queries.
//!
//! The shared queries (`queries`) are written once for both databases; where SQLite and
//! Postgres need different statements, locks or wake-ups, they call one of these hooks. Each
//! implementation says, next to its code, why it differs from the other.

use async_trait::async_trait;
use sqlx::Transaction;

use super::seal::Keyring;
use super::{Claimed, Finish, Finished, NewsStream, Result};
use crate::domain::callback::{Callback, Ingested};
use crate::domain::time::Millis;

/// What every store holds.
#[derive(Debug)]
pub(crate) struct Pools<DB: sqlx::Database> {
    /// Where reads go: on SQLite a separate read-only pool (WAL readers never wait for the
    /// writer); on Postgres the same pool as `write`.
    pub read: sqlx::Pool<DB>,
    /// Where writes go: on SQLite one connection, so writers queue in Rust instead of failing
    /// with `SQLITE_BUSY`; on Postgres the pool, which handles concurrent writers itself.
    pub write: sqlx::Pool<DB>,
    /// Seals and opens the credential columns (see [`super::seal`]). Every node sharing a
    /// database needs the same keys.
    pub keys: std::sync::Arc<Keyring>,
}

impl<DB: sqlx::Database> Clone for Pools<DB> {
    fn clone(&self) -> Self {
        Pools {
            read: self.read.clone(),
            write: self.write.clone(),
            keys: self.keys.clone(),
        }
    }
}

#[async_trait]
pub(crate) trait Dialect: Send + Sync {
    /// The sqlx database the shared queries run on.
    type Db: sqlx::Database<QueryResult: RowsAffected>;

    /// `Store::kind`: `sqlite` or `postgres`.
    const KIND: &'static str;

    /// The store's pools and keys.
    fn pools(&self) -> &Pools<Self::Db>;

    /// The pool reads go to ([`Pools::read`]).
    fn read(&self) -> &sqlx::Pool<Self::Db> {
        &self.pools().read
    }

    /// The pool writes go to ([`Pools::write`]).
    fn write(&self) -> &sqlx::Pool<Self::Db> {
        &self.pools().write
    }

    /// The keys credentials are sealed with ([`Pools::keys`]).
    fn keys(&self) -> &Keyring {
        &self.pools().keys
    }

    /// `Store::migrate`: each dialect has its own migrations.
    async fn migrate_schema(&self) -> Result<()>;

    /// `Store::claim`: the claim is where the dialects differ most (row locks, plan shapes).
    async fn claim_due(&self, limit: u32, now: Millis, lease_until: Millis)
    -> Result<Vec<Claimed>>;

    /// `Store::news`: what other processes sharing the database announce, if any can.
    fn listen(&self) -> Option<NewsStream> {
        None
    }

    /// `Store::close`: sends the announcements still queued and ends whatever the dialect
    /// started to send them.
    async fn close_notifiers(&self) {}

    /// Serializes, for this transaction, every claim of destinations with limits, across every
    /// process sharing the database: two claims never both see the same free slot.
    async fn limits_lock(tx: &mut Transaction<'_, Self::Db>) -> Result<()>;

    /// Serializes, for this transaction, the start-up check of the encryption key ids.
    async fn keys_lock(tx: &mut Transaction<'_, Self::Db>) -> Result<()>;

    /// Whether this transaction may do the maintenance (retention) turn: true for exactly one
    /// of the processes asking at a time.
    async fn maintenance_lock(tx: &mut Transaction<'_, Self::Db>) -> Result<bool>;

    /// Tells other processes' workers, when this transaction commits, that it scheduled work.
    async fn announce_work(tx: &mut Transaction<'_, Self::Db>) -> Result<()>;

    /// Tells other processes, when this transaction commits, that the event-type catalog
    /// changed: they drop the schemas they compiled. Catalog changes are rare, so unlike work
    /// and callbacks this is announced inside the transaction (commit-time delivery, nothing
    /// announced for a change rolled back).
    async fn announce_catalog(tx: &mut Transaction<'_, Self::Db>) -> Result<()>;

    /// Tells other processes' workers that a publish just committed due work.
    fn announce_work_committed(&self);

    /// Tells other processes' waiters that `endpoint_id` just got a callback (after commit).
    fn announce_callback(&self, endpoint_id: &str);

    /// Removes, after values were sealed, the copies of their old versions the database still
    /// keeps on disk, where it can do so without blocking others.
    async fn scrub_replaced_values(&self) -> Result<()>;

    /// Stores a batch of captures in one statement, when the dialect can; `None` (nothing
    /// written) sends the batch through the shared transaction of separate statements.
    async fn ingest_in_one_statement(&self, cs: &[Callback]) -> Result<Option<Vec<Ingested>>>;

    /// Records a batch of successful outcomes in one statement, when the dialect can; `None`
    /// (nothing written) sends the batch through the shared transaction.
    async fn finish_successes_in_one_statement(
        &self,
        fs: &[Finish],
    ) -> Result<Option<Vec<Finished>>>;

    /// Locks the callback endpoints `ids` (sorted) for this transaction, in id order, so
    /// batches sharing endpoints queue instead of deadlocking. `NotFound` if one is gone.
    async fn lock_endpoints(tx: &mut Transaction<'_, Self::Db>, ids: &[&str]) -> Result<()>;

    /// Moves each endpoint's cursor on by `n`; returns the new last cursors, in order.
    async fn take_cursors(
        tx: &mut Transaction<'_, Self::Db>,
        counts: &[(&str, i64)],
    ) -> Result<Vec<i64>>;
}

/// How many rows a statement changed: each driver's result type has it as an inherent method,
/// which generic code cannot call.
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}
