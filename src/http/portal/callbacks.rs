//! Inbound callback endpoints and the requests they captured, newest first.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::views::Time;
use super::{Chrome, PortalError, PortalQuery, Session, render};
use crate::http::AppState;
use crate::inbound::model::{CallbackView, EndpointView};
use crate::service::callbacks::ListStatus;

/// Captured requests shown per page.
const PER_PAGE: i64 = 25;

struct EndpointRow {
    e: EndpointView,
    created: Time,
    expires: Option<Time>,
    scheme: String,
}

impl EndpointRow {
    fn new(e: EndpointView, now: i64) -> Self {
        EndpointRow {
            created: Time::new(e.created_at, now),
            expires: e.expires_at.map(|t| Time::new(t, now)),
            scheme: e.verification.scheme.as_str().to_string(),
            e,
        }
    }
}

#[derive(Template)]
#[template(path = "portal/callbacks.html")]
struct ListPage {
    chrome: Chrome,
    endpoints: Vec<EndpointRow>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    after: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    session: Session,
    PortalQuery(p): PortalQuery<ListParams>,
) -> Result<Response, PortalError> {
    let page = s
        .herald
        .list_callback_endpoints(session.scope(), p.after.as_deref(), None)
        .await?;
    let now = s.herald.clock.now();
    render(
        StatusCode::OK,
        &ListPage {
            chrome: Chrome::new(&session, "callbacks"),
            endpoints: page
                .data
                .into_iter()
                .map(|e| EndpointRow::new(e, now))
                .collect(),
            next: page.next_cursor,
        },
    )
}

struct CallbackRow {
    c: CallbackView,
    received: Time,
    body: String,
}

#[derive(Template)]
#[template(path = "portal/callback_endpoint.html")]
struct EndpointPage {
    chrome: Chrome,
    row: EndpointRow,
    callbacks: Vec<CallbackRow>,
    /// The cursor to pass as `before` for older requests.
    older: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowParams {
    /// Show the requests with a cursor below this one.
    #[serde(default)]
    before: Option<i64>,
}

/// The endpoint's newest captured requests. Cursors are dense (1, 2, 3, …), so the page
/// "before N" is the service's ascending page after `N - 1 - PER_PAGE`, reversed.
pub async fn show(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    PortalQuery(p): PortalQuery<ShowParams>,
) -> Result<Response, PortalError> {
    let h = &s.herald;
    let e = h.get_callback_endpoint(session.scope(), &id).await?;
    let before = p
        .before
        .unwrap_or(e.last_cursor + 1)
        .clamp(1, e.last_cursor + 1);
    let after = (before - 1 - PER_PAGE).max(0);
    let page = h
        .list_endpoint_callbacks(
            session.scope(),
            &id,
            ListStatus::Accepted,
            Some(&after.to_string()),
            Some(PER_PAGE as u32),
            false,
        )
        .await?;
    let now = h.clock.now();
    let callbacks = page
        .data
        .into_iter()
        .filter(|c| c.cursor.is_some_and(|n| n < before))
        .rev()
        .map(|c| CallbackRow {
            received: Time::new(c.received_at, now),
            body: match (&c.body, &c.body_text, &c.body_base64) {
                (Some(v), _, _) => serde_json::to_string_pretty(v).unwrap_or_default(),
                (_, Some(t), _) => t.clone(),
                (_, _, Some(b)) => format!("(binary, base64) {b}"),
                _ => String::new(),
            },
            c,
        })
        .collect();
    render(
        StatusCode::OK,
        &EndpointPage {
            chrome: Chrome::new(&session, "callbacks"),
            row: EndpointRow::new(h.endpoint_view(&e), now),
            callbacks,
            older: (after > 0).then_some(after + 1),
        },
    )
}
