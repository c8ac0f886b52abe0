use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Auth;
use crate::service::portal::PortalLink;

/// Issue a single-use sign-in link to the tenant's portal (admin only). Send the tenant's
/// user to `url` before `expires_at`; it opens a browser session and stops working.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/portal-sessions", operation_id = "create_portal_session", tag = "tenants",
    params(("tenant_id" = String, Path)),
    responses((status = 201, description = "A single-use sign-in link to the tenant's portal", body = PortalLink), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant_id): Path<String>,
) -> Result<(StatusCode, Json<PortalLink>), ApiError> {
    auth.require_admin_for(&tenant_id)?;
    Ok((
        StatusCode::CREATED,
        Json(s.herald.create_portal_link(&tenant_id).await?),
    ))
}
