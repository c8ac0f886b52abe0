//! A database made by the last release upgrades cleanly: today's Herald starts on it (its
//! migrations, already applied there, still match their checksums; newer ones apply on top),
//! reads everything it holds, sealed secrets included, and goes on delivering.
//!
//! The databases are dumps in `tests/fixtures/release/`, made by the release's own binary with
//! `tests/fixtures/release/make.sh` (which says what they hold).

use crate::{common, for_each_store};

use std::sync::Arc;
use std::time::Duration;

use common::{ADMIN_TOKEN, Receiver, StoreKind, TestApp, TestDb};
use serde_json::{Value, json};

for_each_store!(a_database_made_by_the_last_release_upgrades_and_keeps_its_data);

/// Loads the release's dump into the empty database `db`, on a connection of its own (the
/// Postgres dump clears `search_path` for the session that loads it).
async fn load_release_dump(db: &TestDb, kind: StoreKind) {
    use sqlx::Connection;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release");
    match kind {
        StoreKind::Sqlite => {
            let dump = std::fs::read_to_string(format!("{dir}/sqlite.sql")).unwrap();
            let mut c = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(dump))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
        StoreKind::Postgres => {
            let dump = std::fs::read_to_string(format!("{dir}/postgres.sql")).unwrap();
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(dump))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
    }
}

async fn a_database_made_by_the_last_release_upgrades_and_keeps_its_data(kind: StoreKind) {
    let db = TestDb::new(kind).await;
    load_release_dump(&db, kind).await;
    let app = TestApp::spawn_on(Arc::new(db), |_| {}).await;

    let tenant = app.get_json("/v1/tenants/acme").await;
    assert_eq!(tenant["metadata"], json!({"plan": "pro"}));

    // The destination's secrets were sealed by the release: reading it opens them.
    let dests = app.get_json("/v1/tenants/acme/destinations").await;
    let dest = &dests["data"][0];
    assert_eq!(dest["description"], "release fixture");
    let dest_id = dest["id"].as_str().unwrap().to_string();

    // Both events, each with its delivery still retrying and its failed attempt logged.
    let events = app.get_json("/v1/tenants/acme/events").await;
    let mut keys: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["idempotency_key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["release-event-1", "release-event-2"]);
    for e in events["data"].as_array().unwrap() {
        let d = app.only_delivery("acme", e["id"].as_str().unwrap()).await;
        assert_eq!(d["status"], "retrying", "{d}");
        let full = app.delivery(d["id"].as_str().unwrap()).await;
        let attempts = full["attempts"].as_array().unwrap();
        assert!(
            !attempts.is_empty(),
            "the release's attempts are kept: {full}"
        );
        assert!(attempts[0]["error"].is_string(), "{full}");
    }

    // The callbacks, in cursor order, the first acknowledged.
    let eps = app.get_json("/v1/callback-endpoints?tenant_id=acme").await;
    let ep_id = eps["data"][0]["id"].as_str().unwrap().to_string();
    let got = app
        .get_json(&format!("/v1/callback-endpoints/{ep_id}/events?after=0"))
        .await;
    let callbacks = got["data"].as_array().unwrap();
    let cursors: Vec<i64> = callbacks
        .iter()
        .map(|c| c["cursor"].as_i64().unwrap())
        .collect();
    assert_eq!(cursors, vec![1, 2, 3]);
    assert!(callbacks[0]["acked_at"].is_i64() || callbacks[0]["acked_at"].is_string());
    assert_eq!(callbacks[2]["body"], json!({"n": 3}));

    // A callback today takes the next cursor.
    let slug = eps["data"][0]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let r = app
        .client
        .post(app.url(&format!("/in/{slug}")))
        .json(&json!({"n": 4}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let got = app
        .get_json(&format!("/v1/callback-endpoints/{ep_id}/events?after=3"))
        .await;
    assert_eq!(got["data"][0]["cursor"], 4);

    // Delivery goes on: pointed at a live receiver, the destination gets the release's
    // retrying deliveries (long due) and today's event, each signed with both of the
    // release's secrets (the rotation's overlap).
    let rx = Receiver::start().await;
    let r = app
        .client
        .patch(app.url(&format!("/v1/tenants/acme/destinations/{dest_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let event = app.publish("acme", "job.done", json!({"n": 3})).await;
    assert_eq!(app.worker.drain().await, 3);
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let mut ns: Vec<i64> = got
        .iter()
        .map(|r| r.json()["data"]["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [1, 2, 3]);
    for r in &got {
        let signatures = &r.headers["webhook-signature"];
        assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    }
    let d: Value = app.only_delivery("acme", &event).await;
    assert_eq!(d["status"], "succeeded");
}
