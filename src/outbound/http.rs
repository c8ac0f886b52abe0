//! The webhook HTTP client.
//!
//! One `reqwest::Client` for the whole process, so keep-alive connections to a receiver are
//! reused across deliveries. Redirects are never followed (a 3xx is a failed attempt: following
//! it would let a receiver point Herald at an address the SSRF guard refused). Every address is
//! checked when the connection is made, by [`ssrf::GuardedResolver`] for host names and here for
//! literal IPs (which reqwest does not resolve).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ssrf::{self, GuardedResolver, Policy};
use crate::domain::state::ErrorKind;

/// The first 16 KiB of a response body are kept in the attempt log.
pub const MAX_LOGGED_BODY: usize = 16 * 1024;

/// Response headers worth keeping for debugging; the rest are dropped.
const LOGGED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "retry-after",
    "location",
    "server",
    "date",
    "x-request-id",
    "x-amzn-requestid",
    "cf-ray",
];

/// What happened on the wire.
#[derive(Debug, Clone, Default)]
pub struct SendResult {
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    pub response_headers: BTreeMap<String, String>,
    pub response_body: Option<String>,
    /// `Retry-After`, raw, when the receiver sent one.
    pub retry_after: Option<String>,
}

impl SendResult {
    pub fn is_success(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }

    fn failed(kind: ErrorKind, error: String, started: Instant) -> Self {
        SendResult {
            duration_ms: started.elapsed().as_millis() as u64,
            error_kind: Some(kind),
            error: Some(error),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    policy: Policy,
}

/// Selects rustls' `ring` crypto provider for the process (reqwest is built without one, to
/// avoid compiling aws-lc). Calling it again is harmless: the first install wins.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpSender {
    pub fn new(policy: Policy) -> Self {
        install_crypto();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver::new(policy.clone()))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .expect("the HTTP client configuration is valid");
        Self { client, policy }
    }

    /// The SSRF policy every connection is checked against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// POSTs `body` to `url` (a delivery). Never fails: every outcome is a [`SendResult`]
    /// for the log.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> SendResult {
        self.send(reqwest::Method::POST, url, headers, body, timeout)
            .await
    }

    /// Sends `body` to `url` with any method (a replayed callback keeps its sender's).
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> SendResult {
        let started = Instant::now();
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => {
                return SendResult::failed(
                    ErrorKind::Connect,
                    format!("invalid URL: {e}"),
                    started,
                );
            }
        };
        if self.policy.https_only && parsed.scheme() != "https" {
            return SendResult::failed(
                ErrorKind::BlockedAddress,
                "https_only: plain http destinations are refused".into(),
                started,
            );
        }
        if let Some(ip) = literal_ip(&parsed)
            && let Err(blocked) = self.policy.check(ip)
        {
            return SendResult::failed(ErrorKind::BlockedAddress, blocked.to_string(), started);
        }
        let mut req = self
            .client
            .request(method, parsed)
            .timeout(timeout)
            .body(body);
        for (name, value) in headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let (kind, msg) = classify(&e);
                return SendResult::failed(kind, msg, started);
            }
        };
        let status = resp.status().as_u16();
        let mut response_headers = BTreeMap::new();
        for name in LOGGED_RESPONSE_HEADERS {
            if let Some(v) = resp.headers().get(*name).and_then(|v| v.to_str().ok()) {
                response_headers.insert((*name).to_string(), v.chars().take(512).collect());
            }
        }
        let retry_after = response_headers.get("retry-after").cloned();
        let mut body = Vec::new();
        let mut error = None;
        let mut error_kind = None;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_LOGGED_BODY - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= MAX_LOGGED_BODY {
                        break; // the rest is not read; the connection is not reused
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The status is known; a body cut short only matters for failures.
                    if !(200..300).contains(&status) {
                        let (kind, msg) = classify(&e);
                        error_kind = Some(kind);
                        error = Some(msg);
                    }
                    break;
                }
            }
        }
        if !(200..300).contains(&status) && error.is_none() {
            error_kind = Some(ErrorKind::Status);
            error = Some(if (300..400).contains(&status) {
                let to = response_headers
                    .get("location")
                    .map(String::as_str)
                    .unwrap_or("?");
                format!("HTTP {status}: redirects are not followed (Location: {to})")
            } else {
                format!("HTTP {status}")
            });
        }
        SendResult {
            duration_ms: started.elapsed().as_millis() as u64,
            status_code: Some(status),
            error_kind,
            error,
            response_headers,
            response_body: Some(String::from_utf8_lossy(&body).into_owned()),
            retry_after,
        }
    }
}

/// The destination host when it is a literal IP address (the `url` crate has already
/// normalised hex, octal and shortened IPv4 forms).
fn literal_ip(url: &url::Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(d) => ssrf::parse_ip_literal(d),
    }
}

/// Maps a reqwest error to the attempt log's error kind and a readable message.
fn classify(e: &reqwest::Error) -> (ErrorKind, String) {
    let mut chain = String::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&s.to_string());
        src = s.source();
    }
    if let Some(b) = ssrf::find_blocked(e) {
        return (ErrorKind::BlockedAddress, b.to_string());
    }
    let lower = chain.to_ascii_lowercase();
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup") {
        ErrorKind::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ErrorKind::Tls
    } else {
        ErrorKind::Connect
    };
    (kind, chain)
}
