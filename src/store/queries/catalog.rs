//! The event-type catalog: one row per type, its version bumped in the same statement that
//! changes it.
//!
//! Every change is announced to the other processes sharing the database (the dialect's
//! [`Dialect::announce_catalog`]), in the changing transaction, so no node validates against a
//! definition that was replaced.

use sqlx::{ColumnIndex, Database, Encode, Executor, FromRow, IntoArguments, Type};

use crate::domain::catalog::EventType;
use crate::domain::time::Millis;
use crate::store::dialect::{Dialect, RowsAffected};
use crate::store::sql::Sql;
use crate::store::{Result, rows};

/// The columns of [`rows::EventTypeRow`].
const EVENT_TYPE: &str =
    "name, description, schema, examples, deprecated, archived, version, created_at, updated_at";

/// Creates a type at version 1, or replaces its definition and moves its version on by one.
/// Both dialects have `ON CONFLICT … DO UPDATE` and `RETURNING` (SQLite since 3.35).
static PUT_EVENT_TYPE: Sql = Sql::new(|| {
    format!(
        "INSERT INTO event_types ({EVENT_TYPE}) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) \
         ON CONFLICT (name) DO UPDATE SET description = excluded.description, \
           schema = excluded.schema, examples = excluded.examples, \
           deprecated = excluded.deprecated, archived = excluded.archived, \
           version = event_types.version + 1, updated_at = excluded.updated_at \
         RETURNING {EVENT_TYPE}"
    )
});

static GET_EVENT_TYPE: Sql =
    Sql::new(|| format!("SELECT {EVENT_TYPE} FROM event_types WHERE name = $1"));

static LIST_EVENT_TYPES: Sql = Sql::new(|| {
    format!(
        "SELECT {EVENT_TYPE} FROM event_types WHERE ($1 IS NULL OR name > $1) \
         AND ($2 OR NOT archived) ORDER BY name LIMIT $3"
    )
});

/// A definition to save: checked by the caller ([`crate::domain::catalog::check_definition`]).
#[derive(Debug, Clone)]
pub struct NewEventType<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub schema: Option<&'a serde_json::Value>,
    pub examples: &'a [serde_json::Value],
    pub deprecated: bool,
    pub archived: bool,
}

/// The queries of the event-type catalog, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Catalog: Dialect {
    async fn put_event_type(&self, t: &NewEventType<'_>, now: Millis) -> Result<EventType>;
    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>>;
    async fn list_event_types(
        &self,
        after: Option<&str>,
        limit: u32,
        include_archived: bool,
    ) -> Result<Vec<EventType>>;
    async fn delete_event_type(&self, name: &str) -> Result<bool>;
}

#[async_trait::async_trait]
impl<S> Catalog for S
where
    S: Dialect,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<String>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> bool: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Type<S::Db>,
    for<'r> rows::EventTypeRow: FromRow<'r, <S::Db as Database>::Row>,
{
    async fn put_event_type(&self, t: &NewEventType<'_>, now: Millis) -> Result<EventType> {
        let mut tx = self.write().begin().await?;
        let row = sqlx::query_as::<_, rows::EventTypeRow>(PUT_EVENT_TYPE.as_str())
            .bind(t.name)
            .bind(t.description)
            .bind(t.schema.map(rows::to_json))
            .bind(rows::to_json(&t.examples))
            .bind(t.deprecated)
            .bind(t.archived)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        Self::announce_catalog(&mut tx).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        sqlx::query_as::<_, rows::EventTypeRow>(GET_EVENT_TYPE.as_str())
            .bind(name)
            .fetch_optional(self.read())
            .await?
            .map(EventType::try_from)
            .transpose()
    }

    async fn list_event_types(
        &self,
        after: Option<&str>,
        limit: u32,
        include_archived: bool,
    ) -> Result<Vec<EventType>> {
        sqlx::query_as::<_, rows::EventTypeRow>(LIST_EVENT_TYPES.as_str())
            .bind(after)
            .bind(include_archived)
            .bind(limit as i64)
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(EventType::try_from)
            .collect()
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let mut tx = self.write().begin().await?;
        let r = sqlx::query("DELETE FROM event_types WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() > 0 {
            Self::announce_catalog(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }
}
