//! Maintenance: the health check, encryption at rest (sealing at start-up, re-sealing after a
//! key rotation) and retention (purging old, finished events).

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use crate::domain::state::DeliveryStatus;
use crate::domain::time::Millis;
use crate::store::Result;
use crate::store::dialect::{Dialect, RowsAffected};
use crate::store::seal::{self, SEALED_COLUMNS, SealError};
use crate::store::sql::{self, Sql};

/// Values per page of a re-seal.
const RESEAL_PAGE: u32 = 500;

/// Up to `$2` events created before `$1` with nothing left to deliver. Events still being
/// delivered are kept whatever their age: retention never drops accepted work.
static PURGE: Sql = Sql::new(|| {
    format!(
        "DELETE FROM events WHERE id IN ( \
           SELECT e.id FROM events e WHERE e.created_at < $1 AND NOT EXISTS ( \
             SELECT 1 FROM deliveries x WHERE x.event_id = e.id \
             AND x.status IN ({unfinished})) \
           ORDER BY e.created_at LIMIT $2)",
        unfinished = sql::statuses(DeliveryStatus::UNFINISHED),
    )
});

/// The maintenance queries, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Maintenance: Dialect {
    async fn ping(&self) -> Result<()>;
    async fn seal_at_rest(&self, now: Millis) -> Result<u64>;
    /// Seals (or re-seals under the current key) every value of `column` that needs it, a
    /// page at a time. Each update names the value it replaces, so a node doing the same at
    /// the same moment, or a concurrent write, is never overwritten.
    async fn reseal_column(&self, column: seal::Column) -> Result<u64>;
    async fn purge_before(&self, cutoff: Millis, batch: u32) -> Result<u64>;
}

#[async_trait::async_trait]
impl<S> Maintenance for S
where
    S: Dialect,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> String: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Type<S::Db>,
{
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.read()).await?;
        Ok(())
    }

    async fn seal_at_rest(&self, now: Millis) -> Result<u64> {
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

    async fn reseal_column(&self, column: seal::Column) -> Result<u64> {
        let current = format!("{}{}:%", seal::PREFIX, self.keys().current_id());
        let (id, col, table) = (column.id, column.name, column.table);
        let select = format!(
            "SELECT {id}, {col} FROM {table} WHERE {col} IS NOT NULL AND {col} NOT LIKE $1 \
             AND {id} > $2 ORDER BY {id} LIMIT {RESEAL_PAGE}"
        );
        let update = format!("UPDATE {table} SET {col} = $1 WHERE {id} = $2 AND {col} = $3");
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

    async fn purge_before(&self, cutoff: Millis, batch: u32) -> Result<u64> {
        let mut tx = self.write().begin().await?;
        if !Self::maintenance_lock(&mut tx).await? {
            return Ok(0);
        }
        // Foreign keys cascade to deliveries and attempts.
        let r = sqlx::query(PURGE.as_str())
            .bind(cutoff)
            .bind(batch as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_keeps_events_with_unfinished_deliveries() {
        assert!(PURGE.contains("IN ('scheduled', 'retrying', 'delivering')"));
    }
}
