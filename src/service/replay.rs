//! Reading one captured callback and replaying it to another URL (`replay_callback` in MCP,
//! `POST /v1/callbacks/{id}/replay`): an agent debugging its own receiver resends what a sender
//! really sent, byte for byte, instead of reconstructing it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Herald, Result, ServiceError};
use crate::domain::validate::Invalid;
use crate::inbound::model::Callback;
use crate::outbound::http::HttpSender;
use crate::store::Scope;

/// A replay waits this long for the target's answer.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(15);

/// Headers that describe the original connection, not the request: the HTTP client sets its own.
const HOP_BY_HOP: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
];

/// What the target answered (also the MCP `replay_callback` result, hence the JSON Schema).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, schemars::JsonSchema)]
pub struct ReplayResult {
    /// The callback replayed (`cb_…`).
    pub callback_id: String,
    /// The method the callback arrived with, and was replayed with.
    pub method: String,
    /// Where it was sent.
    pub target_url: String,
    /// The target answered 2xx.
    pub success: bool,
    /// The HTTP status the target answered; null when it could not be reached.
    pub status_code: Option<u16>,
    /// How long the replay took, in milliseconds.
    pub duration_ms: u64,
    /// Why the replay failed (connection refused, blocked address, HTTP 500, …).
    pub error: Option<String>,
    /// The first 16 KiB of the target's answer.
    pub response_body: Option<String>,
}

impl Herald {
    pub async fn get_callback(&self, scope: Scope<'_>, id: &str) -> Result<Callback> {
        self.store
            .get_callback(scope, id)
            .await?
            .ok_or(ServiceError::NotFound("callback"))
    }

    /// Sends the captured body with its headers to `target_url`, with the method it arrived
    /// with (a `PUT` stays a `PUT`), through the same SSRF guard as deliveries. Headers whose value was redacted at capture (the endpoint's own
    /// credential) are left out; `x-herald-replay-of` names the original.
    pub async fn replay_callback(
        &self,
        scope: Scope<'_>,
        id: &str,
        target_url: &str,
    ) -> Result<ReplayResult> {
        let url = url::Url::parse(target_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| Invalid::new("target_url", "must be an absolute http(s) URL"))?;
        let callback = self.get_callback(scope, id).await?;
        let mut headers: Vec<(String, String)> = callback
            .headers
            .iter()
            .filter(|(k, v)| !HOP_BY_HOP.contains(&k.as_str()) && v.as_str() != "[redacted]")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.push(("x-herald-replay-of".into(), callback.id.clone()));
        // Stored from a request hyper parsed, so it is a valid method.
        let method = reqwest::Method::from_bytes(callback.method.as_bytes()).map_err(|_| {
            ServiceError::Conflict(format!("cannot replay a {} request", callback.method))
        })?;
        let sent = HttpSender::new(self.policy.clone())
            .send(
                method,
                url.as_str(),
                &headers,
                callback.body,
                REPLAY_TIMEOUT,
            )
            .await;
        Ok(ReplayResult {
            callback_id: callback.id,
            method: callback.method,
            target_url: url.to_string(),
            success: sent.is_success(),
            status_code: sent.status_code,
            duration_ms: sent.duration_ms,
            error: sent.error,
            response_body: sent.response_body,
        })
    }
}
