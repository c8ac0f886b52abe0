//! Auto-disable and operator events, on both stores.

use crate::{common, for_each_store};

use std::time::Duration;

use common::{Receiver, Reply, StoreKind, TestApp};
use herald::domain::signature;
use serde_json::{Value, json};

for_each_store!(
    a_destination_failing_three_times_in_a_row_is_disabled_and_the_operator_is_told,
    a_success_resets_the_failure_streak,
    a_destination_enabled_again_starts_a_new_failure_streak,
    a_destination_failing_for_longer_than_the_limit_is_disabled,
    an_exhausted_delivery_is_reported_to_the_operator,
);

const OPERATOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn app_with_operator(kind: StoreKind, failures: u32, hours: u64) -> (TestApp, Receiver) {
    let operator = Receiver::start().await;
    let url = operator.url.clone();
    let app = TestApp::spawn_with(kind, move |c| {
        c.auto_disable_after_failures = failures;
        c.auto_disable_after_hours = hours;
        c.operator_webhook_url = Some(url);
        c.operator_webhook_secret = Some(OPERATOR_SECRET.into());
    })
    .await;
    app.tenant("acme").await;
    (app, operator)
}

/// A destination that always answers 500, with a long schedule of 1 s retries.
async fn failing_destination(app: &TestApp, script: Vec<Reply>) -> (String, Receiver) {
    let rx = Receiver::start_scripted(script).await;
    let (id, _) = app
        .destination_with(
            "acme",
            json!({"type": "webhook", "url": rx.url, "topics": ["*"],
                   "options": {"retry_schedule": [1, 1, 1, 1, 1, 1, 1, 1]}}),
        )
        .await;
    (id, rx)
}

async fn destination(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/tenants/acme/destinations/{id}"))
        .await
}

/// Runs attempts: tick, then move the clock past the 1 s retry delay.
async fn attempts(app: &TestApp, n: usize) {
    for _ in 0..n {
        app.worker.tick().await;
        app.clock.advance(Duration::from_secs(2));
    }
}

async fn a_destination_failing_three_times_in_a_row_is_disabled_and_the_operator_is_told(
    kind: StoreKind,
) {
    let (app, operator) = app_with_operator(kind, 3, 0).await;
    let (dst, _rx) = failing_destination(&app, vec![Reply::status(500); 20]).await;
    app.publish("acme", "job.done", json!({})).await;
    attempts(&app, 2).await;
    assert_eq!(destination(&app, &dst).await["enabled"], true);
    attempts(&app, 1).await;
    let d = destination(&app, &dst).await;
    assert_eq!(d["enabled"], false);
    assert_eq!(d["disabled_reason"], "3 consecutive failed attempts");

    // The operator event is an ordinary signed delivery of the operator tenant.
    app.worker.drain().await;
    let got = operator.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    let ts: i64 = req.headers["webhook-timestamp"].parse().unwrap();
    let sig = signature::sign(OPERATOR_SECRET, &req.headers["webhook-id"], ts, &req.body).unwrap();
    assert_eq!(req.headers["webhook-signature"], sig);
    let body = req.json();
    assert_eq!(body["type"], "destination.disabled");
    assert_eq!(body["data"]["tenant_id"], "acme");
    assert_eq!(body["data"]["destination_id"], dst);
    assert_eq!(body["data"]["topic"], "job.done");
}

async fn a_success_resets_the_failure_streak(kind: StoreKind) {
    let (app, _operator) = app_with_operator(kind, 3, 0).await;
    let script = vec![
        Reply::status(500),
        Reply::status(500),
        Reply::status(200),
        Reply::status(500),
        Reply::status(500),
        Reply::status(200),
    ];
    let (dst, rx) = failing_destination(&app, script).await;
    app.publish("acme", "a", json!({})).await;
    attempts(&app, 3).await;
    app.publish("acme", "b", json!({})).await;
    attempts(&app, 3).await;
    assert_eq!(rx.count(), 6);
    assert_eq!(destination(&app, &dst).await["enabled"], true);
}

async fn a_destination_enabled_again_starts_a_new_failure_streak(kind: StoreKind) {
    let (app, _operator) = app_with_operator(kind, 3, 1).await;
    let (dst, _rx) = failing_destination(&app, vec![Reply::status(500); 20]).await;
    app.publish("acme", "job.done", json!({})).await;
    attempts(&app, 3).await;
    assert_eq!(destination(&app, &dst).await["enabled"], false);

    // Enabled an hour later, its delivery goes on retrying: neither the three failures nor
    // the hour of them counts again.
    app.clock.advance(Duration::from_secs(3600));
    let r = app
        .post(
            &format!("/v1/tenants/acme/destinations/{dst}/enable"),
            json!({}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    attempts(&app, 2).await;
    assert_eq!(
        destination(&app, &dst).await["enabled"],
        true,
        "two failures of a new streak"
    );
    attempts(&app, 1).await;
    let d = destination(&app, &dst).await;
    assert_eq!(d["enabled"], false, "the third disables it again");
    assert_eq!(d["disabled_reason"], "3 consecutive failed attempts");
}

async fn a_destination_failing_for_longer_than_the_limit_is_disabled(kind: StoreKind) {
    let (app, _operator) = app_with_operator(kind, 0, 1).await;
    let (dst, _rx) = failing_destination(&app, vec![Reply::status(500); 20]).await;
    app.publish("acme", "a", json!({})).await;
    attempts(&app, 3).await;
    assert_eq!(
        destination(&app, &dst).await["enabled"],
        true,
        "minutes, not an hour"
    );
    app.clock.advance(Duration::from_secs(3600));
    attempts(&app, 1).await;
    let d = destination(&app, &dst).await;
    assert_eq!(d["enabled"], false);
    assert_eq!(d["disabled_reason"], "only failures for 1 hours");
}

async fn an_exhausted_delivery_is_reported_to_the_operator(kind: StoreKind) {
    let (app, operator) = app_with_operator(kind, 0, 0).await;
    let rx = Receiver::start_scripted(vec![Reply::status(500); 5]).await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": rx.url, "topics": ["*"], "options": {"retry_schedule": [1]}}),
    )
    .await;
    let id = app.publish("acme", "job.done", json!({})).await;
    attempts(&app, 2).await;
    assert_eq!(app.only_delivery("acme", &id).await["status"], "failed");
    app.worker.drain().await;
    let got = operator.received();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["type"], "delivery.exhausted");
    assert_eq!(body["data"]["event_id"], id);
    assert_eq!(body["data"]["attempts"], 2);
    assert_eq!(body["data"]["last_error"], "HTTP 500");
}
