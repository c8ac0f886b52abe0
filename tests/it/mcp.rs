//! The MCP server (docs/mcp.md), driven by a real MCP client: the official Python SDK (`mcp` 2.x,
//! installed by `scripts/test`) running `tests/mcp/client.py` against Herald over Streamable
//! HTTP (`/mcp`) and over stdio (`herald mcp`, embedded or proxying with `--url`).
//!
//! Each test starts Herald, runs one client scenario, and asserts on the JSON lines it prints.
//! Scenarios that need the test to act midway (cancel, answer a reply) print a `phase` line and
//! read the go-ahead from stdin.

use crate::{common, for_each_store};

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ADMIN_TOKEN, Receiver, StoreKind, TestApp};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

for_each_store!(
    a_wait_returns_the_callback_posted_while_it_waits_with_json_text_and_binary_bodies,
    a_callback_that_arrived_before_the_wait_is_returned_at_once_with_its_cursor,
    a_wait_with_nothing_arriving_ends_pending_with_the_callers_cursor,
    cancelling_a_wait_releases_it_on_the_server_and_the_session_goes_on,
    publish_event_with_a_reply_channel_round_trips_and_the_delivery_tools_show_it,
    poll_ack_replay_list_and_delete_work_as_tools,
);

/// How long any one client run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn python() -> String {
    std::env::var("HERALD_TEST_PYTHON").expect(
        "HERALD_TEST_PYTHON is not set: run the tests with scripts/test, which creates the \
         Python venv with the `mcp` package (scripts/test-requirements.txt)",
    )
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py")
}

/// One run of the Python MCP client.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl Client {
    /// Over Streamable HTTP to `app`'s `/mcp`, with the `initialize` handshake (2025-11-25).
    fn http(app: &TestApp, token: &str, scenario: &str, args: &[&str]) -> Self {
        Self::http_with(app, token, &[], scenario, args)
    }

    /// As [`Client::http`], negotiating MCP 2026-07-28 (stateless, `server/discover`).
    fn http_modern(app: &TestApp, scenario: &str, args: &[&str]) -> Self {
        Self::http_with(
            app,
            ADMIN_TOKEN,
            &[("MCP_PROTOCOL", "modern")],
            scenario,
            args,
        )
    }

    fn http_with(
        app: &TestApp,
        token: &str,
        env: &[(&str, &str)],
        scenario: &str,
        args: &[&str],
    ) -> Self {
        let url = app.url("/mcp");
        let mut argv = vec!["http", url.as_str(), token, scenario];
        argv.extend_from_slice(args);
        Self::spawn(&argv, env)
    }

    /// Over stdio: the client launches `herald mcp` (with `--url` when given) with `env`.
    fn stdio(env: &[(&str, &str)], url: Option<&str>, scenario: &str, args: &[&str]) -> Self {
        let bin = env!("CARGO_BIN_EXE_herald");
        let mut argv = vec!["stdio", bin];
        if let Some(u) = url {
            argv.extend(["--url", u]);
        }
        argv.push(scenario);
        argv.extend_from_slice(args);
        Self::spawn(&argv, env)
    }

    fn spawn(argv: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(python());
        cmd.arg(script())
            .args(argv)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the Python MCP client starts");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Drained all along, so a chatty stderr can never block the client.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Client {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next JSON line the client prints.
    async fn next(&mut self) -> Value {
        match tokio::time::timeout(RUN_LIMIT, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", self.stderr())),
            Ok(_) => {
                let status = self.child.wait().await;
                tokio::time::sleep(Duration::from_millis(50)).await; // let stderr drain
                panic!("the client ended early ({status:?}):\n{}", self.stderr())
            }
            Err(_) => panic!(
                "the client printed nothing for {RUN_LIMIT:?}:\n{}",
                self.stderr()
            ),
        }
    }

    /// The next line, which must be the given phase.
    async fn expect(&mut self, phase: &str) -> Value {
        let v = self.next().await;
        assert_eq!(v["phase"], phase, "{v}\n{}", self.stderr());
        v
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The final `done` line, and a zero exit status.
    async fn done(mut self) -> Value {
        let v = self.expect("done").await;
        let status = tokio::time::timeout(RUN_LIMIT, self.child.wait())
            .await
            .expect("the client exits")
            .unwrap();
        assert!(status.success(), "{status}:\n{}", self.stderr());
        v
    }
}

/// Polls `f` until it holds, failing after `within`.
async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const AGENT_TOOLS: [&str; 8] = [
    "ack_event",
    "create_callback_endpoint",
    "delete_callback_endpoint",
    "list_callback_endpoints",
    "poll_events",
    "replay_callback",
    "verify_signature",
    "wait_for_callback",
];
const PLATFORM_TOOLS: [&str; 5] = [
    "get_delivery",
    "list_deliveries",
    "list_event_types",
    "publish_event",
    "retry_delivery",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_is_listed_with_a_description_and_valid_object_root_schemas() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let out = Client::http(&app, ADMIN_TOKEN, "tools", &[]).done().await;
    let mut expected: Vec<&str> = AGENT_TOOLS.iter().chain(&PLATFORM_TOOLS).copied().collect();
    expected.sort();
    assert_eq!(out["tools"], json!(expected));
    // Checked by the client: input and output schemas present, `type: object` at the root, no
    // `oneOf`/`anyOf`/`allOf` there, valid JSON Schema. The SDK also validates every result
    // below against its tool's output schema.
    assert_eq!(out["problems"], json!([]), "{out}");
    assert_eq!(out["protocol_version"], "2025-11-25");
    assert_eq!(
        out["inputs"]["wait_for_callback"],
        json!(["after", "id", "raw_body", "slug", "timeout_ms"])
    );
    assert_eq!(out["required"]["ack_event"], json!(["event_id"]));
    assert_eq!(
        out["required"]["verify_signature"],
        json!(["body", "headers", "scheme", "secret"])
    );
    assert_eq!(
        out["required"]["publish_event"],
        json!(["data", "tenant_id", "topic"])
    );
    assert_eq!(
        out["outputs"]["wait_for_callback"],
        json!(["callback", "cursor", "status"])
    );
    // REST's own names: the endpoint's fields, with the secret or token shown once.
    let created: Vec<&str> = out["outputs"]["create_callback_endpoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "id",
        "slug",
        "url",
        "secret",
        "token",
        "expires_at",
        "cursor",
    ] {
        assert!(created.contains(&field), "{field} in {created:?}");
    }
}

async fn a_wait_returns_the_callback_posted_while_it_waits_with_json_text_and_binary_bodies(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let out = Client::http(&app, ADMIN_TOKEN, "roundtrip", &[])
        .done()
        .await;
    let created = &out["created"];
    assert_eq!(
        created["url"],
        format!("{}/in/{}", app.base, created["slug"].as_str().unwrap())
    );
    let json = &out["json"];
    assert_eq!(json["status"], "received");
    assert_eq!(json["cursor"], 1);
    assert_eq!(
        json["callback"]["body"],
        json!({"render": "done", "frames": 240})
    );
    // The wait blocked until the POST 0.3 s in, and answered promptly after it.
    let waited = out["waited_s"].as_f64().unwrap();
    assert!((0.29..5.0).contains(&waited), "waited {waited} s");
    assert_eq!(out["text"]["callback"]["body_text"], "plain words");
    assert!(out["text"]["callback"].get("body").is_none());
    assert_eq!(out["text"]["cursor"], 2);
    assert_eq!(out["binary"]["callback"]["body_base64"], "AJ+Slv8=");
    assert_eq!(out["binary_decoded"], json!([0, 159, 146, 150, 255]));
    assert_eq!(out["binary"]["cursor"], 3);
}

async fn a_callback_that_arrived_before_the_wait_is_returned_at_once_with_its_cursor(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let out = Client::http(&app, ADMIN_TOKEN, "early", &[]).done().await;
    assert_eq!(out["got"]["status"], "received");
    assert_eq!(out["got"]["cursor"], 1);
    assert_eq!(out["got"]["callback"]["body"], json!({"early": true}));
    let elapsed = out["elapsed_s"].as_f64().unwrap();
    assert!(
        elapsed < 5.0,
        "a 30 s wait took {elapsed} s to return a stored callback"
    );
    // Waiting again with the same cursor (by endpoint id this time) returns the same one.
    assert_eq!(out["again"]["callback"]["id"], out["got"]["callback"]["id"]);
}

async fn a_wait_with_nothing_arriving_ends_pending_with_the_callers_cursor(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let out = Client::http(&app, ADMIN_TOKEN, "timeout", &["700"])
        .done()
        .await;
    assert_eq!(out["got"], json!({"status": "pending", "cursor": 3}));
    let elapsed = out["elapsed_s"].as_f64().unwrap();
    assert!((0.65..5.0).contains(&elapsed), "took {elapsed} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_takes_the_default_is_capped_without_a_progress_token_and_reports_progress_with_one()
{
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| {
        c.wait_default_timeout_ms = 400;
        c.wait_max_timeout_ms = 1500;
        c.wait_progress_interval_ms = 300;
    })
    .await;
    // No timeout_ms: the configured default (30 s unless set).
    let default = Client::http(&app, ADMIN_TOKEN, "timeout", &["default"])
        .done()
        .await;
    assert_eq!(default["got"]["status"], "pending");
    let elapsed = default["elapsed_s"].as_f64().unwrap();
    assert!((0.38..1.2).contains(&elapsed), "took {elapsed} s");

    // No progress token: a 5 s request is cut to the 1.5 s cap.
    let capped = Client::http(&app, ADMIN_TOKEN, "timeout", &["5000"])
        .done()
        .await;
    assert_eq!(capped["got"]["status"], "pending");
    let elapsed = capped["elapsed_s"].as_f64().unwrap();
    assert!((1.45..4.0).contains(&elapsed), "took {elapsed} s");

    // With a progress token the wait may outlast the cap, and reports progress as it goes.
    let out = Client::http(&app, ADMIN_TOKEN, "progress", &["2400"])
        .done()
        .await;
    assert_eq!(out["got"]["status"], "pending");
    let elapsed = out["elapsed_s"].as_f64().unwrap();
    assert!((2.35..6.0).contains(&elapsed), "took {elapsed} s");
    let notes = out["notifications"].as_array().unwrap();
    assert!(notes.len() >= 4, "{notes:?}");
    let progress: Vec<f64> = notes
        .iter()
        .map(|n| n["progress"].as_f64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert!(notes.iter().all(|n| n["total"] == 2400.0), "{notes:?}");
    // About one per interval, not a burst at the end.
    let first = notes[0]["at"].as_f64().unwrap();
    assert!((0.25..1.2).contains(&first), "first progress at {first} s");
}

async fn cancelling_a_wait_releases_it_on_the_server_and_the_session_goes_on(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let client = Client::http(&app, ADMIN_TOKEN, "cancel", &[]);
    cancel_midway(&app, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_wait_through_the_stdio_proxy_releases_it_on_the_remote_herald() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let env = [("HERALD_TOKEN", ADMIN_TOKEN)];
    let client = Client::stdio(&env, Some(&app.base), "cancel", &[]);
    cancel_midway(&app, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_is_not_held_up_by_an_mcp_wait_in_progress() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let mut client = Client::http(&app, ADMIN_TOKEN, "cancel", &[]);
    let waiting = client.expect("waiting").await;
    let endpoint = waiting["endpoint_id"].as_str().unwrap().to_string();
    let waiters = app.herald.waiters.clone();
    eventually(
        Duration::from_secs(10),
        "the wait reaches the server",
        || waiters.waiting_on(&endpoint) == 1,
    )
    .await;
    // The graceful shutdown ends the 50 s wait and the open MCP streams instead of waiting.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the shutdown completes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The tool runs in the MCP session's own task, which lets go just after.
    eventually(
        Duration::from_secs(2),
        "the wait ends with the server",
        || waiters.waiting_on(&endpoint) == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_gets_the_same_tools_waits_progress_and_cancellation() {
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| c.wait_progress_interval_ms = 300).await;
    let tools = Client::http_modern(&app, "tools", &[]).done().await;
    assert_eq!(tools["protocol_version"], "2026-07-28");
    assert_eq!(tools["problems"], json!([]));
    assert_eq!(tools["tools"].as_array().unwrap().len(), 13);

    let out = Client::http_modern(&app, "roundtrip", &[]).done().await;
    assert_eq!(
        out["json"]["callback"]["body"],
        json!({"render": "done", "frames": 240})
    );
    assert_eq!(out["text"]["callback"]["body_text"], "plain words");

    let progress = Client::http_modern(&app, "progress", &["1000"])
        .done()
        .await;
    assert_eq!(progress["got"]["status"], "pending");
    assert!(
        !progress["notifications"].as_array().unwrap().is_empty(),
        "{progress}"
    );

    cancel_midway(&app, Client::http_modern(&app, "cancel", &[])).await;
}

/// Runs the `cancel` scenario: once the client's 50 s wait is registered on `app`, the client
/// cancels it; the server must let go promptly while the session stays open and usable.
async fn cancel_midway(app: &TestApp, mut client: Client) {
    let waiting = client.expect("waiting").await;
    let endpoint = waiting["endpoint_id"].as_str().unwrap().to_string();
    let waiters = app.herald.waiters.clone();
    eventually(
        Duration::from_secs(10),
        "the wait reaches the server",
        || waiters.waiting_on(&endpoint) == 1,
    )
    .await;
    client.say("cancel").await;
    client.expect("cancelled").await;
    eventually(Duration::from_secs(3), "the cancelled wait ends", || {
        waiters.waiting_on(&endpoint) == 0
    })
    .await;
    client.say("done").await;
    // The session still answers: it lists (at least) the endpoint the cancelled wait was on.
    let listed = client.done().await["endpoints"].as_u64().unwrap();
    assert!(listed >= 1, "{listed}");
}

async fn publish_event_with_a_reply_channel_round_trips_and_the_delivery_tools_show_it(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["review.*"]).await;

    let mut client = Client::http(&app, ADMIN_TOKEN, "reply", &["acme"]);
    let published = client.expect("published").await;
    assert_eq!(published["deliveries"], 1);
    let reply_url = published["reply_url"].as_str().unwrap().to_string();
    assert!(
        reply_url.starts_with(&format!("{}/in/", app.base)),
        "{reply_url}"
    );

    // The subscriber gets the event with its reply URL and answers there, while the agent's
    // wait_for_callback is blocked on the reply channel.
    app.worker.drain().await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].headers["webhook-reply-url"], reply_url);
    assert_eq!(got[0].json()["data"], json!({"plan": 7}));
    let r = app
        .client
        .post(&reply_url)
        .json(&json!({"approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let out = client.done().await;
    assert_eq!(out["answer"]["status"], "received");
    assert_eq!(out["answer"]["callback"]["body"], json!({"approved": true}));
    // Waiting by event id reaches the same reply channel.
    assert_eq!(
        out["by_event"]["callback"]["id"],
        out["answer"]["callback"]["id"]
    );
    let listed = out["deliveries"]["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["event_id"], published["id"]);
    let delivery = &out["delivery"];
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["attempts"][0]["status_code"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delivery_schedules_a_manual_attempt() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let event = app.publish("acme", "job.done", json!({"n": 1})).await;
    app.worker.drain().await;
    let delivery = app.only_delivery("acme", &event).await;
    let id = delivery["id"].as_str().unwrap();
    // `retry_delivery` through the stdio proxy: the platform tools work remotely too.
    let out = Client::stdio(
        &[("HERALD_TOKEN", ADMIN_TOKEN)],
        Some(&app.base),
        "retry",
        &[id],
    )
    .done()
    .await;
    assert_eq!(out["retried"]["id"], id);
    app.worker.drain().await;
    rx.wait_for(2, Duration::from_secs(10)).await;
    let after = app.delivery(id).await;
    let attempts = after["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{after}");
    assert!(attempts.iter().any(|a| a["trigger"] == "manual"), "{after}");
}

async fn poll_ack_replay_list_and_delete_work_as_tools(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let target = Receiver::start().await;
    let out = Client::http(&app, ADMIN_TOKEN, "queue", &[&target.url])
        .done()
        .await;
    let bodies = |page: &Value| -> Vec<Value> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["body"].clone())
            .collect()
    };
    assert_eq!(
        bodies(&out["before"]),
        vec![json!({"n": 1}), json!({"n": 2})]
    );
    assert_eq!(bodies(&out["only_b"]), vec![json!({"n": 2})]);
    assert!(out["acked"]["acked_at"].is_string(), "{}", out["acked"]);
    assert_eq!(bodies(&out["after"]), vec![json!({"n": 2})]);

    // The replay re-sent the captured body and headers to the target.
    assert_eq!(out["replayed"]["success"], true, "{}", out["replayed"]);
    assert_eq!(out["replayed"]["status_code"], 200);
    assert_eq!(out["replayed"]["method"], "POST");
    let got = target.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].json(), json!({"n": 2}));
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(
        got[0].headers["x-herald-replay-of"],
        out["only_b"]["data"][0]["id"].as_str().unwrap()
    );

    assert_eq!(out["listed"]["data"].as_array().unwrap().len(), 2);
    assert_eq!(out["deleted"]["deleted"], true);
    let left = out["listed_after"]["data"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["label"], "b");
    assert_eq!(out["gone"], "callback endpoint not found");
}

/// A new callback endpoint's URL.
async fn new_callback_url(app: &TestApp) -> String {
    let e: Value = app
        .post("/v1/callback-endpoints", json!({}))
        .await
        .json()
        .await
        .unwrap();
    e["url"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_keeps_the_method_the_callback_arrived_with() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let target = Receiver::start().await;
    let url = &new_callback_url(&app).await;
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
        let sent = app
            .client
            .request(method.clone(), url)
            .json(&json!({"via": method.as_str()}))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 200);
    }
    let polled = app.get_json("/v1/callbacks?acked=false").await;
    let ids: Vec<String> = polled["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    for (i, id) in ids.iter().enumerate() {
        let out: Value = app
            .post(
                &format!("/v1/callbacks/{id}/replay"),
                json!({"target_url": target.url}),
            )
            .await
            .json()
            .await
            .unwrap();
        let got = target.wait_for(i + 1, Duration::from_secs(5)).await;
        let body = got[i].json();
        assert_eq!(got[i].method, body["via"], "{out}");
        assert_eq!(out["method"], body["via"]);
        assert_eq!(out["success"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_names_a_bad_target_url_and_goes_through_the_ssrf_guard() {
    // Private destinations refused, as in production.
    let app =
        TestApp::spawn_with(StoreKind::Sqlite, |c| c.allow_private_destinations = false).await;
    let url = &new_callback_url(&app).await;
    assert_eq!(
        app.client
            .post(url)
            .json(&json!({"a": 1}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let polled = app.get_json("/v1/callbacks?acked=false").await;
    let id = polled["data"][0]["id"].as_str().unwrap().to_string();
    let one = app.get_json(&format!("/v1/callbacks/{id}")).await;
    assert_eq!(one["body"], json!({"a": 1}));

    let bad = app
        .post(
            &format!("/v1/callbacks/{id}/replay"),
            json!({"target_url": "ftp://x/y"}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["field"], "target_url");

    let blocked: Value = app
        .post(
            &format!("/v1/callbacks/{id}/replay"),
            json!({"target_url": "http://127.0.0.1:9/hook"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(blocked["success"], false, "{blocked}");
    assert!(
        blocked["error"]
            .as_str()
            .unwrap()
            .contains("is not allowed"),
        "{blocked}"
    );
    assert_eq!(
        app.post(
            "/v1/callbacks/cb_nope/replay",
            json!({"target_url": "http://example.com/"})
        )
        .await
        .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_signature_accepts_what_the_ingest_verifier_accepts_and_names_mismatches() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = r#"{"type":"job.completed","id":42}"#;
    let ts = chrono::Utc::now().timestamp();
    let signature =
        herald::inbound::verify::standard_webhooks_signature(secret, "msg_1", ts, body.as_bytes())
            .unwrap();
    let ts = ts.to_string();
    let out = Client::http(
        &app,
        ADMIN_TOKEN,
        "verify",
        &[secret, "msg_1", &ts, &signature, body],
    )
    .done()
    .await;
    assert_eq!(out["good"]["valid"], true, "{}", out["good"]);
    assert_eq!(out["bad"]["valid"], false);
    assert_eq!(out["bad"]["code"], "signature_mismatch");
    // An unknown scheme is refused by the argument's enum, naming it and the valid ones.
    let unknown = out["unknown"].as_str().unwrap();
    assert!(
        unknown.contains("scheme: unknown variant `pgp`") && unknown.contains("standard_webhooks"),
        "{unknown}"
    );
    // Ingest agrees with the tool: the same request passes the endpoint's verification.
    assert_eq!(out["created"]["secret"], secret);
    assert!(
        out["created"]["expires_at"].is_string(),
        "{}",
        out["created"]
    );
    assert_eq!(out["ingested"]["callback"]["verified"], true);
    assert_eq!(
        out["ingested"]["callback"]["body"],
        json!({"type": "job.completed", "id": 42})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_the_model_can_fix_are_tool_errors_and_a_tenant_token_sees_only_its_own() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    app.tenant("acme").await;
    let token: Value = app
        .post("/v1/tenants/acme/tokens", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let platform: Value = app
        .post("/v1/callback-endpoints", json!({"label": "platform's"}))
        .await
        .json()
        .await
        .unwrap();
    let foreign = platform["slug"].as_str().unwrap();

    let out = Client::http(&app, &token, "errors", &[foreign])
        .done()
        .await;
    assert!(
        out["bad_scheme"]
            .as_str()
            .unwrap()
            .contains("verification.scheme: unknown variant `pgp`"),
        "{out}"
    );
    assert_eq!(out["bad_ttl"], "ttl_seconds: must be 1-31536000");
    assert_eq!(out["unknown_slug"], "callback endpoint not found");
    assert_eq!(out["no_target"], "slug: required (or give `id`)");
    assert!(
        out["wrong_type"]
            .as_str()
            .unwrap()
            .contains("timeout_ms: invalid type: string \"soon\""),
        "{out}"
    );
    // An unknown tool is protocol misuse: a JSON-RPC error, not a result.
    assert!(
        out["unknown_tool"].as_str().unwrap().contains("not found"),
        "{out}"
    );
    // The platform's endpoint does not exist for the tenant; its own is created for it.
    assert_eq!(out["foreign"], "callback endpoint not found");
    assert_eq!(out["own"]["id"].as_str().unwrap().len(), 36);
    let listed = out["listed"]["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["tenant_id"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_http_needs_a_valid_token_and_an_allowed_host() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"}}});
    let send = |token: Option<&str>, host: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(h) = host {
            req = req.header("host", h);
        }
        req.send()
    };
    for token in [None, Some("not-a-token")] {
        let r = send(token, None).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let ok = send(Some(ADMIN_TOKEN), None).await.unwrap();
    assert_eq!(ok.status(), 200);
    // A DNS-rebinding page reaches Herald under its own host name: refused.
    let rebound = send(Some(ADMIN_TOKEN), Some("evil.example")).await.unwrap();
    assert!(rebound.status().is_client_error(), "{}", rebound.status());

    // The public URL's host is allowed.
    let public = TestApp::spawn_with(StoreKind::Sqlite, |c| {
        c.public_url = Some("https://herald.example.com".into());
    })
    .await;
    let r = public
        .client
        .post(public.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("host", "herald.example.com")
        .bearer_auth(ADMIN_TOKEN)
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_mcp_over_stdio_runs_an_embedded_herald_with_its_own_store_and_listener() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let env = [("HERALD_DATA_DIR", dir), ("HERALD_LISTEN", "127.0.0.1:0")];
    let out = Client::stdio(&env, None, "roundtrip", &[]).done().await;
    let url = out["created"]["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(
        out["json"]["callback"]["body"],
        json!({"render": "done", "frames": 240})
    );
    assert_eq!(out["binary"]["callback"]["body_base64"], "AJ+Slv8=");
    // The embedded store is SQLite in the data directory, and it kept the endpoint.
    assert!(data.path().join("herald.db").exists());
    let tools = Client::stdio(&env, None, "tools", &[]).done().await;
    assert_eq!(tools["problems"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_mcp_with_url_uses_the_running_heralds_api() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let out = Client::stdio(
        &[("HERALD_TOKEN", ADMIN_TOKEN)],
        Some(&app.base),
        "early",
        &[],
    )
    .done()
    .await;
    assert_eq!(out["got"]["status"], "received");
    // The endpoint and its callback live in the running Herald.
    let id = out["got"]["callback"]["endpoint_id"].as_str().unwrap();
    let e = app.get_json(&format!("/v1/callback-endpoints/{id}")).await;
    assert_eq!(e["received"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_mcp_with_url_but_no_token_exits_naming_herald_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["mcp", "--url", "http://127.0.0.1:9"])
        .env_remove("HERALD_TOKEN")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout is for MCP messages only");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HERALD_TOKEN"), "{stderr}");
}

/// The MCP Inspector CLI (`@modelcontextprotocol/inspector`, installed by `scripts/test`)
/// lists every tool in `--strict` mode, where it reports each schema spelling that some
/// client or model provider cannot read: no error and no warning, over stdio (`herald mcp`)
/// and over Streamable HTTP (`/mcp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_finds_no_unportable_schema_over_stdio_or_http() {
    let bin = std::env::var("HERALD_TEST_NODE_BIN")
        .expect("HERALD_TEST_NODE_BIN is unset: run the tests with scripts/test");
    let inspector = std::path::Path::new(&bin).join("mcp-inspector");
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let data = format!("HERALD_DATA_DIR={}", dir.path().join("stdio").display());
    let stdio: Vec<String> = [
        "--cli",
        "--method",
        "tools/list",
        "--strict",
        "-e",
        &data,
        "-e",
        "HERALD_LISTEN=127.0.0.1:0",
        env!("CARGO_BIN_EXE_herald"),
        "mcp",
    ]
    .map(String::from)
    .into();
    let http: Vec<String> = [
        "--cli",
        "--method",
        "tools/list",
        "--strict",
        "--transport",
        "http",
        &app.url("/mcp"),
        "--header",
        &format!("Authorization: Bearer {ADMIN_TOKEN}"),
    ]
    .map(String::from)
    .into();
    for (transport, args) in [("stdio", stdio), ("http", http)] {
        let out = tokio::process::Command::new(&inspector)
            .args(&args)
            .current_dir(dir.path())
            .env("MCP_CATALOG_PATH", dir.path().join("catalog.json"))
            .env("NO_COLOR", "1")
            .output()
            .await
            .expect("the Inspector runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{transport}: {}\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("Warning"), "{transport}:\n{stderr}");
        assert!(!stderr.contains("Error"), "{transport}:\n{stderr}");
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{transport}: {e}: {}", String::from_utf8_lossy(&out.stdout))
        });
        let tools = listed["tools"].as_array().expect("a tool list");
        assert!(tools.len() >= 12, "{transport}: {} tools", tools.len());
        assert!(tools.iter().all(|t| t["outputSchema"]["type"] == "object"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_event_types_shows_the_catalog_and_a_publish_failing_its_schema_names_the_pointer() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    app.tenant("acme").await;
    let schema = json!({"type": "object", "required": ["job_id"],
                        "properties": {"tokens": {"type": "integer", "minimum": 0}}});
    let r = app
        .put(
            "/v1/event-types/job.completed",
            json!({"description": "A job finished", "schema": schema}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let out = Client::http(&app, ADMIN_TOKEN, "catalog", &["acme"])
        .done()
        .await;
    let types = out["types"]["data"].as_array().unwrap();
    assert_eq!(types.len(), 1);
    assert_eq!(types[0]["name"], "job.completed");
    assert_eq!(types[0]["schema"], schema);
    let refused = out["refused"].as_str().unwrap();
    assert!(
        refused.contains("schema_mismatch") || refused.contains("does not satisfy"),
        "{refused}"
    );
    assert!(
        refused.contains("/tokens") && refused.contains("minimum"),
        "{refused}"
    );
}
