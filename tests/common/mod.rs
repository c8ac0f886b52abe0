//! Shared test harness: a fresh database per test (SQLite file or Postgres database), Herald
//! spawned on port 0, and a real webhook receiver on a random loopback port.
//!
//! Compiled into every test binary: `tests/it` (as `common`), `tests/log_secrets.rs` and
//! `tests/chaos.rs`, the last two using a small part of it.
// Each binary checks this module for dead code on its own, so whatever the two small ones do
// not call would warn there.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use herald::app::{Application, Shutdown};
use herald::clock::Clock;
use herald::config::Config;
use herald::service::Herald;
use herald::worker::Worker;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The key every test app seals credentials with: fixed, so several nodes (and a restarted
/// app) on one test database open each other's values.
pub const ENCRYPTION_KEY: &str = "aGVyYWxkIHRlc3QgZW5jcnlwdGlvbiBrZXkgMzJieSE=";

/// Runs one async test function against each store, as `sqlite::name` and `postgres::name`.
/// The calling module needs `common` in scope (`use crate::common;`): the modules made here
/// name `super::common`.
#[macro_export]
macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::StoreKind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::StoreKind::Postgres).await
                }
            )*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A database that exists for one test. Postgres databases are dropped afterwards.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

fn pg_admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new(kind: StoreKind) -> Self {
        match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                TestDb {
                    url: format!("sqlite://{}", dir.path().join("herald.db").display()),
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            StoreKind::Postgres => {
                use sqlx::Connection;
                let admin = pg_admin_url();
                let name = format!("herald_test_{}", uuid::Uuid::now_v7().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("Postgres must run on 127.0.0.1:5432 (see README)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').unwrap().0;
                TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop may run inside the test's runtime: do the async cleanup on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

impl TestDb {
    /// The store on this database, migrated, sealing with [`ENCRYPTION_KEY`].
    pub async fn store(&self) -> Arc<dyn herald::store::Store> {
        let keys = herald::store::seal::Keyring::parse(ENCRYPTION_KEY, &[]).unwrap();
        let s = herald::store::connect(&self.url, Arc::new(keys))
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    }
}

/// The configuration tests start from: loopback destinations allowed, no background worker
/// (tests drive it with `worker.tick()`), a known admin token.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        database_url: Some(db.url.clone()),
        admin_token: Some(ADMIN_TOKEN.into()),
        encryption_key: Some(ENCRYPTION_KEY.into()),
        allow_private_destinations: true,
        worker: false,
        retry_jitter: 0.0,
        ..Config::default()
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub herald: Herald,
    pub worker: Arc<Worker>,
    pub clock: Clock,
    pub shutdown: Shutdown,
    pub db: Arc<TestDb>,
    running: Mutex<Option<tokio::task::JoinHandle<Result<(), herald::app::AppError>>>>,
}

impl TestApp {
    pub async fn spawn(kind: StoreKind) -> Self {
        Self::spawn_with(kind, |_| {}).await
    }

    pub async fn spawn_with(kind: StoreKind, configure: impl FnOnce(&mut Config)) -> Self {
        let db = Arc::new(TestDb::new(kind).await);
        Self::spawn_on(db, configure).await
    }

    /// Another Herald on the same database (several nodes).
    pub async fn spawn_on(db: Arc<TestDb>, configure: impl FnOnce(&mut Config)) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = test_config(&db);
        configure(&mut config);
        let clock = Clock::system();
        let app = Application::build_with_clock(config, clock.clone())
            .await
            .expect("the app builds");
        let addr = app.local_addr();
        let herald = app.herald().clone();
        let worker = app.worker();
        let shutdown = app.shutdown_handle();
        let running = Mutex::new(Some(tokio::spawn(app.run_until_stopped())));
        TestApp {
            running,
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            herald,
            worker,
            clock,
            shutdown,
            db,
        }
    }

    /// Stops the application as SIGTERM would and waits until it has shut down.
    pub async fn stop(&self) {
        self.shutdown.trigger();
        let handle = self.running.lock().unwrap().take();
        if let Some(h) = handle {
            h.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs as the admin and returns the JSON answer, whatever the status.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        self.post(path, body).await.json().await.unwrap()
    }

    /// Issues a token scoped to `tenant`.
    pub async fn tenant_token(&self, tenant: &str) -> String {
        let v = self
            .post_json(&format!("/v1/tenants/{tenant}/tokens"), json!({}))
            .await;
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn tenant(&self, id: &str) {
        let r = self.put(&format!("/v1/tenants/{id}"), json!({})).await;
        assert!(r.status().is_success(), "tenant: {}", r.status());
    }

    /// Creates a webhook destination; returns `(id, secret)`.
    pub async fn destination(&self, tenant: &str, url: &str, topics: &[&str]) -> (String, String) {
        self.destination_with(
            tenant,
            json!({"type": "webhook", "url": url, "topics": topics}),
        )
        .await
    }

    pub async fn destination_with(&self, tenant: &str, body: Value) -> (String, String) {
        let r = self
            .post(&format!("/v1/tenants/{tenant}/destinations"), body)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    /// Publishes; returns the event id.
    pub async fn publish(&self, tenant: &str, topic: &str, data: Value) -> String {
        let r = self
            .post(
                "/v1/events",
                json!({"tenant_id": tenant, "topic": topic, "data": data}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn deliveries_of(&self, tenant: &str, event_id: &str) -> Vec<Value> {
        let v = self
            .get_json(&format!(
                "/v1/tenants/{tenant}/deliveries?event_id={event_id}"
            ))
            .await;
        v["data"].as_array().unwrap().clone()
    }

    pub async fn delivery(&self, id: &str) -> Value {
        self.get_json(&format!("/v1/deliveries/{id}")).await
    }

    /// The single delivery an event created, with its attempts.
    pub async fn only_delivery(&self, tenant: &str, event_id: &str) -> Value {
        let ds = self.deliveries_of(tenant, event_id).await;
        assert_eq!(ds.len(), 1, "expected one delivery: {ds:?}");
        self.delivery(ds[0]["id"].as_str().unwrap()).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the receiver answers: a status, optional headers, an optional delay.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    arrived: Notify,
}

/// A real HTTP server on a random loopback port that records every request and answers
/// from a script (200 once the script is used up).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_scripted(vec![]).await
    }

    pub async fn start_scripted(script: Vec<Reply>) -> Self {
        let state = Arc::new(ReceiverState::default());
        *state.script.lock().unwrap() = script.into();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    pub fn push(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.got.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived, or panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            if self.count() >= n {
                return self.received();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} requests, got {} within {timeout:?}",
                    self.count()
                );
            }
        }
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::status(200));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.got.lock().unwrap().push(Received {
        method: method.to_string(),
        headers,
        body,
        peer,
    });
    state.arrived.notify_waiters();
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap(),
        format!("reply {}", reply.status),
    )
        .into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

/// A callback endpoint that verifies nothing, owned by `tenant_id` (or the platform), not yet
/// stored.
pub fn unverified_endpoint(tenant_id: Option<&str>) -> herald::domain::callback::CallbackEndpoint {
    herald::domain::callback::CallbackEndpoint {
        id: herald::domain::ids::new_id(herald::domain::ids::Kind::CallbackEndpoint),
        slug: herald::service::callbacks::new_slug(),
        tenant_id: tenant_id.map(str::to_string),
        label: None,
        verification: herald::domain::callback::Verification::None,
        metadata: serde_json::json!({}),
        event_id: None,
        last_cursor: 0,
        received: 0,
        duplicates: 0,
        rejected: 0,
        expires_at: None,
        created_at: 1,
    }
}
