//! The event-type catalog as a tenant sees it: what it can subscribe to, what each event
//! means, the schema its data satisfies and an example. Archived types are left out: they take
//! no new events, so there is nothing to subscribe to.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::views::Time;
use super::{Chrome, PortalError, PortalQuery, Session, render};
use crate::domain::catalog::EventType;
use crate::http::AppState;

struct TypeRow {
    t: EventType,
    updated: Time,
    /// The schema, pretty-printed; `None`: any JSON.
    schema: Option<String>,
    /// The first example, pretty-printed.
    example: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/event_types.html")]
struct ListPage {
    chrome: Chrome,
    types: Vec<TypeRow>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    after: Option<String>,
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON serializes")
}

pub async fn list(
    State(s): State<AppState>,
    session: Session,
    PortalQuery(p): PortalQuery<ListParams>,
) -> Result<Response, PortalError> {
    let page = s
        .herald
        .list_event_types(p.after.as_deref(), None, false)
        .await?;
    let now = s.herald.clock.now();
    let types = page
        .data
        .into_iter()
        .map(|t| TypeRow {
            updated: Time::new(t.updated_at, now),
            schema: t.schema.as_ref().map(pretty),
            example: t.examples.first().map(pretty),
            t,
        })
        .collect();
    render(
        StatusCode::OK,
        &ListPage {
            chrome: Chrome::new(&session, "event-types"),
            types,
            next: page.next_cursor,
        },
    )
}
