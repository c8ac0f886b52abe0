//! The application's source of "now".
//!
//! The domain reads no clock: its rules take `now` as an argument. Everything that needs the
//! time asks a [`Clock`], handed down from `app`. In production it reads the system clock;
//! tests move it forward with [`Clock::advance`] to make a retry due without sleeping through
//! the retry delay, or build it on tokio's clock ([`Clock::tokio`]) so that a test on paused
//! time (`#[tokio::test(start_paused = true)]`) moves Herald's "now" with `tokio::time`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::domain::time::Millis;

/// The system time (or tokio's) plus an offset that only tests change. Clones share both.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// `Some` for [`Clock::tokio`]: the wall time at the start and tokio's instant then.
    tokio_base: Option<(Millis, tokio::time::Instant)>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that starts at the system time and then follows `tokio::time`: under paused
    /// time it stands still until the runtime auto-advances or a test calls
    /// `tokio::time::advance`. Must be created inside a tokio runtime.
    pub fn tokio() -> Self {
        Self {
            offset_ms: Arc::default(),
            tokio_base: Some((wall_now(), tokio::time::Instant::now())),
        }
    }

    pub fn now(&self) -> Millis {
        let base = match self.tokio_base {
            None => wall_now(),
            Some((wall, start)) => wall + start.elapsed().as_millis() as Millis,
        };
        base + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

fn wall_now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clock_moves_every_clone() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.now();
        clock.advance(Duration::from_secs(3600));
        assert!(other.now() - before >= 3_600_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_and_only_then() {
        let clock = Clock::tokio();
        let start = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            clock.now(),
            start,
            "the wall clock moved, the paused one did not"
        );
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + 90_000);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.clone().now(), start + 91_000);
    }
}
