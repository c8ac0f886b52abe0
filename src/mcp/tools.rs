//! The MCP server: agent tools (callback endpoints, waiting, poll/ack, signatures, replay) and
//! platform tools (publish, deliveries). Each tool is one or a few REST calls (see
//! [`super::api`]); what is MCP-specific lives here: long waits cut into slices with progress
//! notifications and cancellation, results as typed objects, and the split between errors the
//! model should read (tool errors) and protocol misuse (JSON-RPC errors).

use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, Implementation, ProgressNotificationParam,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::api::{ApiCallError, ApiClient, segment};
use super::schema::{Direction, portable};
use super::types::*;
use crate::domain::catalog::EventType;
use crate::domain::model::{Delivery, Page};
use crate::inbound::model::{CallbackView, EndpointView};
use crate::inbound::verify::Scheme;
use crate::service::callbacks::WaitResponse;
use crate::service::replay::ReplayResult;
use crate::service::{
    CreateCallbackEndpoint, CreatedEndpoint, InboundSettings, PublishResponse, VerificationRequest,
};

/// The cap on a wait when the client asked for progress: notifications keep it listening, so
/// the 60 s at which many clients give up on a silent request does not apply.
pub const MAX_WAIT_WITH_PROGRESS: Duration = Duration::from_secs(15 * 60);

/// How long `wait_for_callback` waits (docs/mcp.md).
#[derive(Debug, Clone, Copy)]
pub struct WaitLimits {
    /// A wait without `timeout_ms` lasts this long (30 s)...
    pub default: Duration,
    /// ...and none lasts longer (55 s) unless the client sent a progress token.
    pub max: Duration,
    /// A progress notification goes out about this often (10 s).
    pub progress_every: Duration,
}

impl WaitLimits {
    /// The limits this Herald's own API applies.
    pub fn of(settings: &InboundSettings) -> Self {
        Self {
            default: settings.default_wait,
            max: settings.max_wait,
            progress_every: settings.progress_every,
        }
    }
}

impl Default for WaitLimits {
    /// Herald's defaults, assumed for a remote Herald (`herald mcp --url`).
    fn default() -> Self {
        Self::of(&InboundSettings::default())
    }
}

/// How a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The model should read this and act on it (bad input, not found, forbidden, Herald
    /// unreachable): a result with `isError: true`.
    #[error("{0}")]
    Tool(String),
    /// Not the model's to fix (a cancelled request, a broken invariant): a JSON-RPC error.
    /// Arguments that do not match the schema are the model's to fix: rmcp answers them as
    /// tool errors, as MCP 2025-11-25 asks, and so does Herald for its own checks. Protocol
    /// misuse (an unknown tool, a malformed request) never reaches a tool.
    #[error("{0}")]
    Protocol(ErrorData),
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        match self {
            ToolError::Tool(msg) => Ok(CallToolResult::error(vec![ContentBlock::text(msg)]).into()),
            ToolError::Protocol(e) => Err(e),
        }
    }
}

impl From<ApiCallError> for ToolError {
    fn from(e: ApiCallError) -> Self {
        ToolError::Tool(match e {
            ApiCallError::Problem { status, detail, .. } if status >= 500 => {
                format!("Herald failed (HTTP {status}): {detail}")
            }
            other => other.to_string(),
        })
    }
}

/// The credential a session's calls carry.
#[derive(Clone)]
pub enum Credential {
    /// Fixed for the process: `herald mcp` (the embedded Herald's admin token, or
    /// `HERALD_TOKEN` for a remote one).
    Fixed(String),
    /// Taken from each HTTP request: `/mcp`, where the bearer token was checked on the way in
    /// and every tool call acts with exactly that token's scope.
    PerRequest,
}

/// Marks an HTTP request whose bearer token `/mcp` has accepted; holds the header value.
#[derive(Clone)]
pub struct Authorized(pub String);

/// One MCP session's server. Cheap to build: `/mcp` makes one per session.
#[derive(Clone)]
pub struct HeraldMcp {
    api: ApiClient,
    credential: Credential,
    limits: WaitLimits,
    tool_router: ToolRouter<Self>,
}

impl HeraldMcp {
    /// The authorization header value for this call.
    fn authorization(&self, ctx: &RequestContext<RoleServer>) -> Result<String, ToolError> {
        match &self.credential {
            Credential::Fixed(token) => Ok(format!("Bearer {token}")),
            Credential::PerRequest => ctx
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|p| p.extensions.get::<Authorized>())
                .map(|a| a.0.clone())
                // The `/mcp` layer refuses requests without a valid token, so this is a bug.
                .ok_or_else(|| {
                    ToolError::Protocol(ErrorData::internal_error(
                        "the request carries no accepted credential",
                        None,
                    ))
                }),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        ctx: &RequestContext<RoleServer>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ToolError> {
        let auth = self.authorization(ctx)?;
        let answer = self.api.call(&auth, method, path, body).await?;
        serde_json::from_value(answer).map_err(|e| {
            ToolError::Tool(format!(
                "Herald's answer to {path} has an unexpected shape: {e}"
            ))
        })
    }

    /// The endpoint a `{slug | id}` pair names, as a path segment.
    fn endpoint_ref(slug: Option<String>, id: Option<String>) -> Result<String, ToolError> {
        match (slug, id) {
            (Some(s), None) => Ok(segment("slug", &s)?),
            (None, Some(i)) => Ok(segment("id", &i)?),
            (Some(_), Some(_)) => Err(ToolError::Tool(
                "slug, id: give either `slug` or `id`, not both".into(),
            )),
            (None, None) => Err(ToolError::Tool("slug: required (or give `id`)".into())),
        }
    }

    /// A callback endpoint's id, from its slug or id (a tenant token only finds its own).
    async fn resolve_endpoint(
        &self,
        ctx: &RequestContext<RoleServer>,
        slug: Option<String>,
        id: Option<String>,
    ) -> Result<String, ToolError> {
        let target = Self::endpoint_ref(slug, id)?;
        let e: Rest<EndpointView> = self
            .call(
                ctx,
                Method::GET,
                &format!("/v1/callback-endpoints/{target}"),
                None,
            )
            .await?;
        e.value()["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ToolError::Tool(format!("Herald's endpoint {target} has no id")))
    }
}

/// `?a=1&b=2` from the pairs that are set (empty when none is).
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let present: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    if present.is_empty() {
        String::new()
    } else {
        format!(
            "?{}",
            serde_urlencoded::to_string(present).expect("string pairs encode")
        )
    }
}

/// Every tool's schemas in the portable subset (see [`super::schema`]).
fn portable_tools(mut router: ToolRouter<HeraldMcp>) -> ToolRouter<HeraldMcp> {
    for route in router.map.values_mut() {
        let tool = &mut route.attr;
        let mut input = tool.input_schema.as_ref().clone();
        portable(&mut input, Direction::Input);
        tool.input_schema = std::sync::Arc::new(input);
        if let Some(output) = &tool.output_schema {
            let mut output = output.as_ref().clone();
            portable(&mut output, Direction::Output);
            tool.output_schema = Some(std::sync::Arc::new(output));
        }
    }
    router
}

fn to_body<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("tool arguments serialize")
}

#[tool_router(router = tool_router)]
impl HeraldMcp {
    pub fn new(api: ApiClient, credential: Credential, limits: WaitLimits) -> Self {
        Self {
            api,
            credential,
            limits,
            tool_router: portable_tools(Self::tool_router()),
        }
    }

    /// Create a unique callback URL to hand to a slow job (a render, a batch, a human
    /// approval); then call `wait_for_callback` with the returned slug. Anything the job sends
    /// to the URL is verified, stored and returned by the wait.
    #[tool(annotations(read_only_hint = false, open_world_hint = false))]
    async fn create_callback_endpoint(
        &self,
        Parameters(args): Parameters<CreateCallbackEndpoint>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<CreatedEndpoint>>, ToolError> {
        let body = to_body(&args);
        let out = self
            .call(&ctx, Method::POST, "/v1/callback-endpoints", Some(&body))
            .await?;
        Ok(Json(out))
    }

    /// Wait until a callback arrives at an endpoint (by `slug`, or `id`; an event id waits on
    /// its reply channel). A callback that arrived before the call is returned at once. Returns
    /// `received` with the callback (JSON bodies as JSON, text as text, binary as base64) or
    /// `pending` at the timeout; call again with `after` = the returned `cursor`.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn wait_for_callback(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<WaitResponse>>, ToolError> {
        let base = match (&args.slug, &args.id) {
            (None, Some(id)) if id.starts_with(crate::domain::ids::Kind::Event.prefix()) => {
                format!("/v1/events/{}/replies/wait", segment("id", id)?)
            }
            _ => format!(
                "/v1/callback-endpoints/{}/wait",
                Self::endpoint_ref(args.slug.clone(), args.id.clone())?
            ),
        };
        let after = args.after.unwrap_or(0);
        if after < 0 {
            return Err(ToolError::Tool(
                "after: must be a cursor (0 or more)".into(),
            ));
        }
        let progress = ctx.meta.get_progress_token();
        let limits = self.limits;
        let cap = if progress.is_some() {
            MAX_WAIT_WITH_PROGRESS.max(limits.max)
        } else {
            limits.max
        };
        let total = args
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(limits.default)
            .min(cap);
        let started = Instant::now();
        let deadline = started + total;
        // Waits run in slices: between slices a progress notification goes out, and each slice
        // is an ordinary API wait, short enough for the API's own cap.
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(limits.progress_every)
                .min(limits.max);
            let path = format!(
                "{base}?after={after}&timeout_ms={}&raw_body={}",
                slice.as_millis(),
                args.raw_body
            );
            let slice_started = Instant::now();
            let out: Rest<WaitResponse> = tokio::select! {
                r = self.call(&ctx, Method::GET, &path, None) => r?,
                // Dropping the API call drops the server-side wait with it.
                _ = ctx.ct.cancelled() => {
                    return Err(ToolError::Protocol(ErrorData::internal_error(
                        "the wait was cancelled", None)));
                }
            };
            let now = Instant::now();
            // A slice that ended well before its time without a callback means the server is
            // shutting down (it answers every waiter `pending`) or caps waits lower than we
            // assumed (a remote Herald): do not spin until the deadline.
            let cut_short = now.duration_since(slice_started) < slice / 2;
            let received = out.value()["status"] == "received";
            if received || now >= deadline || cut_short {
                return Ok(Json(out));
            }
            if let Some(token) = &progress {
                let mut p = ProgressNotificationParam::new(
                    token.clone(),
                    now.duration_since(started).as_millis() as f64,
                );
                p.total = Some(total.as_millis() as f64);
                p.message = Some(format!(
                    "still waiting for a callback ({:.1} s of {:.1} s)",
                    now.duration_since(started).as_secs_f64(),
                    total.as_secs_f64()
                ));
                // A client that stopped listening for progress still gets its answer.
                let _ = ctx.peer.notify_progress(p).await;
            }
        }
    }

    /// List callbacks not yet acknowledged, oldest first, across your endpoints (or one
    /// endpoint's, with `slug`). Acknowledge each with `ack_event` once handled.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn poll_events(
        &self,
        Parameters(args): Parameters<PollArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<Page<CallbackView>>>, ToolError> {
        let endpoint_id = match args.slug {
            Some(s) => Some(self.resolve_endpoint(&ctx, Some(s), None).await?),
            None => None,
        };
        let q = query(&[
            ("acked", Some(args.acked.unwrap_or(false).to_string())),
            ("endpoint_id", endpoint_id),
            ("after", args.after),
            ("limit", args.limit.map(|l| l.to_string())),
            ("raw_body", args.raw_body.then(|| "true".to_string())),
        ]);
        let out = self
            .call(&ctx, Method::GET, &format!("/v1/callbacks{q}"), None)
            .await?;
        Ok(Json(out))
    }

    /// Acknowledge a callback (by its `cb_…` id) so `poll_events` stops returning it.
    /// Acknowledging twice is harmless.
    #[tool(annotations(
        read_only_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn ack_event(
        &self,
        Parameters(args): Parameters<AckArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<CallbackView>>, ToolError> {
        let path = format!("/v1/callbacks/{}/ack", segment("event_id", &args.event_id)?);
        Ok(Json(self.call(&ctx, Method::POST, &path, None).await?))
    }

    /// List your callback endpoints, oldest first, with their URLs and counters.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_callback_endpoints(
        &self,
        Parameters(args): Parameters<PageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<Page<EndpointView>>>, ToolError> {
        let q = query(&[
            ("after", args.after),
            ("limit", args.limit.map(|l| l.to_string())),
        ]);
        let path = format!("/v1/callback-endpoints{q}");
        Ok(Json(self.call(&ctx, Method::GET, &path, None).await?))
    }

    /// Delete a callback endpoint (by `slug` or `id`) and everything it captured; its URL
    /// answers 404 afterwards.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn delete_callback_endpoint(
        &self,
        Parameters(args): Parameters<EndpointRef>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<DeletedOut>, ToolError> {
        let id = self.resolve_endpoint(&ctx, args.slug, args.id).await?;
        let path = format!("/v1/callback-endpoints/{}", segment("id", &id)?);
        let _: Value = self.call(&ctx, Method::DELETE, &path, None).await?;
        Ok(Json(DeletedOut { id, deleted: true }))
    }

    /// Check a webhook's signature with the verifiers Herald uses at ingest (constant-time):
    /// give the scheme, the secret, the request's headers and its raw body.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn verify_signature(
        &self,
        Parameters(args): Parameters<VerifyArgs>,
    ) -> Result<Json<VerifyOut>, ToolError> {
        let body = if args.body_base64 {
            base64::engine::general_purpose::STANDARD
                .decode(args.body.trim())
                .map_err(|e| ToolError::Tool(format!("body: not base64: {e}")))?
        } else {
            args.body.into_bytes()
        };
        // The settings an endpoint would be created with; `check_signature` applies the same
        // rules as creation (one secret parser), then verifies.
        let (secret, token) = match args.scheme {
            Scheme::Token | Scheme::A2a => (None, Some(args.secret)),
            _ => (Some(args.secret), None),
        };
        let req = VerificationRequest {
            scheme: args.scheme,
            secret,
            // A `whpk_` public key comes as the `secret` argument; the secret rule takes it.
            public_key: None,
            token,
            header: args.header,
            algorithm: args.algorithm,
            encoding: args.encoding,
            prefix: args.prefix,
        };
        let headers: Vec<(String, String)> = args.headers.into_iter().collect();
        let now = chrono::Utc::now().timestamp();
        let verdict = crate::service::callbacks::check_signature(req, &headers, &body, now)
            .map_err(|e| ToolError::Tool(crate::http::error::ApiError::from(e).detail))?;
        Ok(Json(match verdict {
            Ok(()) => VerifyOut {
                valid: true,
                scheme: args.scheme,
                code: None,
                reason: None,
            },
            Err(e) => VerifyOut {
                valid: false,
                scheme: args.scheme,
                code: Some(e.code().to_string()),
                reason: Some(e.to_string()),
            },
        }))
    }

    /// Send a captured callback (by its `cb_…` id) again, method, body and headers, to another
    /// URL, e.g. your own receiver while debugging it. Returns what that URL answered.
    #[tool(annotations(read_only_hint = false, open_world_hint = true))]
    async fn replay_callback(
        &self,
        Parameters(args): Parameters<ReplayArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<ReplayResult>, ToolError> {
        let path = format!("/v1/callbacks/{}/replay", segment("id", &args.id)?);
        let body = json!({ "target_url": args.target_url });
        Ok(Json(
            self.call(&ctx, Method::POST, &path, Some(&body)).await?,
        ))
    }

    /// Publish an event to a tenant's destinations (signed webhooks, retried). With `reply`,
    /// subscribers can answer at the returned `reply_url`: wait for the answer with
    /// `wait_for_callback` and `id` = the event's id.
    #[tool(annotations(read_only_hint = false, open_world_hint = true))]
    async fn publish_event(
        &self,
        Parameters(args): Parameters<PublishArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<PublishResponse>>, ToolError> {
        let body = to_body(&args);
        Ok(Json(
            self.call(&ctx, Method::POST, "/v1/events", Some(&body))
                .await?,
        ))
    }

    /// List the event-type catalog: each topic the platform publishes, what it means, the JSON
    /// Schema its `data` must satisfy, examples, and whether it is deprecated. Check it before
    /// `publish_event`: an event that fails its schema is refused with the failing pointer.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_event_types(
        &self,
        Parameters(args): Parameters<ListEventTypesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<Page<EventType>>>, ToolError> {
        let q = query(&[
            ("after", args.after),
            ("limit", args.limit.map(|l| l.to_string())),
            (
                "include_archived",
                args.include_archived.map(|b| b.to_string()),
            ),
        ]);
        let path = format!("/v1/event-types{q}");
        Ok(Json(self.call(&ctx, Method::GET, &path, None).await?))
    }

    /// List a tenant's deliveries, newest first, optionally by status, destination, event or topic.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_deliveries(
        &self,
        Parameters(args): Parameters<ListDeliveriesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<Page<Delivery>>>, ToolError> {
        let q = query(&[
            ("status", args.status.map(|s| s.as_str().to_string())),
            ("destination_id", args.destination_id),
            ("event_id", args.event_id),
            ("topic", args.topic),
            ("after", args.after),
            ("limit", args.limit.map(|l| l.to_string())),
        ]);
        let path = format!(
            "/v1/tenants/{}/deliveries{q}",
            segment("tenant_id", &args.tenant_id)?
        );
        Ok(Json(self.call(&ctx, Method::GET, &path, None).await?))
    }

    /// Read a delivery with every attempt: status codes, durations, errors, response bodies.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn get_delivery(
        &self,
        Parameters(args): Parameters<DeliveryRef>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<Delivery>>, ToolError> {
        let path = format!("/v1/deliveries/{}", segment("id", &args.id)?);
        Ok(Json(self.call(&ctx, Method::GET, &path, None).await?))
    }

    /// Retry a delivery now (a manual attempt, recorded as such).
    #[tool(annotations(read_only_hint = false, open_world_hint = true))]
    async fn retry_delivery(
        &self,
        Parameters(args): Parameters<DeliveryRef>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Rest<Delivery>>, ToolError> {
        let path = format!("/v1/deliveries/{}/retry", segment("id", &args.id)?);
        Ok(Json(self.call(&ctx, Method::POST, &path, None).await?))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for HeraldMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("herald", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Herald captures webhooks for you. To wait for a slow job: \
                 create_callback_endpoint, hand its url to the job, then \
                 wait_for_callback with the slug (repeat with after=cursor for more). \
                 poll_events/ack_event work through callbacks as a queue.",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a schema can be unportable, as the MCP Inspector's `--strict` mode and
    /// single-`type` tool dialects see it, plus a property without a description.
    fn problems(path: &str, schema: &Value, out: &mut Vec<String>) {
        match schema {
            Value::Bool(_) => out.push(format!("{path}: a bare boolean schema")),
            Value::Object(map) => {
                if map.get("type").is_some_and(Value::is_array) {
                    out.push(format!("{path}: a `type` array"));
                }
                const TYPING: [&str; 7] =
                    ["type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const"];
                if !TYPING.iter().any(|k| map.contains_key(*k)) {
                    out.push(format!("{path}: untyped"));
                }
                for (key, value) in map {
                    let here = format!("{path}/{key}");
                    match key.as_str() {
                        "properties" => {
                            for (name, p) in value.as_object().into_iter().flatten() {
                                let described = p
                                    .get("description")
                                    .and_then(Value::as_str)
                                    .is_some_and(|d| !d.trim().is_empty());
                                if !described {
                                    out.push(format!("{here}/{name}: no description"));
                                }
                                problems(&format!("{here}/{name}"), p, out);
                            }
                        }
                        "$defs" => {
                            for (name, d) in value.as_object().into_iter().flatten() {
                                problems(&format!("{here}/{name}"), d, out);
                            }
                        }
                        "items" | "additionalProperties" if value.is_object() => {
                            problems(&here, value, out)
                        }
                        "additionalProperties" if value == &Value::Bool(true) => {
                            out.push(format!("{here}: a bare `true`"))
                        }
                        "anyOf" | "oneOf" | "allOf" => {
                            for (i, b) in value.as_array().into_iter().flatten().enumerate() {
                                problems(&format!("{here}/{i}"), b, out);
                            }
                        }
                        _ => {}
                    }
                }
            }
            other => out.push(format!("{path}: not a schema: {other}")),
        }
    }

    #[test]
    fn every_tool_schema_is_a_portable_object_with_every_property_described() {
        let tools = portable_tools(HeraldMcp::tool_router()).list_all();
        assert!(tools.len() >= 12, "{}", tools.len());
        let mut found = vec![];
        for tool in &tools {
            let input = Value::Object(tool.input_schema.as_ref().clone());
            assert_eq!(input["type"], "object", "{}: input root", tool.name);
            problems(&format!("{}.inputSchema", tool.name), &input, &mut found);
            let output = Value::Object(
                tool.output_schema
                    .as_ref()
                    .unwrap_or_else(|| panic!("{} has no output schema", tool.name))
                    .as_ref()
                    .clone(),
            );
            assert_eq!(output["type"], "object", "{}: output root", tool.name);
            problems(&format!("{}.outputSchema", tool.name), &output, &mut found);
        }
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn enum_arguments_take_exactly_the_values_the_api_accepts() {
        let tools = portable_tools(HeraldMcp::tool_router());
        let enum_of = |tool: &str, pointer: &str| -> Vec<String> {
            let schema = Value::Object(tools.get(tool).unwrap().input_schema.as_ref().clone());
            let mut node = schema.pointer(pointer).unwrap().clone();
            if let Some(r) = node["$ref"].as_str() {
                node = schema.pointer(r.trim_start_matches('#')).unwrap().clone();
            }
            let values: Vec<String> = match node.get("enum") {
                Some(e) => e
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
                None => node["oneOf"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{tool}{pointer}: no enum in {node}"))
                    .iter()
                    .map(|b| b["const"].to_string())
                    .collect(),
            };
            values
                .into_iter()
                .map(|v| v.trim_matches('"').to_string())
                .collect()
        };
        // The REST API's `status` filter parses exactly these.
        let statuses: Vec<&str> = crate::domain::state::DeliveryStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(enum_of("list_deliveries", "/properties/status"), statuses);
        let schemes = enum_of("verify_signature", "/properties/scheme");
        assert_eq!(
            schemes,
            [
                "none",
                "token",
                "standard_webhooks",
                "github",
                "stripe",
                "shopify",
                "slack",
                "hmac",
                "a2a"
            ]
        );
    }
}

/// The MCP tools and their schemas must say what the REST API says: each tool that passes a
/// REST answer on is compared, field by field and enum value by enum value, with the
/// OpenAPI schema of that answer.
#[cfg(test)]
mod same_shapes {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;

    /// A schema reduced to what must agree: the fields of objects and the values of enums,
    /// with `$ref`s resolved in `doc` and nullable branches, types and prose left out.
    fn shape(doc: &Value, schema: &Value, depth: usize) -> Value {
        if depth > 16 {
            return json!("…");
        }
        if let Some(r) = schema["$ref"].as_str() {
            let target = doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling {r}"));
            return shape(doc, target, depth + 1);
        }
        if let Some(values) = schema["enum"].as_array() {
            let mut v: Vec<String> = values.iter().map(Value::to_string).collect();
            v.sort();
            return json!({"enum": v});
        }
        let branches: Vec<&Value> = ["anyOf", "oneOf", "allOf"]
            .iter()
            .flat_map(|k| schema[*k].as_array().into_iter().flatten())
            .filter(|b| b["type"] != "null")
            .collect();
        // An enum whose variants have doc comments is a `oneOf` of `const`s (or of `enum`s).
        let literal = |b: &&Value| b.get("const").is_some() || b.get("enum").is_some();
        if !branches.is_empty() && branches.iter().all(literal) {
            let mut v: Vec<String> = branches
                .iter()
                .flat_map(|b| match b.get("const") {
                    Some(c) => vec![c.to_string()],
                    None => b["enum"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(Value::to_string)
                        .collect(),
                })
                .collect();
            v.sort();
            return json!({"enum": v});
        }
        let mut fields = BTreeMap::new();
        for (name, p) in schema["properties"].as_object().into_iter().flatten() {
            fields.insert(name.clone(), shape(doc, p, depth + 1));
        }
        for b in &branches {
            if let Value::Object(o) = shape(doc, b, depth + 1)
                && let Some(Value::Object(f)) = o.get("fields")
            {
                fields.extend(f.clone());
            } else if fields.is_empty() && schema.get("properties").is_none() {
                return shape(doc, b, depth + 1);
            }
        }
        if let Some(items) = schema.get("items") {
            return json!({"items": shape(doc, items, depth + 1)});
        }
        if fields.is_empty() {
            return json!("scalar");
        }
        json!({"fields": fields})
    }

    #[test]
    fn every_tool_that_passes_on_a_rest_answer_has_the_rest_schema_of_it() {
        let doc = crate::http::api::openapi::document("http://127.0.0.1:8080");
        let tools = portable_tools(HeraldMcp::tool_router());
        let outputs = [
            ("create_callback_endpoint", "CreatedEndpoint"),
            ("wait_for_callback", "WaitResponse"),
            ("poll_events", "Page_CallbackView"),
            ("ack_event", "CallbackView"),
            ("list_callback_endpoints", "Page_EndpointView"),
            ("replay_callback", "ReplayResult"),
            ("publish_event", "PublishResponse"),
            ("list_event_types", "Page_EventType"),
            ("list_deliveries", "Page_Delivery"),
            ("get_delivery", "Delivery"),
            ("retry_delivery", "Delivery"),
        ];
        for (tool, rest) in outputs {
            let mcp = Value::Object(
                tools
                    .get(tool)
                    .unwrap()
                    .output_schema
                    .as_ref()
                    .unwrap()
                    .as_ref()
                    .clone(),
            );
            let api = &doc["components"]["schemas"][rest];
            assert!(api.is_object(), "no OpenAPI schema {rest}");
            assert_eq!(
                shape(&mcp, &mcp, 0),
                shape(&doc, api, 0),
                "{tool} vs {rest}"
            );
        }
        // Arguments that are a REST body: the same fields and enum values.
        let input = Value::Object(
            tools
                .get("create_callback_endpoint")
                .unwrap()
                .input_schema
                .as_ref()
                .clone(),
        );
        let api = &doc["components"]["schemas"]["CreateCallbackEndpoint"];
        assert_eq!(shape(&input, &input, 0), shape(&doc, api, 0));
    }
}
