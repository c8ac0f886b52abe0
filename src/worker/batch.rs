//! Group commit for attempt outcomes.
//!
//! Every send ends with a small transaction (attempt row, delivery state). At a few thousand
//! sends a second, one WAL flush per send would be the bottleneck, so outcomes go through a
//! [`GroupCommit`]: whatever outcomes are waiting — never waiting for more, so an idle system
//! pays no extra latency — are committed in one transaction while the next ones queue up. Each
//! sender still waits for its own outcome to be committed before it returns.

use std::sync::Arc;

use crate::service::batch::{Commit, GroupCommit};
use crate::store::{Finish, Finished, Store, StoreError};

/// Outcome transactions in flight at once: one. Batches update different delivery rows, but
/// failed sends also update their destination's row, so overlapping batches would make lock
/// waits between them likely; the next batch queues up while this one commits.
const IN_FLIGHT: usize = 1;

pub type FinishBatcher = GroupCommit<Finishes>;

/// Starts the outcome batcher; it ends when the last handle is dropped.
pub fn spawn(store: Arc<dyn Store>) -> FinishBatcher {
    GroupCommit::spawn(Finishes { store }, IN_FLIGHT)
}

pub struct Finishes {
    store: Arc<dyn Store>,
}

impl Commit for Finishes {
    type Item = Finish;
    type Output = Finished;

    async fn all(&self, finishes: &[Finish]) -> Result<Vec<Finished>, StoreError> {
        self.store.finish_batch(finishes).await
    }

    async fn one(&self, f: &Finish) -> Result<Finished, StoreError> {
        self.store.finish(f).await
    }
}
