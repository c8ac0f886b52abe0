//! The scheduler: a claim loop, the executor that performs one attempt, and maintenance.
//!
//! The loop claims due deliveries in batches (the claim is committed before any request goes
//! out), runs each send as its own task under a concurrency limit, and records the outcomes
//! group-committed: whatever outcomes are waiting go in one transaction (`batch`). Under load
//! it claims only once a worthwhile batch of slots is free (`claim_size`). When there is
//! nothing to do it sleeps until whichever comes first: a wake-up (a publish in this process,
//! `NOTIFY` from another, a finished send freeing a slot), the next due retry, or the poll
//! interval as a safety net (`idle_sleep`).
//!
//! [`Worker::tick`] is one turn of the same code (`Worker::turn`: rescue, claim, send) for
//! tests and tools that drive the worker step by step with a controlled clock.
//!
//! The loop also does the maintenance every node may do: rescuing expired leases (idempotent)
//! and, periodically, the retention sweep (on Postgres only the node holding the maintenance
//! lock deletes anything).

mod batch;
mod executor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

pub use executor::Executor;

/// How much of a lease is left for recording the outcome after the longest send allowed.
/// The worker's rule (the executor caps each send's timeout by it); `config` checks the
/// configured lease against it.
pub const LEASE_HEADROOM_MS: u64 = 1000;

use crate::domain::time::Millis;
use crate::store::{Claimed, Store, StoreError};

/// How soon an idle worker looks again at due work held back by destination limits.
pub const LIMITED_RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Sends in flight at once in this process.
    pub concurrency: usize,
    /// Most deliveries claimed per query.
    pub batch_size: u32,
    /// How long a claim is held before another worker may take the delivery over. Longer than
    /// the longest request timeout, so a live worker never loses its lease mid-send.
    pub lease: Duration,
    /// Longest sleep while idle: the safety net if a wake-up is missed.
    pub poll_interval: Duration,
    /// How long shutdown waits for sends in flight.
    pub shutdown_grace: Duration,
    /// Events (with their deliveries and attempts) older than this are deleted.
    pub retention: Duration,
    /// How often the retention sweep runs, and how many events one statement deletes.
    pub maintenance_interval: Duration,
    pub retention_batch: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 256,
            batch_size: 64,
            lease: Duration::from_secs(90),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            retention: Duration::from_secs(30 * 24 * 3600),
            maintenance_interval: Duration::from_secs(60),
            retention_batch: 1000,
        }
    }
}

pub struct Worker {
    store: Arc<dyn Store>,
    executor: Arc<Executor>,
    config: WorkerConfig,
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        executor: Arc<Executor>,
        config: WorkerConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            executor,
            config,
            wake,
        }
    }

    /// Claims one batch of due deliveries and performs them all; returns how many. Expired
    /// leases are rescued first. This is one turn of [`Worker::run`] (the same
    /// `Worker::turn`), without its sleeps, for tests and tools; its slots are a whole
    /// batch's, so everything claimed is sent at once.
    pub async fn tick(&self) -> usize {
        let mut sends = Sends::new(self.config.batch_size as usize);
        match self.turn(&mut sends, true).await {
            Ok(turn) => {
                sends.tasks.join_all().await;
                turn.got as usize
            }
            Err(e) => {
                tracing::warn!(error = %e, "claim failed");
                0
            }
        }
    }

    /// What [`Worker::tick`] and [`Worker::run`] have in common: rescues expired leases (when
    /// `rescue` says it is time), claims as many due deliveries as [`claim_size`] finds worth
    /// a commit for the free slots of `sends`, and starts a send for each. Only the claim's
    /// error is returned: a failed rescue is logged and retried at the next turn it is due.
    async fn turn(&self, sends: &mut Sends, rescue: bool) -> Result<Turn, StoreError> {
        if rescue {
            self.rescue().await;
        }
        let want = claim_size(sends.free(), sends.capacity, self.config.batch_size);
        if want == 0 {
            return Ok(Turn { want, got: 0 });
        }
        let claimed = self.claim(want).await?;
        let got = claimed.len() as u32;
        for c in claimed {
            sends.start(c, &self.executor, &self.wake).await;
        }
        Ok(Turn { want, got })
    }

    /// Puts deliveries whose lease expired back in the queue (their worker died).
    async fn rescue(&self) {
        if let Err(e) = self.store.rescue_expired(self.executor.clock().now()).await {
            tracing::warn!(error = %e, "lease rescue failed");
        }
    }

    /// Claims up to `limit` due deliveries, leased for the configured lease from now.
    async fn claim(&self, limit: u32) -> Result<Vec<Claimed>, StoreError> {
        let now = self.executor.clock().now();
        let lease_until = now + self.config.lease.as_millis() as i64;
        self.store.claim(limit, now, lease_until).await
    }

    /// Deletes everything past the retention window, one bounded batch per statement so no
    /// lock is held for long. Returns how many events were deleted.
    pub async fn purge_expired(&self) -> u64 {
        let cutoff = self.executor.clock().now() - self.config.retention.as_millis() as i64;
        let mut total = 0;
        loop {
            match self
                .store
                .purge_before(cutoff, self.config.retention_batch)
                .await
            {
                Ok(n) => {
                    total += n;
                    if n < self.config.retention_batch as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(events = total, "retention: deleted expired events");
        }
        total
    }

    /// Ticks until nothing is due.
    pub async fn drain(&self) -> usize {
        let mut total = 0;
        loop {
            let n = self.tick().await;
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// The claim loop, until `shutdown` turns true. Then it stops claiming and gives sends in
    /// flight the grace period to finish; whatever is still running after that is aborted and
    /// released (`Store::release`: due again at once, for another worker or this one
    /// restarted). A release that fails leaves the delivery to its lease (at-least-once).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut sends = Sends::new(self.config.concurrency);
        let mut last_rescue = tokio::time::Instant::now() - self.config.lease;
        let mut last_maintenance = tokio::time::Instant::now();
        let mut maintenance: Option<tokio::task::JoinHandle<u64>> = None;
        let clock = self.executor.clock().clone();
        let mut backoff = crate::store::reconnect_backoff();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while sends.tasks.try_join_next().is_some() {}

            if last_maintenance.elapsed() >= self.config.maintenance_interval
                && maintenance.as_ref().is_none_or(|m| m.is_finished())
            {
                last_maintenance = tokio::time::Instant::now();
                let me = self.clone();
                maintenance = Some(tokio::spawn(async move { me.purge_expired().await }));
            }

            // Rescuing is cheap and idempotent, so every node may do it; twice per lease is
            // often enough that a crashed worker's deliveries wait at most 1.5 leases.
            let rescue = last_rescue.elapsed() >= self.config.lease / 2;
            if rescue {
                last_rescue = tokio::time::Instant::now();
            }
            let Turn { want, got } = match self.turn(&mut sends, rescue).await {
                Ok(turn) => {
                    backoff = crate::store::reconnect_backoff();
                    turn
                }
                Err(e) => {
                    let wait = crate::store::next_wait(&mut backoff);
                    tracing::warn!(error = %e, ?wait, "claim failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if want > 0 && got == want {
                continue; // a full batch: there is probably more
            }

            let sleep = if want == 0 {
                // Busy: a finishing send wakes us.
                self.config.poll_interval
            } else {
                let next_due = self.store.next_due().await.ok().flatten();
                idle_sleep(next_due, clock.now(), got, self.config.poll_interval)
            };
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.stop(sends, &clock).await;
        if let Some(m) = maintenance {
            m.abort();
        }
    }

    /// The end of [`Worker::run`]: waits the grace period for the sends in flight, then
    /// aborts the rest and releases their deliveries.
    async fn stop(&self, mut sends: Sends, clock: &crate::clock::Clock) {
        let grace = tokio::time::timeout(self.config.shutdown_grace, async {
            while sends.tasks.join_next().await.is_some() {}
        });
        if grace.await.is_ok() {
            return;
        }
        sends.tasks.abort_all();
        while sends.tasks.join_next().await.is_some() {}
        // Hand the interrupted deliveries back now rather than leaving them to wait for
        // their lease: another node (or this one, restarted) retries them at once.
        let interrupted: Vec<(String, u32)> = sends
            .in_flight
            .lock()
            .expect("not poisoned")
            .drain()
            .collect();
        tracing::warn!(
            count = interrupted.len(),
            "shutdown grace period over; releasing sends still in flight"
        );
        for (id, attempt) in interrupted {
            if let Err(e) = self.store.release(&id, attempt, clock.now()).await {
                tracing::warn!(delivery_id = %id, error = %e, "release failed; the lease will expire");
            }
        }
    }
}

/// What one [`Worker::turn`] did: how many deliveries it asked for and how many it got.
struct Turn {
    want: u32,
    got: u32,
}

/// The sends a worker has in flight. Each holds one of `capacity` slots while it runs, and is
/// listed with its attempt number so that a shutdown can release the ones it had to abort.
struct Sends {
    capacity: usize,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    /// delivery id -> attempt number of every send in flight.
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
}

impl Sends {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            slots: Arc::new(Semaphore::new(capacity)),
            tasks: JoinSet::new(),
            in_flight: Arc::default(),
        }
    }

    fn free(&self) -> usize {
        self.slots.available_permits()
    }

    /// Starts the send of `c` in a slot of its own (the claim asked for no more than were
    /// free, so this does not wait). When it ends, the slot is freed and `wake` told.
    async fn start(&mut self, c: Claimed, executor: &Arc<Executor>, wake: &Arc<Notify>) {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let ex = executor.clone();
        let wake = wake.clone();
        let in_flight = self.in_flight.clone();
        in_flight
            .lock()
            .expect("not poisoned")
            .insert(c.delivery_id.clone(), c.attempt);
        self.tasks.spawn(async move {
            let id = c.delivery_id.clone();
            ex.execute(c).await;
            in_flight.lock().expect("not poisoned").remove(&id);
            drop(permit);
            wake.notify_one();
        });
    }
}

/// How many deliveries to claim with `free` of `concurrency` slots free. Each claim is a
/// committed write: under load, claiming the moment one slot frees up would mean one commit per
/// delivery, so the loop waits until a worthwhile batch of slots is free (sends in flight keep
/// the pipe full meanwhile). An idle worker claims whatever it can.
fn claim_size(free: usize, concurrency: usize, batch_size: u32) -> u32 {
    let busy = concurrency - free;
    let worthwhile = (batch_size as usize).min(concurrency / 2).max(1);
    if free >= worthwhile || busy == 0 {
        (free as u32).min(batch_size)
    } else {
        0
    }
}

/// How long to sleep (unless woken) after a claim that took `got` deliveries, when the earliest
/// pending delivery is due at `next_due`. Due work that could not be claimed (`got == 0`) is
/// waiting on a destination's limits (rate window, FIFO head, slots): look again after
/// [`LIMITED_RECHECK`] rather than spin. Never longer than the poll interval.
fn idle_sleep(
    next_due: Option<Millis>,
    now: Millis,
    got: u32,
    poll_interval: Duration,
) -> Duration {
    let Some(due) = next_due else {
        return poll_interval;
    };
    let floor = if got == 0 {
        LIMITED_RECHECK
    } else {
        Duration::ZERO
    };
    Duration::from_millis((due - now).max(0) as u64)
        .max(floor)
        .min(poll_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(1);

    #[test]
    fn an_idle_worker_claims_whatever_it_can_up_to_a_batch() {
        assert_eq!(claim_size(64, 64, 16), 16);
        assert_eq!(claim_size(1, 1, 16), 1);
    }

    #[test]
    fn a_busy_worker_waits_for_a_worthwhile_batch_of_free_slots() {
        // 64 slots, batches of 16: fewer than 16 free slots is not worth a commit.
        assert_eq!(claim_size(15, 64, 16), 0);
        assert_eq!(claim_size(16, 64, 16), 16);
        // With few slots, half of them is worthwhile.
        assert_eq!(claim_size(2, 4, 16), 2);
        assert_eq!(claim_size(1, 4, 16), 0);
    }

    #[test]
    fn with_nothing_pending_the_worker_sleeps_the_poll_interval() {
        assert_eq!(idle_sleep(None, 0, 0, POLL), POLL);
    }

    #[test]
    fn the_worker_sleeps_until_the_next_due_delivery_within_the_poll_interval() {
        assert_eq!(
            idle_sleep(Some(1_250), 1_000, 1, POLL),
            Duration::from_millis(250)
        );
        assert_eq!(idle_sleep(Some(60_000), 1_000, 1, POLL), POLL);
        assert_eq!(idle_sleep(Some(900), 1_000, 1, POLL), Duration::ZERO);
    }

    #[test]
    fn due_work_left_unclaimed_is_looked_at_again_after_the_recheck() {
        assert_eq!(idle_sleep(Some(900), 1_000, 0, POLL), LIMITED_RECHECK);
    }
}
