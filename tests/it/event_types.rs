//! The event-type catalog on both stores: the admin defines versioned types, tenants read them,
//! and every publish path checks events against their schemas, answering a failure with
//! problem+json that names the pointer and the keyword and writing nothing.

use std::time::Duration;

use crate::{common, for_each_store};

use common::{Receiver, StoreKind, TestApp};
use serde_json::{Value, json};

for_each_store!(
    the_admin_defines_a_type_and_every_change_makes_a_new_version,
    tenants_read_the_catalog_but_cannot_change_it,
    a_schema_is_checked_when_saved_and_its_examples_must_satisfy_it,
    a_schema_never_fetches_a_remote_reference,
    an_event_that_fails_its_schema_is_refused_with_the_pointer_and_writes_nothing,
    a_batch_with_one_event_failing_its_schema_writes_nothing_and_names_it,
    an_accepted_event_records_the_version_it_was_checked_against,
    archived_types_refuse_events_and_deprecated_ones_are_flagged,
    unknown_topics_pass_by_default_and_are_refused_when_configured,
    herald_test_events_skip_the_catalog,
);

fn job_schema() -> Value {
    json!({
        "type": "object",
        "required": ["job_id"],
        "properties": {
            "job_id": {"type": "string"},
            "tokens": {"type": "integer", "minimum": 0}
        }
    })
}

async fn define(app: &TestApp, name: &str, body: Value) -> Value {
    let r = app.put(&format!("/v1/event-types/{name}"), body).await;
    assert!(r.status().is_success(), "PUT {name}: {}", r.status());
    r.json().await.unwrap()
}

/// `(status, problem)` of a refused request, checking it is problem+json.
async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    (status, r.json().await.unwrap())
}

async fn event_count(app: &TestApp, tenant: &str) -> usize {
    let v = app.get_json(&format!("/v1/tenants/{tenant}/events")).await;
    v["data"].as_array().unwrap().len()
}

async fn the_admin_defines_a_type_and_every_change_makes_a_new_version(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let body = json!({"description": "A job finished", "schema": job_schema(),
                      "examples": [{"job_id": "j1", "tokens": 10}]});
    let r = app.put("/v1/event-types/job.completed", body.clone()).await;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["version"], 1);
    assert_eq!(t["schema"], job_schema());
    assert_eq!(t["deprecated"], false);

    // The same definition again is no change; a different one is version 2.
    let r = app.put("/v1/event-types/job.completed", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);
    let t = define(
        &app,
        "job.completed",
        json!({"description": "A job finished (v2)", "schema": job_schema()}),
    )
    .await;
    assert_eq!(t["version"], 2);
    assert_eq!(t["examples"], json!([]));

    define(&app, "job.failed", json!({})).await;
    let page = app.get_json("/v1/event-types?limit=1").await;
    assert_eq!(page["data"][0]["name"], "job.completed");
    let next = page["next_cursor"].as_str().unwrap();
    let page = app
        .get_json(&format!("/v1/event-types?limit=1&after={next}"))
        .await;
    assert_eq!(page["data"][0]["name"], "job.failed");
    assert_eq!(page["data"][0]["schema"], Value::Null);
    assert!(page["next_cursor"].is_null());

    let r = app
        .client
        .delete(app.url("/v1/event-types/job.failed"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, p) = problem(app.get("/v1/event-types/job.failed").await).await;
    assert_eq!((status, p["code"].as_str()), (404, Some("not_found")));
}

async fn tenants_read_the_catalog_but_cannot_change_it(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    define(&app, "job.completed", json!({"schema": job_schema()})).await;
    let token = app.tenant_token("acme").await;
    let as_tenant =
        |m: reqwest::Method, path: &str| app.client.request(m, app.url(path)).bearer_auth(&token);
    let r = as_tenant(reqwest::Method::GET, "/v1/event-types/job.completed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = as_tenant(reqwest::Method::GET, "/v1/event-types")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"][0]["name"],
        "job.completed"
    );
    let r = as_tenant(reqwest::Method::PUT, "/v1/event-types/job.completed")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r).await.0, 403);
    let r = as_tenant(reqwest::Method::DELETE, "/v1/event-types/job.completed")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r).await.0, 403);
    let t = app.get_json("/v1/event-types/job.completed").await;
    assert_eq!(
        (t["version"].as_i64(), &t["schema"]),
        (Some(1), &job_schema())
    );
}

async fn a_schema_is_checked_when_saved_and_its_examples_must_satisfy_it(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let cases = [
        (
            json!({"schema": {"type": "no-such-type"}}),
            "schema",
            "validation_failed",
        ),
        (json!({"schema": [1, 2]}), "schema", "validation_failed"),
        (
            json!({"schema": job_schema(), "examples": [{"job_id": "a"}, {"job_id": 7}]}),
            "examples[1]",
            "validation_failed",
        ),
        (
            json!({"deprecated": "yes"}),
            "deprecated",
            "validation_failed",
        ),
        (json!({"colour": "red"}), "colour", "validation_failed"),
    ];
    for (body, field, code) in cases {
        let (status, p) =
            problem(app.put("/v1/event-types/job.completed", body.clone()).await).await;
        assert_eq!(status, 422, "{body}: {p}");
        assert_eq!(p["field"], field, "{body}: {p}");
        assert_eq!(p["code"], code, "{body}: {p}");
    }
    let (status, p) = problem(app.put("/v1/event-types/bad%20name", json!({})).await).await;
    assert_eq!((status, p["field"].as_str()), (422, Some("name")));
    let (status, _) = problem(app.get("/v1/event-types/job.completed").await).await;
    assert_eq!(status, 404, "nothing was saved");
}

async fn a_schema_never_fetches_a_remote_reference(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    let body = json!({"schema": {"$ref": format!("{}/schema.json", rx.url)}});
    let (status, p) = problem(app.put("/v1/event-types/job.completed", body).await).await;
    assert_eq!((status, p["field"].as_str()), (422, Some("schema")));
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("remote references are not allowed"),
        "{p}"
    );
    assert_eq!(rx.count(), 0, "Herald fetched nothing");
}

async fn an_event_that_fails_its_schema_is_refused_with_the_pointer_and_writes_nothing(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    define(&app, "job.completed", json!({"schema": job_schema()})).await;
    let bad = [
        (json!({"job_id": "j1", "tokens": -3}), "/tokens", "minimum"),
        (json!({"tokens": 3}), "", "required"),
        (json!({"job_id": 12}), "/job_id", "type"),
    ];
    for (data, pointer, keyword) in bad {
        let r = app
            .post(
                "/v1/events",
                json!({"tenant_id": "acme", "topic": "job.completed", "data": data}),
            )
            .await;
        let (status, p) = problem(r).await;
        assert_eq!(status, 422, "{p}");
        assert_eq!(p["code"], "schema_mismatch");
        assert_eq!(p["field"], "data");
        assert_eq!(p["pointer"], pointer, "{p}");
        assert_eq!(p["keyword"], keyword, "{p}");
        assert!(p["detail"].as_str().unwrap().contains("version 1"), "{p}");
    }
    assert_eq!(event_count(&app, "acme").await, 0);
}

async fn a_batch_with_one_event_failing_its_schema_writes_nothing_and_names_it(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    define(&app, "job.completed", json!({"schema": job_schema()})).await;
    let event = |data: Value| json!({"tenant_id": "acme", "topic": "job.completed", "data": data});
    let r = app
        .post(
            "/v1/events/batch",
            json!({"events": [event(json!({"job_id": "a"})), event(json!({"job_id": false}))]}),
        )
        .await;
    let (status, p) = problem(r).await;
    assert_eq!((status, p["field"].as_str()), (422, Some("events[1].data")));
    assert_eq!(
        (p["pointer"].as_str(), p["keyword"].as_str()),
        (Some("/job_id"), Some("type"))
    );
    assert_eq!(event_count(&app, "acme").await, 0);
}

async fn an_accepted_event_records_the_version_it_was_checked_against(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["job.*"]).await;
    define(&app, "job.completed", json!({"schema": job_schema()})).await;
    define(
        &app,
        "job.completed",
        json!({"schema": job_schema(), "description": "v2"}),
    )
    .await;
    let r = app
        .post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "job.completed", "data": {"job_id": "j1"}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let published: Value = r.json().await.unwrap();
    assert_eq!(published["schema_version"], 2);
    assert!(published.get("deprecated").is_none(), "{published}");
    let id = published["id"].as_str().unwrap();
    let event = app.get_json(&format!("/v1/events/{id}")).await;
    assert_eq!(event["schema_version"], 2);
    // A topic with no type (or a type with no schema) is not checked, and says so.
    let other = app
        .publish("acme", "job.queued", json!({"anything": true}))
        .await;
    let event = app.get_json(&format!("/v1/events/{other}")).await;
    assert!(event["schema_version"].is_null(), "{event}");
    // The payload goes out as published, byte for byte.
    app.worker.drain().await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        got.iter()
            .any(|g| g.json()["data"] == json!({"job_id": "j1"}))
    );
}

async fn archived_types_refuse_events_and_deprecated_ones_are_flagged(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    define(&app, "job.old", json!({"deprecated": true})).await;
    define(&app, "job.gone", json!({"archived": true})).await;
    let publish = |topic: &str| {
        app.post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": topic, "data": {}}),
        )
    };
    let r = publish("job.old").await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["deprecated"], true);
    let (status, p) = problem(publish("job.gone").await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("event_type_archived"))
    );
    assert_eq!(p["field"], "topic");
    assert_eq!(event_count(&app, "acme").await, 1);

    let names = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(app.get_json("/v1/event-types").await), ["job.old"]);
    assert_eq!(
        names(app.get_json("/v1/event-types?include_archived=true").await),
        ["job.gone", "job.old"]
    );
}

async fn unknown_topics_pass_by_default_and_are_refused_when_configured(kind: StoreKind) {
    let open = TestApp::spawn(kind).await;
    open.tenant("acme").await;
    open.publish("acme", "whatever.happened", json!({})).await;

    let strict = TestApp::spawn_with(kind, |c| c.refuse_unknown_topics = true).await;
    strict.tenant("acme").await;
    define(&strict, "job.completed", json!({})).await;
    let r = strict
        .post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "whatever.happened", "data": {}}),
        )
        .await;
    let (status, p) = problem(r).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("unknown_event_type"))
    );
    assert_eq!(p["field"], "topic");
    strict.publish("acme", "job.completed", json!({})).await;
    assert_eq!(event_count(&strict, "acme").await, 1);

    // A destination's patterns must each match a type.
    let r = strict
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "webhook", "url": "http://127.0.0.1:9/", "topics": ["job.*", "jbo.*"]}),
        )
        .await;
    let (status, p) = problem(r).await;
    assert_eq!((status, p["field"].as_str()), (422, Some("topics[1]")));
    strict
        .destination("acme", "http://127.0.0.1:9/", &["job.*", "job.completed"])
        .await;
}

async fn herald_test_events_skip_the_catalog(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| c.refuse_unknown_topics = true).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let (id, _) = app.destination("acme", &rx.url, &["herald.test"]).await;
    let (status, p) = problem(app.put("/v1/event-types/herald.test", json!({})).await).await;
    assert_eq!((status, p["field"].as_str()), (422, Some("name")));
    let r = app
        .post(
            &format!("/v1/tenants/acme/destinations/{id}/test"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_is_enforced_by_the_others_at_once() {
    let db = std::sync::Arc::new(common::TestDb::new(StoreKind::Postgres).await);
    let a = TestApp::spawn_on(db.clone(), |_| {}).await;
    let b = TestApp::spawn_on(db.clone(), |_| {}).await;
    a.tenant("acme").await;
    define(&a, "job.completed", json!({"schema": {"type": "object"}})).await;
    let publish_on_b = || {
        b.post(
            "/v1/events",
            json!({"tenant_id": "acme", "topic": "job.completed", "data": {"tokens": 1}}),
        )
    };
    // B reads (and keeps) the catalog while the schema is lax.
    assert_eq!(publish_on_b().await.status(), 202);
    let mut heard = b.herald.catalog.changes();
    heard.mark_unchanged();
    define(&a, "job.completed", json!({"schema": job_schema()})).await;
    // B hears of the change (NOTIFY) and checks against version 2.
    tokio::time::timeout(Duration::from_secs(5), heard.changed())
        .await
        .expect("node B hears of the change")
        .unwrap();
    let r = publish_on_b().await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (p["keyword"].as_str(), p["pointer"].as_str()),
        (Some("required"), Some(""))
    );
}
