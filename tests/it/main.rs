//! Herald's integration tests, in one binary: each module below was a test binary of its own,
//! and one binary links `herald` and its dependencies (sqlx, lapin, rmcp, …) once per test
//! build instead of once per file. One module's tests are selected by their path:
//! `scripts/test --test it delivery::` (or `cargo test --test it delivery::`).
//!
//! The modules share this process and the test harness's threads, so no test may count on
//! anything process-wide being its own: Herald's metrics registry is shared (tests read its
//! counters as lower bounds), and every test makes its own database, ports, data directory and
//! broker names. Tests that need a process to themselves are separate binaries:
//! `tests/log_secrets.rs` installs the global tracing subscriber, and `tests/chaos.rs` must not
//! run beside the rest of the suite (each says why in its header).

// Shared with the separate binaries, hence one folder up. `for_each_store!` is exported at this
// crate's root: a module takes it with `use crate::{common, for_each_store};`.
#[path = "../common/mod.rs"]
mod common;
mod inbound_support;
mod portal_support;

mod api;
mod auto_disable;
mod bench_cli;
mod delivery;
mod ed25519;
mod event_types;
mod fuzz_api;
mod inbound;
mod input_limits;
mod isolation;
mod layers;
mod limits;
mod mcp;
mod multinode;
mod openapi;
mod operations;
mod otel;
mod portal;
mod portal_browser;
mod rabbitmq;
mod recovery;
mod reply_channels;
mod secrets_at_rest;
mod security;
mod store_suite;
mod upgrade;
mod waiting;
mod worker_loop;
