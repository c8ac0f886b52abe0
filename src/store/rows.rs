//! Row types shared by both stores. Both schemas use the same column names and portable types
//! (TEXT, BIGINT milliseconds, INTEGER, BOOLEAN), so one `FromRow` per table serves both.

use serde_json::value::RawValue;

use super::seal::{self, Keyring};
use super::sql::Sql;
use super::{Claimed, StoreError, TokenRecord};
use crate::domain::allowance::Limits;
use crate::domain::amqp::{AmqpTarget, AmqpUrl, DEFAULT_ROUTING_KEY};
use crate::domain::callback::A2aInfo;
use crate::domain::callback::{
    Callback, CallbackEndpoint, CallbackStatus, StoredVerification, Verification,
};
use crate::domain::catalog::EventType;
use crate::domain::model::{
    Attempt, Delivery, Destination, DestinationKind, DestinationOptions, Event, Tenant,
};
use crate::domain::state::{DeliveryStatus, ErrorKind, Trigger};

fn json<T: serde::de::DeserializeOwned>(col: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

/// `v` as JSON, sealed for `column` of row `id` (see [`seal`]).
pub(crate) fn sealed_json<T: serde::Serialize>(
    keys: &Keyring,
    column: seal::Column,
    id: &str,
    v: &T,
) -> String {
    keys.seal(column, id, &to_json(v))
}

/// An endpoint's verification scheme in its stored, versioned form, sealed.
pub(crate) fn sealed_verification(keys: &Keyring, id: &str, v: &Verification) -> String {
    sealed_json(
        keys,
        seal::ENDPOINT_VERIFICATION,
        id,
        &StoredVerification::current(v),
    )
}

/// A concurrent publish with the same idempotency key won the race: say so, so the caller can
/// retry and get the original event.
pub(crate) fn idempotency_conflict(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Conflict(
            "an event with this idempotency key was published concurrently".into(),
        ),
        _ => StoreError::Database(e),
    }
}

/// The limit columns (`max_in_flight, rate_limit, fifo`, migration 0005) of a destination's
/// options: what a claim reads, decided by the domain's [`Limits::of`].
pub(crate) fn limits(o: &DestinationOptions) -> (Option<i32>, Option<i32>, bool) {
    let l = Limits::of(o);
    (
        l.max_in_flight.map(|n| n as i32),
        l.rate_limit.map(|n| n as i32),
        l.fifo,
    )
}

pub(crate) fn raw(col: &str, s: String) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    pub id: String,
    pub tenant_id: Option<String>,
}

impl From<TokenRow> for TokenRecord {
    fn from(r: TokenRow) -> Self {
        TokenRecord {
            id: r.id,
            tenant_id: r.tenant_id,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    pub id: String,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: r.id,
            metadata: json("metadata", &r.metadata)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DestinationRow {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub url: Option<String>,
    pub description: Option<String>,
    pub topics: String,
    pub filter: Option<String>,
    pub headers: String,
    pub options: String,
    pub secrets: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub amqp_url: Option<String>,
    pub amqp_exchange: Option<String>,
    pub amqp_routing_key: Option<String>,
}

/// The AMQP columns of a destination (migration 0007), as written. This is the only place the
/// broker URL, credentials included, goes into the database: sealed at rest, like the
/// signing secrets (opened again only in [`open_amqp`]).
pub(crate) fn amqp_columns<'d>(
    d: &'d Destination,
    keys: &Keyring,
) -> (Option<String>, Option<&'d str>, Option<&'d str>) {
    match &d.amqp {
        None => (None, None, None),
        Some(t) => (
            Some(keys.seal(seal::DESTINATION_AMQP_URL, &d.id, t.url.expose())),
            Some(t.exchange.as_str()),
            Some(t.routing_key.as_str()),
        ),
    }
}

/// The AMQP columns read back: the only place a stored broker URL comes out of the database.
fn open_amqp(
    keys: &Keyring,
    id: &str,
    kind: DestinationKind,
    url: Option<String>,
    exchange: Option<String>,
    routing_key: Option<String>,
) -> Result<Option<AmqpTarget>, StoreError> {
    match (kind, url) {
        (DestinationKind::Webhook, _) => Ok(None),
        (DestinationKind::Rabbitmq, None) => Err(StoreError::Corrupt(
            "amqp_url: missing for a rabbitmq destination".into(),
        )),
        (DestinationKind::Rabbitmq, Some(stored)) => Ok(Some(AmqpTarget {
            url: AmqpUrl::from_stored(keys.open(seal::DESTINATION_AMQP_URL, id, &stored)?),
            exchange: exchange.unwrap_or_default(),
            routing_key: routing_key.unwrap_or_else(|| DEFAULT_ROUTING_KEY.into()),
        })),
    }
}

impl DestinationRow {
    /// The destination, its signing secrets opened with `keys`.
    pub fn open(self, keys: &Keyring) -> Result<Destination, StoreError> {
        let r = self;
        let secrets = keys.open(seal::DESTINATION_SECRETS, &r.id, &r.secrets)?;
        let headers = keys.open(seal::DESTINATION_HEADERS, &r.id, &r.headers)?;
        let kind = DestinationKind::parse(&r.kind)
            .ok_or_else(|| StoreError::Corrupt(format!("kind: {}", r.kind)))?;
        Ok(Destination {
            kind,
            amqp: open_amqp(
                keys,
                &r.id,
                kind,
                r.amqp_url,
                r.amqp_exchange,
                r.amqp_routing_key,
            )?,
            id: r.id,
            tenant_id: r.tenant_id,
            url: r.url,
            description: r.description,
            topics: json("topics", &r.topics)?,
            filter: r.filter.as_deref().map(|f| json("filter", f)).transpose()?,
            headers: json("headers", &headers)?,
            options: json::<DestinationOptions>("options", &r.options)?,
            secrets: json("secrets", &secrets)?,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            disabled_at: r.disabled_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub id: String,
    pub tenant_id: String,
    pub topic: String,
    pub data: String,
    pub metadata: String,
    pub idempotency_key: Option<String>,
    pub schema_version: Option<i64>,
    pub created_at: i64,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(Event {
            id: r.id,
            tenant_id: r.tenant_id,
            topic: r.topic,
            data: raw("data", r.data)?,
            metadata: json("metadata", &r.metadata)?,
            idempotency_key: r.idempotency_key,
            schema_version: r.schema_version,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventTypeRow {
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<String>,
    pub examples: String,
    pub deprecated: bool,
    pub archived: bool,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<EventTypeRow> for EventType {
    type Error = StoreError;
    fn try_from(r: EventTypeRow) -> Result<Self, StoreError> {
        Ok(EventType {
            name: r.name,
            description: r.description,
            schema: r.schema.as_deref().map(|s| json("schema", s)).transpose()?,
            examples: json("examples", &r.examples)?,
            deprecated: r.deprecated,
            archived: r.archived,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub destination_id: String,
    pub topic: String,
    pub status: String,
    pub attempt_count: i32,
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finalized_at: Option<i64>,
}

pub(crate) fn status(s: &str) -> Result<DeliveryStatus, StoreError> {
    DeliveryStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("status: {s}")))
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;
    fn try_from(r: DeliveryRow) -> Result<Self, StoreError> {
        let status = status(&r.status)?;
        Ok(Delivery {
            id: r.id,
            tenant_id: r.tenant_id,
            event_id: r.event_id,
            destination_id: r.destination_id,
            topic: r.topic,
            status,
            attempt_count: r.attempt_count as u32,
            next_attempt_at: if status.is_terminal() {
                None
            } else {
                r.next_attempt_at
            },
            last_status_code: r.last_status_code.map(|c| c as u16),
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finalized_at: r.finalized_at,
            attempts: None,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub id: String,
    pub delivery_id: String,
    pub attempt: i32,
    pub trigger: String,
    pub started_at: i64,
    pub duration_ms: i64,
    pub url: Option<String>,
    pub status_code: Option<i32>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub request_headers: String,
    pub response_headers: String,
    pub response_body: Option<String>,
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = StoreError;
    fn try_from(r: AttemptRow) -> Result<Self, StoreError> {
        Ok(Attempt {
            id: r.id,
            delivery_id: r.delivery_id,
            attempt: r.attempt as u32,
            trigger: Trigger::parse(&r.trigger),
            started_at: r.started_at,
            duration_ms: r.duration_ms.max(0) as u64,
            url: r.url,
            status_code: r.status_code.map(|c| c as u16),
            error_kind: r
                .error_kind
                .as_deref()
                .map(|k| json::<ErrorKind>("error_kind", &format!("\"{k}\"")))
                .transpose()?,
            error: r.error,
            request_headers: json("request_headers", &r.request_headers)?,
            response_headers: json("response_headers", &r.response_headers)?,
            response_body: r.response_body,
        })
    }
}

/// A claimed delivery joined with its event and destination (`LEFT JOIN`: the destination may
/// have been deleted since).
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    pub delivery_id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub destination_id: String,
    pub topic: String,
    pub attempt_count: i32,
    pub manual: bool,
    pub data: String,
    pub event_created_at: i64,
    pub reply_slug: Option<String>,
    pub traceparent: Option<String>,
    #[sqlx(flatten)]
    pub destination: OptDestinationRow,
}

/// The destination columns of a claim, prefixed `d_` and nullable because of the outer join.
#[derive(sqlx::FromRow)]
pub(crate) struct OptDestinationRow {
    pub d_id: Option<String>,
    pub d_kind: Option<String>,
    pub d_url: Option<String>,
    pub d_description: Option<String>,
    pub d_topics: Option<String>,
    pub d_filter: Option<String>,
    pub d_headers: Option<String>,
    pub d_options: Option<String>,
    pub d_secrets: Option<String>,
    pub d_enabled: Option<bool>,
    pub d_disabled_reason: Option<String>,
    pub d_disabled_at: Option<i64>,
    pub d_created_at: Option<i64>,
    pub d_updated_at: Option<i64>,
    pub d_amqp_url: Option<String>,
    pub d_amqp_exchange: Option<String>,
    pub d_amqp_routing_key: Option<String>,
}

/// The column list a claim selects from `destinations d` to fill [`OptDestinationRow`].
pub(crate) const CLAIM_DESTINATION: &str = "d.id AS d_id, d.kind AS d_kind, d.url AS d_url, \
    d.description AS d_description, d.topics AS d_topics, d.filter AS d_filter, \
    d.headers AS d_headers, d.options AS d_options, d.secrets AS d_secrets, \
    d.enabled AS d_enabled, d.disabled_reason AS d_disabled_reason, \
    d.disabled_at AS d_disabled_at, d.created_at AS d_created_at, d.updated_at AS d_updated_at, \
    d.amqp_url AS d_amqp_url, d.amqp_exchange AS d_amqp_exchange, \
    d.amqp_routing_key AS d_amqp_routing_key";

/// What a claim loads of the deliveries it marked, for [`ClaimRow`]: each dialect adds the
/// `WHERE` naming them in its own way.
pub(crate) static CLAIMED: Sql = Sql::new(|| {
    format!(
        "SELECT x.id AS delivery_id, x.tenant_id, x.event_id, x.destination_id, x.topic, \
         x.attempt_count, x.manual, e.data, e.created_at AS event_created_at, \
         r.slug AS reply_slug, e.traceparent, {CLAIM_DESTINATION} \
         FROM deliveries x JOIN events e ON e.id = x.event_id \
         LEFT JOIN destinations d ON d.id = x.destination_id \
         LEFT JOIN callback_endpoints r ON r.event_id = x.event_id"
    )
});

/// Opens a claim's rows. Deliveries of one destination share one opened [`Destination`]:
/// opening decrypts its secrets and headers and parses five JSON columns, which per row was
/// about 5 % of Herald's CPU at a few thousand sends a second. Rows of one destination are
/// the same row version when their `updated_at` agrees.
pub(crate) fn open_claims(rows: Vec<ClaimRow>, keys: &Keyring) -> Result<Vec<Claimed>, StoreError> {
    let mut opened: Vec<((String, i64), std::sync::Arc<Destination>)> = Vec::new();
    rows.into_iter()
        .map(|r| {
            let key = r
                .destination
                .d_id
                .clone()
                .map(|id| (id, r.destination.d_updated_at.unwrap_or_default()));
            let shared = key
                .as_ref()
                .and_then(|k| opened.iter().find(|(o, _)| o == k).map(|(_, d)| d.clone()));
            let c = r.open(keys, shared)?;
            if let (Some(k), Some(d)) = (key, &c.destination)
                && !opened.iter().any(|(o, _)| *o == k)
            {
                opened.push((k, d.clone()));
            }
            Ok(c)
        })
        .collect()
}

impl ClaimRow {
    /// The claimed delivery, its destination's secrets opened with `keys` (or `shared`, the
    /// same destination already opened for another row of the claim).
    fn open(
        self,
        keys: &Keyring,
        shared: Option<std::sync::Arc<Destination>>,
    ) -> Result<Claimed, StoreError> {
        let r = self;
        let d = r.destination;
        let destination = match (d.d_id, shared) {
            (None, _) => None,
            (Some(_), Some(shared)) => Some(shared),
            (Some(id), None) => Some(std::sync::Arc::new(
                DestinationRow {
                    id,
                    tenant_id: r.tenant_id.clone(),
                    kind: d.d_kind.unwrap_or_default(),
                    url: d.d_url,
                    description: d.d_description,
                    topics: d.d_topics.unwrap_or_default(),
                    filter: d.d_filter,
                    headers: d.d_headers.unwrap_or_default(),
                    options: d.d_options.unwrap_or_default(),
                    secrets: d.d_secrets.unwrap_or_default(),
                    enabled: d.d_enabled.unwrap_or(false),
                    disabled_reason: d.d_disabled_reason,
                    disabled_at: d.d_disabled_at,
                    created_at: d.d_created_at.unwrap_or_default(),
                    updated_at: d.d_updated_at.unwrap_or_default(),
                    amqp_url: d.d_amqp_url,
                    amqp_exchange: d.d_amqp_exchange,
                    amqp_routing_key: d.d_amqp_routing_key,
                }
                .open(keys)?,
            )),
        };
        Ok(Claimed {
            delivery_id: r.delivery_id,
            tenant_id: r.tenant_id,
            event_id: r.event_id,
            destination_id: r.destination_id,
            topic: r.topic,
            attempt: r.attempt_count as u32,
            trigger: if r.manual {
                Trigger::Manual
            } else {
                Trigger::Scheduled
            },
            data: raw("data", r.data)?,
            event_created_at: r.event_created_at,
            destination,
            reply_slug: r.reply_slug,
            traceparent: r.traceparent,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CallbackEndpointRow {
    pub id: String,
    pub slug: String,
    pub tenant_id: Option<String>,
    pub label: Option<String>,
    pub verification: String,
    pub metadata: String,
    pub event_id: Option<String>,
    pub last_cursor: i64,
    pub received_count: i64,
    pub duplicate_count: i64,
    pub rejected_count: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

impl CallbackEndpointRow {
    /// The endpoint, its verification secret opened with `keys`.
    pub fn open(self, keys: &Keyring) -> Result<CallbackEndpoint, StoreError> {
        let r = self;
        let verification = keys.open(seal::ENDPOINT_VERIFICATION, &r.id, &r.verification)?;
        Ok(CallbackEndpoint {
            id: r.id,
            slug: r.slug,
            tenant_id: r.tenant_id,
            label: r.label,
            verification: StoredVerification::read(&verification)
                .map_err(|e| StoreError::Corrupt(format!("verification: {e}")))?,
            metadata: json("metadata", &r.metadata)?,
            event_id: r.event_id,
            last_cursor: r.last_cursor,
            received: r.received_count,
            duplicates: r.duplicate_count,
            rejected: r.rejected_count,
            expires_at: r.expires_at,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CallbackRow {
    pub id: String,
    pub endpoint_id: String,
    pub tenant_id: Option<String>,
    pub cursor: Option<i64>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub remote_addr: Option<String>,
    pub received_at: i64,
    pub verified: bool,
    pub status: String,
    pub reject_reason: Option<String>,
    pub dedupe_key: Option<String>,
    pub a2a_task_id: Option<String>,
    pub a2a_state: Option<String>,
    pub acked_at: Option<i64>,
}

impl TryFrom<CallbackRow> for Callback {
    type Error = StoreError;
    fn try_from(r: CallbackRow) -> Result<Self, StoreError> {
        let status = match r.status.as_str() {
            "accepted" => CallbackStatus::Accepted,
            "rejected" => CallbackStatus::Rejected,
            other => return Err(StoreError::Corrupt(format!("callback status: {other}"))),
        };
        Ok(Callback {
            id: r.id,
            endpoint_id: r.endpoint_id,
            tenant_id: r.tenant_id,
            cursor: r.cursor,
            method: r.method,
            path: r.path,
            query: r.query,
            headers: json("headers", &r.headers)?,
            body: r.body,
            content_type: r.content_type,
            remote_addr: r.remote_addr,
            received_at: r.received_at,
            verified: r.verified,
            status,
            reject_reason: r.reject_reason,
            dedupe_key: r.dedupe_key,
            a2a: r.a2a_task_id.map(|task_id| A2aInfo {
                task_id,
                state: r.a2a_state,
            }),
            acked_at: r.acked_at,
        })
    }
}
