use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::model::{Delivery, Page, Recovery};
use crate::domain::state::DeliveryStatus;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiQuery, Auth, parse_optional_json};
use crate::store::DeliveryQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    pub status: Option<DeliveryStatus>,
    pub destination_id: Option<String>,
    pub event_id: Option<String>,
    pub topic: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// List a tenant's deliveries, newest first, with optional filters.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/deliveries", operation_id = "list_deliveries", tag = "deliveries",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), DeliveryParams),
    responses((status = 200, description = "A page of deliveries, newest first", body = Page<Delivery>), (status = 422, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveryParams>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let query = DeliveryQuery {
        tenant_id,
        status: q.status,
        destination_id: q.destination_id,
        event_id: q.event_id,
        topic: q.topic,
        after: q.after,
        limit: q.limit.unwrap_or(0),
        ..DeliveryQuery::default()
    };
    Ok(Json(s.herald.list_deliveries(auth.scope(), query).await?))
}

/// Read a delivery with its attempts.
#[utoipa::path(get, path = "/v1/deliveries/{id}", operation_id = "get_delivery", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, description = "The delivery with its attempts", body = Delivery), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    Ok(Json(s.herald.get_delivery(auth.scope(), &id).await?))
}

/// Make a new attempt now (`trigger: manual`). 409 while an attempt is in flight.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", operation_id = "retry_delivery", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 202, description = "The delivery, scheduled for a manual attempt now", body = Delivery), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retry(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<Delivery>), ApiError> {
    let d = s.herald.retry_delivery(auth.scope(), &id).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(d)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Replay to these destinations only (default: every destination the event went to).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub destination_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    /// Deliveries scheduled for a manual attempt now.
    pub scheduled: u32,
}

/// Replay an event to all (or chosen) destinations: a new manual attempt for each.
#[utoipa::path(post, path = "/v1/events/{id}/replay", operation_id = "replay_event", tag = "events", params(("id" = String, Path)),
    request_body = Option<ReplayBody>,
    responses((status = 202, description = "How many deliveries were scheduled", body = ReplayResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn replay(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<ReplayResponse>), ApiError> {
    let body: ReplayBody = parse_optional_json(&body)?;
    let scheduled = s
        .herald
        .replay_event(auth.scope(), &id, body.destination_ids)
        .await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(ReplayResponse { scheduled }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    /// Recover deliveries created at or after this time (RFC 3339).
    #[schema(format = DateTime)]
    pub since: String,
    /// Only count what would be recovered.
    #[serde(default)]
    pub dry_run: bool,
}

/// Bulk recover a destination: every failed or skipped delivery since `since` gets a new
/// manual attempt. `dry_run` answers the count first. Watch the job at
/// `GET /v1/tenants/{tenant_id}/recoveries/{id}`.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/destinations/{id}/recover", operation_id = "recover_destination", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)), request_body = RecoverBody,
    responses((status = 202, description = "The recovery job, started", body = Recovery), (status = 200, body = Recovery, description = "A dry run: how many deliveries would be recovered"),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn recover(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
    crate::http::extract::ApiJson(body): crate::http::extract::ApiJson<RecoverBody>,
) -> Result<(axum::http::StatusCode, Json<Recovery>), ApiError> {
    let r = s
        .herald
        .recover_destination(auth.scope(), &tenant_id, &id, &body.since, body.dry_run)
        .await?;
    let status = if body.dry_run {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::ACCEPTED
    };
    Ok((status, Json(r)))
}

/// A recovery job and its progress.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/recoveries/{id}", operation_id = "get_recovery", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)),
    responses((status = 200, description = "The recovery job and its progress", body = Recovery), (status = 404, body = Problem)))]
pub async fn get_recovery(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<Recovery>, ApiError> {
    Ok(Json(
        s.herald.get_recovery(auth.scope(), &tenant_id, &id).await?,
    ))
}
