//! `NOTIFY` out and `LISTEN` in: how Herald processes sharing one Postgres tell each other of
//! work published and callbacks stored.
//!
//! Neither direction runs on its own. The [`Notifier`] is one task per channel, started with
//! the store and joined by [`Store::close`](crate::store::Store::close) at shutdown, after it
//! has sent what was still queued. The listener is a plain stream ([`news`]): whoever wants the
//! news (`app`) drives it and drops it, so no task outlives shutdown unseen.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::store::{News, NewsStream};

/// The channel publishers notify and workers listen on.
pub(super) const WORK_CHANNEL: &str = "herald_work";
/// The channel ingest notifies (payload: the endpoint id) and every process's waiters listen on.
pub(super) const CALLBACK_CHANNEL: &str = "herald_callbacks";
/// The channel catalog changes are announced on (no payload): every process reads the
/// event-type catalog again.
pub(super) const CATALOG_CHANNEL: &str = "herald_event_types";
/// The least time between two notices on one channel under load (see [`Notifier`]).
const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);

/// Sends `NOTIFY channel` for writes just committed, outside their transactions, coalescing
/// whatever has queued up into one statement: for `herald_callbacks` one notice per endpoint
/// id with news (short ASCII, far below NOTIFY's 8000-byte payload limit), for `herald_work`
/// one empty notice.
///
/// Why not inside the ingest or publish transaction: Postgres serializes the commits of all
/// transactions that notified (a global lock held through the WAL flush), which capped capture
/// at one commit per flush, about 1,400 callbacks/s on the benchmark machine, and made
/// concurrent publish batches commit one after another. The price: if the process dies
/// between a commit and its notice, other nodes find that news at their next read (waiters at
/// the latest when their wait times out, workers at their next poll); this node's waiters and
/// worker are woken by the service in any case.
///
/// A notifying transaction is still dear (it holds that lock through its own flush: measured
/// with pgbench here, a `NOTIFY` halves the rate of small transactions), so under load notices
/// go out at most every [`NOTIFY_INTERVAL`], each carrying all news since the last. An idle
/// system sends at once: the interval only delays a notice that follows another within it,
/// and only for other nodes.
#[derive(Debug, Clone)]
pub(super) struct Notifier {
    notices: mpsc::UnboundedSender<String>,
    /// Asks the task to send what is queued and end.
    stop: Arc<Notify>,
    /// Taken by the first [`Notifier::close`].
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Notifier {
    pub(super) fn start(pool: PgPool, channel: &'static str) -> Notifier {
        let (notices, rx) = mpsc::unbounded_channel::<String>();
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(send_notices(pool, channel, rx, stop.clone()));
        Notifier {
            notices,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Queues a notice (`payload`: an endpoint id, or empty). After [`Notifier::close`] the
    /// notice is dropped: other nodes find the news at their next read or poll.
    pub(super) fn send(&self, payload: String) {
        let _ = self.notices.send(payload);
    }

    /// Sends what is queued, then ends the task and waits for it.
    pub(super) async fn close(&self) {
        let task = self.task.lock().expect("not poisoned").take();
        if let Some(task) = task {
            self.stop.notify_one();
            let _ = task.await;
        }
    }
}

async fn send_notices(
    pool: PgPool,
    channel: &'static str,
    mut rx: mpsc::UnboundedReceiver<String>,
    stop: Arc<Notify>,
) {
    let mut ids = Vec::new();
    let mut last = tokio::time::Instant::now() - NOTIFY_INTERVAL;
    loop {
        let stopping = tokio::select! {
            // Ends when every sender is gone (the last store handle was dropped).
            n = rx.recv_many(&mut ids, 1024) => if n == 0 { return } else { false },
            _ = stop.notified() => true,
        };
        if !stopping {
            tokio::time::sleep_until(last + NOTIFY_INTERVAL).await;
            last = tokio::time::Instant::now();
        }
        while let Ok(id) = rx.try_recv() {
            ids.push(id);
        }
        if !ids.is_empty() {
            ids.sort_unstable();
            ids.dedup();
            if let Err(e) = sqlx::query("SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id")
                .bind(channel)
                .bind(&ids)
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, channel, notices = ids.len(),
                    "NOTIFY failed; other nodes find the news at their next read or poll");
            }
            ids.clear();
        }
        if stopping {
            return;
        }
    }
}

/// Every notice other processes send on the three channels, over one connection. The stream never
/// ends: a lost connection is re-established with backoff, and each time `LISTEN` has taken
/// effect (the first time too) it yields [`News::Missed`], because what was sent before could
/// not be heard.
pub(super) fn news(pool: PgPool) -> NewsStream {
    let listening = Listening {
        pool,
        listener: None,
        backoff: crate::store::reconnect_backoff(),
    };
    Box::pin(stream::unfold(listening, |mut l| async move {
        let news = l.next().await;
        Some((news, l))
    }))
}

struct Listening {
    pool: PgPool,
    /// `None` while disconnected.
    listener: Option<PgListener>,
    backoff: backon::ExponentialBackoff,
}

impl Listening {
    async fn next(&mut self) -> News {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match listen(&self.pool).await {
                    Ok(l) => {
                        self.listener = Some(l);
                        self.backoff = crate::store::reconnect_backoff();
                        // Only now is nothing missed any more: LISTEN is in effect.
                        return News::Missed;
                    }
                    Err(e) => {
                        let wait = crate::store::next_wait(&mut self.backoff);
                        tracing::warn!(error = %e, ?wait, "LISTEN connection failed; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            };
            // `try_recv`, not `recv`: `recv` reconnects by itself, so a caller could not tell
            // that notices were lost meanwhile.
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == WORK_CHANNEL => return News::Work,
                Ok(Some(n)) if n.channel() == CATALOG_CHANNEL => return News::Catalog,
                Ok(Some(n)) => return News::Callback(n.payload().to_string()),
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    self.listener = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    self.listener = None;
                }
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([WORK_CHANNEL, CALLBACK_CHANNEL, CATALOG_CHANNEL])
        .await?;
    Ok(listener)
}
