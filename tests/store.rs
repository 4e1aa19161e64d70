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
}
