//! Tenant isolation, on both stores: tenant A's token tried against every endpoint that names
//! tenant B's resources gets 404 every time, and B's data is unchanged afterwards.

use crate::{common, for_each_store};

use common::{Receiver, StoreKind, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

for_each_store!(
    a_tenant_token_gets_404_for_every_endpoint_naming_another_tenants_resources,
    a_tenant_token_works_on_its_own_tenant_only,
);

struct Fixture {
    app: TestApp,
    a_token: String,
    b_dst: String,
    b_evt: String,
    b_dlv: String,
    b_rec: String,
    b_ep: String,
    b_cb: String,
    b_ask: String,
}

async fn fixture(kind: StoreKind) -> Fixture {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    for t in ["a", "b"] {
        app.tenant(t).await;
        app.destination(t, &rx.url, &["*"]).await;
    }
    let b_dst = app.get_json("/v1/tenants/b/destinations").await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_evt = app.publish("b", "job.done", json!({})).await;
    app.worker.drain().await;
    let b_dlv = app.deliveries_of("b", &b_evt).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rec: Value = app
        .post(
            &format!("/v1/tenants/b/destinations/{b_dst}/recover"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let b_rec = rec["id"].as_str().unwrap().to_string();
    // B's inbound side: an endpoint with one captured callback, and an event with a reply
    // channel.
    let ep = app
        .post_json("/v1/callback-endpoints", json!({"tenant_id": "b"}))
        .await;
    let r = app
        .client
        .post(ep["url"].as_str().unwrap())
        .json(&json!({"done": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b_ep = ep["id"].as_str().unwrap().to_string();
    let b_cb = app
        .get_json(&format!("/v1/callback-endpoints/{b_ep}/events"))
        .await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = app
        .post_json(
            "/v1/events",
            json!({"tenant_id": "b", "topic": "job.ask", "data": {}, "reply": {}}),
        )
        .await;
    let b_ask = reply["id"].as_str().unwrap().to_string();
    let tok: Value = app
        .post("/v1/tenants/a/tokens", json!({}))
        .await
        .json()
        .await
        .unwrap();
    Fixture {
        a_token: tok["token"].as_str().unwrap().to_string(),
        app,
        b_dst,
        b_evt,
        b_dlv,
        b_rec,
        b_ep,
        b_cb,
        b_ask,
    }
}

async fn call(f: &Fixture, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = f
        .app
        .client
        .request(method, f.app.url(path))
        .bearer_auth(&f.a_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn a_tenant_token_gets_404_for_every_endpoint_naming_another_tenants_resources(
    kind: StoreKind,
) {
    let f = fixture(kind).await;
    let (d, e, l, r) = (&f.b_dst, &f.b_evt, &f.b_dlv, &f.b_rec);
    let (ep, cb, ask) = (&f.b_ep, &f.b_cb, &f.b_ask);
    let hook = json!({"type": "webhook", "url": "http://127.0.0.1:9/", "topics": ["*"]});
    let ev = json!({"tenant_id": "b", "topic": "x", "data": {}});
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/tenants/b".into(), None),
        (Method::PUT, "/v1/tenants/b".into(), Some(json!({}))),
        (Method::DELETE, "/v1/tenants/b".into(), None),
        (Method::POST, "/v1/tenants/b/tokens".into(), Some(json!({}))),
        (Method::GET, "/v1/tenants/b/destinations".into(), None),
        (
            Method::POST,
            "/v1/tenants/b/destinations".into(),
            Some(hook),
        ),
        (Method::GET, format!("/v1/tenants/b/destinations/{d}"), None),
        (
            Method::PATCH,
            format!("/v1/tenants/b/destinations/{d}"),
            Some(json!({"topics": ["x"]})),
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/b/destinations/{d}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/b/destinations/{d}/enable"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/b/destinations/{d}/disable"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/b/destinations/{d}/rotate-secret"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/b/destinations/{d}/recover"),
            Some(json!({"since": "2000-01-01T00:00:00Z"})),
        ),
        (Method::GET, format!("/v1/tenants/b/recoveries/{r}"), None),
        (Method::POST, "/v1/events".into(), Some(ev.clone())),
        (
            Method::POST,
            "/v1/events/batch".into(),
            Some(json!({"events": [ev]})),
        ),
        (Method::GET, format!("/v1/events/{e}"), None),
        (Method::POST, format!("/v1/events/{e}/replay"), None),
        (Method::GET, "/v1/tenants/b/events".into(), None),
        (Method::GET, "/v1/tenants/b/deliveries".into(), None),
        (Method::GET, format!("/v1/deliveries/{l}"), None),
        (Method::POST, format!("/v1/deliveries/{l}/retry"), None),
        (
            Method::POST,
            "/v1/callback-endpoints".into(),
            Some(json!({"tenant_id": "b"})),
        ),
        (Method::GET, format!("/v1/callback-endpoints/{ep}"), None),
        (Method::DELETE, format!("/v1/callback-endpoints/{ep}"), None),
        (
            Method::GET,
            format!("/v1/callback-endpoints/{ep}/wait?timeout_ms=1"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/callback-endpoints/{ep}/events"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/callback-endpoints/{ep}/stream"),
            None,
        ),
        (Method::POST, format!("/v1/callbacks/{cb}/ack"), None),
        (
            Method::GET,
            format!("/v1/events/{ask}/replies/wait?timeout_ms=1"),
            None,
        ),
    ];
    for (method, path, body) in cases {
        let resp = call(&f, method.clone(), &path, body).await;
        assert_eq!(resp.status(), 404, "{method} {path}");
    }
    // B is untouched.
    let app = &f.app;
    let dst = app
        .get_json(&format!("/v1/tenants/b/destinations/{d}"))
        .await;
    assert_eq!(dst["enabled"], true);
    assert_eq!(dst["topics"], json!(["*"]));
    let events = app.get_json("/v1/tenants/b/events").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 2);
    let cb = app
        .get_json(&format!("/v1/callback-endpoints/{ep}/events"))
        .await;
    assert_eq!(cb["data"][0]["acked_at"], Value::Null);
    // A's listings do not show B's callbacks.
    let polled = call(&f, Method::GET, "/v1/callbacks", None).await;
    assert_eq!(polled.status(), 200);
    let polled: Value = polled.json().await.unwrap();
    assert_eq!(polled["data"], json!([]));
    let listed: Value = call(&f, Method::GET, "/v1/callback-endpoints", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([]));
}

async fn a_tenant_token_works_on_its_own_tenant_only(kind: StoreKind) {
    let f = fixture(kind).await;
    let r = call(&f, Method::GET, "/v1/tenants/a/destinations", None).await;
    assert_eq!(r.status(), 200);
    let r = call(
        &f,
        Method::POST,
        "/v1/events",
        Some(json!({"tenant_id": "a", "topic": "x", "data": {}})),
    )
    .await;
    assert_eq!(r.status(), 202);
    // Platform-wide and admin-only operations stay the admin's.
    assert_eq!(
        call(&f, Method::GET, "/v1/tenants", None).await.status(),
        403
    );
    assert_eq!(
        call(&f, Method::DELETE, "/v1/tenants/a", None)
            .await
            .status(),
        403
    );
}
