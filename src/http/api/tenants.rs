use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::domain::model::{Page, Tenant};
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiQuery, Auth, parse_optional_json};

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
    /// 1-250, default 50.
    pub limit: Option<u32>,
}

/// List tenants.
#[utoipa::path(get, path = "/v1/tenants", operation_id = "list_tenants", tag = "tenants", params(ListParams),
    responses((status = 200, description = "A page of tenants", body = Page<Tenant>), (status = 401, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    auth.require_admin()?;
    Ok(Json(
        s.herald.list_tenants(q.after.as_deref(), q.limit).await?,
    ))
}

/// Create or update a tenant (the id is the platform's own).
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}", operation_id = "upsert_tenant", tag = "tenants",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$")), request_body = TenantBody,
    responses((status = 201, description = "The tenant, created", body = Tenant), (status = 200, description = "The tenant, updated", body = Tenant), (status = 422, body = Problem)))]
pub async fn upsert(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    auth.require_admin_for(&tenant_id)?;
    // The body is optional: `PUT /v1/tenants/acme` with nothing creates a bare tenant.
    let body: TenantBody = parse_optional_json(&body)?;
    let (tenant, created) = s.herald.upsert_tenant(&tenant_id, body.metadata).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(tenant)))
}

/// Read a tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}", operation_id = "get_tenant", tag = "tenants",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$")),
    responses((status = 200, description = "The tenant", body = Tenant), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(s.herald.get_tenant(auth.scope(), &tenant_id).await?))
}

/// Delete a tenant and everything it owns.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}", operation_id = "delete_tenant", tag = "tenants",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$")),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require_admin_for(&tenant_id)?;
    s.herald.delete_tenant(&tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a tenant-scoped API token (shown once). It can act only on this tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/tokens", operation_id = "issue_tenant_token", tag = "tenants",
    params(("tenant_id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,64}$")),
    responses((status = 201, description = "The token, shown this once", body = crate::service::tokens::IssuedToken), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub async fn issue_token(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
) -> Result<(StatusCode, Json<crate::service::tokens::IssuedToken>), ApiError> {
    auth.require_admin_for(&tenant_id)?;
    Ok((
        StatusCode::CREATED,
        Json(s.herald.issue_tenant_token(&tenant_id).await?),
    ))
}
