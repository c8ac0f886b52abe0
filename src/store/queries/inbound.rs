//! Inbound: callback endpoints (reply channels included) and the callbacks they capture.
//!
//! Accepted callbacks take their endpoint's next cursor in the transaction that stores them,
//! under the endpoint's row lock, so cursors are gap-free and never shared. Batches go
//! through [`Dialect::ingest_in_one_statement`] when the dialect has one, otherwise through
//! the transaction of separate statements here.

use std::collections::BTreeMap;

use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Transaction, Type,
};

use crate::domain::callback::{Callback, CallbackEndpoint, CallbackStatus, Ingested};
use crate::domain::time::Millis;
use crate::store::columns::{self, Columns, Write};
use crate::store::dialect::{Dialect, RowsAffected};
use crate::store::sql::Sql;
use crate::store::{CallbackQuery, Result, Scope, StoreError, rows};

/// The columns of [`rows::CallbackEndpointRow`].
const CALLBACK_ENDPOINT: &str = "id, slug, tenant_id, label, verification, metadata, event_id, \
    last_cursor, received_count, duplicate_count, rejected_count, expires_at, created_at";

/// The columns of [`rows::CallbackRow`].
const CALLBACK: &str = "id, endpoint_id, tenant_id, cursor, method, path, query, headers, body, \
    content_type, remote_addr, received_at, verified, status, reject_reason, dedupe_key, \
    a2a_task_id, a2a_state, acked_at";

/// Callbacks per multi-row insert of a batch.
const CALLBACKS_PER_INSERT: usize = 500;

static INSERT_ENDPOINT: Write = Write::insert("callback_endpoints");

static GET_ENDPOINT: Sql = Sql::new(|| {
    format!(
        "SELECT {CALLBACK_ENDPOINT} FROM callback_endpoints \
         WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
    )
});

static FIND_ENDPOINT: Sql =
    Sql::new(|| format!("SELECT {CALLBACK_ENDPOINT} FROM callback_endpoints WHERE slug = $1"));

static REPLY_ENDPOINT: Sql = Sql::new(|| {
    format!(
        "SELECT {CALLBACK_ENDPOINT} FROM callback_endpoints \
         WHERE event_id = $1 AND ($2 IS NULL OR tenant_id = $2)"
    )
});

static LIST_ENDPOINTS: Sql = Sql::new(|| {
    format!(
        "SELECT {CALLBACK_ENDPOINT} FROM callback_endpoints \
         WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )
});

static CALLBACKS_AFTER: Sql = Sql::new(|| {
    format!(
        "SELECT {CALLBACK} FROM callbacks \
         WHERE endpoint_id = $1 AND cursor > $2 ORDER BY cursor LIMIT $3"
    )
});

static REJECTED_CALLBACKS: Sql = Sql::new(|| {
    format!(
        "SELECT {CALLBACK} FROM callbacks \
         WHERE endpoint_id = $1 AND status = 'rejected' AND ($2 IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    )
});

/// `$1` tenant, `$2` endpoint, `$3` the id to list after, `$4` acknowledged (1) or not (0),
/// `$5` limit: each filter is off when its value is `NULL`.
static LIST_CALLBACKS: Sql = Sql::new(|| {
    format!(
        "SELECT {CALLBACK} FROM callbacks WHERE status = 'accepted' \
         AND ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR endpoint_id = $2) \
         AND ($3 IS NULL OR id > $3) \
         AND ($4 IS NULL OR ($4 = 1) = (acked_at IS NOT NULL)) \
         ORDER BY id LIMIT $5"
    )
});

static GET_CALLBACK: Sql = Sql::new(|| {
    format!("SELECT {CALLBACK} FROM callbacks WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)")
});

static ACK_CALLBACK: Sql = Sql::new(|| {
    format!(
        "UPDATE callbacks SET acked_at = COALESCE(acked_at, $3) \
         WHERE id = $1 AND status = 'accepted' AND ($2 IS NULL OR tenant_id = $2) \
         RETURNING {CALLBACK}"
    )
});

/// The queries of callback endpoints and callbacks, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Inbound: Dialect {
    async fn insert_callback_endpoint(&self, e: &CallbackEndpoint) -> Result<()>;
    /// Inserts an endpoint inside the caller's transaction (its counters start at 0), its
    /// verification sealed.
    async fn insert_endpoint_in_tx(
        &self,
        tx: &mut Transaction<'_, Self::Db>,
        e: &CallbackEndpoint,
    ) -> Result<()>;
    async fn get_callback_endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<Option<CallbackEndpoint>>;
    async fn find_callback_endpoint(&self, slug: &str) -> Result<Option<CallbackEndpoint>>;
    async fn reply_endpoint_of(
        &self,
        scope: Scope<'_>,
        event_id: &str,
    ) -> Result<Option<CallbackEndpoint>>;
    async fn list_callback_endpoints(
        &self,
        scope: Scope<'_>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CallbackEndpoint>>;
    async fn delete_callback_endpoint(&self, scope: Scope<'_>, id: &str) -> Result<bool>;
    async fn ingest_callback(&self, c: &Callback) -> Result<Ingested>;
    async fn ingest_callbacks(&self, cs: &[Callback]) -> Result<Vec<Ingested>>;
    async fn callbacks_after(
        &self,
        endpoint_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Callback>>;
    async fn rejected_callbacks(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Callback>>;
    async fn list_callbacks(&self, q: &CallbackQuery) -> Result<Vec<Callback>>;
    async fn get_callback(&self, scope: Scope<'_>, id: &str) -> Result<Option<Callback>>;
    async fn ack_callback(
        &self,
        scope: Scope<'_>,
        id: &str,
        now: Millis,
    ) -> Result<Option<Callback>>;

    /// One capture inside the caller's transaction (see `Store::ingest_callback`).
    async fn ingest_in_tx(tx: &mut Transaction<'_, Self::Db>, c: &Callback) -> Result<Ingested>;

    /// Inserts callbacks with their cursors (`None`: rejected) in one statement.
    async fn insert_callbacks(
        tx: &mut Transaction<'_, Self::Db>,
        items: &[(&Callback, Option<i64>)],
    ) -> Result<()>;
}

#[async_trait::async_trait]
impl<S> Inbound for S
where
    S: Dialect,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> String: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<String>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> i64: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<i32>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> bool: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Encode<'q, S::Db> + Type<S::Db>,
    for<'r> rows::CallbackEndpointRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::CallbackRow: FromRow<'r, <S::Db as Database>::Row>,
{
    async fn insert_callback_endpoint(&self, e: &CallbackEndpoint) -> Result<()> {
        let mut tx = self.write().begin().await?;
        if let Some(t) = &e.tenant_id {
            let tenant: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                .bind(t)
                .fetch_optional(&mut *tx)
                .await?;
            if tenant.is_none() {
                return Err(StoreError::NotFound("tenant"));
            }
        }
        self.insert_endpoint_in_tx(&mut tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_endpoint_in_tx(
        &self,
        tx: &mut Transaction<'_, Self::Db>,
        e: &CallbackEndpoint,
    ) -> Result<()> {
        let verification = rows::sealed_verification(self.keys(), &e.id, &e.verification);
        let mut cols = Columns::new();
        cols.set("id", &e.id)
            .set("slug", &e.slug)
            .set("tenant_id", &e.tenant_id)
            .set("label", &e.label)
            .set("verification", verification)
            .set("metadata", rows::to_json(&e.metadata))
            .set("event_id", &e.event_id)
            .set("last_cursor", 0_i64)
            .set("received_count", 0_i64)
            .set("duplicate_count", 0_i64)
            .set("rejected_count", 0_i64)
            .set("expires_at", e.expires_at)
            .set("created_at", e.created_at);
        INSERT_ENDPOINT.query(cols)?.execute(&mut **tx).await?;
        Ok(())
    }

    async fn get_callback_endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<Option<CallbackEndpoint>> {
        sqlx::query_as::<_, rows::CallbackEndpointRow>(GET_ENDPOINT.as_str())
            .bind(id)
            .bind(scope.tenant())
            .fetch_optional(self.read())
            .await?
            .map(|r| r.open(self.keys()))
            .transpose()
    }

    async fn find_callback_endpoint(&self, slug: &str) -> Result<Option<CallbackEndpoint>> {
        sqlx::query_as::<_, rows::CallbackEndpointRow>(FIND_ENDPOINT.as_str())
            .bind(slug)
            .fetch_optional(self.read())
            .await?
            .map(|r| r.open(self.keys()))
            .transpose()
    }

    async fn reply_endpoint_of(
        &self,
        scope: Scope<'_>,
        event_id: &str,
    ) -> Result<Option<CallbackEndpoint>> {
        sqlx::query_as::<_, rows::CallbackEndpointRow>(REPLY_ENDPOINT.as_str())
            .bind(event_id)
            .bind(scope.tenant())
            .fetch_optional(self.read())
            .await?
            .map(|r| r.open(self.keys()))
            .transpose()
    }

    async fn list_callback_endpoints(
        &self,
        scope: Scope<'_>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CallbackEndpoint>> {
        sqlx::query_as::<_, rows::CallbackEndpointRow>(LIST_ENDPOINTS.as_str())
            .bind(scope.tenant())
            .bind(after)
            .bind(limit as i64)
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(|r| r.open(self.keys()))
            .collect()
    }

    async fn delete_callback_endpoint(&self, scope: Scope<'_>, id: &str) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM callback_endpoints WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)",
        )
        .bind(id)
        .bind(scope.tenant())
        .execute(self.write())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn ingest_callback(&self, c: &Callback) -> Result<Ingested> {
        let mut tx = self.write().begin().await?;
        let r = Self::ingest_in_tx(&mut tx, c).await?;
        tx.commit().await?;
        if matches!(r, Ingested::Stored { .. }) {
            self.announce_callback(&c.endpoint_id);
        }
        Ok(r)
    }

    async fn ingest_callbacks(&self, cs: &[Callback]) -> Result<Vec<Ingested>> {
        if let Some(out) = self.ingest_in_one_statement(cs).await? {
            return Ok(out);
        }
        let mut tx = self.write().begin().await?;
        let mut out = vec![Ingested::Rejected; cs.len()];
        let mut by_endpoint: BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, c) in cs.iter().enumerate() {
            by_endpoint.entry(&c.endpoint_id).or_default().push(i);
        }
        // Every endpoint row of the batch is locked first, in one statement and in id
        // order, so concurrent batches (this node's or another's) wait for each other
        // on shared endpoints but never deadlock.
        let ids: Vec<&str> = by_endpoint.keys().copied().collect();
        Self::lock_endpoints(&mut tx, &ids).await?;
        // Rejected callbacks and ones to dedupe go one by one; plain accepted ones
        // (the bulk) take their cursors in one step for the whole batch.
        let mut plain: Vec<(&str, Vec<usize>)> = vec![];
        for (endpoint_id, idx) in by_endpoint {
            let (fast, other): (Vec<usize>, Vec<usize>) = idx.into_iter().partition(|&i| {
                cs[i].status == CallbackStatus::Accepted && cs[i].dedupe_key.is_none()
            });
            for i in other {
                out[i] = Self::ingest_in_tx(&mut tx, &cs[i]).await?;
            }
            if !fast.is_empty() {
                plain.push((endpoint_id, fast));
            }
        }
        let counts: Vec<(&str, i64)> = plain
            .iter()
            .map(|(e, idx)| (*e, idx.len() as i64))
            .collect();
        let lasts = Self::take_cursors(&mut tx, &counts).await?;
        let mut fast = Vec::with_capacity(cs.len());
        for ((_, idx), last) in plain.iter().zip(lasts) {
            let first = last - idx.len() as i64 + 1;
            for (k, &i) in idx.iter().enumerate() {
                out[i] = Ingested::Stored {
                    cursor: first + k as i64,
                };
                fast.push((i, Some(first + k as i64)));
            }
        }
        for chunk in fast.chunks(CALLBACKS_PER_INSERT) {
            let rows: Vec<(&Callback, Option<i64>)> =
                chunk.iter().map(|&(i, cursor)| (&cs[i], cursor)).collect();
            Self::insert_callbacks(&mut tx, &rows).await?;
        }
        tx.commit().await?;
        for (c, r) in cs.iter().zip(&out) {
            if matches!(r, Ingested::Stored { .. }) {
                self.announce_callback(&c.endpoint_id);
            }
        }
        Ok(out)
    }

    async fn callbacks_after(
        &self,
        endpoint_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        sqlx::query_as::<_, rows::CallbackRow>(CALLBACKS_AFTER.as_str())
            .bind(endpoint_id)
            .bind(after)
            .bind(limit as i64)
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(Callback::try_from)
            .collect()
    }

    async fn rejected_callbacks(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        sqlx::query_as::<_, rows::CallbackRow>(REJECTED_CALLBACKS.as_str())
            .bind(endpoint_id)
            .bind(after)
            .bind(limit as i64)
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(Callback::try_from)
            .collect()
    }

    async fn list_callbacks(&self, q: &CallbackQuery) -> Result<Vec<Callback>> {
        sqlx::query_as::<_, rows::CallbackRow>(LIST_CALLBACKS.as_str())
            .bind(&q.tenant_id)
            .bind(&q.endpoint_id)
            .bind(&q.after)
            .bind(q.acked.map(i32::from))
            .bind(q.limit as i64)
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(Callback::try_from)
            .collect()
    }

    async fn get_callback(&self, scope: Scope<'_>, id: &str) -> Result<Option<Callback>> {
        sqlx::query_as::<_, rows::CallbackRow>(GET_CALLBACK.as_str())
            .bind(id)
            .bind(scope.tenant())
            .fetch_optional(self.read())
            .await?
            .map(Callback::try_from)
            .transpose()
    }

    async fn ack_callback(
        &self,
        scope: Scope<'_>,
        id: &str,
        now: Millis,
    ) -> Result<Option<Callback>> {
        sqlx::query_as::<_, rows::CallbackRow>(ACK_CALLBACK.as_str())
            .bind(id)
            .bind(scope.tenant())
            .bind(now)
            .fetch_optional(self.write())
            .await?
            .map(Callback::try_from)
            .transpose()
    }

    async fn ingest_in_tx(tx: &mut Transaction<'_, Self::Db>, c: &Callback) -> Result<Ingested> {
        let cursor = if c.status == CallbackStatus::Rejected {
            let r = sqlx::query(
                "UPDATE callback_endpoints SET rejected_count = rejected_count + 1 WHERE id = $1",
            )
            .bind(&c.endpoint_id)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound("callback endpoint"));
            }
            None
        } else {
            // Taking the next cursor first also takes the endpoint's row lock (Postgres;
            // SQLite has one writer), so the dedupe check below cannot race a concurrent
            // copy of the same delivery: the second one sees the first one committed.
            let cursor: Option<i64> = sqlx::query_scalar(
                "UPDATE callback_endpoints SET last_cursor = last_cursor + 1, \
                 received_count = received_count + 1 WHERE id = $1 RETURNING last_cursor",
            )
            .bind(&c.endpoint_id)
            .fetch_optional(&mut **tx)
            .await?;
            let cursor = cursor.ok_or(StoreError::NotFound("callback endpoint"))?;
            if let Some(key) = &c.dedupe_key {
                let original: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM callbacks WHERE endpoint_id = $1 AND dedupe_key = $2 \
                     AND status = 'accepted'",
                )
                .bind(&c.endpoint_id)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(original_id) = original {
                    // Give the cursor back (we hold the lock): the sequence stays gap-free.
                    sqlx::query(
                        "UPDATE callback_endpoints SET last_cursor = last_cursor - 1, \
                         received_count = received_count - 1, \
                         duplicate_count = duplicate_count + 1 WHERE id = $1",
                    )
                    .bind(&c.endpoint_id)
                    .execute(&mut **tx)
                    .await?;
                    return Ok(Ingested::Duplicate { original_id });
                }
            }
            Some(cursor)
        };
        Self::insert_callbacks(tx, &[(c, cursor)]).await?;
        Ok(match cursor {
            Some(cursor) => Ingested::Stored { cursor },
            None => Ingested::Rejected,
        })
    }

    async fn insert_callbacks(
        tx: &mut Transaction<'_, Self::Db>,
        items: &[(&Callback, Option<i64>)],
    ) -> Result<()> {
        columns::insert_rows("callbacks", items, |cols, (c, cursor)| {
            cols.set("id", &c.id)
                .set("endpoint_id", &c.endpoint_id)
                .set("tenant_id", &c.tenant_id)
                .set("cursor", *cursor)
                .set("method", &c.method)
                .set("path", &c.path)
                .set("query", &c.query)
                .set("headers", rows::to_json(&c.headers))
                .set("body", &c.body)
                .set("content_type", &c.content_type)
                .set("remote_addr", &c.remote_addr)
                .set("received_at", c.received_at)
                .set("verified", c.verified)
                .set("status", c.status.as_str())
                .set("reject_reason", &c.reject_reason)
                .set("dedupe_key", &c.dedupe_key)
                .set("a2a_task_id", c.a2a.as_ref().map(|a| a.task_id.as_str()))
                .set("a2a_state", c.a2a.as_ref().and_then(|a| a.state.as_deref()))
                .set("acked_at", c.acked_at);
        })?
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
