//! RabbitMQ on both sides, against the real broker on 127.0.0.1:5672 (guest/guest): `rabbitmq`
//! destinations (headers, signatures, confirms, missing exchanges, unroutable messages,
//! connection sharing, a forced close of Herald's connection) and publishing from a queue.
//!
//! Every test declares its own uniquely named exchanges and queues (exclusive or expiring, so
//! a failed test leaves nothing behind for long) and deletes them. The broker is shared with
//! other test runs, so nothing here restarts it: "the broker went away" is the broker forcibly
//! closing Herald's connection (`rabbitmqctl close_connection`), found by the connection name
//! each test gives Herald.

use crate::portal_support;
use crate::{common, for_each_store};

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use common::{Receiver, StoreKind, TestApp};
use herald::domain::signature;
use herald::store::Scope;
use lapin::message::Delivery;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(10);

for_each_store!(
    a_traced_delivery_carries_its_attempt_span_as_a_traceparent_header,
    a_delivery_arrives_persistent_with_the_webhook_headers_and_a_verifiable_signature,
    an_ed25519_destination_signs_its_messages_so_that_its_public_key_verifies_them,
    the_api_and_the_attempt_log_never_show_the_amqp_password,
    the_routing_key_template_uses_the_topic_and_the_tenant,
    a_deleted_exchange_fails_the_attempt_and_the_retry_succeeds_once_it_is_declared_again,
    an_unroutable_message_is_a_failed_attempt_not_a_silent_drop,
    an_unreachable_broker_is_a_connect_failure_retried_on_the_schedule,
    broker_addresses_refused_by_the_ssrf_policy_are_never_connected_to,
    bad_rabbitmq_destinations_get_a_422_naming_the_field_and_write_nothing,
    patching_a_rabbitmq_destination_changes_its_target_and_null_restores_the_default_key,
    a_tenant_creates_and_edits_a_rabbitmq_destination_in_the_portal_and_messages_follow_it,
    an_amqps_broker_is_reached_over_tls_and_an_untrusted_certificate_is_a_tls_failure,
    publish_from_queue_consumes_from_an_amqps_broker,
    destinations_on_one_broker_share_one_connection_and_channels_are_not_leaked,
    a_forced_close_of_the_connection_loses_no_deliveries,
    a_storm_loses_nothing_when_the_broker_drops_the_connection_twice_mid_delivery,
    publish_from_queue_commits_valid_messages_and_dead_letters_garbage_with_the_reason,
    without_a_dead_letter_queue_garbage_is_rejected_to_the_queues_own_dead_letter_exchange,
    the_queue_consumer_reconnects_after_its_connection_is_closed,
);

// --- Broker fixtures ----------------------------------------------------------------------

/// The test's own connection to the broker, and the names it declared.
struct Rabbit {
    _conn: Connection,
    ch: Channel,
    /// Unique per test: prefixes every exchange, queue and Herald connection name.
    prefix: String,
}

impl Rabbit {
    async fn new() -> Self {
        let conn = Connection::connect(BROKER, ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run on 127.0.0.1:5672 (scripts/test starts it)");
        let ch = conn.create_channel().await.unwrap();
        Rabbit {
            _conn: conn,
            ch,
            prefix: format!("herald-test-{}", uuid::Uuid::now_v7().simple()),
        }
    }

    fn name(&self, what: &str) -> String {
        format!("{}.{what}", self.prefix)
    }

    /// A topic exchange, deleted by the broker once its last binding goes.
    async fn exchange(&self, name: &str) {
        self.ch
            .exchange_declare(
                name.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    async fn delete_exchange(&self, name: &str) {
        self.ch
            .exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }

    /// A queue only this connection may use (the broker drops it when the test ends, even
    /// if it fails), bound to `exchange` with `key` when given.
    async fn private_queue(&self, name: &str, bind: Option<(&str, &str)>) {
        self.ch
            .queue_declare(
                name.into(),
                QueueDeclareOptions::exclusive(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        if let Some((exchange, key)) = bind {
            self.bind(name, exchange, key).await;
        }
    }

    async fn bind(&self, queue: &str, exchange: &str, key: &str) {
        self.ch
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    /// A queue Herald can consume from too; it expires a minute after its last use.
    async fn shared_queue(&self, name: &str, mut args: FieldTable) {
        args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        self.ch
            .queue_declare(name.into(), QueueDeclareOptions::default(), args)
            .await
            .unwrap();
    }

    async fn delete_queue(&self, name: &str) {
        let _ = self
            .ch
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await;
    }

    /// Messages ready in a queue and consumers on it.
    async fn queue_counts(&self, name: &str) -> (u32, u32) {
        let q = self
            .ch
            .queue_declare(
                name.into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        (q.message_count(), q.consumer_count())
    }

    async fn get(&self, queue: &str) -> Option<Delivery> {
        self.ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .map(|m| m.delivery)
    }

    /// Waits until `n` messages were taken from `queue`, or panics after [`WAIT`].
    async fn take(&self, queue: &str, n: usize) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut got = vec![];
        while got.len() < n {
            match self.get(queue).await {
                Some(d) => got.push(d),
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                None => panic!("expected {n} messages in {queue}, got {}", got.len()),
            }
        }
        got
    }

    async fn send(&self, queue: &str, body: &[u8], headers: FieldTable) {
        self.ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_headers(headers),
            )
            .await
            .unwrap();
    }
}

fn header(d: &Delivery, name: &str) -> Option<String> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8(s.as_bytes().to_vec()).unwrap()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        other => panic!("header {name}: {other:?}"),
    }
}

/// Connections the broker has whose client-provided name is `name`: `(pid, channels)`.
async fn broker_connections(name: &str) -> Vec<(String, u64)> {
    // Tab-separated rows; the pid in the form `close_connection` takes.
    let out = rabbitmqctl(&["list_connections", "pid", "channels", "client_properties"]).await;
    out.lines()
        .filter(|line| line.contains(&format!(r#"{{"connection_name","{name}"}}"#)))
        .map(|line| {
            let mut cols = line.split('\t');
            let pid = cols.next().unwrap().to_string();
            let channels = cols.next().unwrap().trim().parse().unwrap();
            (pid, channels)
        })
        .collect()
}

/// Makes the broker close the connection named `name`, as a broker restart would.
async fn force_close(name: &str) {
    let conns = broker_connections(name).await;
    assert_eq!(conns.len(), 1, "one connection named {name}: {conns:?}");
    rabbitmqctl(&["close_connection", &conns[0].0, "test: broker going away"]).await;
}

async fn rabbitmqctl(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("rabbitmqctl")
            .arg("-s")
            .args(&args)
            .output()
            .expect("rabbitmqctl is installed with the broker");
        assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// Polls `check` until it holds, or panics after [`WAIT`].
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An app whose broker connections carry the test's prefix.
async fn app_for(kind: StoreKind, rabbit: &Rabbit) -> TestApp {
    let prefix = rabbit.prefix.clone();
    TestApp::spawn_with(kind, move |c| c.amqp_connection_name = prefix).await
}

/// The usual setup: an exchange, a private queue bound to it with `key`, an app whose
/// connections carry the test's prefix, and the tenant `acme`.
struct Scene {
    rabbit: Rabbit,
    app: TestApp,
    ex: String,
    q: String,
}

async fn scene(kind: StoreKind, key: &str) -> Scene {
    let rabbit = Rabbit::new().await;
    let (ex, q) = (rabbit.name("events"), rabbit.name("inbox"));
    rabbit.exchange(&ex).await;
    rabbit.private_queue(&q, Some((&ex, key))).await;
    let app = app_for(kind, &rabbit).await;
    app.tenant("acme").await;
    Scene { rabbit, app, ex, q }
}

async fn rabbit_destination(app: &TestApp, exchange: &str, extra: Value) -> (String, String) {
    let mut body = json!({"type": "rabbitmq", "amqp_url": BROKER, "exchange": exchange,
        "topics": ["*"]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    app.destination_with("acme", body).await
}

/// A TLS endpoint in front of the test broker: it presents `tests/fixtures/tls/server.pem`
/// (signed by the test CA `ca.pem`, for `localhost` and 127.0.0.1) and relays the plain AMQP
/// inside to 127.0.0.1:5672. Returns its port.
async fn tls_proxy() -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let certs = CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends here, as it should.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut broker = tokio::net::TcpStream::connect("127.0.0.1:5672")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
    port
}

// --- Destinations -------------------------------------------------------------------------

async fn an_amqps_broker_is_reached_over_tls_and_an_untrusted_certificate_is_a_tls_failure(
    kind: StoreKind,
) {
    let rabbit = Rabbit::new().await;
    let (ex, q) = (rabbit.name("events"), rabbit.name("inbox"));
    rabbit.exchange(&ex).await;
    rabbit.private_queue(&q, Some((&ex, "#"))).await;
    let port = tls_proxy().await;
    let broker = format!("amqps://guest:guest@localhost:{port}/%2f");

    // Trusting the test CA: the message arrives through TLS, signed as over plain AMQP.
    let prefix = rabbit.prefix.clone();
    let app = TestApp::spawn_with(kind, move |c| {
        c.amqp_connection_name = prefix;
        c.amqp_tls_ca_file =
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem").into());
    })
    .await;
    app.tenant("acme").await;
    let (_, secret) = app
        .destination_with(
            "acme",
            json!({"type": "rabbitmq", "amqp_url": broker, "exchange": ex, "topics": ["*"]}),
        )
        .await;
    let id = app.publish("acme", "job.done", json!({"tls": true})).await;
    assert_eq!(app.worker.drain().await, 1);
    let m = rabbit.take(&q, 1).await.remove(0);
    assert_eq!(m.routing_key.as_str(), "job.done");
    let ts: i64 = header(&m, "webhook-timestamp").unwrap().parse().unwrap();
    assert_eq!(
        header(&m, "webhook-signature").unwrap(),
        signature::sign(&secret, &id, ts, &m.data).unwrap()
    );
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "succeeded", "{d}");

    // The system's roots alone do not know the test CA: a TLS failure, nothing published.
    let prefix = rabbit.prefix.clone();
    let strict = TestApp::spawn_with(kind, move |c| {
        c.amqp_connection_name = prefix;
        c.retry_schedule = String::new();
    })
    .await;
    strict.tenant("acme").await;
    strict
        .destination_with(
            "acme",
            json!({"type": "rabbitmq", "amqp_url": broker, "exchange": ex, "topics": ["*"]}),
        )
        .await;
    let id = strict
        .publish("acme", "job.done", json!({"tls": false}))
        .await;
    assert_eq!(strict.worker.drain().await, 1);
    let d = strict.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "failed", "{d}");
    let a = &d["attempts"][0];
    assert_eq!(a["error_kind"], "tls", "{a}");
    assert!(a["error"].as_str().unwrap().contains("certificate"), "{a}");
    assert!(!a["error"].as_str().unwrap().contains("guest:guest"), "{a}");
    assert!(rabbit.get(&q).await.is_none(), "nothing went through");
}

async fn a_delivery_arrives_persistent_with_the_webhook_headers_and_a_verifiable_signature(
    kind: StoreKind,
) {
    let Scene { rabbit, app, ex, q } = scene(kind, "job.*").await;
    let (_, secret) = rabbit_destination(&app, &ex, json!({})).await;

    let id = app
        .publish("acme", "job.completed", json!({"job": 7, "ok": true}))
        .await;
    assert_eq!(app.worker.drain().await, 1);

    let m = rabbit.take(&q, 1).await.remove(0);
    assert_eq!(
        m.routing_key.as_str(),
        "job.completed",
        "the default key is the topic"
    );
    let p = &m.properties;
    assert_eq!(p.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), id);
    assert_eq!(header(&m, "webhook-id").unwrap(), id);
    assert_eq!(header(&m, "topic").unwrap(), "job.completed");
    assert_eq!(header(&m, "tenant-id").unwrap(), "acme");
    let ts: i64 = header(&m, "webhook-timestamp").unwrap().parse().unwrap();
    let expected = signature::sign(&secret, &id, ts, &m.data).unwrap();
    assert_eq!(header(&m, "webhook-signature").unwrap(), expected);
    let body: Value = serde_json::from_slice(&m.data).unwrap();
    assert_eq!(body["type"], "job.completed");
    assert_eq!(
        body["data"],
        json!({"job": 7, "ok": true}),
        "the webhook envelope"
    );

    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "succeeded");
    let a = &d["attempts"][0];
    assert!(
        a["error_kind"].is_null() && a["status_code"].is_null(),
        "{a}"
    );
    assert_eq!(a["request_headers"]["webhook-id"], id.as_str());
    assert_eq!(a["request_headers"]["topic"], "job.completed");
}

async fn an_ed25519_destination_signs_its_messages_so_that_its_public_key_verifies_them(
    kind: StoreKind,
) {
    let Scene { rabbit, app, ex, q } = scene(kind, "job.*").await;
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "rabbitmq", "amqp_url": BROKER, "exchange": ex, "topics": ["*"],
                "signature": "ed25519"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let public_key = created["public_keys"][0]["public_key"].as_str().unwrap();
    let key = signature::parse_public_key(public_key).unwrap();

    let id = app
        .publish("acme", "job.completed", json!({"job": 8}))
        .await;
    assert_eq!(app.worker.drain().await, 1);
    let m = rabbit.take(&q, 1).await.remove(0);
    let ts: i64 = header(&m, "webhook-timestamp").unwrap().parse().unwrap();
    let entry = header(&m, "webhook-signature").unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(entry.strip_prefix("v1a,").expect("one v1a entry"))
        .unwrap();
    assert!(signature::verify_v1a(&key, &id, ts, &m.data, &sig));
    assert!(!signature::verify_v1a(&key, &id, ts + 1, &m.data, &sig));
}

async fn the_api_and_the_attempt_log_never_show_the_amqp_password(kind: StoreKind) {
    let Scene {
        rabbit: _rabbit,
        app,
        ex,
        q: _,
    } = scene(kind, "#").await;

    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "rabbitmq", "amqp_url": BROKER, "exchange": ex, "topics": ["*"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let dst = created["id"].as_str().unwrap().to_string();
    let shown = "amqp://guest:***@127.0.0.1:5672/%2f";
    assert_eq!(created["amqp_url"], shown);
    assert_eq!(created["exchange"], ex.as_str());
    assert_eq!(created["routing_key"], "{topic}");
    assert!(created["url"].is_null());

    let one = app
        .get_json(&format!("/v1/tenants/acme/destinations/{dst}"))
        .await;
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    assert_eq!(app.worker.drain().await, 1);
    let delivery = app.only_delivery("acme", &id).await;
    assert_eq!(delivery["status"], "succeeded", "the stored password works");
    assert_eq!(delivery["attempts"][0]["url"], shown);
    for answer in [created, one, list, delivery] {
        let text = answer.to_string();
        assert!(!text.contains("guest:guest"), "password shown: {text}");
    }
}

async fn the_routing_key_template_uses_the_topic_and_the_tenant(kind: StoreKind) {
    let Scene { rabbit, app, ex, q } = scene(kind, "tenants.acme.job.completed").await;
    rabbit_destination(
        &app,
        &ex,
        json!({"routing_key": "tenants.{tenant_id}.{topic}"}),
    )
    .await;

    let id = app.publish("acme", "job.completed", json!({})).await;
    assert_eq!(app.worker.drain().await, 1);
    let m = rabbit.take(&q, 1).await.remove(0);
    assert_eq!(m.routing_key.as_str(), "tenants.acme.job.completed");
    assert_eq!(header(&m, "webhook-id").unwrap(), id);
}

async fn a_deleted_exchange_fails_the_attempt_and_the_retry_succeeds_once_it_is_declared_again(
    kind: StoreKind,
) {
    let Scene { rabbit, app, ex, q } = scene(kind, "#").await;
    rabbit_destination(&app, &ex, json!({})).await;
    rabbit.delete_exchange(&ex).await;

    let id = app.publish("acme", "job.completed", json!({"n": 1})).await;
    assert_eq!(app.worker.tick().await, 1);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    let a = &d["attempts"][0];
    assert_eq!(a["error_kind"], "amqp");
    let error = a["error"].as_str().unwrap();
    assert!(
        error.contains(&ex) && error.contains("NOT_FOUND"),
        "{error}"
    );
    // Retried on the schedule like HTTP: nothing before the first delay (5 s).
    assert_eq!(app.worker.tick().await, 0);

    rabbit.exchange(&ex).await;
    rabbit.bind(&q, &ex, "#").await;
    app.clock.advance(Duration::from_secs(6));
    assert_eq!(app.worker.tick().await, 1);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempt_count"], 2);
    let m = rabbit.take(&q, 1).await.remove(0);
    assert_eq!(header(&m, "webhook-id").unwrap(), id);
    rabbit.delete_exchange(&ex).await;
}

async fn an_unroutable_message_is_a_failed_attempt_not_a_silent_drop(kind: StoreKind) {
    let Scene { rabbit, app, ex, q } = scene(kind, "billing.#").await;
    rabbit_destination(&app, &ex, json!({})).await;

    let id = app.publish("acme", "job.completed", json!({})).await;
    assert_eq!(app.worker.tick().await, 1);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    let a = &d["attempts"][0];
    assert_eq!(a["error_kind"], "unroutable");
    let error = a["error"].as_str().unwrap();
    assert!(
        error.contains("job.completed") && error.contains("NO_ROUTE"),
        "{error}"
    );
    assert!(rabbit.get(&q).await.is_none());
}

async fn an_unreachable_broker_is_a_connect_failure_retried_on_the_schedule(kind: StoreKind) {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.destination_with(
        "acme",
        json!({"type": "rabbitmq", "amqp_url": format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            "exchange": "events", "topics": ["*"]}),
    )
    .await;
    let before = app.clock.now();
    let id = app.publish("acme", "job.completed", json!({})).await;
    assert_eq!(app.worker.tick().await, 1);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["status"], "retrying");
    assert_eq!(d["attempts"][0]["error_kind"], "connect");
    let next = herald::domain::time::parse_rfc3339(d["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!(
        (4_000..=7_000).contains(&(next - before)),
        "{}",
        next - before
    );
}

async fn broker_addresses_refused_by_the_ssrf_policy_are_never_connected_to(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| c.allow_private_destinations = false).await;
    app.tenant("acme").await;
    // A literal address is refused when saved...
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "rabbitmq", "amqp_url": BROKER, "exchange": "x", "topics": ["*"]}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["field"], "amqp_url");
    // ...and a name is checked where it resolves, at connect time.
    app.destination_with(
        "acme",
        json!({"type": "rabbitmq", "amqp_url": "amqp://guest:guest@localhost:5672/%2f",
            "exchange": "x", "topics": ["*"]}),
    )
    .await;
    let id = app.publish("acme", "job.completed", json!({})).await;
    assert_eq!(app.worker.tick().await, 1);
    let d = app.only_delivery("acme", &id).await;
    assert_eq!(d["attempts"][0]["error_kind"], "blocked_address");
}

async fn bad_rabbitmq_destinations_get_a_422_naming_the_field_and_write_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let rabbit = |extra: Value| {
        let mut b =
            json!({"type": "rabbitmq", "amqp_url": BROKER, "exchange": "x", "topics": ["*"]});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let cases = [
        (rabbit(json!({"amqp_url": null})), "amqp_url"),
        (rabbit(json!({"exchange": null})), "exchange"),
        (
            rabbit(json!({"amqp_url": "http://127.0.0.1:5672"})),
            "amqp_url",
        ),
        (rabbit(json!({"amqp_url": "amqps://"})), "amqp_url"),
        (rabbit(json!({"exchange": "no spaces"})), "exchange"),
        (rabbit(json!({"routing_key": "{data}"})), "routing_key"),
        (rabbit(json!({"url": "http://127.0.0.1:9/"})), "url"),
        (
            json!({"type": "webhook", "url": "http://127.0.0.1:9/", "exchange": "x", "topics": ["*"]}),
            "exchange",
        ),
        (json!({"type": "webhook", "topics": ["*"]}), "url"),
    ];
    for (body, field) in cases {
        let r = app
            .post("/v1/tenants/acme/destinations", body.clone())
            .await;
        assert_eq!(r.status(), 422, "{body}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert_eq!(list["data"], json!([]), "nothing was written");
}

async fn patching_a_rabbitmq_destination_changes_its_target_and_null_restores_the_default_key(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let (id, _) = app
        .destination_with(
            "acme",
            json!({"type": "rabbitmq", "amqp_url": BROKER, "exchange": "a",
                "routing_key": "x.{topic}", "topics": ["*"]}),
        )
        .await;
    let path = format!("/v1/tenants/acme/destinations/{id}");
    let patch = |body: Value| {
        app.client
            .patch(app.url(&path))
            .bearer_auth(common::ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let r = patch(json!({"exchange": "b", "amqp_url": "amqp://herald:pw2@127.0.0.1:5672/prod"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["exchange"], "b");
    assert_eq!(d["routing_key"], "x.{topic}", "untouched");
    assert_eq!(d["amqp_url"], "amqp://herald:***@127.0.0.1:5672/prod");

    let r = patch(json!({"routing_key": null})).await.unwrap();
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["routing_key"], "{topic}");

    let r = patch(json!({"url": "http://127.0.0.1:9/"})).await.unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["field"], "url");
    let stored = app.get_json(&path).await;
    assert_eq!(stored["exchange"], "b", "the refused patch changed nothing");
    assert!(stored["url"].is_null());
}

async fn a_tenant_creates_and_edits_a_rabbitmq_destination_in_the_portal_and_messages_follow_it(
    kind: StoreKind,
) {
    let Scene { rabbit, app, ex, q } = scene(kind, "acme.#").await;
    let portal = portal_support::Portal::sign_in(&app, "acme").await;

    // The overview offers the RabbitMQ form, which asks for a broker, not an endpoint.
    assert!(
        portal
            .get("/portal")
            .await
            .body
            .contains(r#"href="/portal/destinations/new?type=rabbitmq""#)
    );
    let form = portal.get("/portal/destinations/new?type=rabbitmq").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(r#"id="amqp_url""#) && form.body.contains(r#"id="exchange""#));
    assert!(!form.body.contains(r#"id="url""#));
    assert!(form.body.contains(r#"name="kind" value="rabbitmq""#));
    let bogus = portal.get("/portal/destinations/new?type=smtp").await;
    assert_eq!(bogus.status, 400);

    // A bad broker comes back next to its field, and nothing is saved.
    let fields = |amqp_url: &'static str, key: &'static str| {
        vec![
            ("kind", "rabbitmq"),
            ("amqp_url", amqp_url),
            ("exchange", ex.as_str()),
            ("routing_key", key),
            ("topics", "*"),
        ]
    };
    let bad = portal
        .post("/portal/destinations", &fields("http://127.0.0.1:5672", ""))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains(r#"id="amqp_url-error""#), "{}", bad.body);
    let none = app.get_json("/v1/tenants/acme/destinations").await;
    assert!(none["data"].as_array().unwrap().is_empty());

    let created = portal
        .post("/portal/destinations", &fields(BROKER, "acme.{topic}"))
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let id = created.location.unwrap()["/portal/destinations/".len()..]
        .trim_end_matches("?done=created")
        .to_string();
    let path = format!("/v1/tenants/acme/destinations/{id}");
    let d = app.get_json(&path).await;
    assert_eq!(d["type"], "rabbitmq");
    assert_eq!(d["exchange"], ex.as_str());
    assert_eq!(d["routing_key"], "acme.{topic}");

    app.publish("acme", "job.done", json!({"n": 1})).await;
    assert_eq!(app.worker.drain().await, 1);
    let m = rabbit.take(&q, 1).await.remove(0);
    assert_eq!(m.routing_key.as_str(), "acme.job.done");

    // The edit form shows the target without the password and keeps the broker when its
    // field is left empty.
    let edit = portal.get(&format!("/portal/destinations/{id}/edit")).await;
    assert_eq!(edit.status, 200);
    assert!(
        edit.body.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
        "{}",
        edit.body
    );
    assert!(!edit.body.contains("guest:guest"));
    assert!(edit.body.contains(r#"value="acme.{topic}""#));
    let bad_key = portal
        .post(
            &format!("/portal/destinations/{id}"),
            &fields("", "acme.{nope}"),
        )
        .await;
    assert_eq!(bad_key.status, 422);
    assert!(
        bad_key.body.contains(r#"id="routing_key-error""#),
        "{}",
        bad_key.body
    );
    assert_eq!(app.get_json(&path).await["routing_key"], "acme.{topic}");
    let edited = portal
        .post(
            &format!("/portal/destinations/{id}"),
            &fields("", "acme.{tenant_id}.{topic}"),
        )
        .await;
    assert_eq!(edited.status, 303, "{}", edited.body);
    let d = app.get_json(&path).await;
    assert_eq!(d["routing_key"], "acme.{tenant_id}.{topic}");
    assert_eq!(d["amqp_url"], "amqp://guest:***@127.0.0.1:5672/%2f", "kept");

    app.publish("acme", "job.done", json!({"n": 2})).await;
    assert_eq!(app.worker.drain().await, 1);
    let m = rabbit.take(&q, 1).await.remove(0);
    assert_eq!(m.routing_key.as_str(), "acme.acme.job.done");

    // An empty key restores the default; a webhook field on this form is refused by name.
    let reset = portal
        .post(&format!("/portal/destinations/{id}"), &fields("", ""))
        .await;
    assert_eq!(reset.status, 303);
    assert_eq!(app.get_json(&path).await["routing_key"], "{topic}");
    let forged = portal
        .post(
            &format!("/portal/destinations/{id}"),
            &[("url", "https://example.com/h"), ("topics", "*")],
        )
        .await;
    assert_eq!(forged.status, 422);
    assert!(
        forged.body.contains("applies only to webhook destinations"),
        "{}",
        forged.body
    );
    assert_eq!(app.get_json(&path).await["exchange"], ex.as_str());
}

async fn destinations_on_one_broker_share_one_connection_and_channels_are_not_leaked(
    kind: StoreKind,
) {
    let rabbit = Rabbit::new().await;
    let (a, b, gone, q) = (
        rabbit.name("a"),
        rabbit.name("b"),
        rabbit.name("missing"),
        rabbit.name("inbox"),
    );
    rabbit.exchange(&a).await;
    rabbit.exchange(&b).await;
    rabbit.private_queue(&q, Some((&a, "#"))).await;
    rabbit.bind(&q, &b, "#").await;
    let app = app_for(kind, &rabbit).await;
    app.tenant("acme").await;
    for ex in [&a, &b, &gone] {
        rabbit_destination(&app, ex, json!({})).await;
    }
    let publisher = format!("{} publisher", rabbit.prefix);
    let max = herald::outbound::amqp::MAX_IDLE_CHANNELS as u64;
    let mut channels = vec![];
    for round in 0..2 {
        for i in 0..20 {
            app.publish("acme", "job.completed", json!({"round": round, "i": i}))
                .await;
        }
        // 60 sends at once, each on a channel of its own: 40 confirmed, 20 to a missing
        // exchange (the broker closes those channels). Closing is asynchronous, so wait for
        // what is left open to settle within the idle pool's bound.
        assert_eq!(app.worker.tick().await, 60);
        rabbit.take(&q, 40).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        let open = loop {
            let conns = broker_connections(&publisher).await;
            assert_eq!(
                conns.len(),
                1,
                "three destinations, one connection: {conns:?}"
            );
            if conns[0].1 <= max || tokio::time::Instant::now() > deadline {
                break conns[0].1;
            }
        };
        channels.push(open);
    }
    eprintln!("open channels after each round: {channels:?}");
    assert!(
        channels.iter().all(|&n| n <= max),
        "open channels {channels:?} > {max}"
    );
    assert!(channels[1] <= channels[0], "channels grow: {channels:?}");
    rabbit.delete_exchange(&a).await;
    rabbit.delete_exchange(&b).await;
}

async fn a_forced_close_of_the_connection_loses_no_deliveries(kind: StoreKind) {
    let Scene { rabbit, app, ex, q } = scene(kind, "#").await;
    rabbit_destination(&app, &ex, json!({})).await;

    let mut ids = vec![];
    for i in 0..5 {
        ids.push(app.publish("acme", "job.completed", json!({"i": i})).await);
    }
    assert_eq!(app.worker.drain().await, 5);
    force_close(&format!("{} publisher", rabbit.prefix)).await;
    for i in 5..10 {
        ids.push(app.publish("acme", "job.completed", json!({"i": i})).await);
    }
    assert_eq!(app.worker.drain().await, 5);

    let got: std::collections::HashSet<String> = rabbit
        .take(&q, 10)
        .await
        .iter()
        .map(|m| header(m, "webhook-id").unwrap())
        .collect();
    assert_eq!(got, ids.iter().cloned().collect(), "every event arrived");
    for id in &ids {
        let d = app.only_delivery("acme", id).await;
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["attempt_count"], 1, "reconnected within the attempt: {d}");
    }
    assert_eq!(
        broker_connections(&format!("{} publisher", rabbit.prefix))
            .await
            .len(),
        1
    );
}

/// Chaos (a RabbitMQ connection dropped during delivery): 2,000 events stream to a
/// RabbitMQ destination with the worker's claim loop running, and the broker closes Herald's
/// connection twice while messages are in flight (after 300 and after 900 are queued).
/// Herald reconnects by itself; at the end the queue has seen every event id exactly counted,
/// every delivery `succeeded`, and duplicates (confirms lost with the connection, so sent
/// again) are reported apart.
async fn a_storm_loses_nothing_when_the_broker_drops_the_connection_twice_mid_delivery(
    kind: StoreKind,
) {
    const N: usize = 2000;
    let rabbit = Rabbit::new().await;
    let (ex, q) = (rabbit.name("events"), rabbit.name("inbox"));
    rabbit.exchange(&ex).await;
    rabbit.private_queue(&q, Some((&ex, "#"))).await;
    let prefix = rabbit.prefix.clone();
    let app = TestApp::spawn_with(kind, move |c| {
        c.amqp_connection_name = prefix;
        // A failed send is due again after a second of real time, on the running loop.
        c.retry_schedule = "1,1,1,1,1,1,1,1,1,1".into();
        // Few sends at a time, so the storm lasts long enough to be interrupted twice.
        c.worker_concurrency = 2;
    })
    .await;
    app.tenant("acme").await;
    rabbit_destination(&app, &ex, json!({})).await;

    let mut ids = Vec::with_capacity(N);
    for batch in 0..N / 500 {
        let events: Vec<Value> = (0..500)
            .map(|i| json!({"tenant_id": "acme", "topic": "job.done", "data": {"n": batch * 500 + i}}))
            .collect();
        let r = app
            .post("/v1/events/batch", json!({ "events": events }))
            .await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.extend(
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
    }
    let expected: std::collections::HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(expected.len(), N);

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = tokio::time::Instant::now();
    let worker = tokio::spawn(app.worker.clone().run(stop_rx));
    let connection = format!("{} publisher", rabbit.prefix);
    // Drop the connection once 300 messages are in the queue, and again past 900 as soon as
    // Herald is connected again (it reconnects when it next sends).
    let mut drops = vec![300, 900];
    let deadline = started + Duration::from_secs(60);
    while let Some(&mark) = drops.first() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drops at {drops:?} messages did not happen in 60 s"
        );
        let depth = rabbit.queue_counts(&q).await.0 as usize;
        assert!(depth < N, "everything was sent before the drop at {mark}");
        if depth >= mark && !broker_connections(&connection).await.is_empty() {
            force_close(&connection).await;
            drops.remove(0);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut received = 0;
    while seen.len() < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {N} distinct events arrived in 60 s",
            seen.len()
        );
        match rabbit.get(&q).await {
            Some(m) => {
                received += 1;
                *seen.entry(header(&m, "webhook-id").unwrap()).or_default() += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let elapsed = started.elapsed();

    // Nothing left in play: a late resend would already be in the queue when it is counted.
    let any_with = |status: &'static str| {
        let app = &app;
        async move {
            !app.get_json(&format!(
                "/v1/tenants/acme/deliveries?status={status}&limit=1"
            ))
            .await["data"]
                .as_array()
                .unwrap()
                .is_empty()
        }
    };
    eventually("every delivery to finish", || async {
        !(any_with("scheduled").await || any_with("retrying").await || any_with("delivering").await)
    })
    .await;
    let _ = stop.send(true);
    worker.await.unwrap();
    while let Some(m) = rabbit.get(&q).await {
        received += 1;
        *seen.entry(header(&m, "webhook-id").unwrap()).or_default() += 1;
    }

    let got: std::collections::HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(got, expected, "exactly the published ids arrived");
    let duplicates = received - N;
    println!(
        "rabbitmq connection dropped twice ({kind:?}): {N} of {N} distinct ids, {duplicates} \
         duplicates, {received} messages in {:.2} s",
        elapsed.as_secs_f64()
    );
    // Every delivery ended `succeeded`: none is in play (above) or in another final state.
    for status in ["failed", "skipped", "cancelled"] {
        assert!(!any_with(status).await, "a delivery ended {status}");
    }
    // Reconnecting never leaks a connection (there is none if the last drop came after
    // the last send: Herald connects again when it next has something to send).
    let left = broker_connections(&connection).await.len();
    assert!(left <= 1, "{left} connections after the drops");
}

// --- Publishing from a queue --------------------------------------------------------------

/// An app consuming `queue`, dead-lettering to `dead_letter` when given.
async fn publish_from_queue_consumes_from_an_amqps_broker(kind: StoreKind) {
    let rabbit = Rabbit::new().await;
    let queue = rabbit.name("publish");
    rabbit.shared_queue(&queue, FieldTable::default()).await;
    let port = tls_proxy().await;
    let (prefix, q) = (rabbit.prefix.clone(), queue.clone());
    let app = TestApp::spawn_with(kind, move |c| {
        c.amqp_url = Some(format!("amqps://guest:guest@localhost:{port}/%2f"));
        c.amqp_publish_queue = Some(q);
        c.amqp_connection_name = prefix;
        c.amqp_tls_ca_file =
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem").into());
    })
    .await;
    app.tenant("acme").await;
    wait_for_consumer(&rabbit, &queue).await;
    rabbit.send(&queue, &event(7), FieldTable::default()).await;
    eventually("the event", || async { events_of(&app).await.len() == 1 }).await;
    assert_eq!(events_of(&app).await[0]["data"], json!({"n": 7}));
}

async fn consuming_app(
    kind: StoreKind,
    rabbit: &Rabbit,
    queue: &str,
    dead_letter: Option<&str>,
) -> TestApp {
    let (prefix, queue) = (rabbit.prefix.clone(), queue.to_string());
    let dead_letter = dead_letter.map(str::to_string);
    let app = TestApp::spawn_with(kind, move |c| {
        c.amqp_url = Some(BROKER.into());
        c.amqp_publish_queue = Some(queue);
        c.amqp_dead_letter_queue = dead_letter;
        c.amqp_prefetch = 8;
        c.amqp_connection_name = prefix;
    })
    .await;
    app.tenant("acme").await;
    app
}

async fn wait_for_consumer(rabbit: &Rabbit, queue: &str) {
    eventually("Herald to consume", || async {
        rabbit.queue_counts(queue).await.1 == 1
    })
    .await;
}

async fn events_of(app: &TestApp) -> Vec<Value> {
    app.get_json("/v1/tenants/acme/events").await["data"]
        .as_array()
        .unwrap()
        .clone()
}

fn event(n: u32) -> Vec<u8> {
    json!({"tenant_id": "acme", "topic": "job.completed", "data": {"n": n}})
        .to_string()
        .into_bytes()
}

const BAD_TOPIC: &[u8] = br#"{"tenant_id": "acme", "topic": "bad topic", "data": {}}"#;
const UNKNOWN_TENANT: &[u8] = br#"{"tenant_id": "nobody", "topic": "a.b", "data": {}}"#;

async fn publish_from_queue_commits_valid_messages_and_dead_letters_garbage_with_the_reason(
    kind: StoreKind,
) {
    let rabbit = Rabbit::new().await;
    let (queue, dead) = (rabbit.name("publish"), rabbit.name("invalid"));
    rabbit.shared_queue(&queue, FieldTable::default()).await;
    rabbit.shared_queue(&dead, FieldTable::default()).await;
    let rx = Receiver::start().await;
    let app = consuming_app(kind, &rabbit, &queue, Some(&dead)).await;
    app.destination("acme", &rx.url, &["*"]).await;
    let schema = json!({"schema": {"type": "object", "required": ["n"],
                                   "properties": {"n": {"type": "integer", "minimum": 1}}}});
    let r = app.put("/v1/event-types/job.completed", schema).await;
    assert_eq!(r.status(), 201);
    wait_for_consumer(&rabbit, &queue).await;

    let mut key = FieldTable::default();
    key.insert(
        "idempotency-key".into(),
        AMQPValue::LongString(LongString::from("order-42")),
    );
    let none = FieldTable::default;
    rabbit.send(&queue, &event(1), none()).await;
    rabbit.send(&queue, b"this is not json", none()).await;
    rabbit.send(&queue, &event(2), key.clone()).await;
    rabbit.send(&queue, BAD_TOPIC, none()).await;
    rabbit.send(&queue, &event(2), key).await; // a repeat: the original event
    rabbit.send(&queue, UNKNOWN_TENANT, none()).await;
    rabbit.send(&queue, &event(0), none()).await; // fails the topic's schema
    rabbit.send(&queue, &event(3), none()).await;

    let dead_lettered = rabbit.take(&dead, 4).await;
    eventually("three events", || async {
        events_of(&app).await.len() == 3
    })
    .await;
    let mut ns: Vec<u64> = events_of(&app)
        .await
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(
        ns,
        vec![1, 2, 3],
        "valid messages around the garbage all committed"
    );

    // Messages are published concurrently, so they are dead-lettered in any order: each is
    // kept as it came, so its body tells which one it is.
    let reason = |body: &[u8]| {
        let m = dead_lettered
            .iter()
            .find(|m| m.data == body)
            .unwrap_or_else(|| panic!("{} was not dead-lettered", String::from_utf8_lossy(body)));
        assert_eq!(header(m, "x-herald-source-queue").unwrap(), queue);
        (
            header(m, "x-herald-error-code").unwrap(),
            header(m, "x-herald-error-field"),
            header(m, "x-herald-error").unwrap(),
        )
    };
    assert_eq!(reason(b"this is not json").0, "malformed_json");
    let (code, field, detail) = reason(BAD_TOPIC);
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("validation_failed", Some("topic"))
    );
    assert!(detail.starts_with("topic: "), "{detail}");
    let (code, _, detail) = reason(UNKNOWN_TENANT);
    assert_eq!(code, "not_found");
    assert!(detail.contains("tenant"), "{detail}");
    let (code, field, detail) = reason(&event(0));
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("schema_mismatch", Some("data"))
    );
    assert!(detail.contains("at /n (minimum)"), "{detail}");

    // Shutdown finishes the messages in hand and lets go of the queue. Nothing is back in
    // it: a message taken but not acknowledged would have been requeued.
    app.stop().await;
    assert_eq!(
        rabbit.queue_counts(&queue).await,
        (0, 0),
        "all acknowledged, no consumer left"
    );
    let events = app
        .herald
        .list_events(Scope::Admin, "acme", None, None)
        .await
        .unwrap();
    assert_eq!(
        events.data.len(),
        3,
        "the repeated idempotency key made no event"
    );
    // Committed events are delivered like any other.
    assert_eq!(app.worker.drain().await, 3);
    assert_eq!(rx.count(), 3);
    rabbit.delete_queue(&queue).await;
    rabbit.delete_queue(&dead).await;
}

async fn without_a_dead_letter_queue_garbage_is_rejected_to_the_queues_own_dead_letter_exchange(
    kind: StoreKind,
) {
    let rabbit = Rabbit::new().await;
    let (queue, dlx, parked) = (
        rabbit.name("publish"),
        rabbit.name("dlx"),
        rabbit.name("parked"),
    );
    rabbit.exchange(&dlx).await;
    rabbit.private_queue(&parked, Some((&dlx, "#"))).await;
    // The operator's queue, with its own dead-letter exchange: Herald must keep its arguments.
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(dlx.as_str())),
    );
    rabbit.shared_queue(&queue, args).await;
    let app = consuming_app(kind, &rabbit, &queue, None).await;
    wait_for_consumer(&rabbit, &queue).await;

    rabbit.send(&queue, b"{", FieldTable::default()).await;
    rabbit.send(&queue, &event(1), FieldTable::default()).await;

    let parked_msg = rabbit.take(&parked, 1).await.remove(0);
    assert_eq!(parked_msg.data, b"{");
    let death = parked_msg.properties.headers().as_ref().unwrap().inner();
    assert!(
        death.contains_key("x-death"),
        "rejected without requeue: {death:?}"
    );
    eventually("the valid event", || async {
        events_of(&app).await.len() == 1
    })
    .await;
    app.stop().await;
    rabbit.delete_queue(&queue).await;
    rabbit.delete_exchange(&dlx).await;
}

async fn the_queue_consumer_reconnects_after_its_connection_is_closed(kind: StoreKind) {
    let rabbit = Rabbit::new().await;
    let queue = rabbit.name("publish");
    rabbit.shared_queue(&queue, FieldTable::default()).await;
    let app = consuming_app(kind, &rabbit, &queue, None).await;
    wait_for_consumer(&rabbit, &queue).await;
    rabbit.send(&queue, &event(1), FieldTable::default()).await;
    eventually("the first event", || async {
        events_of(&app).await.len() == 1
    })
    .await;

    force_close(&format!("{} consumer", rabbit.prefix)).await;
    rabbit.send(&queue, &event(2), FieldTable::default()).await;
    eventually("the event sent while reconnecting", || async {
        events_of(&app).await.len() == 2
    })
    .await;
    assert_eq!(rabbit.queue_counts(&queue).await, (0, 1));
    // The new connection's consumer is bounded like the first: amqp_prefetch = 8.
    let consumers = rabbitmqctl(&["list_consumers", "queue_name", "prefetch_count"]).await;
    assert!(
        consumers.lines().any(|l| l == format!("{queue}\t8")),
        "{consumers}"
    );
    app.stop().await;
    rabbit.delete_queue(&queue).await;
}

// --- API description ----------------------------------------------------------------------

/// Not a store behaviour: the document is generated from the code, the same on either store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_rabbitmq_destinations() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let doc = app.get_json("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    for field in ["amqp_url", "exchange", "routing_key", "url"] {
        assert!(
            schemas["CreateDestination"]["properties"][field].is_object(),
            "CreateDestination.{field}"
        );
    }
    let destination = schemas["Destination"].to_string();
    assert!(
        destination.contains("amqp_url") && destination.contains("routing_key"),
        "{destination}"
    );
    let kinds = schemas["DestinationKind"].to_string();
    assert!(kinds.contains("rabbitmq"), "{kinds}");
    let errors = schemas["ErrorKind"].to_string();
    for kind in ["amqp", "unroutable", "nack"] {
        assert!(errors.contains(&format!("\"{kind}\"")), "{errors}");
    }
}

/// With tracing on, a message carries the attempt span as a W3C `traceparent` AMQP header,
/// in the publisher's trace. The spans go nowhere here (nothing listens on the discard port):
/// the header does not depend on the export; tests/it/otel.rs checks the spans.
async fn a_traced_delivery_carries_its_attempt_span_as_a_traceparent_header(kind: StoreKind) {
    let rabbit = Rabbit::new().await;
    let (ex, q) = (rabbit.name("events"), rabbit.name("inbox"));
    rabbit.exchange(&ex).await;
    rabbit.private_queue(&q, Some((&ex, "#"))).await;
    let prefix = rabbit.prefix.clone();
    let app = TestApp::spawn_with(kind, move |c| {
        c.amqp_connection_name = prefix;
        c.otel = Some(herald::telemetry::otel::OtelSettings::new(
            "http://127.0.0.1:9/v1/traces",
        ));
    })
    .await;
    app.tenant("acme").await;
    rabbit_destination(&app, &ex, json!({})).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"tenant_id": "acme", "topic": "job.done", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(app.worker.drain().await, 1);

    let m = rabbit.take(&q, 1).await.remove(0);
    let traceparent = header(&m, "traceparent").expect("a traceparent header");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], trace, "the message joins the publisher's trace");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "its parent is the attempt span"
    );
    rabbit.delete_exchange(&ex).await;
}
