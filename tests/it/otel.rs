//! OpenTelemetry traces against a real OTLP/HTTP receiver: `tests/otel/collector.py`, which
//! decodes the protobuf export with the `opentelemetry-proto` package (installed by
//! scripts/test), not with Herald's code.
//!
//! Each test's application gets its own exporter through `Config::otel` (the tracer provider
//! is per application, never process-wide), so these tests run beside all the others in the
//! one test binary, each with a collector of its own.

use crate::{common, for_each_store};

use std::process::Stdio;
use std::time::Duration;

use common::{ADMIN_TOKEN, Receiver, Reply, StoreKind, TestApp};
use herald::telemetry::otel::OtelSettings;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

for_each_store!(
    a_traced_publish_continues_its_trace_through_a_failed_attempt_and_its_retry,
    a_destination_that_opts_out_gets_no_traceparent_but_its_attempts_are_still_traced,
);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// SpanKind in OTLP: 2 server, 3 client.
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

/// The test collector: a child process printing one JSON line per span it received.
struct Collector {
    endpoint: String,
    /// Every span received so far; a change wakes [`Collector::wait_for`].
    spans: tokio::sync::watch::Receiver<Vec<Value>>,
    _child: tokio::process::Child,
}

impl Collector {
    async fn start() -> Self {
        let python = std::env::var("HERALD_TEST_PYTHON").expect(
            "HERALD_TEST_PYTHON is not set: run the tests with scripts/test, which creates the \
             virtualenv with `opentelemetry-proto`",
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otel/collector.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the collector starts")
            .unwrap()
            .unwrap();
        let port = first.strip_prefix("port ").unwrap().to_string();
        let (sink, spans) = tokio::sync::watch::channel(Vec::new());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let span: Value = serde_json::from_str(&line).unwrap();
                sink.send_modify(|all| all.push(span));
            }
        });
        Collector {
            endpoint: format!("http://127.0.0.1:{port}/v1/traces"),
            spans,
            _child: child,
        }
    }

    fn settings(&self) -> OtelSettings {
        OtelSettings {
            headers: vec![("x-collector-key".into(), "k1".into())],
            service_name: "herald-test".into(),
            // Batches go out quickly, so the test's wait is short.
            schedule_delay: Duration::from_millis(50),
            ..OtelSettings::new(self.endpoint.clone())
        }
    }

    /// Waits until spans matching `want` number `n`, or panics after a deadline.
    async fn wait_for(&self, n: usize, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut spans = self.spans.clone();
        let matching =
            |all: &[Value]| -> Vec<Value> { all.iter().filter(|s| want(s)).cloned().collect() };
        let waited = tokio::time::timeout(
            Duration::from_secs(20),
            spans.wait_for(|all| matching(all).len() >= n),
        )
        .await;
        match waited {
            Ok(all) => matching(&all.expect("the collector's reader is alive")),
            Err(_) => panic!("expected {n} spans, got {:?}", *self.spans.borrow()),
        }
    }
}

async fn publish_with_traceparent(app: &TestApp, tenant: &str) -> String {
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"tenant_id": tenant, "topic": "job.done", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// `00-{trace}-{span}-{flags}` → (trace, span).
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    (parts[1].to_string(), parts[2].to_string())
}

async fn a_traced_publish_continues_its_trace_through_a_failed_attempt_and_its_retry(
    kind: StoreKind,
) {
    let collector = Collector::start().await;
    let settings = collector.settings();
    let app = TestApp::spawn_with(kind, move |c| c.otel = Some(settings)).await;
    let receiver = Receiver::start_scripted(vec![Reply::status(503)]).await;
    app.tenant("acme").await;
    app.destination_with(
        "acme",
        json!({"type": "webhook", "url": receiver.url, "topics": ["*"],
               "options": {"retry_schedule": [30]}}),
    )
    .await;
    let event_id = publish_with_traceparent(&app, "acme").await;

    assert_eq!(app.worker.tick().await, 1, "the first attempt fails (503)");
    assert_eq!(app.worker.tick().await, 0, "the retry is not due yet");
    app.clock.advance(Duration::from_secs(31));
    assert_eq!(app.worker.tick().await, 1, "the retry succeeds");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;

    let publish = collector
        .wait_for(1, |s| s["name"] == "POST /v1/events")
        .await
        .remove(0);
    assert_eq!(
        publish["trace_id"], TRACE_ID,
        "the caller's trace is continued"
    );
    assert_eq!(publish["parent_span_id"], CALLER_SPAN);
    assert_eq!(publish["kind"], SERVER);
    assert_eq!(publish["service_name"], "herald-test");
    assert_eq!(publish["content_type"], "application/x-protobuf");
    assert_eq!(publish["auth"], "k1", "OTEL_EXPORTER_OTLP_HEADERS are sent");
    assert_eq!(publish["attributes"]["http.request.method"], "POST");
    assert_eq!(publish["attributes"]["http.route"], "/v1/events");
    assert_eq!(publish["attributes"]["http.response.status_code"], 202);

    let mut attempts = collector
        .wait_for(2, |s| s["kind"] == CLIENT && s["name"] == "POST")
        .await;
    attempts.sort_by_key(|s| s["attributes"]["herald.attempt"].as_i64());
    let port = url::Url::parse(&receiver.url).unwrap().port().unwrap();
    for (n, span) in attempts.iter().enumerate() {
        let a = &span["attributes"];
        assert_eq!(span["trace_id"], TRACE_ID, "attempt {}: same trace", n + 1);
        assert_eq!(
            span["parent_span_id"],
            publish["span_id"],
            "attempt {}: a child of the publish span, however much later it ran",
            n + 1
        );
        assert_eq!(a["herald.attempt"], (n + 1) as i64);
        assert_eq!(a["herald.event_id"], event_id.as_str());
        assert_eq!(a["http.request.method"], "POST");
        assert_eq!(a["url.full"], receiver.url.as_str());
        assert_eq!(a["server.address"], "127.0.0.1");
        assert_eq!(a["server.port"], i64::from(port));

        let (trace, parent) = ids(&got[n].headers["traceparent"]);
        assert_eq!(trace, TRACE_ID, "the receiver joins the trace");
        assert_eq!(
            parent,
            span["span_id"].as_str().unwrap(),
            "the receiver's parent is the attempt span"
        );
    }
    let (first, second) = (&attempts[0]["attributes"], &attempts[1]["attributes"]);
    assert_eq!(first["http.response.status_code"], 503);
    assert_eq!(first["error.type"], "503");
    assert_eq!(first["herald.error_kind"], "status");
    assert_eq!(attempts[0]["status"], 2, "STATUS_CODE_ERROR");
    assert_eq!(second["http.response.status_code"], 200);
    assert!(second.get("error.type").is_none(), "{second}");
}

async fn a_destination_that_opts_out_gets_no_traceparent_but_its_attempts_are_still_traced(
    kind: StoreKind,
) {
    let collector = Collector::start().await;
    let settings = collector.settings();
    let app = TestApp::spawn_with(kind, move |c| c.otel = Some(settings)).await;
    let receiver = Receiver::start().await;
    app.tenant("acme").await;
    let (id, _) = app
        .destination_with(
            "acme",
            json!({"type": "webhook", "url": receiver.url, "topics": ["*"],
                   "options": {"propagate_trace": false}}),
        )
        .await;
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{id}"))
        .await;
    assert_eq!(d["options"]["propagate_trace"], false, "stored and shown");

    publish_with_traceparent(&app, "acme").await;
    assert_eq!(app.worker.tick().await, 1);
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        !got[0].headers.contains_key("traceparent"),
        "{:?}",
        got[0].headers
    );
    let attempt = collector
        .wait_for(1, |s| s["kind"] == CLIENT)
        .await
        .remove(0);
    assert_eq!(attempt["trace_id"], TRACE_ID);
}
