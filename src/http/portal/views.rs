//! What the templates show, shaped from the domain types: times as "3 min ago" beside the
//! absolute UTC time, statuses as badges, JSON pretty-printed.

use std::collections::BTreeMap;

use crate::domain::health::{DestinationHealth, HEALTH_SAMPLE};
use crate::domain::model::{Attempt, Delivery, Destination};
use crate::domain::time::{Millis, rfc3339};

/// A point in time as the portal shows it: relative and absolute, and machine-readable.
#[derive(Debug, Clone)]
pub struct Time {
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
    /// `2026-12-01 18:40:12 UTC`
    pub abs: String,
    /// `3 min ago`, `in 5 s`
    pub rel: String,
}

impl Time {
    pub fn new(at: Millis, now: Millis) -> Self {
        Time {
            iso: rfc3339(at),
            abs: chrono::DateTime::from_timestamp_millis(at)
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            rel: relative(at, now),
        }
    }
}

/// "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago" (or "in …" for the future).
pub fn relative(at: Millis, now: Millis) -> String {
    let d = (now - at) / 1000;
    let (n, future) = (d.unsigned_abs(), d < 0);
    if n < 5 {
        return "just now".into();
    }
    let amount = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..86400 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A `datetime-local` value (`2026-12-01T18:40`, read as UTC) as Unix milliseconds.
pub fn parse_local_time(s: &str) -> Option<Millis> {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s.trim(), f).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// The `datetime-local` value for a time.
pub fn local_time_value(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// The one-line message for a `?done=` code (unknown codes show nothing).
pub fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "created" => "Destination created. Reveal its signing secret below to verify requests.",
        "updated" => "Destination saved.",
        "enabled" => "Destination enabled: new events are delivered again.",
        "disabled" => "Destination disabled: new events are recorded as skipped.",
        "retried" => "A new attempt is scheduled now. Reload in a moment to see it below.",
        "test_sent" => "Test event sent. Its delivery is listed below.",
        "recovered" => "Recovery started: the failed and skipped deliveries are scheduled again.",
        _ => return None,
    })
}

/// The error text worth showing beside a status code: not when it only repeats `HTTP 500`.
fn error_beside(code: Option<u16>, error: Option<&str>) -> String {
    match (code, error) {
        (Some(c), Some(e)) if e == format!("HTTP {c}") => String::new(),
        (_, e) => e.unwrap_or_default().to_string(),
    }
}

/// An attempt's error as a person reads it, and the full text behind it (empty when the
/// summary is the whole story). The HTTP client reports a chain such as `error sending request
/// for url (https://hooks.example.com/x): client error (Connect): dns error: failed to lookup
/// address information: Name or service not known`; the summary is `DNS lookup failed for
/// hooks.example.com`.
pub struct ErrorText {
    pub summary: String,
    pub full: String,
}

impl ErrorText {
    pub fn new(error: &str) -> Self {
        let summary = summarize_error(error);
        let full = if summary == error {
            String::new()
        } else {
            error.to_string()
        };
        ErrorText { summary, full }
    }

    pub fn is_empty(&self) -> bool {
        self.summary.is_empty()
    }
}

/// The first line worth reading of an error chain; see [`ErrorText`].
pub fn summarize_error(error: &str) -> String {
    const LONGEST: usize = 140;
    let lower = error.to_ascii_lowercase();
    // `… for url (https://host/…)`: the host the failure is about.
    let host = error
        .split_once("for url (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(url, _)| url::Url::parse(url).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    // What failed, and the word that joins it to the host.
    let kind = if lower.contains("dns error") || lower.contains("failed to lookup address") {
        Some(("DNS lookup failed", "for"))
    } else if lower.contains("connection refused") {
        Some(("Connection refused", "by"))
    } else if lower.contains("timed out") || lower.contains("timeout") {
        Some(("No answer in time", "from"))
    } else if lower.contains("certificate") || lower.contains("tls") {
        Some(("TLS handshake failed", "with"))
    } else if lower.contains("(connect)") {
        Some(("Could not connect", "to"))
    } else {
        None
    };
    let summary = match (kind, &host) {
        (Some((what, joint)), Some(h)) => format!("{what} {joint} {h}"),
        (Some((what, _)), None) => what.to_string(),
        (None, _) => error.to_string(),
    };
    if summary.chars().count() > LONGEST {
        let cut: String = summary.chars().take(LONGEST - 1).collect();
        format!("{cut}…")
    } else {
        summary
    }
}

pub fn pretty_json(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| raw.to_string())
}

/// A destination in lists: what it is and how it is doing.
pub struct DestinationRow {
    pub id: String,
    pub url: String,
    pub description: String,
    pub topics: String,
    pub enabled: bool,
    pub disabled_reason: String,
    pub disabled_at: Option<Time>,
    /// `good`, `degraded`, `failing`, `idle` (a CSS class too).
    pub grade: &'static str,
    /// `98.5%`, or empty when nothing was attempted in 24 h.
    pub rate: String,
    /// `197 of 200 deliveries`
    pub rate_detail: String,
    pub last: Option<LastView>,
}

pub struct LastView {
    pub status: String,
    pub code: String,
    pub error: ErrorText,
    pub at: Time,
}

impl DestinationRow {
    pub fn new(d: &Destination, h: &DestinationHealth, now: Millis) -> Self {
        let total = h.succeeded + h.failed;
        DestinationRow {
            id: d.id.clone(),
            url: d.target_label().unwrap_or_default(),
            description: d.description.clone().unwrap_or_default(),
            topics: d.topics.join(", "),
            enabled: d.enabled,
            disabled_reason: d.disabled_reason.clone().unwrap_or_default(),
            disabled_at: d.disabled_at.map(|t| Time::new(t, now)),
            grade: h.grade(),
            rate: h
                .success_rate()
                .map(|r| format!("{r:.1}%"))
                .unwrap_or_default(),
            rate_detail: match total {
                0 => "no delivery attempted in the last 24 h".into(),
                _ if h.sampled >= HEALTH_SAMPLE as u64 => {
                    format!("of the latest {HEALTH_SAMPLE} deliveries in 24 h")
                }
                n => format!("{} of {n} deliveries succeeded in 24 h", h.succeeded),
            },
            last: h.last.as_ref().map(|l| LastView {
                status: l.status.as_str().to_string(),
                code: l.status_code.map(|c| c.to_string()).unwrap_or_default(),
                error: ErrorText::new(&error_beside(l.status_code, l.error.as_deref())),
                at: Time::new(l.at, now),
            }),
        }
    }

    /// A name for menus: the description, else the URL.
    pub fn label(d: &Destination) -> String {
        match &d.description {
            Some(desc) if !desc.is_empty() => desc.clone(),
            _ => d.target_label().unwrap_or_else(|| d.id.clone()),
        }
    }
}

/// A delivery in lists and at the top of its page.
pub struct DeliveryRow {
    pub id: String,
    pub event_id: String,
    pub topic: String,
    pub destination_id: String,
    pub destination: String,
    pub status: String,
    pub attempts: u32,
    pub last_code: String,
    pub last_error: ErrorText,
    pub created: Time,
    pub next_attempt: Option<Time>,
}

impl DeliveryRow {
    pub fn new(d: &Delivery, labels: &BTreeMap<String, String>, now: Millis) -> Self {
        DeliveryRow {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            topic: d.topic.clone(),
            destination_id: d.destination_id.clone(),
            destination: labels
                .get(&d.destination_id)
                .cloned()
                .unwrap_or_else(|| format!("{} (deleted)", d.destination_id)),
            status: d.status.as_str().to_string(),
            attempts: d.attempt_count,
            last_code: d
                .last_status_code
                .map(|c| c.to_string())
                .unwrap_or_default(),
            last_error: ErrorText::new(&error_beside(d.last_status_code, d.last_error.as_deref())),
            created: Time::new(d.created_at, now),
            next_attempt: d.next_attempt_at.map(|t| Time::new(t, now)),
        }
    }
}

/// One attempt on the delivery page's timeline.
pub struct AttemptView {
    pub attempt: u32,
    pub trigger: String,
    pub started: Time,
    pub duration_ms: u64,
    pub url: String,
    pub status_code: String,
    pub ok: bool,
    pub error_kind: String,
    pub error: ErrorText,
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
}

impl AttemptView {
    pub fn new(a: &Attempt, now: Millis) -> Self {
        AttemptView {
            attempt: a.attempt,
            trigger: a.trigger.as_str().to_string(),
            started: Time::new(a.started_at, now),
            duration_ms: a.duration_ms,
            url: a.url.clone().unwrap_or_default(),
            status_code: a.status_code.map(|c| c.to_string()).unwrap_or_default(),
            ok: a.status_code.is_some_and(|c| (200..300).contains(&c)),
            error_kind: a
                .error_kind
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
            error: ErrorText::new(a.error.as_deref().unwrap_or_default()),
            request_headers: a.request_headers.clone().into_iter().collect(),
            response_headers: a.response_headers.clone().into_iter().collect(),
            response_body: a
                .response_body
                .as_deref()
                .map(pretty_json)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally_both_ways() {
        let now = 1_000_000_000;
        assert_eq!(relative(now - 2_000, now), "just now");
        assert_eq!(relative(now - 42_000, now), "42 s ago");
        assert_eq!(relative(now - 3 * 60_000, now), "3 min ago");
        assert_eq!(relative(now - 5 * 3_600_000, now), "5 h ago");
        assert_eq!(relative(now - 2 * 86_400_000, now), "2 d ago");
        assert_eq!(relative(now + 300_000, now), "in 5 min");
    }

    #[test]
    fn datetime_local_values_are_read_as_utc_and_round_trip() {
        let t = parse_local_time("2026-12-01T18:40").unwrap();
        assert_eq!(rfc3339(t), "2026-12-01T18:40:00.000Z");
        assert_eq!(local_time_value(t), "2026-12-01T18:40");
        assert_eq!(parse_local_time("yesterday"), None);
    }

    #[test]
    fn client_error_chains_read_as_what_failed_and_for_which_host() {
        let chain = |inner: &str| {
            format!(
                "error sending request for url (https://hooks.example.com/a/very/long/path?q=1): \
                 client error (Connect): {inner}"
            )
        };
        for (inner, summary) in [
            (
                "dns error: failed to lookup address information: Name or service not known",
                "DNS lookup failed for hooks.example.com",
            ),
            (
                "tcp connect error: Connection refused (os error 111)",
                "Connection refused by hooks.example.com",
            ),
            (
                "operation timed out",
                "No answer in time from hooks.example.com",
            ),
            (
                "invalid peer certificate: UnknownIssuer",
                "TLS handshake failed with hooks.example.com",
            ),
            (
                "network unreachable",
                "Could not connect to hooks.example.com",
            ),
        ] {
            let e = ErrorText::new(&chain(inner));
            assert_eq!(e.summary, summary);
            assert_eq!(e.full, chain(inner), "the whole chain stays on demand");
        }
        // Short errors are their own summary; long unknown ones are cut.
        let short = ErrorText::new("HTTP 500: busy");
        assert_eq!(
            (short.summary.as_str(), short.full.as_str()),
            ("HTTP 500: busy", "")
        );
        let long = ErrorText::new(&"x".repeat(400));
        assert_eq!(long.summary.chars().count(), 140);
        assert_eq!(long.full.len(), 400);
        assert_eq!(
            summarize_error("dns error: no such host"),
            "DNS lookup failed"
        );
    }

    #[test]
    fn an_error_that_only_repeats_the_status_code_is_not_shown_twice() {
        assert_eq!(error_beside(Some(500), Some("HTTP 500")), "");
        assert_eq!(
            error_beside(Some(500), Some("HTTP 500: busy")),
            "HTTP 500: busy"
        );
        assert_eq!(
            error_beside(None, Some("connection refused")),
            "connection refused"
        );
    }

    #[test]
    fn only_known_notice_codes_show_text() {
        assert!(notice("retried").is_some());
        assert_eq!(notice("<script>"), None);
    }
}
