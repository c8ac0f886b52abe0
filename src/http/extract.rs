//! Extractors that turn bad requests into clear problem+json answers.
//!
//! axum's own `Json` and `Query` reject with plain text; these read the same inputs but name
//! the field that failed (`serde_path_to_error`), and distinguish malformed JSON (400), wrong
//! types or missing fields (422) and oversized bodies (413).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::store::Scope;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !ct.starts_with("application/json") && !ct.contains("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body must be JSON (`content-type: application/json`)",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body, decoded as every interface decodes it ([`crate::service::input::decode_json`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::service::input::decode_json(bytes).map_err(ApiError::from)
}

/// An optional body: empty or JSON `null` (how the OpenAPI document's optional body reads to
/// generated clients) mean the defaults.
pub fn parse_optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json::<Option<T>>(bytes).map(Option::unwrap_or_default)
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let field = e.path().to_string();
                ApiError::validation(
                    field.clone(),
                    format!("query parameter {field}: {}", e.into_inner()),
                )
            })
    }
}

/// The authenticated caller: the platform's admin token or a tenant's token.
pub struct Auth {
    pub tenant: Option<String>,
}

impl Auth {
    pub fn scope(&self) -> Scope<'_> {
        match &self.tenant {
            None => Scope::Admin,
            Some(t) => Scope::Tenant(t),
        }
    }

    /// An admin-only operation on one tenant: another tenant's token gets 404 (it must not
    /// learn that the tenant exists), the tenant's own token 403.
    pub fn require_admin_for(&self, tenant_id: &str) -> Result<(), ApiError> {
        match &self.tenant {
            Some(t) if t != tenant_id => Err(ApiError::not_found("tenant")),
            _ => self.require_admin(),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.tenant {
            None => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this operation needs the admin token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let hash = crate::service::tokens::hash_token(token);
        if state.admin_token_hash.as_deref() == Some(hash.as_str()) {
            return Ok(Auth { tenant: None });
        }
        match state.herald.store.find_token(&hash).await {
            Ok(Some(t)) => Ok(Auth {
                tenant: t.tenant_id,
            }),
            Ok(None) => Err(ApiError::unauthorized()),
            Err(e) => Err(crate::service::ServiceError::from(e).into()),
        }
    }
}
