//! Chaos (BENCHMARKS.md has the figures): Herald killed with SIGKILL mid-storm, Postgres restarted mid-delivery, a
//! receiver that misbehaves in every way it can, and several Herald processes on one database.
//! Each test ends with exact counts and prints its figures (`-- --nocapture` to see them).
//!
//! Its own binary, not in `tests/it`, so it never runs beside the rest of the suite: its storms
//! of thousands of events, killed Herald processes and restarted Postgres cluster would starve
//! the suite's tests that bound a wait in seconds, and the events/s figures in BENCHMARKS.md are
//! from `scripts/test --test chaos` runs with no other test of the suite beside them.
//!
//! The RabbitMQ-connection-dropped case lives with the RabbitMQ destinations, in
//! `tests/it/rabbitmq.rs` (`a_storm_loses_nothing_when_the_broker_drops_the_connection_twice_mid_delivery`).

mod chaos_support;
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos_support::{Api, ChaoticReceiver, CountingReceiver, HeraldProcess, Mode, PrivatePostgres};
use common::{StoreKind, TestApp, TestDb};
use serde_json::{Value, json};
use tokio::sync::watch;

/// A short lease, so deliveries held by a killed process are taken over within seconds; the
/// request timeout must stay a second below it (config validation).
const SHORT_LEASE: [(&str, &str); 2] = [("lease_secs", "2"), ("request_timeout_ms", "1000")];

/// Publishes events `0..n` in batches of 500 to whichever process `base` currently names. A
/// batch that fails (its process died, the database is restarting) is sent again, with the
/// same idempotency ids, once `base` changes or after a short pause, so every event is
/// published exactly once. Returns the event ids.
async fn publish_through_failures(
    tenant: &str,
    n: usize,
    mut base: watch::Receiver<String>,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ids = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let api = Api::new(&base.borrow_and_update());
        match api.publish_range(tenant, start..(start + 500).min(n)).await {
            Ok(batch) => {
                ids.extend(batch);
                start += 500;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "publishing kept failing: {e}");
                let _ = tokio::time::timeout(Duration::from_millis(200), base.changed()).await;
            }
        }
    }
    ids
}

/// Waits until none of the tenant's deliveries is still in play, so a late redelivery would
/// already have arrived before the counts are taken.
async fn settle(api: &Api, tenant: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.any_in_play(tenant).await {
        assert!(Instant::now() < deadline, "deliveries did not settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_after_herald_is_killed_with_sigkill_mid_storm() {
    const N: usize = 5000;
    let db = TestDb::new(StoreKind::Postgres).await;
    let rx = CountingReceiver::start(Duration::ZERO).await;
    let mut first = HeraldProcess::start(&db.url, &SHORT_LEASE).await;
    Api::new(&first.base)
        .tenant_with_destination("storm", &rx.url)
        .await;

    let (base_tx, base_rx) = watch::channel(first.base.clone());
    let publisher = tokio::spawn(publish_through_failures("storm", N, base_rx));
    // Kill it while deliveries are flowing (and, often, while the publisher is still at it).
    rx.wait_distinct(N / 10, Duration::from_secs(60)).await;
    first.kill9();
    let at_kill = rx.distinct();
    assert!(
        at_kill < N,
        "the kill came after the storm ({at_kill} delivered)"
    );

    let restarted = Instant::now();
    let second = HeraldProcess::start(&db.url, &SHORT_LEASE).await;
    base_tx.send(second.base.clone()).unwrap();
    let ids = publisher.await.unwrap();
    rx.wait_distinct(N, Duration::from_secs(60)).await;
    let recovery = restarted.elapsed();
    let api = Api::new(&second.base);
    settle(&api, "storm").await;

    let missing = ids.iter().filter(|id| !rx.has(id)).count();
    println!(
        "kill -9: published {}, delivered before the kill {at_kill}, distinct received {}, \
         requests {}, duplicates {}, all delivered {:.2} s after the restart began",
        ids.len(),
        rx.distinct(),
        rx.requests(),
        rx.duplicates(),
        recovery.as_secs_f64()
    );
    assert_eq!(ids.len(), N, "every event published exactly once");
    assert_eq!(missing, 0, "published events never received");
    assert_eq!(rx.distinct(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_reconnects_when_postgres_restarts_mid_delivery_and_loses_nothing() {
    const N: usize = 5000;
    const AFTER: usize = 500;
    let pg = Arc::new(
        tokio::task::spawn_blocking(PrivatePostgres::start)
            .await
            .unwrap(),
    );
    let rx = CountingReceiver::start(Duration::ZERO).await;
    let herald = HeraldProcess::start(&pg.url(), &SHORT_LEASE).await;
    let api = Api::new(&herald.base);
    api.tenant_with_destination("acme", &rx.url).await;
    let (_base_tx, base_rx) = watch::channel(herald.base.clone());
    // Restart while the storm is being published and delivered.
    let publisher = tokio::spawn(publish_through_failures("acme", N, base_rx.clone()));
    rx.wait_distinct(N / 25, Duration::from_secs(60)).await;
    let at_restart = rx.distinct();
    let began = Instant::now();
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.restart())
        .await
        .unwrap();
    let downtime = began.elapsed();
    let back_at = rx.distinct();
    assert!(
        back_at < N,
        "Postgres came back after the storm ({back_at} delivered): nothing to reconnect for"
    );

    let mut ids = publisher.await.unwrap();
    // The API reconnects too: more events are accepted (retried while the pool recovers).
    let more = publish_through_failures("acme", N + AFTER, base_rx).await;
    ids.extend(more.into_iter().skip(N));
    rx.wait_distinct(N + AFTER, Duration::from_secs(60)).await;
    let recovered = began.elapsed();
    settle(&api, "acme").await;

    let missing = ids.iter().filter(|id| !rx.has(id)).count();
    println!(
        "postgres restart: published {}, delivered before the restart {at_restart}, when it \
         was back ({:.2} s) {back_at}, distinct received {}, duplicates {}, all delivered \
         {:.2} s after the restart began",
        ids.len(),
        downtime.as_secs_f64(),
        rx.distinct(),
        rx.duplicates(),
        recovered.as_secs_f64()
    );
    assert_eq!(ids.len(), N + AFTER);
    assert_eq!(missing, 0, "published events never received");
    assert_eq!(rx.distinct(), N + AFTER);
}

for_each_store!(
    everything_reaches_a_chaotic_receiver_once_it_recovers_with_each_failure_logged_by_kind
);

/// The error kind (and status) each misbehaviour must be logged with.
fn expected_outcome(mode: Mode) -> (Value, Value) {
    match mode {
        Mode::Ok | Mode::SlowBody => (json!(200), Value::Null),
        Mode::Status500 => (json!(500), json!("status")),
        Mode::Hang => (Value::Null, json!("timeout")),
        Mode::Reset => (Value::Null, json!("connect")),
    }
}

async fn everything_reaches_a_chaotic_receiver_once_it_recovers_with_each_failure_logged_by_kind(
    kind: StoreKind,
) {
    const N: usize = 200;
    // 300 misbehaving requests, then a healthy receiver. Hangs outlast the 500 ms timeout.
    let rx = ChaoticReceiver::start(300, 7, Duration::from_millis(1500)).await;
    let app = TestApp::spawn_with(kind, |c| {
        c.request_timeout_ms = 500;
        c.worker_batch_size = 256;
        // A short schedule: one second between attempts, on the app's clock.
        c.retry_schedule = "1,1,1,1,1,1,1,1,1,1,1,1".into();
    })
    .await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let events: Vec<Value> = (0..N)
        .map(|n| json!({"tenant_id": "acme", "topic": "job.done", "data": {"n": n}}))
        .collect();
    let r = app
        .post("/v1/events/batch", json!({ "events": events }))
        .await;
    assert_eq!(r.status(), 202);
    let ids: Vec<String> = r.json::<Value>().await.unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();

    // Send everything due, then move the clock to the next retry, until all is delivered.
    let started = Instant::now();
    let mut rounds = 0;
    while rx.delivered() < N {
        assert!(rounds < 12, "not delivered after {rounds} rounds");
        app.worker.drain().await;
        app.clock.advance(Duration::from_secs(1));
        rounds += 1;
    }

    let log = rx.log();
    let mut modes: HashMap<Mode, usize> = HashMap::new();
    let mut per_id: HashMap<&str, Vec<Mode>> = HashMap::new();
    for (id, mode) in &log {
        *modes.entry(*mode).or_default() += 1;
        per_id.entry(id).or_default().push(*mode);
    }
    println!(
        "chaotic receiver ({kind:?}): {N} events, {} requests in {rounds} rounds ({:.2} s): {modes:?}",
        log.len(),
        started.elapsed().as_secs_f64()
    );
    for m in [Mode::Status500, Mode::Hang, Mode::Reset, Mode::SlowBody] {
        assert!(modes.get(&m).is_some_and(|n| *n > 0), "no {m:?} happened");
    }

    // Every delivery succeeded, and its attempt log says what the receiver did, in order.
    let mut attempts_logged = 0;
    for id in &ids {
        let d = app.only_delivery("acme", id).await;
        assert_eq!(d["status"], "succeeded", "{d}");
        let mut attempts = d["attempts"].as_array().unwrap().clone();
        attempts.sort_by_key(|a| a["attempt"].as_u64());
        let seen = &per_id[id.as_str()];
        assert_eq!(attempts.len(), seen.len(), "attempts of {id}: {attempts:?}");
        for (a, mode) in attempts.iter().zip(seen) {
            let (status, kind) = expected_outcome(*mode);
            assert_eq!(
                (&a["status_code"], &a["error_kind"]),
                (&status, &kind),
                "{mode:?}: {a}"
            );
        }
        attempts_logged += attempts.len();
    }
    assert_eq!(rx.delivered(), N);
    assert_eq!(attempts_logged, log.len(), "one attempt logged per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_three_herald_processes_on_one_postgres_never_send_a_delivery_twice_at_once() {
    // More events (`HERALD_CHAOS_EVENTS`, a multiple of 500) make the printed rates steadier.
    let n: usize = std::env::var("HERALD_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut figures = vec![];
    for processes in [1, 2, 3] {
        let db = TestDb::new(StoreKind::Postgres).await;
        // Each request is held 1 ms, so a concurrent second send of a delivery would overlap.
        let rx = CountingReceiver::start(Duration::from_millis(1)).await;
        let mut nodes = vec![];
        for _ in 0..processes {
            nodes.push(HeraldProcess::start(&db.url, &[]).await);
        }
        let apis: Vec<Api> = nodes.iter().map(|n| Api::new(&n.base)).collect();
        apis[0].tenant_with_destination("acme", &rx.url).await;

        let started = Instant::now();
        // Publish through every node in turn.
        let mut published = 0;
        for (i, start) in (0..n).step_by(500).enumerate() {
            let api = &apis[i % processes];
            published += api
                .publish_range("acme", start..start + 500)
                .await
                .unwrap()
                .len();
        }
        rx.wait_distinct(n, Duration::from_secs(60)).await;
        let secs = started.elapsed().as_secs_f64();
        settle(&apis[0], "acme").await;

        println!(
            "{processes} process(es): {n} events published and delivered in {secs:.2} s = {:.0}/s; \
             requests {}, overlapping sends {}",
            n as f64 / secs,
            rx.requests(),
            rx.overlaps()
        );
        figures.push((processes, n as f64 / secs));
        assert_eq!(published, n);
        assert_eq!(
            rx.overlaps(),
            0,
            "a delivery was sent twice at the same time"
        );
        assert_eq!(rx.distinct(), n);
        assert_eq!(rx.requests(), n as u64, "no delivery sent twice at all");
        drop(nodes);
    }
    println!("throughput by processes: {figures:?}");
}
