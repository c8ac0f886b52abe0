//! Reply channels (docs/reply-channels.md) on both stores: an event carries a URL its subscriber answers on,
//! and the publisher waits for the answer. Real receiver, real HTTP, both directions.

use crate::{common, for_each_store};

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Receiver, StoreKind, TestApp};
use serde_json::{Value, json};

for_each_store!(
    publish_then_the_subscriber_answers_on_the_reply_url_and_the_publishers_wait_returns_it,
    every_delivery_of_the_event_carries_the_same_reply_url_and_the_data_format_gets_the_header,
    an_event_without_a_reply_channel_has_no_reply_url_and_its_replies_wait_is_404,
    an_idempotent_republish_returns_the_original_reply_url,
    an_invalid_reply_ttl_is_422_and_publishes_nothing,
);

async fn publish_with_reply(app: &TestApp, body: Value) -> Value {
    let r = app.post("/v1/events", body).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn publish_then_the_subscriber_answers_on_the_reply_url_and_the_publishers_wait_returns_it(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["plan.*"]).await;

    // 1. The publisher asks for a review and a reply channel.
    let published = publish_with_reply(
        &app,
        json!({"tenant_id": "acme", "topic": "plan.review", "data": {"plan": "ship it"},
               "reply": {"ttl_seconds": 600}}),
    )
    .await;
    let event_id = published["id"].as_str().unwrap().to_string();
    let reply_url = published["reply_url"].as_str().unwrap().to_string();
    assert!(reply_url.starts_with(&format!("{}/in/", app.base)));

    // 2. The publisher starts waiting for the answer before it exists.
    let waiter = {
        let (base, event_id) = (app.base.clone(), event_id.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!(
                    "{base}/v1/events/{event_id}/replies/wait?timeout_ms=30000"
                ))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };

    // 3. The receiver gets the event with the reply URL, in the header and the envelope.
    app.worker.drain().await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let event = &got[0];
    assert_eq!(event.headers["webhook-reply-url"], reply_url);
    let envelope = event.json();
    assert_eq!(envelope["reply_url"], reply_url);
    assert_eq!(envelope["data"], json!({"plan": "ship it"}));

    // 4. The subscriber answers on the reply URL (no token: the URL is the capability).
    let answered = Instant::now();
    let r = reqwest::Client::new()
        .post(envelope["reply_url"].as_str().unwrap())
        .header("webhook-id", "answer-1")
        .json(&json!({"decision": "approved", "by": "reviewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // 5. The publisher's wait returns the answer.
    let w = waiter.await.unwrap();
    assert!(answered.elapsed() < Duration::from_secs(5));
    assert_eq!(w["status"], "received");
    assert_eq!(
        w["callback"]["body"],
        json!({"decision": "approved", "by": "reviewer"})
    );
    // The next wait, after that cursor, has nothing more.
    let cursor = w["cursor"].as_i64().unwrap();
    let next = app
        .get_json(&format!(
            "/v1/events/{event_id}/replies/wait?after={cursor}&timeout_ms=50"
        ))
        .await;
    assert_eq!(next["status"], "pending");
    // The reply channel is an ordinary endpoint of the tenant, bound to the event.
    let endpoints = app.get_json("/v1/callback-endpoints").await;
    let channel = &endpoints["data"][0];
    assert_eq!(channel["event_id"], event_id.as_str());
    assert_eq!(channel["tenant_id"], "acme");
    assert_eq!(channel["url"], reply_url.as_str());
}

async fn every_delivery_of_the_event_carries_the_same_reply_url_and_the_data_format_gets_the_header(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let (enveloped, bare) = (Receiver::start().await, Receiver::start().await);
    app.tenant("acme").await;
    let (_, secret) = app.destination("acme", &enveloped.url, &["*"]).await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": bare.url, "topics": ["*"],
               "options": {"payload": "data"}}),
    )
    .await;
    let published = publish_with_reply(
        &app,
        json!({"tenant_id": "acme", "topic": "job.done", "data": {"k": 1}, "reply": {}}),
    )
    .await;
    let reply_url = published["reply_url"].as_str().unwrap();
    app.worker.drain().await;
    let a = &enveloped.received()[0];
    let b = &bare.received()[0];
    assert_eq!(a.headers["webhook-reply-url"], reply_url);
    assert_eq!(b.headers["webhook-reply-url"], reply_url);
    assert_eq!(
        b.json(),
        json!({"k": 1}),
        "the data format stays the publisher's bytes"
    );
    // The signature covers the envelope, reply_url included.
    let ts: i64 = a.headers["webhook-timestamp"].parse().unwrap();
    let sig =
        herald::domain::signature::sign(&secret, &a.headers["webhook-id"], ts, &a.body).unwrap();
    assert_eq!(a.headers["webhook-signature"], sig);
    assert_eq!(a.json()["reply_url"], reply_url);
    let ep = app.get_json("/v1/callback-endpoints").await;
    let expires = ep["data"][0]["expires_at"].as_str().unwrap();
    assert!(
        !expires.is_empty(),
        "reply channels always expire (default one day)"
    );
}

async fn an_event_without_a_reply_channel_has_no_reply_url_and_its_replies_wait_is_404(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let r = app
        .post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "job.done", "data": {}}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert!(v.get("reply_url").is_none());
    app.worker.drain().await;
    let got = rx.received();
    assert!(!got[0].headers.contains_key("webhook-reply-url"));
    assert!(got[0].json().get("reply_url").is_none());
    let id = v["id"].as_str().unwrap();
    let r = app.get(&format!("/v1/events/{id}/replies/wait")).await;
    assert_eq!(r.status(), 404);
    let r = app.get("/v1/events/evt_nope/replies/wait").await;
    assert_eq!(r.status(), 404);
}

async fn an_idempotent_republish_returns_the_original_reply_url(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let body = json!({"tenant_id": "acme", "topic": "job.done", "data": {}, "id": "job-1",
                      "reply": {"ttl_seconds": 60}});
    let first = publish_with_reply(&app, body.clone()).await;
    let r = app.post("/v1/events", body).await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["reply_url"], first["reply_url"]);
    let endpoints = app.get_json("/v1/callback-endpoints").await;
    assert_eq!(
        endpoints["data"].as_array().unwrap().len(),
        1,
        "one channel"
    );
}

async fn an_invalid_reply_ttl_is_422_and_publishes_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let r = app
        .post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "job.done", "data": {},
                   "reply": {"ttl_seconds": 0}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["field"], "reply.ttl_seconds");
    let events = app.get_json("/v1/tenants/acme/events").await;
    assert!(events["data"].as_array().unwrap().is_empty());
    assert!(
        app.get_json("/v1/callback-endpoints").await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
