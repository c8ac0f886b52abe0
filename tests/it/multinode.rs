//! Several Herald processes on one Postgres: every event is delivered, none is sent twice.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Receiver, StoreKind, TestApp, TestDb};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_deliver_a_thousand_events_with_no_duplicate_sends() {
    let db = Arc::new(TestDb::new(StoreKind::Postgres).await);
    let background = |c: &mut herald::config::Config| {
        c.worker = true;
        c.worker_batch_size = 16;
        c.worker_concurrency = 16;
    };
    let a = TestApp::spawn_on(db.clone(), background).await;
    let b = TestApp::spawn_on(db.clone(), background).await;
    let rx = Receiver::start().await;
    a.tenant("acme").await;
    a.destination("acme", &rx.url, &["*"]).await;

    // Publish through both nodes, in batches.
    for (i, node) in [&a, &b, &a, &b].iter().enumerate() {
        let events: Vec<Value> = (0..250)
            .map(|n| json!({"tenant_id": "acme", "topic": "job.done", "data": {"n": i * 250 + n}}))
            .collect();
        let r = node
            .post("/v1/events/batch", json!({"events": events}))
            .await;
        assert_eq!(r.status(), 202);
    }

    rx.wait_for(1000, Duration::from_secs(60)).await;
    // Give a duplicate, if there were one, the chance to arrive: wait until every delivery
    // is final, since a second send could only come from a delivery still in play.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut in_play = 0;
        for status in ["scheduled", "retrying", "delivering"] {
            let v = a
                .get_json(&format!(
                    "/v1/tenants/acme/deliveries?status={status}&limit=1"
                ))
                .await;
            in_play += v["data"].as_array().unwrap().len();
        }
        if in_play == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries did not settle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in rx.received() {
        *per_id.entry(r.headers["webhook-id"].clone()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 1000, "every event arrived");
    let dupes: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "sent twice: {dupes:?}");
    assert_eq!(rx.count(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_accepted_by_one_node_wakes_an_idle_worker_on_another() {
    let db = Arc::new(TestDb::new(StoreKind::Postgres).await);
    // An API-only node, and a worker node that would poll only once a minute: a prompt
    // delivery can only come from Postgres NOTIFY crossing between them.
    let api = TestApp::spawn_on(db.clone(), |c| c.worker = false).await;
    let _worker = TestApp::spawn_on(db.clone(), |c| {
        c.worker = true;
        c.poll_interval_ms = 60_000;
    })
    .await;
    let rx = Receiver::start().await;
    api.tenant("acme").await;
    api.destination("acme", &rx.url, &["*"]).await;
    // Let the worker node finish its first (empty) claim and its LISTEN handshake.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = std::time::Instant::now();
    api.publish("acme", "job.done", json!({})).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        started.elapsed()
    );
}
