//! The objects Herald stores, as the rest of the program sees them. They serialize to the
//! API's JSON shapes (docs/api.md); times are Unix milliseconds inside and RFC 3339 outside.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::amqp::AmqpTarget;
use super::signature::SignatureKind;
use super::state::{DeliveryStatus, ErrorKind, Trigger};
use super::time::{Millis, serde_rfc3339};

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    /// Free-form key/value data of the platform's.
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// An HTTP endpoint: a signed `POST` per delivery.
    Webhook,
    /// A RabbitMQ exchange: a persistent, signed message per delivery, confirmed by the broker.
    Rabbitmq,
}

impl DestinationKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Webhook => "webhook",
            DestinationKind::Rabbitmq => "rabbitmq",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(DestinationKind::Webhook),
            "rabbitmq" => Some(DestinationKind::Rabbitmq),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    #[default]
    None,
    Fifo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// `{"type": topic, "timestamp": …, "data": data}` (Standard Webhooks).
    #[default]
    Envelope,
    /// The event's `data` alone.
    Data,
}

/// Per-destination delivery options; every field is optional and falls back to the
/// deployment's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DestinationOptions {
    /// Most deliveries of this destination in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Most deliveries per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<Ordering>,
    /// Request timeout, 1–60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadFormat>,
    /// Delays in seconds before each retry; its length + 1 is the number of attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_schedule: Option<Vec<u64>>,
    /// Send the attempt's W3C `traceparent` header (when Herald exports traces), so the
    /// receiver's spans join the trace. `false` keeps it from this receiver. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_trace: Option<bool>,
}

/// A signing secret; while a rotation overlaps, the old one carries `expires_at`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}

/// Redacted: a destination logged with `{:?}` must not leak its secrets.
impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecret")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Destination {
    pub id: String,
    pub tenant_id: String,
    #[serde(rename = "type")]
    pub kind: DestinationKind,
    /// The webhook URL (`type: "webhook"`); null for RabbitMQ destinations.
    pub url: Option<String>,
    /// The broker, exchange and routing key (`type: "rabbitmq"`), as flat fields.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(inline, value_type = super::amqp::AmqpTargetFields)]
    pub amqp: Option<AmqpTarget>,
    pub description: Option<String>,
    pub topics: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    pub headers: BTreeMap<String, String>,
    pub options: DestinationOptions,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Millis>,
    /// Shown only as how they sign and, for ed25519, the public keys: the API reveals an
    /// HMAC secret only when it is created or rotated, and an ed25519 signing key never.
    #[serde(flatten, serialize_with = "signing_view")]
    #[schema(inline, value_type = SigningView)]
    pub secrets: Vec<SigningSecret>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

/// What the API shows of a destination's secrets.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SigningView {
    /// `hmac` (`v1` signatures, a shared `whsec_` secret) or `ed25519` (`v1a` signatures,
    /// verified with a public key).
    pub signature: SignatureKind,
    /// `ed25519` only: the keys that verify its signatures, newest first. During a
    /// rotation's overlap there are two, and requests carry a signature by each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<PublicKey>,
}

/// An ed25519 public key of a destination.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PublicKey {
    /// `whpk_` + base64 of the 32-byte key.
    pub public_key: String,
    /// When it stops verifying (the previous key during a rotation); null for the current.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Millis>,
}

impl SigningView {
    pub fn of(secrets: &[SigningSecret]) -> SigningView {
        SigningView {
            signature: secrets
                .first()
                .map(|s| SignatureKind::of(&s.secret))
                .unwrap_or_default(),
            public_keys: secrets
                .iter()
                .filter_map(|s| {
                    Some(PublicKey {
                        public_key: crate::domain::signature::public_key_of(&s.secret)?,
                        expires_at: s.expires_at,
                    })
                })
                .collect(),
        }
    }
}

fn signing_view<S: serde::Serializer>(secrets: &[SigningSecret], s: S) -> Result<S::Ok, S::Error> {
    SigningView::of(secrets).serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_signing_secret() {
        let s = SigningSecret {
            secret: "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0".into(),
            expires_at: None,
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("whsec_") && shown.contains("<redacted>"));
    }
}

impl Destination {
    /// Where it sends, as a person may see it: the webhook URL, or the broker (password
    /// shown as `***`) and exchange.
    pub fn target_label(&self) -> Option<String> {
        match &self.amqp {
            Some(t) => Some(format!("{} exchange '{}'", t.url.redacted(), t.exchange)),
            None => self.url.clone(),
        }
    }

    /// Secrets that sign a request sent at `now`, newest first.
    pub fn active_secrets(&self, now: Millis) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|t| t > now))
            .map(|s| s.secret.as_str())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub id: String,
    pub tenant_id: String,
    pub topic: String,
    /// The publisher's JSON, byte for byte.
    #[schema(schema_with = any_json)]
    pub data: Box<serde_json::value::RawValue>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub idempotency_key: Option<String>,
    /// The version of the topic's event type (docs/event-types.md) whose schema `data` was
    /// checked against; null when it was not checked.
    pub schema_version: Option<i64>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, schemars::JsonSchema)]
pub struct Delivery {
    /// The delivery's id (`dlv_…`).
    pub id: String,
    /// The tenant the event belongs to.
    pub tenant_id: String,
    /// The event delivered (`evt_…`).
    pub event_id: String,
    /// Where it goes (`dst_…`).
    pub destination_id: String,
    /// The event's topic.
    pub topic: String,
    /// Where it stands: `scheduled`, `delivering` and `retrying` are still in play;
    /// `succeeded`, `failed`, `skipped` and `cancelled` are final.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// When the next attempt is due; null once the delivery is final.
    #[serde(with = "serde_rfc3339::option")]
    #[schemars(with = "Option<String>")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Millis>,
    /// The HTTP status of the latest attempt, if it got an answer.
    pub last_status_code: Option<u16>,
    /// Why the latest attempt failed, if it did.
    pub last_error: Option<String>,
    /// When the delivery was created (RFC 3339).
    #[serde(with = "serde_rfc3339")]
    #[schemars(with = "String")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// When it last changed (RFC 3339).
    #[serde(with = "serde_rfc3339")]
    #[schemars(with = "String")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
    /// When it reached a final status (RFC 3339); null while it is still in play.
    #[serde(with = "serde_rfc3339::option")]
    #[schemars(with = "Option<String>")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finalized_at: Option<Millis>,
    /// Present when one delivery is read; omitted in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<Attempt>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, schemars::JsonSchema)]
pub struct Attempt {
    /// The attempt's id (`att_…`).
    pub id: String,
    /// The delivery it belongs to.
    pub delivery_id: String,
    /// Its number, from 1.
    pub attempt: u32,
    /// What caused it: the schedule, or a manual retry or replay.
    pub trigger: Trigger,
    /// When it started (RFC 3339).
    #[serde(with = "serde_rfc3339")]
    #[schemars(with = "String")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Millis,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The URL sent to (webhooks), or the broker as `amqp://user:***@…`.
    pub url: Option<String>,
    /// The HTTP status the receiver answered; null when none came back.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error_kind: Option<ErrorKind>,
    /// The error in words, if it failed.
    pub error: Option<String>,
    /// The headers sent (secrets redacted).
    pub request_headers: BTreeMap<String, String>,
    /// The headers the receiver answered with.
    pub response_headers: BTreeMap<String, String>,
    /// The start of the receiver's answer (at most 16 KiB).
    pub response_body: Option<String>,
}

/// A bulk recovery: every failed or skipped delivery of one destination since a time,
/// scheduled again. `progress` counts those deliveries by their current status, so the job
/// can be watched until nothing is left pending.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Recovery {
    pub id: String,
    pub tenant_id: String,
    pub destination_id: String,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: Millis,
    /// Deliveries scheduled again.
    pub count: u64,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    pub progress: BTreeMap<String, u64>,
    /// True once none of its deliveries is still scheduled, retrying or delivering.
    pub done: bool,
}

/// The OpenAPI schema of a value that may be any JSON (object, array, string, number,
/// boolean or null): declared without a `type`, so a typed client keeps whatever arrives
/// rather than failing on an array or a scalar.
pub fn any_json() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some("Any JSON value"))
        .into()
}

/// A page of a list: `{data, next_cursor}`; pass `after=<next_cursor>` for the next one.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct Page<T> {
    /// This page's items.
    pub data: Vec<T>,
    /// Pass as `after` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched newest first: the extra row only
    /// tells that there is a next page.
    pub fn from_rows(mut rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page {
            data: rows,
            next_cursor,
        }
    }
}
