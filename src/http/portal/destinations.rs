//! The overview (destinations and their health) and everything done to one destination.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::views::{DeliveryRow, DestinationRow, Time, local_time_value, parse_local_time};
use super::{Chrome, NoFields, PortalError, PortalForm, PortalQuery, Session, render, see_other};
use crate::domain::amqp::DEFAULT_ROUTING_KEY;
use crate::domain::model::{Destination, DestinationKind, Recovery, SigningView};
use crate::domain::signature::SignatureKind;
use crate::domain::time::rfc3339;
use crate::http::AppState;
use crate::service::{CreateDestination, RotateSecret, ServiceError, UpdateDestination};
use crate::store::DeliveryQuery;

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    recovery: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    destinations: Vec<DestinationRow>,
    next: Option<String>,
    failing: usize,
}

/// `GET /portal`: every destination with its health, the failing ones first in the eye.
pub async fn overview(
    State(s): State<AppState>,
    session: Session,
    PortalQuery(p): PortalQuery<PageParams>,
) -> Result<Response, PortalError> {
    let h = &s.herald;
    let page = h
        .list_destinations(
            session.scope(),
            &session.tenant_id,
            p.after.as_deref(),
            None,
        )
        .await?;
    let now = h.clock.now();
    // One bounded health query per destination, run side by side on the read pool.
    let healths = futures_util::future::try_join_all(
        page.data
            .iter()
            .map(|d| h.destination_health(session.scope(), &session.tenant_id, &d.id)),
    )
    .await?;
    let destinations: Vec<DestinationRow> = page
        .data
        .iter()
        .zip(&healths)
        .map(|(d, health)| DestinationRow::new(d, health, now))
        .collect();
    let failing = destinations
        .iter()
        .filter(|d| !d.enabled || d.grade == "failing")
        .count();
    render(
        StatusCode::OK,
        &OverviewPage {
            chrome: Chrome::new(&session, "overview").with_done(p.done.as_deref()),
            destinations,
            next: page.next_cursor,
            failing,
        },
    )
}

/// An ed25519 public key on the destination page.
struct PublicKeyRow {
    key: String,
    /// The previous key during a rotation: when it stops verifying.
    until: Option<Time>,
}

/// A secret shown on the destination page right after "reveal" or "rotate".
struct SecretView {
    secret: String,
    /// After a rotation: until when the previous secret keeps signing.
    previous_until: Option<Time>,
}

#[derive(Template)]
#[template(path = "portal/destination.html")]
struct DestinationPage {
    chrome: Chrome,
    d: DestinationRow,
    kind: &'static str,
    filter: String,
    header_names: Vec<String>,
    options: String,
    created: Time,
    secret: Option<SecretView>,
    /// ed25519 destinations: their public keys, always shown (they verify, never sign).
    public_keys: Vec<PublicKeyRow>,
    /// ed25519 destinations, right after a rotation: until when the previous key verifies.
    rotated_until: Option<Time>,
    recent: Vec<DeliveryRow>,
    recovery: Option<RecoveryView>,
    recover_since: String,
}

struct RecoveryView {
    id: String,
    count: u64,
    since: Time,
    done: bool,
    progress: Vec<(String, u64)>,
}

impl RecoveryView {
    fn new(r: Recovery, now: i64) -> Self {
        RecoveryView {
            id: r.id,
            count: r.count,
            since: Time::new(r.since, now),
            done: r.done,
            progress: r.progress.into_iter().collect(),
        }
    }
}

/// Renders the destination page, optionally with a secret on show or a recovery's progress.
async fn destination_page(
    s: &AppState,
    session: &Session,
    id: &str,
    notice: Option<&str>,
    secret: Option<SecretView>,
    recovery_id: Option<&str>,
) -> Result<Response, PortalError> {
    let h = &s.herald;
    let (scope, tenant) = (session.scope(), session.tenant_id.as_str());
    let d = h.get_destination(scope, tenant, id).await?;
    let health = h.destination_health(scope, tenant, id).await?;
    let now = h.clock.now();
    let recent = h
        .list_deliveries(
            scope,
            DeliveryQuery {
                tenant_id: tenant.to_string(),
                destination_id: Some(d.id.clone()),
                limit: 10,
                ..DeliveryQuery::default()
            },
        )
        .await?;
    let labels = BTreeMap::from([(d.id.clone(), DestinationRow::label(&d))]);
    let recovery = match recovery_id {
        Some(r) => Some(RecoveryView::new(
            h.get_recovery(scope, tenant, r).await?,
            now,
        )),
        None => None,
    };
    let page = DestinationPage {
        chrome: Chrome::new(session, "overview").with_done(notice),
        kind: d.kind.as_str(),
        filter: d
            .filter
            .as_ref()
            .map(|f| serde_json::to_string_pretty(f).unwrap_or_default())
            .unwrap_or_default(),
        // Header values often carry credentials: names only.
        header_names: d.headers.keys().cloned().collect(),
        options: serde_json::to_string_pretty(&d.options).unwrap_or_default(),
        created: Time::new(d.created_at, now),
        recent: recent
            .data
            .iter()
            .map(|r| DeliveryRow::new(r, &labels, now))
            .collect(),
        public_keys: SigningView::of(&d.secrets)
            .public_keys
            .into_iter()
            .filter(|k| k.expires_at.is_none_or(|t| t > now))
            .map(|k| PublicKeyRow {
                key: k.public_key,
                until: k.expires_at.map(|t| Time::new(t, now)),
            })
            .collect(),
        rotated_until: secret
            .as_ref()
            .filter(|v| v.secret.is_empty())
            .and_then(|v| v.previous_until.clone()),
        secret: secret.filter(|v| !v.secret.is_empty()),
        d: DestinationRow::new(&d, &health, now),
        recovery,
        recover_since: local_time_value(now - 24 * 3_600_000),
    };
    render(StatusCode::OK, &page)
}

pub async fn show(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    PortalQuery(p): PortalQuery<PageParams>,
) -> Result<Response, PortalError> {
    destination_page(
        &s,
        &session,
        &id,
        p.done.as_deref(),
        None,
        p.recovery.as_deref(),
    )
    .await
}

pub async fn reveal_secret(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, NoFields {}): PortalForm<NoFields>,
) -> Result<Response, PortalError> {
    let d = s
        .herald
        .get_destination(session.scope(), &session.tenant_id, &id)
        .await?;
    let now = s.herald.clock.now();
    // An ed25519 signing key is never shown: its public key is, always.
    let secret = d
        .active_secrets(now)
        .next()
        .filter(|s| SignatureKind::of(s) == SignatureKind::Hmac)
        .unwrap_or_default()
        .to_string();
    let shown = SecretView {
        secret,
        previous_until: None,
    };
    destination_page(&s, &session, &id, None, Some(shown), None).await
}

pub async fn rotate_secret(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, NoFields {}): PortalForm<NoFields>,
) -> Result<Response, PortalError> {
    let rotated = s
        .herald
        .rotate_secret(
            session.scope(),
            &session.tenant_id,
            &id,
            RotateSecret::default(),
        )
        .await?;
    let now = s.herald.clock.now();
    // For ed25519 the secret stays empty: the page shows the new public key.
    let shown = SecretView {
        secret: rotated.secret.unwrap_or_default(),
        previous_until: Some(Time::new(rotated.previous_expires_at, now)),
    };
    destination_page(&s, &session, &id, None, Some(shown), None).await
}

pub async fn enable(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, NoFields {}): PortalForm<NoFields>,
) -> Result<Response, PortalError> {
    s.herald
        .set_destination_enabled(session.scope(), &session.tenant_id, &id, true, None)
        .await?;
    Ok(see_other(&format!(
        "/portal/destinations/{id}?done=enabled"
    )))
}

#[derive(Debug, Deserialize)]
pub struct DisableFields {
    #[serde(default)]
    reason: String,
}

pub async fn disable(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, f): PortalForm<DisableFields>,
) -> Result<Response, PortalError> {
    let reason = f.reason.trim();
    if reason.chars().count() > 512 {
        return Err(PortalError::Invalid(
            "Reason: must be at most 512 characters".into(),
        ));
    }
    let reason = (!reason.is_empty()).then(|| format!("disabled in the portal: {reason}"));
    s.herald
        .set_destination_enabled(session.scope(), &session.tenant_id, &id, false, reason)
        .await?;
    Ok(see_other(&format!(
        "/portal/destinations/{id}?done=disabled"
    )))
}

pub async fn send_test(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, NoFields {}): PortalForm<NoFields>,
) -> Result<Response, PortalError> {
    let p = s
        .herald
        .send_test_event(session.scope(), &session.tenant_id, &id)
        .await?;
    Ok(see_other(&format!(
        "/portal/deliveries?event_id={}&done=test_sent",
        p.id
    )))
}

#[derive(Debug, Deserialize)]
pub struct RecoverFields {
    since: String,
}

/// Bulk recovery: every failed or skipped delivery since a time, scheduled again.
pub async fn recover(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, f): PortalForm<RecoverFields>,
) -> Result<Response, PortalError> {
    let since = parse_local_time(&f.since).ok_or_else(|| {
        PortalError::Invalid("Since: must be a date and time, e.g. 2026-12-01T08:00".into())
    })?;
    let r = s
        .herald
        .recover_destination(
            session.scope(),
            &session.tenant_id,
            &id,
            &rfc3339(since),
            false,
        )
        .await?;
    Ok(see_other(&format!(
        "/portal/destinations/{id}?done=recovered&recovery={}",
        r.id
    )))
}

/// The create and edit form's fields, as typed (so a rejected form comes back as it was).
#[derive(Debug, Default, Deserialize)]
pub struct DestinationFields {
    /// `webhook` (also when empty) or `rabbitmq`: which target fields the form has. A hidden
    /// field: the type is chosen before the form opens and never changes.
    #[serde(default)]
    kind: String,
    /// `webhook`: the endpoint.
    #[serde(default)]
    url: String,
    /// `rabbitmq`: the broker. Never shown back once saved (it holds a password): empty on
    /// the edit form, where empty keeps the current broker.
    #[serde(default)]
    amqp_url: String,
    #[serde(default)]
    exchange: String,
    /// Empty: the default, `{topic}`.
    #[serde(default)]
    routing_key: String,
    /// The current broker with its password hidden, shown on the edit form.
    #[serde(skip)]
    broker: String,
    #[serde(default)]
    description: String,
    /// Comma- or line-separated patterns.
    #[serde(default)]
    topics: String,
    /// JSON, or empty for none.
    #[serde(default)]
    filter: String,
    /// `Name: value` lines.
    #[serde(default)]
    headers: String,
    /// New destinations only: `hmac` (also when empty) or `ed25519`.
    #[serde(default)]
    signature: String,
}

/// The fields parsed for the services; an error names the form field it belongs to.
struct Parsed {
    description: Option<String>,
    topics: Vec<String>,
    filter: Option<serde_json::Value>,
    headers: BTreeMap<String, String>,
}

impl DestinationFields {
    fn from_destination(d: &Destination) -> Self {
        let amqp = d.amqp.as_ref();
        DestinationFields {
            kind: d.kind.as_str().to_string(),
            url: d.url.clone().unwrap_or_default(),
            amqp_url: String::new(),
            exchange: amqp.map(|t| t.exchange.clone()).unwrap_or_default(),
            routing_key: amqp
                .map(|t| t.routing_key.clone())
                .filter(|k| k != DEFAULT_ROUTING_KEY)
                .unwrap_or_default(),
            broker: amqp.map(|t| t.url.redacted()).unwrap_or_default(),
            description: d.description.clone().unwrap_or_default(),
            topics: d.topics.join("\n"),
            filter: d
                .filter
                .as_ref()
                .map(|f| serde_json::to_string_pretty(f).unwrap_or_default())
                .unwrap_or_default(),
            headers: d
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            signature: String::new(),
        }
    }

    /// The signature a new destination asked for; anything else is a forged form.
    fn signature_kind(&self) -> Result<SignatureKind, PortalError> {
        match self.signature.as_str() {
            "" | "hmac" => Ok(SignatureKind::Hmac),
            "ed25519" => Ok(SignatureKind::Ed25519),
            other => Err(PortalError::BadForm(format!(
                "`{other}` is not a signature: hmac or ed25519"
            ))),
        }
    }

    fn is_ed25519(&self) -> bool {
        self.signature == "ed25519"
    }

    fn is_rabbitmq(&self) -> bool {
        self.kind == "rabbitmq"
    }

    /// The destination type the form is for; anything but the two types is a forged form.
    fn destination_kind(&self) -> Result<DestinationKind, PortalError> {
        match self.kind.as_str() {
            "" | "webhook" => Ok(DestinationKind::Webhook),
            "rabbitmq" => Ok(DestinationKind::Rabbitmq),
            other => Err(PortalError::BadForm(format!(
                "`{other}` is not a destination type: webhook or rabbitmq"
            ))),
        }
    }

    /// A field's trimmed text, `None` when empty.
    fn given(field: &str) -> Option<String> {
        Some(field.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn parse(&self) -> Result<Parsed, (&'static str, String)> {
        let topics = self
            .topics
            .split([',', '\n'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        let filter = match self.filter.trim() {
            "" => None,
            f => Some(
                serde_json::from_str(f)
                    .map_err(|e| ("filter", format!("is not valid JSON: {e}")))?,
            ),
        };
        let mut headers = BTreeMap::new();
        for line in self
            .headers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (k, v) = line
                .split_once(':')
                .ok_or(("headers", format!("`{line}` is not a `Name: value` line")))?;
            headers.insert(k.trim().to_string(), v.trim().to_string());
        }
        let description = Some(self.description.trim().to_string()).filter(|d| !d.is_empty());
        Ok(Parsed {
            description,
            topics,
            filter,
            headers,
        })
    }
}

#[derive(Template)]
#[template(path = "portal/destination_form.html")]
struct FormPage {
    chrome: Chrome,
    /// `None` for a new destination.
    id: Option<String>,
    f: DestinationFields,
    errors: BTreeMap<&'static str, String>,
    /// An error that belongs to no one field.
    general: String,
}

impl FormPage {
    fn new(session: &Session, id: Option<String>, f: DestinationFields) -> Self {
        FormPage {
            chrome: Chrome::new(session, "overview"),
            id,
            f,
            errors: BTreeMap::new(),
            general: String::new(),
        }
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    fn action(&self) -> String {
        match &self.id {
            Some(id) => format!("/portal/destinations/{id}"),
            None => "/portal/destinations".into(),
        }
    }
}

/// Which form field a service validation error belongs to (`topics[2]` → `topics`).
fn form_field(field: &str) -> Option<&'static str> {
    [
        "url",
        "amqp_url",
        "exchange",
        "routing_key",
        "description",
        "topics",
        "filter",
        "headers",
    ]
    .into_iter()
    .find(|f| {
        field == *f || field.starts_with(&format!("{f}.")) || field.starts_with(&format!("{f}["))
    })
}

/// The form again, with the error next to its field: 422, nothing saved.
fn rejected(
    session: &Session,
    id: Option<String>,
    f: DestinationFields,
    field: &str,
    message: String,
) -> Result<Response, PortalError> {
    let mut page = FormPage::new(session, id, f);
    match form_field(field) {
        Some(name) => {
            page.errors.insert(name, message);
        }
        None => page.general = format!("{field}: {message}"),
    }
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// Splits a service error into the form's field and message, or passes it on.
fn field_error(e: ServiceError) -> Result<(String, String), PortalError> {
    match e {
        ServiceError::Invalid(i) => Ok((i.field, i.message)),
        ServiceError::TooLarge { field, message } => Ok((field, message)),
        other => Err(other.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NewParams {
    #[serde(default, rename = "type")]
    kind: String,
}

/// `GET /portal/destinations/new[?type=rabbitmq]`: the create form for a webhook (the
/// default) or a RabbitMQ exchange.
pub async fn new_form(
    session: Session,
    PortalQuery(p): PortalQuery<NewParams>,
) -> Result<Response, PortalError> {
    let f = DestinationFields {
        kind: p.kind,
        topics: "*".into(),
        ..DestinationFields::default()
    };
    f.destination_kind()?;
    let page = FormPage::new(&session, None, f);
    render(StatusCode::OK, &page)
}

pub async fn edit_form(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    let d = s
        .herald
        .get_destination(session.scope(), &session.tenant_id, &id)
        .await?;
    let page = FormPage::new(
        &session,
        Some(d.id.clone()),
        DestinationFields::from_destination(&d),
    );
    render(StatusCode::OK, &page)
}

pub async fn create(
    State(s): State<AppState>,
    PortalForm(session, f): PortalForm<DestinationFields>,
) -> Result<Response, PortalError> {
    let kind = f.destination_kind()?;
    let signature = f.signature_kind()?;
    let p = match f.parse() {
        Ok(p) => p,
        Err((field, msg)) => return rejected(&session, None, f, field, msg),
    };
    let rabbitmq = kind == DestinationKind::Rabbitmq;
    let req = CreateDestination {
        kind,
        url: (!rabbitmq).then(|| f.url.trim().to_string()),
        // Sent as typed (an empty one is "required"); the exchange may be "", the default.
        amqp_url: rabbitmq.then(|| f.amqp_url.trim().to_string()),
        exchange: rabbitmq.then(|| f.exchange.trim().to_string()),
        routing_key: DestinationFields::given(&f.routing_key).filter(|_| rabbitmq),
        description: p.description,
        topics: p.topics,
        filter: p.filter,
        headers: p.headers,
        options: Default::default(),
        signature: Some(signature),
        secret: None,
    };
    match s
        .herald
        .create_destination(session.scope(), &session.tenant_id, req)
        .await
    {
        Ok(c) => Ok(see_other(&format!(
            "/portal/destinations/{}?done=created",
            c.destination.id
        ))),
        Err(e) => {
            let (field, msg) = field_error(e)?;
            rejected(&session, None, f, &field, msg)
        }
    }
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    PortalForm(session, f): PortalForm<DestinationFields>,
) -> Result<Response, PortalError> {
    f.destination_kind()?;
    let p = match f.parse() {
        Ok(p) => p,
        Err((field, msg)) => return rejected(&session, Some(id), f, field, msg),
    };
    // The form's target fields; the service refuses them if the destination is of the other
    // type (a stale or forged form).
    let rabbitmq = f.is_rabbitmq();
    let req = UpdateDestination {
        url: (!rabbitmq).then(|| f.url.trim().to_string()),
        amqp_url: DestinationFields::given(&f.amqp_url).filter(|_| rabbitmq),
        exchange: rabbitmq.then(|| f.exchange.trim().to_string()),
        // Empty restores the default, `{topic}`.
        routing_key: rabbitmq.then(|| {
            DestinationFields::given(&f.routing_key).map_or(serde_json::Value::Null, Into::into)
        }),
        description: Some(p.description.map_or(serde_json::Value::Null, Into::into)),
        topics: Some(p.topics),
        filter: Some(p.filter.unwrap_or(serde_json::Value::Null)),
        headers: Some(p.headers),
        options: None,
    };
    match s
        .herald
        .update_destination(session.scope(), &session.tenant_id, &id, req)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/portal/destinations/{id}?done=updated"
        ))),
        Err(e) => {
            let (field, msg) = field_error(e)?;
            rejected(&session, Some(id), f, &field, msg)
        }
    }
}
