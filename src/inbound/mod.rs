//! Inbound capture (docs/inbound.md, docs/waiting.md): the half of Herald that lets an agent stop polling.
//!
//! An agent creates a callback endpoint, hands its URL (`/in/{slug}`) to slow work elsewhere, and
//! waits on it. This module holds the parts that are neither SQL nor HTTP:
//!
//! - [`verify`]: the verification schemes (pure functions of config + request + time).
//! - [`model`]: endpoints and captured callbacks, and their API shapes.
//! - [`waiters`]: the in-process registry that wakes waiters when a callback is stored (and,
//!   on Postgres, when another process stored one: `store::Store::news`, relayed by
//!   `service::Herald::relay_news`).
//! - [`ratelimit`]: the per-endpoint token bucket in front of ingest.
//! - [`cache`]: the slug → endpoint cache in front of ingest (endpoints never change).
//!
//! The flow: `http::ingest` → `service::Herald::ingest` (rate limit, verify, dedupe key) →
//! `service::batch::GroupCommit` → `store::Store::ingest_callbacks` (many captures in one
//! transaction, cursors assigned in it) → [`waiters::Waiters::notify`] → a
//! `service::Herald::wait_on` long-poll or SSE stream re-reads the store.

pub mod cache;
pub mod model;
pub mod ratelimit;
pub mod verify;
pub mod waiters;
