//! `/mcp` on the main server: MCP over Streamable HTTP, behind the REST API's bearer tokens.
//!
//! Every request must carry an admin or tenant token, checked exactly as the REST API checks
//! it; the tools then act with that token's scope (a tenant token sees only its tenant). The
//! `Host` header is checked against the public URL's host and loopback, which is what stops a
//! DNS-rebinding page from reaching a Herald on a developer's machine.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::api::ApiClient;
use super::tools::{Authorized, Credential, HeraldMcp, WaitLimits};
use crate::http::AppState;
use crate::http::extract::Auth;

/// The `/mcp` route, ready to merge into the main router.
pub fn routes(state: &AppState) -> Router<AppState> {
    // The tools call the REST API in this process; it is built without `/mcp` itself.
    let api = ApiClient::InProcess(crate::http::api::routes().with_state(state.clone()));
    let shutdown = CancellationToken::new();
    // Open MCP streams would hold the graceful shutdown open: end them when Herald stops.
    let mut stopping = state.herald.stopping.subscribe();
    let on_stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        on_stop.cancel();
    });
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts(&state.herald.inbound.public_url))
        .with_cancellation_token(shutdown);
    let limits = WaitLimits::of(&state.herald.inbound);
    let service = StreamableHttpService::new(
        move || Ok(HeraldMcp::new(api.clone(), Credential::PerRequest, limits)),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new().nest_service(
        "/mcp",
        tower::ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(state.clone(), require_token))
            .service(service),
    )
}

/// Loopback, plus the host of the public URL clients are told to use.
pub fn allowed_hosts(public_url: &str) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if let Some(host) = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
        && !hosts.contains(&host)
    {
        hosts.push(host);
    }
    hosts
}

/// Refuses requests without a valid token (401 problem+json, `WWW-Authenticate: Bearer`), and
/// marks accepted ones so the tools act with the token's scope.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match Auth::from_request_parts(&mut parts, &state).await {
        Ok(_) => {
            let authorization = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            parts.extensions.insert(Authorized(authorization));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => {
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_host_is_allowed_beside_loopback() {
        let hosts = allowed_hosts("https://herald.example.com:8443/base");
        assert!(hosts.contains(&"herald.example.com".to_string()));
        assert!(hosts.contains(&"127.0.0.1".to_string()));
        assert_eq!(allowed_hosts("http://127.0.0.1:9000").len(), 3);
    }
}
