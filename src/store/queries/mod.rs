//! The queries that are the same SQL for both stores, one module per aggregate.
//!
//! Both schemas share table names, column names and portable types, and sqlx accepts `$1`
//! placeholders for SQLite as well as Postgres, so most of the store is written once, here, as
//! plain generic code compiled once per database. What differs — connecting, migrations, the
//! claim query, locks, wake-ups, the one-statement batch paths — each dialect provides in
//! `sqlite/` and `postgres/` as its [`Dialect`] implementation, which these queries call.
//!
//! Each module is a trait implemented for every [`Dialect`]:
//!
//! - [`tenants`]: tenants and API tokens;
//! - [`destinations`]: destinations and their sealed credentials;
//! - [`deliveries`]: events and their deliveries, from the publish to the finish of each
//!   attempt, the claim of destinations with limits, retries, replays and recoveries;
//! - [`attempts`]: the log of sends;
//! - [`catalog`]: the event-type catalog;
//! - [`inbound`]: callback endpoints and the callbacks they capture;
//! - [`portal`]: the tenant portal's links and sessions, and destination health;
//! - [`maintenance`]: the health check, encryption at rest and retention.
//!
//! The `where` clause of each implementation lists what its queries need of the database
//! (each bound and decoded type): sqlx has no single trait for "a SQL database with these
//! types", and Rust does not carry such bounds along with a trait, so each module repeats the
//! ones it uses. The one [`super::Store`] implementation, in `common`, only delegates to
//! these traits: it is their table of contents. A method that stands for a `Store` method is
//! documented there; the helpers the others and the dialects call have their own docs.

mod attempts;
mod catalog;
mod deliveries;
mod destinations;
mod inbound;
mod maintenance;
mod portal;
mod tenants;

pub(crate) use attempts::Attempts;
pub(crate) use catalog::Catalog;
pub use catalog::NewEventType;
pub(crate) use deliveries::Deliveries;
pub(crate) use destinations::Destinations;
pub(crate) use inbound::Inbound;
pub(crate) use maintenance::Maintenance;
pub(crate) use portal::Portal;
pub(crate) use tenants::Tenants;
