//! Verification of inbound webhook requests captured at callback endpoints (docs/inbound.md).
//!
//! Everything here is a pure function of the endpoint's scheme config and the captured request
//! (headers, query, raw body, the caller's clock), so the ingest handler, the MCP
//! `verify_signature` tool and the tests share one implementation and need no I/O.
//! Standard Webhooks secrets are read and signed by `domain::signature`, the same code the
//! outbound sender uses, so the two cannot drift apart (both are pinned by
//! `tests/vectors/signatures.json`).
//!
//! Every comparison of a secret-derived value is constant time, and malformed input (bad
//! base64/hex, unparsable timestamps, foreign JSON) is reported as an error, never a panic.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq;

pub use crate::domain::callback::{A2aInfo, Encoding, HmacAlgorithm, Scheme, Verification};
use crate::domain::signature::{self, Accept, SecretError};

/// Allowed clock skew, either way, for timestamped schemes: it bounds the replay window while
/// tolerating unsynchronised clocks (the ±5 min every provider documents).
pub const TOLERANCE_SECS: i64 = 300;

/// The parts of a captured request that verification looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Header names are matched case-insensitively; for repeated names the first non-empty wins.
    pub headers: &'a [(String, String)],
    /// Raw query string, with or without the leading `?`.
    pub query: Option<&'a str>,
    /// The raw body exactly as received: signatures cover bytes, not parsed JSON.
    pub body: &'a [u8],
    /// Passed in rather than read from the clock so verification stays pure and testable.
    pub now_unix: i64,
}

/// Why a request was rejected; the HTTP layer answers 401 and records the callback as `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header `{0}`")]
    MissingHeader(String),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("timestamp is more than {TOLERANCE_SECS} s away from the current time")]
    TimestampOutOfTolerance,
    #[error("signature does not match")]
    SignatureMismatch,
    #[error("token does not match")]
    TokenMismatch,
}

impl VerifyError {
    /// Stable machine-readable reason, for problem+json `code`s, metrics labels and the stored callback.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::Malformed(_) => "malformed",
            Self::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            Self::SignatureMismatch => "signature_mismatch",
            Self::TokenMismatch => "token_mismatch",
        }
    }
}

/// What a successful verification learned about the request beyond "it is authentic".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verified {
    /// The sender's delivery id (see [`dedupe_key`]); filled for every scheme.
    pub dedupe_key: Option<String>,
    /// Task id and state of an A2A push notification (scheme `a2a` only).
    pub a2a: Option<A2aInfo>,
    /// Slack's `url_verification` challenge, which the HTTP layer must echo back.
    pub slack_challenge: Option<String>,
}

/// Verifies `req` against the endpoint's scheme.
pub fn verify(v: &Verification, req: &Request<'_>) -> Result<Verified, VerifyError> {
    let mut out = Verified::default();
    match v {
        Verification::None => {}
        Verification::Token { token } => verify_token(token, req)?,
        Verification::StandardWebhooks { secret } => verify_standard_webhooks(secret, req)?,
        Verification::Github { secret } => verify_github(secret, req)?,
        Verification::Stripe { secret } => verify_stripe(secret, req)?,
        Verification::Shopify { secret } => verify_shopify(secret, req)?,
        Verification::Slack { secret } => {
            verify_slack(secret, req)?;
            out.slack_challenge = slack_challenge(req.body);
        }
        Verification::Hmac {
            secret,
            header,
            algorithm,
            encoding,
            prefix,
        } => verify_generic_hmac(
            secret,
            header,
            *algorithm,
            *encoding,
            prefix.as_deref(),
            req,
        )?,
        Verification::A2a { token } => {
            verify_a2a_token(token, req)?;
            out.a2a = Some(parse_a2a(req.body)?);
        }
    }
    out.dedupe_key = dedupe_key(req.headers, req.body);
    Ok(out)
}

/// The sender's delivery id, used to dedupe independent of scheme: `webhook-id`, `svix-id`,
/// `X-GitHub-Delivery`, the Stripe event's JSON `id` (when the body is a Stripe event, i.e. has
/// `"object":"event"`), `Idempotency-Key`. First found wins.
///
/// Senders retry with the same id, so this is what lets ingest answer a retry 200 without storing
/// it twice (docs/inbound.md).
pub fn dedupe_key(headers: &[(String, String)], body: &[u8]) -> Option<String> {
    ["webhook-id", "svix-id", "X-GitHub-Delivery"]
        .iter()
        .find_map(|name| header(headers, name))
        .map(str::to_owned)
        .or_else(|| stripe_event_id(body))
        .or_else(|| header(headers, "Idempotency-Key").map(str::to_owned))
}

/// A Standard Webhooks signature, `v1,<base64>`, by the outbound sender's signer
/// (`domain::signature`), with the secret read as a stored one.
pub fn standard_webhooks_signature(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, VerifyError> {
    signature::sign(secret, msg_id, timestamp, body).map_err(secret_error)
}

// ---------------------------------------------------------------------------------------------
// Schemes

fn verify_token(token: &str, req: &Request<'_>) -> Result<(), VerifyError> {
    let bearer = header(req.headers, "Authorization").and_then(bearer_token);
    let query = req.query.and_then(|q| query_param(q, "token"));
    if bearer.is_none() && query.is_none() {
        return Err(VerifyError::MissingHeader("Authorization".into()));
    }
    // `|` rather than `||`: both candidates are always compared, so timing reveals nothing.
    let ok = bearer.is_some_and(|b| token_eq(b, token))
        | query.as_deref().is_some_and(|q| token_eq(q, token));
    if ok {
        Ok(())
    } else {
        Err(VerifyError::TokenMismatch)
    }
}

fn verify_standard_webhooks(secret: &str, req: &Request<'_>) -> Result<(), VerifyError> {
    let h = req.headers;
    let id = require_either(h, "webhook-id", "svix-id")?;
    let ts_raw = require_either(h, "webhook-timestamp", "svix-timestamp")?;
    let signatures = require_either(h, "webhook-signature", "svix-signature")?;
    let ts = parse_timestamp(ts_raw, "webhook-timestamp")?;
    check_tolerance(ts, req.now_unix)?;

    if secret
        .trim_start()
        .starts_with(signature::PUBLIC_KEY_PREFIX)
    {
        return verify_v1a(secret, id, ts, signatures, req.body);
    }
    // Stored rules: an endpoint saved under the older, more lenient ones keeps verifying.
    let key = signature::parse_secret(secret, Accept::Stored).map_err(secret_error)?;
    let expected = signature::mac(&key, id, ts, req.body);
    // Several entries appear during secret rotation; other versions (e.g. `v1a`) are not ours.
    let candidates: Vec<_> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, sig)| decode_base64(sig))
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::Malformed(
            "webhook-signature holds no `v1,` signature".into(),
        ));
    }
    match_any(&expected, candidates, "webhook-signature")
}

/// Standard Webhooks' asymmetric form: any `v1a,` entry that is `public_key`'s ed25519
/// signature of `"{id}.{timestamp}.{body}"`. `v1,` entries (HMAC) are not ours here.
fn verify_v1a(
    public_key: &str,
    id: &str,
    ts: i64,
    signatures: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let key = signature::parse_public_key(public_key).map_err(secret_error)?;
    let candidates: Vec<_> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1a")
        .map(|(_, sig)| decode_base64(sig))
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::Malformed(
            "webhook-signature holds no `v1a,` signature".into(),
        ));
    }
    let mut well_formed = false;
    for sig in candidates.into_iter().flatten() {
        well_formed = true;
        // A signature check reveals nothing through timing that a forger could use: the
        // public key is public, and ed25519 verification does not depend on secret data.
        if signature::verify_v1a(&key, id, ts, body, &sig) {
            return Ok(());
        }
    }
    Err(if well_formed {
        VerifyError::SignatureMismatch
    } else {
        VerifyError::Malformed("webhook-signature is not validly encoded".into())
    })
}

fn verify_github(secret: &str, req: &Request<'_>) -> Result<(), VerifyError> {
    const NAME: &str = "X-Hub-Signature-256";
    let raw = require(req.headers, NAME)?;
    let sig = raw
        .strip_prefix("sha256=")
        .ok_or_else(|| VerifyError::Malformed(format!("{NAME} must start with `sha256=`")))?;
    let expected = hmac(HmacAlgorithm::Sha256, secret.as_bytes(), &[req.body])?;
    match_any(&expected, [hex::decode(sig).ok()], NAME)
}

fn verify_stripe(secret: &str, req: &Request<'_>) -> Result<(), VerifyError> {
    const NAME: &str = "Stripe-Signature";
    let raw = require(req.headers, NAME)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for (key, value) in raw.split(',').filter_map(|item| item.split_once('=')) {
        match key.trim() {
            "t" => t = Some(value.trim()),
            "v1" => v1.push(value.trim()),
            _ => {} // v0 (test-mode legacy) and future schemes are not ours to check.
        }
    }
    let t = t.ok_or_else(|| VerifyError::Malformed(format!("{NAME} has no `t=` timestamp")))?;
    check_tolerance(parse_timestamp(t, NAME)?, req.now_unix)?;
    if v1.is_empty() {
        return Err(VerifyError::Malformed(format!(
            "{NAME} has no `v1=` signature"
        )));
    }
    // Stripe signs the timestamp exactly as it appears in the header.
    let expected = hmac(
        HmacAlgorithm::Sha256,
        secret.as_bytes(),
        &[t.as_bytes(), b".", req.body],
    )?;
    match_any(&expected, v1.iter().map(|s| hex::decode(s).ok()), NAME)
}

fn verify_shopify(secret: &str, req: &Request<'_>) -> Result<(), VerifyError> {
    const NAME: &str = "X-Shopify-Hmac-Sha256";
    let raw = require(req.headers, NAME)?;
    let expected = hmac(HmacAlgorithm::Sha256, secret.as_bytes(), &[req.body])?;
    match_any(&expected, [decode_base64(raw)], NAME)
}

fn verify_slack(secret: &str, req: &Request<'_>) -> Result<(), VerifyError> {
    const SIG: &str = "X-Slack-Signature";
    const TS: &str = "X-Slack-Request-Timestamp";
    let raw = require(req.headers, SIG)?;
    let ts_raw = require(req.headers, TS)?;
    check_tolerance(parse_timestamp(ts_raw, TS)?, req.now_unix)?;
    let sig = raw
        .strip_prefix("v0=")
        .ok_or_else(|| VerifyError::Malformed(format!("{SIG} must start with `v0=`")))?;
    let expected = hmac(
        HmacAlgorithm::Sha256,
        secret.as_bytes(),
        &[b"v0:", ts_raw.as_bytes(), b":", req.body],
    )?;
    match_any(&expected, [hex::decode(sig).ok()], SIG)
}

fn verify_generic_hmac(
    secret: &str,
    name: &str,
    algorithm: HmacAlgorithm,
    encoding: Encoding,
    prefix: Option<&str>,
    req: &Request<'_>,
) -> Result<(), VerifyError> {
    let raw = require(req.headers, name)?;
    let sig = match prefix.filter(|p| !p.is_empty()) {
        Some(p) => raw
            .strip_prefix(p)
            .ok_or_else(|| VerifyError::Malformed(format!("{name} must start with `{p}`")))?,
        None => raw,
    };
    let decoded = match encoding {
        Encoding::Hex => hex::decode(sig.trim()).ok(),
        Encoding::Base64 => decode_base64(sig),
    };
    let expected = hmac(algorithm, secret.as_bytes(), &[req.body])?;
    match_any(&expected, [decoded], name)
}

fn verify_a2a_token(token: &str, req: &Request<'_>) -> Result<(), VerifyError> {
    let h = req.headers;
    let x_token = header(h, "X-A2A-Notification-Token");
    let token_header = header(h, "A2A-Notification-Token");
    let bearer = header(h, "Authorization").and_then(bearer_token);
    if x_token.is_none() && token_header.is_none() && bearer.is_none() {
        return Err(VerifyError::MissingHeader(
            "X-A2A-Notification-Token".into(),
        ));
    }
    // Any presented token may match: an agent may send its own `Authorization` next to ours.
    let ok = [x_token, token_header, bearer]
        .into_iter()
        .flatten()
        .fold(false, |ok, candidate| ok | token_eq(candidate, token));
    if ok {
        Ok(())
    } else {
        Err(VerifyError::TokenMismatch)
    }
}

// ---------------------------------------------------------------------------------------------
// A2A bodies (docs/inbound.md)

/// Accepts the v1.0 `StreamResponse` shapes and the v0.3 `Task` / event bodies; anything else is
/// not an A2A notification and is rejected rather than stored without a task id.
fn parse_a2a(body: &[u8]) -> Result<A2aInfo, VerifyError> {
    let malformed = || {
        VerifyError::Malformed(
            "body is not an A2A Task, StreamResponse or task update with a task id".into(),
        )
    };
    let root: Value = serde_json::from_slice(body)
        .map_err(|_| VerifyError::Malformed("A2A body is not JSON".into()))?;
    // Some agents wrap the notification in a JSON-RPC envelope; the payload is what matters.
    let root = match root.get("jsonrpc") {
        Some(_) => root
            .get("result")
            .or_else(|| root.get("params"))
            .unwrap_or(&root),
        None => &root,
    };
    root.as_object()
        .and_then(a2a_from_object)
        .ok_or_else(malformed)
}

fn a2a_from_object(obj: &Map<String, Value>) -> Option<A2aInfo> {
    // v1.0 StreamResponse: a single wrapper key. Proto JSON allows the snake_case spelling too.
    if let Some(task) = object_field(obj, "task", "task") {
        return task_info(task);
    }
    for (camel, snake) in [
        ("statusUpdate", "status_update"),
        ("artifactUpdate", "artifact_update"),
        ("message", "message"),
    ] {
        if let Some(event) = object_field(obj, camel, snake) {
            return event_info(event);
        }
    }
    // v0.3: the object itself, discriminated by `kind`; a bare Task may omit `kind`.
    match obj.get("kind").and_then(Value::as_str) {
        Some("task") => task_info(obj),
        Some("status-update" | "artifact-update" | "message") => event_info(obj),
        None if obj.get("status").is_some_and(Value::is_object) => task_info(obj),
        _ => None,
    }
}

fn task_info(task: &Map<String, Value>) -> Option<A2aInfo> {
    Some(A2aInfo {
        task_id: string_field(task, "id", "id")?.to_owned(),
        state: state_of(task),
    })
}

fn event_info(event: &Map<String, Value>) -> Option<A2aInfo> {
    Some(A2aInfo {
        task_id: string_field(event, "taskId", "task_id")?.to_owned(),
        state: state_of(event),
    })
}

fn state_of(obj: &Map<String, Value>) -> Option<String> {
    let state = obj.get("status")?.get("state")?.as_str()?;
    (!state.is_empty()).then(|| normalize_state(state))
}

fn normalize_state(state: &str) -> String {
    let Some(rest) = state.strip_prefix("TASK_STATE_") else {
        return state.to_owned();
    };
    match rest {
        "UNSPECIFIED" => "unknown".to_owned(),
        "CANCELLED" => "canceled".to_owned(),
        _ => rest.to_ascii_lowercase().replace('_', "-"),
    }
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    camel: &str,
    snake: &str,
) -> Option<&'a Map<String, Value>> {
    obj.get(camel)
        .or_else(|| obj.get(snake))
        .and_then(Value::as_object)
}

fn string_field<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a str> {
    obj.get(camel)
        .or_else(|| obj.get(snake))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Bodies looked at by other schemes

fn looks_like_json_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn stripe_event_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        object: Option<String>,
        id: Option<String>,
    }
    if !looks_like_json_object(body) {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    (probe.object.as_deref() == Some("event"))
        .then_some(probe.id)
        .flatten()
        .filter(|id| !id.is_empty())
}

fn slack_challenge(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct UrlVerification {
        #[serde(rename = "type")]
        kind: Option<String>,
        challenge: Option<String>,
    }
    // Slash commands and interactivity are form-encoded; only JSON can be a challenge.
    if !looks_like_json_object(body) {
        return None;
    }
    let parsed: UrlVerification = serde_json::from_slice(body).ok()?;
    (parsed.kind.as_deref() == Some("url_verification"))
        .then_some(parsed.challenge)
        .flatten()
}

// ---------------------------------------------------------------------------------------------
// Primitives

fn hmac(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, VerifyError> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, VerifyError> {
        // HMAC takes keys of any length, so this error cannot happen; mapped rather than unwrapped.
        let mut mac = <M as KeyInit>::new_from_slice(key)
            .map_err(|_| VerifyError::Malformed("unusable HMAC key".into()))?;
        for part in parts {
            mac.update(part);
        }
        Ok(mac.finalize().into_bytes().to_vec())
    }
    match alg {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
    }
}

fn secret_error(e: SecretError) -> VerifyError {
    VerifyError::Malformed(e.to_string())
}

/// Senders differ on alphabet and padding; accepting both costs nothing since the MAC decides.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
    let s = s.trim();
    STD.decode(s).or_else(|_| URL.decode(s)).ok()
}

/// Passes when any well-formed candidate equals `expected`. Every candidate is compared (no
/// early exit) in constant time. `None` candidates failed to decode: if nothing decoded at all
/// the header is malformed, which tells an integrator more than "mismatch".
fn match_any(
    expected: &[u8],
    candidates: impl IntoIterator<Item = Option<Vec<u8>>>,
    what: &str,
) -> Result<(), VerifyError> {
    let mut well_formed = false;
    let mut matched = false;
    for candidate in candidates.into_iter().flatten() {
        well_formed = true;
        matched |= bool::from(candidate.as_slice().ct_eq(expected));
    }
    if matched {
        Ok(())
    } else if well_formed {
        Err(VerifyError::SignatureMismatch)
    } else {
        Err(VerifyError::Malformed(format!(
            "{what} is not validly encoded"
        )))
    }
}

/// Compares digests rather than the tokens so neither content nor length leaks through timing.
/// An empty configured token never matches: it would otherwise accept an empty credential.
fn token_eq(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    !expected.is_empty() && bool::from(a.as_slice().ct_eq(b.as_slice()))
}

fn parse_timestamp(raw: &str, what: &str) -> Result<i64, VerifyError> {
    raw.trim()
        .parse()
        .map_err(|_| VerifyError::Malformed(format!("{what}: `{raw}` is not a unix timestamp")))
}

fn check_tolerance(ts: i64, now: i64) -> Result<(), VerifyError> {
    if ts.abs_diff(now) > TOLERANCE_SECS.unsigned_abs() {
        Err(VerifyError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

/// First non-empty value of a header, name matched case-insensitively (HTTP names are).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .find(|v| !v.is_empty())
}

fn require<'a>(headers: &'a [(String, String)], name: &str) -> Result<&'a str, VerifyError> {
    header(headers, name).ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// Standard Webhooks headers, or the `svix-*` names Svix-based senders still use.
fn require_either<'a>(
    headers: &'a [(String, String)],
    name: &str,
    alias: &str,
) -> Result<&'a str, VerifyError> {
    header(headers, name)
        .or_else(|| header(headers, alias))
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A query string's pairs as written (`raw`) and decoded, form-urlencoded (`%74` is `t`, `+`
/// is a space) as browsers and HTTP clients encode them. Verification and the redaction of
/// stored queries both read queries through this, so a key that verifies is a key that is
/// redacted, however it was encoded.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, Cow<'_, str>, Cow<'_, str>)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query.split('&').filter(|raw| !raw.is_empty()).map(|raw| {
        let (k, v) = form_urlencoded::parse(raw.as_bytes())
            .next()
            .unwrap_or_default();
        (raw, k, v)
    })
}

/// First non-empty value of a query parameter.
fn query_param(query: &str, name: &str) -> Option<String> {
    query_pairs(query)
        .filter(|(_, k, _)| k == name)
        .map(|(_, _, v)| v.into_owned())
        .find(|v| !v.is_empty())
}

/// The query with every value of `name` replaced by `[redacted]`, whatever the key's
/// encoding or how often it repeats; other pairs are kept as written.
/// `a=1&%74oken=s3cret` → `a=1&token=[redacted]`.
pub fn redact_query_param(query: &str, name: &str) -> String {
    query_pairs(query)
        .map(|(raw, k, _)| {
            if k == name {
                format!("{name}=[redacted]")
            } else {
                raw.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/vectors/signatures.json");
    const NOW: i64 = 1_700_000_000;

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("signatures.json is valid JSON")
    }

    fn s<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector field {key}"))
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(
        v: &Verification,
        h: &[(String, String)],
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        verify(
            v,
            &Request {
                headers: h,
                query: None,
                body,
                now_unix: now,
            },
        )
    }

    fn run_query(
        v: &Verification,
        h: &[(String, String)],
        query: &str,
    ) -> Result<Verified, VerifyError> {
        verify(
            v,
            &Request {
                headers: h,
                query: Some(query),
                body: b"{}",
                now_unix: NOW,
            },
        )
    }

    /// Replaces the character at `idx` with another from the same alphabet, so the result
    /// still decodes and must fail as a mismatch rather than as malformed input.
    fn flip_char(s: &str, idx: usize) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        chars[idx] = match chars[idx] {
            '0' => '1',
            'A' => 'B',
            'a' => 'b',
            c if c.is_ascii_digit() => '0',
            c if c.is_ascii_uppercase() => 'A',
            _ => 'a',
        };
        chars.into_iter().collect()
    }

    fn flip_first_byte(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out[0] ^= 0x01;
        out
    }

    fn sign_hex(secret: &str, parts: &[&[u8]]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        for p in parts {
            mac.update(p);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// The request a provider vector describes, as (config, headers, body, now).
    fn provider_case(p: &Value) -> (Verification, Vec<(String, String)>, Vec<u8>, i64) {
        let secret = s(p, "secret").to_owned();
        let body = s(p, "payload").as_bytes().to_vec();
        let header = s(p, "header");
        let now = p["timestamp"].as_i64().unwrap_or(NOW);
        match s(p, "scheme") {
            "stripe" => (
                Verification::Stripe { secret },
                headers(&[("Stripe-Signature", header)]),
                body,
                now,
            ),
            "github" => (
                Verification::Github { secret },
                headers(&[
                    ("X-Hub-Signature-256", header),
                    ("X-GitHub-Delivery", "gh-1"),
                ]),
                body,
                now,
            ),
            "shopify" => (
                Verification::Shopify { secret },
                headers(&[("X-Shopify-Hmac-Sha256", header)]),
                body,
                now,
            ),
            "slack" => (
                Verification::Slack { secret },
                headers(&[
                    ("X-Slack-Signature", header),
                    ("X-Slack-Request-Timestamp", &now.to_string()),
                ]),
                body,
                now,
            ),
            other => panic!("no test mapping for provider scheme {other}"),
        }
    }

    fn sw_headers(id: &str, ts: i64, sig: &str) -> Vec<(String, String)> {
        headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", &ts.to_string()),
            ("webhook-signature", sig),
        ])
    }

    // --- shared vectors ----------------------------------------------------------------------

    #[test]
    fn standard_webhooks_vectors_are_reproduced_exactly_by_the_signer() {
        for vec in vectors()["standard_webhooks"].as_array().unwrap() {
            let sig = standard_webhooks_signature(
                s(vec, "secret"),
                s(vec, "id"),
                vec["timestamp"].as_i64().unwrap(),
                s(vec, "payload").as_bytes(),
            )
            .unwrap();
            assert_eq!(sig, s(vec, "signature"), "{}", s(vec, "source"));
        }
    }

    #[test]
    fn standard_webhooks_vectors_verify_at_their_timestamp() {
        for vec in vectors()["standard_webhooks"].as_array().unwrap() {
            let ts = vec["timestamp"].as_i64().unwrap();
            let cfg = Verification::StandardWebhooks {
                secret: s(vec, "secret").into(),
            };
            let h = sw_headers(s(vec, "id"), ts, s(vec, "signature"));
            let ok = run(&cfg, &h, s(vec, "payload").as_bytes(), ts).unwrap();
            assert_eq!(ok.dedupe_key.as_deref(), Some(s(vec, "id")));
        }
    }

    #[test]
    fn standard_webhooks_vectors_fail_when_one_byte_of_payload_or_signature_flips() {
        for vec in vectors()["standard_webhooks"].as_array().unwrap() {
            let ts = vec["timestamp"].as_i64().unwrap();
            let cfg = Verification::StandardWebhooks {
                secret: s(vec, "secret").into(),
            };
            let payload = s(vec, "payload").as_bytes();
            let sig = s(vec, "signature");

            let h = sw_headers(s(vec, "id"), ts, sig);
            assert_eq!(
                run(&cfg, &h, &flip_first_byte(payload), ts),
                Err(VerifyError::SignatureMismatch)
            );
            let h = sw_headers(s(vec, "id"), ts, &flip_char(sig, 10));
            assert_eq!(
                run(&cfg, &h, payload, ts),
                Err(VerifyError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn an_endpoint_with_a_public_key_verifies_the_v1a_vectors_and_refuses_a_flipped_byte() {
        for vec in vectors()["standard_webhooks_v1a"].as_array().unwrap() {
            let ts = vec["timestamp"].as_i64().unwrap();
            let cfg = Verification::StandardWebhooks {
                secret: s(vec, "public_key").into(),
            };
            let payload = s(vec, "payload").as_bytes();
            // An HMAC entry beside it (a sender signing both ways) is not this key's.
            let both = format!("v1,AAAA {}", s(vec, "signature"));
            let h = sw_headers(s(vec, "id"), ts, &both);
            assert!(run(&cfg, &h, payload, ts).is_ok(), "{}", s(vec, "case"));
            let mut tampered = payload.to_vec();
            tampered.push(b'!');
            assert_eq!(
                run(&cfg, &h, &tampered, ts),
                Err(VerifyError::SignatureMismatch)
            );
            let h = sw_headers(s(vec, "id"), ts, &flip_char(s(vec, "signature"), 10));
            assert_eq!(
                run(&cfg, &h, payload, ts),
                Err(VerifyError::SignatureMismatch)
            );
            // Only HMAC entries: nothing this endpoint can check.
            let h = sw_headers(s(vec, "id"), ts, "v1,AAAA");
            assert!(matches!(
                run(&cfg, &h, payload, ts),
                Err(VerifyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn provider_vectors_verify() {
        for p in vectors()["providers"].as_array().unwrap() {
            let (cfg, h, body, now) = provider_case(p);
            let result = run(&cfg, &h, &body, now);
            assert!(result.is_ok(), "{}: {result:?}", s(p, "note"));
        }
    }

    #[test]
    fn provider_vectors_fail_when_one_byte_of_payload_or_signature_flips() {
        for p in vectors()["providers"].as_array().unwrap() {
            let (cfg, h, body, now) = provider_case(p);
            assert_eq!(
                run(&cfg, &h, &flip_first_byte(&body), now),
                Err(VerifyError::SignatureMismatch),
                "{}",
                s(p, "note")
            );
            // Flip a character well inside the signature part of the signature header.
            let mut flipped = h.clone();
            let value = &flipped[0].1;
            flipped[0].1 = flip_char(value, value.len() - 12);
            assert_eq!(
                run(&cfg, &flipped, &body, now),
                Err(VerifyError::SignatureMismatch),
                "{}",
                s(p, "note")
            );
        }
    }

    // --- Standard Webhooks -------------------------------------------------------------------

    fn first_sw_vector() -> (Verification, String, i64, String, String) {
        let v = vectors();
        let vec = &v["standard_webhooks"][0];
        (
            Verification::StandardWebhooks {
                secret: s(vec, "secret").into(),
            },
            s(vec, "id").into(),
            vec["timestamp"].as_i64().unwrap(),
            s(vec, "payload").into(),
            s(vec, "signature").into(),
        )
    }

    #[test]
    fn svix_header_names_are_accepted() {
        let (cfg, id, ts, payload, sig) = first_sw_vector();
        let h = headers(&[
            ("Svix-Id", &id),
            ("SVIX-TIMESTAMP", &ts.to_string()),
            ("svix-signature", &sig),
        ]);
        let ok = run(&cfg, &h, payload.as_bytes(), ts).unwrap();
        assert_eq!(ok.dedupe_key, Some(id));
    }

    #[test]
    fn header_names_match_case_insensitively() {
        let (cfg, id, ts, payload, sig) = first_sw_vector();
        let h = headers(&[
            ("Webhook-Id", &id),
            ("WEBHOOK-TIMESTAMP", &ts.to_string()),
            ("WebHook-Signature", &sig),
        ]);
        assert!(run(&cfg, &h, payload.as_bytes(), ts).is_ok());
    }

    #[test]
    fn several_space_separated_signatures_pass_when_one_is_valid() {
        let (cfg, id, ts, payload, sig) = first_sw_vector();
        let other = standard_webhooks_signature(
            "whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=",
            &id,
            ts,
            payload.as_bytes(),
        )
        .unwrap();
        let all = format!("v1a,ignored {other} v1,not*base64 {sig}");
        let h = sw_headers(&id, ts, &all);
        assert!(run(&cfg, &h, payload.as_bytes(), ts).is_ok());

        let none_valid = sw_headers(&id, ts, &format!("{other} {}", flip_char(&sig, 10)));
        assert_eq!(
            run(&cfg, &none_valid, payload.as_bytes(), ts),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn stripe_header_with_several_v1_signatures_passes_when_one_is_valid() {
        let secret = "whsec_test_secret";
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let good = sign_hex(secret, &[b"1700000000.", body]);
        let header = format!("t=1700000000,v1={},v1={good},v0=deadbeef", "ab".repeat(32));
        let h = headers(&[("stripe-signature", &header)]);
        let cfg = Verification::Stripe {
            secret: secret.into(),
        };
        let ok = run(&cfg, &h, body, NOW).unwrap();
        assert_eq!(ok.dedupe_key.as_deref(), Some("evt_1"));
    }

    #[test]
    fn secret_without_whsec_prefix_is_tolerated() {
        let (_, id, ts, payload, sig) = first_sw_vector();
        let bare = standard_webhooks_signature(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &id,
            ts,
            payload.as_bytes(),
        );
        assert_eq!(bare, Ok(sig));
    }

    #[test]
    fn an_endpoint_saved_under_the_old_rules_keeps_verifying() {
        // Before one parser served every place, endpoints took URL-safe base64 and short keys;
        // such a stored secret is read as it was accepted then.
        let secret = "whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_";
        let short = "whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=";
        for secret in [secret, short] {
            let cfg = Verification::StandardWebhooks {
                secret: secret.into(),
            };
            let sig = standard_webhooks_signature(secret, "msg_1", NOW, b"{}").unwrap();
            let h = sw_headers("msg_1", NOW, &sig);
            assert!(run(&cfg, &h, b"{}", NOW).is_ok(), "{secret}");
        }
    }

    #[test]
    fn secret_that_is_not_base64_is_malformed() {
        let result = standard_webhooks_signature("whsec_not*base64!", "msg", 1, b"{}");
        assert!(
            matches!(result, Err(VerifyError::Malformed(_))),
            "{result:?}"
        );
    }

    // --- timestamps --------------------------------------------------------------------------

    #[test]
    fn stale_and_future_timestamps_beyond_300_s_are_rejected() {
        let (cfg, id, ts, payload, sig) = first_sw_vector();
        let h = sw_headers(&id, ts, &sig);
        for now in [ts - 301, ts + 301, ts + 100_000, ts - 100_000] {
            assert_eq!(
                run(&cfg, &h, payload.as_bytes(), now),
                Err(VerifyError::TimestampOutOfTolerance),
                "now = ts {:+}",
                now - ts
            );
        }
        for now in [ts - 300, ts + 300] {
            assert!(run(&cfg, &h, payload.as_bytes(), now).is_ok());
        }
    }

    #[test]
    fn stripe_and_slack_timestamps_beyond_300_s_are_rejected() {
        for p in vectors()["providers"].as_array().unwrap() {
            if p["timestamp"].is_null() {
                continue;
            }
            let (cfg, h, body, now) = provider_case(p);
            for skew in [-301, 301] {
                assert_eq!(
                    run(&cfg, &h, &body, now + skew),
                    Err(VerifyError::TimestampOutOfTolerance),
                    "{}",
                    s(p, "scheme")
                );
            }
            assert!(run(&cfg, &h, &body, now + 300).is_ok());
        }
    }

    #[test]
    fn unparsable_timestamp_is_malformed() {
        let (cfg, id, _, payload, sig) = first_sw_vector();
        let h = headers(&[
            ("webhook-id", &id),
            ("webhook-timestamp", "yesterday"),
            ("webhook-signature", &sig),
        ]);
        assert!(matches!(
            run(&cfg, &h, payload.as_bytes(), NOW),
            Err(VerifyError::Malformed(_))
        ));
    }

    // --- token -------------------------------------------------------------------------------

    fn token_cfg() -> Verification {
        Verification::Token {
            token: "tok_s3cret+/=".into(),
        }
    }

    #[test]
    fn token_is_accepted_via_bearer_header() {
        let h = headers(&[("authorization", "Bearer tok_s3cret+/=")]);
        assert!(run_query(&token_cfg(), &h, "").is_ok());
        let h = headers(&[("Authorization", "bearer   tok_s3cret+/=  ")]);
        assert!(run_query(&token_cfg(), &h, "").is_ok());
    }

    #[test]
    fn token_is_accepted_via_query_parameter() {
        assert!(run_query(&token_cfg(), &[], "?a=1&token=tok_s3cret%2B%2F%3D&b").is_ok());
        assert!(run_query(&token_cfg(), &[], "token=tok_s3cret%2b%2f%3d").is_ok());
    }

    #[test]
    fn wrong_token_is_rejected() {
        let h = headers(&[("Authorization", "Bearer tok_wrong")]);
        assert_eq!(
            run_query(&token_cfg(), &h, ""),
            Err(VerifyError::TokenMismatch)
        );
        assert_eq!(
            run_query(&token_cfg(), &[], "token=tok_s3cret"),
            Err(VerifyError::TokenMismatch)
        );
        // `+` in a query means a space, so an unencoded token with `+` does not match.
        assert_eq!(
            run_query(&token_cfg(), &[], "token=tok_s3cret+/="),
            Err(VerifyError::TokenMismatch)
        );
        let basic = headers(&[("Authorization", "Basic tok_s3cret+/=")]);
        assert_eq!(
            run_query(&token_cfg(), &basic, ""),
            Err(VerifyError::MissingHeader("Authorization".into()))
        );
    }

    #[test]
    fn empty_configured_token_never_matches() {
        let cfg = Verification::Token {
            token: String::new(),
        };
        assert_eq!(
            run_query(&cfg, &[], "token="),
            Err(VerifyError::MissingHeader("Authorization".into()))
        );
        assert!(!token_eq("", ""));
    }

    // --- generic hmac ------------------------------------------------------------------------

    const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";

    fn generic(alg: HmacAlgorithm, enc: Encoding, prefix: Option<&str>) -> Verification {
        Verification::Hmac {
            secret: "key".into(),
            header: "X-Signature".into(),
            algorithm: alg,
            encoding: enc,
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn generic_hmac_supports_sha1_sha256_sha512_in_hex_and_base64_with_prefix() {
        // Reference values: HMAC(key = "key", message = FOX), computed with Python's hmac module.
        let cases = [
            (
                HmacAlgorithm::Sha1,
                Encoding::Hex,
                None,
                "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
            ),
            (
                HmacAlgorithm::Sha1,
                Encoding::Base64,
                Some("sha1="),
                "sha1=3nybhbi3iqa8ino29wqQcBydtNk=",
            ),
            (
                HmacAlgorithm::Sha256,
                Encoding::Hex,
                Some("sha256="),
                "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
            ),
            (
                HmacAlgorithm::Sha256,
                Encoding::Base64,
                None,
                "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg",
            ),
            (
                HmacAlgorithm::Sha512,
                Encoding::Hex,
                None,
                "B42AF09057BAC1E2D41708E48A902E09B5FF7F12AB428A4FE86653C73DD248FB82F948A549F7B791A5B41915EE4D1EC3935357E4E2317250D0372AFA2EBEEB3A",
            ),
            (
                HmacAlgorithm::Sha512,
                Encoding::Base64,
                Some("v1="),
                "v1=tCrwkFe6weLUFwjkipAuCbX/fxKrQopP6GZTxz3SSPuC+UilSfe3kaW0GRXuTR7Dk1NX5OIxclDQNyr6Lr7rOg==",
            ),
        ];
        for (alg, enc, prefix, value) in cases {
            let cfg = generic(alg, enc, prefix);
            let h = headers(&[("x-signature", value)]);
            assert!(run(&cfg, &h, FOX, NOW).is_ok(), "{cfg:?}");
            assert_eq!(
                run(&cfg, &h, &flip_first_byte(FOX), NOW),
                Err(VerifyError::SignatureMismatch),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn generic_hmac_with_missing_prefix_or_bad_encoding_is_malformed() {
        let cfg = generic(HmacAlgorithm::Sha256, Encoding::Hex, Some("sha256="));
        let h = headers(&[(
            "X-Signature",
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
        )]);
        assert!(matches!(
            run(&cfg, &h, FOX, NOW),
            Err(VerifyError::Malformed(_))
        ));

        let cfg = generic(HmacAlgorithm::Sha256, Encoding::Hex, None);
        let h = headers(&[("X-Signature", "zz-not-hex")]);
        assert!(matches!(
            run(&cfg, &h, FOX, NOW),
            Err(VerifyError::Malformed(_))
        ));

        let cfg = generic(HmacAlgorithm::Sha256, Encoding::Base64, None);
        let h = headers(&[("X-Signature", "***")]);
        assert!(matches!(
            run(&cfg, &h, FOX, NOW),
            Err(VerifyError::Malformed(_))
        ));
    }

    // --- slack -------------------------------------------------------------------------------

    #[test]
    fn slack_url_verification_challenge_is_returned() {
        let secret = "slack_test_secret";
        let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let ts = NOW.to_string();
        let sig = format!(
            "v0={}",
            sign_hex(secret, &[b"v0:", ts.as_bytes(), b":", body])
        );
        let h = headers(&[
            ("X-Slack-Signature", &sig),
            ("X-Slack-Request-Timestamp", &ts),
        ]);
        let cfg = Verification::Slack {
            secret: secret.into(),
        };
        let ok = run(&cfg, &h, body, NOW).unwrap();
        assert_eq!(
            ok.slack_challenge.as_deref(),
            Some("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
        );
        // The challenge is only answered for a genuine request.
        assert_eq!(
            run(&cfg, &h, &flip_first_byte(body), NOW),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn slack_event_without_challenge_returns_none() {
        let p = &vectors()["providers"][4];
        let (cfg, h, body, now) = provider_case(p);
        assert_eq!(run(&cfg, &h, &body, now).unwrap().slack_challenge, None);
    }

    // --- A2A ---------------------------------------------------------------------------------

    fn a2a(body: &str) -> Result<Verified, VerifyError> {
        let cfg = Verification::A2a {
            token: "a2a-tok".into(),
        };
        let h = headers(&[("X-A2A-Notification-Token", "a2a-tok")]);
        run(&cfg, &h, body.as_bytes(), NOW)
    }

    fn info(task_id: &str, state: Option<&str>) -> Option<A2aInfo> {
        Some(A2aInfo {
            task_id: task_id.into(),
            state: state.map(str::to_owned),
        })
    }

    #[test]
    fn a2a_v1_stream_response_bodies_expose_task_id_and_state() {
        let cases = [
            (
                r#"{"statusUpdate":{"taskId":"t-1","contextId":"c","status":{"state":"TASK_STATE_COMPLETED","timestamp":"2026-01-01T00:00:00Z"},"metadata":{}}}"#,
                info("t-1", Some("completed")),
            ),
            (
                r#"{"task":{"id":"t-2","contextId":"c","status":{"state":"TASK_STATE_INPUT_REQUIRED"},"artifacts":[]}}"#,
                info("t-2", Some("input-required")),
            ),
            (
                r#"{"artifactUpdate":{"taskId":"t-3","artifact":{"artifactId":"a","parts":[]},"append":false}}"#,
                info("t-3", None),
            ),
            (
                r#"{"message":{"messageId":"m","taskId":"t-4","role":"ROLE_AGENT","parts":[]}}"#,
                info("t-4", None),
            ),
            (
                r#"{"status_update":{"task_id":"t-5","status":{"state":"TASK_STATE_FAILED"}}}"#,
                info("t-5", Some("failed")),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(a2a(body).unwrap().a2a, expected, "{body}");
        }
    }

    #[test]
    fn a2a_v0_3_task_bodies_expose_task_id_and_state() {
        let cases = [
            (
                r#"{"id":"t-1","contextId":"c","kind":"task","status":{"state":"completed"},"history":[]}"#,
                info("t-1", Some("completed")),
            ),
            (
                r#"{"id":"t-2","status":{"state":"working","message":null}}"#,
                info("t-2", Some("working")),
            ),
            (
                r#"{"kind":"status-update","taskId":"t-3","contextId":"c","status":{"state":"input-required"},"final":true}"#,
                info("t-3", Some("input-required")),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"result":{"id":"t-4","kind":"task","status":{"state":"canceled"}}}"#,
                info("t-4", Some("canceled")),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(a2a(body).unwrap().a2a, expected, "{body}");
        }
    }

    #[test]
    fn a2a_body_that_is_not_a_task_payload_is_malformed() {
        for body in [
            "not json",
            "[1,2]",
            r#"{"hello":"world"}"#,
            r#"{"id":"evt_1","object":"event"}"#,
            r#"{"message":{"messageId":"m","parts":[]}}"#,
            r#"{"task":{"status":{"state":"TASK_STATE_WORKING"}}}"#,
        ] {
            assert!(
                matches!(a2a(body), Err(VerifyError::Malformed(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn a2a_token_is_read_from_each_header_and_checked() {
        let cfg = Verification::A2a {
            token: "a2a-tok".into(),
        };
        let body = br#"{"id":"t","status":{"state":"completed"}}"#;
        for h in [
            headers(&[("x-a2a-notification-token", "a2a-tok")]),
            headers(&[("A2A-Notification-Token", "a2a-tok")]),
            headers(&[("Authorization", "Bearer a2a-tok")]),
            headers(&[
                ("Authorization", "Bearer agents-own"),
                ("A2A-Notification-Token", "a2a-tok"),
            ]),
        ] {
            assert!(run(&cfg, &h, body, NOW).is_ok(), "{h:?}");
        }
        let wrong = headers(&[("X-A2A-Notification-Token", "nope")]);
        assert_eq!(
            run(&cfg, &wrong, body, NOW),
            Err(VerifyError::TokenMismatch)
        );
        assert_eq!(
            run(&cfg, &[], body, NOW),
            Err(VerifyError::MissingHeader(
                "X-A2A-Notification-Token".into()
            ))
        );
    }

    // --- dedupe ------------------------------------------------------------------------------

    #[test]
    fn dedupe_keys_come_from_each_header_kind_and_the_stripe_body_id() {
        let body = b"{}";
        for name in [
            "webhook-id",
            "Svix-Id",
            "x-github-delivery",
            "Idempotency-Key",
        ] {
            let h = headers(&[(name, " key-1 ")]);
            assert_eq!(dedupe_key(&h, body).as_deref(), Some("key-1"), "{name}");
        }
        let stripe = br#" {"id":"evt_9","object":"event","data":{"object":{"id":"pi_1","object":"payment_intent"}}}"#;
        assert_eq!(dedupe_key(&[], stripe).as_deref(), Some("evt_9"));
    }

    #[test]
    fn dedupe_key_takes_the_first_source_found_and_ignores_non_events() {
        let stripe = br#"{"id":"evt_9","object":"event"}"#;
        let h = headers(&[("Idempotency-Key", "idem"), ("X-GitHub-Delivery", "gh")]);
        assert_eq!(dedupe_key(&h, stripe).as_deref(), Some("gh"));
        let h = headers(&[("Idempotency-Key", "idem")]);
        assert_eq!(dedupe_key(&h, stripe).as_deref(), Some("evt_9"));
        assert_eq!(
            dedupe_key(&h, br#"{"id":"x","object":"charge"}"#).as_deref(),
            Some("idem")
        );
        assert_eq!(dedupe_key(&[], br#"{"id":"x"}"#), None);
        assert_eq!(
            dedupe_key(&headers(&[("webhook-id", "  ")]), b"not json"),
            None
        );
    }

    #[test]
    fn dedupe_key_is_filled_for_every_scheme() {
        let h = headers(&[("Idempotency-Key", "idem-1")]);
        let ok = run(&Verification::None, &h, b"anything", NOW).unwrap();
        assert_eq!(ok.dedupe_key.as_deref(), Some("idem-1"));

        let p = &vectors()["providers"][1];
        let (cfg, h, body, now) = provider_case(p);
        assert_eq!(
            run(&cfg, &h, &body, now).unwrap().dedupe_key.as_deref(),
            Some("gh-1")
        );
    }

    // --- missing and malformed headers -------------------------------------------------------

    #[test]
    fn missing_headers_give_missing_header_naming_the_header() {
        let secret = String::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let cases = [
            (
                Verification::StandardWebhooks {
                    secret: secret.clone(),
                },
                "webhook-id",
            ),
            (
                Verification::Github {
                    secret: secret.clone(),
                },
                "X-Hub-Signature-256",
            ),
            (
                Verification::Stripe {
                    secret: secret.clone(),
                },
                "Stripe-Signature",
            ),
            (
                Verification::Shopify {
                    secret: secret.clone(),
                },
                "X-Shopify-Hmac-Sha256",
            ),
            (
                Verification::Slack {
                    secret: secret.clone(),
                },
                "X-Slack-Signature",
            ),
            (
                generic(HmacAlgorithm::Sha256, Encoding::Hex, None),
                "X-Signature",
            ),
            (
                Verification::Token {
                    token: secret.clone(),
                },
                "Authorization",
            ),
            (
                Verification::A2a { token: secret },
                "X-A2A-Notification-Token",
            ),
        ];
        for (cfg, name) in cases {
            assert_eq!(
                run(&cfg, &[], b"{}", NOW),
                Err(VerifyError::MissingHeader(name.into())),
                "{cfg:?}"
            );
        }
        // A partial set names the first header still missing.
        let h = headers(&[("webhook-id", "m"), ("webhook-timestamp", "1700000000")]);
        let cfg = Verification::StandardWebhooks {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        };
        assert_eq!(
            run(&cfg, &h, b"{}", NOW),
            Err(VerifyError::MissingHeader("webhook-signature".into()))
        );
        let h = headers(&[("X-Slack-Signature", "v0=00")]);
        let cfg = Verification::Slack { secret: "s".into() };
        assert_eq!(
            run(&cfg, &h, b"{}", NOW),
            Err(VerifyError::MissingHeader(
                "X-Slack-Request-Timestamp".into()
            ))
        );
    }

    #[test]
    fn malformed_signature_headers_are_malformed_not_panics() {
        let secret = String::from("s");
        let cases = [
            (
                Verification::Github {
                    secret: secret.clone(),
                },
                "X-Hub-Signature-256",
                "sha256=xyz",
            ),
            (
                Verification::Github {
                    secret: secret.clone(),
                },
                "X-Hub-Signature-256",
                "sha1=00",
            ),
            (
                Verification::Shopify {
                    secret: secret.clone(),
                },
                "X-Shopify-Hmac-Sha256",
                "%%%",
            ),
            (
                Verification::Stripe {
                    secret: secret.clone(),
                },
                "Stripe-Signature",
                "v1=00",
            ),
            (
                Verification::Stripe {
                    secret: secret.clone(),
                },
                "Stripe-Signature",
                "t=1700000000",
            ),
            (
                Verification::Stripe {
                    secret: secret.clone(),
                },
                "Stripe-Signature",
                "t=1700000000,v1=qq",
            ),
            (
                Verification::Stripe { secret },
                "Stripe-Signature",
                "garbage",
            ),
        ];
        for (cfg, name, value) in cases {
            let h = headers(&[(name, value)]);
            let result = run(&cfg, &h, b"{}", NOW);
            assert!(
                matches!(result, Err(VerifyError::Malformed(_))),
                "{name}: {value} → {result:?}"
            );
        }
        let (cfg, id, ts, payload, _) = first_sw_vector();
        for sig in ["v1,***", "v2,abcd", "no-comma"] {
            let result = run(&cfg, &sw_headers(&id, ts, sig), payload.as_bytes(), ts);
            assert!(
                matches!(result, Err(VerifyError::Malformed(_))),
                "{sig} → {result:?}"
            );
        }
    }

    // --- config ------------------------------------------------------------------------------

    #[test]
    fn config_round_trips_through_json_with_defaults() {
        let cfg: Verification =
            serde_json::from_str(r#"{"scheme":"hmac","secret":"k","header":"X-Sig"}"#).unwrap();
        assert_eq!(cfg, generic_named("k", "X-Sig"));
        let cfg: Verification = serde_json::from_str(
            r#"{"scheme":"hmac","secret":"k","header":"X-Sig","algorithm":"sha512","encoding":"base64","prefix":"v1="}"#,
        )
        .unwrap();
        assert!(matches!(
            cfg,
            Verification::Hmac {
                algorithm: HmacAlgorithm::Sha512,
                encoding: Encoding::Base64,
                prefix: Some(_),
                ..
            }
        ));
        for json in [
            r#"{"scheme":"none"}"#,
            r#"{"scheme":"token","token":"t"}"#,
            r#"{"scheme":"standard_webhooks","secret":"whsec_x"}"#,
            r#"{"scheme":"github","secret":"s"}"#,
            r#"{"scheme":"stripe","secret":"s"}"#,
            r#"{"scheme":"shopify","secret":"s"}"#,
            r#"{"scheme":"slack","secret":"s"}"#,
            r#"{"scheme":"a2a","token":"t"}"#,
        ] {
            let cfg: Verification = serde_json::from_str(json).unwrap();
            let back: Value = serde_json::to_value(&cfg).unwrap();
            assert_eq!(back, serde_json::from_str::<Value>(json).unwrap());
        }
    }

    fn generic_named(secret: &str, header: &str) -> Verification {
        Verification::Hmac {
            secret: secret.into(),
            header: header.into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: None,
        }
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let cfgs = [
            Verification::StandardWebhooks {
                secret: "whsec_TOPSECRET".into(),
            },
            Verification::Token {
                token: "TOPSECRET".into(),
            },
            generic_named("TOPSECRET", "X-Sig"),
            Verification::A2a {
                token: "TOPSECRET".into(),
            },
        ];
        for cfg in cfgs {
            let shown = format!("{cfg:?}");
            assert!(!shown.contains("TOPSECRET"), "{shown}");
        }
    }

    #[test]
    fn error_messages_and_codes_are_clear() {
        let e = VerifyError::MissingHeader("webhook-id".into());
        assert_eq!(e.to_string(), "missing header `webhook-id`");
        assert_eq!(e.code(), "missing_header");
        assert_eq!(
            VerifyError::TimestampOutOfTolerance.to_string(),
            "timestamp is more than 300 s away from the current time"
        );
    }

    /// The parsers behind every scheme take headers, queries and bodies from strangers on
    /// the internet: whatever arrives, they answer (no panic), and they accept only what the
    /// secret signed.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

        /// Every scheme, with the headers its parser reads.
        fn schemes() -> Vec<(Verification, &'static [&'static str])> {
            vec![
                (
                    Verification::StandardWebhooks {
                        secret: SECRET.into(),
                    },
                    &[
                        "webhook-id",
                        "webhook-timestamp",
                        "webhook-signature",
                        "svix-id",
                        "svix-timestamp",
                        "svix-signature",
                    ],
                ),
                (
                    Verification::Github {
                        secret: "gh".into(),
                    },
                    &["x-hub-signature-256"],
                ),
                (
                    Verification::Stripe {
                        secret: "whsec_s".into(),
                    },
                    &["stripe-signature"],
                ),
                (
                    Verification::Shopify {
                        secret: "sh".into(),
                    },
                    &["x-shopify-hmac-sha256"],
                ),
                (
                    Verification::Slack {
                        secret: "sl".into(),
                    },
                    &["x-slack-signature", "x-slack-request-timestamp"],
                ),
                (generic_named("gen", "X-Sig"), &["x-sig"]),
                (
                    Verification::Token {
                        token: "tok".into(),
                    },
                    &["authorization"],
                ),
                (
                    Verification::A2a {
                        token: "a2a".into(),
                    },
                    &["x-a2a-notification-token", "authorization"],
                ),
            ]
        }

        /// Header values as attackers write them: near-misses of real formats and noise.
        fn header_value() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,80}",
                "(v1|v0|sha256|t)[=,][A-Za-z0-9+/=]{0,64}",
                "t=[0-9]{0,12},v1=[0-9a-f]{0,64}(,v1=[0-9a-f]{0,64})?",
                "[0-9]{0,20}",
                "Bearer .{0,20}",
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_requests_are_answered_and_never_accepted(
                values in proptest::collection::vec(header_value(), 6),
                query in proptest::option::of(".{0,40}"),
                body in proptest::collection::vec(any::<u8>(), 0..200),
                now in 0i64..4_000_000_000,
            ) {
                for (v, names) in schemes() {
                    let h: Vec<(String, String)> = names
                        .iter()
                        .zip(&values)
                        .map(|(n, val)| (n.to_string(), val.clone()))
                        .collect();
                    let r = verify(&v, &Request { headers: &h, query: query.as_deref(), body: &body, now_unix: now });
                    prop_assert!(r.is_err(), "{v:?} accepted {h:?}");
                }
            }

            #[test]
            fn a_signed_standard_webhooks_request_is_accepted_and_any_change_refused(
                id in "[a-z0-9_]{1,30}",
                body in proptest::collection::vec(any::<u8>(), 1..200),
                skew in -TOLERANCE_SECS..=TOLERANCE_SECS,
                flip in any::<prop::sample::Index>(),
            ) {
                let ts = NOW + skew;
                let sig = crate::domain::signature::sign(SECRET, &id, ts, &body).unwrap();
                let v = Verification::StandardWebhooks { secret: SECRET.into() };
                let h = headers(&[("webhook-id", &id), ("webhook-timestamp", &ts.to_string()),
                                  ("webhook-signature", &sig)]);
                prop_assert!(run(&v, &h, &body, NOW).is_ok());
                let mut changed = body.clone();
                changed[flip.index(body.len())] ^= 0x20;
                prop_assert_eq!(run(&v, &h, &changed, NOW), Err(VerifyError::SignatureMismatch));
            }

            #[test]
            fn a_signed_stripe_request_is_accepted_and_a_changed_body_refused(
                body in proptest::collection::vec(any::<u8>(), 1..200),
                flip in any::<prop::sample::Index>(),
            ) {
                let ts = NOW.to_string();
                let sig = sign_hex("whsec_s", &[ts.as_bytes(), b".", &body]);
                let v = Verification::Stripe { secret: "whsec_s".into() };
                let h = headers(&[("stripe-signature", &format!("t={ts},v1={sig}"))]);
                prop_assert!(run(&v, &h, &body, NOW).is_ok());
                let mut changed = body.clone();
                changed[flip.index(body.len())] ^= 0x01;
                prop_assert_eq!(run(&v, &h, &changed, NOW), Err(VerifyError::SignatureMismatch));
            }
        }
    }
}
