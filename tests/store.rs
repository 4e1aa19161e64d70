//! The embedded SQLite store: the shared store suite, and data surviving a reopen.

use argus::store::EventStore;
use argus::store::sqlite::SqliteStore;

#[path = "common/store_suite.rs"]
mod store_suite;

#[test]
fn replays_are_idempotent_and_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/argus.db");
    store_suite::replays_are_idempotent(&SqliteStore::open(&path).unwrap());
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.count().unwrap(), 25);
}

#[test]
fn shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("a.db")).unwrap();
    s.insert(&store_suite::events()).unwrap();
    store_suite::filters_and_pages_newest_first(&s);
    store_suite::stats_per_camera_level_and_bucket(&s);
    store_suite::known_answers(&s);
    store_suite::incident_board(&s);
}

#[test]
fn stats_work_is_bounded_while_the_store_works() {
    use argus::store::{EventQuery, StatsQuery, StoreError};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let s = SqliteStore::open(&path).unwrap();
    // 5000 events, one per second: 5000 one-second buckets.
    let events: Vec<_> = (0..5000)
        .map(|i| std::sync::Arc::new(argus::model::sample_event("east", 1_700_000_000_000 + i * 1000, argus::model::EventKind::FrameAnalyzed)))
        .collect();
    s.insert(&events).unwrap();
    let q = |max_rows| StatsQuery { filter: EventQuery::default(), bucket_s: 1, max_rows };
    assert_eq!(s.stats(&q(None)).unwrap().len(), 5000);
    // The row bound is applied by the query: one more than allowed comes back, no more.
    assert_eq!(s.stats(&q(Some(100))).unwrap().len(), 101);
    // The work budget stops a long scan with an error the API turns into a 422.
    let tight = SqliteStore::open(&path).unwrap().with_stats_budget(Duration::ZERO);
    match tight.stats(&q(None)) {
        Err(StoreError::TooMuchWork(b)) => assert_eq!(b, Duration::ZERO),
        other => panic!("expected the budget to stop the query, got {:?}", other.map(|r| r.len())),
    }
    // The connection is usable afterwards.
    assert_eq!(tight.count().unwrap(), 5000);
}
