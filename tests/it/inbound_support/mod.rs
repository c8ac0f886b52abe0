//! Helpers shared by the inbound test modules (`inbound`, `waiting`): create endpoints, send callbacks, wait.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::common::{ADMIN_TOKEN, TestApp};

/// Creates a callback endpoint; returns the full answer (`id`, `url`, `secret`/`token`, …).
pub async fn endpoint(app: &TestApp, body: Value) -> Value {
    let r = app.post("/v1/callback-endpoints", body).await;
    assert_eq!(
        r.status(),
        201,
        "create endpoint: {}",
        r.text().await.unwrap()
    );
    r.json().await.unwrap()
}

/// An endpoint with scheme `none`; returns `(id, url)`.
pub async fn open_endpoint(app: &TestApp) -> (String, String) {
    let e = endpoint(app, json!({})).await;
    (
        e["id"].as_str().unwrap().to_string(),
        e["url"].as_str().unwrap().to_string(),
    )
}

/// POSTs JSON to a callback URL (no bearer token: senders have none).
pub async fn send(app: &TestApp, url: &str, body: Value) -> reqwest::Response {
    app.client.post(url).json(&body).send().await.unwrap()
}

pub async fn wait(app: &TestApp, endpoint_id: &str, after: i64, timeout_ms: u64) -> Value {
    app.get_json(&format!(
        "/v1/callback-endpoints/{endpoint_id}/wait?after={after}&timeout_ms={timeout_ms}"
    ))
    .await
}

/// A wait on its own client, so many can run concurrently.
pub async fn wait_at(base: &str, endpoint_id: &str, after: i64, timeout_ms: u64) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{base}/v1/callback-endpoints/{endpoint_id}/wait?after={after}&timeout_ms={timeout_ms}"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}
