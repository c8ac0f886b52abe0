//! Group commit for single-event publishes.
//!
//! `POST /v1/events` must not answer before the event and its deliveries are committed. With
//! many concurrent publishers, one transaction (one WAL flush) each would cap throughput, so
//! publishes that arrive while a commit is in flight are combined into the next transaction.
//! Nothing waits for company: a lone publish is committed at once. If a combined transaction
//! fails (say one event names an unknown tenant), each event is retried on its own so every
//! caller gets its own answer.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::time::Clock;
use crate::inbound::model::{Callback, Ingested};
use crate::store::{NewEvent, Published, Store, StoreError};

const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Published, StoreError>>;

#[derive(Clone)]
pub struct PublishBatcher {
    tx: mpsc::UnboundedSender<(NewEvent, Reply)>,
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

impl PublishBatcher {
    pub fn spawn(store: Arc<dyn Store>, clock: Clock) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(NewEvent, Reply)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.into_iter().unzip();
                match publish_retrying(&*store, &events, &clock).await {
                    Ok(published) => {
                        for (reply, p) in replies.into_iter().zip(published) {
                            let _ = reply.send(Ok(p));
                        }
                    }
                    Err(e) if events.len() == 1 => {
                        let _ = replies.into_iter().next().map(|r| r.send(Err(e)));
                    }
                    Err(_) => {
                        for (ev, reply) in events.into_iter().zip(replies) {
                            let r = publish_retrying(&*store, std::slice::from_ref(&ev), &clock)
                                .await
                                .map(|mut p| p.remove(0));
                            let _ = reply.send(r);
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    pub async fn publish(&self, ev: NewEvent) -> Result<Published, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((ev, reply))
            .map_err(|_| StoreError::Corrupt("the publish batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Corrupt("the publish batcher stopped".into()))?
    }
}

type IngestReply = oneshot::Sender<Result<Ingested, StoreError>>;

/// Group commit for captured callbacks, like [`PublishBatcher`] for events: `ANY /in/{slug}`
/// answers only once its callback is committed, and callbacks that arrive while a commit is in
/// flight share the next one (one WAL flush for many). A lone callback is committed at once.
#[derive(Clone)]
pub struct IngestBatcher {
    tx: mpsc::UnboundedSender<(Callback, IngestReply)>,
}

impl IngestBatcher {
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Callback, IngestReply)>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (callbacks, replies): (Vec<Callback>, Vec<IngestReply>) =
                    std::mem::take(&mut batch).into_iter().unzip();
                match store.ingest_callbacks(&callbacks).await {
                    Ok(stored) => {
                        for (reply, r) in replies.into_iter().zip(stored) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    // One failure (an endpoint deleted meanwhile) must not fail the others:
                    // each is retried on its own and gets its own answer.
                    Err(_) => {
                        for (c, reply) in callbacks.iter().zip(replies) {
                            let _ = reply.send(store.ingest_callback(c).await);
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    pub async fn ingest(&self, c: Callback) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((c, reply))
            .map_err(|_| StoreError::Corrupt("the ingest batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Corrupt("the ingest batcher stopped".into()))?
    }
}
