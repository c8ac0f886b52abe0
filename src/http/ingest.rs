//! `ANY /in/{slug}`: where callbacks arrive (docs/inbound.md). No bearer token: the unguessable slug
//! and the endpoint's verification scheme protect it.
//!
//! The handler does only what must happen before answering — read the body within the limit,
//! verify, store — and answers at once; agents do their work when their wait returns.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::service::{IncomingRequest, IngestError, IngestOutcome};

/// Capture a callback (any method; signed schemes accept POST only).
#[utoipa::path(post, path = "/in/{slug}", operation_id = "receive_callback", tag = "inbound", params(("slug" = String, Path)),
    security(()),
    responses((status = 200, description = "stored, or a duplicate of a stored delivery"),
              (status = 401, body = crate::http::error::Problem),
              (status = 404, body = crate::http::error::Problem),
              (status = 405, body = crate::http::error::Problem),
              (status = 410, body = crate::http::error::Problem),
              (status = 413, body = crate::http::error::Problem),
              (status = 429, body = crate::http::error::Problem)))]
pub async fn ingest(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body is larger than this endpoint accepts ({} bytes)",
                    s.herald.inbound.max_body_bytes
                ),
            )
            .into_response();
        }
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
                .into_response();
        }
    };
    let req = IncomingRequest {
        slug,
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        remote_addr: Some(peer.to_string()),
    };
    match s.herald.ingest(req).await {
        Ok(IngestOutcome::Stored { .. }) => Json(json!({"ok": true})).into_response(),
        Ok(IngestOutcome::Duplicate { .. }) => {
            Json(json!({"ok": true, "duplicate": true})).into_response()
        }
        Ok(IngestOutcome::SlackChallenge(c)) => Json(json!({"challenge": c})).into_response(),
        Err(e) => error_response(e),
    }
}

fn error_response(e: IngestError) -> Response {
    let detail = e.to_string();
    match e {
        IngestError::NotFound => ApiError::not_found("callback endpoint").into_response(),
        IngestError::Gone => ApiError::new(StatusCode::GONE, "gone", detail).into_response(),
        IngestError::MethodNotAllowed(_) => {
            let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", detail)
                .into_response();
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            r
        }
        IngestError::RateLimited => {
            let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        IngestError::Rejected(v) => {
            ApiError::new(StatusCode::UNAUTHORIZED, v.code(), detail).into_response()
        }
        IngestError::Store(e) => {
            ApiError::from(crate::service::ServiceError::Store(e)).into_response()
        }
    }
}
