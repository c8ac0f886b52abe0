//! Per-destination limits — `max_in_flight`, `rate_limit` and FIFO ordering — on both stores,
//! and across two Herald nodes sharing one database.

use crate::{common, for_each_store};

use std::sync::Arc;
use std::time::Duration;

use common::{Receiver, Reply, StoreKind, TestApp, TestDb};
use serde_json::json;

for_each_store!(
    max_in_flight_caps_the_deliveries_claimed_at_once,
    a_rate_limit_allows_that_many_claims_per_second,
    fifo_delivers_in_publish_order_and_a_retry_holds_back_the_rest,
    unlimited_destinations_are_not_held_back_by_limited_ones,
);

async fn limited(app: &TestApp, url: &str, options: serde_json::Value) -> String {
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": url, "topics": ["*"], "options": options}),
    )
    .await
    .0
}

async fn publish_n(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..n {
        ids.push(app.publish("acme", "job.done", json!({"n": i})).await);
    }
    ids
}

async fn max_in_flight_caps_the_deliveries_claimed_at_once(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    limited(&app, &rx.url, json!({"max_in_flight": 2})).await;
    publish_n(&app, 5).await;
    let now = app.clock.now();
    let first = app
        .herald
        .store
        .claim(100, now, now + 90_000)
        .await
        .unwrap();
    assert_eq!(first.len(), 2, "two slots");
    assert!(
        app.herald
            .store
            .claim(100, now, now + 90_000)
            .await
            .unwrap()
            .is_empty()
    );
    // Finishing the claimed two frees the slots: the worker sends the rest two at a time.
    app.clock.advance(Duration::from_secs(91));
    assert_eq!(app.worker.tick().await, 2);
    assert_eq!(app.worker.tick().await, 2);
    assert_eq!(app.worker.tick().await, 1);
    assert_eq!(rx.count(), 5);
}

async fn a_rate_limit_allows_that_many_claims_per_second(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    limited(&app, "http://127.0.0.1:9/", json!({"rate_limit": 3})).await;
    publish_n(&app, 8).await;
    let store = &app.herald.store;
    // Claims at fixed instants: the limit counts claims per wall-clock second.
    let t = (app.clock.now() / 1000 + 1) * 1000;
    assert_eq!(store.claim(100, t, t + 90_000).await.unwrap().len(), 3);
    assert_eq!(
        store.claim(100, t + 500, t + 90_000).await.unwrap().len(),
        0
    );
    assert_eq!(
        store.claim(100, t + 1000, t + 90_000).await.unwrap().len(),
        3
    );
    assert_eq!(
        store.claim(100, t + 2999, t + 90_000).await.unwrap().len(),
        2
    );
}

async fn fifo_delivers_in_publish_order_and_a_retry_holds_back_the_rest(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start_scripted(vec![Reply::status(500)]).await;
    app.tenant("acme").await;
    limited(&app, &rx.url, json!({"ordering": "fifo"})).await;
    let ids = publish_n(&app, 3).await;

    assert_eq!(app.worker.tick().await, 1, "only the head goes");
    assert_eq!(
        app.worker.tick().await,
        0,
        "the failed head is retrying: the rest wait"
    );
    app.clock.advance(Duration::from_secs(6));
    for _ in 0..3 {
        assert_eq!(app.worker.tick().await, 1);
    }
    assert_eq!(app.worker.tick().await, 0);
    let order: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(
        order,
        vec![
            ids[0].clone(),
            ids[0].clone(),
            ids[1].clone(),
            ids[2].clone()
        ]
    );
}

async fn unlimited_destinations_are_not_held_back_by_limited_ones(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (slow, free) = (Receiver::start().await, Receiver::start().await);
    app.tenant("acme").await;
    limited(&app, &slow.url, json!({"ordering": "fifo"})).await;
    app.destination("acme", &free.url, &["*"]).await;
    publish_n(&app, 4).await;
    assert_eq!(
        app.worker.tick().await,
        5,
        "four free deliveries and the FIFO head"
    );
    assert_eq!(free.count(), 4);
    assert_eq!(slow.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_two_nodes_on_one_postgres() {
    let db = Arc::new(TestDb::new(StoreKind::Postgres).await);
    let a = TestApp::spawn_on(db.clone(), |_| {}).await;
    let b = TestApp::spawn_on(db.clone(), |_| {}).await;
    let rx = Receiver::start().await;
    a.tenant("acme").await;
    limited(&a, &rx.url, json!({"ordering": "fifo"})).await;
    limited(&a, &rx.url, json!({"max_in_flight": 1})).await;
    publish_n(&a, 3).await;

    // Node A claims (and, say, is still sending) the FIFO head and one capped delivery...
    let now = a.clock.now();
    assert_eq!(
        a.herald
            .store
            .claim(100, now, now + 90_000)
            .await
            .unwrap()
            .len(),
        2
    );
    // ...so node B may take nothing of either destination.
    assert_eq!(b.worker.tick().await, 0);
    assert_eq!(rx.count(), 0);
}
