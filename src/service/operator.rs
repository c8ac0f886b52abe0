//! Operator events: Herald tells the platform's operators when a destination is disabled or
//! a delivery exhausts its attempts.
//!
//! They travel as ordinary events of a reserved tenant, `herald.operator`, whose one destination
//! is the configured operator webhook: so they are durable, signed, retried and inspectable
//! like everything else, with no second delivery path to maintain.

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Herald, Result};
use crate::domain::ids::{Kind, new_id};
use crate::domain::model::{Destination, DestinationKind, SigningSecret};
use crate::domain::signature;
use crate::store::NewEvent;

/// The reserved tenant that carries operator events.
pub const OPERATOR_TENANT: &str = "herald.operator";

/// A new operator event.
pub fn event(topic: &str, data: Value) -> NewEvent {
    NewEvent {
        id: new_id(Kind::Event),
        tenant_id: OPERATOR_TENANT.into(),
        topic: topic.into(),
        data: RawValue::from_string(data.to_string()).expect("serialized JSON is valid"),
        metadata: Value::Object(Default::default()),
        idempotency_key: None,
        destination_id: None,
        // Herald's own events are not in any tenant's catalog.
        schema_version: None,
        reply: None,
        traceparent: None,
    }
}

impl Herald {
    /// Makes the operator tenant's destination point at `url`, signed with `secret`.
    /// Returns the secret when it had to be generated (shown once, like the admin token).
    pub async fn ensure_operator_webhook(
        &self,
        url: &str,
        secret: Option<&str>,
    ) -> Result<Option<String>> {
        self.check_url("operator_webhook_url", url)?;
        if let Some(s) = secret {
            signature::parse_secret(s, signature::Accept::New).map_err(|e| {
                crate::domain::validate::Invalid::new("operator_webhook_secret", e.to_string())
            })?;
        }
        let now = self.clock.now();
        self.store
            .upsert_tenant(OPERATOR_TENANT, &Value::Object(Default::default()), now)
            .await?;
        let existing = self
            .store
            .list_destinations(OPERATOR_TENANT, None, 1)
            .await?
            .pop();
        let mut generated = None;
        match existing {
            Some(mut d) => {
                d.url = Some(url.to_string());
                d.enabled = true;
                d.disabled_reason = None;
                d.disabled_at = None;
                if let Some(s) = secret
                    && d.secrets.first().is_none_or(|cur| cur.secret != s)
                {
                    d.secrets = vec![SigningSecret {
                        secret: s.to_string(),
                        expires_at: None,
                    }];
                }
                d.updated_at = now;
                self.store.update_destination(&d).await?;
            }
            None => {
                let s = match secret {
                    Some(s) => s.to_string(),
                    None => {
                        let s = signature::generate_secret();
                        generated = Some(s.clone());
                        s
                    }
                };
                let d = Destination {
                    id: new_id(Kind::Destination),
                    tenant_id: OPERATOR_TENANT.into(),
                    kind: DestinationKind::Webhook,
                    url: Some(url.to_string()),
                    amqp: None,
                    description: Some("Herald operator events".into()),
                    topics: vec!["*".into()],
                    filter: None,
                    headers: Default::default(),
                    options: Default::default(),
                    enabled: true,
                    disabled_reason: None,
                    disabled_at: None,
                    secrets: vec![SigningSecret {
                        secret: s,
                        expires_at: None,
                    }],
                    created_at: now,
                    updated_at: now,
                };
                self.store.insert_destination(&d, 0).await?;
            }
        }
        Ok(generated)
    }
}
