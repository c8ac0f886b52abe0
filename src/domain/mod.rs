//! The pure heart of Herald: identifiers, delivery states and their allowed transitions,
//! the retry schedule, Standard Webhooks signatures, topic patterns and payload filters, and
//! the rules of RabbitMQ destinations (broker URL redaction, routing-key templates), and the
//! event-type catalog's schemas ([`catalog`]: compiled without fetching anything). The rules
//! the store records are decided here too: when a destination is disabled ([`disable`]), how
//! much a claim may take of a limited destination ([`allowance`]) and which status changes a
//! store makes ([`state::Transition`]).
//!
//! Nothing in here performs I/O or reads the clock: callers pass `now` in (from
//! `crate::clock`). That keeps every rule testable as a plain function, and lets the tests
//! control time. The one exception is [`ids::new_id`]: a UUIDv7 embeds the moment it is made.

pub mod allowance;
pub mod amqp;
pub mod callback;
pub mod catalog;
pub mod disable;
pub mod fanout;
pub mod filter;
pub mod health;
pub mod ids;
pub mod model;
pub mod retry;
pub mod secrets;
pub mod signature;
pub mod state;
pub mod time;
pub mod topic;
pub mod validate;
