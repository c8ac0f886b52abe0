//! The HTTP server: the REST API under `/v1`, inbound capture at `/in/{slug}`, MCP at `/mcp`,
//! the tenant portal under `/portal`, health checks, metrics and the OpenAPI document.

pub mod api;
pub mod error;
pub mod extract;
pub mod ingest;
pub mod portal;
pub mod server;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get};

use crate::service::Herald;
use crate::telemetry::otel::Tracing;

/// Shared by every handler: one pointer to [`SharedState`]. axum clones the state for every
/// request (and every `from_fn_with_state` layer again), so it is one reference count rather
/// than the dozen a [`Herald`] holds; at several thousand requests a second those atomic
/// increments and decrements showed in the profile.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

pub struct SharedState {
    pub herald: Herald,
    /// SHA-256 of `HERALD_ADMIN_TOKEN` when configured; otherwise the admin token lives hashed
    /// in the store like every other token.
    pub admin_token_hash: Option<Arc<str>>,
    /// Server spans of the publish, ingest and wait requests ([`trace::trace_request`]).
    pub tracing: Tracing,
}

impl AppState {
    pub fn new(herald: Herald, admin_token_hash: Option<Arc<str>>) -> Self {
        Self(Arc::new(SharedState {
            herald,
            admin_token_hash,
            tracing: Tracing::off(),
        }))
    }

    /// Traces the requests of [`trace::traced_route`] with `tracing` (built before any clone).
    pub fn with_tracing(self, tracing: Tracing) -> Self {
        let shared = Arc::try_unwrap(self.0).unwrap_or_else(|_| {
            unreachable!("with_tracing is called on the state before it is shared")
        });
        Self(Arc::new(SharedState { tracing, ..shared }))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The whole application router. A worker-only node (`api = false`) serves only health,
/// readiness and metrics. `mcp` is the MCP endpoint's routes (`mcp::http::routes`), served
/// with the API: passed in, because the MCP tools call this API and so depend on `http`.
pub fn router(
    state: AppState,
    max_body_bytes: usize,
    serve_api: bool,
    mcp: impl FnOnce(&AppState) -> Router<AppState>,
) -> Router {
    let inbound_limit = state.herald.inbound.max_body_bytes;
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if serve_api {
        app = app
            .merge(api::routes())
            .route("/openapi.json", get(api::openapi_json))
            .merge(mcp(&state))
            .merge(portal::routes());
    }
    // The layers apply to the routes added so far; captured bodies get their own limit below.
    app = app
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(from_fn_with_state(max_body_bytes, reject_declared_oversize));
    if serve_api {
        app = app.route(
            "/in/{slug}",
            any(ingest::ingest)
                .layer(DefaultBodyLimit::max(inbound_limit))
                .layer(from_fn_with_state(inbound_limit, reject_declared_oversize)),
        );
    }
    // Only with tracing on: off, requests do not even pass through the layer.
    if state.tracing.is_on() {
        app = app.layer(from_fn_with_state(state.clone(), trace::trace_request));
    }
    app.with_state(state)
}

/// Answers 413 at once when the declared `Content-Length` is over the limit (the state).
///
/// `DefaultBodyLimit` only notices an oversized body while reading it, so a client that
/// declares 5 MiB and then waits for an answer before uploading (or sends slowly) would hold
/// the connection until a timeout. Refusing on the header alone answers at once, reads nothing.
async fn reject_declared_oversize(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return error::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than the {limit} bytes accepted"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Ready when the store answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.herald.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable"),
    }
}

/// Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let h = &state.herald;
    let body = crate::metrics::metrics()
        .render(&*h.store, h.clock.now())
        .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
