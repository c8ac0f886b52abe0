//! Tenants and the API tokens that act for them (or for the platform).
//!
//! A tenant owns everything else: deleting it cascades, through the schema's foreign keys, to
//! its tokens, destinations, events, deliveries and attempts.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Type};

use crate::domain::model::Tenant;
use crate::domain::time::Millis;
use crate::store::dialect::{Dialect, RowsAffected};
use crate::store::sql::Sql;
use crate::store::{Result, TokenRecord, rows};

/// The columns of [`rows::TenantRow`].
pub(crate) const TENANT: &str = "id, metadata, created_at, updated_at";

static UPDATE_TENANT: Sql = Sql::new(|| {
    format!("UPDATE tenants SET metadata = $2, updated_at = $3 WHERE id = $1 RETURNING {TENANT}")
});

static INSERT_TENANT: Sql = Sql::new(|| {
    format!(
        "INSERT INTO tenants (id, metadata, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         RETURNING {TENANT}"
    )
});

static GET_TENANT: Sql = Sql::new(|| format!("SELECT {TENANT} FROM tenants WHERE id = $1"));

static LIST_TENANTS: Sql = Sql::new(|| {
    format!("SELECT {TENANT} FROM tenants WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2")
});

/// The queries of tenants and API tokens, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Tenants: Dialect {
    async fn insert_token(
        &self,
        id: &str,
        hash: &str,
        tenant_id: Option<&str>,
        now: Millis,
    ) -> Result<()>;
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn has_admin_token(&self) -> Result<bool>;
    async fn upsert_tenant(
        &self,
        id: &str,
        metadata: &serde_json::Value,
        now: Millis,
    ) -> Result<(Tenant, bool)>;
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>>;
    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>>;
    async fn delete_tenant(&self, id: &str) -> Result<bool>;
}

#[async_trait::async_trait]
impl<S> Tenants for S
where
    S: Dialect,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> String: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q, 'r> i64: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'r> rows::TenantRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> rows::TokenRow: FromRow<'r, <S::Db as Database>::Row>,
{
    async fn insert_token(
        &self,
        id: &str,
        hash: &str,
        tenant_id: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, created_at) \
             VALUES ($1, $2, $3, $4)",
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
            &UPDATE_TENANT
        } else {
            &INSERT_TENANT
        };
        let row = sqlx::query_as::<_, rows::TenantRow>(sql.as_str())
            .bind(id)
            .bind(rows::to_json(metadata))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((row.try_into()?, exists.is_none()))
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        sqlx::query_as::<_, rows::TenantRow>(GET_TENANT.as_str())
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .map(Tenant::try_from)
            .transpose()
    }

    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        sqlx::query_as::<_, rows::TenantRow>(LIST_TENANTS.as_str())
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
}
