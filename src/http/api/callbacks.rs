//! Inbound endpoints for agents (docs/inbound.md, docs/waiting.md, docs/reply-channels.md): manage callback endpoints, wait on
//! them (long-poll or SSE), poll and acknowledge across endpoints, wait for replies to an event.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::tenants::ListParams;
use crate::domain::model::Page;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiQuery, Auth};
use crate::inbound::model::{CallbackView, EndpointView};
use crate::service::callbacks::ListStatus;
use crate::service::callbacks::WaitResponse;
use crate::service::replay::ReplayResult;
use crate::service::{CreateCallbackEndpoint, CreatedEndpoint};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Return a callback with a greater cursor (default 0: the first one ever).
    pub after: Option<i64>,
    /// How long to wait for one (default 30 s, capped at the server's maximum, 55 s by default).
    pub timeout_ms: Option<u64>,
    /// Also return the body's exact bytes (`raw_body_base64`), e.g. to check a signature.
    pub raw_body: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// For accepted callbacks (the default) a cursor; for `status=rejected` a callback id.
    pub after: Option<String>,
    pub limit: Option<u32>,
    /// `accepted` (default) or `rejected`: the requests that failed verification.
    #[param(value_type = Option<String>)]
    pub status: Option<ListStatus>,
    /// Also return each body's exact bytes (`raw_body_base64`).
    pub raw_body: Option<bool>,
}

/// One event of `/stream` as the Server-Sent Events wire format carries it (the OpenAPI
/// document describes a stream by its events). `event: callback` has the cursor as `id` and
/// a `CallbackView` as JSON text in `data`; `event: error` has a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    pub id: Option<String>,
    #[schema(example = "callback")]
    pub event: String,
    pub data: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Start after this cursor; the `Last-Event-ID` header, when present, wins.
    pub after: Option<i64>,
    /// Also send each body's exact bytes (`raw_body_base64`).
    pub raw_body: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    /// `false`: only callbacks not yet acknowledged; `true`: only acknowledged ones.
    pub acked: Option<bool>,
    pub endpoint_id: Option<String>,
    /// The `next_cursor` of the previous page (a callback id).
    pub after: Option<String>,
    pub limit: Option<u32>,
    /// Also return each body's exact bytes (`raw_body_base64`).
    pub raw_body: Option<bool>,
}

/// Create a callback endpoint. The answer holds the URL to hand out and, once, its secret or token.
#[utoipa::path(post, path = "/v1/callback-endpoints", operation_id = "create_callback_endpoint", tag = "inbound",
    request_body = CreateCallbackEndpoint,
    responses((status = 201, description = "The endpoint, with its generated secret or token shown this once", body = CreatedEndpoint), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateCallbackEndpoint>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    let created = s.herald.create_callback_endpoint(auth.scope(), req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List callback endpoints (a tenant token sees its own; the admin token sees all).
#[utoipa::path(get, path = "/v1/callback-endpoints", operation_id = "list_callback_endpoints", tag = "inbound", params(ListParams),
    responses((status = 200, description = "A page of callback endpoints", body = Page<EndpointView>)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<EndpointView>>, ApiError> {
    Ok(Json(
        s.herald
            .list_callback_endpoints(auth.scope(), q.after.as_deref(), q.limit)
            .await?,
    ))
}

/// Read a callback endpoint (never its secret).
#[utoipa::path(get, path = "/v1/callback-endpoints/{id}", operation_id = "get_callback_endpoint", tag = "inbound",
    params(("id" = String, Path)),
    responses((status = 200, description = "The callback endpoint", body = EndpointView), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let e = s.herald.get_callback_endpoint(auth.scope(), &id).await?;
    Ok(Json(s.herald.endpoint_view(&e)))
}

/// Delete a callback endpoint and everything it captured; its URL answers 404 afterwards.
#[utoipa::path(delete, path = "/v1/callback-endpoints/{id}", operation_id = "delete_callback_endpoint", tag = "inbound",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.herald.delete_callback_endpoint(auth.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Wait for a callback newer than `after`: answered at once when one is stored already, else
/// as soon as one arrives, else `pending` at the timeout. Safe to retry with the same cursor.
#[utoipa::path(get, path = "/v1/callback-endpoints/{id}/wait", operation_id = "wait_for_callback", tag = "inbound",
    params(("id" = String, Path), WaitParams),
    responses((status = 200, description = "The first callback after `after`, or `pending` at the timeout", body = WaitResponse), (status = 404, body = Problem)))]
pub async fn wait(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitParams>,
) -> Result<Json<WaitResponse>, ApiError> {
    let outcome = s
        .herald
        .wait(auth.scope(), &id, q.after, q.timeout_ms)
        .await?;
    Ok(Json(WaitResponse::new(
        outcome,
        q.raw_body.unwrap_or(false),
    )))
}

/// List an endpoint's callbacks in cursor order (or, with `status=rejected`, the requests that
/// failed verification, newest first).
#[utoipa::path(get, path = "/v1/callback-endpoints/{id}/events", operation_id = "list_endpoint_callbacks", tag = "inbound",
    params(("id" = String, Path), EventsParams),
    responses((status = 200, description = "A page of the endpoint's callbacks", body = Page<CallbackView>), (status = 404, body = Problem)))]
pub async fn events(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsParams>,
) -> Result<Json<Page<CallbackView>>, ApiError> {
    Ok(Json(
        s.herald
            .list_endpoint_callbacks(
                auth.scope(),
                &id,
                q.status.unwrap_or_default(),
                q.after.as_deref(),
                q.limit,
                q.raw_body.unwrap_or(false),
            )
            .await?,
    ))
}

/// Server-Sent Events: every callback after the cursor (`Last-Event-ID` or `?after=`), then
/// each new one as it arrives. Event `id` is the cursor, so a reconnecting client resumes
/// exactly where it stopped.
#[utoipa::path(get, path = "/v1/callback-endpoints/{id}/stream", operation_id = "stream_callbacks", tag = "inbound",
    params(("id" = String, Path), StreamParams, ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, description = "Server-Sent Events, one `callback` event per callback",  content_type = "text/event-stream", body = StreamEvent),
              (status = 404, body = Problem)))]
pub async fn stream(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let endpoint = s.herald.get_callback_endpoint(auth.scope(), &id).await?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|c| *c >= 0)
            .ok_or_else(|| {
                ApiError::validation("Last-Event-ID", "Last-Event-ID: must be a cursor")
            })?,
        None => q.after.unwrap_or(0).max(0),
    };
    let raw_body = q.raw_body.unwrap_or(false);
    let events = s
        .herald
        .callback_stream(endpoint.id, after)
        .map(move |item| {
            Ok(match item {
                Ok(c) => SseEvent::default()
                    .id(c.cursor.unwrap_or_default().to_string())
                    .event("callback")
                    .json_data(CallbackView::new(&c, raw_body))
                    .unwrap_or_else(|_| SseEvent::default().event("error")),
                Err(e) => {
                    tracing::error!(error = %e, "callback stream failed");
                    SseEvent::default()
                        .event("error")
                        .data("the stream failed; reconnect with Last-Event-ID")
                }
            })
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Poll callbacks across the caller's endpoints, oldest first (`acked=false`: the work queue).
#[utoipa::path(get, path = "/v1/callbacks", operation_id = "list_callbacks", tag = "inbound", params(PollParams),
    responses((status = 200, description = "A page of callbacks", body = Page<CallbackView>)))]
pub async fn poll(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<PollParams>,
) -> Result<Json<Page<CallbackView>>, ApiError> {
    Ok(Json(
        s.herald
            .poll_callbacks(
                auth.scope(),
                q.acked,
                q.endpoint_id,
                q.after,
                q.limit,
                q.raw_body.unwrap_or(false),
            )
            .await?,
    ))
}

/// Acknowledge a callback: it leaves `acked=false`. Acknowledging twice keeps the first time.
#[utoipa::path(post, path = "/v1/callbacks/{id}/ack", operation_id = "ack_callback", tag = "inbound",
    params(("id" = String, Path)),
    responses((status = 200, description = "The acknowledged callback", body = CallbackView), (status = 404, body = Problem)))]
pub async fn ack(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<CallbackView>, ApiError> {
    let c = s.herald.ack_callback(auth.scope(), &id).await?;
    Ok(Json((&c).into()))
}

/// Wait for a subscriber's answer on an event's reply channel (published with `reply`).
#[utoipa::path(get, path = "/v1/events/{id}/replies/wait", operation_id = "wait_for_reply", tag = "events",
    params(("id" = String, Path), WaitParams),
    responses((status = 200, description = "The first reply after `after`, or `pending` at the timeout", body = WaitResponse), (status = 404, body = Problem)))]
pub async fn wait_for_reply(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitParams>,
) -> Result<Json<WaitResponse>, ApiError> {
    let outcome = s
        .herald
        .wait_for_reply(auth.scope(), &id, q.after, q.timeout_ms)
        .await?;
    Ok(Json(WaitResponse::new(
        outcome,
        q.raw_body.unwrap_or(false),
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawBodyParams {
    /// Also return the body's exact bytes (`raw_body_base64`), e.g. to check a signature.
    pub raw_body: Option<bool>,
}

/// Read one captured callback (accepted or rejected).
#[utoipa::path(get, path = "/v1/callbacks/{id}", operation_id = "get_callback", tag = "inbound",
    params(("id" = String, Path), RawBodyParams),
    responses((status = 200, description = "The callback", body = CallbackView), (status = 404, body = Problem)))]
pub async fn get_callback(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RawBodyParams>,
) -> Result<Json<CallbackView>, ApiError> {
    let c = s.herald.get_callback(auth.scope(), &id).await?;
    Ok(Json(CallbackView::new(&c, q.raw_body.unwrap_or(false))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Where to send the captured body and headers again, with the method they arrived with.
    pub target_url: String,
}

/// Replay a captured callback to another URL (SSRF-guarded like deliveries) and report what
/// the target answered.
#[utoipa::path(post, path = "/v1/callbacks/{id}/replay", operation_id = "replay_callback", tag = "inbound",
    params(("id" = String, Path)), request_body = ReplayRequest,
    responses((status = 200, description = "What the target answered, or why it could not be reached", body = ReplayResult), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
pub async fn replay(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> Result<Json<ReplayResult>, ApiError> {
    Ok(Json(
        s.herald
            .replay_callback(auth.scope(), &id, &req.target_url)
            .await?,
    ))
}
