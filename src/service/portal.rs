//! The tenant portal's use cases that the other services do not already cover: login links,
//! browser sessions, destination health and test events.
//!
//! A platform asks for a login link (`POST /v1/tenants/{id}/portal-sessions`, or
//! `herald portal-link`) and sends its customer there. Opening the link spends it and starts
//! a session; the session's cookie is a random token. Both tokens are stored only as hashes
//! (like API tokens). Every portal page then calls the ordinary services with
//! `Scope::Tenant(session tenant)`, so isolation is the store's, not the portal's, business.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::tokens::hash_token;
use super::{Herald, PublishRequest, Result, ServiceError};
use crate::domain::health::{DestinationHealth, HEALTH_WINDOW_MS};
use crate::domain::secrets::{self, SecretKind};
use crate::domain::time::Millis;
use crate::store::{LinkState, Published, Scope};

/// Portal settings (`portal_*` in the configuration).
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// How long a login link stays valid (default 15 minutes).
    pub link_ttl: Duration,
    /// How long a browser session lasts after login (default 8 hours).
    pub session_ttl: Duration,
    /// Where "back to the platform" links point: the expired-link page offers it.
    pub return_url: Option<String>,
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            link_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(8 * 3600),
            return_url: None,
        }
    }
}

/// A login link as issued: shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PortalLink {
    /// Open it in a browser to sign in to the tenant's portal; it works once.
    pub url: String,
    #[serde(with = "crate::domain::time::serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Millis,
}

/// A session just opened by a login link.
#[derive(Debug, Clone)]
pub struct PortalSession {
    /// The cookie value (shown only here).
    pub token: String,
    pub tenant_id: String,
    pub expires_at: Millis,
}

/// Why a login link did not open a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this sign-in link has expired")]
    Expired,
    #[error("this sign-in link has already been used")]
    AlreadyUsed,
    #[error("this sign-in link is not valid")]
    Unknown,
}

/// A usable link's tenant, or why the link is no good.
fn link_error(state: LinkState) -> std::result::Result<String, LinkError> {
    match state {
        LinkState::Usable { tenant_id } => Ok(tenant_id),
        LinkState::Expired => Err(LinkError::Expired),
        LinkState::AlreadyUsed => Err(LinkError::AlreadyUsed),
        LinkState::Unknown => Err(LinkError::Unknown),
    }
}

/// The portal's CSRF token for a session: derived from the session token, so it needs no
/// storage, differs per session, and cannot be computed without the (HttpOnly) cookie.
pub fn csrf_token(session_token: &str) -> String {
    hash_token(&format!("herald-portal-csrf:{session_token}"))[..32].to_string()
}

/// Login-link tokens are `hpl_…`, session tokens `hps_…` (`domain::secrets`).
fn portal_token(kind: SecretKind) -> String {
    secrets::generate(kind)
}

impl Herald {
    /// Replaces the portal settings.
    pub fn with_portal(mut self, settings: PortalSettings) -> Self {
        self.portal = std::sync::Arc::new(settings);
        self
    }

    /// Issues a single-use login link to the tenant's portal.
    pub async fn create_portal_link(&self, tenant_id: &str) -> Result<PortalLink> {
        let token = portal_token(SecretKind::PortalLink);
        let now = self.clock.now();
        let expires_at = now + self.portal.link_ttl.as_millis() as Millis;
        self.store
            .insert_portal_link(&hash_token(&token), tenant_id, expires_at, now)
            .await?;
        Ok(PortalLink {
            url: format!(
                "{}/portal/login?token={token}",
                self.inbound.public_url.trim_end_matches('/')
            ),
            expires_at,
        })
    }

    /// Spends a login link and opens a session.
    pub async fn redeem_portal_link(
        &self,
        link_token: &str,
    ) -> Result<std::result::Result<PortalSession, LinkError>> {
        let token = portal_token(SecretKind::PortalSession);
        let now = self.clock.now();
        let expires_at = now + self.portal.session_ttl.as_millis() as Millis;
        let outcome = self
            .store
            .redeem_portal_link(
                &hash_token(link_token),
                &hash_token(&token),
                expires_at,
                now,
            )
            .await?;
        Ok(link_error(outcome).map(|tenant_id| PortalSession {
            token,
            tenant_id,
            expires_at,
        }))
    }

    /// Whether a login link would open a session now, without spending it: the sign-in page
    /// asks before it offers the button, so a dead link says so at once.
    pub async fn check_portal_link(
        &self,
        link_token: &str,
    ) -> Result<std::result::Result<(), LinkError>> {
        let state = self
            .store
            .check_portal_link(&hash_token(link_token), self.clock.now())
            .await?;
        Ok(link_error(state).map(|_tenant| ()))
    }

    /// The tenant a session cookie belongs to, while the session lasts.
    pub async fn portal_session_tenant(&self, session_token: &str) -> Result<Option<String>> {
        Ok(self
            .store
            .find_portal_session(&hash_token(session_token), self.clock.now())
            .await?)
    }

    pub async fn end_portal_session(&self, session_token: &str) -> Result<()> {
        Ok(self
            .store
            .delete_portal_session(&hash_token(session_token))
            .await?)
    }

    /// Success rate over the last 24 hours and the latest outcome of a destination.
    pub async fn destination_health(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        destination_id: &str,
    ) -> Result<DestinationHealth> {
        Self::check_tenant(scope, tenant_id)?;
        let since = self.clock.now() - HEALTH_WINDOW_MS;
        self.store
            .destination_health(tenant_id, destination_id, since)
            .await
            .map_err(ServiceError::from)
    }

    /// Sends a `herald.test` event to one destination, whatever its topics and filter, so a
    /// tenant can check its receiver end to end (signature included).
    pub async fn send_test_event(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        destination_id: &str,
    ) -> Result<Published> {
        let d = self
            .get_destination(scope, tenant_id, destination_id)
            .await?;
        let data = serde_json::json!({
            "message": "This is a test event sent from the Herald portal.",
            "destination_id": d.id,
        });
        let req = PublishRequest {
            tenant_id: tenant_id.to_string(),
            topic: TEST_TOPIC.to_string(),
            data: serde_json::value::to_raw_value(&data).expect("JSON serializes"),
            metadata: None,
            id: None,
            destination_id: Some(d.id),
            reply: None,
        };
        self.publish(scope, req, None).await
    }
}

/// The topic of test events.
pub const TEST_TOPIC: &str = "herald.test";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_are_stable_within_one() {
        assert_eq!(csrf_token("hps_a"), csrf_token("hps_a"));
        assert_ne!(csrf_token("hps_a"), csrf_token("hps_b"));
        assert_eq!(csrf_token("hps_a").len(), 32);
    }

    #[test]
    fn portal_tokens_carry_their_prefix() {
        let t = portal_token(SecretKind::PortalLink);
        assert!(t.starts_with("hpl_") && t.len() == 47, "{t}");
    }
}
