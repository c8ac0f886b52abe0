//! Security on both stores: private and loopback destinations are refused unless explicitly
//! allowed (at save and at connect time); slow clients are cut off.

use crate::{common, for_each_store};

use common::{Receiver, StoreKind, TestApp};
use serde_json::{Value, json};

for_each_store!(
    a_literal_private_address_is_refused_when_the_destination_is_saved,
    a_host_name_that_resolves_to_loopback_is_blocked_at_connect_time,
    https_only_refuses_plain_http_destinations,
);

async fn guarded(kind: StoreKind) -> TestApp {
    TestApp::spawn_with(kind, |c| c.allow_private_destinations = false).await
}

async fn a_literal_private_address_is_refused_when_the_destination_is_saved(kind: StoreKind) {
    let app = guarded(kind).await;
    app.tenant("acme").await;
    for url in [
        "http://127.0.0.1:8080/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://0x7f000001/",
        "http://2130706433/",
    ] {
        let r = app
            .post(
                "/v1/tenants/acme/destinations",
                json!({"type": "webhook", "url": url, "topics": ["*"]}),
            )
            .await;
        assert_eq!(r.status(), 422, "{url}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["field"], "url");
    }
}

async fn a_host_name_that_resolves_to_loopback_is_blocked_at_connect_time(kind: StoreKind) {
    let app = guarded(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    // `localhost` passes the save-time check (it is a name), and is refused when resolved.
    let url = rx.url.replace("127.0.0.1", "localhost");
    app.destination("acme", &url, &["*"]).await;
    let id = app.publish("acme", "job.done", json!({})).await;
    app.worker.drain().await;
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    assert_eq!(d["attempts"][0]["error_kind"], "blocked_address");
    assert_eq!(rx.count(), 0);
}

async fn https_only_refuses_plain_http_destinations(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| c.https_only = true).await;
    app.tenant("acme").await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "webhook", "url": "http://example.com/hook", "topics": ["*"]}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "webhook", "url": "https://example.com/hook", "topics": ["*"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    // The same for brokers: plain AMQP is refused by name, amqps:// is fine.
    for (scheme, status) in [("amqp", 422), ("amqps", 201)] {
        let r = app
            .post(
                "/v1/tenants/acme/destinations",
                json!({"type": "rabbitmq", "amqp_url": format!("{scheme}://u:p@rabbit.example.com/%2f"),
                       "exchange": "x", "topics": ["*"]}),
            )
            .await;
        assert_eq!(r.status(), status, "{scheme}");
        if status == 422 {
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["field"], "amqp_url");
            assert!(
                problem["detail"].as_str().unwrap().contains("amqps://"),
                "{problem}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| c.header_read_timeout_secs = 1).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // Headers started but never finished.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A well-behaved client on a fresh connection is still served.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
