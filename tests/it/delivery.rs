//! Outbound delivery end to end, on both stores, against a real receiver: signatures, fan-out,
//! retries on the schedule (with a controlled clock, no sleeping through delays), 410, leases,
//! redirects, timeouts and connection reuse.

use crate::{common, for_each_store};

use std::time::Duration;

use common::{Receiver, Reply, StoreKind, TestApp};
use herald::domain::signature;
use serde_json::json;

for_each_store!(
    a_published_event_arrives_once_signed_and_the_signature_verifies,
    an_idle_worker_delivers_a_new_event_within_milliseconds_of_publishing,
    fan_out_honours_topic_patterns_and_disabled_destinations_get_a_skipped_delivery,
    a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt,
    a_410_gone_disables_the_destination,
    exhausted_attempts_end_failed,
    a_delivery_whose_worker_crashed_is_sent_again_after_its_lease,
    retry_after_on_429_is_honoured,
    redirects_are_not_followed,
    a_receiver_slower_than_the_timeout_is_a_timeout_attempt,
    a_manual_retry_makes_a_new_attempt_marked_manual,
    a_test_event_goes_to_that_destination_alone,
    keep_alive_connections_are_reused_across_deliveries,
    the_data_payload_option_sends_the_data_alone,
    custom_headers_are_sent_and_cannot_override_herald_headers,
    a_destination_deleted_before_sending_cancels_its_pending_deliveries,
);

async fn setup(kind: StoreKind) -> (TestApp, Receiver, String) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let (_, secret) = app.destination("acme", &rx.url, &["*"]).await;
    (app, rx, secret)
}

async fn a_published_event_arrives_once_signed_and_the_signature_verifies(kind: StoreKind) {
    let (app, rx, secret) = setup(kind).await;
    let id = app
        .publish("acme", "job.completed", json!({"job": 7, "ok": true}))
        .await;
    assert_eq!(app.worker.drain().await, 1);

    let got = rx.received();
    assert_eq!(got.len(), 1, "delivered exactly once");
    let req = &got[0];
    assert_eq!(req.headers["webhook-id"], id);
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(req.headers["user-agent"].starts_with("Herald/"));
    let ts: i64 = req.headers["webhook-timestamp"].parse().unwrap();
    let expected = signature::sign(&secret, &id, ts, &req.body).unwrap();
    assert_eq!(req.headers["webhook-signature"], expected);
    let body = req.json();
    assert_eq!(body["type"], "job.completed");
    assert_eq!(body["data"], json!({"job": 7, "ok": true}));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));

    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempt_count"], 1);
    assert!(d["finalized_at"].is_string());
    let a = &d["attempts"][0];
    assert_eq!(a["status_code"], 200);
    assert_eq!(a["trigger"], "scheduled");
    assert_eq!(a["response_body"], "reply 200");
    assert!(a["error_kind"].is_null());
}

async fn an_idle_worker_delivers_a_new_event_within_milliseconds_of_publishing(kind: StoreKind) {
    // A one-minute poll interval: only the wake-up can explain a prompt delivery.
    let app = TestApp::spawn_with(kind, |c| {
        c.worker = true;
        c.poll_interval_ms = 60_000;
    })
    .await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    // Let the worker reach its idle sleep first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    app.publish("acme", "job.completed", json!({})).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

async fn fan_out_honours_topic_patterns_and_disabled_destinations_get_a_skipped_delivery(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let (all, jobs, renders, off) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    app.tenant("acme").await;
    app.destination("acme", &all.url, &["*"]).await;
    app.destination("acme", &jobs.url, &["job.*"]).await;
    app.destination("acme", &renders.url, &["render.done"])
        .await;
    let (off_id, _) = app.destination("acme", &off.url, &["job.completed"]).await;
    let r = app
        .post(
            &format!("/v1/tenants/acme/destinations/{off_id}/disable"),
            json!({"reason": "maintenance"}),
        )
        .await;
    assert_eq!(r.status(), 200);

    let id = app.publish("acme", "job.completed", json!({})).await;
    let r = app.get_json(&format!("/v1/events/{id}")).await;
    assert_eq!(r["topic"], "job.completed");
    app.worker.drain().await;

    assert_eq!(all.count(), 1);
    assert_eq!(jobs.count(), 1);
    assert_eq!(renders.count(), 0);
    assert_eq!(off.count(), 0);
    let ds = app.deliveries_of("acme", &id).await;
    assert_eq!(ds.len(), 3);
    let skipped: Vec<_> = ds.iter().filter(|d| d["status"] == "skipped").collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["destination_id"], off_id);
    assert!(skipped[0]["finalized_at"].is_string());
}

async fn a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start_scripted(vec![Reply::status(500), Reply::status(503)]).await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let id = app.publish("acme", "job.completed", json!({})).await;

    assert_eq!(app.worker.tick().await, 1);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    // The default schedule's first retry is 5 s away; nothing is due before that.
    assert_eq!(app.worker.tick().await, 0);

    app.clock.advance(Duration::from_secs(6));
    assert_eq!(app.worker.tick().await, 1);
    assert_eq!(app.only_delivery("acme", &id).await["status"], "retrying");
    // The second retry waits 5 minutes.
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(app.worker.tick().await, 0);
    app.clock.advance(Duration::from_secs(241));
    assert_eq!(app.worker.tick().await, 1);

    assert_eq!(rx.count(), 3);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempt_count"], 3);
    let attempts = d["attempts"].as_array().unwrap();
    let codes: Vec<_> = attempts
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 503, 200]);
    assert_eq!(attempts[0]["error_kind"], "status");
    assert_eq!(attempts[0]["error"], "HTTP 500");
    // Every attempt carries the same webhook-id, so receivers can dedupe.
    let ids: std::collections::HashSet<_> = rx
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 1);
}

async fn a_410_gone_disables_the_destination(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start_scripted(vec![Reply::status(410)]).await;
    app.tenant("acme").await;
    let (dst, _) = app.destination("acme", &rx.url, &["*"]).await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    app.worker.drain().await;

    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "failed");
    let dest = app
        .get_json(&format!("/v1/tenants/acme/destinations/{dst}"))
        .await;
    assert_eq!(dest["enabled"], false);
    assert!(dest["disabled_reason"].as_str().unwrap().contains("410"));

    // Later events are recorded as skipped, not sent.
    let id2 = app.publish("acme", "job.completed", json!({})).await;
    app.worker.drain().await;
    assert_eq!(app.only_delivery("acme", &id2).await["status"], "skipped");
    assert_eq!(rx.count(), 1);
}

async fn exhausted_attempts_end_failed(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start_scripted(vec![Reply::status(500); 10]).await;
    app.tenant("acme").await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": rx.url, "topics": ["*"],
               "options": {"retry_schedule": [1, 1]}}),
    )
    .await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    for _ in 0..3 {
        assert_eq!(app.worker.tick().await, 1);
        app.clock.advance(Duration::from_secs(2));
    }
    assert_eq!(app.worker.tick().await, 0);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "failed");
    assert_eq!(d["attempt_count"], 3);
    assert!(d["next_attempt_at"].is_null());
    assert_eq!(rx.count(), 3);
}

async fn a_delivery_whose_worker_crashed_is_sent_again_after_its_lease(kind: StoreKind) {
    let (app, rx, _) = setup(kind).await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    // A worker claims the delivery and "crashes": it never sends and never finishes.
    let now = app.clock.now();
    let claimed = app.herald.store.claim(10, now, now + 90_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(app.only_delivery("acme", &id).await["status"], "delivering");

    // While the lease holds, nobody else takes it.
    assert_eq!(app.worker.tick().await, 0);
    app.clock.advance(Duration::from_secs(91));
    assert_eq!(app.worker.tick().await, 1);
    assert_eq!(rx.count(), 1);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempts"][0]["attempt"], 2);
}

async fn retry_after_on_429_is_honoured(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start_scripted(vec![Reply::status(429).header("retry-after", "120")]).await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    app.worker.tick().await;
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    assert_eq!(d["attempts"][0]["response_headers"]["retry-after"], "120");
    // Not at the schedule's 5 s...
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(app.worker.tick().await, 0);
    // ...but after the 120 s the receiver asked for.
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(app.worker.tick().await, 1);
    assert_eq!(app.only_delivery("acme", &id).await["status"], "succeeded");
}

async fn redirects_are_not_followed(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let target = Receiver::start().await;
    let rx =
        Receiver::start_scripted(vec![Reply::status(302).header("location", &target.url)]).await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    app.worker.tick().await;
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    let a = &d["attempts"][0];
    assert_eq!(a["status_code"], 302);
    assert_eq!(a["error_kind"], "status");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed")
    );
    assert_eq!(target.count(), 0);
}

async fn a_receiver_slower_than_the_timeout_is_a_timeout_attempt(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start_scripted(vec![Reply::status(200).delay(Duration::from_secs(3))]).await;
    app.tenant("acme").await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": rx.url, "topics": ["*"], "options": {"timeout_ms": 1000}}),
    )
    .await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    app.worker.tick().await;
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    let a = &d["attempts"][0];
    assert_eq!(a["error_kind"], "timeout");
    assert!(a["status_code"].is_null());
    assert!(a["duration_ms"].as_u64().unwrap() >= 1000);
}

async fn a_manual_retry_makes_a_new_attempt_marked_manual(kind: StoreKind) {
    let (app, rx, _) = setup(kind).await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    app.worker.drain().await;
    let d = app.only_delivery("acme", &id).await;
    let did = d["id"].as_str().unwrap();

    let r = app
        .post(&format!("/v1/deliveries/{did}/retry"), json!({}))
        .await;
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "scheduled");
    app.worker.drain().await;

    assert_eq!(rx.count(), 2);
    let d = app.delivery(did).await;
    assert_eq!(d["status"], "succeeded");
    let triggers: Vec<_> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["trigger"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(triggers, vec!["scheduled", "manual"]);

    let r = app.post("/v1/deliveries/dlv_nope/retry", json!({})).await;
    assert_eq!(r.status(), 404);
}

async fn keep_alive_connections_are_reused_across_deliveries(kind: StoreKind) {
    let (app, rx, _) = setup(kind).await;
    for _ in 0..3 {
        app.publish("acme", "job.completed", json!({})).await;
        app.worker.drain().await;
    }
    let peers: std::collections::HashSet<_> = rx.received().iter().map(|r| r.peer).collect();
    assert_eq!(rx.count(), 3);
    assert_eq!(
        peers.len(),
        1,
        "one connection for three sequential deliveries"
    );
}

async fn the_data_payload_option_sends_the_data_alone(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": rx.url, "topics": ["*"], "options": {"payload": "data"}}),
    )
    .await;
    // Keys in the publisher's order and spacing survive byte for byte.
    let body = r#"{"tenant_id":"acme","topic":"a.b","data":{"z": 1, "a": [2, 3]}}"#;
    let r = app.post_raw("/v1/events", body).await;
    assert_eq!(r.status(), 202);
    app.worker.drain().await;
    assert_eq!(&rx.received()[0].body[..], br#"{"z": 1, "a": [2, 3]}"#);
}

async fn custom_headers_are_sent_and_cannot_override_herald_headers(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": rx.url, "topics": ["*"], "headers": {"X-Team": "blue"}}),
    )
    .await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "webhook", "url": rx.url, "topics": ["*"],
                   "headers": {"webhook-signature": "forged"}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["field"], "headers.webhook-signature");

    app.publish("acme", "job.completed", json!({})).await;
    app.worker.drain().await;
    assert_eq!(rx.received()[0].headers["x-team"], "blue");
}

async fn a_destination_deleted_before_sending_cancels_its_pending_deliveries(kind: StoreKind) {
    let (app, rx, _) = setup(kind).await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    let d = app.only_delivery("acme", &id).await;
    let dst = d["destination_id"].as_str().unwrap();
    let r = app
        .client
        .delete(app.url(&format!("/v1/tenants/acme/destinations/{dst}")))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.worker.drain().await, 0);
    assert_eq!(rx.count(), 0);
    assert_eq!(app.only_delivery("acme", &id).await["status"], "cancelled");
}

async fn a_test_event_goes_to_that_destination_alone(kind: StoreKind) {
    let (app, rx, _) = setup(kind).await;
    let other = Receiver::start().await;
    let (id, _) = app.destination("acme", &other.url, &["*"]).await;
    let r = app
        .post(
            &format!("/v1/tenants/acme/destinations/{id}/test"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["deliveries"], 1);
    app.worker.drain().await;
    assert_eq!(other.received().len(), 1);
    assert_eq!(other.received()[0].json()["type"], "herald.test");
    assert!(
        rx.received().is_empty(),
        "the other destination gets nothing"
    );
    let r = app
        .post("/v1/tenants/acme/destinations/dst_nope/test", json!({}))
        .await;
    assert_eq!(r.status(), 404);
}
