//! The steady-state phase: publishing and delivering at once, as a platform in production does,
//! with the CPU each process spends per event.
//!
//! Herald runs as a child process (`herald serve`, API and worker) on the benchmark's store, so
//! its CPU time is its own. Closed-loop publishers (each a keep-alive connection that waits for
//! its answer before the next event) post single events for a warm-up and then a measured
//! window; the receiver, on a thread of its own in this process, counts what arrives. Over the
//! window:
//!
//! - `*_per_s`: deliveries counted at the receiver per second (for the fan-out variant, events
//!   per second is that divided by 10);
//! - publish latency (request to answer, at the publisher) and publish→receipt latency (the
//!   publish time written into the event, read by the receiver);
//! - CPU per event: Herald's from `/proc/<pid>/stat`, the receiver's from its thread's stat,
//!   and Postgres's as the machine's busy time less every process of the benchmark and Herald.
//!   Postgres backends come and go, so summing the live ones would miss work; the machine's
//!   total does not, and on a dedicated box the rest is Postgres (its background writers and
//!   autovacuum included). On SQLite that remainder is reported as `cpu_us_per_event_other`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::{ADMIN, Bench, CpuTimes, ReceiverState, percentile, wire};

/// Clock ticks per second of `/proc/*/stat` and `/proc/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// How the steady phase runs.
#[derive(Debug, Clone, Copy)]
pub struct SteadyOptions {
    /// Publishers, each one connection.
    pub clients: usize,
    /// The measured window.
    pub measure: Duration,
    /// Run before the window, and not counted.
    pub warm_up: Duration,
}

/// A process's (or a thread's) CPU time so far, in ticks: `utime + stime` of a stat file.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) at index 0.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The CPU ticks of everything the phase measures, at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    herald: u64,
    bench: u64,
    receiver: u64,
    machine_busy: u64,
    at: Instant,
    received: u64,
}

impl Snapshot {
    fn take(pid: u32, rx: &ReceiverState) -> anyhow::Result<Self> {
        let receiver_tid = rx.thread_id().context("the receiver thread's id")?;
        Ok(Snapshot {
            herald: stat_ticks(&format!("/proc/{pid}/stat")).context("Herald's CPU time")?,
            bench: stat_ticks("/proc/self/stat").context("the benchmark's CPU time")?,
            receiver: stat_ticks(&format!("/proc/self/task/{receiver_tid}/stat"))
                .context("the receiver's CPU time")?,
            machine_busy: CpuTimes::now().context("/proc/stat")?.busy,
            at: Instant::now(),
            received: rx.requests.load(Ordering::Relaxed),
        })
    }
}

/// A Herald of its own, in a child process, on `database_url`.
pub struct Child {
    /// A plain `std` child: killed and reaped in [`Child::stop`], or on drop.
    process: std::process::Child,
    pub pid: u32,
    pub base: String,
    pub addr: std::net::SocketAddr,
}

impl Child {
    pub async fn start(database_url: &str, encryption_key: &str) -> anyhow::Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let exe = std::env::current_exe().context("the herald binary")?;
        let process = std::process::Command::new(exe)
            .arg("serve")
            .env("HERALD_LISTEN", addr.to_string())
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_ADMIN_TOKEN", ADMIN)
            .env("HERALD_ENCRYPTION_KEY", encryption_key)
            .env("HERALD_ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("HERALD_INBOUND_RATE_LIMIT_PER_S", "0")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting `herald serve` for the steady phase")?;
        let pid = process.id();
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the child Herald did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Child {
            process,
            pid,
            base,
            addr,
        })
    }

    /// The child's peak resident memory, in MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((kb / 1024.0 * 10.0).round() / 10.0)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// What one variant measured.
pub struct Figures {
    pub deliveries_per_s: f64,
    pub events_per_s: f64,
    pub publish_p50_ms: f64,
    pub publish_p99_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub cpu_us_per_event_herald: f64,
    pub cpu_us_per_event_receiver: f64,
    /// Machine busy time less Herald and the benchmark: Postgres on a dedicated box.
    pub cpu_us_per_event_rest: f64,
}

/// Publishes to `tenant` (whose events fan out to `fanout` destinations) from `opts.clients`
/// closed-loop publishers for the warm-up and the window, and measures the window.
pub async fn measure(
    child: &Child,
    rx: &Arc<ReceiverState>,
    tenant: &str,
    fanout: u64,
    opts: SteadyOptions,
) -> anyhow::Result<Figures> {
    let mut conns = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        conns.push(wire::Conn::connect(child.addr).await?);
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let headers = format!("authorization: Bearer {ADMIN}\r\n");
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (measuring, stop, headers, tenant) = (
            measuring.clone(),
            stop.clone(),
            headers.clone(),
            tenant.to_string(),
        );
        tasks.spawn(async move {
            let mut latencies_us = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let body = Bench::event_json(&tenant, "bench.steady");
                let sent = Instant::now();
                let status = conn.post("/v1/events", &headers, body.as_bytes()).await?;
                anyhow::ensure!(
                    status == 202,
                    "steady publish: {status} {}",
                    String::from_utf8_lossy(conn.body())
                );
                if measuring.load(Ordering::Relaxed) {
                    latencies_us.push(sent.elapsed().as_micros() as u64);
                }
            }
            Ok(latencies_us)
        });
    }
    tokio::time::sleep(opts.warm_up).await;
    rx.latencies_us.lock().expect("not poisoned").clear();
    let start = Snapshot::take(child.pid, rx)?;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(opts.measure).await;
    measuring.store(false, Ordering::Relaxed);
    let end = Snapshot::take(child.pid, rx)?;
    let mut receipt = std::mem::take(&mut *rx.latencies_us.lock().expect("not poisoned"));
    stop.store(true, Ordering::Relaxed);
    let mut publish = Vec::new();
    while let Some(r) = tasks.join_next().await {
        publish.extend(r??);
    }
    publish.sort_unstable();
    receipt.sort_unstable();

    let secs = end.at.duration_since(start.at).as_secs_f64();
    let deliveries = end.received.saturating_sub(start.received) as f64;
    let events = (deliveries / fanout as f64).max(1.0);
    let per_event = |ticks: u64| ticks as f64 / TICKS_PER_S * 1e6 / events;
    let herald = end.herald.saturating_sub(start.herald);
    let bench = end.bench.saturating_sub(start.bench);
    let machine = end.machine_busy.saturating_sub(start.machine_busy);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Ok(Figures {
        deliveries_per_s: (deliveries / secs).round(),
        events_per_s: (deliveries / fanout as f64 / secs).round(),
        publish_p50_ms: percentile(&publish, 0.50),
        publish_p99_ms: percentile(&publish, 0.99),
        latency_p50_ms: percentile(&receipt, 0.50),
        latency_p99_ms: percentile(&receipt, 0.99),
        cpu_us_per_event_herald: round(per_event(herald)),
        cpu_us_per_event_receiver: round(per_event(end.receiver.saturating_sub(start.receiver))),
        cpu_us_per_event_rest: round(per_event(machine.saturating_sub(herald + bench))),
    })
}

/// The steady phase on `database_url`: one destination, then ten; the figures as JSON keys.
pub async fn run(
    database_url: &str,
    encryption_key: &str,
    receiver_url: &str,
    rx: &Arc<ReceiverState>,
    postgres: bool,
    opts: SteadyOptions,
) -> anyhow::Result<Value> {
    let child = Child::start(database_url, encryption_key).await?;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = client
            .request(method, format!("{}{path}", child.base))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await?;
            anyhow::ensure!(r.status().is_success(), "{}", r.status());
            Ok::<_, anyhow::Error>(())
        }
    };
    let dest = json!({"type": "webhook", "url": receiver_url, "topics": ["bench.steady"]});
    for (tenant, n) in [("steady", 1), ("steadyfan", 10)] {
        call(reqwest::Method::PUT, &format!("/v1/tenants/{tenant}"), None).await?;
        for _ in 0..n {
            let path = format!("/v1/tenants/{tenant}/destinations");
            call(reqwest::Method::POST, &path, Some(dest.clone())).await?;
        }
    }
    let one = measure(&child, rx, "steady", 1, opts).await?;
    let fan = measure(&child, rx, "steadyfan", 10, opts).await?;
    let rss = child.peak_rss_mb();
    drop(child);
    Ok(figures(Some((&one, &fan)), rss, postgres, Some(opts)))
}

/// The phase's keys, all `null`, for a run that skips it.
pub fn absent() -> Value {
    figures(None, None, false, None)
}

fn figures(
    measured: Option<(&Figures, &Figures)>,
    rss: Option<f64>,
    postgres: bool,
    opts: Option<SteadyOptions>,
) -> Value {
    let one = |f: fn(&Figures) -> f64| measured.map(|(one, _)| f(one));
    let fan = |f: fn(&Figures) -> f64| measured.map(|(_, fan)| f(fan));
    let rest = |x: Option<f64>, pg: bool| x.filter(|_| pg);
    json!({
        "steady_per_s": one(|f| f.events_per_s),
        "steady_publish_p50_ms": one(|f| f.publish_p50_ms),
        "steady_publish_p99_ms": one(|f| f.publish_p99_ms),
        "steady_latency_p50_ms": one(|f| f.latency_p50_ms),
        "steady_latency_p99_ms": one(|f| f.latency_p99_ms),
        "cpu_us_per_event_herald": one(|f| f.cpu_us_per_event_herald),
        "cpu_us_per_event_postgres": rest(one(|f| f.cpu_us_per_event_rest), postgres),
        "cpu_us_per_event_other": rest(one(|f| f.cpu_us_per_event_rest), !postgres),
        "cpu_us_per_event_receiver": one(|f| f.cpu_us_per_event_receiver),
        "steady_fanout10_deliveries_per_s": fan(|f| f.deliveries_per_s),
        "steady_fanout10_publish_p99_ms": fan(|f| f.publish_p99_ms),
        "steady_fanout10_latency_p99_ms": fan(|f| f.latency_p99_ms),
        "cpu_us_per_event_fanout10_herald": fan(|f| f.cpu_us_per_event_herald),
        "cpu_us_per_event_fanout10_postgres": rest(fan(|f| f.cpu_us_per_event_rest), postgres),
        "steady_clients": opts.map(|o| o.clients),
        "steady_secs": opts.map(|o| o.measure.as_secs_f64()),
        "steady_herald_peak_rss_mb": rss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let dir = std::env::temp_dir().join(format!("herald-stat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stat");
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime …
        std::fs::write(
            &path,
            "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0\n",
        )
        .unwrap();
        assert_eq!(stat_ticks(path.to_str().unwrap()), Some(325));
        assert!(stat_ticks("/proc/self/stat").is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
