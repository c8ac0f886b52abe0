//! The slug → endpoint cache in front of ingest.
//!
//! Every callback starts with finding its endpoint by slug. Read from the store each time,
//! that lookup was most of the statements Postgres ran during ingest (one per callback, against
//! a handful per batch for storing them). What ingest needs of an endpoint never changes after
//! it is created — id, tenant, verification scheme and secret, expiry — so a cached copy cannot
//! be wrong about it. (Key rotation re-seals the secret at rest; the secret itself stays.)
//!
//! The one change an endpoint sees is deletion, and that needs no invalidation to be correct:
//! storing a callback locks its endpoint's row, so a callback for an endpoint deleted meanwhile
//! (on this node or another) fails with `NotFound` and is answered 404 like any unknown slug.
//! Deletions through this node also drop the entry at once; entries expire after [`TTL`]
//! anyway, so a deleted endpoint does not linger here. Misses are never cached: an endpoint
//! created on another node is found as soon as it exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::model::CallbackEndpoint;

/// How long an entry is trusted before the store is read again.
pub const TTL: Duration = Duration::from_secs(30);

/// Most entries kept; past it the cache starts over (cheap, and rare: it takes that many
/// distinct endpoints receiving callbacks within one [`TTL`]).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct EndpointCache {
    by_slug: Mutex<HashMap<String, (Arc<CallbackEndpoint>, Instant)>>,
}

impl EndpointCache {
    pub fn get(&self, slug: &str) -> Option<Arc<CallbackEndpoint>> {
        let map = self.by_slug.lock().expect("not poisoned");
        map.get(slug)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(e, _)| e.clone())
    }

    pub fn insert(&self, endpoint: Arc<CallbackEndpoint>) {
        let mut map = self.by_slug.lock().expect("not poisoned");
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(endpoint.slug.clone(), (endpoint, Instant::now()));
    }

    /// Forgets the endpoint with this id (it was deleted).
    pub fn remove_id(&self, id: &str) {
        self.by_slug
            .lock()
            .expect("not poisoned")
            .retain(|_, (e, _)| e.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::verify::Verification;

    fn endpoint(id: &str, slug: &str) -> Arc<CallbackEndpoint> {
        Arc::new(CallbackEndpoint {
            id: id.into(),
            slug: slug.into(),
            tenant_id: None,
            label: None,
            verification: Verification::None,
            metadata: serde_json::Value::Null,
            event_id: None,
            last_cursor: 0,
            received: 0,
            duplicates: 0,
            rejected: 0,
            expires_at: None,
            created_at: 0,
        })
    }

    #[test]
    fn an_inserted_endpoint_is_found_by_slug_until_it_is_removed_by_id() {
        let cache = EndpointCache::default();
        assert!(cache.get("s1").is_none());
        cache.insert(endpoint("cbe_1", "s1"));
        cache.insert(endpoint("cbe_2", "s2"));
        assert_eq!(cache.get("s1").unwrap().id, "cbe_1");
        cache.remove_id("cbe_1");
        assert!(cache.get("s1").is_none());
        assert_eq!(cache.get("s2").unwrap().id, "cbe_2");
    }

    #[test]
    fn the_cache_starts_over_when_full_instead_of_growing() {
        let cache = EndpointCache::default();
        for i in 0..CAPACITY + 1 {
            cache.insert(endpoint(&format!("cbe_{i}"), &format!("s{i}")));
        }
        assert_eq!(cache.by_slug.lock().unwrap().len(), 1);
        assert!(cache.get(&format!("s{CAPACITY}")).is_some());
    }
}
