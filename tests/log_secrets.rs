//! Logs never carry a secret or a full token (SECURITY.md): every line Herald and its libraries
//! write, at the most verbose levels, is captured while a destination is created and rotated,
//! events are published with a tenant token and delivered (one failure, one success), and
//! callbacks are ingested, rejected and acknowledged — then searched for every credential.
//!
//! One test in its own binary, not in `tests/it`: the subscriber is process-global, can be
//! installed once per process, and would capture the logs of every other test running
//! alongside.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{ADMIN_TOKEN, ENCRYPTION_KEY, Receiver, Reply, StoreKind, TestApp};
use serde_json::json;

/// Where the subscriber writes: a buffer the test reads.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const HEADER_SECRET: &str = "Bearer hdr-log-s3cret-41d2";
const GITHUB_SECRET: &str = "gh-log-s3cret-77aa";
const INBOUND_TOKEN: &str = "tok-log-s3cret-19ce";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_full_token_appears_in_the_logs_of_a_whole_workflow() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(*b"a signing secret only tests know")
    );
    let mut secrets = vec![
        secret.clone(),
        secret.trim_start_matches("whsec_").to_string(),
        HEADER_SECRET.into(),
        GITHUB_SECRET.into(),
        INBOUND_TOKEN.into(),
        ADMIN_TOKEN.into(),
        ENCRYPTION_KEY.into(),
    ];

    for kind in [StoreKind::Sqlite, StoreKind::Postgres] {
        let app = TestApp::spawn(kind).await;
        let rx = Receiver::start_scripted(vec![Reply::status(500)]).await;
        app.tenant("acme").await;
        let (dst, _) = app
            .destination_with(
                "acme",
                json!({"type": "webhook", "url": rx.url, "topics": ["*"], "secret": secret,
                       "headers": {"Authorization": HEADER_SECRET}}),
            )
            .await;
        let tenant_token = app.tenant_token("acme").await;
        secrets.push(tenant_token.clone());

        // Publish as the tenant; a wrong token is refused (and its refusal logged, if at all,
        // without the token).
        let r = app
            .client
            .post(app.url("/v1/events"))
            .bearer_auth(&tenant_token)
            .json(&json!({"tenant_id": "acme", "topic": "job.done", "data": {"n": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let wrong = format!("{tenant_token}x");
        let r = app
            .client
            .get(app.url("/v1/tenants/acme/destinations"))
            .bearer_auth(&wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        // A failed attempt, then the retry succeeds.
        app.worker.drain().await;
        app.clock.advance(Duration::from_secs(3600));
        app.worker.drain().await;
        rx.wait_for(2, Duration::from_secs(10)).await;

        let rotated = app
            .post_json(
                &format!("/v1/tenants/acme/destinations/{dst}/rotate-secret"),
                json!({}),
            )
            .await;
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        secrets.push(new_secret.clone());
        secrets.push(new_secret.trim_start_matches("whsec_").to_string());

        // Inbound: a signed GitHub callback, a forged one, a token in the query, an ack.
        let gh = app
            .post_json(
                "/v1/callback-endpoints",
                json!({"verification": {"scheme": "github", "secret": GITHUB_SECRET}}),
            )
            .await;
        let body = br#"{"action":"completed"}"#;
        let sig = {
            use hmac::Mac;
            let mut m =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
            m.update(body);
            hex::encode(m.finalize().into_bytes())
        };
        let gh_url = gh["url"].as_str().unwrap();
        for (signature, status) in [(sig.as_str(), 200), ("00", 401)] {
            let r = app
                .client
                .post(gh_url)
                .header("x-hub-signature-256", format!("sha256={signature}"))
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status);
        }
        let tok = app
            .post_json(
                "/v1/callback-endpoints",
                json!({"verification": {"scheme": "token", "token": INBOUND_TOKEN}}),
            )
            .await;
        let r = app
            .client
            .post(format!(
                "{}?token={INBOUND_TOKEN}",
                tok["url"].as_str().unwrap()
            ))
            .json(&json!({"ok": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let polled = app.get_json("/v1/callbacks?acked=false").await;
        let first = polled["data"][0]["id"].as_str().unwrap();
        let r = app
            .post(&format!("/v1/callbacks/{first}/ack"), json!({}))
            .await;
        assert_eq!(r.status(), 200);
        app.stop().await;
    }

    let text = logs.text();
    // The capture works and saw the workflow (so the search below can fail).
    assert!(text.contains("attempt finished"), "{text}");
    assert!(
        text.contains("/v1/events") || text.contains("sqlx"),
        "{text}"
    );
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "the logs contain `{s}`");
    }
}
