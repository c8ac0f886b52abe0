//! Callback endpoints and captured callbacks, as stored and as the API shows them (docs/api.md),
//! and the verification scheme an endpoint is configured with. `inbound` verifies requests
//! against these and `store` persists them; both depend on the shapes here, not on each other.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::time::{Millis, serde_rfc3339};

/// An inbound URL and how requests to it are verified.
#[derive(Debug, Clone)]
pub struct CallbackEndpoint {
    pub id: String,
    pub slug: String,
    /// `None`: owned by the platform.
    pub tenant_id: Option<String>,
    pub label: Option<String>,
    pub verification: Verification,
    pub metadata: Value,
    /// Set when this endpoint is an event's reply channel.
    pub event_id: Option<String>,
    /// The cursor of the newest accepted callback (0: none yet).
    pub last_cursor: i64,
    pub received: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub expires_at: Option<Millis>,
    pub created_at: Millis,
}

impl CallbackEndpoint {
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    /// Verified (or the scheme is `none`): has a cursor, wakes waiters.
    Accepted,
    /// Failed verification: answered 401, kept for debugging, never shown to waiters.
    Rejected,
}

impl CallbackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackStatus::Accepted => "accepted",
            CallbackStatus::Rejected => "rejected",
        }
    }
}

/// One captured request.
#[derive(Debug, Clone)]
pub struct Callback {
    pub id: String,
    pub endpoint_id: String,
    pub tenant_id: Option<String>,
    /// Assigned by the store when accepted; `None` for rejected requests.
    pub cursor: Option<i64>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub remote_addr: Option<String>,
    pub received_at: Millis,
    pub verified: bool,
    pub status: CallbackStatus,
    pub reject_reason: Option<String>,
    pub dedupe_key: Option<String>,
    pub a2a: Option<A2aInfo>,
    pub acked_at: Option<Millis>,
}

/// What ingest did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored with this cursor.
    Stored { cursor: i64 },
    /// The sender's delivery id was seen before: counted, not stored again.
    Duplicate { original_id: String },
    /// Stored as `rejected`.
    Rejected,
}

/// The endpoint's verification as shown after creation: the scheme and its settings, never the
/// secret or token (those are returned once, when the endpoint is created).
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct VerificationView {
    /// The scheme that checks what arrives.
    pub scheme: Scheme,
    /// `hmac` only: the header carrying the MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac` only: the digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// `hmac` only: how the header encodes the MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `hmac` only: text before the MAC in the header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

pub fn scheme_name(v: &Verification) -> &'static str {
    v.scheme().as_str()
}

impl From<&Verification> for VerificationView {
    fn from(v: &Verification) -> Self {
        let mut view = VerificationView {
            scheme: v.scheme(),
            header: None,
            algorithm: None,
            encoding: None,
            prefix: None,
        };
        if let Verification::Hmac {
            header,
            algorithm,
            encoding,
            prefix,
            ..
        } = v
        {
            view.header = Some(header.clone());
            view.algorithm = Some(*algorithm);
            view.encoding = Some(*encoding);
            view.prefix = prefix.clone();
        }
        view
    }
}

/// A callback endpoint as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct EndpointView {
    /// The endpoint's id (`cbe_…`).
    pub id: String,
    /// The unguessable last part of its URL.
    pub slug: String,
    /// `{public_url}/in/{slug}`: hand this to the job that will call back.
    pub url: String,
    /// The owning tenant; null for the platform's own endpoints.
    pub tenant_id: Option<String>,
    /// A note for humans, e.g. the job this URL was handed to.
    pub label: Option<String>,
    /// How what arrives is checked: the scheme and its settings, never the secret.
    pub verification: VerificationView,
    /// Free-form JSON object kept with the endpoint.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The event this endpoint is the reply channel of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The newest callback's cursor: `wait?after=<cursor>` waits for the next one.
    pub cursor: i64,
    /// Callbacks accepted so far.
    pub received: i64,
    /// Repeats of an accepted callback, answered and not stored again.
    pub duplicates: i64,
    /// Requests that failed verification.
    pub rejected: i64,
    /// When the URL starts answering 410 (RFC 3339); null: never.
    #[serde(with = "serde_rfc3339::option")]
    #[schemars(with = "Option<String>")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Millis>,
    /// When it was created (RFC 3339).
    #[serde(with = "serde_rfc3339")]
    #[schemars(with = "String")]
    #[schema(value_type = String)]
    pub created_at: Millis,
}

impl EndpointView {
    pub fn new(e: &CallbackEndpoint, public_url: &str) -> Self {
        EndpointView {
            id: e.id.clone(),
            slug: e.slug.clone(),
            url: callback_url(public_url, &e.slug),
            tenant_id: e.tenant_id.clone(),
            label: e.label.clone(),
            verification: (&e.verification).into(),
            metadata: e.metadata.clone(),
            event_id: e.event_id.clone(),
            cursor: e.last_cursor,
            received: e.received,
            duplicates: e.duplicates,
            rejected: e.rejected,
            expires_at: e.expires_at,
            created_at: e.created_at,
        }
    }
}

pub fn callback_url(public_url: &str, slug: &str) -> String {
    format!("{}/in/{slug}", public_url.trim_end_matches('/'))
}

#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct A2aView {
    /// The A2A task the notification is about.
    pub task_id: String,
    /// The task's state, in the v0.3 spelling (`completed`, `input-required`, …).
    pub state: Option<String>,
}

/// A captured callback as the API (and SSE, and the MCP tools) shows it. Exactly one of `body`
/// (the parsed JSON, when the request was JSON), `body_text` (UTF-8) or `body_base64` is set.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct CallbackView {
    /// The callback's id (`cb_…`).
    pub id: String,
    /// The endpoint it arrived at (`cbe_…`).
    pub endpoint_id: String,
    /// `null` for rejected requests.
    pub cursor: Option<i64>,
    /// The HTTP method it arrived with.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The query string, with the endpoint's own token redacted.
    pub query: Option<String>,
    /// The request headers, names in lower case (the endpoint's own credential redacted).
    pub headers: BTreeMap<String, String>,
    /// When it arrived (RFC 3339).
    #[serde(with = "serde_rfc3339")]
    #[schemars(with = "String")]
    #[schema(value_type = String)]
    pub received_at: Millis,
    /// Whether the endpoint's scheme checked it (false for `none`).
    pub verified: bool,
    /// `accepted`, or `rejected` when verification refused it.
    pub status: CallbackStatus,
    /// Why verification refused it (`code: message`), for rejected requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// The body as JSON, when it was sent as JSON: any JSON value (an object, an array or a
    /// scalar), with the sender's key order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::domain::model::any_json)]
    pub body: Option<Value>,
    /// The body as text, when it is UTF-8 but not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    /// The body in base64, when it is binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body exactly as it arrived, in base64, beside whichever of the three above is set:
    /// only when asked for (`raw_body=true`), for a caller that checks a signature itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_body_base64: Option<String>,
    /// The request's `content-type`.
    pub content_type: Option<String>,
    /// The sender's address, as the server saw it.
    pub remote_addr: Option<String>,
    /// The sender's delivery id this callback was deduplicated on.
    pub dedupe_key: Option<String>,
    /// Task id and state of an A2A push notification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a2a: Option<A2aView>,
    /// When it was acknowledged (RFC 3339); null until then.
    #[serde(with = "serde_rfc3339::option")]
    #[schemars(with = "Option<String>")]
    #[schema(value_type = Option<String>)]
    pub acked_at: Option<Millis>,
}

impl From<&Callback> for CallbackView {
    fn from(c: &Callback) -> Self {
        CallbackView::new(c, false)
    }
}

impl CallbackView {
    /// The view of `c`; with `raw_body`, also the exact bytes (`raw_body_base64`).
    pub fn new(c: &Callback, raw_body: bool) -> Self {
        let (body, body_text, body_base64) = body_repr(c.content_type.as_deref(), &c.body);
        CallbackView {
            id: c.id.clone(),
            endpoint_id: c.endpoint_id.clone(),
            cursor: c.cursor,
            method: c.method.clone(),
            path: c.path.clone(),
            query: c.query.clone(),
            headers: c.headers.clone(),
            received_at: c.received_at,
            verified: c.verified,
            status: c.status,
            reject_reason: c.reject_reason.clone(),
            body,
            body_text,
            body_base64,
            raw_body_base64: raw_body.then(|| STANDARD.encode(&c.body)),
            content_type: c.content_type.clone(),
            remote_addr: c.remote_addr.clone(),
            dedupe_key: c.dedupe_key.clone(),
            a2a: c.a2a.as_ref().map(|a| A2aView {
                task_id: a.task_id.clone(),
                state: a.state.clone(),
            }),
            acked_at: c.acked_at,
        }
    }
}

/// JSON when the sender said JSON and it parses; otherwise text when it is UTF-8; otherwise
/// base64. Agents read `body` directly for the common case and never get mangled bytes.
fn body_repr(
    content_type: Option<&str>,
    body: &[u8],
) -> (Option<Value>, Option<String>, Option<String>) {
    let is_json = content_type.is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("application/json") || ct.contains("+json")
    });
    if is_json && let Ok(v) = serde_json::from_slice::<Value>(body) {
        return (Some(v), None, None);
    }
    match std::str::from_utf8(body) {
        Ok(s) => (None, Some(s.to_string()), None),
        Err(_) => (None, None, Some(STANDARD.encode(body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_parsed_text_is_text_and_binary_is_base64() {
        let (j, _, _) = body_repr(Some("application/json; charset=utf-8"), br#"{"a":1}"#);
        assert_eq!(j, Some(serde_json::json!({"a": 1})));
        let (j, t, _) = body_repr(Some("application/json"), b"not json");
        assert_eq!((j, t.as_deref()), (None, Some("not json")));
        let (_, t, _) = body_repr(Some("text/plain"), b"hello");
        assert_eq!(t.as_deref(), Some("hello"));
        let (_, _, b) = body_repr(None, &[0xff, 0x00]);
        assert_eq!(b.as_deref(), Some("/wA="));
    }
}

/// Config of a callback endpoint's verification (stored as JSON; secret already decrypted).
///
/// `Debug` is implemented by hand so that logging a config never prints a secret (SECURITY.md).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scheme")]
pub enum Verification {
    /// Accept everything; the unguessable slug is the only protection.
    #[serde(rename = "none")]
    None,
    /// `Authorization: Bearer <token>` or `?token=` query, for senders that cannot sign.
    #[serde(rename = "token")]
    Token { token: String },
    /// `whsec_<base64>`; `webhook-*` or `svix-*` headers; any of several `v1,<b64>` entries.
    #[serde(rename = "standard_webhooks")]
    StandardWebhooks { secret: String },
    /// `X-Hub-Signature-256: sha256=<hex>`; GitHub signs no timestamp.
    #[serde(rename = "github")]
    Github { secret: String },
    /// `Stripe-Signature: t=..,v1=..`; the HMAC key is the whole secret string.
    #[serde(rename = "stripe")]
    Stripe { secret: String },
    /// `X-Shopify-Hmac-Sha256: <base64>` of the raw body.
    #[serde(rename = "shopify")]
    Shopify { secret: String },
    /// `X-Slack-Signature: v0=<hex>` of `v0:{ts}:{body}` plus `X-Slack-Request-Timestamp`.
    #[serde(rename = "slack")]
    Slack { secret: String },
    /// Generic HMAC of the raw body for senders not covered above.
    #[serde(rename = "hmac")]
    Hmac {
        secret: String,
        header: String,
        #[serde(default)]
        algorithm: HmacAlgorithm,
        #[serde(default)]
        encoding: Encoding,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
    /// A2A push notifications: token header check, then the body must be an A2A task payload.
    #[serde(rename = "a2a")]
    A2a { token: String },
}

impl fmt::Debug for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "<redacted>";
        match self {
            Self::None => f.write_str("None"),
            Self::Token { .. } => f.debug_struct("Token").field("token", &HIDDEN).finish(),
            Self::StandardWebhooks { .. } => f
                .debug_struct("StandardWebhooks")
                .field("secret", &HIDDEN)
                .finish(),
            Self::Github { .. } => f.debug_struct("Github").field("secret", &HIDDEN).finish(),
            Self::Stripe { .. } => f.debug_struct("Stripe").field("secret", &HIDDEN).finish(),
            Self::Shopify { .. } => f.debug_struct("Shopify").field("secret", &HIDDEN).finish(),
            Self::Slack { .. } => f.debug_struct("Slack").field("secret", &HIDDEN).finish(),
            Self::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
                ..
            } => f
                .debug_struct("Hmac")
                .field("secret", &HIDDEN)
                .field("header", header)
                .field("algorithm", algorithm)
                .field("encoding", encoding)
                .field("prefix", prefix)
                .finish(),
            Self::A2a { .. } => f.debug_struct("A2a").field("token", &HIDDEN).finish(),
        }
    }
}

/// The name of a verification scheme, as the API and the MCP tools spell it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, Deserialize, ToSchema, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Accept everything; the unguessable URL is the only protection.
    #[default]
    None,
    /// `Authorization: Bearer <token>` or `?token=`.
    Token,
    /// Standard Webhooks (`webhook-*` or `svix-*` headers, `whsec_` secret).
    StandardWebhooks,
    /// GitHub's `X-Hub-Signature-256`.
    Github,
    /// Stripe's `Stripe-Signature`.
    Stripe,
    /// Shopify's `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// Slack's `X-Slack-Signature` with `X-Slack-Request-Timestamp`.
    Slack,
    /// An HMAC of the raw body in a header you name.
    Hmac,
    /// A2A push notifications: a token header, and an A2A task body.
    A2a,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::Token => "token",
            Scheme::StandardWebhooks => "standard_webhooks",
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Shopify => "shopify",
            Scheme::Slack => "slack",
            Scheme::Hmac => "hmac",
            Scheme::A2a => "a2a",
        }
    }
}

impl Verification {
    /// The scheme's name.
    pub fn scheme(&self) -> Scheme {
        match self {
            Verification::None => Scheme::None,
            Verification::Token { .. } => Scheme::Token,
            Verification::StandardWebhooks { .. } => Scheme::StandardWebhooks,
            Verification::Github { .. } => Scheme::Github,
            Verification::Stripe { .. } => Scheme::Stripe,
            Verification::Shopify { .. } => Scheme::Shopify,
            Verification::Slack { .. } => Scheme::Slack,
            Verification::Hmac { .. } => Scheme::Hmac,
            Verification::A2a { .. } => Scheme::A2a,
        }
    }
}

/// Digest of the generic `hmac` scheme; SHA-256 unless configured, as most senders use it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

/// How the generic `hmac` scheme's header encodes the MAC; hex unless configured.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Hex,
    /// Standard or URL-safe alphabet, padding optional: senders disagree, and the MAC is what counts.
    Base64,
}

/// The task an A2A push notification is about.
#[derive(Debug, Clone, PartialEq)]
pub struct A2aInfo {
    pub task_id: String,
    /// Normalised to the v0.3 spelling (`completed`, `input-required`, …) so waiters see one
    /// vocabulary whichever protocol version the agent speaks; v1.0's `TASK_STATE_*` names map onto it.
    pub state: Option<String>,
}

/// The stored form of a verification scheme (`callback_endpoints.verification`, sealed JSON):
/// `{"v": 1, "scheme": "github", "secret": "…"}`. Scheme names are fixed by the `rename`s on
/// [`Verification`] and every variant's form is pinned by a test, so renaming Rust code changes
/// nothing stored. Reading also accepts the unversioned form earlier releases wrote (the same
/// names, without `"v"`); a later format is refused rather than misread.
#[derive(Serialize, Deserialize)]
pub struct StoredVerification {
    /// Absent (0) in values written before the format was versioned.
    #[serde(default)]
    pub v: u32,
    #[serde(flatten)]
    pub scheme: Verification,
}

impl StoredVerification {
    /// The format written now.
    pub const VERSION: u32 = 1;

    pub fn current(scheme: &Verification) -> Self {
        Self {
            v: Self::VERSION,
            scheme: scheme.clone(),
        }
    }

    /// Reads a stored value of this format or the unversioned one before it.
    pub fn read(json: &str) -> Result<Verification, String> {
        let stored: StoredVerification = serde_json::from_str(json).map_err(|e| e.to_string())?;
        match stored.v {
            0 | Self::VERSION => Ok(stored.scheme),
            v => Err(format!(
                "verification format {v} is newer than this release reads"
            )),
        }
    }
}

#[cfg(test)]
mod stored_verification_tests {
    use super::*;

    fn stored(v: &Verification) -> String {
        serde_json::to_string(&StoredVerification::current(v)).unwrap()
    }

    #[test]
    fn every_scheme_is_stored_in_its_pinned_form() {
        let secret = || "s".to_string();
        let cases = [
            (Verification::None, r#"{"v":1,"scheme":"none"}"#),
            (
                Verification::Token { token: secret() },
                r#"{"v":1,"scheme":"token","token":"s"}"#,
            ),
            (
                Verification::StandardWebhooks { secret: secret() },
                r#"{"v":1,"scheme":"standard_webhooks","secret":"s"}"#,
            ),
            (
                Verification::Github { secret: secret() },
                r#"{"v":1,"scheme":"github","secret":"s"}"#,
            ),
            (
                Verification::Stripe { secret: secret() },
                r#"{"v":1,"scheme":"stripe","secret":"s"}"#,
            ),
            (
                Verification::Shopify { secret: secret() },
                r#"{"v":1,"scheme":"shopify","secret":"s"}"#,
            ),
            (
                Verification::Slack { secret: secret() },
                r#"{"v":1,"scheme":"slack","secret":"s"}"#,
            ),
            (
                Verification::Hmac {
                    secret: secret(),
                    header: "x-sig".into(),
                    algorithm: HmacAlgorithm::Sha512,
                    encoding: Encoding::Base64,
                    prefix: Some("sha512=".into()),
                },
                r#"{"v":1,"scheme":"hmac","secret":"s","header":"x-sig","algorithm":"sha512","encoding":"base64","prefix":"sha512="}"#,
            ),
            (
                Verification::A2a { token: secret() },
                r#"{"v":1,"scheme":"a2a","token":"s"}"#,
            ),
        ];
        for (scheme, form) in cases {
            assert_eq!(stored(&scheme), form);
            assert_eq!(StoredVerification::read(form).unwrap(), scheme, "{form}");
        }
    }

    #[test]
    fn the_unversioned_form_of_earlier_releases_is_read() {
        let old = r#"{"scheme":"hmac","secret":"s","header":"x-sig"}"#;
        let read = StoredVerification::read(old).unwrap();
        assert_eq!(
            read,
            Verification::Hmac {
                secret: "s".into(),
                header: "x-sig".into(),
                algorithm: HmacAlgorithm::Sha256,
                encoding: Encoding::Hex,
                prefix: None,
            }
        );
        assert_eq!(
            StoredVerification::read(r#"{"scheme":"none"}"#).unwrap(),
            Verification::None
        );
    }

    #[test]
    fn a_later_format_is_refused_not_misread() {
        let err = StoredVerification::read(r#"{"v":2,"scheme":"none"}"#).unwrap_err();
        assert!(err.contains("format 2"), "{err}");
    }
}
