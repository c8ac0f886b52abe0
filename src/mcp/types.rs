//! The tools' arguments and results. Their JSON Schemas are what clients show the model, so
//! every field has a doc comment, and every result is an object at its root (some clients
//! reject any other output schema, `oneOf` roots included).
//!
//! Results are the REST API's answers (see [`super::api`]), passed on as [`Rest`] with the REST
//! view's own schema: the same names, fields and enum values as the API, from one definition.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::state::DeliveryStatus;
use crate::inbound::verify::{Encoding, HmacAlgorithm, Scheme};

// --- Agent tools: arguments -----------------------------------------------------------------

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
    /// Also return the body's exact bytes (`raw_body_base64`), to check a signature yourself.
    #[serde(default)]
    pub raw_body: bool,
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
    /// Also return each body's exact bytes (`raw_body_base64`).
    #[serde(default)]
    pub raw_body: bool,
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
    /// The scheme to check the request with.
    pub scheme: Scheme,
    /// The signing secret (for `token` and `a2a`: the expected token; for
    /// `standard_webhooks` signed with ed25519: the sender's `whpk_` public key, which checks
    /// the `v1a` signatures).
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
    /// `hmac` only: the digest, `sha256` by default.
    #[serde(default)]
    pub algorithm: Option<HmacAlgorithm>,
    /// `hmac` only: how the header encodes the MAC, `hex` by default.
    #[serde(default)]
    pub encoding: Option<Encoding>,
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
    /// Open a reply channel: subscribers answer at the returned `reply_url`, and
    /// `wait_for_callback` with `id` = the event's id waits for the answer.
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
    /// The tenant whose deliveries to list.
    pub tenant_id: String,
    /// Only deliveries in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeliveryStatus>,
    /// Only deliveries to this destination (`dst_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_id: Option<String>,
    /// Only deliveries of this event (`evt_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Only deliveries of events with this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, 1-250 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListEventTypesArgs {
    /// The previous page's `next_cursor`.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size, 1-250 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Include archived types, which take no new events (default false).
    #[serde(default)]
    pub include_archived: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRef {
    /// The delivery's id (`dlv_…`).
    pub id: String,
}

// --- Results --------------------------------------------------------------------------------

/// A REST answer passed on as a tool's result. The JSON is what the REST API sent, and the
/// schema is the REST type's own (`T`), so a field or enum value added to the API's view
/// reaches the tool's output schema with no second edit, and the two cannot drift apart.
pub struct Rest<T> {
    value: Value,
    shape: PhantomData<fn() -> T>,
}

impl<T> Rest<T> {
    pub fn new(value: Value) -> Self {
        Rest {
            value,
            shape: PhantomData,
        }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

impl<T> Serialize for Rest<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Rest<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Rest::new)
    }
}

impl<T: JsonSchema> JsonSchema for Rest<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeletedOut {
    /// The deleted endpoint's id; its URL answers 404 from now on.
    pub id: String,
    /// Always `true`: the endpoint is gone.
    pub deleted: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct VerifyOut {
    /// The signature (or token) matches and, for timestamped schemes, is within ±5 minutes.
    pub valid: bool,
    /// The scheme it was checked with.
    pub scheme: Scheme,
    /// Why not: `missing_header`, `malformed`, `timestamp_out_of_tolerance`,
    /// `signature_mismatch` or `token_mismatch`.
    pub code: Option<String>,
    /// Why not, in words.
    pub reason: Option<String>,
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
