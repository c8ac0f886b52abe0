//! The event-type catalog (docs/event-types.md): platform-wide, written with the admin token,
//! read with any token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::catalog::EventType;
use crate::domain::model::Page;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiQuery, Auth};
use crate::service::catalog::PutEventType;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListEventTypes {
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
    /// 1-250, default 50.
    pub limit: Option<u32>,
    /// Include archived types (default false).
    pub include_archived: Option<bool>,
}

/// List the event-type catalog, by name.
#[utoipa::path(get, path = "/v1/event-types", operation_id = "list_event_types", tag = "event-types",
    params(ListEventTypes),
    responses((status = 200, description = "A page of event types", body = Page<EventType>), (status = 422, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<ListEventTypes>,
) -> Result<Json<Page<EventType>>, ApiError> {
    Ok(Json(
        s.herald
            .list_event_types(
                q.after.as_deref(),
                q.limit,
                q.include_archived.unwrap_or(false),
            )
            .await?,
    ))
}

/// Create or replace an event type. Every change makes a new version; saving the same
/// definition again changes nothing.
#[utoipa::path(put, path = "/v1/event-types/{name}", operation_id = "put_event_type", tag = "event-types",
    params(("name" = String, Path, pattern = r"^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$", max_length = 255)),
    request_body = PutEventType,
    responses((status = 201, description = "The event type, created", body = EventType), (status = 200, description = "The event type, replaced (or unchanged)", body = EventType),
              (status = 422, body = Problem)))]
pub async fn put(
    State(s): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PutEventType>,
) -> Result<(StatusCode, Json<EventType>), ApiError> {
    auth.require_admin()?;
    let (t, created) = s.herald.put_event_type(&name, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(t)))
}

/// Read an event type.
#[utoipa::path(get, path = "/v1/event-types/{name}", operation_id = "get_event_type", tag = "event-types",
    params(("name" = String, Path)),
    responses((status = 200, description = "The event type", body = EventType), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    _auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<EventType>, ApiError> {
    Ok(Json(s.herald.get_event_type(&name).await?))
}

/// Delete an event type. Its events keep the version they were checked against; to stop new
/// events while keeping the definition, archive it instead.
#[utoipa::path(delete, path = "/v1/event-types/{name}", operation_id = "delete_event_type", tag = "event-types",
    params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require_admin()?;
    s.herald.delete_event_type(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
