//! The OpenAPI document against the live server (docs/api.md): `schemathesis` generates
//! requests from `/openapi.json` — valid, boundary and malformed — and checks that none gets
//! a 5xx and that every answer matches the schema the document gives for it.
//!
//! Bounded and reproducible: a fixed seed, a fixed number of examples per operation and a
//! time budget, so the run takes well under two minutes. `scripts/test` installs the pinned
//! schemathesis (scripts/test-requirements.txt) and exports `HERALD_TEST_PYTHON`.
//!
//! One store is enough here: the fuzzer exercises the HTTP layer's validation and the
//! document's accuracy, which do not depend on the store (the store suites cover both).

use crate::common;

use std::process::Command;

use common::{ADMIN_TOKEN, Receiver, StoreKind, TestApp};
use serde_json::json;

/// Examples per API operation and the run's time budget (seconds).
const MAX_EXAMPLES: &str = "25";
const MAX_SECONDS: &str = "45";
const SEED: &str = "20261201";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let python = std::env::var("HERALD_TEST_PYTHON").expect(
        "HERALD_TEST_PYTHON is unset: run the tests with scripts/test, which installs \
         schemathesis and sets it",
    );
    // Waits answer within the fuzzer's request timeout.
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| {
        c.wait_default_timeout_ms = 200;
        c.wait_max_timeout_ms = 1000;
    })
    .await;
    // Some real resources, so requests that name them reach past the 404s.
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    app.publish("acme", "job.done", json!({"n": 1})).await;

    let schema = app.url("/openapi.json");
    let report = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-m", "schemathesis.cli", "run", &schema])
            .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
            .args(["--max-time", MAX_SECONDS, "--request-timeout", "10"])
            // One worker: generation on a secondary thread has hit a CPython recursion limit
            // ("AST constructor recursion depth mismatch") on this document.
            .args(["--workers", "1"])
            .current_dir(report.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary, for `--nocapture` runs.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // The run really tested the API (an empty document would pass vacuously).
    assert!(stdout.contains("Tested: "), "{stdout}");
    assert!(!stdout.contains("Tested: 0"), "{stdout}");
}
