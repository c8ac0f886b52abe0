//! Per-endpoint rate limit for ingest: a token bucket per slug, in process.
//!
//! In process (not in the database) on purpose: the limit protects this node and the store
//! from a flood at one URL, and must cost nothing per request. With several nodes each applies
//! it separately, so the effective cluster-wide limit is `nodes × rate`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; 0 turns the limit off.
    rate: f64,
    /// Bucket size: how many requests may arrive at once after a quiet period.
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty (answer 429).
    pub fn allow(&self, key: &str) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: &str, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() > 10_000 {
            // Full buckets carry no state worth keeping: drop them.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled_at_the_rate() {
        let l = RateLimiter::new(10, 3);
        let t = Instant::now();
        assert!((0..3).all(|_| l.allow_at("a", t)));
        assert!(!l.allow_at("a", t));
        assert!(l.allow_at("b", t), "buckets are per key");
        assert!(l.allow_at("a", t + Duration::from_millis(100)));
        assert!(!l.allow_at("a", t + Duration::from_millis(100)));
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let l = RateLimiter::new(0, 0);
        assert!((0..1000).all(|_| l.allow("a")));
    }
}
