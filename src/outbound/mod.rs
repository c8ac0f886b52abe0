//! Sending deliveries out: the HTTP client and the RabbitMQ publisher (both behind the SSRF
//! guard).

pub mod amqp;
pub mod http;
pub mod ssrf;
