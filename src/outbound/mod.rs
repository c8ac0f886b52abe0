//! Sending deliveries out: the HTTP client (with its SSRF guard).

pub mod http;
pub mod ssrf;
