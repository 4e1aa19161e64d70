//! The embedded SQLite store: idempotent inserts, filters, cursor paging, restarts.

use std::sync::Arc;

use argus::event::{EventKind, sample_event};
use argus::risk::Level;
use argus::store::sqlite::SqliteStore;
use argus::store::{EventQuery, EventStore, StoreError};

fn q() -> EventQuery {
    EventQuery { limit: 100, ..Default::default() }
}

#[test]
fn replays_are_idempotent_and_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/argus.db");
    let events: Vec<_> = (0..10).map(|i| Arc::new(sample_event("cam", 1_700_000_000_000 + i * 100, EventKind::FrameAnalyzed))).collect();
    {
        let s = SqliteStore::open(&path).unwrap();
        s.insert(&events).unwrap();
        s.insert(&events[..5]).unwrap(); // a replay after a crash
        assert_eq!(s.count().unwrap(), 10);
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.count().unwrap(), 10);
    let got = s.get(&events[3].event_id).unwrap().unwrap();
    assert_eq!(got, *events[3]);
    assert!(s.get("00000000-0000-0000-0000-000000000000").unwrap().is_none());
}

#[test]
fn filters_and_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("a.db")).unwrap();
    let mut events = Vec::new();
    for i in 0..25 {
        let cam = if i % 2 == 0 { "east" } else { "west" };
        let kind = if i % 5 == 0 { EventKind::IncidentOpened } else { EventKind::FrameAnalyzed };
        events.push(Arc::new(sample_event(cam, 1_700_000_000_000 + i * 1000, kind)));
    }
    s.insert(&events).unwrap();

    let east = s.query(&EventQuery { camera: Some("east".into()), ..q() }).unwrap();
    assert_eq!(east.events.len(), 13);
    assert!(east.events.iter().all(|e| e.camera_id == "east"));
    assert!(east.events.windows(2).all(|w| w[0].captured_at >= w[1].captured_at), "newest first");

    let incidents = s.query(&EventQuery { min_level: Some(Level::Medium), ..q() }).unwrap();
    assert_eq!(incidents.events.len(), 5);
    let opened = s.query(&EventQuery { kind: Some(EventKind::IncidentOpened), ..q() }).unwrap();
    assert_eq!(opened.events.len(), 5);
    assert_eq!(s.query(&EventQuery { class: Some("person".into()), ..q() }).unwrap().events.len(), 25);
    assert_eq!(s.query(&EventQuery { class: Some("pers".into()), ..q() }).unwrap().events.len(), 0, "whole class names only");
    assert_eq!(s.query(&EventQuery { zone: Some("gate".into()), ..q() }).unwrap().events.len(), 25);

    let since = events[20].captured_at;
    let until = events[23].captured_at;
    let window = s.query(&EventQuery { since: Some(since), until: Some(until), ..q() }).unwrap();
    assert_eq!(window.events.len(), 3, "since inclusive, until exclusive");

    // Paging visits every event exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.query(&EventQuery { limit: 7, cursor: cursor.clone(), ..q() }).unwrap();
        seen.extend(page.events.iter().map(|e| e.event_id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);

    let bad = s.query(&EventQuery { cursor: Some("zz".into()), ..q() });
    assert!(matches!(bad, Err(StoreError::BadCursor)));
}
