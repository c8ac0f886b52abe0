//! Group commit for attempt outcomes.
//!
//! Every send ends with a small transaction (attempt row, delivery state). At a few thousand
//! sends a second, one WAL flush per send would be the bottleneck, so outcomes go through this
//! batcher: it takes whatever outcomes are waiting — never waiting for more, so an idle system
//! pays no extra latency — and commits them in one transaction while the next ones queue up.
//! Each sender still waits for its own outcome to be committed before it returns.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Finish, Finished, Store, StoreError};

/// Most outcomes committed in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Finished, StoreError>>;

#[derive(Clone)]
pub struct FinishBatcher {
    tx: mpsc::UnboundedSender<(Finish, Reply)>,
}

impl FinishBatcher {
    /// Starts the batching task; it ends when the last handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Finish, Reply)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let (finishes, replies): (Vec<Finish>, Vec<Reply>) = batch.into_iter().unzip();
                match store.finish_batch(&finishes).await {
                    Ok(results) => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    // One failed transaction must not fail its neighbours: each is tried on
                    // its own, so each sender gets its own answer.
                    Err(_) => {
                        for (f, reply) in finishes.iter().zip(replies) {
                            let _ = reply.send(store.finish(f).await);
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Commits `f` (with whatever else is waiting) and returns its result.
    pub async fn finish(&self, f: Finish, store: &dyn Store) -> Result<Finished, StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.send((f, reply)) {
            Ok(()) => match answer.await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Corrupt("the outcome batcher stopped".into())),
            },
            // The batcher is gone (shutting down): commit directly.
            Err(mpsc::error::SendError((f, _))) => store.finish(&f).await,
        }
    }
}
