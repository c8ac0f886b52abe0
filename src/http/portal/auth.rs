//! Signing in with a login link, and signing out.

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

/// `GET /portal/login?token=…`: spends the link, sets the session cookie and sends the
/// browser on to the overview (so the token leaves the address bar and the history).
pub async fn login(
    State(s): State<AppState>,
    PortalQuery(p): PortalQuery<LoginParams>,
) -> Result<Response, PortalError> {
    let return_url = s.herald.portal.return_url.clone();
    let token = p
        .token
        .filter(|t| t.starts_with("hpl_") && t.len() < 100)
        .ok_or_else(|| PortalError::Link(LinkError::Unknown, return_url.clone()))?;
    let session = s
        .herald
        .redeem_portal_link(&token)
        .await?
        .map_err(|e| PortalError::Link(e, return_url))?;
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
