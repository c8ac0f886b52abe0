//! Herald: a webhook delivery engine for AI platforms.
//!
//! # Layout
//!
//! - [`domain`]: the rules, as pure functions and types — ids, the delivery state machine and
//!   the transitions the stores make, the retry schedule, when a destination is disabled, the
//!   claim allowance of limited destinations, Standard Webhooks signatures, topic patterns,
//!   filters, fan-out, input validation, destination health, callback endpoints and their
//!   verification schemes, ed25519 keys. No I/O and no clock: callers pass the time in (new
//!   ids, which embed their moment, and generated credentials are the exceptions).
//! - [`clock`]: the application's "now" (the system clock, or tokio's for paused-time tests).
//! - [`store`]: the only place with SQL. A [`store::Store`] trait, implemented once over a
//!   `Dialect` (SQLite, the embedded default; Postgres, production and many nodes), which
//!   records what the domain decides. [`store::seal`] encrypts the credential columns on their
//!   way in and out (SECURITY.md). It depends on `domain` alone: the shapes it persists live
//!   there ([`domain::callback`] for the inbound half). What other processes announce (work
//!   published, callbacks stored: Postgres `LISTEN`) it hands out as a stream,
//!   [`store::Store::news`], which `app` drives ([`service::Herald::relay_news`]) and joins at
//!   shutdown; the store runs no listener task of its own.
//! - [`service`]: the use cases (publish, manage destinations, list and retry deliveries),
//!   shared by the HTTP API, the CLI and the portal.
//! - [`worker`]: the scheduler — claim due deliveries, send them, record attempts, retry.
//! - [`outbound`]: the HTTP client that sends webhooks, the RabbitMQ publisher (confirmed,
//!   connections pooled per broker), and the SSRF guard both go through.
//! - [`queue`]: publish from a RabbitMQ queue — consumes `POST /v1/events` bodies, publishes
//!   them through `service::Herald::publish`, acks after commit, dead-letters invalid ones
//!   with the reason in the same words the API uses (`service::input`, `ServiceError::code`).
//! - [`inbound`]: capture for agents — verification schemes, callback shapes, the waiter
//!   registry that wakes long-polls and SSE streams, the ingest rate limit.
//! - [`http`]: the axum router, problem+json errors, extractors and the REST handlers; the
//!   tenant portal in [`http::portal`] (askama pages from `templates/portal/`, sessions from
//!   single-use links in [`service::portal`], CSRF on every form). It does not know `mcp`:
//!   `app` hands the router the MCP routes.
//! - [`mcp`]: the MCP server — agent and platform tools over Streamable HTTP (`/mcp`) and
//!   stdio (`herald mcp`), each tool a call to the REST API (in-process or remote).
//! - [`metrics`]: Prometheus counters and gauges for `/metrics`.
//! - [`bench`]: `herald bench`, the end-to-end benchmark.
//! - [`telemetry`]: logs, and OpenTelemetry traces ([`telemetry::otel`]: a tracer per
//!   application, exported over OTLP/HTTP). It uses no other module, so `http` (server spans)
//!   and `worker` (a client span per attempt) use it, as `config` does for its settings.
//! - [`config`], [`app`], [`cli`]: wiring. `config` reads the other layers'
//!   settings types; the worker takes its own rules (`worker::LEASE_HEADROOM_MS`) from none.
//!   `herald mcp` on stdio starts a whole [`app::Application`], so it is the CLI's
//!   (`cli::mcp_stdio`), not `mcp`'s.
//!
//! Lower layers never use higher ones, and no two modules use each other:
//! `tests/it/layers.rs` holds every `crate::` path to this map.
//!
//! A request to publish travels `http::api::events` → `service::Herald::publish` →
//! `service::batch::GroupCommit` (group commit) → `store::Store::publish` (events + deliveries
//! in one transaction) → a wake-up → `worker::Worker` claims → `worker::Executor` signs and
//! sends → the worker's group commit → `Store::finish_batch` records.
//!
//! A callback travels `http::ingest` (`ANY /in/{slug}`) → `service::Herald::ingest` (rate
//! limit, verify, dedupe key) → `service::batch::GroupCommit` (group commit) →
//! `store::Store::ingest_callbacks` (cursors assigned in the transaction; on Postgres `NOTIFY`
//! right after the commit) → `inbound::waiters::Waiters::notify` → a `service::Herald::wait_on`
//! long-poll or SSE stream re-reads the store and answers.

pub mod app;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod inbound;
pub mod mcp;
pub mod metrics;
pub mod outbound;
pub mod queue;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod worker;
