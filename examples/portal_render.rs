//! How long the portal's pages take for a tenant with many deliveries (docs/portal.md; the goal is
//! under 50 ms server time at 100,000).
//!
//! ```text
//! cargo run --release --example portal_render                      # SQLite, 100,000 deliveries
//! cargo run --release --example portal_render -- 100000 postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! It starts Herald on a fresh database, publishes the deliveries through the API's service
//! (three destinations, one receiver that fails 2 % of requests), lets the real worker
//! deliver them all, signs in through a portal link, then fetches every portal page 20 times
//! over loopback and prints one JSON object: the median and worst time per page, in ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use herald::app::Application;
use herald::config::Config;
use herald::domain::model::DestinationKind;
use herald::service::{CreateDestination, PublishBatch, PublishRequest};
use herald::store::Scope;
use serde_json::json;

const ROUNDS: usize = 20;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let pg_admin = args.next();

    let dir = tempfile::tempdir()?;
    let database_url = match &pg_admin {
        Some(admin) => {
            use sqlx::Connection;
            let name = format!("herald_portal_render_{}", std::process::id());
            let mut c = sqlx::PgConnection::connect(admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut c)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
            format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
        }
        None => format!("sqlite://{}", dir.path().join("herald.db").display()),
    };
    let database_url_pg = pg_admin.as_ref().map(|_| database_url.clone());
    let receiver = start_receiver().await?;
    let config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: Some(database_url),
        admin_token: Some("render-admin".into()),
        // A key of its own: the example's database is dropped at the end.
        encryption_key: Some(herald::store::seal::generate_key()),
        allow_private_destinations: true,
        retry_schedule: String::new(),
        poll_interval_ms: 50,
        ..Config::default()
    };
    let app = Application::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let herald = app.herald().clone();
    tokio::spawn(app.run_until_stopped());

    herald.upsert_tenant("acme", None).await?;
    let mut destinations = vec![];
    for topic in ["order.*", "render.*", "*"] {
        let d = herald
            .create_destination(
                Scope::Admin,
                "acme",
                CreateDestination {
                    kind: DestinationKind::Webhook,
                    url: Some(receiver.clone()),
                    amqp_url: None,
                    exchange: None,
                    routing_key: None,
                    description: Some(format!("{topic} consumer")),
                    topics: vec![topic.into()],
                    filter: None,
                    headers: Default::default(),
                    options: Default::default(),
                    signature: None,
                    secret: None,
                },
            )
            .await?;
        destinations.push(d.destination.id);
    }
    // Events for `order.*` go to two destinations (`order.*` and `*`), `render.*` to two:
    // 2 deliveries per event.
    let started = Instant::now();
    let events = total / 2;
    for chunk in 0..events.div_ceil(1000) {
        let n = 1000.min(events - chunk * 1000);
        let batch = (0..n)
            .map(|i| PublishRequest {
                tenant_id: "acme".into(),
                topic: if i % 2 == 0 {
                    "order.paid"
                } else {
                    "render.completed"
                }
                .into(),
                data: serde_json::value::to_raw_value(&json!({"n": chunk * 1000 + i})).unwrap(),
                metadata: None,
                id: None,
                destination_id: None,
                reply: None,
            })
            .collect();
        herald
            .publish_batch(Scope::Admin, PublishBatch { events: batch })
            .await?;
    }
    loop {
        let (pending, _) = herald
            .store
            .queue_stats(herald.clock.now() + 3_600_000)
            .await?;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(url) = &database_url_pg {
        // What autovacuum does soon after a bulk load: without statistics the planner takes
        // the freshly written table for a small one and picks bitmap scans over 100,000 rows.
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query("ANALYZE").execute(&mut c).await?;
    }
    eprintln!(
        "seeded {} deliveries in {:.1} s",
        events * 2,
        started.elapsed().as_secs_f64()
    );

    let link = herald.create_portal_link("acme").await?;
    let token = &link.url[link.url.find("token=").unwrap() + "token=".len()..];
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // What the sign-in page's form sends (opening the link alone spends nothing).
    let r = client
        .post(format!("{base}/portal/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await?;
    let cookie = r.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = herald
        .list_deliveries(
            Scope::Admin,
            herald::store::DeliveryQuery {
                tenant_id: "acme".into(),
                limit: 50,
                ..Default::default()
            },
        )
        .await?;
    let some_delivery = &page.data[0].id;
    let cursor = page.next_cursor.unwrap_or_default();
    let pages = [
        ("overview", "/portal".to_string()),
        (
            "destination",
            format!("/portal/destinations/{}", destinations[2]),
        ),
        ("deliveries", "/portal/deliveries".into()),
        (
            "deliveries_page_2",
            format!("/portal/deliveries?after={cursor}"),
        ),
        (
            "deliveries_failed",
            "/portal/deliveries?status=failed".into(),
        ),
        (
            "deliveries_by_destination_and_topic",
            format!(
                "/portal/deliveries?destination_id={}&topic=render.completed",
                destinations[2]
            ),
        ),
        (
            "deliveries_last_hour",
            format!(
                "/portal/deliveries?since={}",
                (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M")
            ),
        ),
        ("delivery", format!("/portal/deliveries/{some_delivery}")),
    ];
    let mut out = serde_json::Map::new();
    out.insert("store".into(), json!(herald.store.kind()));
    out.insert("total_deliveries".into(), json!(events * 2));
    for (name, path) in pages {
        let mut times = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            anyhow::ensure!(r.status() == StatusCode::OK, "{path}: {}", r.status());
            r.bytes().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        out.insert(
            name.into(),
            json!({"p50_ms": round(times[ROUNDS / 2]), "max_ms": round(times[ROUNDS - 1])}),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    if let (Some(admin), Some(url)) = (&pg_admin, &database_url_pg) {
        use sqlx::Connection;
        let name = url.rsplit_once('/').unwrap().1;
        let mut c = sqlx::PgConnection::connect(admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await?;
    }
    Ok(())
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// A receiver on loopback that answers 200, and 500 to one request in fifty.
async fn start_receiver() -> anyhow::Result<String> {
    let count = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().fallback(move || {
        let n = count.fetch_add(1, Ordering::Relaxed);
        async move {
            if n % 50 == 49 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
