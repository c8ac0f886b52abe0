//! What the chaos tests drive: Herald as a real OS process (so it can be `kill -9`ed), a
//! private Postgres cluster (so it can be restarted without disturbing anyone else's tests), a
//! counting receiver that also detects concurrent sends of one delivery, and a chaotic receiver
//! that misbehaves on purpose.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

pub const ADMIN: &str = "chaos-admin-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

// --- Herald as a process --------------------------------------------------------------------

/// The binary the tests run: the one cargo built for them, or `HERALD_TEST_BIN` (a release
/// build, to take throughput figures from the multi-process test; BENCHMARKS.md).
pub fn herald_binary() -> PathBuf {
    std::env::var_os("HERALD_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_herald")),
        PathBuf::from,
    )
}

/// `herald serve` as a child process of the test, on its own port and data directory.
pub struct HeraldProcess {
    child: Child,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl HeraldProcess {
    /// Starts the built binary on `database_url` with `settings` (`HERALD_*` names without
    /// the prefix) and waits until `/readyz` answers.
    pub async fn start(database_url: &str, settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("herald.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(herald_binary());
        cmd.arg("serve")
            // No herald.toml from the developer's checkout.
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_DATA_DIR", dir.path())
            .env("HERALD_ADMIN_TOKEN", ADMIN)
            // Every node on one database needs the same key for the secrets sealed in it.
            .env("HERALD_ENCRYPTION_KEY", super::common::ENCRYPTION_KEY)
            .env("HERALD_ALLOW_PRIVATE_DESTINATIONS", "true")
            .stdout(Stdio::null())
            .stderr(out);
        for (k, v) in settings {
            cmd.env(format!("HERALD_{}", k.to_ascii_uppercase()), v);
        }
        let child = cmd.spawn().expect("the herald binary starts");
        let mut p = HeraldProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        p.wait_ready(Duration::from_secs(30)).await;
        p
    }

    pub async fn wait_ready(&mut self, timeout: Duration) {
        herald::outbound::http::install_crypto();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("herald exited with {status}:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "herald not ready after {timeout:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`: no shutdown, no release of leases, nothing flushed.
    pub fn kill9(&mut self) {
        // `Child::kill` is SIGKILL on Unix.
        self.child.kill().expect("the process can be killed");
        self.child.wait().unwrap();
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON API client for one Herald process.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        herald::outbound::http::install_crypto();
        Api {
            base: base.to_string(),
            // Bounded, so a request Herald never answers fails the test instead of hanging it.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}: {text}"))
    }

    /// A tenant with one webhook destination to `url`.
    pub async fn tenant_with_destination(&self, tenant: &str, url: &str) {
        self.send(reqwest::Method::PUT, &format!("/v1/tenants/{tenant}"), None)
            .await
            .unwrap();
        self.send(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tenant}/destinations"),
            Some(&json!({"type": "webhook", "url": url, "topics": ["*"]})),
        )
        .await
        .unwrap();
    }

    /// Publishes events `range` in one batch, each with the idempotency id `storm-{n}` and
    /// `{"n": n}` as data, so a batch whose answer was lost can be sent again safely.
    /// Returns the event ids.
    pub async fn publish_range(
        &self,
        tenant: &str,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<String>, String> {
        let events: Vec<Value> = range
            .map(|n| json!({"tenant_id": tenant, "topic": "storm.event", "id": format!("storm-{n}"), "data": {"n": n}}))
            .collect();
        let v = self
            .send(
                reqwest::Method::POST,
                "/v1/events/batch",
                Some(&json!({ "events": events })),
            )
            .await?;
        Ok(v["events"]
            .as_array()
            .ok_or("no events in the answer")?
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// How many of the tenant's deliveries are still in play (not final), up to 1.
    pub async fn any_in_play(&self, tenant: &str) -> bool {
        for status in ["scheduled", "retrying", "delivering"] {
            let v = self
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/tenants/{tenant}/deliveries?status={status}&limit=1"),
                    None,
                )
                .await
                .unwrap();
            if !v["data"].as_array().unwrap().is_empty() {
                return true;
            }
        }
        false
    }
}

// --- A private Postgres cluster ---------------------------------------------------------------

/// A Postgres cluster of the test's own, on a free port, so restarting it disturbs no one.
/// Run as the `postgres` user when the test runs as root (initdb refuses root).
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    as_postgres: bool,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql (see scripts/test)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(chown.success(), "chown of the cluster directory failed");
        }
        let data = dir.path().join("data");
        let port = free_port();
        let pg = PrivatePostgres {
            bin,
            data,
            port,
            as_postgres,
            dir,
        };
        pg.ctl(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("postgres.log");
        pg.ctl(
            "pg_ctl",
            &[
                "-D",
                &pg.data(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
        pg
    }

    fn data(&self) -> String {
        self.data.to_string_lossy().into_owned()
    }

    /// Runs a server tool with its output in a file: a server it starts inherits that, never
    /// a pipe of ours (which would keep the test waiting for as long as the server lives).
    fn ctl(&self, tool: &str, args: &[&str]) {
        let out_path = self.dir.path().join(format!("{tool}.out"));
        let out = std::fs::File::create(&out_path).unwrap();
        let status = command(&self.bin.join(tool).to_string_lossy(), self.as_postgres)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            status.success(),
            "{tool} {args:?} failed: {}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: every connection is cut, the server is back once it returns.
    pub fn restart(&self) {
        let log = self.dir.path().join("postgres.log");
        self.ctl(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log.to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let data = self.data();
        let mut cmd = command(&path.to_string_lossy(), self.as_postgres);
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn command(program: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

// --- The counting receiver --------------------------------------------------------------------

#[derive(Default)]
struct Counts {
    /// webhook-id -> requests received.
    per_id: Mutex<HashMap<String, u32>>,
    /// webhook-id -> requests being answered right now.
    in_flight: Mutex<HashMap<String, u32>>,
    requests: AtomicU64,
    /// Requests that arrived while another request of the same delivery was in flight.
    overlaps: AtomicU64,
    hold: Duration,
    arrived: Notify,
}

/// A fast receiver that answers 200 to everything and counts what arrives, per `webhook-id`.
/// It holds each request for `hold`, so a second concurrent send of the same delivery would
/// overlap the first and be counted.
#[derive(Clone)]
pub struct CountingReceiver {
    pub url: String,
    counts: Arc<Counts>,
}

impl CountingReceiver {
    pub async fn start(hold: Duration) -> Self {
        let counts = Arc::new(Counts {
            hold,
            ..Default::default()
        });
        let app = axum::Router::new()
            .fallback(count)
            .with_state(counts.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CountingReceiver {
            url: format!("http://{addr}/hook"),
            counts,
        }
    }

    pub fn distinct(&self) -> usize {
        self.counts.per_id.lock().unwrap().len()
    }

    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Requests beyond the first per id (at-least-once redeliveries).
    pub fn duplicates(&self) -> u64 {
        self.requests() - self.distinct() as u64
    }

    pub fn overlaps(&self) -> u64 {
        self.counts.overlaps.load(Ordering::Relaxed)
    }

    pub fn has(&self, id: &str) -> bool {
        self.counts.per_id.lock().unwrap().contains_key(id)
    }

    /// Waits until `n` distinct ids arrived; panics after `timeout` with the count so far.
    pub async fn wait_distinct(&self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.counts.arrived.notified();
            if self.distinct() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} distinct webhook-ids, got {} within {timeout:?}",
                    self.distinct()
                );
            }
        }
    }
}

async fn count(State(c): State<Arc<Counts>>, headers: HeaderMap) -> &'static str {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    {
        let mut in_flight = c.in_flight.lock().unwrap();
        let n = in_flight.entry(id.clone()).or_default();
        if *n > 0 {
            c.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        *n += 1;
    }
    if !c.hold.is_zero() {
        tokio::time::sleep(c.hold).await;
    }
    if let Some(n) = c.in_flight.lock().unwrap().get_mut(&id) {
        *n -= 1;
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    *c.per_id.lock().unwrap().entry(id).or_default() += 1;
    c.arrived.notify_waiters();
    "ok"
}

// --- The chaotic receiver ---------------------------------------------------------------------

/// How the chaotic receiver treats one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Ok,
    /// Answers 500.
    Status500,
    /// Reads the request and answers nothing until well past Herald's timeout.
    Hang,
    /// Reads the request and resets the connection (RST, no response).
    Reset,
    /// Answers 200 with a body dribbled out a byte at a time (within the timeout).
    SlowBody,
}

struct Chaos {
    rng: Mutex<StdRng>,
    /// Requests left before the receiver recovers.
    budget: AtomicU64,
    hang: Duration,
    /// Every request in arrival order: (webhook-id, how it was treated).
    log: Mutex<Vec<(String, Mode)>>,
    arrived: Notify,
}

/// A raw HTTP/1.1 server that misbehaves for its first `budget` requests, each treated in a
/// mode drawn from a seeded generator, and answers 200 to everything after that.
#[derive(Clone)]
pub struct ChaoticReceiver {
    pub url: String,
    chaos: Arc<Chaos>,
}

impl ChaoticReceiver {
    pub async fn start(budget: u64, seed: u64, hang: Duration) -> Self {
        let chaos = Arc::new(Chaos {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            budget: AtomicU64::new(budget),
            hang,
            log: Mutex::new(vec![]),
            arrived: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = chaos.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_chaotically(stream, c.clone()));
            }
        });
        ChaoticReceiver {
            url: format!("http://{addr}/hook"),
            chaos,
        }
    }

    pub fn log(&self) -> Vec<(String, Mode)> {
        self.chaos.log.lock().unwrap().clone()
    }

    /// Distinct webhook-ids answered with a 2xx.
    pub fn delivered(&self) -> usize {
        let log = self.chaos.log.lock().unwrap();
        log.iter()
            .filter(|(_, m)| matches!(m, Mode::Ok | Mode::SlowBody))
            .map(|(id, _)| id.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

impl Chaos {
    fn pick(&self) -> Mode {
        let left = self.budget.load(Ordering::Relaxed);
        if left == 0
            || self
                .budget
                .compare_exchange(left, left - 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return if left == 0 { Mode::Ok } else { self.pick() };
        }
        match self.rng.lock().unwrap().random_range(0..100) {
            0..25 => Mode::Status500,
            25..40 => Mode::Hang,
            40..55 => Mode::Reset,
            55..70 => Mode::SlowBody,
            _ => Mode::Ok,
        }
    }
}

/// Reads one request (headers and `content-length` body); `None` when the peer closed.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<HashMap<String, String>> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buf.len() < end + len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..end + len);
    Some(headers)
}

async fn serve_chaotically(mut stream: TcpStream, chaos: Arc<Chaos>) {
    let mut buf = Vec::new();
    while let Some(headers) = read_request(&mut stream, &mut buf).await {
        let id = headers.get("webhook-id").cloned().unwrap_or_default();
        let mode = chaos.pick();
        chaos.log.lock().unwrap().push((id, mode));
        chaos.arrived.notify_waiters();
        let written = match mode {
            Mode::Ok => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
            }
            Mode::Status500 => {
                stream
                    .write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops!",
                    )
                    .await
            }
            Mode::Hang => {
                tokio::time::sleep(chaos.hang).await;
                return;
            }
            Mode::Reset => {
                // A zero linger makes the close an RST instead of a FIN.
                let _ = stream.set_zero_linger();
                return;
            }
            Mode::SlowBody => {
                let mut r = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
                    .await;
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    r = r.and(stream.write_all(b".").await);
                }
                r
            }
        };
        if written.is_err() {
            return;
        }
    }
}
