//! Destinations: where a tenant's events go, with their sealed credentials.
//!
//! What the rest of the store changes on a destination as deliveries run — the failure
//! streak, the disabling, the rate window — is written where those deliveries finish and are
//! claimed, in [`super::deliveries`].

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Type};

use crate::domain::disable;
use crate::domain::model::Destination;
use crate::domain::state::Transition;
use crate::domain::time::Millis;
use crate::store::columns::{Columns, Write};
use crate::store::dialect::{Dialect, RowsAffected};
use crate::store::seal::{DESTINATION_HEADERS, DESTINATION_SECRETS, Keyring};
use crate::store::sql::{self, Sql};
use crate::store::{Result, StoreError, rows};

/// The columns of [`rows::DestinationRow`].
pub(crate) const DESTINATION: &str = "id, tenant_id, kind, url, description, topics, filter, \
    headers, options, secrets, enabled, disabled_reason, disabled_at, created_at, updated_at, \
    amqp_url, amqp_exchange, amqp_routing_key";

static GET_DESTINATION: Sql =
    Sql::new(|| format!("SELECT {DESTINATION} FROM destinations WHERE id = $1 AND tenant_id = $2"));

static LIST_DESTINATIONS: Sql = Sql::new(|| {
    format!(
        "SELECT {DESTINATION} FROM destinations \
         WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )
});

/// Every destination of a tenant (`$1`), as publishing fans out to them.
pub(crate) static DESTINATIONS_OF_TENANT: Sql =
    Sql::new(|| format!("SELECT {DESTINATION} FROM destinations WHERE tenant_id = $1 ORDER BY id"));

static INSERT_DESTINATION: Write = Write::insert("destinations");

static UPDATE_DESTINATION: Write = Write::update("destinations", String::new);

/// The pending deliveries of a deleted destination are cancelled (`$1` destination, `$2` now).
static CANCEL_PENDING_OF_DESTINATION: Sql = Sql::new(|| {
    let t = Transition::CANCEL_PENDING;
    format!(
        "UPDATE deliveries SET status = {to}, finalized_at = $2, updated_at = $2, \
         last_error = {why} WHERE destination_id = $1 AND status IN ({from})",
        to = sql::status(t.to),
        from = sql::statuses(t.from),
        why = sql::text(disable::DESTINATION_DELETED),
    )
});

/// The queries of destinations, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Destinations: Dialect {
    async fn insert_destination(&self, d: &Destination, max_per_tenant: u32) -> Result<()>;
    async fn get_destination(&self, tenant_id: &str, id: &str) -> Result<Option<Destination>>;
    async fn list_destinations(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Destination>>;
    async fn update_destination(&self, d: &Destination) -> Result<bool>;
    async fn delete_destination(&self, tenant_id: &str, id: &str, now: Millis) -> Result<bool>;
}

/// The columns an insert and an update both write: every mutable field of `d`.
fn mutable_columns<DB>(cols: &mut Columns<DB>, d: &Destination, keys: &Keyring)
where
    DB: Database,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
{
    let (max_in_flight, rate_limit, fifo) = rows::limits(&d.options);
    let (amqp_url, amqp_exchange, amqp_routing_key) = rows::amqp_columns(d, keys);
    let headers = rows::sealed_json(keys, DESTINATION_HEADERS, &d.id, &d.headers);
    let secrets = rows::sealed_json(keys, DESTINATION_SECRETS, &d.id, &d.secrets);
    cols.set("url", &d.url)
        .set("description", &d.description)
        .set("topics", rows::to_json(&d.topics))
        .set("filter", d.filter.as_ref().map(rows::to_json))
        .set("headers", headers)
        .set("options", rows::to_json(&d.options))
        .set("secrets", secrets)
        .set("enabled", d.enabled)
        .set("disabled_reason", &d.disabled_reason)
        .set("disabled_at", d.disabled_at)
        .set("updated_at", d.updated_at)
        .set("max_in_flight", max_in_flight)
        .set("rate_limit", rate_limit)
        .set("fifo", fifo)
        .set("amqp_url", amqp_url)
        .set("amqp_exchange", amqp_exchange)
        .set("amqp_routing_key", amqp_routing_key);
}

#[async_trait::async_trait]
impl<S> Destinations for S
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
    for<'r> rows::DestinationRow: FromRow<'r, <S::Db as Database>::Row>,
{
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
        let mut cols = Columns::new();
        cols.set("id", &d.id)
            .set("tenant_id", &d.tenant_id)
            .set("kind", d.kind.as_str())
            .set("created_at", d.created_at);
        mutable_columns(&mut cols, d, self.keys());
        INSERT_DESTINATION.query(cols)?.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_destination(&self, tenant_id: &str, id: &str) -> Result<Option<Destination>> {
        sqlx::query_as::<_, rows::DestinationRow>(GET_DESTINATION.as_str())
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
        sqlx::query_as::<_, rows::DestinationRow>(LIST_DESTINATIONS.as_str())
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
        let mut tx = self.write().begin().await?;
        if d.enabled {
            // `disable::Streak`: a destination enabled again starts a new failure streak.
            // Done before the update, which is what still sees that it was disabled.
            sqlx::query(
                "UPDATE destinations SET consecutive_failures = 0, failing_since = NULL \
                 WHERE id = $1 AND tenant_id = $2 AND enabled = FALSE",
            )
            .bind(&d.id)
            .bind(&d.tenant_id)
            .execute(&mut *tx)
            .await?;
        }
        let mut cols = Columns::new();
        cols.key("id", &d.id).key("tenant_id", &d.tenant_id);
        mutable_columns(&mut cols, d, self.keys());
        let r = UPDATE_DESTINATION.query(cols)?.execute(&mut *tx).await?;
        tx.commit().await?;
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
        sqlx::query(CANCEL_PENDING_OF_DESTINATION.as_str())
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
