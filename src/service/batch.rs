//! Group commit: many small writes, few transactions.
//!
//! Single publishes (`POST /v1/events`), captured callbacks (`ANY /in/{slug}`) and attempt
//! outcomes each must be committed before their caller goes on. With many concurrent callers,
//! one transaction (one WAL flush, several round trips) each would cap throughput, so callers
//! hand their item to a [`GroupCommit`]: items that arrive while commits are in flight are
//! combined into the next transaction.
//!
//! Nothing waits for company: a lone item is committed at once. A few transactions may be in
//! flight together (`in_flight`), so the round trips of one overlap the flush of another;
//! beyond that, arrivals queue and make the next batch bigger. If a combined transaction fails
//! (say one event names an unknown tenant), each of its items is committed on its own, so every
//! caller gets its own answer and one bad item never fails its neighbours.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::clock::Clock;
use crate::inbound::model::{Callback, Ingested};
use crate::store::{NewEvent, Published, Store, StoreError};

/// Most items committed in one transaction.
pub const MAX_BATCH: usize = 256;

/// Publish transactions in flight at once: each event's rows are new, so they never wait for
/// each other.
pub const PUBLISH_IN_FLIGHT: usize = 1;

/// Capture transactions in flight at once. Each locks the rows of the endpoints it touches
/// (their cursors), always all at once and in id order (`Store::ingest_callbacks`), so
/// concurrent batches on one node or several wait for each other only on shared endpoints
/// and never deadlock.
pub const CAPTURE_IN_FLIGHT: usize = 1;

/// What a [`GroupCommit`] commits: a batch in one transaction, or one item alone.
pub trait Commit: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Output: Send + 'static;

    /// Commits all of `items` in one transaction; one output per item, in order.
    fn all(
        &self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, StoreError>> + Send;

    /// Commits one item on its own (after its batch failed).
    fn one(
        &self,
        item: &Self::Item,
    ) -> impl Future<Output = Result<Self::Output, StoreError>> + Send;
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A handle to a group-commit task; cheap to clone. The task ends when the last handle goes.
pub struct GroupCommit<C: Commit> {
    tx: mpsc::UnboundedSender<(C::Item, Reply<C::Output>)>,
    committer: Arc<C>,
}

impl<C: Commit> Clone for GroupCommit<C> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            committer: self.committer.clone(),
        }
    }
}

impl<C: Commit> GroupCommit<C> {
    /// Starts the task: at most `in_flight` transactions at once, each of at most
    /// [`MAX_BATCH`] items.
    pub fn spawn(committer: C, in_flight: usize) -> Self {
        let committer = Arc::new(committer);
        let (tx, mut rx) = mpsc::unbounded_channel::<(C::Item, Reply<C::Output>)>();
        let c = committer.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(in_flight.max(1)));
            let mut batch = Vec::new();
            loop {
                // Take a slot first, then everything that queued meanwhile: while every slot
                // is busy, arrivals gather into the next batch.
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    return;
                }
                let items = std::mem::take(&mut batch);
                let c = c.clone();
                tokio::spawn(async move {
                    commit_batch(&*c, items).await;
                    drop(slot);
                });
            }
        });
        Self { tx, committer }
    }

    /// Commits `item` (with whatever else is waiting) and returns its own result.
    pub async fn commit(&self, item: C::Item) -> Result<C::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.send((item, reply)) {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(StoreError::Corrupt("a group commit stopped".into()))),
            // The task is gone (the runtime is shutting down): commit directly.
            Err(mpsc::error::SendError((item, _))) => self.committer.one(&item).await,
        }
    }
}

async fn commit_batch<C: Commit>(c: &C, batch: Vec<(C::Item, Reply<C::Output>)>) {
    let (items, replies): (Vec<C::Item>, Vec<Reply<C::Output>>) = batch.into_iter().unzip();
    match c.all(&items).await {
        Ok(outputs) => {
            for (reply, out) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(out));
            }
        }
        // Even a batch of one is tried again alone: a batch may take a path a lone item does
        // not (ingest's one-statement batch meets a concurrent duplicate as a unique
        // violation; alone, it is answered `Duplicate`).
        Err(_) => {
            for (item, reply) in items.iter().zip(replies) {
                let _ = reply.send(c.one(item).await);
            }
        }
    }
}

/// Publishes with one retry when a concurrent publish of the same idempotency key won: the
/// retry finds that event and returns it.
pub async fn publish_retrying(
    store: &dyn Store,
    events: &[NewEvent],
    clock: &Clock,
) -> Result<Vec<Published>, StoreError> {
    match store.publish(events, clock.now()).await {
        Err(StoreError::Conflict(_)) => store.publish(events, clock.now()).await,
        other => other,
    }
}

/// Single-event publishes (`POST /v1/events`).
pub struct Publishes {
    pub store: Arc<dyn Store>,
    pub clock: Clock,
}

impl Commit for Publishes {
    type Item = NewEvent;
    type Output = Published;

    async fn all(&self, events: &[NewEvent]) -> Result<Vec<Published>, StoreError> {
        publish_retrying(&*self.store, events, &self.clock).await
    }

    async fn one(&self, event: &NewEvent) -> Result<Published, StoreError> {
        publish_retrying(&*self.store, std::slice::from_ref(event), &self.clock)
            .await
            .map(|mut p| p.remove(0))
    }
}

/// Captured callbacks (`ANY /in/{slug}`), answered only once committed.
pub struct Captures {
    pub store: Arc<dyn Store>,
}

impl Commit for Captures {
    type Item = Callback;
    type Output = Ingested;

    async fn all(&self, callbacks: &[Callback]) -> Result<Vec<Ingested>, StoreError> {
        self.store.ingest_callbacks(callbacks).await
    }

    async fn one(&self, callback: &Callback) -> Result<Ingested, StoreError> {
        self.store.ingest_callback(callback).await
    }
}
