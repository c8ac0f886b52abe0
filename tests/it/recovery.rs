//! Replay and bulk recovery on both stores: every replay is a `manual` attempt, recorded like
//! any other.

use crate::{common, for_each_store};

use std::time::Duration;

use common::{Receiver, StoreKind, TestApp};
use serde_json::{Value, json};

for_each_store!(
    replaying_an_event_sends_it_again_to_every_destination_as_a_manual_attempt,
    an_event_can_be_replayed_to_a_destination_created_after_it,
    skipped_deliveries_are_recovered_after_the_destination_is_re_enabled,
    a_recovery_takes_only_deliveries_since_its_start_time,
);

async fn replaying_an_event_sends_it_again_to_every_destination_as_a_manual_attempt(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    app.tenant("acme").await;
    app.destination("acme", &a.url, &["*"]).await;
    app.destination("acme", &b.url, &["*"]).await;
    let id = app.publish("acme", "job.done", json!({})).await;
    app.worker.drain().await;

    let r = app
        .post(&format!("/v1/events/{id}/replay"), json!({}))
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scheduled"], 2);
    app.worker.drain().await;
    assert_eq!((a.count(), b.count()), (2, 2));
    for d in app.deliveries_of("acme", &id).await {
        let d = app.delivery(d["id"].as_str().unwrap()).await;
        let triggers: Vec<_> = d["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["trigger"].clone())
            .collect();
        assert_eq!(triggers, vec![json!("scheduled"), json!("manual")]);
    }
    assert_eq!(
        app.post("/v1/events/evt_nope/replay", json!({}))
            .await
            .status(),
        404
    );
}

async fn an_event_can_be_replayed_to_a_destination_created_after_it(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    app.tenant("acme").await;
    app.destination("acme", &a.url, &["*"]).await;
    let id = app.publish("acme", "job.done", json!({})).await;
    app.worker.drain().await;
    let (late, _) = app.destination("acme", &b.url, &["*"]).await;

    let r = app
        .post(
            &format!("/v1/events/{id}/replay"),
            json!({"destination_ids": [late]}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scheduled"], 1);
    app.worker.drain().await;
    assert_eq!((a.count(), b.count()), (1, 1));
    assert_eq!(
        b.received()[0].headers["webhook-id"],
        id,
        "the same event id"
    );

    app.tenant("other").await;
    let (foreign, _) = app.destination("other", &b.url, &["*"]).await;
    let r = app
        .post(
            &format!("/v1/events/{id}/replay"),
            json!({"destination_ids": [foreign]}),
        )
        .await;
    assert_eq!(r.status(), 404, "another tenant's destination");
}

async fn skipped_deliveries_are_recovered_after_the_destination_is_re_enabled(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let (dst, _) = app.destination("acme", &rx.url, &["*"]).await;
    let base = format!("/v1/tenants/acme/destinations/{dst}");
    app.post(&format!("{base}/disable"), json!({})).await;
    for _ in 0..3 {
        app.publish("acme", "job.done", json!({})).await;
    }
    let since = "2000-01-01T00:00:00Z";
    let r = app
        .post(&format!("{base}/recover"), json!({"since": since}))
        .await;
    assert_eq!(
        r.status(),
        409,
        "recovering into a disabled destination would skip again"
    );

    app.post(&format!("{base}/enable"), json!({})).await;
    let r = app
        .post(
            &format!("{base}/recover"),
            json!({"since": since, "dry_run": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["count"], 3);

    let r = app
        .post(&format!("{base}/recover"), json!({"since": since}))
        .await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["count"], 3);
    assert_eq!(job["done"], false);
    let job_url = format!(
        "/v1/tenants/acme/recoveries/{}",
        job["id"].as_str().unwrap()
    );
    assert_eq!(app.get_json(&job_url).await["progress"]["scheduled"], 3);

    app.worker.drain().await;
    assert_eq!(rx.count(), 3);
    let job = app.get_json(&job_url).await;
    assert_eq!(job["done"], true);
    assert_eq!(job["progress"], json!({"succeeded": 3}));
    let r = app
        .post(&format!("{base}/recover"), json!({"since": "yesterday"}))
        .await;
    assert_eq!(r.status(), 422);
}

async fn a_recovery_takes_only_deliveries_since_its_start_time(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let (dst, _) = app.destination("acme", &rx.url, &["*"]).await;
    let base = format!("/v1/tenants/acme/destinations/{dst}");
    app.post(&format!("{base}/disable"), json!({})).await;
    app.publish("acme", "old", json!({})).await;
    app.clock.advance(Duration::from_secs(3600));
    let since = herald::domain::time::rfc3339(app.clock.now());
    app.publish("acme", "new", json!({})).await;
    app.post(&format!("{base}/enable"), json!({})).await;

    let job: Value = app
        .post(&format!("{base}/recover"), json!({"since": since}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["count"], 1);
    app.worker.drain().await;
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.received()[0].json()["type"], "new");
}
