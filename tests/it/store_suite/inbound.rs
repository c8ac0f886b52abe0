//! The inbound half of the store contract, on every driver: cursors, dedupe, rejection,
//! scoping, acknowledgement, deletion.

use std::collections::HashSet;
use std::sync::Arc;

// `for_each_store!` names `super::common` from the `sqlite` and `postgres` modules it makes
// here (the lint does not see a use through a macro's path).
#[allow(unused_imports)]
use super::common::{self, StoreKind, TestDb};
use crate::for_each_store;
use herald::domain::ids::{Kind, new_id};
use herald::inbound::model::{Callback, CallbackEndpoint, CallbackStatus, Ingested};
use herald::store::{CallbackQuery, Scope, Store, StoreError};
use serde_json::json;

for_each_store!(
    concurrent_ingests_take_distinct_gap_free_cursors,
    concurrent_copies_of_one_delivery_are_stored_once,
    a_rejected_callback_takes_no_cursor_and_is_not_read_by_waiters,
    an_endpoint_of_another_tenant_is_invisible_and_cannot_be_deleted,
    ack_is_scoped_and_keeps_the_first_time,
    deleting_an_endpoint_removes_its_callbacks_and_refuses_new_ones,
    an_endpoint_for_an_unknown_tenant_is_not_found_and_not_written,
    a_batch_of_callbacks_takes_gap_free_cursors_per_endpoint_and_dedupes_within_itself,
    a_batch_naming_a_deleted_endpoint_writes_nothing,
    a_batch_dedupes_against_stored_callbacks_and_counts_each_outcome_on_its_endpoint,
    concurrent_batches_sharing_endpoints_and_delivery_ids_store_each_delivery_once,
    concurrent_batches_on_the_same_endpoints_take_distinct_gap_free_cursors,
);

async fn store(kind: StoreKind) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(kind).await;
    (db.store().await, db)
}

async fn endpoint(s: &dyn Store, tenant: Option<&str>) -> CallbackEndpoint {
    if let Some(t) = tenant {
        s.upsert_tenant(t, &json!({}), 0).await.unwrap();
    }
    let e = common::unverified_endpoint(tenant);
    s.insert_callback_endpoint(&e).await.unwrap();
    e
}

/// An accepted JSON callback on `e` (also used by the `news` suite).
pub(super) fn callback(e: &CallbackEndpoint, dedupe: Option<&str>) -> Callback {
    Callback {
        id: new_id(Kind::Callback),
        endpoint_id: e.id.clone(),
        tenant_id: e.tenant_id.clone(),
        cursor: None,
        method: "POST".into(),
        path: format!("/in/{}", e.slug),
        query: None,
        headers: Default::default(),
        body: b"{}".to_vec(),
        content_type: Some("application/json".into()),
        remote_addr: None,
        received_at: 5,
        verified: false,
        status: CallbackStatus::Accepted,
        reject_reason: None,
        dedupe_key: dedupe.map(str::to_string),
        a2a: None,
        acked_at: None,
    }
}

async fn concurrent_ingests_take_distinct_gap_free_cursors(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let e = endpoint(&*s, None).await;
    let tasks = (0..50).map(|_| {
        let (s, c) = (s.clone(), callback(&e, None));
        tokio::spawn(async move { s.ingest_callback(&c).await.unwrap() })
    });
    let mut cursors = vec![];
    for t in futures_util::future::join_all(tasks).await {
        match t.unwrap() {
            Ingested::Stored { cursor } => cursors.push(cursor),
            other => panic!("{other:?}"),
        }
    }
    cursors.sort();
    assert_eq!(cursors, (1..=50).collect::<Vec<_>>());
    let stored = s.callbacks_after(&e.id, 0, 100).await.unwrap();
    let order: Vec<i64> = stored.iter().map(|c| c.cursor.unwrap()).collect();
    assert_eq!(
        order,
        (1..=50).collect::<Vec<_>>(),
        "read back in cursor order"
    );
}

async fn concurrent_copies_of_one_delivery_are_stored_once(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let e = endpoint(&*s, None).await;
    let tasks = (0..20).map(|_| {
        let (s, c) = (s.clone(), callback(&e, Some("msg_same")));
        tokio::spawn(async move { s.ingest_callback(&c).await.unwrap() })
    });
    let outcomes: Vec<Ingested> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let stored: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Ingested::Stored { .. }))
        .collect();
    assert_eq!(stored, vec![&Ingested::Stored { cursor: 1 }]);
    let originals: HashSet<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ingested::Duplicate { original_id } => Some(original_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(originals.len(), 1, "every duplicate names the one original");
    let e = s
        .get_callback_endpoint(Scope::Admin, &e.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.last_cursor, e.received, e.duplicates), (1, 1, 19));
}

async fn a_rejected_callback_takes_no_cursor_and_is_not_read_by_waiters(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let e = endpoint(&*s, None).await;
    let mut bad = callback(&e, Some("msg_1"));
    bad.status = CallbackStatus::Rejected;
    bad.reject_reason = Some("signature_mismatch".into());
    assert_eq!(s.ingest_callback(&bad).await.unwrap(), Ingested::Rejected);
    assert!(s.callbacks_after(&e.id, 0, 10).await.unwrap().is_empty());
    // The genuine delivery with the same id is not mistaken for a duplicate.
    let good = callback(&e, Some("msg_1"));
    assert_eq!(
        s.ingest_callback(&good).await.unwrap(),
        Ingested::Stored { cursor: 1 }
    );
    let rejected = s.rejected_callbacks(&e.id, None, 10).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].cursor, None);
    let polled = s
        .list_callbacks(&CallbackQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(polled.len(), 1, "polling never returns rejected requests");
}

async fn an_endpoint_of_another_tenant_is_invisible_and_cannot_be_deleted(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let acme = endpoint(&*s, Some("acme")).await;
    let platform = endpoint(&*s, None).await;
    let as_globex = Scope::Tenant("globex");
    assert!(
        s.get_callback_endpoint(as_globex, &acme.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_callback_endpoint(as_globex, &platform.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !s.delete_callback_endpoint(as_globex, &acme.id)
            .await
            .unwrap()
    );
    let acme_sees = s
        .list_callback_endpoints(Scope::Tenant("acme"), None, 10)
        .await
        .unwrap();
    assert_eq!(acme_sees.len(), 1);
    assert_eq!(
        s.list_callback_endpoints(Scope::Admin, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn ack_is_scoped_and_keeps_the_first_time(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let e = endpoint(&*s, Some("acme")).await;
    let c = callback(&e, None);
    s.ingest_callback(&c).await.unwrap();
    assert!(
        s.ack_callback(Scope::Tenant("globex"), &c.id, 10)
            .await
            .unwrap()
            .is_none()
    );
    let first = s
        .ack_callback(Scope::Tenant("acme"), &c.id, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.acked_at, Some(10));
    let again = s
        .ack_callback(Scope::Admin, &c.id, 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.acked_at, Some(10));
    let unacked = s
        .list_callbacks(&CallbackQuery {
            acked: Some(false),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(unacked.is_empty());
}

async fn deleting_an_endpoint_removes_its_callbacks_and_refuses_new_ones(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let e = endpoint(&*s, None).await;
    s.ingest_callback(&callback(&e, None)).await.unwrap();
    assert!(
        s.delete_callback_endpoint(Scope::Admin, &e.id)
            .await
            .unwrap()
    );
    assert!(s.callbacks_after(&e.id, 0, 10).await.unwrap().is_empty());
    assert!(s.find_callback_endpoint(&e.slug).await.unwrap().is_none());
    let err = s.ingest_callback(&callback(&e, None)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn an_endpoint_for_an_unknown_tenant_is_not_found_and_not_written(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let mut e = endpoint(&*s, None).await;
    e.id = new_id(Kind::CallbackEndpoint);
    e.slug = herald::service::callbacks::new_slug();
    e.tenant_id = Some("nobody".into());
    let err = s.insert_callback_endpoint(&e).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound("tenant")), "{err:?}");
    assert_eq!(
        s.list_callback_endpoints(Scope::Admin, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Group commit (`ingest_callbacks`): many captures in one transaction keep every guarantee
/// of one capture at a time.
async fn a_batch_of_callbacks_takes_gap_free_cursors_per_endpoint_and_dedupes_within_itself(
    kind: StoreKind,
) {
    let (s, _db) = store(kind).await;
    let (a, b) = (endpoint(&*s, None).await, endpoint(&*s, None).await);
    s.ingest_callback(&callback(&a, None)).await.unwrap(); // cursor 1, before the batch
    let mut rejected = callback(&b, None);
    rejected.status = CallbackStatus::Rejected;
    let batch = vec![
        callback(&a, None),
        callback(&b, None),
        callback(&a, Some("k1")),
        callback(&a, None),
        rejected,
        callback(&a, Some("k1")),
        callback(&b, None),
    ];
    let out = s.ingest_callbacks(&batch).await.unwrap();
    assert_eq!(out.len(), batch.len());
    assert_eq!(out[4], Ingested::Rejected);
    assert_eq!(
        out[5],
        Ingested::Duplicate {
            original_id: batch[2].id.clone()
        }
    );
    let cursor = |i: usize| match out[i] {
        Ingested::Stored { cursor } => cursor,
        ref other => panic!("callback {i}: {other:?}"),
    };
    let mut of_a: Vec<i64> = [0, 2, 3].map(cursor).to_vec();
    of_a.sort_unstable();
    assert_eq!(of_a, [2, 3, 4], "after the earlier callback, gap-free");
    let mut of_b: Vec<i64> = [1, 6].map(cursor).to_vec();
    of_b.sort_unstable();
    assert_eq!(of_b, [1, 2]);

    // What waiters read agrees with what the batch answered.
    let stored = s.callbacks_after(&a.id, 1, 100).await.unwrap();
    let read: Vec<(String, Option<i64>)> = stored.into_iter().map(|c| (c.id, c.cursor)).collect();
    let mut answered: Vec<(String, Option<i64>)> = [0, 2, 3]
        .map(|i| (batch[i].id.clone(), Some(cursor(i))))
        .to_vec();
    answered.sort_by_key(|(_, c)| *c);
    assert_eq!(read, answered);
    assert_eq!(s.callbacks_after(&b.id, 0, 100).await.unwrap().len(), 2);
}

async fn a_batch_naming_a_deleted_endpoint_writes_nothing(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let (a, gone) = (endpoint(&*s, None).await, endpoint(&*s, None).await);
    assert!(
        s.delete_callback_endpoint(Scope::Admin, &gone.id)
            .await
            .unwrap()
    );
    let err = s
        .ingest_callbacks(&[callback(&a, None), callback(&gone, None)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(s.callbacks_after(&a.id, 0, 10).await.unwrap().is_empty());
    // The endpoint's cursor did not move either: the next callback is number 1.
    assert_eq!(
        s.ingest_callback(&callback(&a, None)).await.unwrap(),
        Ingested::Stored { cursor: 1 }
    );
}

/// A batch with no delivery id repeated inside it (Postgres stores it in one statement):
/// duplicates of callbacks stored before it, rejected ones and plain ones, on two endpoints.
async fn a_batch_dedupes_against_stored_callbacks_and_counts_each_outcome_on_its_endpoint(
    kind: StoreKind,
) {
    let (s, _db) = store(kind).await;
    let (a, b) = (endpoint(&*s, None).await, endpoint(&*s, None).await);
    let first = callback(&a, Some("k1"));
    assert_eq!(
        s.ingest_callback(&first).await.unwrap(),
        Ingested::Stored { cursor: 1 }
    );
    let mut rejected = callback(&b, Some("k1"));
    rejected.status = CallbackStatus::Rejected;
    rejected.reject_reason = Some("bad_signature: test".into());
    let batch = vec![
        callback(&a, Some("k1")),
        callback(&b, None),
        rejected,
        callback(&a, Some("k2")),
        callback(&b, Some("k1")),
        callback(&a, None),
    ];
    let out = s.ingest_callbacks(&batch).await.unwrap();
    assert_eq!(
        out[0],
        Ingested::Duplicate {
            original_id: first.id.clone()
        }
    );
    assert_eq!(
        out[2],
        Ingested::Rejected,
        "a rejected callback takes no cursor"
    );
    let cursor = |i: usize| match out[i] {
        Ingested::Stored { cursor } => cursor,
        ref other => panic!("callback {i}: {other:?}"),
    };
    let sorted = |mut v: Vec<i64>| {
        v.sort_unstable();
        v
    };
    assert_eq!(
        sorted(vec![cursor(3), cursor(5)]),
        [2, 3],
        "a: on from 1, gap-free"
    );
    assert_eq!(sorted(vec![cursor(1), cursor(4)]), [1, 2], "b: gap-free");
    let counts = |e: CallbackEndpoint| (e.last_cursor, e.received, e.duplicates, e.rejected);
    let get = |id: String| {
        let s = s.clone();
        async move {
            s.get_callback_endpoint(Scope::Admin, &id)
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(counts(get(a.id.clone()).await), (3, 3, 1, 0));
    assert_eq!(counts(get(b.id.clone()).await), (2, 2, 0, 1));
    let of_a: Vec<String> = s
        .callbacks_after(&a.id, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        of_a,
        [first.id.clone(), batch[3].id.clone(), batch[5].id.clone()]
    );
    let stored_rejected = s.rejected_callbacks(&b.id, None, 10).await.unwrap();
    assert_eq!(stored_rejected.len(), 1);
    assert_eq!(stored_rejected[0].id, batch[2].id);
    assert_eq!(stored_rejected[0].cursor, None);
}

/// 8 batches of 6 callbacks committed at the same time on endpoints `a` and `b` (in turn
/// `a, b, a, …` and `b, a, b, …`, so the batches lock them in both orders), callback `i`
/// carrying delivery id `d{i}` when `keyed`. A batch that fails whole is stored one by one,
/// as the group commit does. Returns each callback's endpoint id and outcome.
async fn concurrent_batches(
    s: &Arc<dyn Store>,
    a: &CallbackEndpoint,
    b: &CallbackEndpoint,
    keyed: bool,
) -> Vec<(String, Ingested)> {
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..8 {
        let (s, a, b) = (s.clone(), a.clone(), b.clone());
        tasks.spawn(async move {
            let (x, y) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let batch: Vec<Callback> = (0..6)
                .map(|i| {
                    let key = keyed.then(|| format!("d{i}"));
                    callback(if i % 2 == 0 { x } else { y }, key.as_deref())
                })
                .collect();
            let out = match s.ingest_callbacks(&batch).await {
                Ok(out) => out,
                Err(_) => {
                    let mut out = vec![];
                    for c in &batch {
                        out.push(s.ingest_callback(c).await.unwrap());
                    }
                    out
                }
            };
            batch
                .into_iter()
                .map(|c| c.endpoint_id)
                .zip(out)
                .collect::<Vec<_>>()
        });
    }
    let mut all = vec![];
    while let Some(out) = tasks.join_next().await {
        all.extend(out.unwrap());
    }
    all
}

async fn stored_cursors(s: &Arc<dyn Store>, e: &CallbackEndpoint) -> Vec<Option<i64>> {
    s.callbacks_after(&e.id, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.cursor)
        .collect()
}

/// Concurrent batches that share endpoints and repeat each other's delivery ids: every
/// delivery is stored once, the others are answered `Duplicate`, and cursors stay gap-free.
async fn concurrent_batches_sharing_endpoints_and_delivery_ids_store_each_delivery_once(
    kind: StoreKind,
) {
    let (s, _db) = store(kind).await;
    let (a, b) = (endpoint(&*s, None).await, endpoint(&*s, None).await);
    let out = concurrent_batches(&s, &a, &b, true).await;
    let stored = out
        .iter()
        .filter(|(_, r)| matches!(r, Ingested::Stored { .. }))
        .count();
    let duplicates = out
        .iter()
        .filter(|(_, r)| matches!(r, Ingested::Duplicate { .. }))
        .count();
    // d0..d5 on both endpoints: 12 distinct deliveries of the 48 sent.
    assert_eq!((stored, duplicates), (12, 36));
    for e in [&a, &b] {
        assert_eq!(
            stored_cursors(&s, e).await,
            (1..=6).map(Some).collect::<Vec<_>>()
        );
    }
}

async fn concurrent_batches_on_the_same_endpoints_take_distinct_gap_free_cursors(kind: StoreKind) {
    let (s, _db) = store(kind).await;
    let (a, b) = (endpoint(&*s, None).await, endpoint(&*s, None).await);
    let mut answered: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (endpoint_id, r) in concurrent_batches(&s, &a, &b, false).await {
        match r {
            Ingested::Stored { cursor } => answered.entry(endpoint_id).or_default().push(cursor),
            other => panic!("{other:?}"),
        }
    }
    for e in [&a, &b] {
        let mut got = answered.remove(&e.id).unwrap();
        got.sort_unstable();
        assert_eq!(
            got,
            (1..=24).collect::<Vec<_>>(),
            "answered cursors of {}",
            e.id
        );
        assert_eq!(
            stored_cursors(&s, e).await,
            (1..=24).map(Some).collect::<Vec<_>>()
        );
    }
}
