use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::tenants::ListParams;
use crate::domain::model::{Event, Page};
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiQuery, Auth};
use crate::http::trace::RequestTrace;
use crate::service::{PublishBatch, PublishRequest, PublishResponse};

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// In request order.
    pub events: Vec<PublishResponse>,
}

/// Publish an event. 202 once it and its deliveries are durable; 200 for an idempotent repeat.
#[utoipa::path(post, path = "/v1/events", operation_id = "publish_event", tag = "events", request_body = PublishRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, description = "Accepted: the event and all its deliveries are committed", body = PublishResponse), (status = 200, description = "A repeated idempotency key: the event published the first time", body = PublishResponse),
              (status = 404, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn publish(
    State(s): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    trace: Option<Extension<RequestTrace>>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::validation("Idempotency-Key", "Idempotency-Key: must be visible ASCII")
        })?),
    };
    let traceparent = trace.map(|Extension(t)| t.0);
    let p = s
        .herald
        .publish_traced(auth.scope(), req, key, traceparent)
        .await?;
    let status = if p.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(PublishResponse::new(&p, &s.herald))))
}

/// Publish up to 1,000 events in one transaction.
#[utoipa::path(post, path = "/v1/events/batch", operation_id = "publish_events", tag = "events", request_body = PublishBatch,
    responses((status = 202, description = "Accepted: every event and all their deliveries are committed", body = BatchResponse), (status = 404, body = Problem),
              (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn publish_batch(
    State(s): State<AppState>,
    auth: Auth,
    trace: Option<Extension<RequestTrace>>,
    ApiJson(batch): ApiJson<PublishBatch>,
) -> Result<(StatusCode, Json<BatchResponse>), ApiError> {
    let traceparent = trace.map(|Extension(t)| t.0);
    let out = s
        .herald
        .publish_batch_traced(auth.scope(), batch, traceparent)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchResponse {
            events: out
                .iter()
                .map(|p| PublishResponse::new(p, &s.herald))
                .collect(),
        }),
    ))
}

/// Read an event.
#[utoipa::path(get, path = "/v1/events/{id}", operation_id = "get_event", tag = "events", params(("id" = String, Path)),
    responses((status = 200, description = "The event", body = Event), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    Ok(Json(s.herald.get_event(auth.scope(), &id).await?))
}

/// List a tenant's events, newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/events", operation_id = "list_events", tag = "events",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ListParams),
    responses((status = 200, description = "A page of events, newest first", body = Page<Event>)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<Event>>, ApiError> {
    let page = s
        .herald
        .list_events(auth.scope(), &tenant_id, q.after.as_deref(), q.limit)
        .await?;
    Ok(Json(page))
}
