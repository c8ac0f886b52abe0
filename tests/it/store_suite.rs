//! The store contract, run against every driver (river's shared driver suite): whatever the
//! database, the scheduler's guarantees hold, and every `Store` method does what its doc says,
//! edge cases included (a finish for a lease no longer held, a claim of a destination at its
//! limit, a purge at the retention bound, a replay of a skipped delivery, a recovery since a
//! time, a portal link spent or expired).

use crate::{common, for_each_store};
#[path = "store_suite/inbound.rs"]
mod inbound;
#[path = "store_suite/news.rs"]
mod news;

use std::collections::HashSet;
use std::sync::Arc;

use common::{StoreKind, TestDb};
use herald::domain::ids::{Kind, new_id};
use herald::domain::model::{
    Attempt, Destination, DestinationKind, DestinationOptions, SigningSecret,
};
use herald::domain::state::{DeliveryStatus, Trigger};
use herald::store::{DeliveryQuery, Finish, NewEvent, Scope, Store, StoreError};
use serde_json::json;
use serde_json::value::RawValue;

for_each_store!(
    migrations_apply_twice_without_harm,
    publishing_writes_the_event_and_its_deliveries_together,
    an_unknown_tenant_makes_the_whole_batch_fail_with_nothing_written,
    a_claimed_delivery_is_not_claimed_again_while_its_lease_holds,
    concurrent_claims_never_return_the_same_delivery,
    only_due_deliveries_are_claimed,
    a_finish_applies_only_to_the_attempt_that_still_holds_the_delivery,
    an_expired_lease_is_rescued_to_retrying,
    a_finished_delivery_can_be_retried_but_not_one_in_flight,
    tenant_scope_hides_other_tenants_rows,
    deleting_a_tenant_removes_everything_it_owns,
    next_due_reports_the_earliest_pending_delivery,
    a_batch_of_outcomes_has_the_effect_of_finishing_each_in_turn,
    a_batch_of_successes_applies_to_held_deliveries_logs_every_attempt_and_ends_the_failure_streak,
    deliveries_claimed_together_share_their_destination,
    each_store_names_its_kind,
    tokens_are_found_by_hash_and_an_admin_token_is_one_without_a_tenant,
    tenants_are_read_one_by_one_and_listed_in_pages,
    updating_a_destination_saves_its_fields_and_reports_a_missing_one,
    deleting_a_destination_cancels_its_pending_deliveries,
    a_skipped_delivery_is_replayed_and_a_pending_one_left_alone,
    a_recovery_schedules_failed_and_skipped_deliveries_created_since_a_time,
    a_destination_at_its_in_flight_limit_is_not_claimed_until_a_slot_frees,
    a_purge_keeps_events_at_the_retention_bound_and_events_still_being_delivered,
    queue_stats_count_the_due_deliveries_and_the_oldest_due_time,
    a_release_gives_the_delivery_back_only_while_the_attempt_holds_it,
    a_portal_link_is_spent_once_and_expires,
    a_portal_session_lasts_until_it_expires_or_is_deleted,
    destination_health_counts_outcomes_and_names_the_latest,
    an_event_type_is_versioned_on_every_put_listed_by_name_and_deleted,
);

async fn an_event_type_is_versioned_on_every_put_listed_by_name_and_deleted(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let schema = json!({"type": "object"});
    let examples = [json!({"a": 1})];
    let t = herald::store::NewEventType {
        name: "job.done",
        description: Some("done"),
        schema: Some(&schema),
        examples: &examples,
        deprecated: false,
        archived: false,
    };
    let first = s.put_event_type(&t, 10).await.unwrap();
    assert_eq!(
        (first.version, first.created_at, first.updated_at),
        (1, 10, 10)
    );
    assert_eq!(first.schema, Some(schema.clone()));
    assert_eq!(first.examples, examples);
    let archived = herald::store::NewEventType {
        archived: true,
        schema: None,
        ..t.clone()
    };
    let second = s.put_event_type(&archived, 20).await.unwrap();
    assert_eq!(
        (second.version, second.created_at, second.updated_at),
        (2, 10, 20)
    );
    assert_eq!((second.schema, second.archived), (None, true));
    let other = herald::store::NewEventType {
        name: "a.first",
        ..t.clone()
    };
    s.put_event_type(&other, 30).await.unwrap();
    let names = |v: Vec<herald::domain::catalog::EventType>| -> Vec<String> {
        v.into_iter().map(|t| t.name).collect()
    };
    assert_eq!(
        names(s.list_event_types(None, 10, false).await.unwrap()),
        ["a.first"]
    );
    assert_eq!(
        names(s.list_event_types(None, 10, true).await.unwrap()),
        ["a.first", "job.done"]
    );
    assert_eq!(
        names(s.list_event_types(Some("a.first"), 10, true).await.unwrap()),
        ["job.done"]
    );
    assert_eq!(
        s.get_event_type("job.done").await.unwrap(),
        Some(second_copy(&s).await)
    );
    assert!(s.delete_event_type("job.done").await.unwrap());
    assert!(!s.delete_event_type("job.done").await.unwrap());
    assert_eq!(s.get_event_type("job.done").await.unwrap(), None);
}

async fn second_copy(s: &Arc<dyn Store>) -> herald::domain::catalog::EventType {
    let all = s.list_event_types(None, 10, true).await.unwrap();
    all.into_iter().find(|t| t.name == "job.done").unwrap()
}

async fn store(kind: StoreKind) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(kind).await;
    (db.store().await, db)
}

fn destination(tenant: &str, enabled: bool) -> Destination {
    Destination {
        id: new_id(Kind::Destination),
        tenant_id: tenant.into(),
        kind: DestinationKind::Webhook,
        url: Some("http://127.0.0.1:9/".into()),
        amqp: None,
        description: None,
        topics: vec!["*".into()],
        filter: None,
        headers: Default::default(),
        options: DestinationOptions::default(),
        enabled,
        disabled_reason: None,
        disabled_at: None,
        secrets: vec![SigningSecret {
            secret: herald::domain::signature::generate_secret(),
            expires_at: None,
        }],
        created_at: 0,
        updated_at: 0,
    }
}

fn event(tenant: &str) -> NewEvent {
    NewEvent {
        id: new_id(Kind::Event),
        tenant_id: tenant.into(),
        topic: "job.done".into(),
        data: RawValue::from_string("{\"n\":1}".into()).unwrap(),
        metadata: json!({}),
        idempotency_key: None,
        destination_id: None,
        reply: None,
        traceparent: None,
        schema_version: None,
    }
}

/// A tenant with `n` enabled destinations.
async fn tenant(s: &dyn Store, id: &str, n: usize) -> Vec<Destination> {
    s.upsert_tenant(id, &json!({}), 0).await.unwrap();
    let mut ds = vec![];
    for _ in 0..n {
        let d = destination(id, true);
        s.insert_destination(&d, 0).await.unwrap();
        ds.push(d);
    }
    ds
}

fn finish(c: &herald::store::Claimed, next: DeliveryStatus, now: i64) -> Finish {
    Finish {
        delivery_id: c.delivery_id.clone(),
        tenant_id: c.tenant_id.clone(),
        attempt_number: c.attempt,
        attempt: Some(Attempt {
            id: new_id(Kind::Attempt),
            delivery_id: c.delivery_id.clone(),
            attempt: c.attempt,
            trigger: Trigger::Scheduled,
            started_at: now,
            duration_ms: 1,
            url: None,
            status_code: Some(200),
            error_kind: None,
            error: None,
            request_headers: Default::default(),
            response_headers: Default::default(),
            response_body: None,
        }),
        last_error: None,
        next,
        next_attempt_at: None,
        now,
        destination_id: c.destination_id.clone(),
        disable_destination: None,
        auto_disable: Default::default(),
    }
}

async fn migrations_apply_twice_without_harm(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
}

async fn publishing_writes_the_event_and_its_deliveries_together(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 3).await;
    let out = s
        .publish(&[event("acme"), event("acme")], 1000)
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|p| p.created && p.deliveries == 3));
    let q = DeliveryQuery {
        tenant_id: "acme".into(),
        limit: 100,
        ..Default::default()
    };
    let ds = s.list_deliveries(&q).await.unwrap();
    assert_eq!(ds.len(), 6);
    assert!(
        ds.iter()
            .all(|d| d.status == DeliveryStatus::Scheduled && d.next_attempt_at == Some(1000))
    );
}

async fn an_unknown_tenant_makes_the_whole_batch_fail_with_nothing_written(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    let err = s
        .publish(&[event("acme"), event("ghost")], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("tenant")));
    assert!(s.list_events("acme", None, 10).await.unwrap().is_empty());
}

async fn a_claimed_delivery_is_not_claimed_again_while_its_lease_holds(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    s.publish(&[event("acme")], 0).await.unwrap();
    let first = s.claim(10, 10, 1000).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[0].data.get(), "{\"n\":1}");
    assert!(first[0].destination.is_some());
    assert!(s.claim(10, 20, 1000).await.unwrap().is_empty());
}

async fn concurrent_claims_never_return_the_same_delivery(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 2).await;
    let events: Vec<_> = (0..100).map(|_| event("acme")).collect();
    s.publish(&events, 0).await.unwrap();
    let mut tasks = vec![];
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let c = s.claim(7, 10, 100_000).await.unwrap();
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|c| c.delivery_id));
            }
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(distinct.len(), 200, "no delivery was claimed twice");
}

async fn only_due_deliveries_are_claimed(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    s.publish(&[event("acme")], 5000).await.unwrap();
    assert!(s.claim(10, 4999, 9999).await.unwrap().is_empty());
    assert_eq!(s.claim(10, 5000, 9999).await.unwrap().len(), 1);
}

async fn a_finish_applies_only_to_the_attempt_that_still_holds_the_delivery(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    s.publish(&[event("acme")], 0).await.unwrap();
    let stale = s.claim(1, 0, 100).await.unwrap().remove(0);
    // The lease runs out; another worker takes over.
    assert_eq!(s.rescue_expired(100).await.unwrap(), 1);
    let fresh = s.claim(1, 100, 200).await.unwrap().remove(0);
    assert_eq!(fresh.attempt, 2);

    // The stale worker's outcome is logged but does not move the delivery.
    assert!(
        !s.finish(&finish(&stale, DeliveryStatus::Failed, 150))
            .await
            .unwrap()
            .applied
    );
    assert!(
        s.finish(&finish(&fresh, DeliveryStatus::Succeeded, 160))
            .await
            .unwrap()
            .applied
    );
    let d = s
        .get_delivery(Scope::Admin, &fresh.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    assert_eq!(d.finalized_at, Some(160));
    assert_eq!(d.attempts.unwrap().len(), 2);
    // A second finish of the same attempt changes nothing.
    assert!(
        !s.finish(&finish(&fresh, DeliveryStatus::Failed, 170))
            .await
            .unwrap()
            .applied
    );
}

async fn an_expired_lease_is_rescued_to_retrying(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    s.publish(&[event("acme")], 0).await.unwrap();
    let c = s.claim(1, 0, 100).await.unwrap().remove(0);
    assert_eq!(s.rescue_expired(99).await.unwrap(), 0);
    assert_eq!(s.rescue_expired(100).await.unwrap(), 1);
    let d = s
        .get_delivery(Scope::Admin, &c.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Retrying);
    assert_eq!(d.next_attempt_at, Some(100));
}

async fn a_finished_delivery_can_be_retried_but_not_one_in_flight(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    s.publish(&[event("acme")], 0).await.unwrap();
    let c = s.claim(1, 0, 100).await.unwrap().remove(0);
    let err = s
        .retry_delivery(Scope::Admin, &c.delivery_id, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    s.finish(&finish(&c, DeliveryStatus::Failed, 20))
        .await
        .unwrap();
    let d = s
        .retry_delivery(Scope::Admin, &c.delivery_id, 30)
        .await
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Scheduled);
    assert_eq!(d.finalized_at, None);
    let again = s.claim(1, 30, 100).await.unwrap().remove(0);
    assert_eq!(again.trigger, Trigger::Manual);
    assert_eq!(again.attempt, 2);
}

async fn tenant_scope_hides_other_tenants_rows(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let acme = tenant(&*s, "acme", 1).await;
    tenant(&*s, "other", 0).await;
    let p = s.publish(&[event("acme")], 0).await.unwrap().remove(0);
    assert!(
        s.get_event(Scope::Tenant("other"), &p.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_event(Scope::Tenant("acme"), &p.id)
            .await
            .unwrap()
            .is_some()
    );
    let q = DeliveryQuery {
        tenant_id: "acme".into(),
        limit: 10,
        ..Default::default()
    };
    let d = s.list_deliveries(&q).await.unwrap().remove(0);
    assert!(
        s.get_delivery(Scope::Tenant("other"), &d.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.retry_delivery(Scope::Tenant("other"), &d.id, 0).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        s.get_destination("other", &acme[0].id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn deleting_a_tenant_removes_everything_it_owns(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    let p = s.publish(&[event("acme")], 0).await.unwrap().remove(0);
    assert!(s.delete_tenant("acme").await.unwrap());
    assert!(s.get_event(Scope::Admin, &p.id).await.unwrap().is_none());
    assert!(
        s.list_destinations("acme", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.claim(10, 0, 100).await.unwrap().is_empty());
    assert!(!s.delete_tenant("acme").await.unwrap());
}

async fn next_due_reports_the_earliest_pending_delivery(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    assert_eq!(s.next_due().await.unwrap(), None);
    tenant(&*s, "acme", 1).await;
    s.publish(&[event("acme")], 700).await.unwrap();
    s.publish(&[event("acme")], 300).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(300));
}

/// `n` deliveries of one tenant with one destination, claimed at 0. The last one "crashed":
/// it is released and claimed again, so its first claim (`stale`) no longer holds it and the
/// second (`fresh`) does. Returns the other claims, the stale one and the fresh one.
async fn claims_with_a_stale_one(
    s: &dyn Store,
    n: usize,
) -> (
    Vec<herald::store::Claimed>,
    herald::store::Claimed,
    herald::store::Claimed,
) {
    tenant(s, "acme", 1).await;
    let events: Vec<_> = (0..n).map(|_| event("acme")).collect();
    s.publish(&events, 0).await.unwrap();
    let mut c = s.claim(10, 0, 100).await.unwrap();
    assert_eq!(c.len(), n);
    let stale = c.pop().unwrap();
    s.release(&stale.delivery_id, stale.attempt, 10)
        .await
        .unwrap();
    let fresh = s.claim(10, 10, 100).await.unwrap().remove(0);
    assert_eq!(fresh.delivery_id, stale.delivery_id);
    (c, stale, fresh)
}

async fn a_batch_of_outcomes_has_the_effect_of_finishing_each_in_turn(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let (c, stale, fresh) = claims_with_a_stale_one(&*s, 4).await;

    let mut retry = finish(&c[1], DeliveryStatus::Retrying, 50);
    retry.next_attempt_at = Some(5000);
    let outcomes = vec![
        finish(&c[0], DeliveryStatus::Succeeded, 50),
        retry,
        finish(&c[2], DeliveryStatus::Succeeded, 50),
        finish(&stale, DeliveryStatus::Succeeded, 50),
    ];
    let done = s.finish_batch(&outcomes).await.unwrap();
    let applied: Vec<bool> = done.iter().map(|d| d.applied).collect();
    assert_eq!(applied, vec![true, true, true, false]);

    let get = |id: String| {
        let s = s.clone();
        async move { s.get_delivery(Scope::Admin, &id).await.unwrap().unwrap() }
    };
    let d0 = get(c[0].delivery_id.clone()).await;
    assert_eq!(
        (d0.status, d0.finalized_at, d0.last_status_code),
        (DeliveryStatus::Succeeded, Some(50), Some(200))
    );
    assert_eq!(d0.attempts.unwrap().len(), 1);
    let d1 = get(c[1].delivery_id.clone()).await;
    assert_eq!(
        (d1.status, d1.next_attempt_at),
        (DeliveryStatus::Retrying, Some(5000))
    );
    let d3 = get(stale.delivery_id.clone()).await;
    assert_eq!(
        d3.status,
        DeliveryStatus::Delivering,
        "the stale outcome did not apply"
    );
    assert_eq!(d3.attempts.unwrap().len(), 1, "but its attempt is logged");
    assert_eq!(fresh.delivery_id, stale.delivery_id);
}

/// A failed attempt that counts towards auto-disable after two failures in a row.
fn failure(c: &herald::store::Claimed, now: i64) -> Finish {
    let mut f = finish(c, DeliveryStatus::Retrying, now);
    f.next_attempt_at = Some(now + 1000);
    f.attempt.as_mut().unwrap().status_code = Some(500);
    f.auto_disable = herald::store::AutoDisable {
        after_failures: 2,
        after_ms: 0,
    };
    f
}

// A batch of nothing but successes takes Postgres's one-statement path; the streak shows it
// does all the transaction path does.
async fn a_batch_of_successes_applies_to_held_deliveries_logs_every_attempt_and_ends_the_failure_streak(
    kind: StoreKind,
) {
    let (s, _db) = store(kind).await;
    let (c, stale, fresh) = claims_with_a_stale_one(&*s, 5).await;

    // One failure: a streak of one of the two that disable the destination.
    assert_eq!(s.finish(&failure(&c[0], 20)).await.unwrap().disabled, None);

    let successes = vec![
        finish(&c[1], DeliveryStatus::Succeeded, 30),
        finish(&stale, DeliveryStatus::Succeeded, 30),
        finish(&c[2], DeliveryStatus::Succeeded, 31),
    ];
    let done = s.finish_batch(&successes).await.unwrap();
    let applied: Vec<bool> = done.iter().map(|d| d.applied).collect();
    assert_eq!(applied, vec![true, false, true]);

    for (id, at) in [(&c[1].delivery_id, 30), (&c[2].delivery_id, 31)] {
        let d = s.get_delivery(Scope::Admin, id).await.unwrap().unwrap();
        assert_eq!(
            (
                d.status,
                d.finalized_at,
                d.last_status_code,
                d.next_attempt_at
            ),
            (DeliveryStatus::Succeeded, Some(at), Some(200), None)
        );
        assert_eq!(d.attempts.unwrap().len(), 1);
    }
    let d = s
        .get_delivery(Scope::Admin, &stale.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.status,
        DeliveryStatus::Delivering,
        "the stale success did not apply"
    );
    assert_eq!(d.attempts.unwrap().len(), 1, "but its attempt is logged");

    // The successes ended the streak: one more failure starts a new one...
    assert_eq!(s.finish(&failure(&c[3], 40)).await.unwrap().disabled, None);
    // ...and a second in a row disables the destination.
    assert!(
        s.finish(&failure(&fresh, 50))
            .await
            .unwrap()
            .disabled
            .is_some()
    );
}

async fn deliveries_claimed_together_share_their_destination(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let ds = tenant(&*s, "acme", 2).await;
    let events: Vec<_> = (0..3).map(|_| event("acme")).collect();
    s.publish(&events, 0).await.unwrap();
    let c = s.claim(10, 0, 100).await.unwrap();
    assert_eq!(c.len(), 6);
    for d in &ds {
        let mine: Vec<_> = c.iter().filter(|c| c.destination_id == d.id).collect();
        assert_eq!(mine.len(), 3);
        let first = mine[0].destination.as_ref().unwrap();
        assert_eq!(first.id, d.id);
        assert_eq!(first.secrets, d.secrets, "its secrets are opened");
        for other in &mine[1..] {
            assert!(Arc::ptr_eq(first, other.destination.as_ref().unwrap()));
        }
    }
}

fn all_of(tenant: &str) -> DeliveryQuery {
    DeliveryQuery {
        tenant_id: tenant.into(),
        limit: 100,
        ..Default::default()
    }
}

/// Claims everything due at `now` and finishes it as `next`.
async fn claim_and_finish(s: &dyn Store, now: i64, next: DeliveryStatus) {
    for c in s.claim(100, now, now + 60_000).await.unwrap() {
        assert!(s.finish(&finish(&c, next, now)).await.unwrap().applied);
    }
}

async fn each_store_names_its_kind(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let expected = match kind {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
    };
    assert_eq!(s.kind(), expected);
}

async fn tokens_are_found_by_hash_and_an_admin_token_is_one_without_a_tenant(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 0).await;
    assert!(!s.has_admin_token().await.unwrap());
    s.insert_token("tok_1", "hash-1", Some("acme"), 0)
        .await
        .unwrap();
    assert!(
        !s.has_admin_token().await.unwrap(),
        "a tenant's token is no admin token"
    );
    s.insert_token("tok_2", "hash-2", None, 0).await.unwrap();
    assert!(s.has_admin_token().await.unwrap());
    let found = s.find_token("hash-1").await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.tenant_id.as_deref()),
        ("tok_1", Some("acme"))
    );
    assert_eq!(
        s.find_token("hash-2").await.unwrap().unwrap().tenant_id,
        None
    );
    assert!(
        s.find_token("tok_1").await.unwrap().is_none(),
        "found by hash only"
    );
}

async fn tenants_are_read_one_by_one_and_listed_in_pages(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    for id in ["c", "a", "b"] {
        let (t, created) = s.upsert_tenant(id, &json!({"n": id}), 5).await.unwrap();
        assert!(created);
        assert_eq!(t.id, id);
    }
    let (t, created) = s.upsert_tenant("a", &json!({"n": 2}), 9).await.unwrap();
    assert!(!created);
    assert_eq!(t.metadata, json!({"n": 2}));
    assert_eq!(
        s.get_tenant("a").await.unwrap().unwrap().metadata,
        json!({"n": 2})
    );
    assert!(s.get_tenant("ghost").await.unwrap().is_none());
    let ids =
        |ts: Vec<herald::domain::model::Tenant>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_tenants(None, 2).await.unwrap()), ["a", "b"]);
    assert_eq!(ids(s.list_tenants(Some("b"), 2).await.unwrap()), ["c"]);
}

async fn updating_a_destination_saves_its_fields_and_reports_a_missing_one(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let mut d = tenant(&*s, "acme", 1).await.remove(0);
    d.description = Some("orders".into());
    d.topics = vec!["order.*".into()];
    d.enabled = false;
    d.disabled_reason = Some("by hand".into());
    d.disabled_at = Some(7);
    d.updated_at = 7;
    assert!(s.update_destination(&d).await.unwrap());
    let read = s.get_destination("acme", &d.id).await.unwrap().unwrap();
    assert_eq!(read.description.as_deref(), Some("orders"));
    assert_eq!(read.topics, ["order.*"]);
    assert!(!read.enabled);
    assert_eq!(read.disabled_reason.as_deref(), Some("by hand"));
    assert_eq!(
        read.secrets, d.secrets,
        "secrets survive the round trip through the seal"
    );
    assert!(s.get_destination("other", &d.id).await.unwrap().is_none());
    let ghost = destination("acme", true);
    assert!(!s.update_destination(&ghost).await.unwrap());
}

async fn deleting_a_destination_cancels_its_pending_deliveries(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let d = tenant(&*s, "acme", 1).await.remove(0);
    s.publish(&[event("acme")], 0).await.unwrap();
    assert!(
        !s.delete_destination("other", &d.id, 5).await.unwrap(),
        "another tenant's"
    );
    assert!(s.delete_destination("acme", &d.id, 5).await.unwrap());
    assert!(
        !s.delete_destination("acme", &d.id, 6).await.unwrap(),
        "already gone"
    );
    let ds = s.list_deliveries(&all_of("acme")).await.unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].status, DeliveryStatus::Cancelled);
    assert_eq!(ds[0].last_error.as_deref(), Some("destination deleted"));
    assert_eq!(ds[0].finalized_at, Some(5));
    assert!(
        s.list_destinations("acme", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_skipped_delivery_is_replayed_and_a_pending_one_left_alone(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    let off = destination("acme", false);
    s.insert_destination(&off, 0).await.unwrap();
    let ev = s.publish(&[event("acme")], 0).await.unwrap().remove(0);
    let ds = s.list_deliveries(&all_of("acme")).await.unwrap();
    let skipped = ds.iter().find(|d| d.destination_id == off.id).unwrap();
    assert_eq!(skipped.status, DeliveryStatus::Skipped);
    assert_eq!(skipped.last_error.as_deref(), Some("destination disabled"));
    // The other delivery is still scheduled: only the skipped one is replayed.
    let n = s
        .replay_event(Scope::Tenant("acme"), &ev.id, None, 50)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let replayed = s
        .get_delivery(Scope::Admin, &skipped.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed.status, DeliveryStatus::Scheduled);
    assert_eq!(replayed.next_attempt_at, Some(50));
    assert_eq!(replayed.finalized_at, None);
    let foreign = s
        .replay_event(Scope::Tenant("other"), &ev.id, None, 50)
        .await;
    assert!(matches!(foreign, Err(StoreError::NotFound("event"))));
}

async fn a_recovery_schedules_failed_and_skipped_deliveries_created_since_a_time(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let d = tenant(&*s, "acme", 1).await.remove(0);
    for t in [1_000, 2_000, 3_000] {
        s.publish(&[event("acme")], t).await.unwrap();
    }
    claim_and_finish(&*s, 3_000, DeliveryStatus::Failed).await;
    let dry = s
        .recover_destination("acme", &d.id, 2_000, true, 4_000)
        .await
        .unwrap();
    assert_eq!(dry.count, 2, "created at or after the time");
    assert!(
        s.get_recovery("acme", &dry.id).await.unwrap().is_none(),
        "a dry run stores nothing"
    );
    let r = s
        .recover_destination("acme", &d.id, 2_000, false, 4_000)
        .await
        .unwrap();
    assert_eq!(r.count, 2);
    let read = s.get_recovery("acme", &r.id).await.unwrap().unwrap();
    assert_eq!(read.count, 2);
    assert!(!read.done);
    assert_eq!(read.progress.get("scheduled"), Some(&2));
    assert!(s.get_recovery("other", &r.id).await.unwrap().is_none());
    let ds = s.list_deliveries(&all_of("acme")).await.unwrap();
    let status_at = |t: i64| ds.iter().find(|x| x.created_at == t).unwrap().status;
    assert_eq!(status_at(1_000), DeliveryStatus::Failed);
    assert_eq!(status_at(2_000), DeliveryStatus::Scheduled);
    assert_eq!(status_at(3_000), DeliveryStatus::Scheduled);
    claim_and_finish(&*s, 5_000, DeliveryStatus::Succeeded).await;
    assert!(s.get_recovery("acme", &r.id).await.unwrap().unwrap().done);
}

async fn a_destination_at_its_in_flight_limit_is_not_claimed_until_a_slot_frees(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    s.upsert_tenant("acme", &json!({}), 0).await.unwrap();
    let mut d = destination("acme", true);
    d.options.max_in_flight = Some(1);
    s.insert_destination(&d, 0).await.unwrap();
    s.publish(&[event("acme"), event("acme")], 0).await.unwrap();
    let first = s.claim(10, 10, 60_000).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        s.claim(10, 20, 60_000).await.unwrap().is_empty(),
        "at its limit"
    );
    s.finish(&finish(&first[0], DeliveryStatus::Succeeded, 30))
        .await
        .unwrap();
    assert_eq!(s.claim(10, 40, 60_000).await.unwrap().len(), 1);
}

async fn a_purge_keeps_events_at_the_retention_bound_and_events_still_being_delivered(
    kind: StoreKind,
) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 0).await;
    let old = s.publish(&[event("acme")], 1_000).await.unwrap().remove(0);
    let at_bound = s.publish(&[event("acme")], 2_000).await.unwrap().remove(0);
    tenant(&*s, "busy", 1).await;
    let pending = s.publish(&[event("busy")], 500).await.unwrap().remove(0);
    assert_eq!(s.purge_before(2_000, 10).await.unwrap(), 1);
    assert!(s.get_event(Scope::Admin, &old.id).await.unwrap().is_none());
    assert!(
        s.get_event(Scope::Admin, &at_bound.id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.get_event(Scope::Admin, &pending.id)
            .await
            .unwrap()
            .is_some()
    );
    claim_and_finish(&*s, 2_500, DeliveryStatus::Succeeded).await;
    assert_eq!(s.purge_before(2_000, 10).await.unwrap(), 1, "finished now");
    assert_eq!(s.purge_before(2_000, 10).await.unwrap(), 0);
}

async fn queue_stats_count_the_due_deliveries_and_the_oldest_due_time(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    assert_eq!(s.queue_stats(0).await.unwrap(), (0, None));
    s.publish(&[event("acme")], 100).await.unwrap();
    s.publish(&[event("acme")], 200).await.unwrap();
    assert_eq!(s.queue_stats(150).await.unwrap(), (1, Some(100)));
    assert_eq!(s.queue_stats(200).await.unwrap(), (2, Some(100)));
    s.claim(10, 300, 60_000).await.unwrap();
    assert_eq!(
        s.queue_stats(300).await.unwrap(),
        (0, None),
        "in flight is not queued"
    );
}

async fn a_release_gives_the_delivery_back_only_while_the_attempt_holds_it(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 1).await;
    s.publish(&[event("acme")], 0).await.unwrap();
    let c = s.claim(10, 10, 60_000).await.unwrap().remove(0);
    assert!(
        !s.release(&c.delivery_id, c.attempt + 1, 20).await.unwrap(),
        "another attempt"
    );
    assert!(s.release(&c.delivery_id, c.attempt, 20).await.unwrap());
    assert!(
        !s.release(&c.delivery_id, c.attempt, 21).await.unwrap(),
        "no longer held"
    );
    let d = s
        .get_delivery(Scope::Admin, &c.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Retrying);
    assert_eq!(d.next_attempt_at, Some(20));
    assert_eq!(d.last_error.as_deref(), Some("interrupted by shutdown"));
    assert_eq!(
        s.claim(10, 20, 60_000).await.unwrap().len(),
        1,
        "due again at once"
    );
}

async fn a_portal_link_is_spent_once_and_expires(kind: StoreKind) {
    use herald::store::LinkState;
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 0).await;
    let missing = s.insert_portal_link("l0", "ghost", 100, 0).await;
    assert!(matches!(missing, Err(StoreError::NotFound("tenant"))));
    s.insert_portal_link("l1", "acme", 100, 0).await.unwrap();
    s.insert_portal_link("l2", "acme", 100, 0).await.unwrap();
    let usable = LinkState::Usable {
        tenant_id: "acme".into(),
    };
    assert_eq!(s.check_portal_link("l1", 10).await.unwrap(), usable);
    assert_eq!(
        s.check_portal_link("l1", 10).await.unwrap(),
        usable,
        "checking spends nothing"
    );
    assert_eq!(
        s.redeem_portal_link("l1", "s1", 1_000, 10).await.unwrap(),
        usable
    );
    assert_eq!(
        s.redeem_portal_link("l1", "s2", 1_000, 11).await.unwrap(),
        LinkState::AlreadyUsed
    );
    assert_eq!(
        s.check_portal_link("l1", 12).await.unwrap(),
        LinkState::AlreadyUsed
    );
    assert_eq!(
        s.check_portal_link("l2", 100).await.unwrap(),
        LinkState::Expired
    );
    assert_eq!(
        s.redeem_portal_link("l2", "s3", 1_000, 100).await.unwrap(),
        LinkState::Expired
    );
    assert_eq!(
        s.check_portal_link("nope", 0).await.unwrap(),
        LinkState::Unknown
    );
    assert!(
        s.find_portal_session("s2", 12).await.unwrap().is_none(),
        "no session opened"
    );
}

async fn a_portal_session_lasts_until_it_expires_or_is_deleted(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    tenant(&*s, "acme", 0).await;
    s.insert_portal_link("l1", "acme", 100, 0).await.unwrap();
    s.insert_portal_link("l2", "acme", 100, 0).await.unwrap();
    s.redeem_portal_link("l1", "s1", 1_000, 10).await.unwrap();
    s.redeem_portal_link("l2", "s2", 1_000, 10).await.unwrap();
    assert_eq!(
        s.find_portal_session("s1", 999).await.unwrap().as_deref(),
        Some("acme")
    );
    assert!(
        s.find_portal_session("s1", 1_000).await.unwrap().is_none(),
        "expired"
    );
    s.delete_portal_session("s2").await.unwrap();
    assert!(
        s.find_portal_session("s2", 20).await.unwrap().is_none(),
        "deleted"
    );
}

async fn destination_health_counts_outcomes_and_names_the_latest(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let d = tenant(&*s, "acme", 1).await.remove(0);
    s.publish(&[event("acme"), event("acme")], 0).await.unwrap();
    claim_and_finish(&*s, 10, DeliveryStatus::Succeeded).await;
    s.publish(&[event("acme")], 20).await.unwrap();
    claim_and_finish(&*s, 30, DeliveryStatus::Failed).await;
    s.publish(&[event("acme")], 40).await.unwrap();
    let h = s.destination_health("acme", &d.id, 0).await.unwrap();
    assert_eq!(
        (h.sampled, h.succeeded, h.failed),
        (4, 2, 1),
        "the scheduled one says nothing"
    );
    let last = h.last.unwrap();
    assert_eq!((last.status, last.at), (DeliveryStatus::Failed, 30));
    let foreign = s.destination_health("other", &d.id, 0).await;
    assert!(matches!(foreign, Err(StoreError::NotFound("destination"))));
}
