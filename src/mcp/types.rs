//! The tools' arguments and results. Their JSON Schemas are what clients show the model, so
//! every field has a doc comment, and every result is an object at its root (some clients
//! reject any other output schema, `oneOf` roots included).
//!
//! Results are read from the REST API's answers (see [`super::api`]); a few fields are renamed
//! on the way (`url` → `callback_url`) to say what they are to a model that sees only this.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// --- Agent tools: arguments -----------------------------------------------------------------

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointArgs {
    /// A note for humans, e.g. the job this URL was handed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How Herald checks what arrives; default `{"scheme": "none"}` (the unguessable URL is
    /// the only protection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationArgs>,
    /// After this many seconds the URL answers 410. Omitted: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Owning tenant (admin token only; a tenant token always creates its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Free-form JSON object kept with the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// Verification of a callback endpoint; a secret or token left out is generated and returned once.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationArgs {
    /// `none`, `token`, `standard_webhooks`, `github`, `stripe`, `shopify`, `slack`, `hmac` or `a2a`.
    pub scheme: String,
    /// Signing secret (signed schemes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Expected token (`token` and `a2a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `hmac` only: the header carrying the MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac` only: `sha1`, `sha256` (default) or `sha512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// `hmac` only: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `hmac` only: text before the MAC in the header, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// The endpoint's slug (the last part of its callback URL).
    #[serde(default)]
    pub slug: Option<String>,
    /// Instead of `slug`: the endpoint's id (`cbe_…`), or an event id (`evt_…`) to wait on
    /// the reply channel of an event published with `reply`.
    #[serde(default)]
    pub id: Option<String>,
    /// Return a callback with a greater cursor; pass the previous result's `cursor` to get
    /// the next one. Default 0: the first callback ever.
    #[serde(default)]
    pub after: Option<i64>,
    /// How long to wait; default 30000, at most 55000 (longer only when the client asked for
    /// progress notifications).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollArgs {
    /// Only this endpoint's callbacks (its slug or id); omitted: across all your endpoints.
    #[serde(default)]
    pub slug: Option<String>,
    /// Page size, 1-250 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    pub after: Option<String>,
    /// `false` (default): callbacks not acknowledged yet; `true`: acknowledged ones.
    #[serde(default)]
    pub acked: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckArgs {
    /// The callback's id (`cb_…`), from `poll_events` or `wait_for_callback`.
    pub event_id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageArgs {
    /// Page size, 1-250 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointRef {
    /// The endpoint's slug.
    #[serde(default)]
    pub slug: Option<String>,
    /// Instead of `slug`: the endpoint's id (`cbe_…`).
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyArgs {
    /// `token`, `standard_webhooks`, `github`, `stripe`, `shopify`, `slack`, `hmac` or `a2a`.
    pub scheme: String,
    /// The signing secret (for `token` and `a2a`: the expected token).
    pub secret: String,
    /// The request's headers, name to value.
    pub headers: BTreeMap<String, String>,
    /// The raw request body exactly as sent (signatures cover bytes).
    pub body: String,
    /// `true` when `body` is base64 (binary bodies).
    #[serde(default)]
    pub body_base64: bool,
    /// `hmac` only: the header carrying the MAC.
    #[serde(default)]
    pub header: Option<String>,
    /// `hmac` only: `sha1`, `sha256` (default) or `sha512`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// `hmac` only: `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// `hmac` only: text before the MAC, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayArgs {
    /// The captured callback's id (`cb_…`).
    pub id: String,
    /// Where to send its body and headers again (http or https), with its original method.
    pub target_url: String,
}

// --- Platform tools: arguments --------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    /// The tenant whose destinations receive the event.
    pub tenant_id: String,
    /// Dot-separated, e.g. `job.completed`.
    pub topic: String,
    /// The event's data, any JSON.
    pub data: Value,
    /// Open a reply channel: subscribers answer at its URL, and `wait_for_callback` with the
    /// returned `reply_slug` waits for the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyArgs>,
    /// Free-form JSON object kept with the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Your own id for this event: publishing it again returns the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyArgs {
    /// How long the reply URL accepts answers; default one day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDeliveriesArgs {
    pub tenant_id: String,
    /// `pending`, `in_flight`, `succeeded`, `failed` or `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, 1-250 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRef {
    /// The delivery's id (`dlv_…`).
    pub id: String,
}

// --- Results --------------------------------------------------------------------------------

/// A new callback endpoint. `secret` or `token` is shown only this once.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CreatedEndpointOut {
    pub id: String,
    pub slug: String,
    /// Hand this URL to the job that will call back.
    #[serde(rename(deserialize = "url"))]
    pub callback_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// RFC 3339, or null when the endpoint does not expire.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitStatus {
    Received,
    Pending,
}

/// `received` with the callback, or `pending` at the timeout. Either way, wait again with
/// `after` = `cursor` for the next one.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct WaitOut {
    pub status: WaitStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackOut>,
    pub cursor: i64,
}

/// A captured request. Exactly one of `body` (parsed JSON, when it was JSON), `body_text`
/// (UTF-8 text) or `body_base64` (binary) is present.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CallbackOut {
    pub id: String,
    pub endpoint_id: String,
    /// Per-endpoint sequence number; null for rejected requests.
    pub cursor: Option<i64>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub received_at: String,
    /// Whether the endpoint's verification scheme checked it (false for scheme `none`).
    pub verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    pub content_type: Option<String>,
    /// A2A push notifications: the task id and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a: Option<Map<String, Value>>,
    #[serde(default)]
    pub acked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CallbackPage {
    #[serde(rename(deserialize = "data"))]
    pub callbacks: Vec<CallbackOut>,
    /// Pass as `after` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AckOut {
    /// The acknowledged callback.
    pub id: String,
    /// When it was first acknowledged (acknowledging again keeps this).
    pub acked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointOut {
    pub id: String,
    pub slug: String,
    #[serde(rename(deserialize = "url"))]
    pub callback_url: String,
    pub tenant_id: Option<String>,
    pub label: Option<String>,
    /// The scheme and its non-secret settings.
    pub verification: Map<String, Value>,
    /// The event this endpoint is the reply channel of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The newest callback's cursor.
    pub cursor: i64,
    pub received: i64,
    pub rejected: i64,
    pub expires_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointPage {
    #[serde(rename(deserialize = "data"))]
    pub endpoints: Vec<EndpointOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeletedOut {
    /// The deleted endpoint's id; its URL answers 404 from now on.
    pub id: String,
    pub deleted: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct VerifyOut {
    /// The signature (or token) matches and, for timestamped schemes, is within ±5 minutes.
    pub valid: bool,
    pub scheme: String,
    /// Why not: `missing_header`, `malformed`, `timestamp_out_of_tolerance`,
    /// `signature_mismatch` or `token_mismatch`.
    pub code: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PublishOut {
    /// The event's id (`evt_…`).
    pub id: String,
    /// How many deliveries it created.
    pub deliveries: u32,
    /// The reply channel's URL, when `reply` was given.
    #[serde(default)]
    pub reply_url: Option<String>,
    /// Pass to `wait_for_callback` as `slug` to wait for a subscriber's reply.
    #[serde(default)]
    pub reply_slug: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryPage {
    /// Newest first; each with `id`, `event_id`, `destination_id`, `status`,
    /// `attempt_count`, `next_attempt_at`, ….
    #[serde(rename(deserialize = "data"))]
    pub deliveries: Vec<Map<String, Value>>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryOut {
    /// The delivery with its `attempts` (status code, duration, error, response of each).
    pub delivery: Map<String, Value>,
}

/// A tool's arguments, like rmcp's own `Parameters` (the `#[tool]` macro recognises the name
/// and takes the input schema from `T`), but a mismatch names the field: `timeout_ms: invalid
/// type: string "soon", expected u64`. The message keeps rmcp's prefix, so it still reaches the
/// model as a tool error it can correct.
#[derive(Debug)]
pub struct Parameters<T>(pub T);

impl<T: JsonSchema> JsonSchema for Parameters<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<S, T: serde::de::DeserializeOwned>
    rmcp::handler::server::common::FromContextPart<
        rmcp::handler::server::tool::ToolCallContext<'_, S>,
    > for Parameters<T>
{
    fn from_context_part(
        context: &mut rmcp::handler::server::tool::ToolCallContext<'_, S>,
    ) -> Result<Self, rmcp::ErrorData> {
        let arguments = Value::Object(context.arguments.take().unwrap_or_default());
        serde_path_to_error::deserialize(arguments)
            .map(Parameters)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." {
                    String::new()
                } else {
                    format!("{path}: ")
                };
                rmcp::ErrorData::invalid_params(
                    format!(
                        "failed to deserialize parameters: {field}{}",
                        e.into_inner()
                    ),
                    None,
                )
            })
    }
}
