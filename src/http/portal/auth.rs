//! Signing in with a login link, and signing out.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{
    COOKIE, MessagePage, NoFields, PortalError, PortalForm, PortalQuery, render, see_other,
};
use crate::http::AppState;
use crate::service::portal::LinkError;

#[derive(Debug, Deserialize)]
pub struct LoginParams {
    #[serde(default)]
    token: Option<String>,
}

/// `Secure` when the portal is served over https: the cookie then never travels in clear.
fn cookie(s: &AppState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if s.herald.inbound.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/portal; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie values are ASCII")
}

/// A well-formed login token, or the "not valid" page.
fn login_token(s: &AppState, token: Option<String>) -> Result<String, PortalError> {
    token
        .filter(|t| t.starts_with("hpl_") && t.len() < 100)
        .ok_or_else(|| PortalError::Link(LinkError::Unknown, s.herald.portal.return_url.clone()))
}

/// The sign-in page: a form that carries the link's token.
#[derive(Template)]
#[template(path = "portal/login.html")]
struct LoginPage {
    token: String,
}

/// `GET /portal/login?token=…`: the page behind a sign-in link. Opening it spends nothing:
/// chat and mail apps fetch a link to preview it, and a single-use link spent by a preview
/// would greet its tenant with "already used". A dead link says why at once.
pub async fn login_page(
    State(s): State<AppState>,
    PortalQuery(p): PortalQuery<LoginParams>,
) -> Result<Response, PortalError> {
    let token = login_token(&s, p.token)?;
    if let Err(e) = s.herald.check_portal_link(&token).await? {
        return Err(PortalError::Link(e, s.herald.portal.return_url.clone()));
    }
    render(StatusCode::OK, &LoginPage { token })
}

/// `POST /portal/login` (form field `token`): spends the link, sets the session cookie and
/// sends the browser on to the overview.
///
/// There is no CSRF token to check (there is no session yet). A forged POST could only sign a
/// browser in to the forger's own tenant, as sending someone the link itself would.
pub async fn login(State(s): State<AppState>, body: Bytes) -> Result<Response, PortalError> {
    let p: LoginParams = serde_urlencoded::from_bytes(&body)
        .map_err(|_| PortalError::BadForm("the form is not URL-encoded".into()))?;
    let token = login_token(&s, p.token)?;
    let session = s
        .herald
        .redeem_portal_link(&token)
        .await?
        .map_err(|e| PortalError::Link(e, s.herald.portal.return_url.clone()))?;
    let mut resp = see_other("/portal");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&s, &session.token, s.herald.portal.session_ttl.as_secs()),
    );
    Ok(resp)
}

/// `POST /portal/logout`: ends the session here and in the store.
pub async fn logout(
    State(s): State<AppState>,
    PortalForm(session, NoFields {}): PortalForm<NoFields>,
) -> Result<Response, PortalError> {
    s.herald.end_portal_session(&session.token).await?;
    let page = MessagePage {
        title: "Signed out".into(),
        message: "You have signed out of the portal.".into(),
        return_url: s.herald.portal.return_url.clone(),
        signed_in: false,
    };
    let mut resp = render(StatusCode::OK, &page)?;
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&s, "", 0));
    Ok(resp.into_response())
}
