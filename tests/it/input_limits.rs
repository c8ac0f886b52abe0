//! Input limits on both stores (docs/configuration.md): each configurable limit is answered with a 4xx
//! problem+json naming the field and leaves nothing written; the per-tenant destination limit
//! holds under concurrent creates; oversized request heads are refused by the server.

use crate::{common, for_each_store};

use common::{StoreKind, TestApp};
use serde_json::{Value, json};

for_each_store!(
    each_configured_limit_is_a_problem_naming_the_field_and_writes_nothing,
    concurrent_creates_cannot_exceed_the_destinations_per_tenant_limit,
);

async fn tight(kind: StoreKind) -> TestApp {
    TestApp::spawn_with(kind, |c| {
        c.max_batch_size = 2;
        c.max_event_bytes = 100;
        c.max_topics_per_destination = 2;
        c.max_destination_headers = 1;
        c.max_destinations_per_tenant = 2;
        c.max_filter_depth = 3;
        c.max_url_length = 40;
        c.max_description_length = 10;
        c.max_header_value_length = 8;
        c.max_idempotency_key_length = 12;
    })
    .await
}

/// The answer is a problem+json with this status, naming `field` (when given); returns it.
async fn problem(r: reqwest::Response, status: u16, field: Option<&str>) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: Value = r.json().await.unwrap();
    if let Some(f) = field {
        assert_eq!(p["field"], f, "{p}");
    }
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    p
}

async fn each_configured_limit_is_a_problem_naming_the_field_and_writes_nothing(kind: StoreKind) {
    let app = tight(kind).await;
    app.tenant("acme").await;
    let ev = json!({"tenant_id": "acme", "topic": "job.done", "data": {}});

    let r = app
        .post("/v1/events/batch", json!({"events": [ev, ev, ev]}))
        .await;
    problem(r, 422, Some("events")).await;
    let big = json!({"tenant_id": "acme", "topic": "job.done", "data": {"x": "y".repeat(200)}});
    let r = app.post("/v1/events", big).await;
    problem(r, 413, Some("data")).await;
    let mut long_id = ev.clone();
    long_id["id"] = json!("k".repeat(13));
    problem(app.post("/v1/events", long_id).await, 422, Some("id")).await;
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("idempotency-key", "k".repeat(13))
        .json(&ev)
        .send()
        .await
        .unwrap();
    problem(r, 422, Some("Idempotency-Key")).await;
    let events = app.get_json("/v1/tenants/acme/events").await;
    assert_eq!(events["data"], json!([]), "no event was written");

    let hook = |extra: Value| {
        let mut d = json!({"type": "webhook", "url": "http://127.0.0.1:9/hook", "topics": ["*"]});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            hook(json!({"topics": ["a", "b", "c"]})),
        )
        .await;
    problem(r, 422, Some("topics")).await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            hook(json!({"headers": {"x-a": "1", "x-b": "2"}})),
        )
        .await;
    problem(r, 422, Some("headers")).await;
    // String lengths: URL, description, header value.
    let long_url = format!("http://127.0.0.1:9/{}", "p".repeat(40));
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            hook(json!({"url": long_url})),
        )
        .await;
    problem(r, 422, Some("url")).await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            hook(json!({"description": "d".repeat(11)})),
        )
        .await;
    problem(r, 422, Some("description")).await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            hook(json!({"headers": {"x-a": "v".repeat(9)}})),
        )
        .await;
    let p = problem(r, 422, None).await;
    assert!(p["field"].as_str().unwrap().starts_with("headers"), "{p}");
    // `nested(n)` is n + 1 levels deep: three pass the configured depth, four do not.
    let nested = |n: usize| (0..n).fold(json!({"x": 1}), |acc, _| json!({"$not": acc}));
    let deep = nested(3);
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            hook(json!({"filter": deep})),
        )
        .await;
    let p = problem(r, 422, None).await;
    assert!(p["field"].as_str().unwrap().starts_with("filter"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("3 levels"), "{p}");
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert_eq!(list["data"], json!([]), "no destination was written");
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            hook(json!({"filter": nested(2)})),
        )
        .await;
    assert_eq!(r.status(), 201, "within the depth");
    let r = app
        .client
        .delete(app.url(&format!(
            "/v1/tenants/acme/destinations/{}",
            r.json::<Value>().await.unwrap()["id"].as_str().unwrap()
        )))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    for _ in 0..2 {
        let r = app
            .post("/v1/tenants/acme/destinations", hook(json!({})))
            .await;
        assert_eq!(r.status(), 201);
    }
    let r = app
        .post("/v1/tenants/acme/destinations", hook(json!({})))
        .await;
    let p = problem(r, 409, None).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("max_destinations_per_tenant"),
        "{p}"
    );
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // Another tenant has its own allowance.
    app.tenant("other").await;
    let r = app
        .post("/v1/tenants/other/destinations", hook(json!({})))
        .await;
    assert_eq!(r.status(), 201);
}

async fn concurrent_creates_cannot_exceed_the_destinations_per_tenant_limit(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| c.max_destinations_per_tenant = 3).await;
    app.tenant("acme").await;
    let body = json!({"type": "webhook", "url": "http://127.0.0.1:9/hook", "topics": ["*"]});
    let creates = (0..12).map(|_| app.post("/v1/tenants/acme/destinations", body.clone()));
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_request_with_too_many_headers_is_refused_with_431() {
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| c.max_request_headers = 10).await;
    let mut req = app.client.get(app.url("/healthz"));
    for i in 0..20 {
        req = req.header(format!("x-pad-{i}"), "1");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("max_request_headers"),
        "{p}"
    );
    let big = "a".repeat(70 * 1024);
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("max_request_header_bytes"),
        "{p}"
    );
    // Within the limits the same server answers.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_client_that_trickles_its_body_is_answered_408_and_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| c.body_read_timeout_secs = 1).await;
    let endpoint: Value = app
        .post("/v1/callback-endpoints", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let slug = endpoint["slug"].as_str().unwrap();
    for path in ["/v1/events".to_string(), format!("/in/{slug}")] {
        let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"tenant",
            common::ADMIN_TOKEN
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "{path}: the server closed the connection");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
    // Nothing was published by the cut-off request, and a prompt client is served.
    app.tenant("acme").await;
    let events = app.get_json("/v1/tenants/acme/events").await;
    assert_eq!(events["data"], json!([]));
}
