//! Inbound use cases (docs/inbound.md, docs/waiting.md): manage callback endpoints, ingest what arrives at them, and let
//! agents wait, stream, poll and acknowledge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Herald, Result, ServiceError, page_limit};
use crate::domain::ids::{Kind, new_id};
use crate::domain::model::Page;
use crate::domain::secrets::{self, SecretKind};
use crate::domain::signature::{self, Accept};
use crate::domain::validate::{self, Invalid};
use crate::inbound::model::{
    Callback, CallbackEndpoint, CallbackStatus, CallbackView, EndpointView, Ingested,
};
use crate::inbound::verify::{self, Encoding, HmacAlgorithm, Scheme, Verification, VerifyError};
use crate::store::{CallbackQuery, Scope, StoreError};

/// Inbound settings, from [`crate::config::Config::inbound_settings`].
#[derive(Debug, Clone)]
pub struct InboundSettings {
    /// Base of every callback URL (`{public_url}/in/{slug}`).
    pub public_url: String,
    /// Largest captured body; larger requests are answered 413 and not stored.
    pub max_body_bytes: usize,
    /// Per-endpoint ingest rate (requests per second; 0: unlimited) and burst.
    pub rate_limit_per_s: u32,
    pub rate_limit_burst: u32,
    /// A wait without `timeout_ms` lasts this long...
    pub default_wait: Duration,
    /// ...and no wait lasts longer (proxies and clients commonly cut idle requests at 60 s).
    pub max_wait: Duration,
    /// An MCP wait sends a progress notification this often (when the client asked for them).
    pub progress_every: Duration,
}

impl Default for InboundSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            rate_limit_per_s: 50,
            rate_limit_burst: 100,
            default_wait: Duration::from_secs(30),
            max_wait: Duration::from_secs(55),
            progress_every: Duration::from_secs(10),
        }
    }
}

/// The longest TTL an endpoint or reply channel may ask for: one year.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// A reply channel's TTL when the publisher gives none: one day.
pub const DEFAULT_REPLY_TTL_SECS: u64 = 24 * 3600;
const MAX_LABEL: usize = 200;
const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_SECRET: usize = 512;

/// 192 random bits, base64url: the slug is the capability, so it must not be guessable.
pub fn new_slug() -> String {
    secrets::generate(SecretKind::CallbackSlug)
}

/// A new callback endpoint: the REST body of `POST /v1/callback-endpoints`, and the arguments
/// of the MCP `create_callback_endpoint` tool.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCallbackEndpoint {
    /// The owning tenant (admin token only); omitted: the platform's own endpoint, or the
    /// caller's tenant for a tenant token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// A note for humans, e.g. the job this URL was handed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How Herald checks what arrives; default `{"scheme": "none"}` (the unguessable URL is
    /// the only protection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationRequest>,
    /// After this many seconds the URL answers 410. Omitted: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Free-form JSON object kept with the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub metadata: Option<Value>,
}

/// How a callback endpoint verifies what arrives: `{scheme, secret?, token?, header?,
/// algorithm?, encoding?, prefix?}` (docs/inbound.md). A secret or token left out is
/// generated and returned once.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationRequest {
    /// How Herald checks what arrives.
    pub scheme: Scheme,
    /// The signing secret (signed schemes); generated when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `standard_webhooks` only, instead of a secret: the sender's ed25519 public key
    /// (`whpk_` + base64 of 32 bytes), to verify its `v1a` signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^whpk_[A-Za-z0-9+/]{43}=$")]
    pub public_key: Option<String>,
    /// The expected token (`token` and `a2a`); generated when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `hmac` only: the header carrying the MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac` only: the digest, `sha256` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// `hmac` only: how the header encodes the MAC, `hex` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `hmac` only: text before the MAC in the header, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A new endpoint: its view plus the secret or token, shown only this once.
#[derive(Debug, Serialize, ToSchema, schemars::JsonSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// The signing secret (signed schemes), shown only this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The token (`token` and `a2a`), shown only this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitStatus {
    /// A callback newer than `after` is in `callback`.
    Received,
    /// None arrived before the timeout.
    Pending,
}

/// `{status: "received", callback, cursor}` or, at the timeout, `{status: "pending", cursor}`.
/// Either way, wait again with `after=cursor`.
#[derive(Debug, Serialize, ToSchema, schemars::JsonSchema)]
pub struct WaitResponse {
    /// `received` with the callback, or `pending` at the timeout.
    pub status: WaitStatus,
    /// The callback, when one was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackView>,
    /// Wait again with `after` = this for the next one.
    pub cursor: i64,
}

impl WaitResponse {
    /// The answer to `w`; with `raw_body`, the callback carries its exact bytes too.
    pub fn new(w: WaitOutcome, raw_body: bool) -> Self {
        match w {
            WaitOutcome::Received { callback, cursor } => WaitResponse {
                status: WaitStatus::Received,
                callback: Some(CallbackView::new(&callback, raw_body)),
                cursor,
            },
            WaitOutcome::Pending { cursor } => WaitResponse {
                status: WaitStatus::Pending,
                callback: None,
                cursor,
            },
        }
    }
}

/// A request that arrived at `/in/{slug}`, as the HTTP layer read it.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    pub slug: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// In arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote_addr: Option<String>,
}

/// What to answer the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Stored {
        id: String,
        cursor: i64,
    },
    Duplicate {
        original_id: String,
    },
    /// Slack's `url_verification` handshake: echo the challenge; nothing is stored.
    SlackChallenge(String),
}

/// Why ingest refused a request. Everything except `Store` is the sender's problem (4xx).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no callback endpoint at this URL")]
    NotFound,
    #[error("this callback endpoint has expired")]
    Gone,
    #[error("the `{0}` scheme accepts POST only")]
    MethodNotAllowed(&'static str),
    #[error("too many requests to this callback endpoint")]
    RateLimited,
    #[error("verification failed: {0}")]
    Rejected(VerifyError),
    #[error(transparent)]
    Store(StoreError),
}

/// The answer to a wait (docs/waiting.md).
#[derive(Debug, Clone)]
pub enum WaitOutcome {
    /// `cursor` is the callback's: wait again with `after=cursor` for the next one.
    Received {
        callback: Box<Callback>,
        cursor: i64,
    },
    /// Nothing newer than `cursor` (the caller's `after`) arrived before the timeout.
    Pending { cursor: i64 },
}

/// Which captured requests `…/events` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListStatus {
    /// Accepted callbacks in cursor order; `after` is a cursor.
    #[default]
    Accepted,
    /// Rejected requests, newest first; `after` is a callback id. For debugging senders.
    Rejected,
}

/// Signed schemes only make sense for a request with a body, so they refuse other methods;
/// `none` and `token` capture whatever arrives (a GET redirect back from an OAuth-like flow,
/// a PUT from a storage service).
fn post_only(v: &Verification) -> Option<&'static str> {
    match v {
        Verification::None | Verification::Token { .. } => None,
        other => Some(crate::inbound::model::scheme_name(other)),
    }
}

impl Herald {
    pub fn callback_url(&self, slug: &str) -> String {
        crate::inbound::model::callback_url(&self.inbound.public_url, slug)
    }

    pub fn endpoint_view(&self, e: &CallbackEndpoint) -> EndpointView {
        EndpointView::new(e, &self.inbound.public_url)
    }

    pub async fn create_callback_endpoint(
        &self,
        scope: Scope<'_>,
        req: CreateCallbackEndpoint,
    ) -> Result<CreatedEndpoint> {
        let tenant_id = match (scope, req.tenant_id) {
            (Scope::Tenant(own), None) => Some(own.to_string()),
            (scope, Some(t)) => {
                validate::tenant_id("tenant_id", &t)?;
                Self::check_tenant(scope, &t)?;
                Some(t)
            }
            (Scope::Admin, None) => None,
        };
        if let Some(l) = &req.label
            && l.chars().count() > MAX_LABEL
        {
            return Err(
                Invalid::new("label", format!("must be at most {MAX_LABEL} characters")).into(),
            );
        }
        let metadata = req
            .metadata
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !metadata.is_object() {
            return Err(Invalid::new("metadata", "must be an object").into());
        }
        if metadata.to_string().len() > MAX_METADATA_BYTES {
            return Err(Invalid::new(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes"),
            )
            .into());
        }
        let now = self.clock.now();
        let expires_at = match req.ttl_seconds {
            None => None,
            Some(t) if t == 0 || t > MAX_TTL_SECS => {
                return Err(
                    Invalid::new("ttl_seconds", format!("must be 1-{MAX_TTL_SECS}")).into(),
                );
            }
            Some(t) => Some(now + (t as i64) * 1000),
        };
        let (verification, secret, token) =
            build_verification(req.verification.unwrap_or_else(|| VerificationRequest {
                scheme: Scheme::None,
                ..Default::default()
            }))?;
        let endpoint = CallbackEndpoint {
            id: new_id(Kind::CallbackEndpoint),
            slug: new_slug(),
            tenant_id,
            label: req.label,
            verification,
            metadata,
            event_id: None,
            last_cursor: 0,
            received: 0,
            duplicates: 0,
            rejected: 0,
            expires_at,
            created_at: now,
        };
        self.store.insert_callback_endpoint(&endpoint).await?;
        Ok(CreatedEndpoint {
            endpoint: self.endpoint_view(&endpoint),
            secret,
            token,
        })
    }

    /// By id or by slug: agents (and the MCP tools) often hold only the URL they handed out.
    /// A slug is looked up unscoped, so the scope is checked here.
    pub async fn get_callback_endpoint(
        &self,
        scope: Scope<'_>,
        id_or_slug: &str,
    ) -> Result<CallbackEndpoint> {
        if id_or_slug.starts_with(Kind::CallbackEndpoint.prefix())
            && let Some(e) = self.store.get_callback_endpoint(scope, id_or_slug).await?
        {
            return Ok(e);
        }
        // Slugs are random base64url, so one may begin with `cbe_`: an id miss falls through.
        self.store
            .find_callback_endpoint(id_or_slug)
            .await?
            .filter(|e| scope.tenant().is_none() || e.tenant_id.as_deref() == scope.tenant())
            .ok_or(ServiceError::NotFound("callback endpoint"))
    }

    pub async fn list_callback_endpoints(
        &self,
        scope: Scope<'_>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<EndpointView>> {
        let limit = page_limit(limit);
        let rows = self
            .store
            .list_callback_endpoints(scope, after, limit + 1)
            .await?;
        let views = rows.iter().map(|e| self.endpoint_view(e)).collect();
        Ok(Page::from_rows(
            views,
            limit as usize,
            |e: &EndpointView| e.id.clone(),
        ))
    }

    pub async fn delete_callback_endpoint(&self, scope: Scope<'_>, id: &str) -> Result<()> {
        if self.store.delete_callback_endpoint(scope, id).await? {
            self.endpoints.remove_id(id);
            Ok(())
        } else {
            Err(ServiceError::NotFound("callback endpoint"))
        }
    }

    /// Captures one request. The body limit is the HTTP layer's job (it must stop reading).
    pub async fn ingest(&self, req: IncomingRequest) -> Result<IngestOutcome, IngestError> {
        let endpoint = match self.endpoints.get(&req.slug) {
            Some(e) => e,
            None => {
                let e = self
                    .store
                    .find_callback_endpoint(&req.slug)
                    .await
                    .map_err(IngestError::Store)?
                    .ok_or(IngestError::NotFound)?;
                let e = Arc::new(e);
                self.endpoints.insert(e.clone());
                e
            }
        };
        let now = self.clock.now();
        if endpoint.is_expired(now) {
            return Err(IngestError::Gone);
        }
        if let Some(scheme) = post_only(&endpoint.verification)
            && req.method != "POST"
        {
            return Err(IngestError::MethodNotAllowed(scheme));
        }
        if !self.rate_limiter.allow(&endpoint.id) {
            crate::metrics::metrics().inbound("rate_limited");
            return Err(IngestError::RateLimited);
        }
        let verdict = verify::verify(
            &endpoint.verification,
            &verify::Request {
                headers: &req.headers,
                query: req.query.as_deref(),
                body: &req.body,
                now_unix: now.div_euclid(1000),
            },
        );
        if let Ok(v) = &verdict
            && let Some(challenge) = &v.slack_challenge
        {
            return Ok(IngestOutcome::SlackChallenge(challenge.clone()));
        }
        let secret_bearing = matches!(
            endpoint.verification,
            Verification::Token { .. } | Verification::A2a { .. }
        );
        let mut callback = Callback {
            id: new_id(Kind::Callback),
            endpoint_id: endpoint.id.clone(),
            tenant_id: endpoint.tenant_id.clone(),
            cursor: None,
            content_type: header(&req.headers, "content-type").map(str::to_string),
            method: req.method,
            path: req.path,
            query: req.query.map(|q| {
                if secret_bearing {
                    verify::redact_query_param(&q, "token")
                } else {
                    q
                }
            }),
            headers: stored_headers(&req.headers, secret_bearing),
            body: req.body,
            remote_addr: req.remote_addr,
            received_at: now,
            verified: false,
            status: CallbackStatus::Accepted,
            reject_reason: None,
            dedupe_key: None,
            a2a: None,
            acked_at: None,
        };
        let rejection = match verdict {
            Ok(v) => {
                callback.verified = !matches!(endpoint.verification, Verification::None);
                callback.dedupe_key = v.dedupe_key;
                callback.a2a = v.a2a;
                None
            }
            Err(e) => {
                callback.status = CallbackStatus::Rejected;
                callback.reject_reason = Some(format!("{}: {e}", e.code()));
                callback.dedupe_key = verify::dedupe_key(&req.headers, &callback.body);
                Some(e)
            }
        };
        let callback_id = callback.id.clone();
        let stored = self.ingester.commit(callback).await.map_err(|e| match e {
            StoreError::NotFound(_) => IngestError::NotFound,
            other => IngestError::Store(other),
        })?;
        match (stored, rejection) {
            (Ingested::Stored { cursor }, _) => {
                crate::metrics::metrics().inbound("received");
                self.waiters.notify(&endpoint.id);
                Ok(IngestOutcome::Stored {
                    id: callback_id,
                    cursor,
                })
            }
            (Ingested::Duplicate { original_id }, _) => {
                crate::metrics::metrics().inbound("duplicate");
                Ok(IngestOutcome::Duplicate { original_id })
            }
            (Ingested::Rejected, Some(e)) => {
                crate::metrics::metrics().inbound("rejected");
                Err(IngestError::Rejected(e))
            }
            (Ingested::Rejected, None) => Err(IngestError::Store(StoreError::Corrupt(
                "an accepted callback was stored as rejected".into(),
            ))),
        }
    }

    /// Waits on an endpoint visible in `scope`.
    pub async fn wait(
        &self,
        scope: Scope<'_>,
        endpoint_id: &str,
        after: Option<i64>,
        timeout_ms: Option<u64>,
    ) -> Result<WaitOutcome> {
        let endpoint = self.get_callback_endpoint(scope, endpoint_id).await?;
        self.wait_on(&endpoint.id, after, timeout_ms).await
    }

    /// Waits for an answer on an event's reply channel.
    pub async fn wait_for_reply(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        after: Option<i64>,
        timeout_ms: Option<u64>,
    ) -> Result<WaitOutcome> {
        let endpoint = self.reply_channel(scope, event_id).await?;
        self.wait_on(&endpoint.id, after, timeout_ms).await
    }

    pub async fn reply_channel(
        &self,
        scope: Scope<'_>,
        event_id: &str,
    ) -> Result<CallbackEndpoint> {
        self.store
            .reply_endpoint_of(scope, event_id)
            .await?
            .ok_or(ServiceError::NotFound("reply channel"))
    }

    /// The oldest accepted callback with a cursor greater than `after`, now or as soon as one
    /// arrives, or `Pending` at the timeout.
    ///
    /// Subscribing before each store read is what makes this race-free: a callback committed
    /// after the read but before the sleep has already bumped the subscription, so the sleep
    /// ends at once and the next read finds it.
    pub async fn wait_on(
        &self,
        endpoint_id: &str,
        after: Option<i64>,
        timeout_ms: Option<u64>,
    ) -> Result<WaitOutcome> {
        let after = after.unwrap_or(0);
        if after < 0 {
            return Err(Invalid::new("after", "must be a cursor (0 or more)").into());
        }
        let timeout = timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.inbound.default_wait)
            .min(self.inbound.max_wait);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.waiters.subscribe(endpoint_id);
        let mut stopping = self.stopping.subscribe();
        loop {
            if let Some(callback) = self
                .store
                .callbacks_after(endpoint_id, after, 1)
                .await?
                .pop()
            {
                let cursor = callback.cursor.unwrap_or(after);
                return Ok(WaitOutcome::Received {
                    callback: Box::new(callback),
                    cursor,
                });
            }
            let woken = tokio::select! {
                r = tokio::time::timeout_at(deadline, rx.changed()) => r,
                _ = stopping.wait_for(|stop| *stop) => {
                    return Ok(WaitOutcome::Pending { cursor: after });
                }
            };
            match woken {
                Ok(Ok(())) => continue,
                // The channel closed (cannot happen while we hold a receiver of a live map
                // entry) or the time is up: one last read decides.
                Ok(Err(_)) | Err(_) => {
                    if let Some(callback) = self
                        .store
                        .callbacks_after(endpoint_id, after, 1)
                        .await?
                        .pop()
                    {
                        let cursor = callback.cursor.unwrap_or(after);
                        return Ok(WaitOutcome::Received {
                            callback: Box::new(callback),
                            cursor,
                        });
                    }
                    return Ok(WaitOutcome::Pending { cursor: after });
                }
            }
        }
    }

    /// Every accepted callback after `after`, then each new one as it arrives, forever (the
    /// SSE handler ends it when the client goes away).
    pub fn callback_stream(
        &self,
        endpoint_id: String,
        after: i64,
    ) -> impl Stream<Item = Result<Callback>> + Send + use<> {
        struct State {
            herald: Herald,
            endpoint_id: String,
            cursor: i64,
            rx: tokio::sync::watch::Receiver<u64>,
            stopping: tokio::sync::watch::Receiver<bool>,
            buffered: std::collections::VecDeque<Callback>,
        }
        let rx = self.waiters.subscribe(&endpoint_id);
        let state = State {
            herald: self.clone(),
            endpoint_id,
            cursor: after,
            rx,
            stopping: self.stopping.subscribe(),
            buffered: Default::default(),
        };
        futures_util::stream::unfold(Some(state), |state| async move {
            let mut s = state?;
            loop {
                if let Some(c) = s.buffered.pop_front() {
                    s.cursor = c.cursor.unwrap_or(s.cursor);
                    return Some((Ok(c), Some(s)));
                }
                // Mark the current version seen before reading: anything stored after this
                // read wakes the `changed()` below.
                s.rx.borrow_and_update();
                match s
                    .herald
                    .store
                    .callbacks_after(&s.endpoint_id, s.cursor, 100)
                    .await
                {
                    Ok(rows) if !rows.is_empty() => s.buffered.extend(rows),
                    Ok(_) => {
                        let State { rx, stopping, .. } = &mut s;
                        tokio::select! {
                            changed = rx.changed() => if changed.is_err() { return None },
                            _ = stopping.wait_for(|stop| *stop) => return None,
                        }
                    }
                    Err(e) => return Some((Err(e.into()), None)),
                }
            }
        })
    }

    /// `…/events`: an endpoint's callbacks, a page at a time.
    pub async fn list_endpoint_callbacks(
        &self,
        scope: Scope<'_>,
        endpoint_id: &str,
        status: ListStatus,
        after: Option<&str>,
        limit: Option<u32>,
        raw_body: bool,
    ) -> Result<Page<CallbackView>> {
        let endpoint = self.get_callback_endpoint(scope, endpoint_id).await?;
        let limit = page_limit(limit);
        match status {
            ListStatus::Accepted => {
                let after = match after {
                    None => 0,
                    Some(a) => a
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c >= 0)
                        .ok_or_else(|| Invalid::new("after", "must be a cursor (0 or more)"))?,
                };
                let rows = self
                    .store
                    .callbacks_after(&endpoint.id, after, limit + 1)
                    .await?;
                let views = rows
                    .iter()
                    .map(|c| CallbackView::new(c, raw_body))
                    .collect();
                Ok(Page::from_rows(
                    views,
                    limit as usize,
                    |c: &CallbackView| c.cursor.unwrap_or_default().to_string(),
                ))
            }
            ListStatus::Rejected => {
                let rows = self
                    .store
                    .rejected_callbacks(&endpoint.id, after, limit + 1)
                    .await?;
                let views = rows
                    .iter()
                    .map(|c| CallbackView::new(c, raw_body))
                    .collect();
                Ok(Page::from_rows(
                    views,
                    limit as usize,
                    |c: &CallbackView| c.id.clone(),
                ))
            }
        }
    }

    /// `GET /v1/callbacks`: accepted callbacks across the caller's endpoints, oldest first.
    pub async fn poll_callbacks(
        &self,
        scope: Scope<'_>,
        acked: Option<bool>,
        endpoint_id: Option<String>,
        after: Option<String>,
        limit: Option<u32>,
        raw_body: bool,
    ) -> Result<Page<CallbackView>> {
        let limit = page_limit(limit);
        let rows = self
            .store
            .list_callbacks(&CallbackQuery {
                tenant_id: scope.tenant().map(str::to_string),
                endpoint_id,
                acked,
                after,
                limit: limit + 1,
            })
            .await?;
        let views = rows
            .iter()
            .map(|c| CallbackView::new(c, raw_body))
            .collect();
        Ok(Page::from_rows(
            views,
            limit as usize,
            |c: &CallbackView| c.id.clone(),
        ))
    }

    pub async fn ack_callback(&self, scope: Scope<'_>, id: &str) -> Result<Callback> {
        self.store
            .ack_callback(scope, id, self.clock.now())
            .await?
            .ok_or(ServiceError::NotFound("callback"))
    }
}

/// Checks a request against a scheme and secret with the verifiers ingest uses (the MCP
/// `verify_signature` tool): an agent can test what a sender signs before pointing it at Herald.
/// The outer error is bad input (unknown scheme, malformed secret); the inner one the verdict.
pub fn check_signature(
    req: VerificationRequest,
    headers: &[(String, String)],
    body: &[u8],
    now_unix: i64,
) -> Result<Result<(), VerifyError>> {
    if req.scheme != Scheme::None
        && req.secret.is_none()
        && req.public_key.is_none()
        && req.token.is_none()
    {
        // `build_verification` would generate one, which can only ever mismatch.
        return Err(Invalid::new("secret", "is required to verify a signature").into());
    }
    let (v, _, _) = build_verification(req)?;
    let request = verify::Request {
        headers,
        query: None,
        body,
        now_unix,
    };
    Ok(verify::verify(&v, &request).map(|_| ()))
}

/// Turns the request into a `Verification`, generating the secret or token when omitted.
/// Returns it with the generated-or-given secret and token to show once.
fn build_verification(
    r: VerificationRequest,
) -> Result<(Verification, Option<String>, Option<String>)> {
    let only_for_hmac = [
        ("verification.header", r.header.is_some()),
        ("verification.algorithm", r.algorithm.is_some()),
        ("verification.encoding", r.encoding.is_some()),
        ("verification.prefix", r.prefix.is_some()),
    ];
    if r.scheme != Scheme::Hmac
        && let Some((field, _)) = only_for_hmac.iter().find(|(_, set)| *set)
    {
        return Err(Invalid::new(*field, "is only used by the `hmac` scheme").into());
    }
    if let Some(key) = &r.public_key {
        if r.scheme != Scheme::StandardWebhooks {
            return Err(Invalid::new(
                "verification.public_key",
                "is only used by the `standard_webhooks` scheme",
            )
            .into());
        }
        if r.secret.is_some() {
            return Err(Invalid::new(
                "verification.public_key",
                "takes the place of a secret: give one or the other",
            )
            .into());
        }
        signature::parse_public_key(key)
            .map_err(|e| Invalid::new("verification.public_key", e.to_string()))?;
        // Stored where the secret would be: its prefix tells the verifier which it is.
        let v = Verification::StandardWebhooks {
            secret: key.trim().to_string(),
        };
        return Ok((v, None, None));
    }
    let uses_token = matches!(r.scheme, Scheme::Token | Scheme::A2a);
    if uses_token && r.secret.is_some() {
        return Err(Invalid::new(
            "verification.secret",
            format!("the `{}` scheme takes a `token`", r.scheme.as_str()),
        )
        .into());
    }
    if !uses_token && r.token.is_some() {
        return Err(Invalid::new(
            "verification.token",
            format!("the `{}` scheme takes no token", r.scheme.as_str()),
        )
        .into());
    }
    for (field, value) in [
        ("verification.secret", &r.secret),
        ("verification.token", &r.token),
    ] {
        if let Some(v) = value
            && (v.is_empty() || v.len() > MAX_SECRET || v.chars().any(char::is_control))
        {
            return Err(Invalid::new(
                field,
                format!("must be 1-{MAX_SECRET} printable characters"),
            )
            .into());
        }
    }
    let token = || {
        r.token
            .clone()
            .unwrap_or_else(|| secrets::generate(SecretKind::InboundSecret))
    };
    let secret = |kind: SecretKind| r.secret.clone().unwrap_or_else(|| secrets::generate(kind));
    let v = match r.scheme {
        Scheme::None => {
            if r.secret.is_some() {
                return Err(Invalid::new(
                    "verification.secret",
                    "the `none` scheme takes no secret",
                )
                .into());
            }
            Verification::None
        }
        Scheme::Token => Verification::Token { token: token() },
        Scheme::A2a => Verification::A2a { token: token() },
        Scheme::StandardWebhooks => {
            // The same rule as a destination's secret (`domain::signature`); a `whpk_` public
            // key is taken here too, as `public_key` would be (how `verify_signature` gets
            // one: it has a single `secret` argument).
            let secret = secret(SecretKind::SigningSecret);
            if secret
                .trim_start()
                .starts_with(signature::PUBLIC_KEY_PREFIX)
            {
                signature::parse_public_key(&secret)
                    .map_err(|e| Invalid::new("verification.secret", e.to_string()))?;
                return Ok((
                    Verification::StandardWebhooks {
                        secret: secret.trim().to_string(),
                    },
                    None,
                    None,
                ));
            }
            signature::parse_secret(&secret, Accept::New)
                .map_err(|e| Invalid::new("verification.secret", e.to_string()))?;
            Verification::StandardWebhooks { secret }
        }
        Scheme::Github => Verification::Github {
            secret: secret(SecretKind::InboundSecret),
        },
        // Stripe's secrets look like `whsec_…` but are used as text, not decoded.
        Scheme::Stripe => Verification::Stripe {
            secret: secret(SecretKind::SigningSecret),
        },
        Scheme::Shopify => Verification::Shopify {
            secret: secret(SecretKind::InboundSecret),
        },
        Scheme::Slack => Verification::Slack {
            secret: secret(SecretKind::InboundSecret),
        },
        Scheme::Hmac => {
            let header = r.header.clone().ok_or_else(|| {
                Invalid::new("verification.header", "is required by the `hmac` scheme")
            })?;
            if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(
                    Invalid::new("verification.header", "is not a valid header name").into(),
                );
            }
            if r.prefix.as_ref().is_some_and(|p| p.len() > 64) {
                return Err(
                    Invalid::new("verification.prefix", "must be at most 64 characters").into(),
                );
            }
            Verification::Hmac {
                secret: secret(SecretKind::InboundSecret),
                header,
                algorithm: r.algorithm.unwrap_or_default(),
                encoding: r.encoding.unwrap_or_default(),
                prefix: r.prefix.clone(),
            }
        }
    };
    let (secret, token) = match &v {
        Verification::None => (None, None),
        Verification::Token { token } | Verification::A2a { token } => (None, Some(token.clone())),
        Verification::StandardWebhooks { secret }
        | Verification::Github { secret }
        | Verification::Stripe { secret }
        | Verification::Shopify { secret }
        | Verification::Slack { secret }
        | Verification::Hmac { secret, .. } => (Some(secret.clone()), None),
    };
    Ok((v, secret, token))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers as stored: lower-case names, repeats joined with `, `. When the endpoint's own
/// credential travels in a header (`token`, `a2a`), its value is not kept: whoever reads the
/// callbacks must not learn the endpoint's token from them.
fn stored_headers(headers: &[(String, String)], redact: bool) -> BTreeMap<String, String> {
    const CREDENTIALS: [&str; 3] = [
        "authorization",
        "x-a2a-notification-token",
        "a2a-notification-token",
    ];
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        let v = if redact && CREDENTIALS.contains(&k.as_str()) {
            "[redacted]".to_string()
        } else {
            v.clone()
        };
        out.entry(k)
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn slugs_carry_192_random_bits() {
        let (a, b) = (new_slug(), new_slug());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 24);
    }

    #[test]
    fn omitted_secrets_are_generated_and_standard_webhooks_ones_are_whsec() {
        let (v, secret, token) = build_verification(VerificationRequest {
            scheme: Scheme::StandardWebhooks,
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(v, Verification::StandardWebhooks { .. }));
        assert!(secret.unwrap().starts_with("whsec_") && token.is_none());
    }

    #[test]
    fn an_unknown_scheme_is_refused_when_read_with_the_schemes_listed() {
        let e = serde_json::from_str::<VerificationRequest>(r#"{"scheme": "pgp"}"#).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("unknown variant `pgp`"), "{message}");
        assert!(message.contains("standard_webhooks"), "{message}");
    }

    #[test]
    fn token_credentials_are_redacted_from_stored_headers_and_query() {
        let h = stored_headers(
            &[
                ("Authorization".into(), "Bearer s".into()),
                ("X-A".into(), "1".into()),
            ],
            true,
        );
        assert_eq!(h["authorization"], "[redacted]");
        assert_eq!(h["x-a"], "1");
    }
}
