//! What other processes announce (`Store::news`) and what a store still sends when it closes
//! (`Store::close`). Only a database shared by several processes has news: SQLite has none,
//! and the Postgres tests run two stores on one database, as two nodes would.

use std::time::Duration;

use futures_util::StreamExt;
// `for_each_store!` names `super::common` from the `sqlite` and `postgres` modules it makes
// here (the lint does not see a use through a macro's path).
#[allow(unused_imports)]
use super::common::{self, StoreKind, TestDb};
use crate::for_each_store;
use herald::store::{News, NewsStream};

for_each_store!(only_a_database_other_processes_share_has_news);

/// How long a notice may take to arrive; far more than it does (milliseconds).
const DEADLINE: Duration = Duration::from_secs(10);

async fn next(news: &mut NewsStream) -> News {
    tokio::time::timeout(DEADLINE, news.next())
        .await
        .expect("news within the deadline")
        .expect("the news never ends")
}

async fn only_a_database_other_processes_share_has_news(kind: StoreKind) {
    let db = TestDb::new(kind).await;
    let s = db.store().await;
    assert_eq!(s.news().is_some(), kind == StoreKind::Postgres);
    // Closing is harmless either way, and twice too.
    s.close().await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_publish_and_callback_reach_the_news_once_listen_has_taken_effect() {
    let db = TestDb::new(StoreKind::Postgres).await;
    let (here, there) = (db.store().await, db.store().await);
    let mut news = here.news().unwrap();
    assert_eq!(
        next(&mut news).await,
        News::Missed,
        "first: LISTEN has taken effect"
    );

    super::tenant(&*there, "t1", 1).await;
    there.publish(&[super::event("t1")], 0).await.unwrap();
    assert_eq!(next(&mut news).await, News::Work);

    let e = common::unverified_endpoint(Some("t1"));
    there.insert_callback_endpoint(&e).await.unwrap();
    there
        .ingest_callbacks(&[super::inbound::callback(&e, None)])
        .await
        .unwrap();
    assert_eq!(next(&mut news).await, News::Callback(e.id.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_closes_right_after_publishing_has_still_told_the_others() {
    let db = TestDb::new(StoreKind::Postgres).await;
    let (here, there) = (db.store().await, db.store().await);
    let mut news = here.news().unwrap();
    assert_eq!(next(&mut news).await, News::Missed);

    super::tenant(&*there, "t1", 1).await;
    there.publish(&[super::event("t1")], 0).await.unwrap();
    there.close().await;
    assert_eq!(next(&mut news).await, News::Work);

    // After closing, a store's announcements are dropped, not sent.
    there.publish(&[super::event("t1")], 0).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), news.next()).await;
    assert!(quiet.is_err(), "no notice from a closed store: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_says_missed_when_its_connection_was_cut_and_hears_again_after() {
    let db = TestDb::new(StoreKind::Postgres).await;
    let (here, there) = (db.store().await, db.store().await);
    let mut news = here.news().unwrap();
    assert_eq!(next(&mut news).await, News::Missed);

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(cut, vec![true], "one listening connection, cut");

    assert_eq!(next(&mut news).await, News::Missed, "after reconnecting");
    super::tenant(&*there, "t1", 1).await;
    there.publish(&[super::event("t1")], 0).await.unwrap();
    assert_eq!(next(&mut news).await, News::Work);
}
