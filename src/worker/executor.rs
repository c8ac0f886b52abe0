//! One attempt: build the signed request, send it (an HTTP `POST`, or a confirmed publish to
//! RabbitMQ), decide what happens next, record it.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rand::Rng;

use super::batch::FinishBatcher;
use crate::clock::Clock;
use crate::domain::amqp::{self, AmqpTarget};
use crate::domain::disable;
use crate::domain::ids::{Kind, new_id};
use crate::domain::model::DestinationKind;
use crate::domain::model::{Attempt, Destination, PayloadFormat};
use crate::domain::retry::{self, RetrySchedule, Verdict};
use crate::domain::signature;
use crate::domain::state::DeliveryStatus;
use crate::domain::state::ErrorKind;
use crate::domain::time::rfc3339;
use crate::outbound::amqp::AmqpSender;
use crate::outbound::http::{HttpSender, SendResult};
use crate::service::operator;
use crate::store::{AutoDisable, Claimed, Finish, Store};
use crate::telemetry::otel::{KeyValue, Span, Tracing};

pub const USER_AGENT: &str = concat!("Herald/", env!("CARGO_PKG_VERSION"));

pub struct Executor {
    store: std::sync::Arc<dyn Store>,
    http: HttpSender,
    /// Publishes to RabbitMQ destinations (connections pooled per broker).
    amqp: std::sync::Arc<AmqpSender>,
    clock: Clock,
    schedule: RetrySchedule,
    default_timeout: Duration,
    /// No send may outlast its lease (see [`Executor::with_lease`]).
    max_timeout: Duration,
    auto_disable: AutoDisable,
    /// Emit operator events (`destination.disabled`, `delivery.exhausted`).
    operator_events: bool,
    finisher: FinishBatcher,
    /// Base of reply-channel URLs (`{public_url}/in/{slug}`).
    public_url: String,
    /// A client span per attempt, child of the event's publish span (docs/tracing.md).
    tracing: Tracing,
}

impl Executor {
    pub fn new(
        store: std::sync::Arc<dyn Store>,
        http: HttpSender,
        clock: Clock,
        schedule: RetrySchedule,
        default_timeout: Duration,
    ) -> Self {
        Self {
            finisher: super::batch::spawn(store.clone()),
            store,
            amqp: std::sync::Arc::new(AmqpSender::new(http.policy().clone(), "herald")),
            http,
            clock,
            schedule,
            default_timeout,
            max_timeout: lease_budget(crate::worker::WorkerConfig::default().lease),
            auto_disable: AutoDisable::default(),
            operator_events: false,
            public_url: "http://127.0.0.1:8080".into(),
            tracing: Tracing::off(),
        }
    }

    /// Traces every attempt with `tracing`, and sends its `traceparent` to receivers.
    pub fn with_tracing(mut self, tracing: Tracing) -> Self {
        self.tracing = tracing;
        self
    }

    /// Caps every send (a destination's own `timeout_ms` included) and the retries of its
    /// outcome below the claim's lease, so a live worker never loses a lease mid-send.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.max_timeout = lease_budget(lease);
        self
    }

    /// Replaces the RabbitMQ publisher (to name its connections after the node).
    pub fn with_amqp(mut self, amqp: std::sync::Arc<AmqpSender>) -> Self {
        self.amqp = amqp;
        self
    }

    /// The RabbitMQ publisher and its connection pool.
    pub fn amqp(&self) -> &std::sync::Arc<AmqpSender> {
        &self.amqp
    }

    pub fn with_auto_disable(mut self, limits: AutoDisable) -> Self {
        self.auto_disable = limits;
        self
    }

    /// Publishes operator events to the operator tenant (see [`crate::service::operator`]).
    pub fn with_operator_events(mut self, on: bool) -> Self {
        self.operator_events = on;
        self
    }

    /// Sets the base URL reply channels are announced with (`Config::public_url`).
    pub fn with_public_url(mut self, public_url: String) -> Self {
        self.public_url = public_url;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Performs the claimed attempt and records its outcome. Errors are logged, never
    /// returned: if the outcome cannot be recorded, the lease expires and the delivery is
    /// attempted again (receivers dedupe on `webhook-id`).
    pub async fn execute(&self, c: Claimed) {
        let finish = match &c.destination {
            None => self.give_back(&c, DeliveryStatus::Cancelled, disable::DESTINATION_DELETED),
            Some(d) if !d.enabled => {
                self.give_back(&c, DeliveryStatus::Skipped, disable::DESTINATION_DISABLED)
            }
            Some(d) => self.send(&c, d).await,
        };
        let m = crate::metrics::metrics();
        m.outcome(finish.next.as_str());
        if let Some(a) = &finish.attempt {
            let result = a.error_kind.map_or("ok", |k| k.as_str());
            m.attempt(result, a.duration_ms as f64 / 1000.0);
        }
        // Retries with backoff ride out a database hiccup or restart (the pool reconnects on
        // the next try). Past the lease there is no point: the delivery is rescued and sent
        // again (receivers dedupe on `webhook-id`), so the retries stop within it.
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(1))
            .with_total_delay(Some(self.max_timeout))
            .without_max_times();
        let recorded = (|| self.finisher.commit(finish.clone()))
            .retry(backoff)
            .notify(|e, wait| {
                tracing::warn!(delivery_id = %c.delivery_id, error = %e, ?wait,
                    "recording the outcome failed; retrying")
            })
            .await;
        match recorded {
            Ok(done) if !done.applied => {
                tracing::info!(delivery_id = %c.delivery_id, attempt = c.attempt,
                    "outcome not applied: the lease expired and another worker took over");
            }
            Ok(done) => self.tell_operator(&c, &finish, done.disabled).await,
            Err(e) => {
                tracing::warn!(delivery_id = %c.delivery_id, error = %e,
                    "giving up on recording the outcome; the delivery is retried after its lease")
            }
        }
    }

    /// Operator events follow the outcome they report, in their own transaction: if the
    /// process dies in between, that one notification is lost, never a tenant's event.
    async fn tell_operator(&self, c: &Claimed, f: &Finish, disabled: Option<String>) {
        if !self.operator_events || c.tenant_id == operator::OPERATOR_TENANT {
            return;
        }
        let mut events = vec![];
        if let Some(reason) = disabled {
            events.push(operator::event(
                "destination.disabled",
                serde_json::json!({
                    "tenant_id": c.tenant_id, "destination_id": c.destination_id, "reason": reason,
                    "topic": c.topic, "event_id": c.event_id, "delivery_id": c.delivery_id,
                }),
            ));
        }
        if f.next == DeliveryStatus::Failed && f.attempt.is_some() {
            events.push(operator::event(
                "delivery.exhausted",
                serde_json::json!({
                    "tenant_id": c.tenant_id, "destination_id": c.destination_id,
                    "topic": c.topic, "event_id": c.event_id, "delivery_id": c.delivery_id,
                    "attempts": c.attempt, "last_error": f.last_error,
                }),
            ));
        }
        if !events.is_empty()
            && let Err(e) = self.store.publish(&events, self.clock.now()).await
        {
            tracing::warn!(error = %e, "operator event could not be published");
        }
    }

    fn give_back(&self, c: &Claimed, next: DeliveryStatus, why: &str) -> Finish {
        let now = self.clock.now();
        Finish {
            delivery_id: c.delivery_id.clone(),
            tenant_id: c.tenant_id.clone(),
            attempt_number: c.attempt,
            attempt: None,
            last_error: Some(why.to_string()),
            next,
            next_attempt_at: None,
            now,
            destination_id: c.destination_id.clone(),
            disable_destination: None,
            auto_disable: self.auto_disable,
        }
    }

    /// Publishes to a RabbitMQ destination. The message carries the webhook's headers (so a
    /// consumer verifies it with the same Standard Webhooks code), plus the topic and tenant;
    /// `headers` is updated to what was sent, for the attempt log.
    async fn publish_amqp(
        &self,
        c: &Claimed,
        target: &AmqpTarget,
        headers: &mut Vec<(String, String)>,
        body: &[u8],
        started_at: i64,
        timeout: Duration,
    ) -> SendResult {
        headers.retain(|(name, _)| name != "user-agent");
        headers.push(("topic".into(), c.topic.clone()));
        headers.push(("tenant-id".into(), c.tenant_id.clone()));
        let routing_key =
            match amqp::render_routing_key(&target.routing_key, &c.topic, &c.tenant_id) {
                Ok(key) => key,
                Err(e) => {
                    return SendResult {
                        error_kind: Some(ErrorKind::Amqp),
                        error: Some(e),
                        ..Default::default()
                    };
                }
            };
        let message = crate::outbound::amqp::Message {
            target,
            routing_key: &routing_key,
            headers,
            body,
            message_id: &c.event_id,
            topic: &c.topic,
            timestamp: started_at.div_euclid(1000),
        };
        self.amqp.publish(&message, timeout).await
    }

    async fn send(&self, c: &Claimed, d: &Destination) -> Finish {
        let started_at = self.clock.now();
        let reply_url = c
            .reply_slug
            .as_deref()
            .map(|slug| crate::inbound::model::callback_url(&self.public_url, slug));
        let body = build_body(
            c,
            d.options.payload.unwrap_or_default(),
            reply_url.as_deref(),
        );
        let mut headers = build_headers(c, d, started_at, &body);
        if let Some(url) = reply_url {
            headers.push(("webhook-reply-url".into(), url));
        }
        // Off, this is one branch: no attributes are built and no context is formatted.
        let mut span = if self.tracing.is_on() {
            self.attempt_span(c, d)
        } else {
            Span::none()
        };
        if d.options.propagate_trace.unwrap_or(true)
            && let Some(traceparent) = span.traceparent()
        {
            headers.push(("traceparent".into(), traceparent));
        }
        let timeout = d
            .options
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.default_timeout)
            .min(self.max_timeout);
        let (url, result) = match &d.amqp {
            None => {
                let url = d.url.clone().unwrap_or_default();
                let result = self.http.post(&url, &headers, body, timeout).await;
                (url, result)
            }
            Some(target) => {
                let result = self
                    .publish_amqp(c, target, &mut headers, &body, started_at, timeout)
                    .await;
                (target.url.redacted(), result)
            }
        };

        if self.tracing.is_on() {
            record_outcome(&mut span, &result);
        }
        drop(span);

        let now = self.clock.now();
        let schedule = match &d.options.retry_schedule {
            Some(secs) => RetrySchedule::from_secs(secs, self.schedule.jitter()),
            None => self.schedule.clone(),
        };
        let retry_after = result
            .retry_after
            .as_deref()
            .and_then(|v| retry::parse_retry_after(v, now));
        let unit = rand::rng().random_range(-1.0..=1.0);
        let verdict = match (d.kind, result.error_kind) {
            // A broker's confirm is the AMQP success; there is no status code.
            (DestinationKind::Rabbitmq, None) => Verdict::Succeeded,
            _ => retry::decide(&schedule, c.attempt, result.status_code, retry_after, unit),
        };
        let (next, next_attempt_at, disable) = match verdict {
            Verdict::Succeeded => (DeliveryStatus::Succeeded, None, None),
            Verdict::Retry(delay) => (
                DeliveryStatus::Retrying,
                Some(now + delay.as_millis() as i64),
                None,
            ),
            Verdict::Exhausted => (DeliveryStatus::Failed, None, None),
            Verdict::Gone => (
                DeliveryStatus::Failed,
                None,
                Some(disable::GONE.to_string()),
            ),
        };
        tracing::debug!(delivery_id = %c.delivery_id, event_id = %c.event_id, attempt = c.attempt,
            status = ?result.status_code, error = ?result.error_kind, next = %next, "attempt finished");
        let attempt = Attempt {
            id: new_id(Kind::Attempt),
            delivery_id: c.delivery_id.clone(),
            attempt: c.attempt,
            trigger: c.trigger,
            started_at,
            duration_ms: result.duration_ms,
            url: Some(url),
            status_code: result.status_code,
            error_kind: result.error_kind,
            error: result.error.clone(),
            request_headers: logged_headers(d, headers),
            response_headers: result.response_headers,
            response_body: result.response_body,
        };
        Finish {
            delivery_id: c.delivery_id.clone(),
            tenant_id: c.tenant_id.clone(),
            attempt_number: c.attempt,
            last_error: result.error,
            attempt: Some(attempt),
            next,
            next_attempt_at,
            now,
            destination_id: d.id.clone(),
            disable_destination: disable,
            auto_disable: self.auto_disable,
        }
    }
}

impl Executor {
    /// The attempt's `CLIENT` span, with the HTTP (or messaging) semantic conventions'
    /// attributes, the attempt number and the ids that find it in Herald.
    fn attempt_span(&self, c: &Claimed, d: &Destination) -> Span {
        let mut attributes = vec![
            KeyValue::new("herald.attempt", i64::from(c.attempt)),
            KeyValue::new("herald.delivery_id", c.delivery_id.clone()),
            KeyValue::new("herald.event_id", c.event_id.clone()),
            KeyValue::new("herald.destination_id", d.id.clone()),
            KeyValue::new("herald.tenant_id", c.tenant_id.clone()),
            KeyValue::new("herald.topic", c.topic.clone()),
        ];
        let name = match &d.amqp {
            None => {
                attributes.push(KeyValue::new("http.request.method", "POST"));
                if let Ok(mut url) = url::Url::parse(d.url.as_deref().unwrap_or_default()) {
                    // The semantic conventions keep credentials out of `url.full`.
                    let _ = url.set_username("");
                    let _ = url.set_password(None);
                    if let Some(host) = url.host_str() {
                        attributes.push(KeyValue::new("server.address", host.to_string()));
                    }
                    if let Some(port) = url.port_or_known_default() {
                        attributes.push(KeyValue::new("server.port", i64::from(port)));
                    }
                    attributes.push(KeyValue::new("url.full", url.to_string()));
                }
                "POST".to_string()
            }
            Some(target) => {
                attributes.push(KeyValue::new("messaging.system", "rabbitmq"));
                attributes.push(KeyValue::new("messaging.operation.type", "send"));
                attributes.push(KeyValue::new(
                    "messaging.destination.name",
                    target.exchange.clone(),
                ));
                attributes.push(KeyValue::new("url.full", target.url.redacted()));
                format!("send {}", target.exchange)
            }
        };
        self.tracing
            .client(name, c.traceparent.as_deref(), attributes)
    }
}

/// The outcome on the attempt's span: the status code, and for a failure `error.type` (the
/// status code for an HTTP error status, as the semantic conventions have it; Herald's error
/// kind otherwise) with `herald.error_kind` beside it.
fn record_outcome(span: &mut Span, result: &SendResult) {
    if let Some(status) = result.status_code {
        span.set("http.response.status_code", i64::from(status));
    }
    if let Some(kind) = result.error_kind {
        span.set("herald.error_kind", kind.as_str());
        let error_type = match (kind, result.status_code) {
            (ErrorKind::Status, Some(status)) => status.to_string(),
            _ => kind.as_str().to_string(),
        };
        span.fail(error_type, result.error.clone().unwrap_or_default());
    }
}

/// What a send may take of its lease: all of it but the headroom for recording the outcome.
fn lease_budget(lease: Duration) -> Duration {
    lease
        .saturating_sub(Duration::from_millis(super::LEASE_HEADROOM_MS))
        .max(Duration::from_millis(100))
}

/// The request body: the Standard Webhooks envelope around the publisher's data (spliced in
/// verbatim), or the data alone. An event with a reply channel adds `reply_url` to the
/// envelope (the data is the publisher's and stays untouched; the header carries it too).
pub fn build_body(c: &Claimed, format: PayloadFormat, reply_url: Option<&str>) -> Vec<u8> {
    match format {
        PayloadFormat::Data => c.data.get().as_bytes().to_vec(),
        PayloadFormat::Envelope => {
            let topic = serde_json::to_string(&c.topic).expect("strings serialize");
            let reply = reply_url
                .map(|u| {
                    format!(
                        r#","reply_url":{}"#,
                        serde_json::to_string(u).expect("strings serialize")
                    )
                })
                .unwrap_or_default();
            format!(
                r#"{{"type":{topic},"timestamp":"{}","data":{}{reply}}}"#,
                rfc3339(c.event_created_at),
                c.data.get()
            )
            .into_bytes()
        }
    }
}

/// The request headers as the attempt log keeps them: the destination's own headers (often a
/// receiver's credentials, `Authorization: Bearer …`) by name only, Herald's in full. The
/// attempt log is shown in the API and the portal and is not sealed at rest.
fn logged_headers(d: &Destination, headers: Vec<(String, String)>) -> BTreeMap<String, String> {
    headers
        .into_iter()
        .map(|(k, v)| {
            if d.headers.keys().any(|own| own.eq_ignore_ascii_case(&k)) {
                (k, "[redacted]".to_string())
            } else {
                (k, v)
            }
        })
        .collect()
}

/// The request headers: the destination's own, then Herald's (which they cannot override).
pub fn build_headers(
    c: &Claimed,
    d: &Destination,
    now_ms: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let ts = now_ms.div_euclid(1000);
    let signature = signature::signature_header(d.active_secrets(now_ms), &c.event_id, ts, body);
    let mut h: Vec<(String, String)> = d
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    h.push(("content-type".into(), "application/json".into()));
    h.push(("user-agent".into(), USER_AGENT.into()));
    h.push(("webhook-id".into(), c.event_id.clone()));
    h.push(("webhook-timestamp".into(), ts.to_string()));
    h.push(("webhook-signature".into(), signature));
    h
}
