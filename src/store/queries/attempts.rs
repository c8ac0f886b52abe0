//! Attempts: the log of every send, one row per try, read back with its delivery.
//!
//! Attempts are only ever inserted (as a delivery finishes, in [`super::deliveries`]) and
//! read; they go when their delivery does.

use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Transaction, Type,
};

use crate::domain::model::Attempt;
use crate::store::columns::{self, Columns, Write};
use crate::store::dialect::Dialect;
use crate::store::sql::Sql;
use crate::store::{Result, rows};

/// The columns of [`rows::AttemptRow`].
const ATTEMPT: &str = "id, delivery_id, attempt, trigger, started_at, duration_ms, url, \
    status_code, error_kind, error, request_headers, response_headers, response_body";

static ATTEMPTS_OF_DELIVERY: Sql = Sql::new(|| {
    format!("SELECT {ATTEMPT} FROM attempts WHERE delivery_id = $1 ORDER BY attempt, id")
});

static INSERT_ATTEMPT: Write = Write::insert("attempts");

/// The queries of attempts, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Attempts: Dialect {
    /// A delivery's attempts, oldest first.
    async fn attempts_of(&self, delivery_id: &str) -> Result<Vec<Attempt>>;

    /// Logs one attempt of a delivery of `tenant_id`, inside the caller's transaction.
    async fn insert_attempt(
        tx: &mut Transaction<'_, Self::Db>,
        a: &Attempt,
        tenant_id: &str,
    ) -> Result<()>;

    /// Logs several attempts, each with its tenant, in one statement.
    async fn insert_attempts(
        tx: &mut Transaction<'_, Self::Db>,
        attempts: &[(&Attempt, &str)],
    ) -> Result<()>;
}

/// An attempt row's columns.
fn attempt_columns<DB>(cols: &mut Columns<DB>, a: &Attempt, tenant_id: &str)
where
    DB: Database,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
{
    cols.set("id", &a.id)
        .set("delivery_id", &a.delivery_id)
        .set("attempt", a.attempt as i32)
        .set("trigger", a.trigger.as_str())
        .set("started_at", a.started_at)
        .set("duration_ms", a.duration_ms as i64)
        .set("url", &a.url)
        .set("status_code", a.status_code.map(i32::from))
        .set("error_kind", a.error_kind.map(|k| k.as_str()))
        .set("error", &a.error)
        .set("request_headers", rows::to_json(&a.request_headers))
        .set("response_headers", rows::to_json(&a.response_headers))
        .set("response_body", &a.response_body)
        .set("tenant_id", tenant_id);
}

#[async_trait::async_trait]
impl<S> Attempts for S
where
    S: Dialect,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> String: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q> Option<String>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> i32: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<i32>: Encode<'q, S::Db> + Type<S::Db>,
    for<'r> rows::AttemptRow: FromRow<'r, <S::Db as Database>::Row>,
{
    async fn attempts_of(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        sqlx::query_as::<_, rows::AttemptRow>(ATTEMPTS_OF_DELIVERY.as_str())
            .bind(delivery_id)
            .fetch_all(self.read())
            .await?
            .into_iter()
            .map(Attempt::try_from)
            .collect()
    }

    async fn insert_attempt(
        tx: &mut Transaction<'_, Self::Db>,
        a: &Attempt,
        tenant_id: &str,
    ) -> Result<()> {
        let mut cols = Columns::new();
        attempt_columns(&mut cols, a, tenant_id);
        INSERT_ATTEMPT.query(cols)?.execute(&mut **tx).await?;
        Ok(())
    }

    async fn insert_attempts(
        tx: &mut Transaction<'_, Self::Db>,
        attempts: &[(&Attempt, &str)],
    ) -> Result<()> {
        columns::insert_rows("attempts", attempts, |cols, (a, tenant_id)| {
            attempt_columns(cols, a, tenant_id)
        })?
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
