//! `herald bench --json` (BENCHMARKS.md): one JSON object per store on stdout and nothing else,
//! each with every figure the contract names, measured (not null). A small run: the figures
//! themselves are for BENCHMARKS.md, from a release build.

use std::process::Command;

use serde_json::Value;

/// The keys BENCHMARKS.md documents, besides `store`.
const FIGURES: [&str; 23] = [
    "publish_per_s",
    "publish_batch_per_s",
    "deliveries_per_s",
    "latency_idle_p50_ms",
    "latency_idle_p99_ms",
    "latency_load_p50_ms",
    "latency_load_p99_ms",
    "ingest_per_s",
    "wake_p50_ms",
    "wake_p99_ms",
    "peak_rss_mb",
    // The steady phase: publishing and delivering at once, Herald a child process.
    "steady_per_s",
    "steady_publish_p50_ms",
    "steady_publish_p99_ms",
    "steady_latency_p50_ms",
    "steady_latency_p99_ms",
    "cpu_us_per_event_herald",
    "cpu_us_per_event_receiver",
    "steady_fanout10_deliveries_per_s",
    "steady_herald_peak_rss_mb",
    // What one signature costs, HMAC against ed25519.
    "sign_hmac_us",
    "sign_ed25519_us",
    "verify_ed25519_us",
];

#[test]
fn herald_bench_json_prints_one_object_per_store_with_every_contract_figure_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "bench",
            "--store",
            "all",
            "--events",
            "300",
            "--ingest-clients",
            "16",
            "--steady-secs",
            "1",
            "--steady-clients",
            "8",
            "--json",
        ])
        .current_dir(dir.path())
        .env("HERALD_BENCH_POSTGRES_URL", postgres)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the herald binary runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "herald bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per store, nothing else: {stdout}");
    for (line, store) in lines.iter().zip(["sqlite", "postgres"]) {
        let v: Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(v["store"], store);
        for key in FIGURES {
            let x = v[key].as_f64();
            assert!(
                x.is_some_and(|x| x.is_finite() && x > 0.0),
                "{store}: `{key}` is {}",
                v[key]
            );
        }
        // The run's parameters come with the figures, and how busy the machine was: the share
        // of CPU the hypervisor stole is what makes a run on a shared host incomparable.
        assert_eq!(v["events"], 300);
        assert_eq!(v["ingest_clients"], 16);
        assert_eq!(v["steady_clients"], 8);
        // The rest of the machine's CPU is Postgres's on the Postgres store (its own key),
        // and another process's on SQLite.
        let (own, other) = match store {
            "postgres" => ("cpu_us_per_event_postgres", "cpu_us_per_event_other"),
            _ => ("cpu_us_per_event_other", "cpu_us_per_event_postgres"),
        };
        assert!(
            v[own].as_f64().is_some_and(|x| x >= 0.0),
            "{store}: {own} {}",
            v[own]
        );
        assert!(v[other].is_null(), "{store}: {other} {}", v[other]);
        for key in ["cpu_busy_pct", "cpu_steal_pct"] {
            let pct = v[key].as_f64();
            assert!(
                pct.is_some_and(|p| (0.0..=100.0).contains(&p)),
                "{store}: `{key}` is {}",
                v[key]
            );
        }
        assert!(v["cpu_busy_pct"].as_f64().unwrap() > 0.0, "{v}");
        // 150 single + one batch of 500, then 200 idle, 100+ under load: all received.
        assert!(v["distinct_ids_received"].as_u64().unwrap() >= 950, "{v}");
    }
}
