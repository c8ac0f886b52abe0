//! Publish from a queue (docs/delivery.md): Herald consumes publish requests from a RabbitMQ queue,
//! for platforms that already produce events onto RabbitMQ at volume.
//!
//! Each message body is the JSON of `POST /v1/events`, decoded and validated by the same code
//! and published through [`Herald::publish`], so validation, fan-out and durability are the
//! same as over HTTP. The message is acknowledged only after the event and its deliveries are
//! committed; if Herald dies in between, the broker hands the message out again (set `id` in
//! the body, or an `idempotency-key` header, and the repeat returns the original event).
//!
//! A message that would get a 4xx over HTTP (malformed JSON, a bad field, an unknown tenant)
//! never succeeds, so it is not requeued: with `amqp_dead_letter_queue` set it is republished
//! there, confirmed, with the reason in the `x-herald-error` (+ `-code`, `-field`) headers,
//! and then acknowledged; without, it is rejected without requeue (the queue's own
//! dead-letter exchange gets it, if it has one). A message that failed for a reason of
//! Herald's (the database is down) is requeued after a pause.
//!
//! At most `amqp_prefetch` messages are unacknowledged at once (basic.qos), and they are
//! published concurrently, so the publish group commit gathers them into few transactions.
//! A lost connection is re-established with exponential backoff (`backon`); messages that
//! were in flight are redelivered by the broker.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::domain::validate::Invalid;
use crate::outbound::amqp::{AmqpTls, connect};
use crate::service::input::decode_json;
use crate::service::{Herald, PublishRequest, ServiceError};
use crate::store::Scope;

/// How long a message that failed for a transient reason waits before it is requeued, so a
/// database outage does not turn into a hot redelivery loop.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// What the consumer needs from the configuration.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// `HERALD_AMQP_URL`: the operator's broker, trusted (no SSRF check).
    pub url: String,
    pub queue: String,
    pub dead_letter_queue: Option<String>,
    pub prefetch: u16,
    /// The connection's name as the broker shows it.
    pub connection_name: String,
    /// The largest message body accepted, like the API's request body limit.
    pub max_body_bytes: usize,
    /// For an `amqps://` broker: the CAs its certificate may chain to.
    pub tls: Arc<AmqpTls>,
}

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("{0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker ended the consumer")]
    Ended,
}

/// Consumes until `shutdown` turns true, reconnecting whenever the connection is lost. On
/// shutdown it stops taking messages, lets those in hand finish, and closes the connection.
pub async fn run(herald: Herald, settings: QueueSettings, mut shutdown: watch::Receiver<bool>) {
    let settings = Arc::new(settings);
    let redacted = crate::domain::amqp::redact(&settings.url);
    loop {
        let open = || {
            connect(
                &settings.url,
                None,
                &settings.tls,
                &settings.connection_name,
            )
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        let conn = tokio::select! {
            c = open.retry(backoff).notify(|e, wait| {
                tracing::warn!(broker = %redacted, error = %e.message, ?wait,
                    "publish queue: cannot connect; retrying");
            }) => c,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Ok(conn) = conn else { continue };
        tracing::info!(broker = %redacted, queue = %settings.queue, "publish queue: consuming");
        match consume(&herald, &settings, &conn, &mut shutdown).await {
            Ok(()) => {
                let _ = conn.close(200, "Herald is shutting down".into()).await;
                return;
            }
            Err(e) => {
                tracing::warn!(broker = %redacted, error = %e, "publish queue: connection lost; reconnecting");
            }
        }
    }
}

/// One connection's worth of consuming. `Ok` means shutdown was asked for.
async fn consume(
    herald: &Herald,
    s: &Arc<QueueSettings>,
    conn: &Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConsumeError> {
    ensure_queue(conn, &s.queue).await?;
    let dead_letter = match &s.dead_letter_queue {
        None => None,
        Some(q) => {
            ensure_queue(conn, q).await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            Some(ch)
        }
    };
    let ch = conn.create_channel().await?;
    ch.basic_qos(s.prefetch, BasicQosOptions::default()).await?;
    let tag = format!("{}-publish", s.connection_name);
    let mut consumer = ch
        .basic_consume(
            s.queue.as_str().into(),
            ShortString::from(tag.as_str()),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut in_hand = JoinSet::new();
    let result = loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let (herald, s, dl) = (herald.clone(), s.clone(), dead_letter.clone());
                    in_hand.spawn(async move { handle(&herald, &s, dl.as_ref(), delivery).await });
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(ConsumeError::Ended),
            },
            Some(_) = in_hand.join_next(), if !in_hand.is_empty() => {}
        }
    };
    if result.is_ok() {
        let _ = ch
            .basic_cancel(
                ShortString::from(tag.as_str()),
                BasicCancelOptions::default(),
            )
            .await;
    }
    // Messages in hand are published and acknowledged before the connection goes (on a lost
    // connection their acks fail and the broker redelivers them).
    while in_hand.join_next().await.is_some() {}
    result
}

/// Declares `queue` durable unless it exists: an existing queue keeps the arguments its
/// owner gave it (a plain declare with different ones would be refused).
async fn ensure_queue(conn: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let probe = conn.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    if probe
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok()
    {
        return Ok(());
    }
    // The failed passive declare closed `probe`.
    let ch = conn.create_channel().await?;
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// What became of one message.
enum Outcome {
    Committed,
    /// Would be a 4xx over HTTP: never requeued.
    Invalid(ServiceError),
    /// Herald's own trouble (the database, a concurrent-publish conflict): requeued after a
    /// pause.
    Transient(ServiceError),
}

async fn publish(herald: &Herald, s: &QueueSettings, d: &Delivery) -> Outcome {
    if d.data.len() > s.max_body_bytes {
        return Outcome::Invalid(ServiceError::TooLarge {
            field: "body".into(),
            message: format!("the message body is larger than {} bytes", s.max_body_bytes),
        });
    }
    let req: PublishRequest = match decode_json(&d.data) {
        Ok(r) => r,
        Err(e) => return Outcome::Invalid(e),
    };
    let key = match header(d, "idempotency-key") {
        Ok(k) => k,
        Err(e) => return Outcome::Invalid(e.into()),
    };
    match herald.publish(Scope::Admin, req, key.as_deref()).await {
        Ok(_) => Outcome::Committed,
        Err(e) if e.is_transient() => Outcome::Transient(e),
        Err(e) => Outcome::Invalid(e),
    }
}

/// A string header of the message, if present.
fn header(d: &Delivery, name: &str) -> Result<Option<String>, Invalid> {
    let Some(value) = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name))
    else {
        return Ok(None);
    };
    let text = match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_string),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    };
    text.map(Some)
        .ok_or_else(|| Invalid::new(name, "must be a UTF-8 string header"))
}

async fn handle(herald: &Herald, s: &QueueSettings, dead_letter: Option<&Channel>, d: Delivery) {
    let done = match publish(herald, s, &d).await {
        Outcome::Committed => d.ack(BasicAckOptions::default()).await,
        Outcome::Invalid(e) => {
            tracing::info!(queue = %s.queue, code = e.code(), field = ?e.field(), detail = %e,
                "publish queue: invalid message");
            match dead_letter {
                None => d.reject(BasicRejectOptions { requeue: false }).await,
                Some(ch) => match send_to_dead_letter(ch, s, &d, &e).await {
                    Ok(()) => d.ack(BasicAckOptions::default()).await,
                    Err(why) => {
                        tracing::warn!(error = %why, "publish queue: dead-lettering failed; requeueing");
                        tokio::time::sleep(REQUEUE_PAUSE).await;
                        d.nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await
                    }
                },
            }
        }
        Outcome::Transient(e) => {
            tracing::warn!(queue = %s.queue, error = %e, "publish queue: publish failed; requeueing");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            d.nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
        }
    };
    if let Err(e) = done {
        // The connection went; the broker redelivers the message to the next consumer.
        tracing::warn!(error = %e, "publish queue: acknowledging failed");
    }
}

/// Republishes an invalid message to the dead-letter queue, as it came plus the reason, and
/// waits for the broker's confirm.
async fn send_to_dead_letter(
    ch: &Channel,
    s: &QueueSettings,
    d: &Delivery,
    e: &ServiceError,
) -> Result<(), String> {
    let queue = s.dead_letter_queue.as_deref().unwrap_or_default();
    let mut headers = d.properties.headers().clone().unwrap_or_default();
    let text = |v: &str| AMQPValue::LongString(LongString::from(v));
    headers.insert("x-herald-error".into(), text(&e.to_string()));
    headers.insert("x-herald-error-code".into(), text(e.code()));
    if let Some(field) = e.field() {
        headers.insert("x-herald-error-field".into(), text(field));
    }
    headers.insert("x-herald-source-queue".into(), text(&s.queue));
    let properties: BasicProperties = d
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirm = ch
        .basic_publish(
            "".into(),
            ShortString::from(queue),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &d.data,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(format!("dead-letter queue `{queue}` does not exist")),
        Confirmation::Nack(_) => Err("the broker refused the dead-lettered message".into()),
        Confirmation::NotRequested => Err("the dead-letter channel is not in confirm mode".into()),
    }
}
