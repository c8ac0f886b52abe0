//! Input rules shared by the API, the portal and the CLI. Each check names the offending
//! field, so a 422 can point at it.

use std::collections::BTreeMap;

use super::filter::FilterLimits;
use super::model::DestinationOptions;
use super::{retry, topic};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Check = Result<(), Invalid>;

pub const MAX_TENANT_ID: usize = 64;
pub const MAX_URL: usize = 2048;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_TOPICS: usize = 100;
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_VALUE: usize = 1024;
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Serialized size of an event's `data` plus `metadata`.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
pub const MAX_BATCH: usize = 1000;
pub const MAX_DESTINATIONS_PER_TENANT: u32 = 1000;

/// The input limits an operator may change (the `max_*` settings in herald.toml.example).
/// The defaults are the constants above. Tenant ids stay at most [`MAX_TENANT_ID`]: they are
/// path segments whose pattern the OpenAPI document states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events in one `POST /v1/events/batch`.
    pub max_batch: usize,
    /// Serialized `data` plus `metadata` of one event.
    pub max_event_bytes: usize,
    /// Topic patterns of one destination.
    pub max_topics: usize,
    /// Custom headers of one destination.
    pub max_headers: usize,
    /// Destinations one tenant may have (0: no limit). Every publish evaluates all of a
    /// tenant's destinations, so this also bounds the work one event can cause.
    pub max_destinations_per_tenant: u32,
    /// Nesting and conditions of a destination's filter.
    pub filter: FilterLimits,
    /// Longest strings accepted.
    pub strings: StringLimits,
}

/// Longest strings accepted, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringLimits {
    /// A webhook destination's URL.
    pub max_url: usize,
    /// A destination's description.
    pub max_description: usize,
    /// One custom header value of a destination.
    pub max_header_value: usize,
    /// An `Idempotency-Key` header or an event `id`.
    pub max_idempotency_key: usize,
}

impl Default for StringLimits {
    fn default() -> Self {
        StringLimits {
            max_url: MAX_URL,
            max_description: MAX_DESCRIPTION,
            max_header_value: MAX_HEADER_VALUE,
            max_idempotency_key: MAX_IDEMPOTENCY_KEY,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: MAX_BATCH,
            max_event_bytes: MAX_EVENT_BYTES,
            max_topics: MAX_TOPICS,
            max_headers: MAX_HEADERS,
            max_destinations_per_tenant: MAX_DESTINATIONS_PER_TENANT,
            filter: FilterLimits::default(),
            strings: StringLimits::default(),
        }
    }
}

/// Headers a destination may not set: Herald owns them, and letting a tenant override the
/// signature headers would let it forge them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "expect",
];

pub fn tenant_id(field: &str, id: &str) -> Check {
    plain_name(field, id, 1..=MAX_TENANT_ID, "_-.:")
}

/// A name of `len` characters, each a letter, a digit or one of `punctuation` (tenant ids,
/// RabbitMQ exchange and queue names).
pub fn plain_name(
    field: &str,
    name: &str,
    len: std::ops::RangeInclusive<usize>,
    punctuation: &str,
) -> Check {
    if !len.contains(&name.len()) {
        let message = match *len.start() {
            0 => format!("must be at most {} characters", len.end()),
            min => format!("must be {min}-{} characters", len.end()),
        };
        return Err(Invalid::new(field, message));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || punctuation.as_bytes().contains(&b))
    {
        return Err(Invalid::new(
            field,
            format!("may contain only letters, digits and `{punctuation}`"),
        ));
    }
    Ok(())
}

pub fn topic(field: &str, t: &str) -> Check {
    match topic::topic_error(t) {
        Some(msg) => Err(Invalid::new(field, msg)),
        None => Ok(()),
    }
}

pub fn topics(field: &str, patterns: &[String], max: usize) -> Check {
    if patterns.is_empty() || patterns.len() > max {
        return Err(Invalid::new(field, format!("must list 1-{max} patterns")));
    }
    for (i, p) in patterns.iter().enumerate() {
        if let Some(msg) = topic::pattern_error(p) {
            return Err(Invalid::new(format!("{field}[{i}]"), msg));
        }
    }
    Ok(())
}

/// An absolute `http`/`https` URL with a host, no credentials and no fragment.
pub fn webhook_url(field: &str, raw: &str, max_len: usize) -> Result<url::Url, Invalid> {
    if raw.len() > max_len {
        return Err(Invalid::new(
            field,
            format!("must be at most {max_len} characters"),
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| Invalid::new(field, format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Invalid::new(field, "must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Invalid::new(field, "must have a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Invalid::new(
            field,
            "must not contain credentials; use headers",
        ));
    }
    if url.fragment().is_some() {
        return Err(Invalid::new(field, "must not contain a fragment"));
    }
    Ok(url)
}

pub fn description(field: &str, d: &Option<String>, max_len: usize) -> Check {
    match d {
        Some(d) if d.len() > max_len => Err(Invalid::new(
            field,
            format!("must be at most {max_len} characters"),
        )),
        _ => Ok(()),
    }
}

pub fn headers(
    field: &str,
    headers: &BTreeMap<String, String>,
    max: usize,
    max_value: usize,
) -> Check {
    if headers.len() > max {
        return Err(Invalid::new(field, format!("at most {max} headers")));
    }
    for (name, value) in headers {
        let f = format!("{field}.{name}");
        let lower = name.to_ascii_lowercase();
        if name.is_empty()
            || name.len() > 128
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(Invalid::new(f, "is not a valid header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            return Err(Invalid::new(f, "is set by Herald and cannot be overridden"));
        }
        if value.len() > max_value || value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Invalid::new(
                f,
                format!("value must be at most {max_value} printable characters"),
            ));
        }
    }
    Ok(())
}

pub fn options(field: &str, o: &DestinationOptions) -> Check {
    if let Some(t) = o.timeout_ms
        && !(1000..=60_000).contains(&t)
    {
        return Err(Invalid::new(
            format!("{field}.timeout_ms"),
            "must be 1000-60000",
        ));
    }
    if let Some(n) = o.max_in_flight
        && !(1..=1000).contains(&n)
    {
        return Err(Invalid::new(
            format!("{field}.max_in_flight"),
            "must be 1-1000",
        ));
    }
    if let Some(n) = o.rate_limit
        && !(1..=100_000).contains(&n)
    {
        return Err(Invalid::new(
            format!("{field}.rate_limit"),
            "must be 1-100000 per second",
        ));
    }
    if let Some(s) = &o.retry_schedule {
        retry::validate_delays(s)
            .map_err(|m| Invalid::new(format!("{field}.retry_schedule"), m))?;
    }
    Ok(())
}

pub fn idempotency_key(field: &str, key: &str, max_len: usize) -> Check {
    if key.is_empty() || key.len() > max_len {
        return Err(Invalid::new(
            field,
            format!("must be 1-{max_len} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_short_and_plain() {
        assert!(tenant_id("id", "acme-corp_1").is_ok());
        assert_eq!(tenant_id("id", "").unwrap_err().field, "id");
        assert!(tenant_id("id", "a b").is_err());
        assert!(tenant_id("id", &"a".repeat(65)).is_err());
    }

    #[test]
    fn webhook_urls_must_be_absolute_http() {
        assert!(webhook_url("url", "https://example.com/hook", MAX_URL).is_ok());
        assert!(webhook_url("url", "ftp://example.com", MAX_URL).is_err());
        assert!(webhook_url("url", "not a url", MAX_URL).is_err());
        assert!(webhook_url("url", "https://user:pw@example.com", MAX_URL).is_err());
    }

    #[test]
    fn reserved_headers_cannot_be_set() {
        let mut h = BTreeMap::new();
        h.insert("X-Team".to_string(), "a".to_string());
        assert!(headers("headers", &h, MAX_HEADERS, MAX_HEADER_VALUE).is_ok());
        h.insert("Webhook-Signature".to_string(), "forged".to_string());
        let e = headers("headers", &h, MAX_HEADERS, MAX_HEADER_VALUE).unwrap_err();
        assert_eq!(e.field, "headers.Webhook-Signature");
    }

    #[test]
    fn options_out_of_range_name_their_field() {
        let o = DestinationOptions {
            timeout_ms: Some(5),
            ..Default::default()
        };
        assert_eq!(
            options("options", &o).unwrap_err().field,
            "options.timeout_ms"
        );
    }

    #[test]
    fn topic_lists_name_the_bad_pattern() {
        let e = topics("topics", &["ok".into(), "bad pattern".into()], MAX_TOPICS).unwrap_err();
        assert_eq!(e.field, "topics[1]");
        assert!(topics("topics", &[], MAX_TOPICS).is_err());
    }
}
