//! The tenant portal (docs/portal.md): server-rendered HTML under `/portal/…`, plain forms, one
//! stylesheet served from the binary, and one script: the sign-in page's.
//!
//! Access starts with a single-use link (`/portal/login?token=…`, see
//! [`crate::service::portal`]). Opening it shows a sign-in page whose form (submitted at once
//! by its script) spends the link and sets the session cookie. Every page reads the session
//! with the [`Session`] extractor and calls the ordinary services with
//! `Scope::Tenant(session tenant)`: another tenant's ids are simply not found. Every form
//! posts a CSRF token, checked by [`PortalForm`] before the handler runs, so a forged POST
//! writes nothing.

mod auth;
mod callbacks;
mod deliveries;
mod destinations;
mod event_types;
mod views;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::service::ServiceError;
use crate::service::portal::{LinkError, csrf_token};
use crate::store::Scope;

/// The session cookie. Scoped to `/portal`, so the API never sees it.
pub const COOKIE: &str = "herald_portal";
/// The hidden field every form carries.
pub const CSRF_FIELD: &str = "csrf";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal", get(destinations::overview))
        .route("/portal/", get(destinations::overview))
        .route("/portal/portal.css", get(stylesheet))
        .route("/portal/login", get(auth::login_page).post(auth::login))
        .route("/portal/login.js", get(login_script))
        .route("/portal/logout", post(auth::logout))
        .route("/portal/destinations", post(destinations::create))
        .route("/portal/destinations/new", get(destinations::new_form))
        .route(
            "/portal/destinations/{id}",
            get(destinations::show).post(destinations::update),
        )
        .route(
            "/portal/destinations/{id}/edit",
            get(destinations::edit_form),
        )
        .route(
            "/portal/destinations/{id}/enable",
            post(destinations::enable),
        )
        .route(
            "/portal/destinations/{id}/disable",
            post(destinations::disable),
        )
        .route(
            "/portal/destinations/{id}/reveal-secret",
            post(destinations::reveal_secret),
        )
        .route(
            "/portal/destinations/{id}/rotate-secret",
            post(destinations::rotate_secret),
        )
        .route(
            "/portal/destinations/{id}/test",
            post(destinations::send_test),
        )
        .route(
            "/portal/destinations/{id}/recover",
            post(destinations::recover),
        )
        .route("/portal/deliveries", get(deliveries::list))
        .route("/portal/deliveries/{id}", get(deliveries::show))
        .route("/portal/deliveries/{id}/retry", post(deliveries::retry))
        .route("/portal/callbacks", get(callbacks::list))
        .route("/portal/event-types", get(event_types::list))
        .route("/portal/callbacks/{id}", get(callbacks::show))
        // Unknown portal pages get the portal's 404 page (a fallback would take over the
        // whole application's unknown paths once this router is merged).
        .route(
            "/portal/{*rest}",
            get(|| async { PortalError::NotFound("page") }),
        )
        .layer(axum::middleware::map_response(security_headers))
}

/// The one stylesheet, compiled in: the portal fetches nothing from anywhere else.
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../templates/portal/portal.css"),
    )
        .into_response()
}

/// The sign-in page's script (see `templates/portal/login.js`), compiled in like the stylesheet.
async fn login_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../templates/portal/login.js"),
    )
        .into_response()
}

/// Headers on every portal answer: nothing may frame it, load from elsewhere, sniff types,
/// leak the URL (which can carry a login token) in `Referer`, or cache a tenant's data.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A signed-in tenant: who, and the CSRF token its forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant_id: String,
    pub csrf: String,
    /// The cookie value (for sign-out).
    token: String,
}

impl Session {
    pub fn scope(&self) -> Scope<'_> {
        Scope::Tenant(&self.tenant_id)
    }
}

fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, PortalError> {
        let token = cookie_value(parts, COOKIE)
            .filter(|t| t.starts_with("hps_") && t.len() < 100)
            .ok_or_else(|| PortalError::signed_out(s))?
            .to_string();
        let tenant_id = s
            .herald
            .portal_session_tenant(&token)
            .await?
            .ok_or_else(|| PortalError::signed_out(s))?;
        Ok(Session {
            csrf: csrf_token(&token),
            tenant_id,
            token,
        })
    }
}

/// A form POST from a signed-in tenant, its CSRF token checked, its fields parsed into `T`.
pub struct PortalForm<T>(pub Session, pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for PortalForm<T> {
    type Rejection = PortalError;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, PortalError> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, s).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), s)
            .await
            .map_err(|_| PortalError::BadForm("the form could not be read".into()))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| PortalError::BadForm("the form is not URL-encoded".into()))?;
        let sent = pairs
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(sent.ct_eq(session.csrf.as_bytes())) {
            return Err(PortalError::Csrf);
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PortalError::BadForm(format!("the form is incomplete: {e}")))?;
        Ok(PortalForm(session, form))
    }
}

/// A page's query string parsed into `T`; a malformed one gets the portal's 400 page.
pub struct PortalQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for PortalQuery<T> {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PortalError> {
        let query = parts.uri.query().unwrap_or_default().as_bytes();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query));
        serde_path_to_error::deserialize(de)
            .map(PortalQuery)
            .map_err(|e| {
                PortalError::BadForm(format!(
                    "The address is malformed: `{}` {}",
                    e.path(),
                    e.inner()
                ))
            })
    }
}

/// A form whose only field is the CSRF token (a button).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

/// What every page's layout needs: who is signed in, the CSRF token for its forms, which
/// navigation item is current, and a one-line notice after an action.
pub struct Chrome {
    pub tenant_id: String,
    pub csrf: String,
    pub nav: &'static str,
    pub notice: Option<String>,
}

impl Chrome {
    pub fn new(session: &Session, nav: &'static str) -> Self {
        Chrome {
            tenant_id: session.tenant_id.clone(),
            csrf: session.csrf.clone(),
            nav,
            notice: None,
        }
    }

    /// The notice for a `?done=` code after a redirect. Only known codes show anything: the
    /// page never echoes text from the URL.
    pub fn with_done(mut self, done: Option<&str>) -> Self {
        self.notice = done.and_then(views::notice).map(str::to_string);
        self
    }
}

/// Renders a page with a status.
pub fn render(status: StatusCode, page: &impl Template) -> Result<Response, PortalError> {
    let html = page
        .render()
        .map_err(|e| PortalError::Internal(e.to_string()))?;
    Ok((status, Html(html)).into_response())
}

/// 303 See Other after a successful POST (the browser then GETs the page: no re-posting on
/// reload).
pub fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// With the platform's return URL, when configured.
    #[error("your portal session has ended")]
    SignedOut(Option<String>),
    #[error("{0}")]
    Link(LinkError, Option<String>),
    #[error("this form has expired or did not come from the portal")]
    Csrf,
    #[error("{0}")]
    BadForm(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PortalError {
    pub fn signed_out(s: &AppState) -> Self {
        PortalError::SignedOut(s.herald.portal.return_url.clone())
    }
}

impl From<ServiceError> for PortalError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => PortalError::NotFound(what),
            ServiceError::Conflict(msg) => PortalError::Conflict(msg),
            e @ (ServiceError::Malformed(_)
            | ServiceError::Invalid(_)
            | ServiceError::Refused { .. }
            | ServiceError::SchemaMismatch { .. }
            | ServiceError::TooLarge { .. }) => PortalError::Invalid(e.to_string()),
            ServiceError::Store(e) => PortalError::Internal(e.to_string()),
        }
    }
}

/// The page every error shows: what happened, and where to go from there.
#[derive(Template)]
#[template(path = "portal/message.html")]
struct MessagePage {
    title: String,
    message: String,
    /// Shown as a button back to the platform (`portal_return_url`).
    return_url: Option<String>,
    /// Whether a "back to the portal" link makes sense (the visitor is signed in).
    signed_in: bool,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, title, signed_in) = match &self {
            PortalError::SignedOut(_) => (StatusCode::UNAUTHORIZED, "Signed out", false),
            PortalError::Link(LinkError::Unknown, _) => {
                (StatusCode::NOT_FOUND, "Sign-in link not valid", false)
            }
            PortalError::Link(..) => (StatusCode::GONE, "Sign-in link no longer valid", false),
            PortalError::Csrf => (StatusCode::FORBIDDEN, "Form expired", true),
            PortalError::BadForm(_) => (StatusCode::BAD_REQUEST, "Bad form", true),
            PortalError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found", true),
            PortalError::Conflict(_) => (StatusCode::CONFLICT, "Not possible right now", true),
            PortalError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid input", true),
            PortalError::Internal(e) => {
                tracing::error!(error = %e, "portal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    true,
                )
            }
        };
        let message = match &self {
            PortalError::SignedOut(_) => {
                "Your portal session has ended or was never started. Open the portal again from \
                 your platform's dashboard."
                    .to_string()
            }
            PortalError::Link(..) => format!(
                "{}. Sign-in links work once and only for a few minutes: ask your platform's \
                 dashboard for a new one.",
                capitalize(&self.to_string())
            ),
            PortalError::Csrf => "This form has expired or did not come from the portal, so \
                                  nothing was changed. Go back, reload the page and try again."
                .to_string(),
            PortalError::Internal(_) => {
                "An internal error occurred; it has been logged.".to_string()
            }
            other => capitalize(&other.to_string()),
        };
        let page = MessagePage {
            title: title.to_string(),
            message,
            return_url: match self {
                PortalError::SignedOut(u) | PortalError::Link(_, u) => u,
                _ => None,
            },
            signed_in,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, title).into_response(),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
