//! The queries that are the same SQL for both stores.
//!
//! Both schemas share table names, column names and portable types, and sqlx accepts `$1`
//! placeholders for SQLite as well as Postgres, so most of the store is written once, here:
//! one generic `impl Store` for every [`Dialect`], compiled once per database. What differs —
//! connecting, migrations, the claim query, locks, wake-ups, the one-statement batch paths —
//! each dialect provides in `sqlite/` and `postgres/` as its [`Dialect`] implementation.
//!
//! The `where` clause of the generic impls lists what the queries need of the database (each
//! bound and decoded type): sqlx has no single trait for "a SQL database with these types".
//!
//! Each store has two pools, `read` and `write`. On Postgres they are the same pool; on
//! SQLite the write pool has one connection, which serializes writers instead of letting them
//! fail with `SQLITE_BUSY`.

macro_rules! tenant_cols {
    () => {
        "id, metadata, created_at, updated_at"
    };
}
macro_rules! destination_cols {
    () => {
        "id, tenant_id, kind, url, description, topics, filter, headers, options, secrets, \
         enabled, disabled_reason, disabled_at, created_at, updated_at, \
         amqp_url, amqp_exchange, amqp_routing_key"
    };
}
macro_rules! event_cols {
    () => {
        "id, tenant_id, topic, data, metadata, idempotency_key, created_at"
    };
}
macro_rules! delivery_cols {
    () => {
        "id, tenant_id, event_id, destination_id, topic, status, attempt_count, next_attempt_at, \
         last_status_code, last_error, created_at, updated_at, finalized_at"
    };
}
macro_rules! attempt_cols {
    () => {
        "id, delivery_id, attempt, trigger, started_at, duration_ms, url, status_code, error_kind, \
         error, request_headers, response_headers, response_body"
    };
}
macro_rules! callback_endpoint_cols {
    () => {
        "id, slug, tenant_id, label, verification, metadata, event_id, last_cursor, \
            received_count, \
         duplicate_count, rejected_count, expires_at, created_at"
    };
}
macro_rules! callback_cols {
    () => {
        "id, endpoint_id, tenant_id, cursor, method, path, query, headers, body, content_type, \
         remote_addr, received_at, verified, status, reject_reason, dedupe_key, a2a_task_id, \
         a2a_state, acked_at"
    };
}
pub(crate) use delivery_cols;

use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Transaction, Type,
};

use super::dialect::{Dialect, RowsAffected};
use super::{
    CallbackQuery, Claimed, DeliveryQuery, Finish, Finished, NewEvent, NewsStream, Published,
    Result, Scope, Store, StoreError, TokenRecord, rows,
};
use crate::domain::callback::{Callback, CallbackEndpoint, Ingested};
use crate::domain::model::{Attempt, Delivery, Destination, Event, Recovery, Tenant};
use crate::domain::state::DeliveryStatus;
use crate::domain::time::Millis;

/// Every store is a `Dialect` plus these shared queries.
#[async_trait::async_trait]
impl<S> Store for S
where
    S: Dialect + 'static,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> String: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<String>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> i64: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> i32: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<i32>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> bool: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Encode<'q, S::Db> + Type<S::Db>,
    for<'r> rows::TenantRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::TokenRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::DestinationRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::EventRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::DeliveryRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::AttemptRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::CallbackEndpointRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::CallbackRow: FromRow<'r, <S::Db as Database>::Row>,
{
    fn kind(&self) -> &'static str {
        S::KIND
    }

    async fn migrate(&self) -> Result<()> {
        self.migrate_schema().await
    }

    async fn claim(&self, limit: u32, now: Millis, lease_until: Millis) -> Result<Vec<Claimed>> {
        self.claim_due(limit, now, lease_until).await
    }

    fn news(&self) -> Option<NewsStream> {
        self.listen()
    }

    async fn close(&self) {
        self.close_notifiers().await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.read()).await?;
        Ok(())
    }

    async fn seal_at_rest(&self, now: Millis) -> Result<u64> {
        use crate::store::seal::{SEALED_COLUMNS, SealError};
        let current = self.keys().current_id();
        // Check and record under one lock: of two nodes with different keys starting
        // at once, the second sees the first's key and refuses, having written nothing.
        let mut tx = self.write().begin().await?;
        Self::keys_lock(&mut tx).await?;
        let recorded: Vec<String> =
            sqlx::query_scalar("SELECT key_id FROM encryption_keys ORDER BY key_id")
                .fetch_all(&mut *tx)
                .await?;
        if let Some(unknown) = recorded.into_iter().find(|k| !self.keys().knows(k)) {
            return Err(SealError::UnknownKey {
                column: "this database".into(),
                key_id: unknown,
            }
            .into());
        }
        sqlx::query(
            "INSERT INTO encryption_keys (key_id, first_used_at) VALUES ($1, $2) \
                    ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(current)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut sealed = 0;
        for column in SEALED_COLUMNS {
            sealed += self.reseal_column(*column).await?;
        }
        // Every value is now under the current key: the database no longer needs the
        // others, and a node that has only the current key may start.
        sqlx::query("DELETE FROM encryption_keys WHERE key_id <> $1")
            .bind(current)
            .execute(self.write())
            .await?;
        if sealed > 0 {
            self.scrub_replaced_values().await?;
        }
        Ok(sealed)
    }

    async fn insert_token(
        &self,
        id: &str,
        hash: &str,
        tenant_id: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, created_at) VALUES ($1, \
            $2, $3, $4)",
        )
        .bind(id)
        .bind(hash)
        .bind(tenant_id)
        .bind(now)
        .execute(self.write())
        .await?;
        Ok(())
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query_as::<_, rows::TokenRow>(
            "SELECT id, tenant_id FROM api_tokens WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.read())
        .await?;
        Ok(row.map(Into::into))
    }

    async fn has_admin_token(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE tenant_id IS NULL")
            .fetch_one(self.read())
            .await?;
        Ok(n > 0)
    }

    async fn upsert_tenant(
        &self,
        id: &str,
        metadata: &serde_json::Value,
        now: Millis,
    ) -> Result<(Tenant, bool)> {
        let mut tx = self.write().begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let sql = if exists.is_some() {
            concat!(
                "UPDATE tenants SET metadata = $2, updated_at = $3 WHERE id = $1 RETURNING ",
                tenant_cols!()
            )
        } else {
            concat!(
                "INSERT INTO tenants (id, metadata, created_at, updated_at) VALUES ($1, $2, $3, \
                    $3) RETURNING ",
                tenant_cols!()
            )
        };
        let row = sqlx::query_as::<_, rows::TenantRow>(sql)
            .bind(id)
            .bind(rows::to_json(metadata))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((row.try_into()?, exists.is_none()))
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        sqlx::query_as::<_, rows::TenantRow>(concat!(
            "SELECT ",
            tenant_cols!(),
            " FROM tenants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.read())
        .await?
        .map(Tenant::try_from)
        .transpose()
    }

    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        sqlx::query_as::<_, rows::TenantRow>(concat!(
            "SELECT ",
            tenant_cols!(),
            " FROM tenants WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.read())
        .await?
        .into_iter()
        .map(Tenant::try_from)
        .collect()
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        // Foreign keys cascade to tokens, destinations, events, deliveries and attempts.
        let r = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(self.write())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_destination(&self, d: &Destination, max_per_tenant: u32) -> Result<()> {
        let mut tx = self.write().begin().await?;
        // A no-op update: it finds the tenant and takes its row lock (Postgres; SQLite
        // has one writer), which serializes this tenant's creates for the count below.
        let tenant = sqlx::query("UPDATE tenants SET updated_at = updated_at WHERE id = $1")
            .bind(&d.tenant_id)
            .execute(&mut *tx)
            .await?;
        if tenant.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        if max_per_tenant > 0 {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM destinations WHERE tenant_id = $1")
                    .bind(&d.tenant_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if n >= i64::from(max_per_tenant) {
                return Err(StoreError::Conflict(format!(
                    "tenant `{}` already has {n} destinations, the most allowed \
                             (max_destinations_per_tenant = {max_per_tenant})",
                    d.tenant_id
                )));
            }
        }
        let (max_in_flight, rate_limit, fifo) = rows::limits(&d.options);
        let (amqp_url, amqp_exchange, amqp_routing_key) = rows::amqp_columns(d, self.keys());
        sqlx::query(concat!(
            "INSERT INTO destinations (",
            destination_cols!(),
            ", max_in_flight, rate_limit, fifo) VALUES \
                    ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                        $18, \
                    $19, $20, $21)"
        ))
        .bind(&d.id)
        .bind(&d.tenant_id)
        .bind(d.kind.as_str())
        .bind(&d.url)
        .bind(&d.description)
        .bind(rows::to_json(&d.topics))
        .bind(d.filter.as_ref().map(rows::to_json))
        .bind(rows::sealed_json(
            self.keys(),
            crate::store::seal::DESTINATION_HEADERS,
            &d.id,
            &d.headers,
        ))
        .bind(rows::to_json(&d.options))
        .bind(rows::sealed_json(
            self.keys(),
            crate::store::seal::DESTINATION_SECRETS,
            &d.id,
            &d.secrets,
        ))
        .bind(d.enabled)
        .bind(&d.disabled_reason)
        .bind(d.disabled_at)
        .bind(d.created_at)
        .bind(d.updated_at)
        .bind(amqp_url)
        .bind(amqp_exchange)
        .bind(amqp_routing_key)
        .bind(max_in_flight)
        .bind(rate_limit)
        .bind(fifo)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_destination(&self, tenant_id: &str, id: &str) -> Result<Option<Destination>> {
        sqlx::query_as::<_, rows::DestinationRow>(concat!(
            "SELECT ",
            destination_cols!(),
            " FROM destinations WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(self.read())
        .await?
        .map(|r| r.open(self.keys()))
        .transpose()
    }

    async fn list_destinations(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Destination>> {
        sqlx::query_as::<_, rows::DestinationRow>(concat!(
            "SELECT ",
            destination_cols!(),
            " FROM destinations \
                     WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.read())
        .await?
        .into_iter()
        .map(|r| r.open(self.keys()))
        .collect()
    }

    async fn update_destination(&self, d: &Destination) -> Result<bool> {
        let (max_in_flight, rate_limit, fifo) = rows::limits(&d.options);
        let (amqp_url, amqp_exchange, amqp_routing_key) = rows::amqp_columns(d, self.keys());
        let r = sqlx::query(
            "UPDATE destinations SET url = $3, description = $4, topics = $5, \
            filter = $6, \
                    headers = $7, options = $8, secrets = $9, enabled = $10, disabled_reason = \
                        $11, disabled_at = $12, \
                    updated_at = $13, max_in_flight = $14, rate_limit = $15, fifo = $16, \
                    amqp_url = $17, amqp_exchange = $18, amqp_routing_key = $19 WHERE id = $1 AND \
                        tenant_id = $2",
        )
        .bind(&d.id)
        .bind(&d.tenant_id)
        .bind(&d.url)
        .bind(&d.description)
        .bind(rows::to_json(&d.topics))
        .bind(d.filter.as_ref().map(rows::to_json))
        .bind(rows::sealed_json(
            self.keys(),
            crate::store::seal::DESTINATION_HEADERS,
            &d.id,
            &d.headers,
        ))
        .bind(rows::to_json(&d.options))
        .bind(rows::sealed_json(
            self.keys(),
            crate::store::seal::DESTINATION_SECRETS,
            &d.id,
            &d.secrets,
        ))
        .bind(d.enabled)
        .bind(&d.disabled_reason)
        .bind(d.disabled_at)
        .bind(d.updated_at)
        .bind(max_in_flight)
        .bind(rate_limit)
        .bind(fifo)
        .bind(amqp_url)
        .bind(amqp_exchange)
        .bind(amqp_routing_key)
        .execute(self.write())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_destination(&self, tenant_id: &str, id: &str, now: Millis) -> Result<bool> {
        let mut tx = self.write().begin().await?;
        let r = sqlx::query("DELETE FROM destinations WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(crate::store::sql::CANCEL_PENDING_OF_DESTINATION.as_str())
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn publish(&self, events: &[NewEvent], now: Millis) -> Result<Vec<Published>> {
        use std::collections::HashMap;
        let mut tx = self.write().begin().await?;
        let mut destinations: HashMap<&str, Vec<Destination>> = HashMap::new();
        // Keys published earlier in this same call: a repeat returns that event.
        let mut keys: HashMap<(&str, &str), usize> = HashMap::new();
        let mut out: Vec<Published> = Vec::with_capacity(events.len());
        let mut new_events: Vec<&NewEvent> = Vec::with_capacity(events.len());
        let mut new_deliveries: Vec<(String, &NewEvent, String, DeliveryStatus)> = Vec::new();
        for ev in events {
            if let Some(key) = &ev.idempotency_key {
                if let Some(&i) = keys.get(&(ev.tenant_id.as_str(), key.as_str())) {
                    let first = out[i].clone();
                    out.push(Published {
                        created: false,
                        ..first
                    });
                    continue;
                }
                let existing: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM events WHERE tenant_id = $1 AND idempotency_key = $2",
                )
                .bind(&ev.tenant_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = existing {
                    let n: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE event_id = $1")
                            .bind(&id)
                            .fetch_one(&mut *tx)
                            .await?;
                    let reply_slug: Option<String> = sqlx::query_scalar(
                        "SELECT slug FROM callback_endpoints WHERE event_id = $1",
                    )
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    out.push(Published {
                        id,
                        deliveries: n as u32,
                        created: false,
                        reply_slug,
                    });
                    continue;
                }
            }
            if !destinations.contains_key(ev.tenant_id.as_str()) {
                let tenant: Option<String> =
                    sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                        .bind(&ev.tenant_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if tenant.is_none() {
                    return Err(StoreError::NotFound("tenant"));
                }
                let ds = sqlx::query_as::<_, rows::DestinationRow>(concat!(
                    "SELECT ",
                    destination_cols!(),
                    " FROM destinations WHERE tenant_id = $1 ORDER BY id"
                ))
                .bind(&ev.tenant_id)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| r.open(self.keys()))
                .collect::<Result<Vec<_>>>()?;
                destinations.insert(ev.tenant_id.as_str(), ds);
            }
            let ds = &destinations[ev.tenant_id.as_str()];
            if let Some(target) = &ev.destination_id
                && !ds.iter().any(|d| &d.id == target)
            {
                return Err(StoreError::NotFound("destination"));
            }
            // The data is parsed only when a filter needs to look inside it.
            let data = if ds.iter().any(|d| d.filter.is_some()) {
                serde_json::from_str(ev.data.get()).unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::Null
            };
            let plan = crate::domain::fanout::plan(
                ds,
                &ev.topic,
                &ev.metadata,
                &data,
                ev.destination_id.as_deref(),
            );
            for (d, status) in &plan {
                new_deliveries.push((
                    crate::domain::ids::new_id(crate::domain::ids::Kind::Delivery),
                    ev,
                    d.id.clone(),
                    *status,
                ));
            }
            if let Some(key) = &ev.idempotency_key {
                keys.insert((ev.tenant_id.as_str(), key.as_str()), out.len());
            }
            new_events.push(ev);
            out.push(Published {
                id: ev.id.clone(),
                deliveries: plan.len() as u32,
                created: true,
                reply_slug: ev.reply.as_ref().map(|r| r.slug.clone()),
            });
        }
        // Multi-row inserts: one statement per few hundred rows instead of one per row
        // (chunks stay under both databases' bind-parameter limits).
        for chunk in new_events.chunks(1000) {
            let mut q = sqlx::QueryBuilder::<S::Db>::new(concat!(
                "INSERT INTO events (",
                event_cols!(),
                ") "
            ));
            q.push_values(chunk, |mut b, ev| {
                b.push_bind(&ev.id)
                    .push_bind(&ev.tenant_id)
                    .push_bind(&ev.topic)
                    .push_bind(ev.data.get())
                    .push_bind(rows::to_json(&ev.metadata))
                    .push_bind(&ev.idempotency_key)
                    .push_bind(now);
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(rows::idempotency_conflict)?;
        }
        // Reply channels (docs/reply-channels.md) belong to their event: created after it, in the
        // same transaction.
        for ev in &new_events {
            if let Some(r) = &ev.reply {
                sqlx::query(concat!(
                    "INSERT INTO callback_endpoints (",
                    callback_endpoint_cols!(),
                    ") \
                            VALUES ($1, $2, $3, $4, $5, '{}', $6, 0, 0, 0, 0, $7, $8)"
                ))
                .bind(&r.endpoint_id)
                .bind(&r.slug)
                .bind(&ev.tenant_id)
                .bind(format!("reply channel of {}", ev.id))
                .bind(rows::sealed_verification(
                    self.keys(),
                    &r.endpoint_id,
                    &crate::domain::callback::Verification::None,
                ))
                .bind(&ev.id)
                .bind(r.expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        let scheduled_any = new_deliveries
            .iter()
            .any(|d| d.3 == DeliveryStatus::Scheduled);
        for chunk in new_deliveries.chunks(2000) {
            let mut q = sqlx::QueryBuilder::<S::Db>::new(
                "INSERT INTO deliveries (id, tenant_id, event_id, destination_id, topic, status, \
                         next_attempt_at, last_error, created_at, updated_at, finalized_at) ",
            );
            q.push_values(chunk, |mut b, (id, ev, dst, status)| {
                let finalized = status.is_terminal().then_some(now);
                let reason = status
                    .is_terminal()
                    .then_some(crate::domain::disable::DESTINATION_DISABLED);
                b.push_bind(id)
                    .push_bind(&ev.tenant_id)
                    .push_bind(&ev.id)
                    .push_bind(dst)
                    .push_bind(&ev.topic)
                    .push_bind(status.as_str())
                    .push_bind(now)
                    .push_bind(reason)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(finalized);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await.map_err(rows::idempotency_conflict)?;
        if scheduled_any {
            // After the commit, not inside the transaction: the hot path (see
            // `PostgresStore::announce_work_committed`).
            self.announce_work_committed();
        }
        Ok(out)
    }

    async fn get_event(&self, scope: Scope<'_>, id: &str) -> Result<Option<Event>> {
        sqlx::query_as::<_, rows::EventRow>(concat!(
            "SELECT ",
            event_cols!(),
            " FROM events WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
        .bind(id)
        .bind(scope.tenant())
        .fetch_optional(self.read())
        .await?
        .map(Event::try_from)
        .transpose()
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        sqlx::query_as::<_, rows::EventRow>(concat!(
            "SELECT ",
            event_cols!(),
            " FROM events WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
                     ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.read())
        .await?
        .into_iter()
        .map(Event::try_from)
        .collect()
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        sqlx::query_as::<_, rows::DeliveryRow>(concat!(
            "SELECT ",
            delivery_cols!(),
            " FROM deliveries WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR destination_id = $3) \
                     AND ($4 IS NULL OR topic = $4) AND ($5 IS NULL OR event_id = $5) \
                     AND ($6 IS NULL OR id < $6) AND ($8 IS NULL OR id >= $8) \
                     AND ($9 IS NULL OR id < $9) ORDER BY id DESC LIMIT $7"
        ))
        .bind(&q.tenant_id)
        .bind(q.status.map(|s| s.as_str()))
        .bind(&q.destination_id)
        .bind(&q.topic)
        .bind(&q.event_id)
        .bind(&q.after)
        .bind(q.limit as i64)
        // Time ranges as id ranges: ids are time-sortable (see `ids::time_bound`).
        .bind(
            q.since
                .map(|t| crate::domain::ids::time_bound(crate::domain::ids::Kind::Delivery, t)),
        )
        .bind(
            q.until
                .map(|t| crate::domain::ids::time_bound(crate::domain::ids::Kind::Delivery, t)),
        )
        .fetch_all(self.read())
        .await?
        .into_iter()
        .map(Delivery::try_from)
        .collect()
    }

    async fn get_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Option<Delivery>> {
        let Some(row) = sqlx::query_as::<_, rows::DeliveryRow>(concat!(
            "SELECT ",
            delivery_cols!(),
            " FROM deliveries WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
        .bind(id)
        .bind(scope.tenant())
        .fetch_optional(self.read())
        .await?
        else {
            return Ok(None);
        };
        let mut delivery = Delivery::try_from(row)?;
        let attempts = sqlx::query_as::<_, rows::AttemptRow>(concat!(
            "SELECT ",
            attempt_cols!(),
            " FROM attempts WHERE delivery_id = $1 ORDER BY attempt, id"
        ))
        .bind(id)
        .fetch_all(self.read())
        .await?
        .into_iter()
        .map(Attempt::try_from)
        .collect::<Result<Vec<_>>>()?;
        delivery.attempts = Some(attempts);
        Ok(Some(delivery))
    }

    async fn retry_delivery(&self, scope: Scope<'_>, id: &str, now: Millis) -> Result<Delivery> {
        let mut tx = self.write().begin().await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT status FROM deliveries WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)",
        )
        .bind(id)
        .bind(scope.tenant())
        .fetch_optional(&mut *tx)
        .await?;
        let from = rows::status(&current.ok_or(StoreError::NotFound("delivery"))?)?;
        if !from.can_transition(crate::domain::state::Transition::RESCHEDULE) {
            return Err(StoreError::Conflict(format!(
                "the delivery is {from}; wait for the attempt in flight to finish"
            )));
        }
        let row = sqlx::query_as::<_, rows::DeliveryRow>(crate::store::sql::RETRY.as_str())
            .bind(id)
            .bind(now)
            .bind(from.as_str())
            .fetch_one(&mut *tx)
            .await?;
        Self::announce_work(&mut tx).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn replay_event(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        destination_ids: Option<&[String]>,
        now: Millis,
    ) -> Result<u32> {
        let mut tx = self.write().begin().await?;
        let event = sqlx::query_as::<_, rows::EventRow>(concat!(
            "SELECT ",
            event_cols!(),
            " FROM events WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
        .bind(event_id)
        .bind(scope.tenant())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("event"))?;
        let existing: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, destination_id, status FROM deliveries WHERE event_id = $1")
                .bind(event_id)
                .fetch_all(&mut *tx)
                .await?;
        let targets: Vec<String> = match destination_ids {
            Some(ids) => ids.to_vec(),
            None => existing.iter().map(|(_, d, _)| d.clone()).collect(),
        };
        let mut scheduled = 0;
        for dst in &targets {
            match existing.iter().find(|(_, d, _)| d == dst) {
                Some((id, _, status)) => {
                    let from = rows::status(status)?;
                    if !from.is_terminal() {
                        continue; // already on its way
                    }
                    sqlx::query(crate::store::sql::REPLAY.as_str())
                        .bind(id)
                        .bind(now)
                        .bind(status)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    let owned: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM destinations WHERE id = $1 AND tenant_id = $2",
                    )
                    .bind(dst)
                    .bind(&event.tenant_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if owned.is_none() {
                        return Err(StoreError::NotFound("destination"));
                    }
                    sqlx::query(crate::store::sql::REPLAY_NEW.as_str())
                        .bind(crate::domain::ids::new_id(
                            crate::domain::ids::Kind::Delivery,
                        ))
                        .bind(&event.tenant_id)
                        .bind(event_id)
                        .bind(dst)
                        .bind(&event.topic)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            scheduled += 1;
        }
        if scheduled > 0 {
            Self::announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(scheduled)
    }

    async fn recover_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
        dry_run: bool,
        now: Millis,
    ) -> Result<Recovery> {
        let enabled: Option<bool> =
            sqlx::query_scalar("SELECT enabled FROM destinations WHERE id = $1 AND tenant_id = $2")
                .bind(destination_id)
                .bind(tenant_id)
                .fetch_optional(self.read())
                .await?;
        match enabled {
            None => return Err(StoreError::NotFound("destination")),
            Some(false) if !dry_run => {
                return Err(StoreError::Conflict(
                    "the destination is disabled; enable it before recovering".into(),
                ));
            }
            _ => {}
        }
        let id = crate::domain::ids::new_id(crate::domain::ids::Kind::Recovery);
        let mut recovery = Recovery {
            id: id.clone(),
            tenant_id: tenant_id.into(),
            destination_id: destination_id.into(),
            since,
            count: 0,
            created_at: now,
            progress: Default::default(),
            done: true,
        };
        if dry_run {
            let n: i64 = sqlx::query_scalar(crate::store::sql::RECOVER_COUNT.as_str())
                .bind(destination_id)
                .bind(tenant_id)
                .bind(since)
                .fetch_one(self.read())
                .await?;
            recovery.count = n as u64;
            return Ok(recovery);
        }
        sqlx::query(
            "INSERT INTO recoveries (id, tenant_id, destination_id, since, count, created_at) \
                    VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(destination_id)
        .bind(since)
        .bind(now)
        .execute(self.write())
        .await?;
        // Bounded batches, each its own short transaction: a recovery of a million
        // deliveries never holds a million row locks.
        loop {
            let mut tx = self.write().begin().await?;
            let r = sqlx::query(crate::store::sql::RECOVER_BATCH.as_str())
                .bind(destination_id)
                .bind(tenant_id)
                .bind(since)
                .bind(now)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            let n = r.rows_affected();
            recovery.count += n;
            sqlx::query("UPDATE recoveries SET count = count + $2 WHERE id = $1")
                .bind(&id)
                .bind(n as i64)
                .execute(&mut *tx)
                .await?;
            if n > 0 {
                Self::announce_work(&mut tx).await?;
            }
            tx.commit().await?;
            if n < 1000 {
                break;
            }
        }
        Ok(self.get_recovery(tenant_id, &id).await?.unwrap_or(recovery))
    }

    async fn get_recovery(&self, tenant_id: &str, id: &str) -> Result<Option<Recovery>> {
        let row: Option<(String, String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, tenant_id, destination_id, since, count, created_at FROM recoveries \
                     WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(self.read())
        .await?;
        let Some((id, tenant_id, destination_id, since, count, created_at)) = row else {
            return Ok(None);
        };
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM deliveries WHERE recovery_id = $1 GROUP BY status",
        )
        .bind(&id)
        .fetch_all(self.read())
        .await?;
        let done = counts
            .iter()
            .all(|(s, _)| rows::status(s).is_ok_and(|s| s.is_terminal()));
        Ok(Some(Recovery {
            id,
            tenant_id,
            destination_id,
            since,
            count: count as u64,
            created_at,
            progress: counts.into_iter().map(|(s, n)| (s, n as u64)).collect(),
            done,
        }))
    }

    async fn finish_batch(&self, fs: &[Finish]) -> Result<Vec<Finished>> {
        if let Some(out) = self.finish_successes_in_one_statement(fs).await? {
            return Ok(out);
        }
        let mut tx = self.write().begin().await?;
        let mut out = vec![Finished::default(); fs.len()];
        // Successes — the bulk of the traffic — are written set-wise: one insert for
        // all their attempts, one update for all their deliveries, one streak reset.
        // Failures (streaks, auto-disable, 410) take the row-by-row path.
        let (fast, slow): (Vec<usize>, Vec<usize>) = (0..fs.len())
            .partition(|&i| fs[i].next == DeliveryStatus::Succeeded && fs[i].attempt.is_some());
        for &i in &slow {
            out[i] = Self::finish_in_tx(&mut tx, &fs[i]).await?;
        }
        for chunk in fast.chunks(500) {
            let mut q = sqlx::QueryBuilder::<S::Db>::new(concat!(
                "INSERT INTO attempts (",
                attempt_cols!(),
                ", tenant_id) "
            ));
            q.push_values(chunk, |mut b, &i| {
                let f = &fs[i];
                let a = f.attempt.as_ref().expect("fast path has an attempt");
                b.push_bind(&a.id)
                    .push_bind(&a.delivery_id)
                    .push_bind(a.attempt as i32)
                    .push_bind(a.trigger.as_str())
                    .push_bind(a.started_at)
                    .push_bind(a.duration_ms as i64)
                    .push_bind(&a.url)
                    .push_bind(a.status_code.map(i32::from))
                    .push_bind(a.error_kind.map(|k| k.as_str()))
                    .push_bind(&a.error)
                    .push_bind(rows::to_json(&a.request_headers))
                    .push_bind(rows::to_json(&a.response_headers))
                    .push_bind(&a.response_body)
                    .push_bind(&f.tenant_id);
            });
            q.build().execute(&mut *tx).await?;

            let mut q =
                sqlx::QueryBuilder::<S::Db>::new(crate::store::sql::SUCCEED_MANY_HEAD.as_str());
            q.push_values(chunk, |mut b, &i| {
                let f = &fs[i];
                let code = f
                    .attempt
                    .as_ref()
                    .and_then(|a| a.status_code)
                    .map(i32::from);
                b.push_bind(&f.delivery_id)
                    .push_bind(f.attempt_number as i32)
                    .push_bind(code)
                    .push_bind(f.now);
            });
            q.push(crate::store::sql::SUCCEED_MANY_TAIL.as_str());
            let applied: std::collections::HashSet<String> = q
                .build_query_scalar::<String>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();

            let mut reset: Vec<&str> = Vec::new();
            for &i in chunk {
                if applied.contains(&fs[i].delivery_id) {
                    out[i].applied = true;
                    if !reset.contains(&fs[i].destination_id.as_str()) {
                        reset.push(&fs[i].destination_id);
                    }
                }
            }
            if !reset.is_empty() {
                let mut q = sqlx::QueryBuilder::<S::Db>::new(
                    "UPDATE destinations SET consecutive_failures = 0, failing_since = NULL \
                             WHERE (consecutive_failures > 0 OR failing_since IS NOT NULL) AND id \
                                 IN (",
                );
                let mut ids = q.separated(", ");
                for id in &reset {
                    ids.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn rescue_expired(&self, now: Millis) -> Result<u64> {
        let r = sqlx::query(crate::store::sql::RESCUE.as_str())
            .bind(now)
            .execute(self.write())
            .await?;
        if r.rows_affected() > 0 {
            let mut tx = self.write().begin().await?;
            Self::announce_work(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(r.rows_affected())
    }

    async fn release(&self, delivery_id: &str, attempt: u32, now: Millis) -> Result<bool> {
        let r = sqlx::query(crate::store::sql::RELEASE.as_str())
            .bind(delivery_id)
            .bind(attempt as i32)
            .bind(now)
            .execute(self.write())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn purge_before(&self, cutoff: Millis, batch: u32) -> Result<u64> {
        let mut tx = self.write().begin().await?;
        if !Self::maintenance_lock(&mut tx).await? {
            return Ok(0);
        }
        // Foreign keys cascade to deliveries and attempts.
        let r = sqlx::query(crate::store::sql::PURGE.as_str())
            .bind(cutoff)
            .bind(batch as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn queue_stats(&self, now: Millis) -> Result<(u64, Option<Millis>)> {
        let (n, oldest): (i64, Option<i64>) =
            sqlx::query_as(crate::store::sql::QUEUE_STATS.as_str())
                .bind(now)
                .fetch_one(self.read())
                .await?;
        Ok((n as u64, oldest))
    }

    async fn next_due(&self) -> Result<Option<Millis>> {
        Ok(sqlx::query_scalar(crate::store::sql::NEXT_DUE.as_str())
            .fetch_one(self.read())
            .await?)
    }

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
        sqlx::query(concat!(
            "INSERT INTO callback_endpoints (",
            callback_endpoint_cols!(),
            ") \
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 0, $8, $9)"
        ))
        .bind(&e.id)
        .bind(&e.slug)
        .bind(&e.tenant_id)
        .bind(&e.label)
        .bind(rows::sealed_verification(
            self.keys(),
            &e.id,
            &e.verification,
        ))
        .bind(rows::to_json(&e.metadata))
        .bind(&e.event_id)
        .bind(e.expires_at)
        .bind(e.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_callback_endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<Option<CallbackEndpoint>> {
        sqlx::query_as::<_, rows::CallbackEndpointRow>(concat!(
            "SELECT ",
            callback_endpoint_cols!(),
            " FROM callback_endpoints \
                     WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
        .bind(id)
        .bind(scope.tenant())
        .fetch_optional(self.read())
        .await?
        .map(|r| r.open(self.keys()))
        .transpose()
    }

    async fn find_callback_endpoint(&self, slug: &str) -> Result<Option<CallbackEndpoint>> {
        sqlx::query_as::<_, rows::CallbackEndpointRow>(concat!(
            "SELECT ",
            callback_endpoint_cols!(),
            " FROM callback_endpoints WHERE slug = $1"
        ))
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
        sqlx::query_as::<_, rows::CallbackEndpointRow>(concat!(
            "SELECT ",
            callback_endpoint_cols!(),
            " FROM callback_endpoints \
                     WHERE event_id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
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
        sqlx::query_as::<_, rows::CallbackEndpointRow>(concat!(
            "SELECT ",
            callback_endpoint_cols!(),
            " FROM callback_endpoints \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR id > $2) ORDER BY id \
                         LIMIT $3"
        ))
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
        use crate::domain::callback::CallbackStatus;
        if let Some(out) = self.ingest_in_one_statement(cs).await? {
            return Ok(out);
        }
        let mut tx = self.write().begin().await?;
        let mut out = vec![Ingested::Rejected; cs.len()];
        let mut by_endpoint: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
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
        for chunk in fast.chunks(500) {
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
        sqlx::query_as::<_, rows::CallbackRow>(concat!(
            "SELECT ",
            callback_cols!(),
            " FROM callbacks \
                     WHERE endpoint_id = $1 AND cursor > $2 ORDER BY cursor LIMIT $3"
        ))
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
        sqlx::query_as::<_, rows::CallbackRow>(concat!(
            "SELECT ",
            callback_cols!(),
            " FROM callbacks \
                     WHERE endpoint_id = $1 AND status = 'rejected' AND ($2 IS NULL OR id < $2) \
                     ORDER BY id DESC LIMIT $3"
        ))
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
        sqlx::query_as::<_, rows::CallbackRow>(concat!(
            "SELECT ",
            callback_cols!(),
            " FROM callbacks WHERE status = 'accepted' \
                     AND ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR endpoint_id = $2) \
                     AND ($3 IS NULL OR id > $3) \
                     AND ($4 IS NULL OR ($4 = 1) = (acked_at IS NOT NULL)) \
                     ORDER BY id LIMIT $5"
        ))
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
        sqlx::query_as::<_, rows::CallbackRow>(concat!(
            "SELECT ",
            callback_cols!(),
            " FROM callbacks \
                     WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
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
        sqlx::query_as::<_, rows::CallbackRow>(concat!(
            "UPDATE callbacks SET acked_at = COALESCE(acked_at, $3) \
                     WHERE id = $1 AND status = 'accepted' AND ($2 IS NULL OR tenant_id = $2) \
                     RETURNING ",
            callback_cols!()
        ))
        .bind(id)
        .bind(scope.tenant())
        .bind(now)
        .fetch_optional(self.write())
        .await?
        .map(Callback::try_from)
        .transpose()
    }

    async fn insert_portal_link(
        &self,
        hash: &str,
        tenant_id: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.write().begin().await?;
        // Links that ended a day ago no longer need explaining (see migration 0009).
        sqlx::query("DELETE FROM portal_links WHERE expires_at < $1")
            .bind(now - 86_400_000)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM portal_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO portal_links (token_hash, tenant_id, expires_at, created_at) \
                     SELECT $1, id, $3, $4 FROM tenants WHERE id = $2",
        )
        .bind(hash)
        .bind(tenant_id)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn redeem_portal_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        session_expires_at: Millis,
        now: Millis,
    ) -> Result<crate::store::LinkState> {
        use crate::store::LinkState;
        let mut tx = self.write().begin().await?;
        // Checked and spent in one statement: of two racing redeemers only one updates.
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE portal_links SET used_at = $2 \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING \
                         tenant_id",
        )
        .bind(link_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tenant_id) = tenant else {
            let found: Option<(String, Option<i64>, i64)> = sqlx::query_as(
                "SELECT tenant_id, used_at, expires_at FROM portal_links WHERE token_hash = $1",
            )
            .bind(link_hash)
            .fetch_optional(&mut *tx)
            .await?;
            return Ok(LinkState::of(found, now));
        };
        sqlx::query(
            "INSERT INTO portal_sessions (token_hash, tenant_id, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4)",
        )
        .bind(session_hash)
        .bind(&tenant_id)
        .bind(session_expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(LinkState::Usable { tenant_id })
    }

    async fn check_portal_link(
        &self,
        link_hash: &str,
        now: Millis,
    ) -> Result<crate::store::LinkState> {
        // On the writer: a link redeemed a moment ago must not read as usable.
        let found: Option<(String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT tenant_id, used_at, expires_at FROM portal_links WHERE token_hash = $1",
        )
        .bind(link_hash)
        .fetch_optional(self.write())
        .await?;
        Ok(crate::store::LinkState::of(found, now))
    }

    async fn find_portal_session(&self, hash: &str, now: Millis) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT tenant_id FROM portal_sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(self.read())
        .await?)
    }

    async fn delete_portal_session(&self, hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM portal_sessions WHERE token_hash = $1")
            .bind(hash)
            .execute(self.write())
            .await?;
        Ok(())
    }

    async fn destination_health(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
    ) -> Result<crate::domain::health::DestinationHealth> {
        use crate::domain::health::{DestinationHealth, LastOutcome};
        // Destination ids are unique across tenants and a destination's deliveries are
        // its tenant's: checking the owner once scopes both queries below.
        let owner: Option<String> =
            sqlx::query_scalar("SELECT tenant_id FROM destinations WHERE id = $1")
                .bind(destination_id)
                .fetch_optional(self.read())
                .await?;
        if owner.as_deref() != Some(tenant_id) {
            return Err(StoreError::NotFound("destination"));
        }
        let since = crate::domain::ids::time_bound(crate::domain::ids::Kind::Delivery, since);
        // Both walk the (destination_id, id) index backwards from the newest delivery,
        // and stop after the sample (see migration 0009).
        // The sample is cut before filtering on status, so a destination with a day of
        // skipped deliveries still costs at most HEALTH_SAMPLE rows.
        let sample = crate::domain::health::HEALTH_SAMPLE as i64;
        let (sampled, succeeded, failed): (i64, i64, i64) =
            sqlx::query_as(crate::store::sql::HEALTH_COUNTS.as_str())
                .bind(destination_id)
                .bind(&since)
                .bind(sample)
                .fetch_one(self.read())
                .await?;
        let last: Option<(String, Option<i32>, Option<String>, i64)> =
            sqlx::query_as(crate::store::sql::HEALTH_LAST.as_str())
                .bind(destination_id)
                .bind(sample)
                .fetch_optional(self.read())
                .await?;
        let last = last
            .map(|(status, code, error, at)| -> Result<LastOutcome> {
                Ok(LastOutcome {
                    status: rows::status(&status)?,
                    status_code: code.map(|c| c as u16),
                    error,
                    at,
                })
            })
            .transpose()?;
        Ok(DestinationHealth {
            sampled: sampled as u64,
            succeeded: succeeded as u64,
            failed: failed as u64,
            last,
        })
    }
}

/// The shared helpers the `Store` methods and the dialects' claims call.
#[async_trait::async_trait]
pub(crate) trait Helpers: Dialect {
    /// Seals (or re-seals under the current key) every value of `column` that needs it, a
    /// page at a time. Each update names the value it replaces, so a node doing the same at
    /// the same moment, or a concurrent write, is never overwritten.
    async fn reseal_column(&self, column: crate::store::seal::Column) -> Result<u64>;

    /// One capture inside the caller's transaction (see `Store::ingest_callback`).
    async fn ingest_in_tx(tx: &mut Transaction<'_, Self::Db>, c: &Callback) -> Result<Ingested>;

    /// Inserts callbacks with their cursors (`None`: rejected) in one statement.
    async fn insert_callbacks(
        tx: &mut Transaction<'_, Self::Db>,
        items: &[(&Callback, Option<i64>)],
    ) -> Result<()>;

    /// One outcome, inside the caller's transaction (see `Store::finish_batch`).
    async fn finish_in_tx(tx: &mut Transaction<'_, Self::Db>, f: &Finish) -> Result<Finished>;

    /// Claims, inside `tx`, up to `budget` due deliveries of destinations that have limits
    /// (`max_in_flight`, `rate_limit`, FIFO ordering), respecting them; returns the claimed
    /// ids. All such claims are serialized (`Dialect::limits_lock`), so two nodes never both
    /// see a free slot and both take it.
    async fn claim_limited(
        tx: &mut Transaction<'_, Self::Db>,
        budget: u32,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<String>>;
}

#[async_trait::async_trait]
impl<S> Helpers for S
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
    for<'q, 'r> i32: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<i32>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> bool: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Encode<'q, S::Db> + Type<S::Db>,
    for<'r> rows::TenantRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::TokenRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::DestinationRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::EventRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::DeliveryRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::AttemptRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::CallbackEndpointRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::CallbackRow: FromRow<'r, <S::Db as Database>::Row>,
{
    /// Seals (or re-seals under the current key) every value of `column` that needs
    /// it, a page at a time. Each update names the value it replaces, so a node doing
    /// the same at the same moment, or a concurrent write, is never overwritten.
    async fn reseal_column(&self, column: crate::store::seal::Column) -> Result<u64> {
        let current = format!(
            "{}{}:%",
            crate::store::seal::PREFIX,
            self.keys().current_id()
        );
        let select = format!(
            "SELECT {id}, {col} FROM {table} WHERE {col} IS NOT NULL AND {col} NOT LIKE $1 \
                     AND {id} > $2 ORDER BY {id} LIMIT 500",
            id = column.id,
            col = column.name,
            table = column.table
        );
        let update = format!(
            "UPDATE {table} SET {col} = $1 WHERE {id} = $2 AND {col} = $3",
            id = column.id,
            col = column.name,
            table = column.table
        );
        let mut after = String::new();
        let mut sealed = 0;
        loop {
            let page: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(select.clone()))
                .bind(&current)
                .bind(&after)
                .fetch_all(self.write())
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (id, stored) in &page {
                if let Some(value) = self.keys().reseal(column, id, stored)? {
                    sealed += sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                        .bind(value)
                        .bind(id)
                        .bind(stored)
                        .execute(self.write())
                        .await?
                        .rows_affected();
                }
            }
        }
        Ok(sealed)
    }

    /// One capture inside the caller's transaction (see `Store::ingest_callback`).
    async fn ingest_in_tx(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        c: &Callback,
    ) -> Result<Ingested> {
        use crate::domain::callback::CallbackStatus;
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
                                received_count = received_count - 1, duplicate_count = \
                                    duplicate_count + 1 \
                                WHERE id = $1",
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

    /// Inserts callbacks with their cursors (`None`: rejected) in one statement.
    async fn insert_callbacks(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        items: &[(&Callback, Option<i64>)],
    ) -> Result<()> {
        let mut q = sqlx::QueryBuilder::<Self::Db>::new(concat!(
            "INSERT INTO callbacks (",
            callback_cols!(),
            ") "
        ));
        q.push_values(items, |mut b, (c, cursor)| {
            b.push_bind(&c.id)
                .push_bind(&c.endpoint_id)
                .push_bind(&c.tenant_id)
                .push_bind(*cursor)
                .push_bind(&c.method)
                .push_bind(&c.path)
                .push_bind(&c.query)
                .push_bind(rows::to_json(&c.headers))
                .push_bind(&c.body)
                .push_bind(&c.content_type)
                .push_bind(&c.remote_addr)
                .push_bind(c.received_at)
                .push_bind(c.verified)
                .push_bind(c.status.as_str())
                .push_bind(&c.reject_reason)
                .push_bind(&c.dedupe_key)
                .push_bind(c.a2a.as_ref().map(|a| a.task_id.as_str()))
                .push_bind(c.a2a.as_ref().and_then(|a| a.state.as_deref()))
                .push_bind(c.acked_at);
        });
        q.build().execute(&mut **tx).await?;
        Ok(())
    }

    /// One outcome, inside the caller's transaction (see `Store::finish_batch`).
    async fn finish_in_tx(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        f: &Finish,
    ) -> Result<Finished> {
        debug_assert!(DeliveryStatus::Delivering.can_transition(f.next));
        if let Some(a) = &f.attempt {
            sqlx::query(concat!(
                "INSERT INTO attempts (",
                attempt_cols!(),
                ", tenant_id) VALUES \
                        ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .bind(&a.id)
            .bind(&a.delivery_id)
            .bind(a.attempt as i32)
            .bind(a.trigger.as_str())
            .bind(a.started_at)
            .bind(a.duration_ms as i64)
            .bind(&a.url)
            .bind(a.status_code.map(i32::from))
            .bind(a.error_kind.map(|k| k.as_str()))
            .bind(&a.error)
            .bind(rows::to_json(&a.request_headers))
            .bind(rows::to_json(&a.response_headers))
            .bind(&a.response_body)
            .bind(&f.tenant_id)
            .execute(&mut **tx)
            .await?;
        }
        let finalized = f.next.is_terminal().then_some(f.now);
        let status_code = f
            .attempt
            .as_ref()
            .and_then(|a| a.status_code)
            .map(i32::from);
        let given_back = i32::from(f.attempt.is_none());
        let r = sqlx::query(crate::store::sql::FINISH.as_str())
            .bind(&f.delivery_id)
            .bind(f.attempt_number as i32)
            .bind(f.next.as_str())
            .bind(f.next_attempt_at)
            .bind(status_code)
            .bind(&f.last_error)
            .bind(f.now)
            .bind(finalized)
            .bind(given_back)
            .execute(&mut **tx)
            .await?;
        let applied = r.rows_affected() > 0;
        let mut disabled = None;
        if applied && f.attempt.is_some() {
            if f.next == DeliveryStatus::Succeeded {
                sqlx::query(
                    "UPDATE destinations SET consecutive_failures = 0, failing_since = \
                    NULL \
                            WHERE id = $1 AND (consecutive_failures > 0 OR failing_since IS NOT \
                                NULL)",
                )
                .bind(&f.destination_id)
                .execute(&mut **tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE destinations SET consecutive_failures = consecutive_failures + 1, \
                            failing_since = COALESCE(failing_since, $2) WHERE id = $1",
                )
                .bind(&f.destination_id)
                .bind(f.now)
                .execute(&mut **tx)
                .await?;
                let limits = f.auto_disable;
                let reason = match &f.disable_destination {
                    Some(reason) => Some(reason.clone()),
                    None => {
                        let streak: Option<(i32, Option<i64>)> = sqlx::query_as(
                            "SELECT consecutive_failures, failing_since FROM destinations \
                                        WHERE id = $1",
                        )
                        .bind(&f.destination_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                        streak.and_then(|(n, since)| {
                            let streak = crate::domain::disable::Streak {
                                consecutive_failures: n as u32,
                                failing_since: since,
                            };
                            limits.reason(streak, f.now)
                        })
                    }
                };
                if let Some(reason) = reason {
                    let r = sqlx::query(
                        "UPDATE destinations SET enabled = FALSE, disabled_reason \
                        = $3, \
                                disabled_at = $4, updated_at = $4 WHERE id = $1 AND tenant_id = \
                                    $2 AND enabled",
                    )
                    .bind(&f.destination_id)
                    .bind(&f.tenant_id)
                    .bind(&reason)
                    .bind(f.now)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() > 0 {
                        disabled = Some(reason);
                    }
                }
            }
        }
        Ok(Finished { applied, disabled })
    }

    /// Claims, inside `tx`, up to `budget` due deliveries of destinations that have
    /// limits (`max_in_flight`, `rate_limit`, FIFO ordering), respecting them; returns
    /// the claimed ids. All such claims are serialized (`Self::limits_lock`), so two
    /// nodes never both see a free slot and both take it.
    async fn claim_limited(
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        budget: u32,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<String>> {
        let candidates: Vec<String> =
            sqlx::query_scalar(crate::store::sql::LIMITED_CANDIDATES.as_str())
                .bind(now)
                .fetch_all(&mut **tx)
                .await?;
        if candidates.is_empty() || budget == 0 {
            return Ok(vec![]);
        }
        Self::limits_lock(tx).await?;
        use crate::domain::allowance::{self, Limits, Load};
        let mut claimed = Vec::new();
        for dst in candidates {
            let Some(left) = budget.checked_sub(claimed.len() as u32).filter(|&n| n > 0) else {
                break;
            };
            let (max_in_flight, rate_limit, fifo, window, used): (
                Option<i32>,
                Option<i32>,
                bool,
                Option<i64>,
                i32,
            ) = sqlx::query_as(
                "SELECT max_in_flight, rate_limit, fifo, rate_window_start, rate_window_count \
                            FROM destinations WHERE id = $1",
            )
            .bind(&dst)
            .fetch_one(&mut **tx)
            .await?;
            let in_flight: i64 = sqlx::query_scalar(crate::store::sql::IN_FLIGHT.as_str())
                .bind(&dst)
                .fetch_one(&mut **tx)
                .await?;
            let limits = Limits {
                max_in_flight: max_in_flight.map(|n| n.max(0) as u32),
                rate_limit: rate_limit.map(|n| n.max(0) as u32),
                fifo,
            };
            let used = allowance::used_in_window(window, used.max(0) as u64, now);
            let load = Load {
                in_flight: in_flight.max(0) as u64,
                sent_this_second: used,
            };
            let allowance = allowance::allowance(left, limits, load);
            if allowance == 0 {
                continue;
            }
            let ids: Vec<String> = if fifo {
                // Publish order: only the oldest unfinished delivery may go, and only
                // once it is due; everything behind it waits, retries included.
                let head: Option<(String, String, Option<i64>)> =
                    sqlx::query_as(crate::store::sql::FIFO_HEAD.as_str())
                        .bind(&dst)
                        .fetch_optional(&mut **tx)
                        .await?;
                match head {
                    Some((id, status, due))
                        if allowance::fifo_head_may_go(rows::status(&status)?, due, now) =>
                    {
                        sqlx::query_scalar(crate::store::sql::CLAIM_ONE.as_str())
                            .bind(&id)
                            .bind(lease_until)
                            .bind(now)
                            .fetch_all(&mut **tx)
                            .await?
                    }
                    _ => vec![],
                }
            } else {
                sqlx::query_scalar(crate::store::sql::CLAIM_OF_DESTINATION.as_str())
                    .bind(&dst)
                    .bind(now)
                    .bind(lease_until)
                    .bind(allowance as i64)
                    .fetch_all(&mut **tx)
                    .await?
            };
            if rate_limit.is_some() && !ids.is_empty() {
                sqlx::query(
                    "UPDATE destinations SET rate_window_start = $2, rate_window_count = \
                    $3 WHERE id = $1",
                )
                .bind(&dst)
                .bind(allowance::rate_window(now))
                .bind((used + ids.len() as u64) as i32)
                .execute(&mut **tx)
                .await?;
            }
            claimed.extend(ids);
        }
        Ok(claimed)
    }
}
