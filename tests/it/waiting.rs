//! Waiting on callbacks (docs/waiting.md) on both stores: long-poll, cursors, SSE resume, poll/ack,
//! and on Postgres the wake-up across processes.

use crate::inbound_support;
use crate::{common, for_each_store};

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, StoreKind, TestApp, TestDb};
use inbound_support::{open_endpoint, send, wait, wait_at};
use serde_json::{Value, json};

for_each_store!(
    a_callback_that_arrived_before_the_wait_is_returned_at_once,
    a_blocked_wait_returns_as_soon_as_a_callback_arrives,
    a_wait_with_nothing_new_ends_pending_with_the_same_cursor,
    waiting_again_with_the_returned_cursor_yields_the_next_callback_in_order,
    a_hundred_concurrent_waiters_on_a_hundred_endpoints_each_get_exactly_their_own_callback,
    an_sse_stream_resumed_with_last_event_id_after_a_dropped_connection_loses_nothing,
    poll_and_ack_work_across_endpoints,
    waits_are_capped_at_the_configured_maximum,
    a_wait_in_progress_answers_pending_when_the_server_shuts_down,
);

async fn a_callback_that_arrived_before_the_wait_is_returned_at_once(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    send(&app, &url, json!({"render": "done"})).await;
    let started = Instant::now();
    let w = wait(&app, &id, 0, 30_000).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w["status"], "received");
    assert_eq!(w["callback"]["body"], json!({"render": "done"}));
    assert_eq!(w["cursor"], 1);
    // Safe to retry with the same cursor: the same callback again.
    let again = wait(&app, &id, 0, 30_000).await;
    assert_eq!(again["callback"]["id"], w["callback"]["id"]);
}

async fn a_blocked_wait_returns_as_soon_as_a_callback_arrives(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    let base = app.base.clone();
    let waiter = {
        let id = id.clone();
        tokio::spawn(async move { wait_at(&base, &id, 0, 30_000).await })
    };
    // Until the waiter has registered, the callback would simply be found by its first read;
    // waiting for the registration makes this test exercise the wake-up.
    while app.herald.waiters.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sent = Instant::now();
    send(&app, &url, json!({"approved": true})).await;
    let w = waiter.await.unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        sent.elapsed()
    );
    assert_eq!(w["status"], "received");
    assert_eq!(w["callback"]["body"], json!({"approved": true}));
}

async fn a_wait_with_nothing_new_ends_pending_with_the_same_cursor(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    send(&app, &url, json!({})).await;
    let started = Instant::now();
    let w = wait(&app, &id, 1, 200).await;
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert_eq!(w, json!({"status": "pending", "cursor": 1}));
}

async fn waiting_again_with_the_returned_cursor_yields_the_next_callback_in_order(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    for n in 0..5 {
        send(&app, &url, json!({"n": n})).await;
    }
    let mut cursor = 0;
    for n in 0..5 {
        let w = wait(&app, &id, cursor, 1000).await;
        assert_eq!(w["callback"]["body"]["n"], n);
        let next = w["cursor"].as_i64().unwrap();
        assert!(next > cursor, "cursors strictly increase");
        cursor = next;
    }
    assert_eq!(wait(&app, &id, cursor, 50).await["status"], "pending");
}

async fn a_hundred_concurrent_waiters_on_a_hundred_endpoints_each_get_exactly_their_own_callback(
    kind: StoreKind,
) {
    let app = TestApp::spawn_with(kind, |c| c.inbound_rate_limit_per_s = 0).await;
    let mut endpoints = vec![];
    for _ in 0..100 {
        endpoints.push(open_endpoint(&app).await);
    }
    let waiters: Vec<_> = endpoints
        .iter()
        .map(|(id, _)| {
            let (base, id) = (app.base.clone(), id.clone());
            tokio::spawn(async move { wait_at(&base, &id, 0, 30_000).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.herald.waiters.len() < 100 {
        assert!(Instant::now() < deadline, "waiters did not register");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sends = endpoints.iter().enumerate().map(|(i, (_, url))| {
        let (client, url) = (app.client.clone(), url.clone());
        async move {
            let r = client
                .post(url)
                .json(&json!({"i": i}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    futures_util::future::join_all(sends).await;
    for (i, w) in waiters.into_iter().enumerate() {
        let w = w.await.unwrap();
        assert_eq!(w["status"], "received", "waiter {i}");
        assert_eq!(
            w["callback"]["body"],
            json!({"i": i}),
            "waiter {i} got another's"
        );
        assert_eq!(w["callback"]["endpoint_id"], endpoints[i].0.as_str());
        assert_eq!(w["cursor"], 1);
    }
}

/// A minimal SSE reader over a real connection: yields `(id, data)` per `callback` event.
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(app: &TestApp, endpoint_id: &str, last_event_id: Option<&str>) -> Self {
        let mut req = reqwest::Client::new()
            .get(app.url(&format!("/v1/callback-endpoints/{endpoint_id}/stream")))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        SseReader {
            resp,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut data, mut event) = (None, None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    }
                }
                if event.as_deref() == Some("callback") {
                    return (id.unwrap(), serde_json::from_str(&data.unwrap()).unwrap());
                }
                continue; // keep-alive comments
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn an_sse_stream_resumed_with_last_event_id_after_a_dropped_connection_loses_nothing(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let (id, url) = open_endpoint(&app).await;
    send(&app, &url, json!({"n": 1})).await;
    let mut sse = SseReader::open(&app, &id, None).await;
    let (first_id, first) = sse.next().await;
    assert_eq!((first_id.as_str(), &first["body"]), ("1", &json!({"n": 1})));
    // Live: arrives on the open stream.
    send(&app, &url, json!({"n": 2})).await;
    let (last_seen, second) = sse.next().await;
    assert_eq!(second["body"], json!({"n": 2}));
    drop(sse); // the connection drops

    // Sent while nobody was connected.
    send(&app, &url, json!({"n": 3})).await;
    send(&app, &url, json!({"n": 4})).await;
    let mut sse = SseReader::open(&app, &id, Some(&last_seen)).await;
    send(&app, &url, json!({"n": 5})).await;
    let mut got = vec![];
    for _ in 0..3 {
        let (event_id, c) = sse.next().await;
        assert_eq!(event_id, c["cursor"].to_string());
        got.push(c["body"]["n"].as_i64().unwrap());
    }
    assert_eq!(got, vec![3, 4, 5], "nothing lost, nothing repeated");
}

async fn poll_and_ack_work_across_endpoints(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (_, a) = open_endpoint(&app).await;
    let (b_id, b) = open_endpoint(&app).await;
    send(&app, &a, json!({"n": 1})).await;
    send(&app, &b, json!({"n": 2})).await;
    send(&app, &a, json!({"n": 3})).await;

    let page = app.get_json("/v1/callbacks?acked=false&limit=2").await;
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["body"]["n"], 1, "oldest first");
    let next = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get_json(&format!("/v1/callbacks?acked=false&after={next}"))
        .await;
    assert_eq!(rest["data"][0]["body"]["n"], 3);
    assert!(rest["next_cursor"].is_null());

    let first = rows[0]["id"].as_str().unwrap();
    let r = app
        .post(&format!("/v1/callbacks/{first}/ack"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let acked: Value = r.json().await.unwrap();
    assert!(acked["acked_at"].is_string());
    let again: Value = app
        .post(&format!("/v1/callbacks/{first}/ack"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["acked_at"], acked["acked_at"],
        "acking twice keeps the first time"
    );

    let open = app.get_json("/v1/callbacks?acked=false").await;
    let ns: Vec<_> = open["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, vec![2, 3]);
    let done = app.get_json("/v1/callbacks?acked=true").await;
    assert_eq!(done["data"].as_array().unwrap().len(), 1);
    let only_b = app
        .get_json(&format!("/v1/callbacks?endpoint_id={b_id}"))
        .await;
    assert_eq!(only_b["data"].as_array().unwrap().len(), 1);
    let r = app.post("/v1/callbacks/cb_nope/ack", json!({})).await;
    assert_eq!(r.status(), 404);
}

async fn waits_are_capped_at_the_configured_maximum(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| {
        c.wait_default_timeout_ms = 100;
        c.wait_max_timeout_ms = 300;
    })
    .await;
    let (id, _) = open_endpoint(&app).await;
    let started = Instant::now();
    let w = wait(&app, &id, 0, 3_600_000).await;
    assert_eq!(w["status"], "pending");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let r = app
        .get(&format!("/v1/callback-endpoints/{id}/wait?after=-1"))
        .await;
    assert_eq!(r.status(), 422);
    let r = app
        .get(&format!("/v1/callback-endpoints/{id}/wait?timeout_ms=soon"))
        .await;
    assert_eq!(r.status(), 422);
    let r = app.get("/v1/callback-endpoints/cbe_nope/wait").await;
    assert_eq!(r.status(), 404);
}

async fn a_wait_in_progress_answers_pending_when_the_server_shuts_down(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (id, _) = open_endpoint(&app).await;
    let waiter = {
        let (base, id) = (app.base.clone(), id.clone());
        tokio::spawn(async move { wait_at(&base, &id, 0, 30_000).await })
    };
    while app.herald.waiters.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopped = Instant::now();
    app.shutdown.trigger();
    let w = waiter.await.unwrap();
    assert_eq!(w, json!({"status": "pending", "cursor": 0}));
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_waiter_on_one_node_is_woken_by_a_callback_ingested_on_another() {
    let db = Arc::new(TestDb::new(StoreKind::Postgres).await);
    let waiting_node = TestApp::spawn_on(db.clone(), |_| {}).await;
    let ingesting_node = TestApp::spawn_on(db.clone(), |_| {}).await;
    let (id, _) = open_endpoint(&waiting_node).await;
    let slug = waiting_node
        .get_json(&format!("/v1/callback-endpoints/{id}"))
        .await["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let waiter = {
        let (base, id) = (waiting_node.base.clone(), id.clone());
        tokio::spawn(async move { wait_at(&base, &id, 0, 30_000).await })
    };
    while waiting_node.herald.waiters.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the first (empty) read finish and both LISTEN handshakes complete.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    let r = send(
        &ingesting_node,
        &ingesting_node.url(&format!("/in/{slug}")),
        json!({"from": "the other node"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let w = waiter.await.unwrap();
    // Only NOTIFY explains a wake-up well inside the 30 s wait.
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        sent.elapsed()
    );
    assert_eq!(w["status"], "received");
    assert_eq!(w["callback"]["body"], json!({"from": "the other node"}));
}
