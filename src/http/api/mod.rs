//! The REST API (docs/api.md). Handlers are thin: extract, call the service, shape the answer.

mod callbacks;
mod deliveries;
mod destinations;
mod event_types;
mod events;
pub mod openapi;
mod portal_sessions;
mod tenants;

use axum::Json;
use axum::Router;
use axum::routing::{get, post, put};

use utoipa::OpenApi;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(tenants::list))
        .route(
            "/v1/tenants/{tenant_id}",
            put(tenants::upsert)
                .get(tenants::get)
                .delete(tenants::delete),
        )
        .route("/v1/tenants/{tenant_id}/tokens", post(tenants::issue_token))
        .route(
            "/v1/tenants/{tenant_id}/portal-sessions",
            post(portal_sessions::create),
        )
        .route(
            "/v1/tenants/{tenant_id}/destinations",
            post(destinations::create).get(destinations::list),
        )
        .route(
            "/v1/tenants/{tenant_id}/destinations/{id}",
            get(destinations::get)
                .patch(destinations::update)
                .delete(destinations::delete),
        )
        .route(
            "/v1/tenants/{tenant_id}/destinations/{id}/enable",
            post(destinations::enable),
        )
        .route(
            "/v1/tenants/{tenant_id}/destinations/{id}/disable",
            post(destinations::disable),
        )
        .route(
            "/v1/tenants/{tenant_id}/destinations/{id}/rotate-secret",
            post(destinations::rotate_secret),
        )
        .route(
            "/v1/tenants/{tenant_id}/destinations/{id}/test",
            post(destinations::send_test),
        )
        .route("/v1/event-types", get(event_types::list))
        .route(
            "/v1/event-types/{name}",
            put(event_types::put)
                .get(event_types::get)
                .delete(event_types::delete),
        )
        .route("/v1/events", post(events::publish))
        .route("/v1/events/batch", post(events::publish_batch))
        .route("/v1/events/{id}", get(events::get))
        .route("/v1/events/{id}/replay", post(deliveries::replay))
        .route(
            "/v1/tenants/{tenant_id}/destinations/{id}/recover",
            post(deliveries::recover),
        )
        .route(
            "/v1/tenants/{tenant_id}/recoveries/{id}",
            get(deliveries::get_recovery),
        )
        .route("/v1/tenants/{tenant_id}/events", get(events::list))
        .route("/v1/tenants/{tenant_id}/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route(
            "/v1/events/{id}/replies/wait",
            get(callbacks::wait_for_reply),
        )
        .route(
            "/v1/callback-endpoints",
            post(callbacks::create).get(callbacks::list),
        )
        .route(
            "/v1/callback-endpoints/{id}",
            get(callbacks::get).delete(callbacks::delete),
        )
        .route("/v1/callback-endpoints/{id}/wait", get(callbacks::wait))
        .route("/v1/callback-endpoints/{id}/events", get(callbacks::events))
        .route("/v1/callback-endpoints/{id}/stream", get(callbacks::stream))
        .route("/v1/callbacks", get(callbacks::poll))
        .route("/v1/callbacks/{id}/ack", post(callbacks::ack))
        .route("/v1/callbacks/{id}", get(callbacks::get_callback))
        .route("/v1/callbacks/{id}/replay", post(callbacks::replay))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Webhook delivery engine for AI platforms: signed outbound webhooks with \
                       retries, and inbound callbacks agents can wait on."
    ),
    paths(
        tenants::list,
        tenants::upsert,
        tenants::get,
        tenants::delete,
        tenants::issue_token,
        destinations::create,
        destinations::list,
        destinations::get,
        destinations::update,
        destinations::delete,
        destinations::enable,
        destinations::disable,
        destinations::rotate_secret,
        destinations::send_test,
        event_types::list,
        event_types::put,
        event_types::get,
        event_types::delete,
        events::publish,
        events::publish_batch,
        events::get,
        events::list,
        deliveries::list,
        deliveries::get,
        deliveries::retry,
        deliveries::replay,
        deliveries::recover,
        deliveries::get_recovery,
        callbacks::create,
        callbacks::list,
        callbacks::get,
        callbacks::delete,
        callbacks::wait,
        callbacks::events,
        callbacks::stream,
        callbacks::poll,
        callbacks::ack,
        callbacks::wait_for_reply,
        callbacks::get_callback,
        callbacks::replay,
        crate::http::ingest::ingest,
        portal_sessions::create,
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`: the document, its `servers` entry this Herald's `public_url`.
pub async fn openapi_json(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    Json(openapi::document(&s.herald.inbound.public_url))
}
