//! The worker's run loop on paused time, against a real store (SQLite and Postgres) and a real
//! HTTP receiver on a loopback port: it claims a worthwhile batch of free slots under load
//! rather than one delivery per finished send, sleeps until the next due retry when idle,
//! looks again after `LIMITED_RECHECK` at due work a destination's limits hold back, and at
//! shutdown releases the sends still in flight once the grace period is over.
//!
//! Tokio's paused clock jumps to the next timer whenever the runtime has nothing to run, and
//! that includes waiting for a socket or for sqlx's SQLite thread: a pool's acquire timeout or
//! a request timeout would fire in the middle of a query or a send. So these tests keep the
//! paused clock still ([`Freeze`]: a blocking task, which is how tokio documents stopping the
//! auto-advance) and let it run only while Herald waits on nothing but its timers, until the
//! worker's next store call ([`Observed::let_time_run`]). How far the clock moved is how long
//! the loop slept. [`Observed`] is the real store with a record of the worker's calls.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{Receiver, Reply, StoreKind, TestDb};
use herald::clock::Clock;
use herald::config::Config;
use herald::domain::callback::{Callback, CallbackEndpoint, Ingested};
use herald::domain::catalog::EventType;
use herald::domain::model::{Delivery, Destination, Event, Recovery, Tenant};
use herald::domain::retry::RetrySchedule;
use herald::domain::state::DeliveryStatus;
use herald::domain::time::Millis;
use herald::outbound::http::HttpSender;
use herald::service::Herald;
use herald::store::NewEventType;
use herald::store::{
    CallbackQuery, Claimed, DeliveryQuery, Finish, Finished, LinkState, NewEvent, Published,
    Result, Scope, Store, TokenRecord,
};
use herald::worker::{Executor, LIMITED_RECHECK, Worker, WorkerConfig};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::Instant;

/// Far beyond anything a test waits for: a loop that slept the poll interval instead of its
/// real reason would be caught, not mistaken for a short sleep.
const POLL: Duration = Duration::from_secs(60);
/// The loop rescues every half lease; with this, never while a test runs.
const LEASE: Duration = Duration::from_secs(2 * 3600);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
const GRACE: Duration = Duration::from_secs(10);
/// The first retry of every destination here.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long (paused time) a test waits for what it expects before failing.
const PATIENCE: Duration = Duration::from_secs(24 * 3600);
/// Real time after which a [`Freeze`] lets go anyway, so a test that waits for something that
/// never happens fails on its `PATIENCE` deadline instead of hanging.
const FREEZE_LIMIT: Duration = Duration::from_secs(120);

/// Runs one paused-time test function against each store.
macro_rules! on_paused_time_for_each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(super::common::StoreKind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(super::common::StoreKind::Postgres).await
                }
            )*
        }
    };
}

on_paused_time_for_each_store!(
    under_load_the_loop_claims_a_worthwhile_batch_of_free_slots_not_one_per_finished_send,
    an_idle_loop_sleeps_until_the_next_due_retry_not_the_poll_interval,
    due_work_held_back_by_a_destination_limit_is_looked_at_again_after_the_recheck,
    sends_still_in_flight_after_the_shutdown_grace_are_aborted_and_released_due_at_once,
);

async fn under_load_the_loop_claims_a_worthwhile_batch_of_free_slots_not_one_per_finished_send(
    kind: StoreKind,
) {
    let _still = Freeze::now();
    let receiver = HeldReceiver::start().await;
    // Four slots, batches of four: two free slots are the least worth a claim's commit.
    let t = Loop::start(kind, 4, 4, &receiver.url, json!({})).await;
    t.publish(8).await;
    receiver.wait_for_arrivals(4).await;
    assert_eq!(
        t.store.claims(),
        [(4, 4)],
        "the first claim fills every slot"
    );

    // One send ends: one free slot is not worth a commit.
    receiver.answer(1);
    t.store.wait_for("one outcome", |c| finished(c) == 1).await;
    // A second ends: two free slots are.
    receiver.answer(1);
    t.store
        .wait_for("a second claim", |c| claims(c).len() == 2)
        .await;
    receiver.wait_for_arrivals(6).await;
    receiver.answer(1);
    t.store
        .wait_for("three outcomes", |c| finished(c) == 3)
        .await;
    receiver.answer(1);
    t.store
        .wait_for("a third claim", |c| claims(c).len() == 3)
        .await;
    receiver.wait_for_arrivals(8).await;
    receiver.answer(4);
    t.store
        .wait_for("every outcome", |c| finished(c) == 8)
        .await;

    let claimed: Vec<_> = t.store.claims().into_iter().filter(|c| c.1 > 0).collect();
    assert_eq!(
        claimed,
        [(4, 4), (2, 2), (2, 2)],
        "eight deliveries in three claims, each of a worthwhile batch"
    );
    assert!(
        t.store.claims().iter().all(|(limit, _)| *limit >= 2),
        "never a claim for a single free slot while sends are in flight: {:?}",
        t.store.claims()
    );
    assert_eq!(t.statuses().await, [DeliveryStatus::Succeeded; 8]);
    t.stop().await;
}

async fn an_idle_loop_sleeps_until_the_next_due_retry_not_the_poll_interval(kind: StoreKind) {
    let still = Freeze::now();
    let receiver = Receiver::start_scripted(vec![Reply::status(500)]).await;
    let t = Loop::start(kind, 4, 4, &receiver.url, json!({})).await;
    t.publish(1).await;
    // The failed attempt is recorded; the send's wake-up makes the loop look again, and then
    // it has nothing to do before the retry.
    t.store
        .wait_for("the loop to look for the next due after the failure", |c| {
            after(c, is_finish).is_some_and(|rest| after(rest, is_claim).is_some_and(has_next_due))
        })
        .await;
    let first = t.only_delivery().await;
    assert_eq!(first.status, DeliveryStatus::Retrying);

    let (call, slept, _still) = t.store.let_time_run(still).await;
    assert_eq!(call, "claim");
    assert_eq!(slept, RETRY_AFTER, "the loop woke when the retry came due");
    receiver.wait_for(2, PATIENCE).await;
    t.store
        .wait_for("the retry's outcome", |c| finished(c) == 2)
        .await;

    let d = t.only_delivery().await;
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    let attempts = d.attempts.expect("one delivery is read with its attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[1].started_at - attempts[0].started_at,
        RETRY_AFTER.as_millis() as Millis,
        "the retry went out the moment it was due"
    );
    t.stop().await;
}

async fn due_work_held_back_by_a_destination_limit_is_looked_at_again_after_the_recheck(
    kind: StoreKind,
) {
    let still = Freeze::now();
    let receiver = HeldReceiver::start().await;
    let t = Loop::start(kind, 4, 4, &receiver.url, json!({"max_in_flight": 1})).await;
    t.publish(2).await;
    receiver.wait_for_arrivals(1).await;
    // The second delivery is due but its destination has no slot left: the loop claims
    // nothing, and sees it due.
    t.store
        .wait_for("a claim held back by the limit", |c| {
            after(c, |call| matches!(call, Call::Claim { got: 1, .. }))
                .and_then(|rest| after(rest, |call| matches!(call, Call::Claim { got: 0, .. })))
                .is_some_and(has_next_due)
        })
        .await;

    let (call, slept, _still) = t.store.let_time_run(still).await;
    assert_eq!(call, "claim");
    assert_eq!(
        slept, LIMITED_RECHECK,
        "neither a spin nor the poll interval"
    );
    assert_eq!(receiver.arrivals(), 1, "the limit still holds");

    // Once the first send ends, its wake-up has the loop claim the second at once.
    receiver.answer(2);
    receiver.wait_for_arrivals(2).await;
    t.store
        .wait_for("both outcomes", |c| finished(c) == 2)
        .await;
    assert_eq!(t.statuses().await, [DeliveryStatus::Succeeded; 2]);
    t.stop().await;
}

async fn sends_still_in_flight_after_the_shutdown_grace_are_aborted_and_released_due_at_once(
    kind: StoreKind,
) {
    let still = Freeze::now();
    let receiver = HeldReceiver::start().await;
    let mut t = Loop::start(kind, 4, 4, &receiver.url, json!({})).await;
    t.publish(2).await;
    receiver.wait_for_arrivals(2).await;
    t.store
        .wait_for("both claimed and the loop idle", |c| {
            after(c, |call| matches!(call, Call::Claim { got: 2, .. })).is_some_and(has_next_due)
        })
        .await;
    let claimed = t.deliveries().await;
    assert!(
        claimed
            .iter()
            .all(|d| d.status == DeliveryStatus::Delivering && d.attempt_count == 1)
    );

    // The receiver never answers: the grace runs out on paused time.
    t.stop.send_replace(true);
    let (call, waited, _still) = t.store.let_time_run(still).await;
    assert_eq!(call, "release");
    assert_eq!(waited, GRACE, "the sends had the grace period, and no more");
    let released_at = t.clock.now();
    t.ended().await;

    let releases: Vec<_> = t
        .store
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Release { attempt, released } => Some((attempt, released)),
            _ => None,
        })
        .collect();
    assert_eq!(releases, [(1, true), (1, true)]);
    for d in t.deliveries().await {
        assert_eq!(d.status, DeliveryStatus::Retrying);
        assert_eq!(d.next_attempt_at, Some(released_at), "due again at once");
        assert_eq!(d.attempt_count, 1, "the interrupted attempt still counts");
        assert_eq!(d.last_error.as_deref(), Some("interrupted by shutdown"));
        let d = t.delivery(&d.id).await;
        assert_eq!(d.attempts.map(|a| a.len()), Some(0), "nothing was logged");
    }
    let again = t
        .raw
        .claim(10, t.clock.now(), t.clock.now() + 1000)
        .await
        .unwrap();
    assert_eq!(again.len(), 2, "another worker may claim them now");
    assert!(again.iter().all(|c| c.attempt == 2));
}

/// A worker built as `app` builds it, on a fresh database and a tokio clock, with
/// [`Observed`] between it and the store; its loop runs until [`Loop::stop`].
struct Loop {
    herald: Herald,
    raw: Arc<dyn Store>,
    store: Arc<Observed>,
    clock: Clock,
    stop: watch::Sender<bool>,
    running: tokio::task::JoinHandle<()>,
    _db: TestDb,
}

impl Loop {
    /// A tenant with one webhook destination (`options` as the API takes them) to `url`, and
    /// the loop started and asleep with nothing to do.
    async fn start(
        kind: StoreKind,
        concurrency: usize,
        batch_size: u32,
        url: &str,
        options: Value,
    ) -> Self {
        let db = TestDb::new(kind).await;
        let raw = db.store().await;
        let store = Arc::new(Observed::new(raw.clone()));
        let clock = Clock::tokio();
        let policy = Config {
            allow_private_destinations: true,
            ..Config::default()
        }
        .ssrf_policy();
        let herald = Herald::new(raw.clone(), clock.clone(), policy.clone());
        herald.upsert_tenant("acme", None).await.unwrap();
        herald
            .create_destination(
                Scope::Admin,
                "acme",
                serde_json::from_value(json!({
                    "type": "webhook", "url": url, "topics": ["*"], "options": options,
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let executor = Executor::new(
            store.clone(),
            HttpSender::new(policy),
            clock.clone(),
            RetrySchedule::from_secs(&[RETRY_AFTER.as_secs()], 0.0),
            REQUEST_TIMEOUT,
        )
        .with_lease(LEASE);
        let worker = Arc::new(Worker::new(
            store.clone(),
            Arc::new(executor),
            WorkerConfig {
                concurrency,
                batch_size,
                lease: LEASE,
                poll_interval: POLL,
                shutdown_grace: GRACE,
                maintenance_interval: PATIENCE,
                ..WorkerConfig::default()
            },
            herald.wake.clone(),
        ));
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(worker.run(stopped));
        store
            .wait_for("the loop to find nothing to do", has_next_due)
            .await;
        // The tests look at what the loop does from here on.
        store.calls.send_modify(Vec::clear);
        Loop {
            herald,
            raw,
            store,
            clock,
            stop,
            running,
            _db: db,
        }
    }

    /// Publishes `n` events in one batch (one commit, one wake-up).
    async fn publish(&self, n: usize) {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"tenant_id": "acme", "topic": "job.done", "data": {"n": i}}))
            .collect();
        self.herald
            .publish_batch(
                Scope::Admin,
                serde_json::from_value(json!({ "events": events })).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn deliveries(&self) -> Vec<Delivery> {
        self.raw
            .list_deliveries(&DeliveryQuery {
                tenant_id: "acme".into(),
                limit: 100,
                ..DeliveryQuery::default()
            })
            .await
            .unwrap()
    }

    async fn statuses(&self) -> Vec<DeliveryStatus> {
        self.deliveries().await.iter().map(|d| d.status).collect()
    }

    async fn delivery(&self, id: &str) -> Delivery {
        self.raw
            .get_delivery(Scope::Admin, id)
            .await
            .unwrap()
            .expect("the delivery exists")
    }

    async fn only_delivery(&self) -> Delivery {
        let all = self.deliveries().await;
        assert_eq!(all.len(), 1);
        self.delivery(&all[0].id).await
    }

    /// Stops the loop (everything has been answered) and waits for it to end.
    async fn stop(mut self) {
        self.stop.send_replace(true);
        self.ended().await;
    }

    /// Waits for the loop to end (once told to stop).
    async fn ended(&mut self) {
        tokio::time::timeout(PATIENCE, &mut self.running)
            .await
            .expect("the loop ends")
            .expect("the loop does not panic");
    }
}

/// Keeps tokio's paused clock still while it lives, auto-advance included, by keeping a
/// blocking task running (tokio does not auto-advance while one runs). It lets go after
/// [`FREEZE_LIMIT`] of real time in any case.
struct Freeze {
    _hold: std::sync::mpsc::Sender<()>,
}

impl Freeze {
    fn now() -> Self {
        let (hold, held) = std::sync::mpsc::channel::<()>();
        // Ends when `hold` is dropped (the receive fails) or at the limit.
        tokio::task::spawn_blocking(move || held.recv_timeout(FREEZE_LIMIT));
        Freeze { _hold: hold }
    }
}

/// One store call of the worker's, with its result.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Rescue,
    Claim { limit: u32, got: usize },
    NextDue(Option<Millis>),
    Finish { outcomes: usize },
    Release { attempt: u32, released: bool },
    Purge,
}

fn is_finish(c: &Call) -> bool {
    matches!(c, Call::Finish { .. })
}

fn is_claim(c: &Call) -> bool {
    matches!(c, Call::Claim { .. })
}

/// The calls after the last one that matches `which`, if any does.
fn after(calls: &[Call], which: impl Fn(&Call) -> bool) -> Option<&[Call]> {
    calls.iter().rposition(which).map(|i| &calls[i + 1..])
}

/// Whether the loop asked for the next due time: its last store call before it sleeps.
fn has_next_due(calls: &[Call]) -> bool {
    calls.iter().any(|c| matches!(c, Call::NextDue(_)))
}

fn claims(calls: &[Call]) -> Vec<(u32, usize)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Claim { limit, got } => Some((*limit, *got)),
            _ => None,
        })
        .collect()
}

/// How many outcomes were committed.
fn finished(calls: &[Call]) -> usize {
    calls
        .iter()
        .map(|c| match c {
            Call::Finish { outcomes } => *outcomes,
            _ => 0,
        })
        .sum()
}

/// Where the clock stopped: which call, and when.
type Stopped = (&'static str, Instant, Freeze);

/// The real store, recording the worker's calls (and able to stop the paused clock at the
/// next one). Every other method is the store's own.
struct Observed {
    inner: Arc<dyn Store>,
    calls: watch::Sender<Vec<Call>>,
    stop_at_next_call: Mutex<Option<oneshot::Sender<Stopped>>>,
}

impl Observed {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            calls: watch::channel(vec![]).0,
            stop_at_next_call: Mutex::new(None),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn claims(&self) -> Vec<(u32, usize)> {
        claims(&self.calls.borrow())
    }

    /// Waits until the calls so far satisfy `done`.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Call]) -> bool) {
        let mut calls = self.calls.subscribe();
        let waited = tokio::time::timeout(PATIENCE, calls.wait_for(|c| done(c))).await;
        assert!(
            waited.is_ok(),
            "waited in vain for {what}: {:?}",
            self.calls()
        );
    }

    /// Lets the paused clock run (auto-advancing from timer to timer) until the worker's
    /// next store call, and freezes it again there. Call it only while the worker waits on
    /// nothing but its timers. Returns the call, how far the clock moved, and the freeze.
    async fn let_time_run(&self, frozen: Freeze) -> (&'static str, Duration, Freeze) {
        let (tx, rx) = oneshot::channel();
        *self.stop_at_next_call.lock().unwrap() = Some(tx);
        let from = Instant::now();
        drop(frozen);
        let (call, at, freeze) = tokio::time::timeout(PATIENCE, rx)
            .await
            .expect("the worker makes another store call")
            .unwrap();
        (call, at - from, freeze)
    }

    /// Called first thing in each of the worker's calls.
    fn enter(&self, call: &'static str) {
        if let Some(tx) = self.stop_at_next_call.lock().unwrap().take() {
            let _ = tx.send((call, Instant::now(), Freeze::now()));
        }
    }

    fn record(&self, call: Call) {
        self.calls.send_modify(|calls| calls.push(call));
    }
}

#[async_trait]
impl Store for Observed {
    async fn claim(&self, limit: u32, now: Millis, lease_until: Millis) -> Result<Vec<Claimed>> {
        self.enter("claim");
        let r = self.inner.claim(limit, now, lease_until).await;
        let got = r.as_ref().map_or(0, Vec::len);
        self.record(Call::Claim { limit, got });
        r
    }

    async fn finish(&self, f: &Finish) -> Result<Finished> {
        self.enter("finish");
        let r = self.inner.finish(f).await;
        self.record(Call::Finish {
            outcomes: usize::from(r.is_ok()),
        });
        r
    }

    async fn finish_batch(&self, fs: &[Finish]) -> Result<Vec<Finished>> {
        self.enter("finish_batch");
        let r = self.inner.finish_batch(fs).await;
        self.record(Call::Finish {
            outcomes: r.as_ref().map_or(0, Vec::len),
        });
        r
    }

    async fn rescue_expired(&self, now: Millis) -> Result<u64> {
        self.enter("rescue_expired");
        let r = self.inner.rescue_expired(now).await;
        self.record(Call::Rescue);
        r
    }

    async fn next_due(&self) -> Result<Option<Millis>> {
        self.enter("next_due");
        let r = self.inner.next_due().await;
        self.record(Call::NextDue(*r.as_ref().unwrap_or(&None)));
        r
    }

    async fn release(&self, delivery_id: &str, attempt: u32, now: Millis) -> Result<bool> {
        self.enter("release");
        let r = self.inner.release(delivery_id, attempt, now).await;
        self.record(Call::Release {
            attempt,
            released: *r.as_ref().unwrap_or(&false),
        });
        r
    }

    async fn purge_before(&self, cutoff: Millis, batch: u32) -> Result<u64> {
        self.enter("purge_before");
        let r = self.inner.purge_before(cutoff, batch).await;
        self.record(Call::Purge);
        r
    }

    // Everything else: the store's own.

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn seal_at_rest(&self, now: Millis) -> Result<u64> {
        self.inner.seal_at_rest(now).await
    }

    async fn insert_token(
        &self,
        id: &str,
        hash: &str,
        tenant_id: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        self.inner.insert_token(id, hash, tenant_id, now).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.inner.find_token(hash).await
    }

    async fn has_admin_token(&self) -> Result<bool> {
        self.inner.has_admin_token().await
    }

    async fn upsert_tenant(
        &self,
        id: &str,
        metadata: &serde_json::Value,
        now: Millis,
    ) -> Result<(Tenant, bool)> {
        self.inner.upsert_tenant(id, metadata, now).await
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        self.inner.get_tenant(id).await
    }

    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        self.inner.list_tenants(after, limit).await
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        self.inner.delete_tenant(id).await
    }

    async fn put_event_type(&self, t: &NewEventType<'_>, now: Millis) -> Result<EventType> {
        self.inner.put_event_type(t, now).await
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        self.inner.get_event_type(name).await
    }

    async fn list_event_types(
        &self,
        after: Option<&str>,
        limit: u32,
        include_archived: bool,
    ) -> Result<Vec<EventType>> {
        self.inner
            .list_event_types(after, limit, include_archived)
            .await
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        self.inner.delete_event_type(name).await
    }

    async fn insert_destination(&self, d: &Destination, max_per_tenant: u32) -> Result<()> {
        self.inner.insert_destination(d, max_per_tenant).await
    }

    async fn get_destination(&self, tenant_id: &str, id: &str) -> Result<Option<Destination>> {
        self.inner.get_destination(tenant_id, id).await
    }

    async fn list_destinations(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Destination>> {
        self.inner.list_destinations(tenant_id, after, limit).await
    }

    async fn update_destination(&self, d: &Destination) -> Result<bool> {
        self.inner.update_destination(d).await
    }

    async fn delete_destination(&self, tenant_id: &str, id: &str, now: Millis) -> Result<bool> {
        self.inner.delete_destination(tenant_id, id, now).await
    }

    async fn publish(&self, events: &[NewEvent], now: Millis) -> Result<Vec<Published>> {
        self.inner.publish(events, now).await
    }

    async fn get_event(&self, scope: Scope<'_>, id: &str) -> Result<Option<Event>> {
        self.inner.get_event(scope, id).await
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        self.inner.list_events(tenant_id, after, limit).await
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        self.inner.list_deliveries(q).await
    }

    async fn get_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Option<Delivery>> {
        self.inner.get_delivery(scope, id).await
    }

    async fn retry_delivery(&self, scope: Scope<'_>, id: &str, now: Millis) -> Result<Delivery> {
        self.inner.retry_delivery(scope, id, now).await
    }

    async fn replay_event(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        destination_ids: Option<&[String]>,
        now: Millis,
    ) -> Result<u32> {
        self.inner
            .replay_event(scope, event_id, destination_ids, now)
            .await
    }

    async fn recover_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
        dry_run: bool,
        now: Millis,
    ) -> Result<Recovery> {
        self.inner
            .recover_destination(tenant_id, destination_id, since, dry_run, now)
            .await
    }

    async fn get_recovery(&self, tenant_id: &str, id: &str) -> Result<Option<Recovery>> {
        self.inner.get_recovery(tenant_id, id).await
    }

    async fn queue_stats(&self, now: Millis) -> Result<(u64, Option<Millis>)> {
        self.inner.queue_stats(now).await
    }

    fn news(&self) -> Option<herald::store::NewsStream> {
        self.inner.news()
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn insert_callback_endpoint(&self, e: &CallbackEndpoint) -> Result<()> {
        self.inner.insert_callback_endpoint(e).await
    }

    async fn get_callback_endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<Option<CallbackEndpoint>> {
        self.inner.get_callback_endpoint(scope, id).await
    }

    async fn find_callback_endpoint(&self, slug: &str) -> Result<Option<CallbackEndpoint>> {
        self.inner.find_callback_endpoint(slug).await
    }

    async fn reply_endpoint_of(
        &self,
        scope: Scope<'_>,
        event_id: &str,
    ) -> Result<Option<CallbackEndpoint>> {
        self.inner.reply_endpoint_of(scope, event_id).await
    }

    async fn list_callback_endpoints(
        &self,
        scope: Scope<'_>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CallbackEndpoint>> {
        self.inner
            .list_callback_endpoints(scope, after, limit)
            .await
    }

    async fn delete_callback_endpoint(&self, scope: Scope<'_>, id: &str) -> Result<bool> {
        self.inner.delete_callback_endpoint(scope, id).await
    }

    async fn ingest_callback(&self, c: &Callback) -> Result<Ingested> {
        self.inner.ingest_callback(c).await
    }

    async fn ingest_callbacks(&self, cs: &[Callback]) -> Result<Vec<Ingested>> {
        self.inner.ingest_callbacks(cs).await
    }

    async fn callbacks_after(
        &self,
        endpoint_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        self.inner.callbacks_after(endpoint_id, after, limit).await
    }

    async fn rejected_callbacks(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        self.inner
            .rejected_callbacks(endpoint_id, after, limit)
            .await
    }

    async fn list_callbacks(&self, q: &CallbackQuery) -> Result<Vec<Callback>> {
        self.inner.list_callbacks(q).await
    }

    async fn get_callback(&self, scope: Scope<'_>, id: &str) -> Result<Option<Callback>> {
        self.inner.get_callback(scope, id).await
    }

    async fn ack_callback(
        &self,
        scope: Scope<'_>,
        id: &str,
        now: Millis,
    ) -> Result<Option<Callback>> {
        self.inner.ack_callback(scope, id, now).await
    }

    async fn insert_portal_link(
        &self,
        hash: &str,
        tenant_id: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        self.inner
            .insert_portal_link(hash, tenant_id, expires_at, now)
            .await
    }

    async fn redeem_portal_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        session_expires_at: Millis,
        now: Millis,
    ) -> Result<LinkState> {
        self.inner
            .redeem_portal_link(link_hash, session_hash, session_expires_at, now)
            .await
    }

    async fn check_portal_link(&self, link_hash: &str, now: Millis) -> Result<LinkState> {
        self.inner.check_portal_link(link_hash, now).await
    }

    async fn find_portal_session(&self, hash: &str, now: Millis) -> Result<Option<String>> {
        self.inner.find_portal_session(hash, now).await
    }

    async fn delete_portal_session(&self, hash: &str) -> Result<()> {
        self.inner.delete_portal_session(hash).await
    }

    async fn destination_health(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
    ) -> Result<herald::domain::health::DestinationHealth> {
        self.inner
            .destination_health(tenant_id, destination_id, since)
            .await
    }
}

/// A real HTTP server on a loopback port that holds every request until the test lets a
/// reply go ([`HeldReceiver::answer`]), then answers 200.
struct HeldReceiver {
    url: String,
    arrivals: watch::Sender<usize>,
    replies: Arc<Semaphore>,
}

impl HeldReceiver {
    async fn start() -> Self {
        let arrivals = watch::channel(0).0;
        let replies = Arc::new(Semaphore::new(0));
        let (a, r) = (arrivals.clone(), replies.clone());
        let app = axum::Router::new().fallback(move || {
            let (arrivals, replies) = (a.clone(), r.clone());
            async move {
                arrivals.send_modify(|n| *n += 1);
                replies.acquire().await.expect("never closed").forget();
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HeldReceiver {
            url,
            arrivals,
            replies,
        }
    }

    fn arrivals(&self) -> usize {
        *self.arrivals.borrow()
    }

    async fn wait_for_arrivals(&self, n: usize) {
        let mut arrivals = self.arrivals.subscribe();
        let waited = tokio::time::timeout(PATIENCE, arrivals.wait_for(|got| *got >= n)).await;
        assert!(
            waited.is_ok(),
            "expected {n} requests, got {}",
            self.arrivals()
        );
    }

    /// Lets `n` of the held requests (the oldest first) be answered.
    fn answer(&self, n: usize) {
        self.replies.add_permits(n);
    }
}
