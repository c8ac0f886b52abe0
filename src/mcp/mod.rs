//! The MCP server (docs/mcp.md): Herald's callbacks and deliveries as tools an agent calls from any
//! MCP client, built on the official SDK, `rmcp`.
//!
//! - [`tools`]: the server and its tools; waits in slices with progress and cancellation.
//! - [`types`]: the tools' arguments and results (their JSON Schemas).
//! - [`api`]: how tools reach Herald — its REST API, in this process or over HTTP.
//! - [`http`]: `/mcp` on the main server (Streamable HTTP, bearer tokens, allowed hosts).
//! - `herald mcp` on stdio, for desktop clients (embedded Herald, or `--url` to a remote one),
//!   is served by the CLI (`cli::mcp_stdio`) with these tools.

pub mod api;
pub mod http;
pub mod schema;
pub mod tools;
pub mod types;

pub use tools::HeraldMcp;
