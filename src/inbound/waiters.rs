//! Wake-ups for callers waiting on a callback endpoint.
//!
//! One `watch` channel per endpoint that somebody waits on. The no-lost-wakeup rule: a waiter
//! subscribes *before* it reads the store, so a callback committed between its read and its
//! sleep has already bumped the channel's version and the sleep returns at once. The channel
//! carries no data: waiters always re-read the store, which stays the only source of truth
//! (and makes a spurious wake-up harmless).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Waiters {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Waiters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers interest in `endpoint_id`. Call before reading the store; the receiver's
    /// `changed()` then completes for any callback stored after this call.
    pub fn subscribe(&self, endpoint_id: &str) -> watch::Receiver<u64> {
        let mut channels = self.channels.lock().expect("waiters lock");
        // Forget endpoints nobody waits on any more, now and then, so the map stays as small
        // as the number of live waiters.
        if channels.len() >= 64 && channels.len().is_power_of_two() {
            channels.retain(|_, tx| tx.receiver_count() > 0);
        }
        channels
            .entry(endpoint_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes every waiter on `endpoint_id` (a callback was stored there).
    pub fn notify(&self, endpoint_id: &str) {
        let mut channels = self.channels.lock().expect("waiters lock");
        if let Some(tx) = channels.get(endpoint_id) {
            if tx.receiver_count() == 0 {
                channels.remove(endpoint_id);
            } else {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Wakes every waiter (after a lost `LISTEN` connection, when notifications may have been
    /// missed): each re-reads the store and goes back to sleep if nothing is new.
    pub fn notify_all(&self) {
        let channels = self.channels.lock().expect("waiters lock");
        for tx in channels.values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// How many callers are waiting on `endpoint_id` right now: lets tests see that a
    /// cancelled wait (an MCP cancellation, a dropped long-poll) really let go.
    pub fn waiting_on(&self, endpoint_id: &str) -> usize {
        let channels = self.channels.lock().expect("waiters lock");
        channels
            .get(endpoint_id)
            .map_or(0, |tx| tx.receiver_count())
    }

    /// How many endpoints currently have a channel (for tests and metrics).
    pub fn len(&self) -> usize {
        self.channels.lock().expect("waiters lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_between_subscribe_and_sleep_is_not_lost() {
        let w = Waiters::new();
        let mut rx = w.subscribe("cbe_a");
        w.notify("cbe_a");
        tokio::time::timeout(std::time::Duration::from_millis(100), rx.changed())
            .await
            .expect("woken at once")
            .unwrap();
    }

    #[tokio::test]
    async fn a_notification_for_another_endpoint_does_not_wake() {
        let w = Waiters::new();
        let mut rx = w.subscribe("cbe_a");
        let _other = w.subscribe("cbe_b");
        w.notify("cbe_b");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(30), rx.changed())
                .await
                .is_err()
        );
    }

    #[test]
    fn channels_without_waiters_are_dropped_on_the_next_notification() {
        let w = Waiters::new();
        drop(w.subscribe("cbe_a"));
        w.notify("cbe_a");
        assert!(w.is_empty());
    }
}
