//! The event-type catalog (docs/event-types.md): the admin defines types, everyone reads
//! them, and every publish path checks its events against them.
//!
//! Publishing must not read the catalog from the database each time, so each process keeps
//! the types with their schemas compiled ([`Catalog`]), and drops that copy whenever the
//! catalog changes: at once for a change made here, and on `News::Catalog` (or
//! `News::Missed`) for one made by another process sharing the database
//! ([`super::Herald::relay_news`]). The next publish reads the catalog again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Herald, Result, ServiceError, page_limit};
use crate::domain::catalog::{self, EventType, Mismatch};
use crate::domain::model::Page;
use crate::store::{NewEventType, Store};

/// `PUT /v1/event-types/{name}`: the whole definition (fields left out take their defaults).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEventType {
    /// What the event means, for the people subscribing to it (at most 1,024 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON Schema (2020-12) for the events' `data`. `$ref`s must point inside the schema
    /// (`#/$defs/…`): Herald fetches nothing.
    #[serde(default)]
    #[schema(schema_with = catalog::nullable_any_json)]
    pub schema: Option<Value>,
    /// Up to 10 example payloads; each must satisfy the schema.
    #[serde(default)]
    #[schema(schema_with = catalog::examples_schema)]
    pub examples: Vec<Value>,
    /// Still accepted, but flagged in publish responses and the portal.
    #[serde(default)]
    pub deprecated: bool,
    /// Publishing it is refused.
    #[serde(default)]
    pub archived: bool,
}

/// What the catalog says of one event about to be published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The version whose schema the data satisfied; `None` when none was checked.
    pub schema_version: Option<i64>,
    /// The type is deprecated.
    pub deprecated: bool,
}

/// One type as publishing needs it.
struct Entry {
    version: i64,
    deprecated: bool,
    archived: bool,
    validator: Option<jsonschema::Validator>,
}

type Types = HashMap<String, Entry>;

/// This process's compiled copy of the catalog (see the module's docs).
#[derive(Default)]
pub struct Catalog {
    /// Moves on with every change heard of; a copy made at an older generation is stale.
    /// A watch channel, so tests (and anything else) can wait for a change to be heard.
    generation: tokio::sync::watch::Sender<u64>,
    copy: RwLock<Option<(u64, Arc<Types>)>>,
    /// One reload at a time: a burst of publishes after a change compiles the schemas once.
    loading: tokio::sync::Mutex<()>,
    /// Refuse topics the catalog does not list (`refuse_unknown_topics`).
    pub refuse_unknown: bool,
}

impl Catalog {
    pub fn new(refuse_unknown: bool) -> Self {
        Catalog {
            refuse_unknown,
            ..Default::default()
        }
    }

    /// Sees every change this process hears of (the generation moving on).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Drops the copy: the next publish reads the catalog again.
    pub fn invalidate(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    fn current(&self) -> Option<Arc<Types>> {
        let generation = *self.generation.borrow();
        match &*self.copy.read().expect("not poisoned") {
            Some((g, types)) if *g == generation => Some(types.clone()),
            _ => None,
        }
    }

    /// The catalog's types, read from the store when the copy is stale.
    async fn types(&self, store: &dyn Store) -> Result<Arc<Types>> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let _one = self.loading.lock().await;
        if let Some(t) = self.current() {
            return Ok(t);
        }
        // Read the generation first: a change heard of during the read makes this copy stale.
        let generation = *self.generation.borrow();
        let mut types = Types::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list_event_types(after.as_deref(), 1000, true).await?;
            let last = page.len() < 1000;
            for t in page {
                after = Some(t.name.clone());
                let validator = match &t.schema {
                    None => None,
                    // Every stored schema compiled when it was saved; one that no longer does
                    // (a downgrade) is reported, and its events are refused rather than let
                    // through unchecked.
                    Some(s) => Some(catalog::compile(s).map_err(|e| {
                        ServiceError::Store(crate::store::StoreError::Corrupt(format!(
                            "event type {}: {}",
                            t.name, e.message
                        )))
                    })?),
                };
                types.insert(
                    t.name,
                    Entry {
                        version: t.version,
                        deprecated: t.deprecated,
                        archived: t.archived,
                        validator,
                    },
                );
            }
            if last {
                break;
            }
        }
        let types = Arc::new(types);
        *self.copy.write().expect("not poisoned") = Some((generation, types.clone()));
        Ok(types)
    }
}

/// The catalog as one publish call checks it: read once for all its events.
pub(crate) struct Checker {
    types: Arc<Types>,
    refuse_unknown: bool,
}

impl Checker {
    /// What the catalog says of an event of `topic` with `data`, or why it refuses it. `field`
    /// prefixes the fields named (`events[3]`, or empty).
    pub(crate) fn check(&self, field: &str, topic: &str, data: &str) -> Result<Verdict> {
        let at = |name: &str| {
            if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            }
        };
        if catalog::is_exempt(topic) {
            return Ok(Verdict::default());
        }
        let Some(entry) = self.types.get(topic) else {
            if self.refuse_unknown {
                return Err(ServiceError::Refused {
                    field: at("topic"),
                    code: "unknown_event_type",
                    message: format!(
                        "`{topic}` is not in the event-type catalog, and unknown topics are \
                         refused (GET /v1/event-types lists them)"
                    ),
                });
            }
            return Ok(Verdict::default());
        };
        if entry.archived {
            return Err(ServiceError::Refused {
                field: at("topic"),
                code: "event_type_archived",
                message: format!("the event type `{topic}` is archived: it takes no new events"),
            });
        }
        let mut verdict = Verdict {
            schema_version: None,
            deprecated: entry.deprecated,
        };
        if let Some(v) = &entry.validator {
            // The data is parsed only to be checked; it is stored as the publisher wrote it.
            let value: Value = serde_json::from_str(data)
                .map_err(|e| ServiceError::Malformed(format!("{}: {e}", at("data"))))?;
            catalog::check(v, &value).map_err(|mismatch| ServiceError::SchemaMismatch {
                field: at("data"),
                topic: topic.to_string(),
                version: entry.version,
                mismatch: Box::new(mismatch),
            })?;
            verdict.schema_version = Some(entry.version);
        }
        Ok(verdict)
    }
}

impl Checker {
    /// Where unknown topics are refused, a destination's patterns must each match a type in
    /// the catalog (or `herald.test`): a pattern that matches none would never receive
    /// anything, which is almost always a typo.
    pub(crate) fn check_patterns(&self, field: &str, patterns: &[String]) -> Result<()> {
        if !self.refuse_unknown {
            return Ok(());
        }
        for (i, p) in patterns.iter().enumerate() {
            let known = std::iter::once(catalog::EXEMPT_TOPIC)
                .chain(
                    self.types
                        .iter()
                        .filter(|(_, e)| !e.archived)
                        .map(|(name, _)| name.as_str()),
                )
                .any(|topic| crate::domain::topic::matches(p, topic));
            if !known {
                return Err(ServiceError::Refused {
                    field: format!("{field}[{i}]"),
                    code: "unknown_event_type",
                    message: format!(
                        "`{p}` matches no event type in the catalog, and unknown topics are \
                         refused (GET /v1/event-types lists them)"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The details of a [`ServiceError::SchemaMismatch`], for problem+json.
pub fn mismatch_of(e: &ServiceError) -> Option<&Mismatch> {
    match e {
        ServiceError::SchemaMismatch { mismatch, .. } => Some(&**mismatch),
        _ => None,
    }
}

impl Herald {
    /// The catalog, checked against by every publish path.
    pub(crate) async fn catalog_checker(&self) -> Result<Checker> {
        Ok(Checker {
            types: self.catalog.types(&*self.store).await?,
            refuse_unknown: self.catalog.refuse_unknown,
        })
    }

    /// Creates or replaces a type (admin only: the HTTP layer checks). Returns it, and whether
    /// it was created.
    pub async fn put_event_type(&self, name: &str, req: PutEventType) -> Result<(EventType, bool)> {
        catalog::check_definition(
            name,
            req.description.as_deref(),
            req.schema.as_ref(),
            &req.examples,
        )?;
        // Saving the same definition again is no change: it makes no new version, so events
        // keep matching the version publishers were told of.
        if let Some(t) = self.store.get_event_type(name).await?
            && t.description == req.description
            && t.schema == req.schema
            && t.examples == req.examples
            && (t.deprecated, t.archived) == (req.deprecated, req.archived)
        {
            return Ok((t, false));
        }
        let t = self
            .store
            .put_event_type(
                &NewEventType {
                    name,
                    description: req.description.as_deref(),
                    schema: req.schema.as_ref(),
                    examples: &req.examples,
                    deprecated: req.deprecated,
                    archived: req.archived,
                },
                self.clock.now(),
            )
            .await?;
        self.catalog.invalidate();
        let created = t.version == 1;
        Ok((t, created))
    }

    pub async fn get_event_type(&self, name: &str) -> Result<EventType> {
        self.store
            .get_event_type(name)
            .await?
            .ok_or(ServiceError::NotFound("event type"))
    }

    /// A page of types by name; archived ones only with `include_archived`.
    pub async fn list_event_types(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
        include_archived: bool,
    ) -> Result<Page<EventType>> {
        let limit = page_limit(limit);
        let rows = self
            .store
            .list_event_types(after, limit + 1, include_archived)
            .await?;
        Ok(Page::from_rows(rows, limit as usize, |t| t.name.clone()))
    }

    /// Removes a type (admin only). Its events keep the version they were checked against.
    pub async fn delete_event_type(&self, name: &str) -> Result<()> {
        if !self.store.delete_event_type(name).await? {
            return Err(ServiceError::NotFound("event type"));
        }
        self.catalog.invalidate();
        Ok(())
    }
}
