//! Operations on both stores: secret rotation, payload filters, retention, graceful shutdown.

use crate::{common, for_each_store};

use std::time::Duration;

use common::{Receiver, Reply, StoreKind, TestApp};
use herald::domain::signature;
use herald::domain::state::DeliveryStatus;
use herald::store::Scope;
use serde_json::{Value, json};

for_each_store!(
    a_rotated_secret_and_the_previous_one_both_sign_until_the_overlap_ends,
    a_destination_filter_decides_which_events_it_receives,
    an_invalid_filter_is_refused_naming_the_operator_and_its_path,
    retention_deletes_old_finished_events_and_keeps_new_and_unfinished_ones,
    a_clean_shutdown_leaves_no_delivery_in_flight,
    metrics_expose_outcomes_attempt_latency_and_the_queue,
    a_worker_only_node_serves_health_and_metrics_but_not_the_api,
);

async fn a_rotated_secret_and_the_previous_one_both_sign_until_the_overlap_ends(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let (id, old) = app.destination("acme", &rx.url, &["*"]).await;
    let r = app
        .post(
            &format!("/v1/tenants/acme/destinations/{id}/rotate-secret"),
            json!({"overlap_secs": 3600}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let new = v["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);

    let verify = |req: &common::Received, secret: &str| {
        let ts: i64 = req.headers["webhook-timestamp"].parse().unwrap();
        signature::sign(secret, &req.headers["webhook-id"], ts, &req.body).unwrap()
    };
    app.publish("acme", "a", json!({})).await;
    app.worker.drain().await;
    let req = &rx.received()[0];
    let sigs: Vec<&str> = req.headers["webhook-signature"].split(' ').collect();
    assert_eq!(sigs, vec![verify(req, &new), verify(req, &old)]);

    app.clock.advance(Duration::from_secs(3601));
    app.publish("acme", "a", json!({})).await;
    app.worker.drain().await;
    let req = &rx.received()[1];
    assert_eq!(req.headers["webhook-signature"], verify(req, &new));

    let r = app
        .post(
            &format!("/v1/tenants/acme/destinations/{id}/rotate-secret"),
            json!({"secret": "not-a-secret"}),
        )
        .await;
    assert_eq!(r.status(), 422);
}

async fn a_destination_filter_decides_which_events_it_receives(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": rx.url, "topics": ["job.*"],
               "filter": {"$or": [{"data.score": {"$gte": 90}}, {"metadata.vip": true}]}}),
    )
    .await;
    let publish = |data: Value, metadata: Value| {
        let app = &app;
        async move {
            let r = app
                .post(
                    "/v1/events",
                    json!({"tenant_id": "acme", "topic": "job.done", "data": data, "metadata": metadata}),
                )
                .await;
            let v: Value = r.json().await.unwrap();
            v["deliveries"].as_u64().unwrap()
        }
    };
    assert_eq!(publish(json!({"score": 95}), json!({})).await, 1);
    assert_eq!(publish(json!({"score": 10}), json!({})).await, 0);
    assert_eq!(publish(json!({"score": 10}), json!({"vip": true})).await, 1);
    app.worker.drain().await;
    assert_eq!(rx.count(), 2);
}

async fn an_invalid_filter_is_refused_naming_the_operator_and_its_path(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "webhook", "url": "http://127.0.0.1:9/", "topics": ["*"],
                   "filter": {"$and": [{"data.x": {"$bogus": 1}}]}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    let field = p["field"].as_str().unwrap();
    assert!(
        field.starts_with("filter.") && field.contains("$bogus"),
        "{field}"
    );
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert!(list["data"].as_array().unwrap().is_empty());
}

async fn retention_deletes_old_finished_events_and_keeps_new_and_unfinished_ones(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let ok = Receiver::start().await;
    let failing = Receiver::start_scripted(vec![Reply::status(500); 10]).await;
    app.tenant("acme").await;
    app.destination("acme", &ok.url, &["ok"]).await;
    app.destination("acme", &failing.url, &["retry"]).await;
    let old: Vec<String> =
        futures_util::future::join_all((0..3).map(|_| app.publish("acme", "ok", json!({})))).await;
    let unfinished = app.publish("acme", "retry", json!({})).await;
    app.worker.drain().await;
    assert_eq!(
        app.only_delivery("acme", &unfinished).await["status"],
        "retrying"
    );

    app.clock.advance(Duration::from_secs(31 * 24 * 3600));
    let fresh = app.publish("acme", "ok", json!({})).await;
    app.worker.tick().await;
    assert_eq!(app.worker.purge_expired().await, 3);

    for id in &old {
        assert_eq!(app.get(&format!("/v1/events/{id}")).await.status(), 404);
    }
    assert_eq!(app.get(&format!("/v1/events/{fresh}")).await.status(), 200);
    assert_eq!(
        app.get(&format!("/v1/events/{unfinished}")).await.status(),
        200,
        "still in play"
    );
    let ds = app.get_json("/v1/tenants/acme/deliveries").await;
    assert_eq!(
        ds["data"].as_array().unwrap().len(),
        2,
        "deliveries went with their events"
    );
    assert_eq!(app.worker.purge_expired().await, 0);
}

async fn a_clean_shutdown_leaves_no_delivery_in_flight(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| {
        c.worker = true;
        c.shutdown_grace_secs = 1;
    })
    .await;
    // A receiver that takes far longer than the grace period.
    let slow =
        Receiver::start_scripted(vec![Reply::status(200).delay(Duration::from_secs(30))]).await;
    let quick = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &slow.url, &["slow"]).await;
    app.destination("acme", &quick.url, &["quick"]).await;
    let stuck = app.publish("acme", "slow", json!({})).await;
    let done = app.publish("acme", "quick", json!({})).await;
    quick.wait_for(1, Duration::from_secs(10)).await;
    // Wait until the slow send is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.only_delivery("acme", &stuck).await["status"] != "delivering" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stuck_id = app.only_delivery("acme", &stuck).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done_id = app.only_delivery("acme", &done).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    app.stop().await;
    // The API is down now; read the store directly.
    let get = |id: String| {
        let h = app.herald.clone();
        async move { h.get_delivery(Scope::Admin, &id).await.unwrap() }
    };
    let d = get(stuck_id).await;
    assert_eq!(
        d.status,
        DeliveryStatus::Retrying,
        "released, not left delivering"
    );
    assert_eq!(d.last_error.as_deref(), Some("interrupted by shutdown"));
    assert_eq!(get(done_id).await.status, DeliveryStatus::Succeeded);
}

async fn metrics_expose_outcomes_attempt_latency_and_the_queue(kind: StoreKind) {
    let (app, rx) = (TestApp::spawn(kind).await, Receiver::start().await);
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    app.publish("acme", "a", json!({})).await;
    app.worker.drain().await;
    app.publish("acme", "a", json!({})).await; // left waiting in the queue

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    // Counters are process-wide (other tests run alongside), the queue is this store's own.
    assert!(text.contains("herald_events_published_total "), "{text}");
    assert!(text.contains(r#"herald_delivery_outcomes_total{outcome="succeeded"}"#));
    assert!(text.contains(r#"herald_attempt_duration_seconds_bucket{le="0.005",result="ok"}"#));
    assert!(text.lines().any(|l| l == "herald_queue_depth 1"), "{text}");
    assert!(text.contains("herald_queue_lag_seconds "));
}

async fn a_worker_only_node_serves_health_and_metrics_but_not_the_api(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| {
        c.api = false;
        c.worker = true;
    })
    .await;
    assert_eq!(app.get("/v1/tenants").await.status(), 404);
    assert_eq!(app.get("/openapi.json").await.status(), 404);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
}

/// Logs written to a pipe (a file, journald, a container's log driver) are plain text: no
/// ANSI colour escapes, though the same build colours them on a terminal.
#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_colour_escapes() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .current_dir(dir.path())
        .env("HERALD_DATA_DIR", dir.path())
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ADMIN_TOKEN", "log-test")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("HERALD_LOG_FORMAT")
        .env_remove("HERALD_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let running = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("Herald is running") {
                return true;
            }
        }
        false
    })
    .await;
    child.kill().await.unwrap();
    assert_eq!(running, Ok(true), "no start-up line in:\n{seen}");
    assert!(seen.contains("INFO"), "{seen}");
    assert!(
        !seen.contains('\u{1b}'),
        "ANSI escapes in piped logs:\n{seen:?}"
    );
}
