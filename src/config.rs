//! Configuration: defaults → `herald.toml` → `HERALD_*` environment variables, validated at
//! start with messages that name the setting.
//!
//! Every setting has the same name in the file (`listen = "…"`) and, upper-cased with the
//! `HERALD_` prefix, in the environment (`HERALD_LISTEN`). `herald.toml.example` at the
//! repository root lists them all with comments.

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::retry::{DEFAULT_DELAYS_SECS, RetrySchedule};
use crate::domain::validate::{self, Limits};
use crate::outbound::ssrf::{Cidr, Policy};
use crate::store::seal::{Keyring, load_or_create_key_file};
use crate::telemetry::otel::OtelSettings;
use crate::worker::WorkerConfig;

/// Why a Postgres store needs a configured key, and how to make one.
const MISSING_KEY: &str = "must be set with a Postgres store (HERALD_ENCRYPTION_KEY, or \
    HERALD_ENCRYPTION_KEY_FILE naming a file that holds it): every node sharing the database \
    needs the same key, and a key generated inside one node would be lost with it. Make one \
    with `herald generate-key`, and give the same key to every node";

/// The worker's rule, checked here against the configured lease and timeout.
use crate::worker::LEASE_HEADROOM_MS;

/// Every setting. Each field's doc comment is its entry in `docs/configuration.md`, which
/// [`reference`] generates (and a test keeps in step), so write them for operators.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Base URL used in callback URLs, reply URLs and portal links, as senders and browsers
    /// reach Herald (behind a proxy: the proxy's address). Unset: `http://{listen}`.
    pub public_url: Option<String>,
    /// `sqlite://path` or `postgres://user@host:port/db`. Unset: the SQLite file
    /// `{data_dir}/herald.db`. The ecosystem's `DATABASE_URL` is read too;
    /// `HERALD_DATABASE_URL` wins over it.
    pub database_url: Option<String>,
    /// Where the embedded SQLite store (and its generated encryption key) lives.
    pub data_dir: PathBuf,
    /// The platform's admin bearer token. When unset, one is generated on first start, printed
    /// once, and stored hashed.
    pub admin_token: Option<String>,
    /// The key that seals credentials at rest (signing secrets, destination headers, inbound
    /// verification secrets): 32 bytes in base64 (`herald generate-key` makes one). Required
    /// with a Postgres store, where every node needs the same key. With the embedded SQLite
    /// store it may be left unset: a key is then generated on first start into
    /// `{data_dir}/encryption.key` (mode 0600), beside the database it protects.
    pub encryption_key: Option<String>,
    /// A file holding `encryption_key` (e.g. a Docker or Kubernetes secret), instead of the
    /// key itself. Set one of the two, not both.
    pub encryption_key_file: Option<PathBuf>,
    /// Previous keys, still used to open values sealed before a rotation (values are
    /// re-sealed with `encryption_key` at start; then these can be removed). SECURITY.md has
    /// the rotation procedure. In the environment, a list: `HERALD_ENCRYPTION_OLD_KEYS=[k1,k2]`.
    pub encryption_old_keys: Vec<String>,
    /// Let destinations resolve to loopback/private addresses (development and tests only).
    pub allow_private_destinations: bool,
    /// CIDRs destinations may resolve to despite being private, e.g. `["10.1.0.0/16"]`.
    pub allowed_cidrs: Vec<String>,
    /// Refuse plain-http webhook URLs and plain `amqp://` brokers.
    pub https_only: bool,
    /// Seconds before each retry, comma-separated; its length + 1 is the number of attempts.
    /// Empty: a single attempt, no retries.
    #[serde(deserialize_with = "string_or_number")]
    pub retry_schedule: String,
    /// Each retry delay is scaled by a random factor in `1 ± retry_jitter`.
    pub retry_jitter: f64,
    /// Default request timeout for webhook deliveries, in milliseconds (a destination may set
    /// its own, up to 60 s).
    pub request_timeout_ms: u64,
    /// Serve the REST API in this process (`false` for worker-only nodes, which still answer
    /// `/healthz`, `/readyz` and `/metrics`). `herald serve --role` sets this and `worker`.
    pub api: bool,
    /// Run the delivery worker in this process (`false` for API-only nodes).
    pub worker: bool,
    /// Disable a destination after this many consecutive failed attempts (0 = never).
    pub auto_disable_after_failures: u32,
    /// Disable a destination after this many hours of nothing but failures (0 = never).
    pub auto_disable_after_hours: u64,
    /// Where operator events go (`destination.disabled`, `delivery.exhausted`), signed like
    /// any delivery. Unset: no operator events.
    pub operator_webhook_url: Option<String>,
    /// The operator webhook's `whsec_` signing secret; generated and printed once when unset.
    pub operator_webhook_secret: Option<String>,
    /// Most deliveries this node sends at once.
    pub worker_concurrency: usize,
    /// Most due deliveries claimed in one database round trip.
    pub worker_batch_size: u32,
    /// How long a claimed delivery belongs to this node. A node that dies mid-send loses
    /// nothing: another takes the delivery over when the lease runs out. Must exceed
    /// `request_timeout_ms` by a second.
    pub lease_secs: u64,
    /// How often an idle worker looks for due work when no notification woke it (new events
    /// wake it at once; this catches retries coming due).
    pub poll_interval_ms: u64,
    /// On SIGTERM, how long sends in flight may take to finish before they are put back in
    /// the queue.
    pub shutdown_grace_secs: u64,
    /// Events, deliveries and attempts older than this many days are deleted.
    pub retention_days: u64,
    /// Largest request body the API accepts, in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers (cuts off slowloris clients).
    pub header_read_timeout_secs: u64,
    /// How long a client may take, after its headers, to send its request body.
    pub body_read_timeout_secs: u64,
    /// Most request headers a client may send (more: 431).
    pub max_request_headers: usize,
    /// Largest total size of a request's headers, in bytes (at least 8192; more: 431).
    pub max_request_header_bytes: usize,
    /// Events in one batch publish.
    pub max_batch_size: usize,
    /// Refuse events whose topic the event-type catalog does not list (422
    /// `unknown_event_type`), and destination topics that name no type. Off: such topics are
    /// published unchecked. `herald.test` is always accepted.
    pub refuse_unknown_topics: bool,
    /// Largest `data` plus `metadata` of one event, serialized, in bytes.
    pub max_event_bytes: usize,
    /// Most topic patterns per destination.
    pub max_topics_per_destination: usize,
    /// Most custom headers per destination.
    pub max_destination_headers: usize,
    /// Longest webhook URL, in bytes.
    pub max_url_length: usize,
    /// Longest destination description, in bytes.
    pub max_description_length: usize,
    /// Longest custom header value of a destination, in bytes.
    pub max_header_value_length: usize,
    /// Longest idempotency key (`Idempotency-Key` or the event's `id`), in bytes.
    pub max_idempotency_key_length: usize,
    /// Destinations per tenant (0: no limit).
    pub max_destinations_per_tenant: u32,
    /// Most nesting levels of a destination's payload filter (at most 64).
    pub max_filter_depth: usize,
    /// Most conditions in a destination's payload filter.
    pub max_filter_conditions: usize,
    /// Largest body captured at `/in/{slug}`, in bytes; above it the sender gets 413.
    pub inbound_max_body_bytes: usize,
    /// Requests per second one callback endpoint accepts, per process (0: unlimited); more
    /// get 429 with `Retry-After`.
    pub inbound_rate_limit_per_s: u32,
    /// How many requests one callback endpoint accepts at once after a quiet period.
    pub inbound_rate_limit_burst: u32,
    /// How long a wait lasts when the caller gives no `timeout_ms`, in milliseconds.
    pub wait_default_timeout_ms: u64,
    /// The longest wait, whatever the caller asks for, in milliseconds (an MCP client that
    /// asks for progress notifications may wait up to 15 minutes).
    pub wait_max_timeout_ms: u64,
    /// How often an MCP `wait_for_callback` sends a progress notification, in milliseconds.
    pub wait_progress_interval_ms: u64,
    /// `pretty` (coloured only on a terminal, and never with `NO_COLOR` set) or `json` (one
    /// object per line). Logs go to stderr; `RUST_LOG` sets the levels.
    pub log_format: String,
    /// How long a tenant portal sign-in link stays valid, in seconds (it also works only
    /// once).
    pub portal_link_ttl_secs: u64,
    /// How long a portal session lasts after signing in, in seconds.
    pub portal_session_ttl_secs: u64,
    /// The platform's page the portal sends people back to (e.g. from an expired link).
    pub portal_return_url: Option<String>,
    /// RabbitMQ for publish-from-queue (`amqp://user:password@host:port/vhost`). Unset: off.
    pub amqp_url: Option<String>,
    /// The queue Herald consumes publish requests from (the `POST /v1/events` body per
    /// message). Needs `amqp_url`; declared durable if missing.
    pub amqp_publish_queue: Option<String>,
    /// Where invalid publish requests go, with the reason in the `x-herald-error` header.
    /// Unset: they are rejected without requeue (the queue's own dead-letter exchange, if
    /// it has one, receives them).
    pub amqp_dead_letter_queue: Option<String>,
    /// Most publish requests handed to this node at once and not yet acknowledged.
    pub amqp_prefetch: u16,
    /// Names this node's broker connections (`{name} publisher`, `{name} consumer`), as the
    /// broker shows them.
    pub amqp_connection_name: String,
    /// A PEM file of CA certificates `amqps://` brokers' certificates may chain to, besides
    /// the system's roots (a private CA). Unset: the system's roots only.
    pub amqp_tls_ca_file: Option<String>,
    /// OpenTelemetry trace export (docs/tracing.md). Not a Herald setting: [`Config::load`]
    /// reads it from the standard `OTEL_*` variables, and an embedder or a test sets it here.
    #[serde(skip)]
    #[schemars(skip)]
    pub otel: Option<OtelSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            database_url: None,
            data_dir: PathBuf::from("./herald-data"),
            admin_token: None,
            encryption_key: None,
            encryption_key_file: None,
            encryption_old_keys: vec![],
            allow_private_destinations: false,
            allowed_cidrs: vec![],
            https_only: false,
            retry_schedule: DEFAULT_DELAYS_SECS.map(|s| s.to_string()).join(","),
            retry_jitter: crate::domain::retry::DEFAULT_JITTER,
            request_timeout_ms: 15_000,
            api: true,
            worker: true,
            auto_disable_after_failures: 0,
            // Five days, like Svix.
            auto_disable_after_hours: 120,
            operator_webhook_url: None,
            operator_webhook_secret: None,
            worker_concurrency: 256,
            worker_batch_size: 64,
            lease_secs: 90,
            poll_interval_ms: 1000,
            shutdown_grace_secs: 30,
            retention_days: 30,
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_request_headers: 100,
            max_request_header_bytes: 64 * 1024,
            max_batch_size: validate::MAX_BATCH,
            refuse_unknown_topics: false,
            max_event_bytes: validate::MAX_EVENT_BYTES,
            max_topics_per_destination: validate::MAX_TOPICS,
            max_destination_headers: validate::MAX_HEADERS,
            max_url_length: validate::MAX_URL,
            max_description_length: validate::MAX_DESCRIPTION,
            max_header_value_length: validate::MAX_HEADER_VALUE,
            max_idempotency_key_length: validate::MAX_IDEMPOTENCY_KEY,
            max_destinations_per_tenant: validate::MAX_DESTINATIONS_PER_TENANT,
            max_filter_depth: crate::domain::filter::MAX_DEPTH,
            max_filter_conditions: crate::domain::filter::MAX_CONDITIONS,
            inbound_max_body_bytes: 1024 * 1024,
            inbound_rate_limit_per_s: 50,
            inbound_rate_limit_burst: 100,
            wait_default_timeout_ms: 30_000,
            wait_max_timeout_ms: 55_000,
            wait_progress_interval_ms: 10_000,
            log_format: "pretty".into(),
            portal_link_ttl_secs: 15 * 60,
            portal_session_ttl_secs: 8 * 3600,
            portal_return_url: None,
            amqp_url: None,
            amqp_publish_queue: None,
            amqp_dead_letter_queue: None,
            amqp_prefetch: 64,
            amqp_connection_name: "herald".into(),
            amqp_tls_ca_file: None,
            otel: None,
        }
    }
}

/// `HERALD_RETRY_SCHEDULE=5` arrives as a number, `5,300` as a string: accept both.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        N(u64),
        L(Vec<u64>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::N(n) => n.to_string(),
        Raw::L(l) => l.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: `{setting}` {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
    /// A standard `OTEL_*` variable that cannot be used (the message names it).
    #[error("configuration: {0}")]
    Otel(String),
}

impl Config {
    /// Loads defaults, then `path` (if it exists), then the environment.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let path = path
            .map(PathBuf::from)
            .unwrap_or_else(|| "herald.toml".into());
        fig = fig.merge(Toml::file(path));
        // DATABASE_URL is the ecosystem's convention; HERALD_DATABASE_URL wins over it.
        if let Ok(url) = std::env::var("DATABASE_URL") {
            fig = fig.merge(Serialized::default("database_url", url));
        }
        // Only HERALD_* variables that name a setting: others (HERALD_TOKEN for the MCP client,
        // test settings) are not configuration errors.
        let keys: Vec<String> = serde_json::to_value(Config::default())
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        fig = fig.merge(Env::prefixed("HERALD_").only(&keys));
        let mut config: Config = fig.extract().map_err(Box::new)?;
        config.otel = OtelSettings::from_env().map_err(ConfigError::Otel)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, message: String| Err(ConfigError::Invalid { setting, message });
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "listen",
                format!(
                    "must be an address like 127.0.0.1:8080, not `{}`",
                    self.listen
                ),
            );
        }
        if let Some(u) = &self.public_url
            && url::Url::parse(u).is_err()
        {
            return invalid("public_url", format!("is not a URL: `{u}`"));
        }
        if let Err(e) = self.retry_schedule() {
            return invalid("retry_schedule", e);
        }
        if !(0.0..1.0).contains(&self.retry_jitter) {
            return invalid("retry_jitter", "must be in [0, 1)".into());
        }
        if let Some(k) = &self.encryption_key
            && let Err(e) = crate::store::seal::decode_key(k)
        {
            return invalid("encryption_key", e.to_string());
        }
        if self.encryption_key.is_some() && self.encryption_key_file.is_some() {
            return invalid(
                "encryption_key_file",
                "and `encryption_key` are both set: set one of them".into(),
            );
        }
        for k in &self.encryption_old_keys {
            if let Err(e) = crate::store::seal::decode_key(k) {
                return invalid("encryption_old_keys", e.to_string());
            }
        }
        for c in &self.allowed_cidrs {
            if c.parse::<Cidr>().is_err() {
                return invalid("allowed_cidrs", format!("`{c}` is not a CIDR"));
            }
        }
        if !self.api && !self.worker {
            return invalid(
                "api",
                "and `worker` cannot both be false: the node would do nothing".into(),
            );
        }
        if self.worker_concurrency == 0 || self.worker_batch_size == 0 {
            return invalid(
                "worker_concurrency",
                "and worker_batch_size must be at least 1".into(),
            );
        }
        // A send must end, and its outcome be recorded, while its lease holds, or a second
        // worker could take the delivery over mid-send. The lease leaves a second of headroom
        // over the default timeout, and the executor caps destinations' own timeouts
        // (up to 60 s) the same way, so short leases (fast crash recovery) stay safe.
        if self.lease_secs * 1000 < self.request_timeout_ms + LEASE_HEADROOM_MS {
            return invalid(
                "lease_secs",
                "must be at least a second longer than request_timeout_ms".into(),
            );
        }
        if self.header_read_timeout_secs == 0 {
            return invalid("header_read_timeout_secs", "must be at least 1".into());
        }
        if self.body_read_timeout_secs == 0 {
            return invalid("body_read_timeout_secs", "must be at least 1".into());
        }
        if self.max_request_headers == 0 || self.max_request_header_bytes < 8192 {
            return invalid(
                "max_request_headers",
                "must be at least 1, and max_request_header_bytes at least 8192".into(),
            );
        }
        for (setting, v) in [
            ("max_batch_size", self.max_batch_size),
            ("max_event_bytes", self.max_event_bytes),
            (
                "max_topics_per_destination",
                self.max_topics_per_destination,
            ),
            ("max_url_length", self.max_url_length),
            ("max_description_length", self.max_description_length),
            ("max_header_value_length", self.max_header_value_length),
            (
                "max_idempotency_key_length",
                self.max_idempotency_key_length,
            ),
        ] {
            if v == 0 {
                return invalid(setting, "must be at least 1".into());
            }
        }
        if self.max_filter_depth > 64 {
            return invalid(
                "max_filter_depth",
                "must be at most 64: filters are evaluated recursively".into(),
            );
        }
        if self.retention_days == 0 {
            return invalid("retention_days", "must be at least 1".into());
        }
        if self.inbound_max_body_bytes == 0 {
            return invalid("inbound_max_body_bytes", "must be at least 1".into());
        }
        if self.inbound_rate_limit_per_s > 0 && self.inbound_rate_limit_burst == 0 {
            return invalid(
                "inbound_rate_limit_burst",
                "must be at least 1 when a rate limit is set".into(),
            );
        }
        if self.wait_max_timeout_ms == 0 || self.wait_default_timeout_ms > self.wait_max_timeout_ms
        {
            return invalid(
                "wait_default_timeout_ms",
                "must not exceed wait_max_timeout_ms (which must be at least 1)".into(),
            );
        }
        if self.wait_progress_interval_ms < 100 {
            return invalid(
                "wait_progress_interval_ms",
                "must be at least 100 (milliseconds)".into(),
            );
        }
        if self.portal_link_ttl_secs == 0 || self.portal_session_ttl_secs == 0 {
            return invalid(
                "portal_link_ttl_secs",
                "and portal_session_ttl_secs must be at least 1".into(),
            );
        }
        if let Some(u) = &self.portal_return_url
            && !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return invalid(
                "portal_return_url",
                format!("must be an http(s) URL, not `{u}`"),
            );
        }
        if !matches!(self.log_format.as_str(), "pretty" | "json") {
            return invalid("log_format", "must be `pretty` or `json`".into());
        }
        self.validate_amqp()
    }

    fn validate_amqp(&self) -> Result<(), ConfigError> {
        let invalid = |setting, message: String| Err(ConfigError::Invalid { setting, message });
        if let Some(u) = &self.amqp_url
            && let Err(e) = crate::domain::amqp::AmqpUrl::parse("amqp_url", u)
        {
            return invalid("amqp_url", e.message);
        }
        for (setting, queue) in [
            ("amqp_publish_queue", &self.amqp_publish_queue),
            ("amqp_dead_letter_queue", &self.amqp_dead_letter_queue),
        ] {
            if let Some(q) = queue {
                if self.amqp_url.is_none() {
                    return invalid(setting, "needs `amqp_url`".into());
                }
                if q.is_empty() {
                    return invalid(setting, "must not be empty".into());
                }
                if let Err(e) = crate::domain::amqp::exchange(setting, q) {
                    return invalid(setting, e.message);
                }
            }
        }
        if self.amqp_prefetch == 0 {
            return invalid("amqp_prefetch", "must be at least 1".into());
        }
        Ok(())
    }

    /// How `amqps://` brokers' certificates are checked (`amqp_tls_ca_file`). Reads the file,
    /// so it is called once, at start; a missing file or one without a certificate is a
    /// configuration error naming the setting.
    pub fn amqp_tls(&self) -> Result<crate::outbound::amqp::AmqpTls, ConfigError> {
        match &self.amqp_tls_ca_file {
            None => Ok(crate::outbound::amqp::AmqpTls::default()),
            Some(path) => crate::outbound::amqp::AmqpTls::with_ca_file(std::path::Path::new(path))
                .map_err(|message| ConfigError::Invalid {
                    setting: "amqp_tls_ca_file",
                    message,
                }),
        }
    }

    pub fn retry_schedule(&self) -> Result<RetrySchedule, String> {
        RetrySchedule::parse_secs_list(&self.retry_schedule, self.retry_jitter)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("herald.db").display()))
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    pub fn inbound_settings(&self) -> crate::service::InboundSettings {
        crate::service::InboundSettings {
            public_url: self.public_url(),
            max_body_bytes: self.inbound_max_body_bytes,
            rate_limit_per_s: self.inbound_rate_limit_per_s,
            rate_limit_burst: self.inbound_rate_limit_burst,
            default_wait: Duration::from_millis(self.wait_default_timeout_ms),
            max_wait: Duration::from_millis(self.wait_max_timeout_ms),
            progress_every: Duration::from_millis(self.wait_progress_interval_ms),
        }
    }

    pub fn portal_settings(&self) -> crate::service::portal::PortalSettings {
        crate::service::portal::PortalSettings {
            link_ttl: Duration::from_secs(self.portal_link_ttl_secs),
            session_ttl: Duration::from_secs(self.portal_session_ttl_secs),
            return_url: self.portal_return_url.clone(),
        }
    }

    /// Where the embedded store's generated encryption key lives when no key is configured.
    pub fn generated_key_file(&self) -> PathBuf {
        self.data_dir.join("encryption.key")
    }

    /// Whether the store is Postgres (the production store several nodes share).
    pub fn uses_postgres(&self) -> bool {
        let url = self.database_url();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// The keys credentials are sealed with, plus `encryption_old_keys`. The current key is
    /// `encryption_key`, or the contents of `encryption_key_file`. With neither:
    ///
    /// - SQLite: the key generated into `{data_dir}/encryption.key` on first start. It lives
    ///   beside the database, so whoever backs one up backs up both.
    /// - Postgres: refused. A generated key would live on one node (or in one container) only,
    ///   and be lost with it: the next node, or the next container of an upgrade, would make
    ///   another and could open no secret. The exception is a deployment that already runs on
    ///   a generated key file: it keeps starting with it, with a warning that says how to move
    ///   the key into the setting.
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        let (current, setting) = match (&self.encryption_key, &self.encryption_key_file) {
            (Some(k), _) => (k.clone(), "encryption_key"),
            (None, Some(path)) => {
                let key = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    setting: "encryption_key_file",
                    message: format!("{}: {e}", path.display()),
                })?;
                (key.trim().to_string(), "encryption_key_file")
            }
            (None, None) => (self.generated_key()?, "encryption_key (generated file)"),
        };
        Keyring::parse(&current, &self.encryption_old_keys).map_err(|e| ConfigError::Invalid {
            setting,
            message: e.to_string(),
        })
    }

    /// The key of `{data_dir}/encryption.key`, made on first start where that is safe.
    fn generated_key(&self) -> Result<String, ConfigError> {
        let path = self.generated_key_file();
        if self.uses_postgres() {
            if !path.exists() {
                return Err(ConfigError::Invalid {
                    setting: "encryption_key",
                    message: MISSING_KEY.into(),
                });
            }
            tracing::warn!(
                file = %path.display(),
                "the Postgres store's encryption key comes from a file generated in data_dir; \
                 move it into the configuration so every node and every new container has it: \
                 set HERALD_ENCRYPTION_KEY to the file's contents, or HERALD_ENCRYPTION_KEY_FILE \
                 to a copy of it kept outside data_dir"
            );
        }
        load_or_create_key_file(&path).map_err(|e| ConfigError::Invalid {
            setting: "encryption_key",
            message: format!("is unset and {} cannot be used: {e}", path.display()),
        })
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_batch: self.max_batch_size,
            max_event_bytes: self.max_event_bytes,
            max_topics: self.max_topics_per_destination,
            max_headers: self.max_destination_headers,
            max_destinations_per_tenant: self.max_destinations_per_tenant,
            filter: crate::domain::filter::FilterLimits {
                max_depth: self.max_filter_depth,
                max_conditions: self.max_filter_conditions,
            },
            strings: crate::domain::validate::StringLimits {
                max_url: self.max_url_length,
                max_description: self.max_description_length,
                max_header_value: self.max_header_value_length,
                max_idempotency_key: self.max_idempotency_key_length,
            },
        }
    }

    pub fn server_limits(&self) -> crate::http::server::ServerLimits {
        crate::http::server::ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            max_headers: self.max_request_headers,
            max_header_bytes: self.max_request_header_bytes,
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
        }
    }

    pub fn ssrf_policy(&self) -> Policy {
        Policy {
            allow_private: self.allow_private_destinations,
            https_only: self.https_only,
            allow_cidrs: self
                .allowed_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
        }
    }

    /// The publish-from-queue consumer's settings, when `amqp_url` and `amqp_publish_queue`
    /// are both set.
    pub fn queue_settings(
        &self,
        tls: std::sync::Arc<crate::outbound::amqp::AmqpTls>,
    ) -> Option<crate::queue::QueueSettings> {
        Some(crate::queue::QueueSettings {
            url: self.amqp_url.clone()?,
            queue: self.amqp_publish_queue.clone()?,
            dead_letter_queue: self.amqp_dead_letter_queue.clone(),
            prefetch: self.amqp_prefetch,
            connection_name: format!("{} consumer", self.amqp_connection_name),
            max_body_bytes: self.max_body_bytes,
            tls,
        })
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.worker_concurrency,
            batch_size: self.worker_batch_size,
            lease: Duration::from_secs(self.lease_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            retention: Duration::from_secs(self.retention_days * 24 * 3600),
            ..WorkerConfig::default()
        }
    }
}

/// One setting as the configuration reference lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The name in `herald.toml`.
    pub name: String,
    /// The environment variable, `HERALD_` + the name upper-cased.
    pub env: String,
    /// The default as TOML would write it, or `None` when unset by default.
    pub default: Option<String>,
    /// The field's doc comment.
    pub description: String,
}

/// Every setting, in declaration order, from the `Config` type itself: names and defaults
/// from serde, descriptions from the doc comments (through the derived JSON schema).
pub fn reference() -> Vec<Setting> {
    let schema = schemars::schema_for!(Config);
    let properties = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let toml = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(format!("{s:?}")),
        other => Some(other.to_string()),
    };
    properties
        .iter()
        .map(|(name, p)| Setting {
            name: name.clone(),
            env: format!("HERALD_{}", name.to_uppercase()),
            default: toml(&defaults[name]),
            description: p
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_string(),
        })
        .collect()
}

/// `docs/configuration.md`, generated from [`reference`].
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from src/config.rs: edit the doc comments there, then run\n     \
         HERALD_UPDATE_DOCS=1 cargo test --lib config::tests::the_configuration_reference -->\n\n\
         Herald reads its settings from, in increasing priority: the defaults below; the TOML \
         file `herald.toml` in the working directory (or the one `--config` names); and \
         environment variables, `HERALD_` followed by the setting's name in capitals. \
         [`herald.toml.example`](../herald.toml.example) is a commented starting point. \
         Settings are checked at start, and a bad one stops Herald with a message that names \
         it.\n\n\
         Durations carry their unit in the name (`_ms`, `_secs`, `_hours`, `_days`); sizes \
         are in bytes. Lists are TOML arrays in the file and `[a,b]` in the environment. \
         Settings are listed in the order the code declares them, related ones together.\n",
    );
    for s in reference() {
        out.push_str(&format!("\n## `{}`\n\n", s.name));
        out.push_str(&format!("- Environment: `{}`\n", s.env));
        match &s.default {
            Some(d) => out.push_str(&format!("- Default: `{d}`\n")),
            None => out.push_str("- Default: unset\n"),
        }
        out.push('\n');
        out.push_str(s.description.trim());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/herald.toml.example");

    /// `docs/configuration.md` is what the code says; `HERALD_UPDATE_DOCS=1` rewrites it.
    #[test]
    fn the_configuration_reference_is_generated_from_the_code() {
        let generated = reference_markdown();
        if std::env::var_os("HERALD_UPDATE_DOCS").is_some() {
            std::fs::write(REFERENCE, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(REFERENCE).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/configuration.md is out of date: run \
             HERALD_UPDATE_DOCS=1 cargo test --lib config::tests::the_configuration_reference"
        );
    }

    #[test]
    // `figment::Jail`'s closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn every_setting_is_described_and_read_from_its_environment_variable() {
        let settings = reference();
        assert!(settings.len() > 50, "{}", settings.len());
        for s in &settings {
            assert!(
                s.description.len() > 10,
                "`{}` needs a doc comment: it is its entry in the reference",
                s.name
            );
        }
        // The environment variable named in the reference really sets the setting.
        figment::Jail::expect_with(|jail| {
            jail.set_env("HERALD_MAX_BATCH_SIZE", "7");
            jail.set_env("HERALD_PORTAL_RETURN_URL", "https://example.com/back");
            let c = Config::load(Some(std::path::Path::new("/nonexistent/herald.toml")))
                .map_err(|e| e.to_string())?;
            assert_eq!(c.max_batch_size, 7);
            assert_eq!(
                c.portal_return_url.as_deref(),
                Some("https://example.com/back")
            );
            Ok(())
        });
    }

    /// `herald.toml.example` names every setting (set or commented out) and no other.
    #[test]
    fn the_example_file_lists_every_setting_and_nothing_else() {
        let example = std::fs::read_to_string(EXAMPLE).unwrap();
        let named: std::collections::BTreeSet<String> = example
            .lines()
            .filter_map(|l| {
                let l = l.trim_start_matches('#').trim();
                let (key, _) = l.split_once('=')?;
                let key = key.trim();
                (!key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                    .then(|| key.to_string())
            })
            .collect();
        let settings: std::collections::BTreeSet<String> =
            reference().into_iter().map(|s| s.name).collect();
        let missing: Vec<_> = settings.difference(&named).collect();
        let unknown: Vec<_> = named.difference(&settings).collect();
        assert!(missing.is_empty(), "herald.toml.example lacks {missing:?}");
        assert!(
            unknown.is_empty(),
            "herald.toml.example names unknown {unknown:?}"
        );
    }

    fn with_ca_file(path: &str) -> Result<crate::outbound::amqp::AmqpTls, ConfigError> {
        Config {
            amqp_tls_ca_file: Some(path.into()),
            ..Config::default()
        }
        .amqp_tls()
    }

    #[test]
    fn the_amqp_ca_file_must_exist_and_hold_certificates() {
        let setting = |r: Result<_, ConfigError>| match r {
            Err(ConfigError::Invalid { setting, message }) => (setting, message),
            other => panic!("expected an invalid setting, got {other:?}"),
        };
        let (s, m) = setting(with_ca_file("/nonexistent/ca.pem"));
        assert_eq!(s, "amqp_tls_ca_file");
        assert!(m.contains("/nonexistent/ca.pem"), "{m}");
        let empty = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/README.md");
        let (s, m) = setting(with_ca_file(empty));
        assert_eq!(s, "amqp_tls_ca_file");
        assert!(m.contains("no certificate"), "{m}");
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
        with_ca_file(ca).unwrap();
    }
}
