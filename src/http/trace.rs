//! Server spans (docs/tracing.md) for the requests worth following across processes: a
//! publish (single and batch), a callback arriving at `/in/{slug}`, and a wait on a callback
//! endpoint or reply channel. A `traceparent` the caller sent is continued.
//!
//! The layer is installed only when tracing is on. The span's own `traceparent` goes into the
//! request's extensions ([`RequestTrace`]) for the publish handlers, which store it with the
//! event so that its deliveries' attempts, however much later, join the same trace.
//!
//! Spans carry the route template, never the path: the slug in `/in/{slug}` is a capability.
//! An SSE stream's span ends when the stream opens (its response head), not when it closes.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::telemetry::otel::KeyValue;

/// The server span of this request, as a W3C `traceparent`.
#[derive(Debug, Clone)]
pub struct RequestTrace(pub String);

/// The route template of a traced request, `None` for the others.
pub fn traced_route(method: &Method, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["v1", "events"]) => Some("/v1/events"),
        (&Method::POST, ["v1", "events", "batch"]) => Some("/v1/events/batch"),
        (_, ["in", _]) => Some("/in/{slug}"),
        (&Method::GET, ["v1", "callback-endpoints", _, "wait"]) => {
            Some("/v1/callback-endpoints/{id}/wait")
        }
        (&Method::GET, ["v1", "callback-endpoints", _, "stream"]) => {
            Some("/v1/callback-endpoints/{id}/stream")
        }
        (&Method::GET, ["v1", "events", _, "replies", "wait"]) => {
            Some("/v1/events/{id}/replies/wait")
        }
        _ => None,
    }
}

/// The layer: a `SERVER` span around the traced routes, with the HTTP semantic conventions'
/// attributes.
pub async fn trace_request(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(route) = traced_route(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let method = req.method().as_str().to_string();
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let mut span = s.tracing.server(
        format!("{method} {route}"),
        parent,
        vec![
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("http.route", route),
            KeyValue::new("url.scheme", "http"),
        ],
    );
    if let Some(tp) = span.traceparent() {
        req.extensions_mut().insert(RequestTrace(tp));
    }
    let res = next.run(req).await;
    let status = res.status().as_u16();
    span.set("http.response.status_code", i64::from(status));
    // Server spans fail on 5xx only: a 4xx is the client's mistake (semantic conventions).
    if status >= 500 {
        span.fail(status.to_string(), format!("answered {status}"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_publish_ingest_and_wait_routes_are_traced_and_by_their_template() {
        assert_eq!(
            traced_route(&Method::POST, "/v1/events"),
            Some("/v1/events")
        );
        assert_eq!(
            traced_route(&Method::POST, "/v1/events/batch"),
            Some("/v1/events/batch")
        );
        assert_eq!(traced_route(&Method::PUT, "/in/abc"), Some("/in/{slug}"));
        assert_eq!(
            traced_route(&Method::GET, "/v1/callback-endpoints/ep_1/wait"),
            Some("/v1/callback-endpoints/{id}/wait")
        );
        assert_eq!(
            traced_route(&Method::GET, "/v1/events/evt_1/replies/wait"),
            Some("/v1/events/{id}/replies/wait")
        );
        assert_eq!(traced_route(&Method::GET, "/v1/events/evt_1"), None);
        assert_eq!(traced_route(&Method::GET, "/metrics"), None);
    }
}
