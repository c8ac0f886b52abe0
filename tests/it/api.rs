//! The REST API on both stores: resources, pagination, idempotency, authentication, and bad
//! input answered with problem+json that names the field and writes nothing.

use crate::{common, for_each_store};

use common::{ADMIN_TOKEN, Receiver, StoreKind, TestApp};
use serde_json::{Value, json};

for_each_store!(
    an_event_with_an_unknown_field_is_refused_naming_it_and_writes_nothing,
    tenants_can_be_created_read_updated_listed_and_deleted,
    tenant_lists_are_paginated_with_a_cursor,
    destinations_can_be_created_read_updated_listed_and_deleted,
    the_signing_secret_is_shown_only_when_the_destination_is_created,
    an_idempotency_key_repeat_returns_the_original_event_and_creates_no_deliveries,
    an_event_id_repeat_is_idempotent_too,
    concurrent_publishes_with_one_idempotency_key_create_one_event,
    a_batch_repeating_an_id_creates_the_event_once,
    a_batch_publishes_every_event_in_request_order,
    a_batch_with_one_invalid_event_writes_nothing_and_names_it,
    malformed_json_is_a_400_and_writes_nothing,
    wrong_types_and_missing_fields_are_422_naming_the_field,
    oversized_bodies_are_413,
    an_unknown_tenant_is_404_and_writes_nothing,
    requests_without_a_valid_token_are_401,
    deliveries_can_be_filtered_by_status_destination_and_topic,
    invalid_destination_input_is_422_naming_the_field,
    events_are_listed_newest_first,
    the_openapi_document_describes_the_api,
    health_and_readiness_answer,
);

async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "errors are problem+json"
    );
    (status, r.json().await.unwrap())
}

async fn event_count(app: &TestApp, tenant: &str) -> usize {
    let r = app.get(&format!("/v1/tenants/{tenant}/events")).await;
    let v: Value = r.json().await.unwrap();
    v["data"].as_array().map_or(0, |a| a.len())
}

async fn tenants_can_be_created_read_updated_listed_and_deleted(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let r = app
        .put("/v1/tenants/acme", json!({"metadata": {"plan": "pro"}}))
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .put("/v1/tenants/acme", json!({"metadata": {"plan": "team"}}))
        .await;
    assert_eq!(r.status(), 200);
    let t = app.get_json("/v1/tenants/acme").await;
    assert_eq!(t["metadata"]["plan"], "team");
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));
    let list = app.get_json("/v1/tenants").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let r = app
        .client
        .delete(app.url("/v1/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get("/v1/tenants/acme").await.status(), 404);
}

async fn tenant_lists_are_paginated_with_a_cursor(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    for i in 0..5 {
        app.tenant(&format!("t{i}")).await;
    }
    let p1 = app.get_json("/v1/tenants?limit=2").await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 2);
    let c = p1["next_cursor"].as_str().unwrap();
    let p2 = app
        .get_json(&format!("/v1/tenants?limit=2&after={c}"))
        .await;
    let p3 = app
        .get_json(&format!(
            "/v1/tenants?limit=2&after={}",
            p2["next_cursor"].as_str().unwrap()
        ))
        .await;
    let ids: Vec<_> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["t0", "t1", "t2", "t3", "t4"]);
    assert!(p3["next_cursor"].is_null());
    let (status, p) = problem(app.get("/v1/tenants?limit=abc").await).await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "limit");
}

async fn destinations_can_be_created_read_updated_listed_and_deleted(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let (id, _) = app
        .destination_with(
            "acme",
            json!({"type": "webhook", "url": "http://127.0.0.1:9/a", "topics": ["job.*"],
                   "description": "jobs", "options": {"timeout_ms": 5000}}),
        )
        .await;
    assert!(id.starts_with("dst_"));
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{id}"))
        .await;
    assert_eq!(d["type"], "webhook");
    assert_eq!(d["topics"], json!(["job.*"]));
    assert_eq!(d["options"]["timeout_ms"], 5000);
    assert_eq!(d["enabled"], true);

    let r = app
        .client
        .patch(app.url(&format!("/v1/tenants/acme/destinations/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"topics": ["render.done"], "description": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["topics"], json!(["render.done"]));
    assert!(d["description"].is_null());
    assert_eq!(d["url"], "http://127.0.0.1:9/a", "untouched fields stay");

    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // Another tenant cannot reach it by id.
    app.tenant("other").await;
    assert_eq!(
        app.get(&format!("/v1/tenants/other/destinations/{id}"))
            .await
            .status(),
        404
    );
    let r = app
        .client
        .delete(app.url(&format!("/v1/tenants/acme/destinations/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get(&format!("/v1/tenants/acme/destinations/{id}"))
            .await
            .status(),
        404
    );
}

async fn the_signing_secret_is_shown_only_when_the_destination_is_created(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let (id, secret) = app.destination("acme", "http://127.0.0.1:9/", &["*"]).await;
    assert!(secret.starts_with("whsec_"));
    let d = app
        .get(
            "/v1/tenants/acme/destinations/"
                .to_string()
                .as_str()
                .to_owned()
                .as_str(),
        )
        .await;
    drop(d);
    let text = app
        .get(&format!("/v1/tenants/acme/destinations/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&secret));
    assert!(!text.contains("whsec_"));
}

async fn an_idempotency_key_repeat_returns_the_original_event_and_creates_no_deliveries(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.destination("acme", "http://127.0.0.1:9/", &["*"]).await;
    let publish = || async {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .header("idempotency-key", "order-42")
            .json(&json!({"tenant_id": "acme", "topic": "order.paid", "data": {}}))
            .send()
            .await
            .unwrap()
    };
    let first = publish().await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = publish().await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["deliveries"], 1);
    assert_eq!(event_count(&app, "acme").await, 1);
    let all = app.get_json("/v1/tenants/acme/deliveries").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
}

async fn an_event_id_repeat_is_idempotent_too(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.destination("acme", "http://127.0.0.1:9/", &["*"]).await;
    let body = json!({"tenant_id": "acme", "topic": "order.paid", "data": {}, "id": "ord_1"});
    let a: Value = app
        .post("/v1/events", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let r = app.post("/v1/events", body).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    let e = app
        .get_json(&format!("/v1/events/{}", a["id"].as_str().unwrap()))
        .await;
    assert_eq!(e["idempotency_key"], "ord_1");
    assert_eq!(event_count(&app, "acme").await, 1);
}

async fn a_batch_publishes_every_event_in_request_order(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let events: Vec<Value> = (0..50)
        .map(|i| json!({"tenant_id": "acme", "topic": "job.done", "data": {"n": i}}))
        .collect();
    let r = app
        .post("/v1/events/batch", json!({"events": events}))
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    let out = v["events"].as_array().unwrap();
    assert_eq!(out.len(), 50);
    for (i, e) in out.iter().enumerate() {
        assert_eq!(e["deliveries"], 1);
        let ev = app
            .get_json(&format!("/v1/events/{}", e["id"].as_str().unwrap()))
            .await;
        assert_eq!(ev["data"]["n"], i);
    }
    app.worker.drain().await;
    assert_eq!(rx.count(), 50);
}

async fn a_batch_with_one_invalid_event_writes_nothing_and_names_it(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let r = app
        .post(
            "/v1/events/batch",
            json!({"events": [
                {"tenant_id": "acme", "topic": "ok", "data": {}},
                {"tenant_id": "acme", "topic": "not ok", "data": {}},
            ]}),
        )
        .await;
    let (status, p) = problem(r).await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "events[1].topic");
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"tenant_id": "acme", "topic": "a", "data": {}}))
        .collect();
    let (status, p) = problem(
        app.post("/v1/events/batch", json!({"events": too_many}))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "events");
    assert_eq!(event_count(&app, "acme").await, 0);
}

/// A misspelt field (`destinaton_id`) would otherwise be ignored and the event fanned out to
/// every destination; it is a 422 naming the field, alone or inside a batch.
async fn an_event_with_an_unknown_field_is_refused_naming_it_and_writes_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let r = app
        .post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "a", "data": {}, "destinaton_id": "dst_x"}),
        )
        .await;
    let (status, p) = problem(r).await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "destinaton_id", "{p}");
    let r = app
        .post(
            "/v1/events/batch",
            json!({"events": [
                {"tenant_id": "acme", "topic": "ok", "data": {}},
                {"tenant_id": "acme", "topic": "ok", "data": {}, "metdata": {}},
            ]}),
        )
        .await;
    let (status, p) = problem(r).await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "events[1].metdata", "{p}");
    assert_eq!(event_count(&app, "acme").await, 0);
}

async fn malformed_json_is_a_400_and_writes_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let (status, p) = problem(
        app.post_raw("/v1/events", r#"{"tenant_id": "acme", "#)
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(p["code"], "malformed_json");
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(event_count(&app, "acme").await, 0);
}

async fn wrong_types_and_missing_fields_are_422_naming_the_field(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let (status, p) = problem(
        app.post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": 5, "data": {}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "topic");
    let (status, p) = problem(
        app.post("/v1/events", json!({"tenant_id": "acme", "topic": "a"}))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "data");
    let (status, p) = problem(
        app.post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "a", "data": {}, "metadata": [1]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "metadata");
    assert_eq!(event_count(&app, "acme").await, 0);
}

async fn oversized_bodies_are_413(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    // Larger than the per-event limit (512 KiB) but within the body limit.
    let big = "x".repeat(600 * 1024);
    let (status, p) = problem(
        app.post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "a", "data": {"big": big}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(p["field"], "data");
    // Larger than the whole-body limit (4 MiB): refused on its Content-Length alone, before
    // any of it is read. (Over a raw socket: an HTTP client still uploading would see the early
    // answer as a broken connection.)
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        5 * 1024 * 1024
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert_eq!(event_count(&app, "acme").await, 0);
}

async fn an_unknown_tenant_is_404_and_writes_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let (status, p) = problem(
        app.post(
            "/v1/events",
            json!({"tenant_id": "ghost", "topic": "a", "data": {}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(p["code"], "not_found");
    let (status, _) = problem(
        app.post(
            "/v1/tenants/ghost/destinations",
            json!({"type": "webhook", "url": "http://127.0.0.1:9/", "topics": ["*"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    app.tenant("ghost").await;
    assert_eq!(event_count(&app, "ghost").await, 0);
    let list = app.get_json("/v1/tenants/ghost/destinations").await;
    assert!(list["data"].as_array().unwrap().is_empty());
}

async fn requests_without_a_valid_token_are_401(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let r = app.client.get(app.url("/v1/tenants")).send().await.unwrap();
    let (status, p) = problem(r).await;
    assert_eq!(status, 401);
    assert_eq!(p["code"], "unauthorized");
    let r = app
        .client
        .get(app.url("/v1/tenants"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn deliveries_can_be_filtered_by_status_destination_and_topic(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let (a, _) = app.destination("acme", &rx.url, &["job.*"]).await;
    let (b, _) = app.destination("acme", &rx.url, &["*"]).await;
    app.publish("acme", "job.done", json!({})).await;
    app.publish("acme", "render.done", json!({})).await;
    let n = |v: Value| v["data"].as_array().unwrap().len();
    assert_eq!(n(app.get_json("/v1/tenants/acme/deliveries").await), 3);
    assert_eq!(
        n(app
            .get_json(&format!("/v1/tenants/acme/deliveries?destination_id={a}"))
            .await),
        1
    );
    assert_eq!(
        n(app
            .get_json(&format!("/v1/tenants/acme/deliveries?destination_id={b}"))
            .await),
        2
    );
    assert_eq!(
        n(app
            .get_json("/v1/tenants/acme/deliveries?topic=render.done")
            .await),
        1
    );
    assert_eq!(
        n(app
            .get_json("/v1/tenants/acme/deliveries?status=scheduled")
            .await),
        3
    );
    app.worker.drain().await;
    assert_eq!(
        n(app
            .get_json("/v1/tenants/acme/deliveries?status=succeeded")
            .await),
        3
    );
    let (status, p) = problem(app.get("/v1/tenants/acme/deliveries?status=bogus").await).await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "status");
}

async fn invalid_destination_input_is_422_naming_the_field(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let cases = [
        (
            json!({"type": "webhook", "url": "ftp://x", "topics": ["*"]}),
            "url",
        ),
        (
            json!({"type": "webhook", "url": "not a url", "topics": ["*"]}),
            "url",
        ),
        (
            json!({"type": "webhook", "url": "http://x.test", "topics": []}),
            "topics",
        ),
        (
            json!({"type": "webhook", "url": "http://x.test", "topics": ["a b"]}),
            "topics[0]",
        ),
        (
            json!({"type": "smtp", "url": "http://x.test", "topics": ["*"]}),
            "type",
        ),
        (
            json!({"type": "webhook", "url": "http://x.test", "topics": ["*"], "options": {"timeout_ms": 1}}),
            "options.timeout_ms",
        ),
        (
            json!({"type": "webhook", "url": "http://x.test", "topics": ["*"], "secret": "nope"}),
            "secret",
        ),
        (
            json!({"type": "webhook", "url": "http://x.test", "topics": ["*"], "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let (status, p) = problem(
            app.post("/v1/tenants/acme/destinations", body.clone())
                .await,
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(p["field"], field, "{body}: {p}");
    }
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert!(
        list["data"].as_array().unwrap().is_empty(),
        "nothing was written"
    );
}

async fn events_are_listed_newest_first(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let a = app.publish("acme", "a", json!({})).await;
    let b = app.publish("acme", "b", json!({})).await;
    let list = app.get_json("/v1/tenants/acme/events").await;
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(b), json!(a)]);
    assert_eq!(app.get("/v1/events/evt_missing").await.status(), 404);
}

async fn the_openapi_document_describes_the_api(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/events",
        "/v1/events/batch",
        "/v1/tenants/{tenant_id}/destinations",
        "/v1/deliveries/{id}/retry",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    for scheme in ["admin_token", "tenant_token"] {
        assert_eq!(
            doc["components"]["securitySchemes"][scheme]["scheme"], "bearer",
            "{scheme}"
        );
    }
}

async fn health_and_readiness_answer(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    for p in ["/healthz", "/readyz"] {
        let r = app.client.get(app.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
}

async fn concurrent_publishes_with_one_idempotency_key_create_one_event(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.destination("acme", "http://127.0.0.1:9/", &["*"]).await;
    let publishes = (0..20).map(|_| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .header("idempotency-key", "same")
            .json(&json!({"tenant_id": "acme", "topic": "a", "data": {}}))
            .send()
    });
    let answers = futures_util::future::join_all(publishes).await;
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for r in answers {
        let r = r.unwrap();
        created += usize::from(r.status() == 202);
        assert!(r.status() == 202 || r.status() == 200, "{}", r.status());
        let v: Value = r.json().await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    assert_eq!(event_count(&app, "acme").await, 1);
}

async fn a_batch_repeating_an_id_creates_the_event_once(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let e = json!({"tenant_id": "acme", "topic": "a", "data": {}, "id": "k1"});
    let v: Value = app
        .post("/v1/events/batch", json!({"events": [e.clone(), e]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["events"][0]["id"], v["events"][1]["id"]);
    assert_eq!(event_count(&app, "acme").await, 1);
}
