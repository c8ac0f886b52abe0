use super::{Herald, Result, ServiceError, page_limit};
use crate::domain::model::{Delivery, Page, Recovery};
use crate::domain::time::parse_rfc3339;
use crate::domain::validate::Invalid;
use crate::store::{DeliveryQuery, Scope};

impl Herald {
    pub async fn list_deliveries(
        &self,
        scope: Scope<'_>,
        mut q: DeliveryQuery,
    ) -> Result<Page<Delivery>> {
        Self::check_tenant(scope, &q.tenant_id)?;
        let limit = page_limit(Some(q.limit).filter(|l| *l > 0));
        q.limit = limit + 1;
        let rows = self.store.list_deliveries(&q).await?;
        Ok(Page::from_rows(rows, limit as usize, |d| d.id.clone()))
    }

    pub async fn get_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Delivery> {
        self.store
            .get_delivery(scope, id)
            .await?
            .ok_or(ServiceError::NotFound("delivery"))
    }

    /// Schedules a manual attempt now (recorded with `trigger: manual`).
    pub async fn retry_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Delivery> {
        let d = self
            .store
            .retry_delivery(scope, id, self.clock.now())
            .await?;
        self.wake.notify_one();
        Ok(d)
    }
}

impl Herald {
    /// Replays an event to all its destinations, or to the chosen ones. Returns how many
    /// deliveries were scheduled for a manual attempt.
    pub async fn replay_event(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        destination_ids: Option<Vec<String>>,
    ) -> Result<u32> {
        if let Some(ids) = &destination_ids
            && (ids.is_empty() || ids.len() > 100)
        {
            return Err(Invalid::new("destination_ids", "must list 1-100 destinations").into());
        }
        let n = self
            .store
            .replay_event(
                scope,
                event_id,
                destination_ids.as_deref(),
                self.clock.now(),
            )
            .await?;
        self.wake.notify_one();
        Ok(n)
    }

    /// Recovers a destination: every failed or skipped delivery since `since` is scheduled
    /// again (or only counted, with `dry_run`).
    pub async fn recover_destination(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        destination_id: &str,
        since: &str,
        dry_run: bool,
    ) -> Result<Recovery> {
        Self::check_tenant(scope, tenant_id)?;
        let since = parse_rfc3339(since).ok_or_else(|| {
            Invalid::new(
                "since",
                "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z",
            )
        })?;
        let r = self
            .store
            .recover_destination(tenant_id, destination_id, since, dry_run, self.clock.now())
            .await?;
        self.wake.notify_one();
        Ok(r)
    }

    pub async fn get_recovery(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        id: &str,
    ) -> Result<Recovery> {
        Self::check_tenant(scope, tenant_id)?;
        self.store
            .get_recovery(tenant_id, id)
            .await?
            .ok_or(ServiceError::NotFound("recovery"))
    }
}
