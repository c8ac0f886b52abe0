//! The RabbitMQ publisher: deliveries to `rabbitmq` destinations.
//!
//! One connection per broker URL, shared by every destination that names it, opened on first
//! use and opened again when the broker (or anything between) has closed it. Channels are
//! pooled per connection: each publish takes one, and gives it back only if it is still open,
//! so a channel the broker closed (a missing exchange closes the channel) is dropped, and
//! dropping a lapin channel closes it. At most [`MAX_IDLE_CHANNELS`] wait idle per broker.
//!
//! Every publish is `mandatory`, persistent and confirmed: an attempt succeeds only on the
//! broker's ack. A returned message (no queue bound for the routing key) is `unroutable`, a
//! nack is `nack`, a closed channel or refused connection is `amqp`, like HTTP failures they
//! are retried on the delivery's schedule.
//!
//! The broker's host is an outbound destination like a webhook URL: it is resolved here, each
//! address checked against the SSRF [`Policy`], and the socket connects only to the addresses
//! that passed (so DNS rebinding cannot slip past the check).
//!
//! `amqps://` brokers are reached over TLS (rustls, [`AmqpTls`]): their certificate is checked
//! against the system's roots, as for HTTPS deliveries, plus any CA the operator added with
//! `amqp_tls_ca_file` (a private CA, or a test broker).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use lapin::message::BasicReturnMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::http::SendResult;
use super::ssrf::{self, Policy};
use crate::domain::amqp::{AmqpTarget, redact};
use crate::domain::state::ErrorKind;

/// Idle channels kept per broker; more in flight at once are closed when they finish.
pub const MAX_IDLE_CHANNELS: usize = 32;

/// How long opening a TCP connection to a broker may take, and then the AMQP handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker connection no delivery used for this long is closed.
const IDLE_BROKER: Duration = Duration::from_secs(10 * 60);

/// How `amqps://` brokers' certificates are checked: the platform's verifier (the system's
/// roots) plus the operator's extra CAs. The verifier is built on first use, so a node that
/// never talks TLS to a broker never loads the system's roots for it.
#[derive(Default)]
pub struct AmqpTls {
    extra_roots: Vec<CertificateDer<'static>>,
    connector: OnceLock<Result<RustlsConnector, String>>,
}

impl std::fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTls")
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

impl AmqpTls {
    /// Trusts the CA certificates in a PEM file too (`amqp_tls_ca_file`).
    pub fn with_ca_file(path: &std::path::Path) -> Result<Self, String> {
        let roots = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if roots.is_empty() {
            return Err(format!("{}: no certificate in the file", path.display()));
        }
        Ok(Self {
            extra_roots: roots,
            connector: OnceLock::new(),
        })
    }

    fn connector(&self) -> Result<RustlsConnector, Failure> {
        self.connector
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
                    self.extra_roots.iter().cloned(),
                    provider.clone(),
                )
                .map_err(|e| e.to_string())?;
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .dangerous() // not dangerous: the platform's verifier, as in reqwest
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth();
                Ok(RustlsConnector::from(config))
            })
            .clone()
            .map_err(|e| Failure::new(ErrorKind::Tls, format!("TLS setup: {e}")))
    }
}

/// A TLS handshake that failed, told apart from other socket errors for the attempt log.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
struct TlsHandshake(std::io::Error);

/// One message to publish.
pub struct Message<'a> {
    pub target: &'a AmqpTarget,
    pub routing_key: &'a str,
    /// Sent as AMQP headers, except `content-type`, which is the message property.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// The event id: also the AMQP `message-id`.
    pub message_id: &'a str,
    /// The topic: also the AMQP `type`.
    pub topic: &'a str,
    /// Unix seconds of this attempt: the AMQP `timestamp`.
    pub timestamp: i64,
}

/// Why a publish failed, as the attempt log records it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
    /// The connection was an old pooled one that turned out dead (a broker restart): trying
    /// again at once, on a fresh connection, is likely to work.
    stale: bool,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            stale: false,
        }
    }
}

/// A broker: its connection (replaced when it dies) and the idle channels on it.
struct Broker {
    /// Held while connecting, so concurrent deliveries to a broker share one attempt.
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    idle: Mutex<Vec<Channel>>,
    /// When a publish last asked for this broker: unused ones are let go.
    last_used: Mutex<Instant>,
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            conn: Default::default(),
            idle: Default::default(),
            last_used: Mutex::new(Instant::now()),
        }
    }
}

impl Broker {
    /// The live connection, opened when there is none; `true` when it was just opened.
    async fn connection(
        &self,
        url: &str,
        reach: Reach<'_>,
    ) -> Result<(Arc<Connection>, bool), Failure> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref()
            && c.status().connected()
        {
            return Ok((c.clone(), false));
        }
        // Channels of the dead connection are dead too.
        self.idle.lock().expect("not poisoned").clear();
        let fresh = Arc::new(connect(url, Some(reach.policy), reach.tls, reach.name).await?);
        *conn = Some(fresh.clone());
        Ok((fresh, true))
    }

    /// An open channel in confirm mode, from the pool or new.
    async fn channel(&self, url: &str, reach: Reach<'_>) -> Result<(Channel, bool), Failure> {
        let (conn, fresh) = self.connection(url, reach).await?;
        loop {
            let Some(ch) = self.idle.lock().expect("not poisoned").pop() else {
                break;
            };
            if ch.status().connected() {
                return Ok((ch, fresh));
            }
        }
        let stale = |e: lapin::Error| Failure {
            stale: !fresh,
            ..classify(&e)
        };
        let ch = conn.create_channel().await.map_err(stale)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(stale)?;
        Ok((ch, fresh))
    }

    /// Returns a channel to the pool if it is still usable; otherwise dropping it closes it.
    fn give_back(&self, ch: Channel) {
        let mut idle = self.idle.lock().expect("not poisoned");
        if ch.status().connected() && idle.len() < MAX_IDLE_CHANNELS {
            idle.push(ch);
        }
    }
}

/// What opening a connection to a tenant's broker needs.
#[derive(Clone, Copy)]
struct Reach<'a> {
    policy: &'a Policy,
    tls: &'a AmqpTls,
    name: &'a str,
}

/// Publishes deliveries to brokers. One per process; cheap to share.
pub struct AmqpSender {
    policy: Policy,
    tls: Arc<AmqpTls>,
    /// Shown by the broker for each connection (`connection_name`), e.g. in the management UI.
    connection_name: String,
    /// Keyed by the full broker URL: destinations naming the same broker, vhost and
    /// credentials share a connection.
    brokers: Mutex<HashMap<String, Arc<Broker>>>,
}

impl AmqpSender {
    pub fn new(policy: Policy, connection_name: impl Into<String>) -> Self {
        Self {
            policy,
            tls: Arc::default(),
            connection_name: connection_name.into(),
            brokers: Mutex::default(),
        }
    }

    /// Checks `amqps://` brokers' certificates with `tls` (extra CAs).
    pub fn with_tls(mut self, tls: Arc<AmqpTls>) -> Self {
        self.tls = tls;
        self
    }

    fn broker(&self, url: &str) -> Arc<Broker> {
        let now = Instant::now();
        let mut brokers = self.brokers.lock().expect("not poisoned");
        evict_idle(&mut brokers, now);
        let broker = brokers.entry(url.to_string()).or_default().clone();
        *broker.last_used.lock().expect("not poisoned") = now;
        broker
    }

    /// Publishes one message and waits for the broker's confirm, within `timeout`. Never
    /// fails: every outcome is a [`SendResult`] for the attempt log.
    pub async fn publish(&self, m: &Message<'_>, timeout: Duration) -> SendResult {
        let started = Instant::now();
        let broker = self.broker(m.target.url.expose());
        // A dead pooled connection is found out by using it: after a broker restart the first
        // publish fails on the old connection, and one more try on a fresh one succeeds.
        let attempt = || self.try_publish(&broker, m);
        let outcome = tokio::time::timeout(
            timeout,
            attempt
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(50))
                        .with_max_times(2),
                )
                .when(|f: &Failure| f.stale),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                ErrorKind::Timeout,
                format!(
                    "no confirm from the broker within {} ms",
                    timeout.as_millis()
                ),
            ))
        });
        let (error_kind, error) = match outcome {
            Ok(()) => (None, None),
            Err(f) => (Some(f.kind), Some(f.message)),
        };
        SendResult {
            duration_ms: started.elapsed().as_millis() as u64,
            error_kind,
            error,
            ..Default::default()
        }
    }

    async fn try_publish(&self, broker: &Broker, m: &Message<'_>) -> Result<(), Failure> {
        let reach = Reach {
            policy: &self.policy,
            tls: &self.tls,
            name: &self.connection_name,
        };
        let (ch, fresh) = broker.channel(m.target.url.expose(), reach).await?;
        let sent = ch
            .basic_publish(
                ShortString::from(m.target.exchange.as_str()),
                ShortString::from(m.routing_key),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                m.body,
                properties(m),
            )
            .await;
        let confirmed = match sent {
            Ok(confirm) => confirm.await,
            Err(e) => Err(e),
        };
        match confirmed {
            Ok(Confirmation::Ack(None)) => {
                broker.give_back(ch);
                Ok(())
            }
            Ok(Confirmation::Ack(Some(returned))) => {
                broker.give_back(ch);
                Err(unroutable(m, &returned))
            }
            Ok(Confirmation::Nack(_)) => {
                broker.give_back(ch);
                Err(Failure::new(
                    ErrorKind::Nack,
                    "the broker did not accept the message (nack)",
                ))
            }
            Ok(Confirmation::NotRequested) => Err(Failure::new(
                ErrorKind::Internal,
                "the channel is not in confirm mode",
            )),
            // The channel is gone (the broker closes it on a missing exchange) or the
            // connection is; `ch` is dropped, not pooled.
            Err(e) => Err(Failure {
                stale: !fresh && is_connection_error(&e),
                ..classify_publish(&e, m)
            }),
        }
    }
}

/// Lets go of brokers no publish has asked for in [`IDLE_BROKER`] and none is using (a
/// destination deleted or pointed elsewhere): dropping the last handle on a connection and
/// its channels closes them.
fn evict_idle(brokers: &mut HashMap<String, Arc<Broker>>, now: Instant) {
    brokers.retain(|_, b| {
        Arc::strong_count(b) > 1
            || now.saturating_duration_since(*b.last_used.lock().expect("not poisoned"))
                < IDLE_BROKER
    });
}

/// The message properties: persistent JSON, with the event id, topic and time also as
/// standard AMQP properties for consumers that look there rather than at headers.
fn properties(m: &Message<'_>) -> BasicProperties {
    let mut headers = FieldTable::default();
    let mut content_type = "application/json";
    for (name, value) in m.headers {
        if name == "content-type" {
            content_type = value;
            continue;
        }
        headers.insert(
            ShortString::from(name.as_str()),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    BasicProperties::default()
        .with_content_type(ShortString::from(content_type))
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(m.message_id))
        .with_type(ShortString::from(m.topic))
        .with_timestamp(m.timestamp.max(0) as u64)
        .with_app_id(ShortString::from(concat!(
            "Herald/",
            env!("CARGO_PKG_VERSION")
        )))
        .with_headers(headers)
}

fn unroutable(m: &Message<'_>, returned: &BasicReturnMessage) -> Failure {
    let exchange = if m.target.exchange.is_empty() {
        "the default exchange".to_string()
    } else {
        format!("exchange '{}'", m.target.exchange)
    };
    Failure::new(
        ErrorKind::Unroutable,
        format!(
            "{exchange} routed routing key '{}' to no queue ({} {})",
            m.routing_key,
            returned.reply_code,
            returned.reply_text.as_str()
        ),
    )
}

/// A failure that concerns the connection rather than this one channel.
fn is_connection_error(e: &lapin::Error) -> bool {
    e.is_io_error()
        || e.is_amqp_hard_error()
        || matches!(
            e.kind(),
            lapin::ErrorKind::InvalidConnectionState(_)
                | lapin::ErrorKind::MissingHeartbeatError
                | lapin::ErrorKind::InvalidChannelState(..)
        )
}

/// A publish error, said in terms of the delivery (a missing exchange names it).
fn classify_publish(e: &lapin::Error, m: &Message<'_>) -> Failure {
    let f = classify(e);
    let text = e.to_string();
    if text.contains("NOT_FOUND") && text.contains("exchange") {
        return Failure::new(
            ErrorKind::Amqp,
            format!(
                "exchange '{}' does not exist on the broker: {text}",
                m.target.exchange
            ),
        );
    }
    f
}

/// Maps a lapin error to the attempt log's kind and a readable message.
fn classify(e: &lapin::Error) -> Failure {
    let tls = match e.kind() {
        lapin::ErrorKind::IOError(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<TlsHandshake>()),
        _ => None,
    };
    let kind = match tls {
        Some(_) => ErrorKind::Tls,
        None if e.is_io_error() => ErrorKind::Connect,
        None => ErrorKind::Amqp,
    };
    Failure::new(kind, e.to_string())
}

/// Opens a connection to the broker `url` names. With a `policy`, the host's addresses are
/// checked against it first and the socket goes only to the allowed ones; without (the
/// operator's own broker, `HERALD_AMQP_URL`), any address is fine. An `amqps://` broker is
/// then spoken to over TLS, its certificate checked for the URL's host.
pub async fn connect(
    url: &str,
    policy: Option<&Policy>,
    tls: &AmqpTls,
    connection_name: &str,
) -> Result<Connection, Failure> {
    let uri: AMQPUri = url
        .parse()
        .map_err(|e: String| Failure::new(ErrorKind::Connect, format!("{}: {e}", redact(url))))?;
    let host = uri.authority.host.clone();
    let port = uri.authority.port;
    let addrs: Vec<SocketAddr> = match policy {
        Some(policy) => ssrf::resolve_allowed(policy, &host, port).await,
        None => tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map(Iterator::collect),
    }
    .map_err(|e| match ssrf::find_blocked(&e) {
        Some(blocked) => Failure::new(ErrorKind::BlockedAddress, blocked.to_string()),
        None => Failure::new(ErrorKind::Dns, format!("{host}: {e}")),
    })?;
    let tls = match uri.scheme {
        AMQPScheme::AMQP => None,
        AMQPScheme::AMQPS => Some((tls.connector()?, host.trim_matches(['[', ']']).to_string())),
    };
    let runtime = lapin::runtime::default_runtime().map_err(|e| classify(&e))?;
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
    let opening = Connection::connector(
        uri,
        runtime,
        async move |_uri: AMQPUri, runtime| {
            let tcp = tokio::time::timeout(
                CONNECT_TIMEOUT,
                AsyncTcpStream::connect(&runtime, addrs.clone()),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
            match &tls {
                None => Ok(tcp),
                Some((connector, server_name)) => Ok(tcp
                    .into_rustls(connector, server_name)
                    .await
                    .map_err(|e| std::io::Error::other(TlsHandshake(e)))?),
            }
        },
        properties,
    );
    // A server that accepts the socket but never speaks AMQP must not hold a caller forever.
    match tokio::time::timeout(CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT, opening).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let f = classify(&e);
            Err(Failure::new(
                f.kind,
                format!("{}: {}", redact(url), f.message),
            ))
        }
        Err(_) => Err(Failure::new(
            ErrorKind::Timeout,
            format!(
                "{}: no AMQP handshake within {:?}",
                redact(url),
                CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_unused_for_a_while_are_let_go_unless_in_use() {
        let mut brokers: HashMap<String, Arc<Broker>> = HashMap::new();
        brokers.insert("amqp://idle".into(), Arc::default());
        brokers.insert("amqp://busy".into(), Arc::default());
        let in_use = brokers["amqp://busy"].clone();
        let start = Instant::now();

        evict_idle(&mut brokers, start + IDLE_BROKER / 2);
        assert_eq!(brokers.len(), 2, "recently used: kept");
        evict_idle(&mut brokers, start + IDLE_BROKER * 2);
        assert!(!brokers.contains_key("amqp://idle"));
        assert!(brokers.contains_key("amqp://busy"), "a publish holds it");
        drop(in_use);
    }
}
