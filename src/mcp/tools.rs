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
use super::types::*;
use crate::service::replay::ReplayResult;
use crate::service::{InboundSettings, VerificationRequest};

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
        let e: EndpointOut = self
            .call(
                ctx,
                Method::GET,
                &format!("/v1/callback-endpoints/{target}"),
                None,
            )
            .await?;
        Ok(e.id)
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
            tool_router: Self::tool_router(),
        }
    }

    /// Create a unique callback URL to hand to a slow job (a render, a batch, a human
    /// approval); then call `wait_for_callback` with the returned slug. Anything the job sends
    /// to the URL is verified, stored and returned by the wait.
    #[tool(annotations(read_only_hint = false, open_world_hint = false))]
    async fn create_callback_endpoint(
        &self,
        Parameters(args): Parameters<CreateEndpointArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<CreatedEndpointOut>, ToolError> {
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
    ) -> Result<Json<WaitOut>, ToolError> {
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
            let path = format!("{base}?after={after}&timeout_ms={}", slice.as_millis());
            let slice_started = Instant::now();
            let out: WaitOut = tokio::select! {
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
            if out.status == WaitStatus::Received || now >= deadline || cut_short {
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
    ) -> Result<Json<CallbackPage>, ToolError> {
        let endpoint_id = match args.slug {
            Some(s) => Some(self.resolve_endpoint(&ctx, Some(s), None).await?),
            None => None,
        };
        let q = query(&[
            ("acked", Some(args.acked.unwrap_or(false).to_string())),
            ("endpoint_id", endpoint_id),
            ("after", args.after),
            ("limit", args.limit.map(|l| l.to_string())),
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
    ) -> Result<Json<AckOut>, ToolError> {
        let path = format!("/v1/callbacks/{}/ack", segment("event_id", &args.event_id)?);
        Ok(Json(self.call(&ctx, Method::POST, &path, None).await?))
    }

    /// List your callback endpoints, oldest first, with their URLs and counters.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_callback_endpoints(
        &self,
        Parameters(args): Parameters<PageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<EndpointPage>, ToolError> {
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
        // The settings are read as the API reads an endpoint's `verification`, so an unknown
        // scheme, algorithm or encoding is refused with the same message as at creation.
        let credential = match args.scheme.as_str() {
            "token" | "a2a" => "token",
            _ => "secret",
        };
        let mut settings = serde_json::Map::new();
        settings.insert("scheme".into(), args.scheme.clone().into());
        settings.insert(credential.into(), args.secret.into());
        for (name, value) in [
            ("header", args.header),
            ("algorithm", args.algorithm),
            ("encoding", args.encoding),
            ("prefix", args.prefix),
        ] {
            if let Some(v) = value {
                settings.insert(name.into(), v.into());
            }
        }
        let req: VerificationRequest =
            crate::http::extract::parse_json(Value::Object(settings).to_string().as_bytes())
                .map_err(|e| ToolError::Tool(e.detail))?;
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
    /// subscribers can answer at the event's reply URL: wait for the answer with
    /// `wait_for_callback` and the returned `reply_slug`.
    #[tool(annotations(read_only_hint = false, open_world_hint = true))]
    async fn publish_event(
        &self,
        Parameters(args): Parameters<PublishArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<PublishOut>, ToolError> {
        let body = to_body(&args);
        let mut out: PublishOut = self
            .call(&ctx, Method::POST, "/v1/events", Some(&body))
            .await?;
        out.reply_slug = out
            .reply_url
            .as_deref()
            .and_then(|u| u.rsplit_once("/in/"))
            .map(|(_, slug)| slug.to_string());
        Ok(Json(out))
    }

    /// List a tenant's deliveries, newest first, optionally by status, destination, event or topic.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_deliveries(
        &self,
        Parameters(args): Parameters<ListDeliveriesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<DeliveryPage>, ToolError> {
        let q = query(&[
            ("status", args.status),
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
    ) -> Result<Json<DeliveryOut>, ToolError> {
        let path = format!("/v1/deliveries/{}", segment("id", &args.id)?);
        let delivery = self.call(&ctx, Method::GET, &path, None).await?;
        Ok(Json(DeliveryOut { delivery }))
    }

    /// Retry a delivery now (a manual attempt, recorded as such).
    #[tool(annotations(read_only_hint = false, open_world_hint = true))]
    async fn retry_delivery(
        &self,
        Parameters(args): Parameters<DeliveryRef>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<DeliveryOut>, ToolError> {
        let path = format!("/v1/deliveries/{}/retry", segment("id", &args.id)?);
        let delivery = self.call(&ctx, Method::POST, &path, None).await?;
        Ok(Json(DeliveryOut { delivery }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for HeraldMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("herald", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Herald captures webhooks for you. To wait for a slow job: \
                 create_callback_endpoint, hand its callback_url to the job, then \
                 wait_for_callback with the slug (repeat with after=cursor for more). \
                 poll_events/ack_event work through callbacks as a queue.",
            )
    }
}
