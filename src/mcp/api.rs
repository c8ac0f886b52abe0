//! How the tools reach Herald: through its REST API, either in this process (the `/mcp`
//! endpoint, and `herald mcp` with an embedded Herald) or over HTTP (`herald mcp --url`).
//!
//! Going through the API rather than calling the services directly is what keeps the three
//! modes identical: the same handlers validate the input, apply the caller's token scope and
//! shape the answers, so a tool behaves the same whether the agent runs beside Herald or on a
//! laptop talking to a remote one.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::Value;
use tower::ServiceExt;

/// The largest API answer a tool reads (a page of 250 callbacks with 1 MiB bodies is bounded by
/// the API itself; this only stops a misbehaving remote).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why an API call failed, as the model should read it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiCallError {
    /// Herald answered with a problem+json (bad input, not found, forbidden, …).
    #[error("{detail}")]
    Problem {
        status: u16,
        code: String,
        detail: String,
    },
    /// Herald could not be reached or answered something that is not JSON.
    #[error("{0}")]
    Transport(String),
}

/// Where the REST API is.
#[derive(Clone)]
pub enum ApiClient {
    /// This process's own router (built without `/mcp`, so there is no cycle).
    InProcess(Router),
    /// Another Herald (`herald mcp --url`).
    Remote {
        client: reqwest::Client,
        base: String,
    },
}

impl ApiClient {
    pub fn remote(base: &str) -> Self {
        crate::outbound::http::install_crypto();
        ApiClient::Remote {
            // No timeout: waits are bounded by the API itself (`timeout_ms`).
            client: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("the HTTP client configuration is valid"),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// One API call with the caller's `Authorization` header value. `path` includes the query.
    pub async fn call(
        &self,
        authorization: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiCallError> {
        let (status, bytes) = match self {
            ApiClient::InProcess(router) => {
                let mut req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::AUTHORIZATION, authorization);
                let body = match body {
                    Some(b) => {
                        req = req.header(header::CONTENT_TYPE, "application/json");
                        Body::from(b.to_string())
                    }
                    None => Body::empty(),
                };
                let req = req
                    .body(body)
                    .map_err(|e| ApiCallError::Transport(format!("bad request: {e}")))?;
                let resp = router
                    .clone()
                    .oneshot(req)
                    .await
                    .unwrap_or_else(|never| match never {});
                let status = resp.status().as_u16();
                let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| ApiCallError::Transport(format!("reading the answer: {e}")))?;
                (status, bytes.to_vec())
            }
            ApiClient::Remote { client, base } => {
                let mut req = client
                    .request(method, format!("{base}{path}"))
                    .header(header::AUTHORIZATION, authorization);
                if let Some(b) = body {
                    req = req.json(b);
                }
                let resp = req.send().await.map_err(|e| {
                    ApiCallError::Transport(format!("cannot reach Herald at {base}: {e}"))
                })?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| {
                    ApiCallError::Transport(format!("reading Herald's answer: {e}"))
                })?;
                (status, bytes.to_vec())
            }
        };
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                ApiCallError::Transport(format!("Herald answered {status} with invalid JSON: {e}"))
            });
        }
        let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let text = |k: &str| problem.get(k).and_then(Value::as_str).map(str::to_string);
        Err(ApiCallError::Problem {
            status,
            code: text("code").unwrap_or_else(|| "error".into()),
            detail: text("detail").unwrap_or_else(|| format!("Herald answered HTTP {status}")),
        })
    }
}

/// A path segment, percent-encoded: ids and slugs come from the model and must not be able to
/// name another route. `.` and `..` are refused outright, since URL parsers resolve them (even
/// percent-encoded) before any router sees the path.
pub fn segment(field: &str, s: &str) -> Result<String, ApiCallError> {
    if s.is_empty() || s.bytes().all(|b| b == b'.') {
        return Err(ApiCallError::Problem {
            status: 422,
            code: "validation_failed".into(),
            detail: format!("{field}: must be an id"),
        });
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_cannot_climb_out_of_their_route() {
        assert_eq!(segment("id", "../v1").unwrap(), "..%2Fv1");
        assert_eq!(segment("id", "cbe_0193-Ab~").unwrap(), "cbe_0193-Ab~");
        assert!(segment("id", "..").is_err());
        assert!(segment("id", "").is_err());
    }
}
