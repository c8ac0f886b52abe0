//! The deliveries list (filters, search by event id, cursor pages) and one delivery with its
//! attempts timeline and the replay button.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::views::{AttemptView, DeliveryRow, DestinationRow, parse_local_time, pretty_json};
use super::{Chrome, NoFields, PortalError, PortalForm, PortalQuery, Session, render, see_other};
use crate::domain::ids::{Kind, is_valid};
use crate::domain::state::DeliveryStatus;
use crate::http::AppState;
use crate::service::Herald;
use crate::store::{DeliveryQuery, Scope};

/// The filters as typed: echoed back into the form and into the "older" link.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    destination_id: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    event_id: String,
    /// `datetime-local`, UTC.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    done: String,
}

impl Filters {
    /// The store query, or the field that is wrong and why.
    fn query(&self, tenant_id: &str) -> Result<DeliveryQuery, (&'static str, String)> {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let status = match self.status.as_str() {
            "" => None,
            s => Some(DeliveryStatus::parse(s).ok_or(("status", "is not a status".into()))?),
        };
        let time = |field: &'static str, s: &str| match s.trim() {
            "" => Ok(None),
            t => parse_local_time(t).map(Some).ok_or((
                field,
                "must be a date and time, e.g. 2026-12-01T08:00".into(),
            )),
        };
        let event_id = opt(&self.event_id);
        if let Some(e) = &event_id
            && !is_valid(Kind::Event, e)
        {
            return Err(("event_id", "must be an event id (evt_…)".into()));
        }
        Ok(DeliveryQuery {
            tenant_id: tenant_id.to_string(),
            status,
            destination_id: opt(&self.destination_id),
            event_id,
            topic: opt(&self.topic),
            after: opt(&self.after),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            limit: 50,
        })
    }

    /// The query string of the next page: the same filters, after `cursor`.
    fn next_link(&self, cursor: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("destination_id", &self.destination_id),
            ("topic", &self.topic),
            ("event_id", &self.event_id),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("after", cursor);
        format!("/portal/deliveries?{}", q.finish())
    }

    fn any(&self) -> bool {
        [
            &self.status,
            &self.destination_id,
            &self.topic,
            &self.event_id,
            &self.since,
            &self.until,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }
}

#[derive(Template)]
#[template(path = "portal/deliveries.html")]
struct ListPage {
    chrome: Chrome,
    f: Filters,
    statuses: Vec<&'static str>,
    destinations: Vec<(String, String)>,
    rows: Vec<DeliveryRow>,
    next: Option<String>,
    /// `(field, message)` when a filter was invalid.
    error: Option<(&'static str, String)>,
    /// On a later page (offer the way back to the newest).
    paged: bool,
}

impl ListPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// Destination labels for the tenant (menus and rows), one page of up to 250.
async fn destination_labels(
    h: &Herald,
    scope: Scope<'_>,
    tenant_id: &str,
) -> Result<BTreeMap<String, String>, PortalError> {
    let page = h
        .list_destinations(scope, tenant_id, None, Some(250))
        .await?;
    Ok(page
        .data
        .iter()
        .map(|d| (d.id.clone(), DestinationRow::label(d)))
        .collect())
}

pub async fn list(
    State(s): State<AppState>,
    session: Session,
    PortalQuery(f): PortalQuery<Filters>,
) -> Result<Response, PortalError> {
    let h = &s.herald;
    let labels = destination_labels(h, session.scope(), &session.tenant_id).await?;
    let now = h.clock.now();
    let (status, rows, next, error) = match f.query(&session.tenant_id) {
        Ok(q) => {
            let page = h.list_deliveries(session.scope(), q).await?;
            let rows = page
                .data
                .iter()
                .map(|d| DeliveryRow::new(d, &labels, now))
                .collect();
            let next = page.next_cursor.map(|c| f.next_link(&c));
            (StatusCode::OK, rows, next, None)
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, vec![], None, Some(e)),
    };
    let page = ListPage {
        chrome: Chrome::new(&session, "deliveries").with_done(Some(f.done.as_str())),
        paged: !f.after.is_empty(),
        statuses: DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect(),
        destinations: labels.into_iter().collect(),
        rows,
        next,
        error,
        f,
    };
    render(status, &page)
}

#[derive(Template)]
#[template(path = "portal/delivery.html")]
struct DeliveryPage {
    chrome: Chrome,
    d: DeliveryRow,
    payload: String,
    metadata: String,
    attempts: Vec<AttemptView>,
    /// A replay is refused while an attempt is in flight.
    can_retry: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct DoneParam {
    #[serde(default)]
    done: Option<String>,
}

pub async fn show(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    PortalQuery(p): PortalQuery<DoneParam>,
) -> Result<Response, PortalError> {
    let h = &s.herald;
    let d = h.get_delivery(session.scope(), &id).await?;
    let event = h.get_event(session.scope(), &d.event_id).await?;
    let labels = destination_labels(h, session.scope(), &session.tenant_id).await?;
    let now = h.clock.now();
    let attempts = d
        .attempts
        .iter()
        .flatten()
        .rev()
        .map(|a| AttemptView::new(a, now))
        .collect();
    let page = DeliveryPage {
        chrome: Chrome::new(&session, "deliveries").with_done(p.done.as_deref()),
        can_retry: d.status != DeliveryStatus::Delivering,
        d: DeliveryRow::new(&d, &labels, now),
        payload: pretty_json(event.data.get()),
        metadata: serde_json::to_string_pretty(&event.metadata).unwrap_or_default(),
        attempts,
    };
    render(StatusCode::OK, &page)
}

/// Replay: a new manual attempt now.
pub async fn retry(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, NoFields {}): PortalForm<NoFields>,
) -> Result<Response, PortalError> {
    s.herald.retry_delivery(session.scope(), &id).await?;
    Ok(see_other(&format!("/portal/deliveries/{id}?done=retried")))
}
