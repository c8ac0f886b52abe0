use serde_json::Value;

use super::{Herald, Result, ServiceError, page_limit};
use crate::domain::model::{Page, Tenant};
use crate::domain::validate::{self, Invalid};
use crate::store::Scope;

/// Serialized size limit of a tenant's metadata.
const MAX_METADATA_BYTES: usize = 16 * 1024;

impl Herald {
    pub async fn upsert_tenant(&self, id: &str, metadata: Option<Value>) -> Result<(Tenant, bool)> {
        validate::tenant_id("tenant_id", id)?;
        let metadata = metadata.unwrap_or_else(|| Value::Object(Default::default()));
        if !metadata.is_object() {
            return Err(Invalid::new("metadata", "must be an object").into());
        }
        if metadata.to_string().len() > MAX_METADATA_BYTES {
            return Err(ServiceError::TooLarge {
                field: "metadata".into(),
                message: format!("must be at most {MAX_METADATA_BYTES} bytes"),
            });
        }
        Ok(self
            .store
            .upsert_tenant(id, &metadata, self.clock.now())
            .await?)
    }

    pub async fn get_tenant(&self, scope: Scope<'_>, id: &str) -> Result<Tenant> {
        Self::check_tenant(scope, id)?;
        self.store
            .get_tenant(id)
            .await?
            .ok_or(ServiceError::NotFound("tenant"))
    }

    pub async fn list_tenants(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Tenant>> {
        let limit = page_limit(limit);
        let rows = self.store.list_tenants(after, limit + 1).await?;
        Ok(Page::from_rows(rows, limit as usize, |t| t.id.clone()))
    }

    pub async fn delete_tenant(&self, id: &str) -> Result<()> {
        if self.store.delete_tenant(id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound("tenant"))
        }
    }
}
