//! `herald bench`: an end-to-end benchmark on one machine.
//!
//! It starts a Herald on a fresh store (a temporary SQLite file, or a new Postgres database),
//! a receiver that counts distinct `webhook-id`s and measures latency, and publishers, then runs
//! these phases:
//!
//! 1. **publish** — 32 concurrent clients publish single events over HTTP (worker paused, so
//!    acceptance is measured alone): `publish_per_s`.
//! 2. **publish batch** — batches of 500 over HTTP: `publish_batch_per_s`.
//! 3. **deliver** — the worker starts and drains the backlog of 1-destination events to the
//!    receiver: `deliveries_per_s`; then the same with 10 destinations per event:
//!    `deliveries_fanout10_per_s`.
//! 4. **idle latency** — one event at a time on an idle system: publish→receipt p50/p99.
//! 5. **load latency** — a steady publish rate at half the measured delivery throughput:
//!    publish→receipt p50/p99 under load.
//! 6. **ingest** — 32 concurrent senders POST JSON callbacks to 32 callback endpoints
//!    (`ANY /in/{slug}`, the per-endpoint rate limit off): `ingest_per_s`, each one stored
//!    durably before its 200.
//! 7. **wake-up** — an agent long-polls `GET /v1/callback-endpoints/{id}/wait`; one callback at
//!    a time is sent to that endpoint, and the agent measures callback→wake-up against the send
//!    time written into the callback's body: `wake_p50_ms`, `wake_p99_ms`.
//!
//! 8. **steady state** — publishing and delivering at once, with Herald in a child process so
//!    the CPU per event of Herald, Postgres and the receiver can be told apart ([`steady`]):
//!    `steady_per_s`, `cpu_us_per_event_*`, and a fan-out-10 variant.
//!
//! Latency is measured by the receiver against the publish time the publisher put in the event.
//! Phases 1–7 run in this one process (Herald on its own runtime threads, the receiver on a
//! thread of its own), so `peak_rss_mb` is the peak of the whole benchmark, an upper bound for
//! Herald alone; phase 8's `steady_herald_peak_rss_mb` is the child Herald's own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::app::Application;
use crate::config::Config;

mod steady;
mod wire;

const ADMIN: &str = "bench-admin-token";

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Events per throughput phase.
    pub events: usize,
    /// Postgres server to create the benchmark database on.
    pub postgres_url: String,
    /// Print only JSON.
    pub json: bool,
    /// Which phases run.
    pub phases: Phases,
    /// Concurrent senders (and endpoints) of the ingest phase, each a keep-alive connection
    /// posting to an endpoint of its own: spread over endpoints because each endpoint's
    /// cursor serializes its own callbacks.
    pub ingest_clients: usize,
    /// Closed-loop publishers of the steady phase.
    pub steady_clients: usize,
    /// The steady phase's measured window (after a warm-up of a fifth of it, at least 1 s).
    pub steady_secs: f64,
}

/// The phases a run measures: both sides, or one of them (to profile it alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    All,
    /// Publish, deliver, idle and load latency.
    Outbound,
    /// Ingest and wake-up.
    Inbound,
    /// Publishing and delivering at once, Herald in a child process ([`steady`]).
    Steady,
}

impl std::str::FromStr for Phases {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "all" => Ok(Self::All),
            "outbound" => Ok(Self::Outbound),
            "inbound" => Ok(Self::Inbound),
            "steady" => Ok(Self::Steady),
            other => anyhow::bail!("unknown phases `{other}` (all, outbound, inbound or steady)"),
        }
    }
}

/// Figures of the outbound phases (1–5).
struct Outbound {
    publish_per_s: f64,
    publish_batch_per_s: f64,
    deliveries_per_s: f64,
    deliveries_fanout10_per_s: f64,
    idle: Vec<u64>,
    load: Vec<u64>,
    load_rate_per_s: f64,
}

/// What the receiver has seen.
struct ReceiverState {
    ids: Mutex<HashSet<String>>,
    requests: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// Notified once `ids` holds `wanted` distinct ids, not on every request: waking the
    /// waiting phase for each delivery was a futex call and a thread switch per request,
    /// spent by the benchmark on the cores Herald is measured on.
    arrived: Notify,
    wanted: AtomicUsize,
    /// The receiver thread's id, whose CPU time the steady phase reads.
    tid: std::sync::OnceLock<u32>,
}

impl Default for ReceiverState {
    fn default() -> Self {
        Self {
            ids: Mutex::default(),
            requests: AtomicU64::default(),
            latencies_us: Mutex::default(),
            arrived: Notify::new(),
            wanted: AtomicUsize::new(usize::MAX),
            tid: std::sync::OnceLock::new(),
        }
    }
}

impl ReceiverState {
    fn thread_id(&self) -> Option<u32> {
        self.tid.get().copied()
    }

    fn distinct(&self) -> usize {
        self.ids.lock().expect("not poisoned").len()
    }

    /// Remembers a request's `webhook-id`; wakes a waiter whose target it reaches.
    fn record_id(&self, id: String) {
        let n = {
            let mut ids = self.ids.lock().expect("not poisoned");
            ids.insert(id);
            ids.len()
        };
        if n >= self.wanted.load(Ordering::SeqCst) {
            self.arrived.notify_waiters();
        }
    }

    /// Waits until `target` distinct ids have arrived or `patience` has passed; returns the
    /// count. The target is stored before the count is read under the ids' lock, so an id
    /// recorded after that read finds the target and wakes this wait.
    async fn wait_for(&self, target: usize, patience: Duration) -> usize {
        self.wanted.store(target, Ordering::SeqCst);
        let notified = self.arrived.notified();
        let seen = self.distinct();
        if seen < target {
            let _ = tokio::time::timeout(patience, notified).await;
        }
        self.distinct()
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

/// Starts the receiver ([`wire::receive`]) on a runtime and thread of its own, so it does not
/// compete with Herald's scheduler for the same worker threads.
fn start_receiver() -> anyhow::Result<(String, Arc<ReceiverState>)> {
    let state = Arc::new(ReceiverState::default());
    let st = state.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bench-receiver".into())
        .spawn(move || {
            // `/proc/thread-self` is `<pid>/task/<tid>`: this thread's own stat lives there.
            if let Some(tid) = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            {
                let _ = st.tid.set(tid);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("main thread waits");
                wire::receive(listener, st).await;
            });
        })?;
    let addr = rx.recv()?;
    Ok((format!("http://{addr}/hook"), state))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The machine's CPU time so far (the `cpu` line of `/proc/stat`, in clock ticks): time spent
/// busy (user, nice, system, irq, softirq), idle (idle, iowait), and stolen by the hypervisor.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    busy: u64,
    idle: u64,
    steal: u64,
}

impl CpuTimes {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let f: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        Some(Self {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
        })
    }

    /// Shares of the time between `self` and `later` spent busy and stolen, in percent of all
    /// cores. A virtual machine whose host is oversubscribed has CPU time *stolen*: every
    /// figure of such a run is low by about that share, so the benchmark prints it.
    fn shares_until(self, later: Self) -> (f64, f64) {
        let (busy, idle, steal) = (
            later.busy.saturating_sub(self.busy) as f64,
            later.idle.saturating_sub(self.idle) as f64,
            later.steal.saturating_sub(self.steal) as f64,
        );
        let all = (busy + idle + steal).max(1.0);
        let pct = |x: f64| (x / all * 1000.0).round() / 10.0;
        (pct(busy), pct(steal))
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A closed-loop load: one client (a keep-alive connection of its own) per entry of `paths`,
/// each posting to its own path with `headers` and a fresh body until `posts` are sent in all.
struct Posts {
    paths: Vec<String>,
    posts: usize,
    /// Items each post carries (events in a batch), for the progress bar.
    items_per_post: u64,
    /// Header lines, each ending in `\r\n`.
    headers: String,
    what: &'static str,
}

/// Runs `load` against Herald at `addr`; returns posts per second.
async fn concurrent_posts(
    addr: std::net::SocketAddr,
    load: Posts,
    pb: indicatif::ProgressBar,
    body: impl Fn() -> String + Clone + Send + 'static,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::with_capacity(load.paths.len());
    for _ in &load.paths {
        conns.push(wire::Conn::connect(addr).await?);
    }
    let (n, what, per_post) = (load.posts as u64, load.what, load.items_per_post);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (path, mut conn) in load.paths.into_iter().zip(conns) {
        let (next, pb, body, headers) =
            (next.clone(), pb.clone(), body.clone(), load.headers.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let status = conn.post(&path, &headers, body().as_bytes()).await?;
                anyhow::ensure!(
                    (200..300).contains(&status),
                    "{what}: {status} {}",
                    String::from_utf8_lossy(conn.body())
                );
                pb.inc(per_post);
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    pb.finish();
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

struct Bench {
    opts: BenchOptions,
    base: String,
    /// Herald's address, for the load generator's own connections ([`wire::Conn`]).
    addr: std::net::SocketAddr,
    client: reqwest::Client,
    rx: Arc<ReceiverState>,
    progress: Option<indicatif::MultiProgress>,
}

impl Bench {
    fn bar(&self, len: u64, msg: &str) -> indicatif::ProgressBar {
        match &self.progress {
            None => indicatif::ProgressBar::hidden(),
            Some(mp) => {
                let pb = mp.add(indicatif::ProgressBar::new(len));
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg:>24} [{bar:40}] {pos}/{len} {per_sec}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                pb.set_message(msg.to_string());
                pb
            }
        }
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .client
            .post(format!("{}{}", self.base, path))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
        Ok(r.json().await?)
    }

    fn event(tenant: &str, topic: &str) -> Value {
        json!({"tenant_id": tenant, "topic": topic, "data": {"t": now_us(), "payload": PAYLOAD}})
    }

    /// An event as the load generator sends it: its publish time (`t`, µs) and 200 bytes of
    /// payload. Written directly, like a client holding its own serialized data would.
    fn event_json(tenant: &str, topic: &str) -> String {
        format!(
            r#"{{"tenant_id":"{tenant}","topic":"{topic}","data":{{"t":{},"payload":"{PAYLOAD}"}}}}"#,
            now_us()
        )
    }

    /// Single-event publishes from 32 concurrent clients; returns events per second.
    async fn publish_single(&self, tenant: &str, n: usize) -> anyhow::Result<f64> {
        let load = Posts {
            paths: vec!["/v1/events".into(); 32],
            posts: n,
            items_per_post: 1,
            headers: format!("authorization: Bearer {ADMIN}\r\n"),
            what: "publish",
        };
        let tenant = tenant.to_string();
        let pb = self.bar(n as u64, "publish (single)");
        concurrent_posts(self.addr, load, pb, move || {
            Bench::event_json(&tenant, "bench.single")
        })
        .await
    }

    /// Batches of 500 from 4 concurrent clients; returns events per second.
    async fn publish_batches(&self, tenant: &str, n: usize) -> anyhow::Result<f64> {
        let load = Posts {
            paths: vec!["/v1/events/batch".into(); 4],
            posts: n.div_ceil(500),
            items_per_post: 500,
            headers: format!("authorization: Bearer {ADMIN}\r\n"),
            what: "batch",
        };
        let tenant = tenant.to_string();
        let pb = self.bar(n.div_ceil(500) as u64 * 500, "publish (batch)");
        let batches_per_s = concurrent_posts(self.addr, load, pb, move || {
            let events: Vec<String> = (0..500)
                .map(|_| Bench::event_json(&tenant, "bench.batch"))
                .collect();
            format!(r#"{{"events":[{}]}}"#, events.join(","))
        })
        .await?;
        Ok(batches_per_s * 500.0)
    }

    /// Waits until the receiver has seen `target` distinct ids; returns the seconds it took
    /// from `since`.
    async fn wait_distinct(&self, target: usize, since: Instant, msg: &str) -> anyhow::Result<f64> {
        let pb = self.bar(target as u64, msg);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            // Woken at the target; the timeout only moves the progress bar.
            let seen = self.rx.wait_for(target, Duration::from_millis(100)).await;
            pb.set_position(seen as u64);
            if seen >= target {
                pb.finish();
                return Ok(since.elapsed().as_secs_f64());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {seen} of {target} delivered in 10 minutes"
            );
        }
    }

    fn take_latencies(&self) -> Vec<u64> {
        let mut l = std::mem::take(&mut *self.rx.latencies_us.lock().expect("not poisoned"));
        l.sort_unstable();
        l
    }
}

/// Runs the benchmark for one store and returns its JSON figures.
pub async fn run(opts: BenchOptions) -> anyhow::Result<Value> {
    let dir = tempfile_dir()?;
    let (database_url, pg_name) = match opts.store.as_str() {
        "sqlite" => (format!("sqlite://{}", dir.join("bench.db").display()), None),
        "postgres" => {
            use sqlx::Connection;
            let name = format!("herald_bench_{}", uuid::Uuid::now_v7().simple());
            let mut c = sqlx::PgConnection::connect(&opts.postgres_url)
                .await
                .context("connecting to Postgres for the benchmark database")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
            let base = opts
                .postgres_url
                .rsplit_once('/')
                .map_or(opts.postgres_url.as_str(), |p| p.0);
            (format!("{base}/{name}"), Some(name))
        }
        other => anyhow::bail!("unknown store `{other}` (sqlite or postgres)"),
    };
    let result = run_on(&opts, &database_url).await;
    if let Some(name) = pg_name {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(&opts.postgres_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn run_on(opts: &BenchOptions, database_url: &str) -> anyhow::Result<Value> {
    let cpu_at_start = CpuTimes::now();
    let (receiver_url, rx) = start_receiver()?;
    // A key of its own: the benchmark's store is thrown away with it.
    let encryption_key = crate::store::seal::generate_key();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: Some(database_url.into()),
        admin_token: Some(ADMIN.into()),
        encryption_key: Some(encryption_key.clone()),
        allow_private_destinations: true,
        worker: false,
        // The benchmark measures capacity, not the per-endpoint abuse limit.
        inbound_rate_limit_per_s: 0,
        log_format: "pretty".into(),
        ..Config::default()
    };
    let (concurrency, batch_size) = (config.worker_concurrency, config.worker_batch_size);
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    let base = format!("http://{addr}");
    let worker = app.worker();
    let herald = app.herald().clone();
    let stop = app.shutdown_handle();
    let server = tokio::spawn(app.run_until_stopped());

    let bench = Bench {
        opts: opts.clone(),
        base,
        addr,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        rx: rx.clone(),
        progress: (!opts.json).then(indicatif::MultiProgress::new),
    };
    let n = bench.opts.events;
    for t in ["one", "fan"] {
        bench
            .client
            .put(format!("{}/v1/tenants/{t}", bench.base))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .error_for_status()?;
    }
    let dest = json!({"type": "webhook", "url": receiver_url, "topics": ["*"]});
    bench.post("/v1/tenants/one/destinations", &dest).await?;
    for _ in 0..10 {
        bench.post("/v1/tenants/fan/destinations", &dest).await?;
    }

    let out = match opts.phases {
        Phases::All | Phases::Outbound => Some(bench.outbound(&herald, worker).await?),
        Phases::Inbound | Phases::Steady => None,
    };
    // 6-7: inbound capture, with the outbound worker stopped.
    let (ingest_per_s, wake) = match opts.phases {
        Phases::All | Phases::Inbound => {
            (Some(bench.ingest(n).await?), bench.wake_latencies().await?)
        }
        Phases::Outbound | Phases::Steady => (None, vec![]),
    };
    stop.trigger();
    let _ = server.await;
    // 8: the steady state, Herald in a child process on the same store.
    let steady = match opts.phases {
        Phases::All | Phases::Steady => {
            let measure = Duration::from_secs_f64(opts.steady_secs.max(0.1));
            let steady_opts = steady::SteadyOptions {
                clients: opts.steady_clients.max(1),
                measure,
                warm_up: (measure / 5).max(Duration::from_secs(1)),
            };
            let postgres = opts.store == "postgres";
            Some(
                steady::run(
                    database_url,
                    &encryption_key,
                    &receiver_url,
                    &rx,
                    postgres,
                    steady_opts,
                )
                .await?,
            )
        }
        Phases::Outbound | Phases::Inbound => None,
    };

    let cpu = cpu_at_start
        .zip(CpuTimes::now())
        .map(|(start, end)| start.shares_until(end));
    let o = out.as_ref();
    let rounded = |f: Option<f64>| f.map(f64::round);
    let p = |l: Option<&Vec<u64>>, q: f64| l.map(|l| percentile(l, q));
    let wake = matches!(opts.phases, Phases::All | Phases::Inbound).then_some(&wake);
    let mut figures = json!({
        "store": opts.store,
        "events": n,
        "phases": format!("{:?}", opts.phases).to_lowercase(),
        "publish_per_s": rounded(o.map(|o| o.publish_per_s)),
        "publish_batch_per_s": rounded(o.map(|o| o.publish_batch_per_s)),
        "deliveries_per_s": rounded(o.map(|o| o.deliveries_per_s)),
        "deliveries_fanout10_per_s": rounded(o.map(|o| o.deliveries_fanout10_per_s)),
        "latency_idle_p50_ms": p(o.map(|o| &o.idle), 0.50),
        "latency_idle_p99_ms": p(o.map(|o| &o.idle), 0.99),
        "latency_load_p50_ms": p(o.map(|o| &o.load), 0.50),
        "latency_load_p99_ms": p(o.map(|o| &o.load), 0.99),
        "load_rate_per_s": rounded(o.map(|o| o.load_rate_per_s)),
        "ingest_per_s": rounded(ingest_per_s),
        "wake_p50_ms": p(wake, 0.50),
        "wake_p99_ms": p(wake, 0.99),
        "ingest_clients": opts.ingest_clients,
        "wake_samples": wake.map_or(0, |w| w.len()),
        "idle_samples": o.map_or(0, |o| o.idle.len()),
        "worker_concurrency": concurrency,
        "worker_batch_size": batch_size,
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        "distinct_ids_received": rx.distinct(),
        "requests_received": rx.requests.load(Ordering::Relaxed),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_busy_pct": cpu.map(|c| c.0),
        "cpu_steal_pct": cpu.map(|c| c.1),
    });
    let signing = signing_costs();
    if let Some(all) = figures.as_object_mut() {
        all.insert("sign_hmac_us".into(), json!(signing.hmac_us));
        all.insert("sign_ed25519_us".into(), json!(signing.ed25519_us));
        all.insert("verify_ed25519_us".into(), json!(signing.verify_us));
    }
    let steady_keys = steady.unwrap_or_else(steady::absent);
    if let (Some(all), Some(more)) = (figures.as_object_mut(), steady_keys.as_object()) {
        all.extend(more.clone());
    }
    Ok(figures)
}

/// What one signature costs, in µs of this thread's time: the signer the executor calls per
/// request (`webhook-signature` of one key), HMAC and ed25519, and an ed25519 verification.
struct SigningCosts {
    hmac_us: f64,
    ed25519_us: f64,
    verify_us: f64,
}

fn signing_costs() -> SigningCosts {
    use crate::domain::signature::{self, SignatureKind};
    const N: u32 = 2_000;
    let body = format!(r#"{{"topic":"job.done","data":{{"output":"{PAYLOAD}"}}}}"#);
    let per_call = |f: &dyn Fn() -> usize| {
        let start = std::time::Instant::now();
        let mut sink = 0;
        for _ in 0..N {
            sink += f();
        }
        std::hint::black_box(sink);
        (start.elapsed().as_secs_f64() * 1e6 / f64::from(N) * 100.0).round() / 100.0
    };
    let hmac = SignatureKind::Hmac.generate();
    let ed25519 = SignatureKind::Ed25519.generate();
    let sign =
        |key: &str| signature::signature_header([key], "evt_1", 1_700_000_000, body.as_bytes());
    let public = signature::parse_public_key(&signature::public_key_of(&ed25519).unwrap()).unwrap();
    let sig = sign(&ed25519);
    let raw = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        sig.strip_prefix("v1a,").unwrap_or_default(),
    )
    .unwrap_or_default();
    SigningCosts {
        hmac_us: per_call(&|| sign(&hmac).len()),
        ed25519_us: per_call(&|| sign(&ed25519).len()),
        verify_us: per_call(&|| {
            usize::from(signature::verify_v1a(
                &public,
                "evt_1",
                1_700_000_000,
                body.as_bytes(),
                &raw,
            ))
        }),
    }
}

/// The payload of every benchmark event and callback: 200 bytes.
const PAYLOAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
/// Callbacks sent one at a time in the wake-up phase.
const WAKE_SAMPLES: usize = 200;

impl Bench {
    /// Creates a callback endpoint (no verification) and returns `(id, capture URL)`.
    async fn callback_endpoint(&self) -> anyhow::Result<(String, String)> {
        let v = self.post("/v1/callback-endpoints", &json!({})).await?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .with_context(|| format!("callback endpoint without `{k}`: {v}"))
        };
        Ok((field("id")?, field("url")?))
    }

    /// `n` callbacks from `ingest_clients` concurrent senders, each to an endpoint of its
    /// own; returns callbacks stored per second.
    async fn ingest(&self, n: usize) -> anyhow::Result<f64> {
        let mut paths = Vec::with_capacity(self.opts.ingest_clients);
        for _ in 0..self.opts.ingest_clients {
            let url = self.callback_endpoint().await?.1;
            let at = url
                .find("/in/")
                .context("a capture URL ends in /in/{slug}")?;
            paths.push(url[at..].to_string());
        }
        let load = Posts {
            paths,
            posts: n,
            items_per_post: 1,
            headers: String::new(),
            what: "ingest",
        };
        let pb = self.bar(n as u64, "ingest (callbacks)");
        concurrent_posts(self.addr, load, pb, || {
            format!(
                r#"{{"t":{},"status":"done","output":"{PAYLOAD}"}}"#,
                now_us()
            )
        })
        .await
    }

    /// Callback→wake-up latencies (µs, sorted) of an agent long-polling one endpoint.
    async fn wake_latencies(&self) -> anyhow::Result<Vec<u64>> {
        let (id, url) = self.callback_endpoint().await?;
        let (woke_tx, mut woke) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (client, base) = (self.client.clone(), self.base.clone());
        // The agent: wait, take the callback, wait again after its cursor.
        let agent = tokio::spawn(async move {
            let mut cursor = 0;
            loop {
                let v: Value = client
                    .get(format!(
                        "{base}/v1/callback-endpoints/{id}/wait?after={cursor}&timeout_ms=10000"
                    ))
                    .bearer_auth(ADMIN)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let woke_at = now_us();
                cursor = v["cursor"].as_i64().unwrap_or(cursor);
                if let Some(sent) = v["callback"]["body"]["t"].as_u64()
                    && woke_tx.send(woke_at.saturating_sub(sent)).is_err()
                {
                    return anyhow::Ok(());
                }
            }
        });
        let pb = self.bar(WAKE_SAMPLES as u64, "wake-up (long-poll)");
        let mut latencies = Vec::with_capacity(WAKE_SAMPLES);
        for _ in 0..WAKE_SAMPLES {
            // Let the agent park on its next wait first: this measures the wake-up path, not
            // a wait that finds the callback already stored.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let r = self
                .client
                .post(&url)
                .json(&json!({"t": now_us()}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "ingest: {}", r.status());
            let l = tokio::time::timeout(Duration::from_secs(10), woke.recv())
                .await
                .context("the waiting agent was not woken within 10 s")?
                .context("the waiting agent stopped")?;
            latencies.push(l);
            pb.inc(1);
        }
        pb.finish();
        agent.abort();
        latencies.sort_unstable();
        Ok(latencies)
    }

    /// Phases 1–5: publish (worker stopped), then deliver and latency with the worker running;
    /// the worker is stopped again at the end.
    async fn outbound(
        &self,
        herald: &crate::service::Herald,
        worker: Arc<crate::worker::Worker>,
    ) -> anyhow::Result<Outbound> {
        let n = self.opts.events;
        // 1-2: acceptance alone (the worker is not running yet).
        let publish_per_s = self.publish_single("one", n / 2).await?;
        let publish_batch_per_s = self.publish_batches("one", n).await?;
        let backlog = n / 2 + n.div_ceil(500) * 500;

        // 3: the worker drains the backlog.
        let (stop_worker, stop_rx) = watch::channel(false);
        let news_task = herald
            .store
            .news()
            .map(|news| tokio::spawn(herald.clone().relay_news(news, true, stop_rx.clone())));
        let worker_task = tokio::spawn(worker.run(stop_rx));
        let started = Instant::now();
        let secs = self
            .wait_distinct(backlog, started, "deliver (1 destination)")
            .await?;
        let deliveries_per_s = backlog as f64 / secs;
        self.take_latencies();

        // Fan-out: n/10 events x 10 destinations. Requests, not distinct ids, are counted here.
        let fan_events = (n / 10).max(100);
        let before = self.rx.requests.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut published = 0;
        while published < fan_events {
            let k = (fan_events - published).min(500);
            let events: Vec<Value> = (0..k).map(|_| Bench::event("fan", "self.fanout")).collect();
            self.post("/v1/events/batch", &json!({ "events": events }))
                .await?;
            published += k;
        }
        let target = fan_events as u64 * 10;
        let pb = self.bar(target, "deliver (10 destinations)");
        while self.rx.requests.load(Ordering::Relaxed) - before < target {
            pb.set_position(self.rx.requests.load(Ordering::Relaxed) - before);
            tokio::time::sleep(Duration::from_millis(20)).await;
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "fan-out did not finish"
            );
        }
        pb.finish();
        let deliveries_fanout10_per_s = target as f64 / started.elapsed().as_secs_f64();
        self.take_latencies();

        // 4: idle latency, one event at a time.
        let idle_n = 200;
        let pb = self.bar(idle_n, "latency (idle)");
        for _ in 0..idle_n {
            let seen = self.rx.distinct();
            self.post("/v1/events", &Bench::event("one", "self.idle"))
                .await?;
            self.wait_distinct_quiet(seen + 1).await?;
            pb.inc(1);
        }
        pb.finish();
        let idle = self.take_latencies();

        // 5: latency under a steady load at half the measured throughput (10 s at most).
        let rate = (deliveries_per_s / 2.0).clamp(10.0, 20_000.0);
        let load_n = ((rate * 5.0) as usize).clamp(100, n);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let target = self.rx.distinct() + load_n;
        let pb = self.bar(load_n as u64, "latency (50% load)");
        let mut tick = tokio::time::interval(interval * 16);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0;
        while sent < load_n {
            tick.tick().await;
            // 16 events per tick: a steady rate without a timer per event.
            let k = (load_n - sent).min(16);
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..k {
                let (client, base) = (self.client.clone(), self.base.clone());
                set.spawn(async move {
                    client
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(ADMIN)
                        .json(&Bench::event("one", "self.load"))
                        .send()
                        .await
                });
            }
            while let Some(r) = set.join_next().await {
                r??.error_for_status()?;
            }
            sent += k;
            pb.inc(k as u64);
        }
        pb.finish();
        self.wait_distinct_quiet(target).await?;
        let load = self.take_latencies();

        let _ = stop_worker.send(true);
        let _ = worker_task.await;
        if let Some(t) = news_task {
            let _ = t.await;
        }
        Ok(Outbound {
            publish_per_s,
            publish_batch_per_s,
            deliveries_per_s,
            deliveries_fanout10_per_s,
            idle,
            load,
            load_rate_per_s: rate,
        })
    }

    async fn wait_distinct_quiet(&self, target: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.rx.wait_for(target, Duration::from_millis(100)).await < target {
            anyhow::ensure!(Instant::now() < deadline, "delivery stalled");
        }
        Ok(())
    }
}
