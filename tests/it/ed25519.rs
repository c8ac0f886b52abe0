//! ed25519 (`v1a`) signatures, checked by an implementation that is not Herald's: Python's
//! `cryptography` (`tests/ed25519/v1a.py`, installed by scripts/test). Outbound, a destination
//! created with `"signature": "ed25519"` signs every request so that its public key verifies
//! it, across a rotation too, and never shows its signing key. Inbound, a `standard_webhooks`
//! endpoint given a sender's public key accepts what that sender signs and nothing else.

use crate::{common, for_each_store};

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Receiver, StoreKind, TestApp};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

for_each_store!(
    an_ed25519_destination_signs_what_its_public_key_verifies_across_a_rotation,
    a_standard_webhooks_endpoint_with_a_public_key_accepts_only_what_its_key_signed,
);

/// Runs `tests/ed25519/v1a.py <command>` with `request` on stdin; its JSON answer.
async fn python(command: &str, request: Value) -> Value {
    let python = std::env::var("HERALD_TEST_PYTHON").expect(
        "HERALD_TEST_PYTHON is not set: run the tests with scripts/test, which creates the \
         virtualenv with `cryptography`",
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ed25519/v1a.py");
    let mut child = tokio::process::Command::new(python)
        .args([script, command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "v1a.py {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Which of `public_keys` verifies each `v1a` entry of the request's signature header.
async fn verified_by(public_keys: &[&str], req: &common::Received) -> Value {
    python(
        "verify",
        json!({
            "public_keys": public_keys,
            "id": req.headers["webhook-id"],
            "timestamp": req.headers["webhook-timestamp"],
            "body_base64": B64.encode(&req.body),
            "signature": req.headers["webhook-signature"],
        }),
    )
    .await
}

async fn an_ed25519_destination_signs_what_its_public_key_verifies_across_a_rotation(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let rx = Receiver::start().await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "webhook", "url": rx.url, "topics": ["*"], "signature": "ed25519"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["signature"], "ed25519");
    assert!(
        created.get("secret").is_none(),
        "no secret to show: {created}"
    );
    let first = created["public_keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(first.starts_with("whpk_"), "{first}");
    let id = created["id"].as_str().unwrap().to_string();

    app.publish("acme", "job.done", json!({"n": 1})).await;
    app.worker.drain().await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(verified_by(&[&first], &got[0]).await, json!([0]));

    // A rotation: the new key signs too, and until the overlap ends so does the old one.
    let rotated: Value = app
        .post(
            &format!("/v1/tenants/acme/destinations/{id}/rotate-secret"),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(rotated.get("secret").is_none(), "{rotated}");
    let second = rotated["public_key"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let shown = app
        .get_json(&format!("/v1/tenants/acme/destinations/{id}"))
        .await;
    let keys: Vec<&str> = shown["public_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["public_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [second.as_str(), first.as_str()], "newest first");
    assert!(shown["public_keys"][1]["expires_at"].is_string());

    app.publish("acme", "job.done", json!({"n": 2})).await;
    app.worker.drain().await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        verified_by(&[&first, &second], &got[1]).await,
        json!([1, 0]),
        "one signature by each key, the new one first"
    );

    // The signing key is Herald's alone: no answer carries it.
    for v in [&created, &rotated, &shown] {
        assert!(!v.to_string().contains("whsk_"), "{v}");
    }
    let listed = app.get_json("/v1/tenants/acme/destinations").await;
    assert!(!listed.to_string().contains("whsk_"));
}

async fn a_standard_webhooks_endpoint_with_a_public_key_accepts_only_what_its_key_signed(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let body = br#"{"job":"render","status":"done"}"#;
    let ts = chrono::Utc::now().timestamp();
    let signed = python(
        "sign",
        json!({"id": "msg_1", "timestamp": ts, "body_base64": B64.encode(body)}),
    )
    .await;
    let public_key = signed["public_key"].as_str().unwrap();

    let r = app
        .post(
            "/v1/callback-endpoints",
            json!({"tenant_id": "acme", "verification":
                {"scheme": "standard_webhooks", "public_key": public_key}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let ep: Value = r.json().await.unwrap();
    let url = ep["url"].as_str().unwrap().to_string();
    let slug = url.rsplit('/').next().unwrap();

    let send = |signature: String, body: &'static [u8]| {
        let app = &app;
        let path = format!("/in/{slug}");
        async move {
            app.client
                .post(app.url(&path))
                .header("content-type", "application/json")
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let sig = signed["signature"].as_str().unwrap().to_string();
    assert_eq!(
        send(sig.clone(), br#"{"job":"render","status":"failed"}"#).await,
        401
    );
    assert!(send(sig, body).await.is_success());

    let got = app
        .get_json(&format!(
            "/v1/callback-endpoints/{}/events?after=0",
            ep["id"].as_str().unwrap()
        ))
        .await;
    let callbacks = got["data"].as_array().unwrap();
    assert_eq!(callbacks.len(), 1, "only the signed one: {got}");
    assert_eq!(callbacks[0]["verified"], true);

    // A public key is refused where it has no meaning, and a malformed one is named.
    let r = app
        .post(
            "/v1/callback-endpoints",
            json!({"tenant_id": "acme", "verification":
                {"scheme": "github", "public_key": public_key}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["field"], "verification.public_key");
    let r = app
        .post(
            "/v1/callback-endpoints",
            json!({"tenant_id": "acme", "verification":
                {"scheme": "standard_webhooks", "public_key": "whpk_short"}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["field"], "verification.public_key");
}
