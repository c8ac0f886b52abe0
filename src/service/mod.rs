//! Use cases, shared by the REST API, the CLI, the tenant portal and the MCP tools.
//!
//! A service call validates its input (naming the offending field), applies tenant scope, and
//! talks to the [`Store`]. Nothing here knows about HTTP.

pub(crate) mod batch;
pub mod callbacks;
pub mod catalog;
mod deliveries;
mod destinations;
mod events;
pub mod input;
pub mod operator;
pub mod portal;
pub mod replay;
mod tenants;
pub mod tokens;

pub use callbacks::{
    CreateCallbackEndpoint, CreatedEndpoint, InboundSettings, IncomingRequest, IngestError,
    IngestOutcome, VerificationRequest, WaitOutcome,
};
pub use destinations::{
    CreateDestination, CreatedDestination, RotateSecret, RotatedSecret, UpdateDestination,
};
pub use events::{PublishBatch, PublishRequest, PublishResponse, ReplyRequest};

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::domain::validate::{Invalid, Limits};
use crate::inbound::ratelimit::RateLimiter;
use crate::inbound::waiters::Waiters;
use crate::outbound::ssrf::Policy;
use crate::store::{News, NewsStream, Scope, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is not even JSON ([`input::decode_json`]).
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The catalog refuses the event: its type is archived, or the catalog does not list it
    /// and unknown topics are refused. `code` says which.
    #[error("{field}: {message}")]
    Refused {
        field: String,
        code: &'static str,
        message: String,
    },
    /// The event's `data` does not satisfy its type's schema.
    #[error("{field} does not satisfy the schema of `{topic}` (version {version}): {mismatch}")]
    SchemaMismatch {
        field: String,
        topic: String,
        version: i64,
        mismatch: Box<crate::domain::catalog::Mismatch>,
    },
    #[error("{field}: {message}")]
    TooLarge { field: String, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl ServiceError {
    /// The stable, machine-readable name of what went wrong, the same over every interface
    /// (problem+json `code`, the publish queue's `x-herald-error-code`).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Malformed(_) => "malformed_json",
            ServiceError::Invalid(_) => "validation_failed",
            ServiceError::Refused { code, .. } => code,
            ServiceError::SchemaMismatch { .. } => "schema_mismatch",
            ServiceError::TooLarge { .. } => "too_large",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::Store(_) => "internal",
        }
    }

    /// The input field at fault, for bad input.
    pub fn field(&self) -> Option<&str> {
        match self {
            ServiceError::Invalid(i) => Some(&i.field),
            ServiceError::Refused { field, .. } | ServiceError::SchemaMismatch { field, .. } => {
                Some(field)
            }
            ServiceError::TooLarge { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: Herald's own trouble (the database) or a
    /// concurrent change, not anything wrong with the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, ServiceError::Store(_) | ServiceError::Conflict(_))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            StoreError::Conflict(msg) => ServiceError::Conflict(msg),
            other => ServiceError::Store(other),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Page sizes: `limit` defaults to 50 and is capped at 250.
pub fn page_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(50).clamp(1, 250)
}

/// The application's services. Cheap to clone.
#[derive(Clone)]
pub struct Herald {
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    /// Wakes this process's worker when work is published here.
    pub wake: Arc<Notify>,
    /// The SSRF policy, also applied when a destination is saved (literal addresses).
    pub policy: Policy,
    publisher: batch::GroupCommit<batch::Publishes>,
    ingester: batch::GroupCommit<batch::Captures>,
    /// Inbound capture: URLs, limits, wait caps.
    pub inbound: Arc<InboundSettings>,
    /// Callers waiting on callback endpoints in this process.
    pub waiters: Arc<Waiters>,
    /// The per-endpoint ingest limit.
    pub rate_limiter: Arc<RateLimiter>,
    /// Endpoints by slug, for ingest (see [`crate::inbound::cache`]).
    pub endpoints: Arc<crate::inbound::cache::EndpointCache>,
    /// Flips to `true` at shutdown: long-polls answer `pending` and SSE streams end, so a
    /// graceful shutdown is not held up by clients that would otherwise wait for minutes.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Tenant portal: link and session lifetimes.
    pub portal: Arc<portal::PortalSettings>,
    /// The input limits the operator configured.
    pub limits: Limits,
    /// This process's compiled copy of the event-type catalog.
    pub catalog: Arc<catalog::Catalog>,
}

impl Herald {
    pub fn new(store: Arc<dyn Store>, clock: Clock, policy: Policy) -> Self {
        let inbound = InboundSettings::default();
        Self {
            publisher: batch::GroupCommit::spawn(
                batch::Publishes {
                    store: store.clone(),
                    clock: clock.clone(),
                },
                batch::PUBLISH_IN_FLIGHT,
            ),
            ingester: batch::GroupCommit::spawn(
                batch::Captures {
                    store: store.clone(),
                },
                batch::CAPTURE_IN_FLIGHT,
            ),
            store,
            clock,
            wake: Arc::new(Notify::new()),
            policy,
            rate_limiter: Arc::new(RateLimiter::new(
                inbound.rate_limit_per_s,
                inbound.rate_limit_burst,
            )),
            inbound: Arc::new(inbound),
            waiters: Arc::new(Waiters::new()),
            endpoints: Default::default(),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            portal: Arc::default(),
            limits: Limits::default(),
            catalog: Arc::default(),
        }
    }

    /// Refuses (or not) topics the event-type catalog does not list.
    pub fn with_catalog(mut self, refuse_unknown_topics: bool) -> Self {
        self.catalog = Arc::new(catalog::Catalog::new(refuse_unknown_topics));
        self
    }

    /// Replaces the input limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Ends every wait and stream in progress (shutdown).
    pub fn stop_waiting(&self) {
        self.stopping.send_replace(true);
    }

    /// Hands what other processes announce ([`Store::news`]) to this process's waiters and,
    /// with `worker`, its worker, until `shutdown` turns true or the news ends. `app` runs it
    /// as a task of its own and joins it at shutdown.
    pub async fn relay_news(
        self,
        mut news: NewsStream,
        worker: bool,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        use futures_util::StreamExt;
        loop {
            let next = tokio::select! {
                n = news.next() => n,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match next {
                None => return,
                Some(News::Work) if worker => self.wake.notify_one(),
                Some(News::Work) => {}
                Some(News::Callback(endpoint_id)) => self.waiters.notify(&endpoint_id),
                Some(News::Catalog) => self.catalog.invalidate(),
                Some(News::Missed) => {
                    // Whatever was announced meanwhile is unknown: everyone reads again.
                    self.catalog.invalidate();
                    self.waiters.notify_all();
                    if worker {
                        self.wake.notify_one();
                    }
                }
            }
        }
    }

    /// Replaces the inbound settings (and the rate limiter they configure).
    pub fn with_inbound(mut self, settings: InboundSettings) -> Self {
        self.rate_limiter = Arc::new(RateLimiter::new(
            settings.rate_limit_per_s,
            settings.rate_limit_burst,
        ));
        self.inbound = Arc::new(settings);
        self
    }

    /// A tenant-scoped caller may only name itself; anything else looks like it does not exist.
    fn check_tenant(scope: Scope<'_>, tenant_id: &str) -> Result<()> {
        match scope {
            Scope::Tenant(t) if t != tenant_id => Err(ServiceError::NotFound("tenant")),
            _ => Ok(()),
        }
    }
}
