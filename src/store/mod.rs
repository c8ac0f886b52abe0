//! Storage: the only module that speaks SQL.
//!
//! [`Store`] is what the rest of Herald needs from a database. Two implementations pass the
//! same conformance suite (`tests/it/store_suite.rs`, every method on both):
//! [`sqlite::SqliteStore`], the embedded default, and [`postgres::PostgresStore`] for
//! production and for several nodes sharing one database.
//!
//! # Layout
//!
//! - `dialect`: the `Dialect` trait, what each SQL dialect provides (pools, migrations, the
//!   claim, locks, wake-ups, one-statement batch paths).
//! - `queries`: the shared queries as plain generic code, one module per aggregate (tenants,
//!   destinations, deliveries, attempts, inbound, portal, maintenance).
//! - `common`: the one generic `impl Store` for every dialect, delegating to `queries`.
//! - `columns`: wide writes with each column named next to its value.
//! - `sql`: how domain constants (statuses, reasons) are written into statement text.
//! - `rows`: the row types and their conversions; [`seal`]: encryption at rest.
//! - [`sqlite`], [`postgres`]: the two dialects; each difference says why.
//!
//! Every query that touches tenant data takes the tenant id (or `None` for the platform's admin)
//! and filters on it, so isolation does not depend on the callers remembering to check.

mod columns;
mod common;
pub(crate) mod dialect;
pub mod postgres;
mod queries;
mod rows;
pub mod seal;
mod sql;
pub mod sqlite;

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::domain::callback::{Callback, CallbackEndpoint, Ingested};
use crate::domain::catalog::EventType;
use crate::domain::model::{Attempt, Delivery, Destination, Event, Recovery, Tenant};
use crate::domain::state::{DeliveryStatus, Trigger};
use crate::domain::time::Millis;
pub use queries::NewEventType;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A sealed credential cannot be opened (unknown key, altered value).
    #[error("encryption at rest: {0}")]
    Sealed(#[from] seal::SealError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The waits between attempts to reach the database again after it failed (a restart, a
/// failover, a network blip): 50 ms doubling to 2 s with jitter, for as long as it takes. A
/// quick first retry matters: a `pg_ctl restart -m fast` is back in well under a second.
/// Callers start a fresh one after each success.
pub fn reconnect_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(50))
        .with_max_delay(std::time::Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next wait of a [`reconnect_backoff`] (which never runs out; 2 s if it did).
pub fn next_wait(backoff: &mut backon::ExponentialBackoff) -> std::time::Duration {
    backoff.next().unwrap_or(std::time::Duration::from_secs(2))
}

/// Who may see a row: the platform (everything) or one tenant.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Admin,
    Tenant(&'a str),
}

impl Scope<'_> {
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Scope::Admin => None,
            Scope::Tenant(t) => Some(t),
        }
    }
}

/// An API token as stored: only its SHA-256 hash.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: String,
    pub tenant_id: Option<String>,
}

/// An event to publish, validated.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub tenant_id: String,
    pub topic: String,
    /// Stored verbatim: receivers get the publisher's JSON byte for byte.
    pub data: Box<RawValue>,
    pub metadata: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub destination_id: Option<String>,
    /// The catalog version `data` was checked against (docs/event-types.md); `None`: not
    /// checked (no schema, or no type in the catalog).
    pub schema_version: Option<i64>,
    /// Create a reply channel (docs/reply-channels.md) with the event, in the same transaction.
    pub reply: Option<NewReplyChannel>,
    /// The publish request's span as a W3C `traceparent`, when tracing is on: every attempt
    /// of the event's deliveries continues that trace.
    pub traceparent: Option<String>,
}

/// The callback endpoint an event's subscribers answer on. Its slug is the capability: the
/// endpoint verifies nothing else, like any URL the publisher hands out.
#[derive(Debug, Clone)]
pub struct NewReplyChannel {
    pub endpoint_id: String,
    pub slug: String,
    pub expires_at: Millis,
}

/// The result of publishing one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub id: String,
    pub deliveries: u32,
    /// False when an idempotent repeat returned the original event.
    pub created: bool,
    /// The slug of the event's reply channel, when it has one.
    pub reply_slug: Option<String>,
    /// The catalog version the event's data was checked against (the original's, for a
    /// repeat).
    pub schema_version: Option<i64>,
    /// Its type is deprecated: set by the service, which asked the catalog; the store leaves
    /// it false.
    pub deprecated: bool,
}

/// Poll across endpoints (`GET /v1/callbacks`): accepted callbacks, oldest first.
#[derive(Debug, Clone, Default)]
pub struct CallbackQuery {
    /// `None`: every tenant's and the platform's (admin).
    pub tenant_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub acked: Option<bool>,
    /// A callback id: return those after it.
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub tenant_id: String,
    pub status: Option<DeliveryStatus>,
    pub destination_id: Option<String>,
    pub event_id: Option<String>,
    pub topic: Option<String>,
    pub after: Option<String>,
    /// Created at or after this time.
    pub since: Option<Millis>,
    /// Created before this time.
    pub until: Option<Millis>,
    pub limit: u32,
}

/// A delivery a worker has claimed: everything needed to send it, loaded in the claim.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub destination_id: String,
    pub topic: String,
    /// The attempt number this send is (1-based).
    pub attempt: u32,
    pub trigger: Trigger,
    pub data: Box<RawValue>,
    pub event_created_at: Millis,
    /// `None` when the destination was deleted after the delivery was created. Shared by the
    /// claim's deliveries to the same destination.
    pub destination: Option<std::sync::Arc<Destination>>,
    /// The slug of the event's reply channel: the request carries its URL.
    pub reply_slug: Option<String>,
    /// The event's publish span (see [`NewEvent::traceparent`]).
    pub traceparent: Option<String>,
}

/// The outcome of an attempt, applied in one transaction: the attempt row, the delivery's next
/// state and, on 410 Gone, the destination disabled.
#[derive(Debug, Clone)]
pub struct Finish {
    pub delivery_id: String,
    pub tenant_id: String,
    /// The claimed attempt number (the row must still carry it).
    pub attempt_number: u32,
    /// `None` when nothing was sent (destination disabled or deleted since the claim): the
    /// claim's attempt is given back.
    pub attempt: Option<Attempt>,
    pub last_error: Option<String>,
    pub next: DeliveryStatus,
    pub next_attempt_at: Option<Millis>,
    pub now: Millis,
    /// The destination the attempt went to (its failure streak is updated with the outcome).
    pub destination_id: String,
    /// 410 Gone: disable the destination at once, with this reason.
    pub disable_destination: Option<String>,
    /// When a failure streak disables the destination.
    pub auto_disable: AutoDisable,
}

/// When a failure streak disables a destination: the rule is the domain's.
pub use crate::domain::disable::AutoDisable;

/// What [`Store::finish`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    /// False when the delivery had moved on (lease expired): only the attempt was logged.
    pub applied: bool,
    /// The reason, when this outcome disabled the destination.
    pub disabled: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;

    /// The start-up step of encryption at rest (after `migrate`): seals every clear value of
    /// [`seal::SEALED_COLUMNS`] and re-seals those under an old key with the current one, so
    /// a rotation completes and old keys can be retired. Records the current key's id and
    /// refuses, with [`StoreError::Sealed`], when the database holds a key id this node does
    /// not have — a second node started with its own generated key is stopped at once
    /// instead of writing secrets the others cannot read. Returns how many values it sealed.
    async fn seal_at_rest(&self, now: Millis) -> Result<u64>;

    // --- API tokens -------------------------------------------------------------------------
    async fn insert_token(
        &self,
        id: &str,
        hash: &str,
        tenant_id: Option<&str>,
        now: Millis,
    ) -> Result<()>;
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn has_admin_token(&self) -> Result<bool>;

    // --- Tenants ----------------------------------------------------------------------------
    /// Creates or replaces the metadata; returns the tenant and whether it was created.
    async fn upsert_tenant(
        &self,
        id: &str,
        metadata: &serde_json::Value,
        now: Millis,
    ) -> Result<(Tenant, bool)>;
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>>;
    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>>;
    /// Deletes the tenant and everything it owns.
    async fn delete_tenant(&self, id: &str) -> Result<bool>;

    // --- Destinations -----------------------------------------------------------------------
    /// `NotFound("tenant")` when the tenant does not exist; `Conflict` when it already has
    /// `max_per_tenant` destinations (0: no limit) — counted under the tenant's row lock, so
    /// concurrent creates cannot overshoot.
    async fn insert_destination(&self, d: &Destination, max_per_tenant: u32) -> Result<()>;
    async fn get_destination(&self, tenant_id: &str, id: &str) -> Result<Option<Destination>>;
    async fn list_destinations(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Destination>>;
    /// Saves every mutable field of `d`; false when it no longer exists.
    async fn update_destination(&self, d: &Destination) -> Result<bool>;
    /// Deletes it and cancels its pending deliveries.
    async fn delete_destination(&self, tenant_id: &str, id: &str, now: Millis) -> Result<bool>;

    // --- Events -----------------------------------------------------------------------------
    /// Writes the events and all their deliveries in one transaction (fan-out decided by
    /// [`crate::domain::fanout::plan`]). Idempotent repeats return the original event.
    async fn publish(&self, events: &[NewEvent], now: Millis) -> Result<Vec<Published>>;
    async fn get_event(&self, scope: Scope<'_>, id: &str) -> Result<Option<Event>>;
    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>>;

    // --- Deliveries -------------------------------------------------------------------------
    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>>;
    /// One delivery with its attempts.
    async fn get_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Option<Delivery>>;
    /// Schedules a new, manual attempt now. `Conflict` while an attempt is in flight.
    async fn retry_delivery(&self, scope: Scope<'_>, id: &str, now: Millis) -> Result<Delivery>;

    /// Replays an event: its finished deliveries (all, or those to `destination_ids`) are
    /// scheduled again for a manual attempt now; a chosen destination that never had a delivery
    /// of this event gets a new one. Pending deliveries are left as they are. Returns how many
    /// were scheduled. `NotFound` for an unknown event or a foreign destination.
    async fn replay_event(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        destination_ids: Option<&[String]>,
        now: Millis,
    ) -> Result<u32>;
    /// Counts (`dry_run`) or schedules again every failed or skipped delivery of a destination
    /// created at or after `since`, in bounded batches, as one watchable recovery.
    async fn recover_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
        dry_run: bool,
        now: Millis,
    ) -> Result<Recovery>;
    async fn get_recovery(&self, tenant_id: &str, id: &str) -> Result<Option<Recovery>>;

    // --- The scheduler ----------------------------------------------------------------------
    /// Claims up to `limit` due deliveries: marks them `delivering` with a lease until
    /// `lease_until` and commits before returning, so no transaction spans the network call.
    async fn claim(&self, limit: u32, now: Millis, lease_until: Millis) -> Result<Vec<Claimed>>;
    /// Records an attempt and moves the delivery on — only if it is still `delivering` with
    /// this attempt number (a worker whose lease expired does not overwrite the successor's
    /// work; its attempt is still logged). Also keeps the destination's failure streak and
    /// disables it on 410 or when the streak crosses the auto-disable limits.
    async fn finish(&self, f: &Finish) -> Result<Finished> {
        Ok(self.finish_batch(std::slice::from_ref(f)).await?.remove(0))
    }
    /// Several outcomes in one transaction (group commit: one WAL flush for many sends), with
    /// exactly the effect of finishing each in turn.
    async fn finish_batch(&self, fs: &[Finish]) -> Result<Vec<Finished>>;
    /// Deliveries whose lease expired (their worker died) go back to `retrying`, due now.
    async fn rescue_expired(&self, now: Millis) -> Result<u64>;
    /// The earliest `next_attempt_at` among pending deliveries: how long a worker may sleep.
    async fn next_due(&self) -> Result<Option<Millis>>;

    /// Puts a delivery whose send was interrupted (shutdown) back in the queue, due now —
    /// only if this attempt still holds it.
    async fn release(&self, delivery_id: &str, attempt: u32, now: Millis) -> Result<bool>;

    /// Deletes up to `batch` events created before `cutoff` whose deliveries are all final,
    /// with their deliveries and attempts. Returns how many events went; callers repeat until
    /// fewer than `batch`. Several nodes may call it: on Postgres only the holder of the
    /// maintenance lock does the work (the others get 0).
    async fn purge_before(&self, cutoff: Millis, batch: u32) -> Result<u64>;

    /// Pending deliveries already due at `now`, and the oldest `next_attempt_at` among them.
    async fn queue_stats(&self, now: Millis) -> Result<(u64, Option<Millis>)>;

    /// What other processes sharing the database announce: work they published and callbacks
    /// they stored, as a stream for `app` to drive and drop (the store runs no listener of its
    /// own). Postgres listens for `NOTIFY`; the stream reconnects by itself and yields
    /// [`News::Missed`] whenever it may have missed some. `None` for SQLite: no other process
    /// writes to it, and this process's own wake-ups are enough.
    fn news(&self) -> Option<NewsStream>;

    /// Sends the announcements still queued for other processes and stops the store's sender
    /// tasks; called once at shutdown. Later announcements are dropped (others find the news
    /// at their next read or poll).
    async fn close(&self);

    // --- Inbound: callback endpoints and callbacks ------------------------------------------
    /// `NotFound("tenant")` when the endpoint names a tenant that does not exist.
    async fn insert_callback_endpoint(&self, e: &CallbackEndpoint) -> Result<()>;
    async fn get_callback_endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<Option<CallbackEndpoint>>;
    /// The ingest lookup: no scope, the slug is the capability.
    async fn find_callback_endpoint(&self, slug: &str) -> Result<Option<CallbackEndpoint>>;
    /// The reply channel of an event visible in `scope`.
    async fn reply_endpoint_of(
        &self,
        scope: Scope<'_>,
        event_id: &str,
    ) -> Result<Option<CallbackEndpoint>>;
    /// Oldest first; `after` is an endpoint id.
    async fn list_callback_endpoints(
        &self,
        scope: Scope<'_>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CallbackEndpoint>>;
    /// Deletes the endpoint and its callbacks.
    async fn delete_callback_endpoint(&self, scope: Scope<'_>, id: &str) -> Result<bool>;
    /// Stores a captured request in one transaction: an accepted one takes the endpoint's next
    /// cursor (unless its dedupe key was seen: then only the duplicate counter moves), a
    /// rejected one is kept without a cursor. On Postgres, other processes are notified on
    /// commit. `NotFound` when the endpoint was deleted meanwhile.
    async fn ingest_callback(&self, c: &Callback) -> Result<Ingested>;
    /// Several captures in one transaction (group commit), all or nothing; results in the
    /// order given. Accepted callbacks without a dedupe key take their cursors in one
    /// statement per endpoint.
    async fn ingest_callbacks(&self, cs: &[Callback]) -> Result<Vec<Ingested>>;
    /// Accepted callbacks of an endpoint with a cursor greater than `after`, in cursor order.
    async fn callbacks_after(
        &self,
        endpoint_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Callback>>;
    /// Rejected requests of an endpoint, newest first; `after` is a callback id.
    async fn rejected_callbacks(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Callback>>;
    async fn list_callbacks(&self, q: &CallbackQuery) -> Result<Vec<Callback>>;
    /// One callback (accepted or rejected) visible in `scope`, by id.
    async fn get_callback(&self, scope: Scope<'_>, id: &str) -> Result<Option<Callback>>;
    /// Marks an accepted callback acknowledged (idempotent: the first ack time stays).
    async fn ack_callback(
        &self,
        scope: Scope<'_>,
        id: &str,
        now: Millis,
    ) -> Result<Option<Callback>>;

    // --- Event-type catalog (platform-wide) ------------------------------------------------
    /// Creates the type at version 1 or replaces its definition, moving the version on by one;
    /// announced to other processes ([`News::Catalog`]).
    async fn put_event_type(&self, t: &NewEventType<'_>, now: Millis) -> Result<EventType>;
    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>>;
    /// By name; archived types only with `include_archived`.
    async fn list_event_types(
        &self,
        after: Option<&str>,
        limit: u32,
        include_archived: bool,
    ) -> Result<Vec<EventType>>;
    /// Announced like a change. Events keep the version they were checked against.
    async fn delete_event_type(&self, name: &str) -> Result<bool>;

    // --- Tenant portal (tokens stored as SHA-256 hashes only) -------------------------------
    /// Stores a single-use login link (and purges links that ended more than a day ago).
    /// `NotFound("tenant")` when the tenant does not exist.
    async fn insert_portal_link(
        &self,
        hash: &str,
        tenant_id: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()>;
    /// In one transaction: marks the link used if it is unused and unexpired, and opens a
    /// session for its tenant. Otherwise says what was wrong with it and changes nothing.
    async fn redeem_portal_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        session_expires_at: Millis,
        now: Millis,
    ) -> Result<LinkState>;
    /// What the link is worth now, without spending it (`Usable` stays usable).
    async fn check_portal_link(&self, link_hash: &str, now: Millis) -> Result<LinkState>;
    /// The tenant of an unexpired session.
    async fn find_portal_session(&self, hash: &str, now: Millis) -> Result<Option<String>>;
    async fn delete_portal_session(&self, hash: &str) -> Result<()>;
    /// The health of one of the tenant's destinations over the deliveries created at or after
    /// `since` (see [`crate::domain::health`]).
    async fn destination_health(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
    ) -> Result<crate::domain::health::DestinationHealth>;
}

/// One announcement of another process sharing the database ([`Store::news`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// It committed due work: a worker should claim.
    Work,
    /// It stored a callback on this endpoint (the id): its waiters should read.
    Callback(String),
    /// It changed the event-type catalog: compiled schemas are stale.
    Catalog,
    /// Announcements may have been missed (the listener was down, or has just started):
    /// workers, waiters and the catalog cache should all look again.
    Missed,
}

/// The stream of [`News`]: it never ends on its own.
pub type NewsStream = futures_util::stream::BoxStream<'static, News>;

/// What a portal login link is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// The link is unused and unexpired. From `redeem_portal_link`: it was, it is now used,
    /// and a session for this tenant exists.
    Usable {
        tenant_id: String,
    },
    Expired,
    AlreadyUsed,
    Unknown,
}

impl LinkState {
    /// Reads a `portal_links` row (`tenant_id, used_at, expires_at`), or its absence.
    pub(crate) fn of(row: Option<(String, Option<Millis>, Millis)>, now: Millis) -> LinkState {
        match row {
            None => LinkState::Unknown,
            Some((_, Some(_), _)) => LinkState::AlreadyUsed,
            Some((_, None, expires_at)) if expires_at <= now => LinkState::Expired,
            Some((tenant_id, None, _)) => LinkState::Usable { tenant_id },
        }
    }
}

/// Opens the store a database URL names: `sqlite://…` or `postgres://…`. Credentials are
/// sealed with `keys` on the way in and opened on the way out ([`seal`]).
pub async fn connect(
    url: &str,
    keys: std::sync::Arc<seal::Keyring>,
) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PostgresStore::connect(url, keys).await?,
        ))
    } else {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::connect(url, keys).await?,
        ))
    }
}
