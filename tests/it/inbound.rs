//! Inbound capture on both stores: endpoints, every verification scheme over real HTTP, ingest
//! limits, dedupe, cursors, bad input (docs/inbound.md).

use crate::inbound_support;
use crate::{common, for_each_store};

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{StoreKind, TestApp};
use herald::inbound::verify::standard_webhooks_signature;
use inbound_support::{endpoint, hmac_sha256, now_secs, open_endpoint, send, wait};
use serde_json::{Value, json};

for_each_store!(
    an_endpoint_gets_an_unguessable_url_under_the_public_base_and_can_be_listed_read_and_deleted,
    a_callback_is_stored_with_method_path_query_headers_body_address_and_time,
    text_and_binary_bodies_come_back_as_body_text_and_body_base64,
    every_scheme_accepts_a_correctly_signed_request_and_rejects_a_one_byte_change,
    a_rejected_request_is_answered_401_stored_as_rejected_and_never_handed_to_a_waiter,
    stale_and_replayed_signatures_are_rejected,
    a_duplicate_delivery_id_is_answered_200_counted_and_stored_once,
    slack_url_verification_is_answered_with_its_challenge,
    an_a2a_notification_exposes_its_task_id_and_state,
    an_oversized_body_is_413_and_stores_nothing,
    an_unknown_slug_is_404_and_an_expired_endpoint_is_410,
    a_signed_scheme_answers_405_to_a_get,
    a_flood_at_one_endpoint_is_answered_429,
    concurrent_callbacks_get_distinct_strictly_increasing_cursors,
    a_tenant_token_sees_only_its_own_endpoints_and_callbacks,
    invalid_endpoint_settings_are_422_naming_the_field,
    the_openapi_document_describes_the_inbound_endpoints,
    metrics_count_received_duplicate_and_rejected_callbacks,
    a_signing_secret_is_accepted_or_refused_alike_by_destinations_endpoints_and_verify_signature,
    a_json_body_keeps_the_senders_key_order_and_its_exact_bytes_come_on_request,
);

/// The value of `herald_inbound_callbacks_total{result="…"}` (0 before the first one).
async fn inbound_count(app: &TestApp, result: &str) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("herald_inbound_callbacks_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn metrics_count_received_duplicate_and_rejected_callbacks(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (_, url) = open_endpoint(&app).await;
    let guarded = endpoint(&app, json!({"verification": {"scheme": "token"}})).await;
    let before: Vec<u64> = inbound_counts(&app).await;
    for _ in 0..3 {
        let r = app
            .client
            .post(&url)
            .header("webhook-id", "msg_metrics")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = send(&app, guarded["url"].as_str().unwrap(), json!({})).await;
    assert_eq!(r.status(), 401);
    let after = inbound_counts(&app).await;
    // The counters are process-wide and other tests ingest alongside: at least ours counted.
    assert!(after[0] > before[0], "received {before:?} -> {after:?}");
    assert!(
        after[1] >= before[1] + 2,
        "duplicate {before:?} -> {after:?}"
    );
    assert!(after[2] > before[2], "rejected {before:?} -> {after:?}");
}

async fn inbound_counts(app: &TestApp) -> Vec<u64> {
    let mut v = Vec::new();
    for r in ["received", "duplicate", "rejected"] {
        v.push(inbound_count(app, r).await);
    }
    v
}

async fn the_openapi_document_describes_the_inbound_endpoints(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/callback-endpoints",
        "/v1/callback-endpoints/{id}",
        "/v1/callback-endpoints/{id}/wait",
        "/v1/callback-endpoints/{id}/events",
        "/v1/callback-endpoints/{id}/stream",
        "/v1/callbacks",
        "/v1/callbacks/{id}/ack",
        "/v1/events/{id}/replies/wait",
        "/in/{slug}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "CallbackView",
        "EndpointView",
        "WaitResponse",
        "CreateCallbackEndpoint",
    ] {
        assert!(schemas.get(name).is_some(), "{name} is documented");
    }
}

async fn an_endpoint_gets_an_unguessable_url_under_the_public_base_and_can_be_listed_read_and_deleted(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let e = endpoint(
        &app,
        json!({"label": "render 42", "ttl_seconds": 600, "metadata": {"job": 42}}),
    )
    .await;
    let id = e["id"].as_str().unwrap();
    let slug = e["slug"].as_str().unwrap();
    assert!(id.starts_with("cbe_"));
    assert_eq!(e["url"], format!("{}/in/{slug}", app.base));
    let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(slug)
        .unwrap()
        .len()
        * 8;
    assert!(bits >= 128, "slug carries {bits} bits");
    assert_eq!(e["verification"]["scheme"], "none");
    assert_eq!(e["label"], "render 42");
    assert_eq!(e["metadata"], json!({"job": 42}));
    assert!(e["expires_at"].is_string());
    assert_eq!(e["cursor"], 0);

    let got = app.get_json(&format!("/v1/callback-endpoints/{id}")).await;
    assert_eq!(got["url"], e["url"]);
    let list = app.get_json("/v1/callback-endpoints").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let r = app
        .client
        .delete(app.url(&format!("/v1/callback-endpoints/{id}")))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get(&format!("/v1/callback-endpoints/{id}"))
            .await
            .status(),
        404
    );
    let r = send(&app, e["url"].as_str().unwrap(), json!({})).await;
    assert_eq!(r.status(), 404, "a deleted endpoint's URL is gone");
}

async fn a_callback_is_stored_with_method_path_query_headers_body_address_and_time(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    let r = app
        .client
        .put(format!("{url}?job=7&step=done"))
        .header("x-custom", "yes")
        .json(&json!({"status": "done", "frames": 240}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));

    let w = wait(&app, &id, 0, 1000).await;
    assert_eq!(w["status"], "received");
    let c = &w["callback"];
    assert!(c["id"].as_str().unwrap().starts_with("cb_"));
    assert_eq!(c["cursor"], 1);
    assert_eq!(w["cursor"], 1);
    assert_eq!(c["method"], "PUT");
    assert_eq!(
        c["path"],
        url.split_once("/in/")
            .map(|(_, s)| format!("/in/{s}"))
            .unwrap()
    );
    assert_eq!(c["query"], "job=7&step=done");
    assert_eq!(c["headers"]["x-custom"], "yes");
    assert_eq!(c["body"], json!({"status": "done", "frames": 240}));
    assert_eq!(c["verified"], false, "scheme none verifies nothing");
    assert_eq!(c["status"], "accepted");
    assert!(c["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(c["received_at"].as_str().unwrap().ends_with('Z'));
}

async fn text_and_binary_bodies_come_back_as_body_text_and_body_base64(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    app.client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1&b=two")
        .send()
        .await
        .unwrap();
    app.client
        .post(&url)
        .header("content-type", "application/octet-stream")
        .body(vec![0xffu8, 0x00, 0x10])
        .send()
        .await
        .unwrap();
    let first = wait(&app, &id, 0, 1000).await;
    assert_eq!(first["callback"]["body_text"], "a=1&b=two");
    assert!(first["callback"].get("body").is_none());
    let second = wait(&app, &id, 1, 1000).await;
    assert_eq!(
        second["callback"]["body_base64"],
        STANDARD.encode([0xffu8, 0x00, 0x10])
    );
}

/// One scheme's correctly signed request: `(verification config, headers, body, query)`.
struct Signed {
    verification: Value,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    query: &'static str,
}

fn signed_requests() -> Vec<Signed> {
    let ts = now_secs();
    let body = br#"{"id":"evt_9","object":"event","type":"job.done"}"#.to_vec();
    let hex_mac = |key: &str, parts: &[&[u8]]| hex::encode(hmac_sha256(key.as_bytes(), parts));
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let tss = ts.to_string();
    vec![
        Signed {
            verification: json!({"scheme": "standard_webhooks", "secret": whsec}),
            headers: vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", tss.clone()),
                (
                    "webhook-signature",
                    standard_webhooks_signature(whsec, "msg_1", ts, &body).unwrap(),
                ),
            ],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "standard_webhooks", "secret": whsec}),
            headers: vec![
                ("svix-id", "msg_2".into()),
                ("svix-timestamp", tss.clone()),
                (
                    "svix-signature",
                    standard_webhooks_signature(whsec, "msg_2", ts, &body).unwrap(),
                ),
            ],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "github", "secret": "gh-secret"}),
            headers: vec![
                ("x-github-delivery", "d-1".into()),
                (
                    "x-hub-signature-256",
                    format!("sha256={}", hex_mac("gh-secret", &[&body])),
                ),
            ],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "stripe", "secret": "whsec_stripe"}),
            headers: vec![(
                "stripe-signature",
                format!(
                    "t={ts},v1={}",
                    hex_mac("whsec_stripe", &[tss.as_bytes(), b".", &body])
                ),
            )],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "shopify", "secret": "shop"}),
            headers: vec![(
                "x-shopify-hmac-sha256",
                STANDARD.encode(hmac_sha256(b"shop", &[&body])),
            )],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "slack", "secret": "slk"}),
            headers: vec![
                ("x-slack-request-timestamp", tss.clone()),
                (
                    "x-slack-signature",
                    format!(
                        "v0={}",
                        hex_mac("slk", &[b"v0:", tss.as_bytes(), b":", &body])
                    ),
                ),
            ],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "hmac", "secret": "gen", "header": "X-Sig",
                                 "encoding": "base64", "prefix": "sha256="}),
            headers: vec![(
                "x-sig",
                format!("sha256={}", STANDARD.encode(hmac_sha256(b"gen", &[&body]))),
            )],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "token", "token": "tok-123"}),
            headers: vec![("authorization", "Bearer tok-123".into())],
            body: body.clone(),
            query: "",
        },
        Signed {
            verification: json!({"scheme": "token", "token": "tok-456"}),
            headers: vec![],
            body: body.clone(),
            query: "token=tok-456",
        },
        Signed {
            verification: json!({"scheme": "a2a", "token": "a2a-tok"}),
            headers: vec![("x-a2a-notification-token", "a2a-tok".into())],
            body: br#"{"id":"task-1","status":{"state":"completed"}}"#.to_vec(),
            query: "",
        },
    ]
}

async fn post_signed(
    app: &TestApp,
    url: &str,
    s: &Signed,
    body: &[u8],
    headers: &[(&'static str, String)],
) -> reqwest::Response {
    let url = if s.query.is_empty() {
        url.to_string()
    } else {
        format!("{url}?{}", s.query)
    };
    let mut req = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

/// Changes one character of a signature or token value so it stays well-formed and decodes
/// to a different value (digits, so hex's case-insensitivity cannot undo the change).
fn one_byte_off(v: &str) -> String {
    let mut b = v.as_bytes().to_vec();
    let i = b.len() - 3;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

async fn every_scheme_accepts_a_correctly_signed_request_and_rejects_a_one_byte_change(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    for s in signed_requests() {
        let scheme = s.verification["scheme"].clone();
        let e = endpoint(&app, json!({"verification": s.verification})).await;
        let (id, url) = (e["id"].as_str().unwrap(), e["url"].as_str().unwrap());

        let r = post_signed(&app, url, &s, &s.body, &s.headers).await;
        assert_eq!(r.status(), 200, "{scheme}: {}", r.text().await.unwrap());

        // One byte of the body changed: the signature no longer matches (token schemes sign
        // nothing, so there the credential is what changes).
        let mut body = s.body.clone();
        body[3] ^= 0x01;
        let r = post_signed(&app, url, &s, &body, &s.headers).await;
        // (For `a2a` the changed body is no longer an A2A payload, so it fails as well.)
        if scheme == "token" {
            assert_eq!(r.status(), 200, "{scheme}: tokens do not cover the body");
        } else {
            assert_eq!(r.status(), 401, "{scheme}: a changed body must fail");
        }
        // One byte of the signature (or token) changed.
        let forged: Vec<_> = s
            .headers
            .iter()
            .map(|(k, v)| {
                let signs = k.contains("sig")
                    || k.contains("hmac")
                    || *k == "authorization"
                    || k.contains("token");
                (*k, if signs { one_byte_off(v) } else { v.clone() })
            })
            .collect();
        let forged_signed = Signed {
            query: if s.query.is_empty() {
                ""
            } else {
                "token=tok-45X"
            },
            verification: Value::Null,
            headers: vec![],
            body: vec![],
        };
        let r = post_signed(&app, url, &forged_signed, &s.body, &forged).await;
        assert_eq!(r.status(), 401, "{scheme}: a forged signature must fail");
        let problem: Value = r.json().await.unwrap();
        assert!(problem["code"].is_string());

        let w = wait(&app, id, 0, 1000).await;
        assert_eq!(w["status"], "received", "{scheme}");
        assert_eq!(w["callback"]["verified"], true, "{scheme}");
    }
}

async fn a_rejected_request_is_answered_401_stored_as_rejected_and_never_handed_to_a_waiter(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let e = endpoint(&app, json!({"verification": {"scheme": "github"}})).await;
    let secret = e["secret"].as_str().unwrap().to_string();
    assert!(!secret.is_empty(), "a generated secret is returned once");
    let (id, url) = (e["id"].as_str().unwrap(), e["url"].as_str().unwrap());
    let r = app
        .client
        .post(url)
        .header("x-hub-signature-256", format!("sha256={}", "00".repeat(32)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "signature_mismatch");

    let w = wait(&app, id, 0, 150).await;
    assert_eq!(
        w["status"], "pending",
        "a waiter never sees a rejected request"
    );
    assert_eq!(w["cursor"], 0);
    let rejected = app
        .get_json(&format!(
            "/v1/callback-endpoints/{id}/events?status=rejected"
        ))
        .await;
    let rows = rejected["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "rejected");
    assert!(rows[0]["cursor"].is_null());
    assert!(
        rows[0]["reject_reason"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    let ep = app.get_json(&format!("/v1/callback-endpoints/{id}")).await;
    assert_eq!(ep["rejected"], 1);
    assert!(
        ep["verification"].get("secret").is_none(),
        "never shown again"
    );

    // The genuine request still goes through afterwards.
    let sig = hex::encode(hmac_sha256(secret.as_bytes(), &[b"{}"]));
    let r = app
        .client
        .post(url)
        .header("x-hub-signature-256", format!("sha256={sig}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(wait(&app, id, 0, 1000).await["cursor"], 1);
}

async fn stale_and_replayed_signatures_are_rejected(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let whsec = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let e = endpoint(
        &app,
        json!({"verification": {"scheme": "standard_webhooks", "secret": whsec}}),
    )
    .await;
    let url = e["url"].as_str().unwrap();
    let body = br#"{"n":1}"#;
    let post = |id: &'static str, ts: i64, body: &'static [u8]| {
        let sig = standard_webhooks_signature(whsec, id, ts, body).unwrap();
        app.client
            .post(url)
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    // Stale: signed ten minutes ago.
    let r = post("msg_old", now_secs() - 600, body).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "timestamp_out_of_tolerance"
    );
    // From the future beyond the tolerance.
    let r = post("msg_future", now_secs() + 600, body).await.unwrap();
    assert_eq!(r.status(), 401);

    // A genuine request, captured and replayed six minutes later: stale by then.
    let ts = now_secs();
    let sig = standard_webhooks_signature(whsec, "msg_live", ts, body).unwrap();
    let send_captured = |body: &'static [u8]| {
        app.client
            .post(url)
            .header("webhook-id", "msg_live")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig.clone())
            .body(body)
            .send()
    };
    assert_eq!(send_captured(body).await.unwrap().status(), 200);
    // The captured signature replayed with another body.
    assert_eq!(send_captured(br#"{"n":2}"#).await.unwrap().status(), 401);
    app.clock.advance(Duration::from_secs(360));
    assert_eq!(send_captured(body).await.unwrap().status(), 401);
    let ep = app
        .get_json(&format!(
            "/v1/callback-endpoints/{}",
            e["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ep["received"], 1);
    assert_eq!(ep["rejected"], 4);
}

async fn a_duplicate_delivery_id_is_answered_200_counted_and_stored_once(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    for headers in [
        vec![("webhook-id", "msg_a")],
        vec![("x-github-delivery", "gh-1")],
        vec![("idempotency-key", "key-1")],
    ] {
        for _ in 0..3 {
            let mut req = app.client.post(&url).json(&json!({"x": 1}));
            for (k, v) in &headers {
                req = req.header(*k, *v);
            }
            assert_eq!(req.send().await.unwrap().status(), 200);
        }
    }
    // A Stripe event id in the body dedupes too.
    for _ in 0..2 {
        let r = send(&app, &url, json!({"id": "evt_s1", "object": "event"})).await;
        assert_eq!(r.status(), 200);
    }
    let dup = send(&app, &url, json!({"id": "evt_s1", "object": "event"})).await;
    assert_eq!(dup.json::<Value>().await.unwrap()["duplicate"], true);

    let page = app
        .get_json(&format!("/v1/callback-endpoints/{id}/events"))
        .await;
    let cursors: Vec<i64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cursor"].as_i64().unwrap())
        .collect();
    assert_eq!(cursors, vec![1, 2, 3, 4], "stored once each, gap-free");
    let ep = app.get_json(&format!("/v1/callback-endpoints/{id}")).await;
    assert_eq!(ep["received"], 4);
    assert_eq!(ep["duplicates"], 2 + 2 + 2 + 2);
    assert_eq!(ep["cursor"], 4);
}

async fn slack_url_verification_is_answered_with_its_challenge(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let e = endpoint(
        &app,
        json!({"verification": {"scheme": "slack", "secret": "slk"}}),
    )
    .await;
    let body = br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let ts = now_secs().to_string();
    let sig = hex::encode(hmac_sha256(b"slk", &[b"v0:", ts.as_bytes(), b":", body]));
    let r = app
        .client
        .post(e["url"].as_str().unwrap())
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", format!("v0={sig}"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    // An unsigned challenge is refused like anything else.
    let r = app
        .client
        .post(e["url"].as_str().unwrap())
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn an_a2a_notification_exposes_its_task_id_and_state(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let e = endpoint(&app, json!({"verification": {"scheme": "a2a"}})).await;
    let token = e["token"].as_str().unwrap();
    let (id, url) = (e["id"].as_str().unwrap(), e["url"].as_str().unwrap());
    // v1.0 StreamResponse with a status update.
    let r = app
        .client
        .post(url)
        .bearer_auth(token)
        .json(&json!({"statusUpdate": {"taskId": "task-77", "status": {"state": "TASK_STATE_INPUT_REQUIRED"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let w = wait(&app, id, 0, 1000).await;
    assert_eq!(w["callback"]["a2a"]["task_id"], "task-77");
    assert_eq!(w["callback"]["a2a"]["state"], "input-required");
    assert_eq!(
        w["callback"]["headers"]["authorization"], "[redacted]",
        "the endpoint's own token is not kept"
    );
    // A body that is not an A2A payload is rejected even with the right token.
    let r = app
        .client
        .post(url)
        .header("A2A-Notification-Token", token)
        .json(&json!({"hello": "world"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn an_oversized_body_is_413_and_stores_nothing(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| c.inbound_max_body_bytes = 1024).await;
    let (id, url) = open_endpoint(&app).await;
    let r = app
        .client
        .post(&url)
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "too_large");
    let r = app
        .client
        .post(&url)
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "exactly the limit is fine");
    let ep = app.get_json(&format!("/v1/callback-endpoints/{id}")).await;
    assert_eq!(ep["received"], 1);
    assert_eq!(ep["rejected"], 0);
}

async fn an_unknown_slug_is_404_and_an_expired_endpoint_is_410(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let r = send(&app, &app.url("/in/no-such-slug"), json!({})).await;
    assert_eq!(r.status(), 404);
    let e = endpoint(&app, json!({"ttl_seconds": 60})).await;
    let (id, url) = (e["id"].as_str().unwrap(), e["url"].as_str().unwrap());
    assert_eq!(send(&app, url, json!({"n": 1})).await.status(), 200);
    app.clock.advance(Duration::from_secs(61));
    let r = send(&app, url, json!({"n": 2})).await;
    assert_eq!(r.status(), 410);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "gone");
    // What arrived in time stays readable.
    assert_eq!(wait(&app, id, 0, 100).await["status"], "received");
}

async fn a_signed_scheme_answers_405_to_a_get(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let e = endpoint(&app, json!({"verification": {"scheme": "stripe"}})).await;
    let r = app
        .client
        .get(e["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // Scheme `none` captures any method.
    let (_, url) = open_endpoint(&app).await;
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
}

async fn a_flood_at_one_endpoint_is_answered_429(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| {
        c.inbound_rate_limit_per_s = 1;
        c.inbound_rate_limit_burst = 3;
    })
    .await;
    let (id, url) = open_endpoint(&app).await;
    let (_, other) = open_endpoint(&app).await;
    let mut statuses = vec![];
    for n in 0..5 {
        statuses.push(send(&app, &url, json!({"n": n})).await.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert_eq!(
        send(&app, &other, json!({})).await.status(),
        200,
        "the limit is per endpoint"
    );
    let ep = app.get_json(&format!("/v1/callback-endpoints/{id}")).await;
    assert!(ep["received"].as_i64().unwrap() <= 4);
}

async fn concurrent_callbacks_get_distinct_strictly_increasing_cursors(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    let sends = (0..40).map(|n| {
        let (client, url) = (app.client.clone(), url.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"n": n}))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for s in futures_util::future::join_all(sends).await {
        assert_eq!(s.unwrap(), 200);
    }
    let page = app
        .get_json(&format!("/v1/callback-endpoints/{id}/events?limit=100"))
        .await;
    let rows = page["data"].as_array().unwrap();
    let cursors: Vec<i64> = rows.iter().map(|c| c["cursor"].as_i64().unwrap()).collect();
    assert_eq!(cursors, (1..=40).collect::<Vec<_>>());
    let mut ns: Vec<i64> = rows
        .iter()
        .map(|c| c["body"]["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(
        ns,
        (0..40).collect::<Vec<_>>(),
        "every callback stored once"
    );
}

async fn a_tenant_token_sees_only_its_own_endpoints_and_callbacks(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.tenant("globex").await;
    let token = "acme-token";
    app.herald
        .store
        .insert_token(
            "tok_acme",
            &herald::service::tokens::hash_token(token),
            Some("acme"),
            0,
        )
        .await
        .unwrap();
    let as_acme = |req: reqwest::RequestBuilder| req.bearer_auth(token).send();
    // Acme creates one without naming a tenant: it is acme's.
    let r = as_acme(
        app.client
            .post(app.url("/v1/callback-endpoints"))
            .json(&json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let mine: Value = r.json().await.unwrap();
    assert_eq!(mine["tenant_id"], "acme");
    // Acme cannot create one for globex.
    let r = as_acme(
        app.client
            .post(app.url("/v1/callback-endpoints"))
            .json(&json!({"tenant_id": "globex"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let theirs = endpoint(&app, json!({"tenant_id": "globex"})).await;
    send(
        &app,
        theirs["url"].as_str().unwrap(),
        json!({"secret": "globex"}),
    )
    .await;
    send(&app, mine["url"].as_str().unwrap(), json!({"n": 1})).await;

    let theirs_id = theirs["id"].as_str().unwrap();
    for path in [
        format!("/v1/callback-endpoints/{theirs_id}"),
        format!("/v1/callback-endpoints/{theirs_id}/wait?timeout_ms=10"),
        format!("/v1/callback-endpoints/{theirs_id}/events"),
    ] {
        let r = as_acme(app.client.get(app.url(&path))).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let list: Value = as_acme(app.client.get(app.url("/v1/callback-endpoints")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let polled: Value = as_acme(app.client.get(app.url("/v1/callbacks?acked=false")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let polled = polled["data"].as_array().unwrap();
    assert_eq!(polled.len(), 1);
    assert_eq!(polled[0]["body"], json!({"n": 1}));
    // The admin sees both.
    let all = app.get_json("/v1/callbacks?acked=false").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
}

async fn invalid_endpoint_settings_are_422_naming_the_field(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    for (body, field) in [
        (
            json!({"verification": {"scheme": "pgp"}}),
            "verification.scheme",
        ),
        (
            json!({"verification": {"scheme": "hmac"}}),
            "verification.header",
        ),
        (
            json!({"verification": {"scheme": "standard_webhooks", "secret": "whsec_!!"}}),
            "verification.secret",
        ),
        (json!({"ttl_seconds": 0}), "ttl_seconds"),
        (json!({"metadata": [1]}), "metadata"),
        (json!({"tenant_id": "bad id!"}), "tenant_id"),
    ] {
        let r = app.post("/v1/callback-endpoints", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["field"], field, "{body}");
    }
    let r = app
        .post("/v1/callback-endpoints", json!({"tenant_id": "nobody"}))
        .await;
    assert_eq!(r.status(), 404);
    let list = app.get_json("/v1/callback-endpoints").await;
    assert!(
        list["data"].as_array().unwrap().is_empty(),
        "nothing half-written"
    );
}

/// One parser reads Standard Webhooks secrets everywhere: a secret a destination refuses is
/// refused by an inbound `standard_webhooks` endpoint and by `verify_signature` (the service
/// function the MCP tool calls), with the field named, and one it accepts signs and verifies
/// the same way in all three.
async fn a_signing_secret_is_accepted_or_refused_alike_by_destinations_endpoints_and_verify_signature(
    kind: StoreKind,
) {
    use herald::service::callbacks::{VerificationRequest, check_signature};
    let app = TestApp::spawn(kind).await;
    let rx = common::Receiver::start().await;
    app.tenant("acme").await;
    let key = STANDARD.encode([9u8; 32]);
    let cases = [
        (format!("whsec_{key}"), true),
        // The bare form the Standard Webhooks libraries also accept, and unpadded base64.
        (key.clone(), true),
        (format!("whsec_{}", key.trim_end_matches('=')), true),
        // 16 bytes: shorter than the 24 the specification asks for.
        (format!("whsec_{}", STANDARD.encode([9u8; 16])), false),
        ("whsec_not*base64!".to_string(), false),
        (format!("whsec_{}", STANDARD.encode([9u8; 65])), false),
    ];
    for (secret, ok) in cases {
        let d = app
            .post(
                "/v1/tenants/acme/destinations",
                json!({"type": "webhook", "url": rx.url, "topics": ["never"], "secret": secret}),
            )
            .await;
        let e = app
            .post(
                "/v1/callback-endpoints",
                json!({"verification": {"scheme": "standard_webhooks", "secret": secret}}),
            )
            .await;
        let v = check_signature(
            VerificationRequest {
                scheme: herald::inbound::verify::Scheme::StandardWebhooks,
                secret: Some(secret.clone()),
                ..Default::default()
            },
            &[],
            b"{}",
            now_secs(),
        );
        if ok {
            assert_eq!(d.status(), 201, "destination, {secret}");
            assert_eq!(e.status(), 201, "endpoint, {secret}");
            assert!(v.is_ok(), "verify_signature, {secret}: {v:?}");
            // Signed by the outbound signer, verified at the endpoint.
            let e: Value = e.json().await.unwrap();
            let ts = now_secs();
            let body = br#"{"ok":true}"#;
            let sig = standard_webhooks_signature(&secret, "msg_1", ts, body).unwrap();
            let r = app
                .client
                .post(e["url"].as_str().unwrap())
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig)
                .body(&body[..])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "ingest, {secret}");
        } else {
            for (what, r, field) in [
                ("destination", d, "secret"),
                ("endpoint", e, "verification.secret"),
            ] {
                assert_eq!(r.status(), 422, "{what}, {secret}");
                let p: Value = r.json().await.unwrap();
                assert_eq!(p["field"], field, "{what}, {secret}: {p}");
            }
            assert!(v.is_err(), "verify_signature, {secret}");
        }
    }
}

/// A JSON body comes back with its keys in the order the sender wrote them (not sorted), and
/// `raw_body=true` adds the exact bytes, whitespace included, for checking a signature.
async fn a_json_body_keeps_the_senders_key_order_and_its_exact_bytes_come_on_request(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    let sent = "{ \"zeta\": 1, \"alpha\": {\"y\": 2, \"b\": [3, {\"k\": 0, \"a\": 1}]} }";
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let read = |path: String| {
        let app = &app;
        async move { app.get(&path).await.text().await.unwrap() }
    };
    for text in [
        read(format!(
            "/v1/callback-endpoints/{id}/wait?after=0&timeout_ms=0"
        ))
        .await,
        read(format!("/v1/callback-endpoints/{id}/events")).await,
        read("/v1/callbacks?acked=false".to_string()).await,
    ] {
        let body = &text[text.find("\"body\":").expect("a JSON body")..];
        assert!(
            body.starts_with(r#""body":{"zeta":1,"alpha":{"y":2,"b":[3,{"k":0,"a":1}]}}"#),
            "{text}"
        );
        assert!(!text.contains("raw_body_base64"), "only on request: {text}");
    }
    let waited: Value = app
        .get_json(&format!(
            "/v1/callback-endpoints/{id}/wait?after=0&timeout_ms=0&raw_body=true"
        ))
        .await;
    let callback_id = waited["callback"]["id"].as_str().unwrap().to_string();
    for callback in [
        waited["callback"].clone(),
        app.get_json(&format!("/v1/callbacks/{callback_id}?raw_body=true"))
            .await,
        app.get_json(&format!("/v1/callback-endpoints/{id}/events?raw_body=true"))
            .await["data"][0]
            .clone(),
    ] {
        let raw = STANDARD
            .decode(callback["raw_body_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, sent.as_bytes());
        // The parsed body is still there beside it.
        assert_eq!(callback["body"]["zeta"], 1);
    }
}
