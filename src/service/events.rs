use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::callbacks::{DEFAULT_REPLY_TTL_SECS, MAX_TTL_SECS, new_slug};
use super::catalog::{Checker, Verdict};
use super::{Herald, Result, ServiceError, page_limit};
use crate::domain::ids::{Kind, new_id};
use crate::domain::model::{Event, Page};
use crate::domain::validate::{self, Invalid};
use crate::store::{NewEvent, NewReplyChannel, Published, Scope};

/// One event to publish (`POST /v1/events`, each event of a batch, each message of the publish
/// queue). Unknown fields are refused: a misspelt `destination_id` must not quietly fan the
/// event out to every destination.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,64}$")]
    pub tenant_id: String,
    /// Dot-separated, e.g. `job.completed`.
    #[schema(pattern = r"^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$", max_length = 255)]
    pub topic: String,
    /// Any JSON; delivered byte for byte.
    #[schema(schema_with = crate::domain::model::any_json)]
    pub data: Box<RawValue>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// The publisher's own id for this event: a repeat with the same id returns the original
    /// event and creates nothing (the `Idempotency-Key` header does the same).
    #[serde(default)]
    pub id: Option<String>,
    /// Deliver to this destination only.
    #[serde(default)]
    pub destination_id: Option<String>,
    /// Open a reply channel: every delivery carries its URL (`webhook-reply-url`, and
    /// `reply_url` in the envelope), and `GET /v1/events/{id}/replies/wait` waits for answers.
    #[serde(default)]
    pub reply: Option<ReplyRequest>,
}

#[derive(Debug, Serialize, ToSchema, schemars::JsonSchema)]
pub struct PublishResponse {
    /// The event's id (`evt_…`).
    pub id: String,
    /// How many deliveries the event created (for a repeat: the original's).
    pub deliveries: u32,
    /// The reply channel's URL, when the event asked for one (`reply`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_url: Option<String>,
    /// The version of the topic's event type whose schema `data` satisfied; absent when
    /// nothing was checked (docs/event-types.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// Present, and true, when the topic's event type is deprecated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schemars(default)]
    #[schema(default = false)]
    pub deprecated: bool,
}

impl PublishResponse {
    pub fn new(p: &Published, herald: &super::Herald) -> Self {
        PublishResponse {
            id: p.id.clone(),
            deliveries: p.deliveries,
            reply_url: p.reply_slug.as_deref().map(|s| herald.callback_url(s)),
            schema_version: p.schema_version,
            deprecated: p.deprecated,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    /// How long the reply URL accepts answers; default one day, at most one year.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatch {
    /// 1 to `max_batch_size` (default 1000) events.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<PublishRequest>,
}

impl Herald {
    /// Checks one event (its fields, then the catalog) and makes it ready to store.
    fn new_event(
        &self,
        field: &str,
        req: PublishRequest,
        key_header: Option<&str>,
        catalog: &Checker,
    ) -> Result<(NewEvent, Verdict)> {
        let f = |name: &str| {
            if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            }
        };
        validate::tenant_id(&f("tenant_id"), &req.tenant_id)?;
        validate::topic(&f("topic"), &req.topic)?;
        let metadata = req
            .metadata
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !metadata.is_object() {
            return Err(Invalid::new(f("metadata"), "must be an object").into());
        }
        let size = req.data.get().len() + metadata.to_string().len();
        let max = self.limits.max_event_bytes;
        if size > max {
            return Err(ServiceError::TooLarge {
                field: f("data"),
                message: format!("data and metadata must be at most {max} bytes together"),
            });
        }
        let verdict = catalog.check(field, &req.topic, req.data.get())?;
        let key = match (key_header, req.id) {
            (Some(h), _) => {
                validate::idempotency_key(
                    "Idempotency-Key",
                    h,
                    self.limits.strings.max_idempotency_key,
                )?;
                Some(h.to_string())
            }
            (None, Some(id)) => {
                validate::idempotency_key(&f("id"), &id, self.limits.strings.max_idempotency_key)?;
                Some(id)
            }
            (None, None) => None,
        };
        let reply = match req.reply {
            None => None,
            Some(r) => {
                let ttl = r.ttl_seconds.unwrap_or(DEFAULT_REPLY_TTL_SECS);
                if ttl == 0 || ttl > MAX_TTL_SECS {
                    return Err(Invalid::new(
                        f("reply.ttl_seconds"),
                        format!("must be 1-{MAX_TTL_SECS}"),
                    )
                    .into());
                }
                Some(NewReplyChannel {
                    endpoint_id: new_id(Kind::CallbackEndpoint),
                    slug: new_slug(),
                    expires_at: self.clock.now() + ttl as i64 * 1000,
                })
            }
        };
        let event = NewEvent {
            reply,
            id: new_id(Kind::Event),
            tenant_id: req.tenant_id,
            topic: req.topic,
            data: req.data,
            metadata,
            idempotency_key: key,
            destination_id: req.destination_id,
            schema_version: verdict.schema_version,
            traceparent: None,
        };
        Ok((event, verdict))
    }

    /// Publishes one event. Returns once the event and all its deliveries are committed.
    pub async fn publish(
        &self,
        scope: Scope<'_>,
        req: PublishRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Published> {
        self.publish_traced(scope, req, idempotency_key, None).await
    }

    /// As [`Herald::publish`], the event stored with the W3C `traceparent` of the publish
    /// span: its deliveries' attempts are that span's children, however much later they run.
    pub async fn publish_traced(
        &self,
        scope: Scope<'_>,
        req: PublishRequest,
        idempotency_key: Option<&str>,
        traceparent: Option<String>,
    ) -> Result<Published> {
        Self::check_tenant(scope, &req.tenant_id)?;
        let catalog = self.catalog_checker().await?;
        let (mut ev, verdict) = self.new_event("", req, idempotency_key, &catalog)?;
        ev.traceparent = traceparent;
        let mut p = self.publisher.commit(ev).await?;
        p.deprecated = verdict.deprecated;
        self.wake.notify_one();
        count_published(std::slice::from_ref(&p));
        Ok(p)
    }

    /// Publishes up to 1,000 events in one transaction: all or nothing.
    pub async fn publish_batch(
        &self,
        scope: Scope<'_>,
        batch: PublishBatch,
    ) -> Result<Vec<Published>> {
        self.publish_batch_traced(scope, batch, None).await
    }

    /// As [`Herald::publish_batch`], every event stored with the batch request's
    /// `traceparent` (see [`Herald::publish_traced`]).
    pub async fn publish_batch_traced(
        &self,
        scope: Scope<'_>,
        batch: PublishBatch,
        traceparent: Option<String>,
    ) -> Result<Vec<Published>> {
        let max = self.limits.max_batch;
        if batch.events.is_empty() || batch.events.len() > max {
            return Err(Invalid::new("events", format!("must hold 1-{max} events")).into());
        }
        let catalog = self.catalog_checker().await?;
        let mut events = Vec::with_capacity(batch.events.len());
        let mut verdicts = Vec::with_capacity(batch.events.len());
        for (i, req) in batch.events.into_iter().enumerate() {
            Self::check_tenant(scope, &req.tenant_id)?;
            let (mut ev, verdict) = self.new_event(&format!("events[{i}]"), req, None, &catalog)?;
            ev.traceparent = traceparent.clone();
            events.push(ev);
            verdicts.push(verdict);
        }
        let mut out = super::batch::publish_retrying(&*self.store, &events, &self.clock).await?;
        for (p, v) in out.iter_mut().zip(&verdicts) {
            p.deprecated = v.deprecated;
        }
        self.wake.notify_one();
        count_published(&out);
        Ok(out)
    }

    pub async fn get_event(&self, scope: Scope<'_>, id: &str) -> Result<Event> {
        self.store
            .get_event(scope, id)
            .await?
            .ok_or(ServiceError::NotFound("event"))
    }

    pub async fn list_events(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Event>> {
        Self::check_tenant(scope, tenant_id)?;
        let limit = page_limit(limit);
        let rows = self.store.list_events(tenant_id, after, limit + 1).await?;
        Ok(Page::from_rows(rows, limit as usize, |e| e.id.clone()))
    }
}

fn count_published(out: &[Published]) {
    let new = out.iter().filter(|p| p.created).count();
    crate::metrics::metrics()
        .events_published
        .inc_by(new as u64);
}
