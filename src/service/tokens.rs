//! API tokens: random, shown once, stored only as a SHA-256 hash.
//!
//! A plain (unsalted) hash is enough here: tokens are 256 random bits, so there is nothing to
//! brute-force, and a hash lookup keeps authentication one indexed query.

use sha2::{Digest, Sha256};

use super::{Herald, Result};
use crate::domain::ids::{Kind, new_id};
use crate::domain::secrets::{self, SecretKind};

/// `hld_` + 43 base64url characters (`domain::secrets` has every format).
pub fn generate_token() -> String {
    secrets::generate(SecretKind::ApiToken)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Herald {
    /// Makes sure an admin token exists. Returns the new token when one had to be generated
    /// (the only time it is ever visible), `None` when one was already stored.
    pub async fn ensure_admin_token(&self) -> Result<Option<String>> {
        if self.store.has_admin_token().await? {
            return Ok(None);
        }
        let token = generate_token();
        self.store
            .insert_token(
                &new_id(Kind::Token),
                &hash_token(&token),
                None,
                self.clock.now(),
            )
            .await?;
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_are_stable() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with("hld_") && a.len() == 47);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}

/// A tenant token as issued: the token itself is shown only here.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub id: String,
    pub tenant_id: String,
    pub token: String,
    #[serde(with = "crate::domain::time::serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: crate::domain::time::Millis,
}

impl Herald {
    /// Issues a token that can act only on `tenant_id`: its destinations, events, deliveries
    /// and callback endpoints, and publishing to itself.
    pub async fn issue_tenant_token(&self, tenant_id: &str) -> Result<IssuedToken> {
        if self.store.get_tenant(tenant_id).await?.is_none() {
            return Err(super::ServiceError::NotFound("tenant"));
        }
        let token = generate_token();
        let id = new_id(Kind::Token);
        let now = self.clock.now();
        self.store
            .insert_token(&id, &hash_token(&token), Some(tenant_id), now)
            .await?;
        Ok(IssuedToken {
            id,
            tenant_id: tenant_id.to_string(),
            token,
            created_at: now,
        })
    }
}
