use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::tenants::ListParams;
use crate::domain::model::{Destination, Page};
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiQuery, Auth};
use crate::service::{
    CreateDestination, CreatedDestination, RotateSecret, RotatedSecret, UpdateDestination,
};

/// Create a destination; the answer carries its signing `secret` (shown only here).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/destinations", operation_id = "create_destination", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$")), request_body = CreateDestination,
    responses((status = 201, description = "The destination, with its signing secret shown this once", body = CreatedDestination), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
    ApiJson(req): ApiJson<CreateDestination>,
) -> Result<(StatusCode, Json<CreatedDestination>), ApiError> {
    let created = s
        .herald
        .create_destination(auth.scope(), &tenant_id, req)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List a tenant's destinations.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/destinations", operation_id = "list_destinations", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ListParams),
    responses((status = 200, description = "A page of destinations", body = Page<Destination>), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<Destination>>, ApiError> {
    let page = s
        .herald
        .list_destinations(auth.scope(), &tenant_id, q.after.as_deref(), q.limit)
        .await?;
    Ok(Json(page))
}

/// Read a destination.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/destinations/{id}", operation_id = "get_destination", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)),
    responses((status = 200, description = "The destination", body = Destination), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<Destination>, ApiError> {
    Ok(Json(
        s.herald
            .get_destination(auth.scope(), &tenant_id, &id)
            .await?,
    ))
}

/// Update some fields of a destination.
#[utoipa::path(patch, path = "/v1/tenants/{tenant_id}/destinations/{id}", operation_id = "update_destination", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)), request_body = UpdateDestination,
    responses((status = 200, description = "The updated destination", body = Destination), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateDestination>,
) -> Result<Json<Destination>, ApiError> {
    Ok(Json(
        s.herald
            .update_destination(auth.scope(), &tenant_id, &id, req)
            .await?,
    ))
}

/// Delete a destination; its pending deliveries are cancelled.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}/destinations/{id}", operation_id = "delete_destination", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.herald
        .delete_destination(auth.scope(), &tenant_id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable a destination.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/destinations/{id}/enable", operation_id = "enable_destination", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)),
    responses((status = 200, description = "The enabled destination", body = Destination), (status = 404, body = Problem)))]
pub async fn enable(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<Destination>, ApiError> {
    let d = s
        .herald
        .set_destination_enabled(auth.scope(), &tenant_id, &id, true, None)
        .await?;
    Ok(Json(d))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Disable a destination: events published meanwhile are recorded as `skipped`.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/destinations/{id}/disable", operation_id = "disable_destination", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)), request_body = Option<DisableBody>,
    responses((status = 200, description = "The disabled destination", body = Destination), (status = 404, body = Problem)))]
pub async fn disable(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Destination>, ApiError> {
    let body: DisableBody = crate::http::extract::parse_optional_json(&body)?;
    if body.reason.as_ref().is_some_and(|r| r.len() > 512) {
        return Err(ApiError::validation(
            "reason",
            "reason: must be at most 512 characters",
        ));
    }
    let d = s
        .herald
        .set_destination_enabled(auth.scope(), &tenant_id, &id, false, body.reason)
        .await?;
    Ok(Json(d))
}

/// Rotate the signing secret: the new one is returned once; the previous one keeps signing
/// (a second `v1,` signature) until the overlap ends.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/destinations/{id}/rotate-secret", operation_id = "rotate_destination_secret", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)), request_body = Option<RotateSecret>,
    responses((status = 200, description = "The new signing secret, shown this once", body = RotatedSecret), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn rotate_secret(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<RotatedSecret>, ApiError> {
    let req: RotateSecret = crate::http::extract::parse_optional_json(&body)?;
    Ok(Json(
        s.herald
            .rotate_secret(auth.scope(), &tenant_id, &id, req)
            .await?,
    ))
}

/// Send a `herald.test` event to this destination alone (the portal's "send test event"):
/// it is published like any event, so its delivery and attempts show what the receiver did.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/destinations/{id}/test", operation_id = "send_test_event", tag = "destinations",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$"), ("id" = String, Path)),
    responses((status = 202, description = "The `herald.test` event, accepted", body = crate::service::PublishResponse), (status = 404, body = Problem)))]
pub async fn send_test(
    State(s): State<AppState>,
    auth: Auth,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<crate::service::PublishResponse>), ApiError> {
    let p = s
        .herald
        .send_test_event(auth.scope(), &tenant_id, &id)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(crate::service::PublishResponse::new(&p, &s.herald)),
    ))
}
