//! The tenant portal: single-use login links, the sessions they open (both stored as SHA-256
//! hashes only), and the health of a destination the portal shows.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use crate::domain::health::{self, DestinationHealth, LastOutcome};
use crate::domain::ids::{self, Kind};
use crate::domain::time::Millis;
use crate::store::dialect::{Dialect, RowsAffected};
use crate::store::sql::{self, Sql};
use crate::store::{LinkState, Result, StoreError, rows};

/// How long a link that ended is kept, so a late click is told why it no longer works.
const ENDED_LINKS_KEPT: Millis = 86_400_000;

/// A link as [`LinkState::of`] reads it (`$1` its hash).
const LINK: &str = "SELECT tenant_id, used_at, expires_at FROM portal_links WHERE token_hash = $1";

/// The health sample: deliveries read, succeeded, failed (`$1` destination, `$2` id bound of
/// the window, `$3` sample size).
static HEALTH_COUNTS: Sql = Sql::new(|| {
    format!(
        "SELECT COUNT(*), \
           COALESCE(SUM(CASE WHEN status IN ({succeeded}) THEN 1 ELSE 0 END), 0), \
           COALESCE(SUM(CASE WHEN status IN ({failed}) THEN 1 ELSE 0 END), 0) \
         FROM (SELECT status FROM deliveries WHERE destination_id = $1 AND id >= $2 \
               ORDER BY id DESC LIMIT $3) AS sample",
        succeeded = sql::statuses(health::SUCCEEDED),
        failed = sql::statuses(health::FAILED),
    )
});

/// The newest outcome among the sample (`$1` destination, `$2` sample size).
static HEALTH_LAST: Sql = Sql::new(|| {
    format!(
        "SELECT status, last_status_code, last_error, updated_at FROM \
           (SELECT id, status, last_status_code, last_error, updated_at FROM deliveries \
            WHERE destination_id = $1 ORDER BY id DESC LIMIT $2) AS recent \
         WHERE status IN ({outcome}) ORDER BY id DESC LIMIT 1",
        outcome = sql::statuses(health::WITH_OUTCOME),
    )
});

/// The queries of the tenant portal, for every [`Dialect`].
#[async_trait::async_trait]
pub(crate) trait Portal: Dialect {
    async fn insert_portal_link(
        &self,
        hash: &str,
        tenant_id: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()>;
    async fn redeem_portal_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        session_expires_at: Millis,
        now: Millis,
    ) -> Result<LinkState>;
    async fn check_portal_link(&self, link_hash: &str, now: Millis) -> Result<LinkState>;
    async fn find_portal_session(&self, hash: &str, now: Millis) -> Result<Option<String>>;
    async fn delete_portal_session(&self, hash: &str) -> Result<()>;
    async fn destination_health(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
    ) -> Result<DestinationHealth>;
}

#[async_trait::async_trait]
impl<S> Portal for S
where
    S: Dialect,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'r> String: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'q, 'r> i64: Encode<'q, S::Db> + Decode<'r, S::Db> + Type<S::Db>,
    for<'r> i32: Decode<'r, S::Db> + Type<S::Db>,
{
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
            .bind(now - ENDED_LINKS_KEPT)
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
    ) -> Result<LinkState> {
        let mut tx = self.write().begin().await?;
        // Checked and spent in one statement: of two racing redeemers only one updates.
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE portal_links SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING tenant_id",
        )
        .bind(link_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tenant_id) = tenant else {
            let found: Option<(String, Option<i64>, i64)> = sqlx::query_as(LINK)
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

    async fn check_portal_link(&self, link_hash: &str, now: Millis) -> Result<LinkState> {
        // On the writer: a link redeemed a moment ago must not read as usable.
        let found: Option<(String, Option<i64>, i64)> = sqlx::query_as(LINK)
            .bind(link_hash)
            .fetch_optional(self.write())
            .await?;
        Ok(LinkState::of(found, now))
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
    ) -> Result<DestinationHealth> {
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
        let since = ids::time_bound(Kind::Delivery, since);
        // Both walk the (destination_id, id) index backwards from the newest delivery,
        // and stop after the sample (see migration 0009).
        // The sample is cut before filtering on status, so a destination with a day of
        // skipped deliveries still costs at most HEALTH_SAMPLE rows.
        let sample = health::HEALTH_SAMPLE as i64;
        let (sampled, succeeded, failed): (i64, i64, i64) = sqlx::query_as(HEALTH_COUNTS.as_str())
            .bind(destination_id)
            .bind(&since)
            .bind(sample)
            .fetch_one(self.read())
            .await?;
        let last: Option<(String, Option<i32>, Option<String>, i64)> =
            sqlx::query_as(HEALTH_LAST.as_str())
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
