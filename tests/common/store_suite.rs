#![allow(dead_code)] // each test file uses part of it
//! One behaviour suite for every `EventStore` (the embedded SQLite store and
//! ClickHouse): the same events in, the same answers out.

use std::sync::Arc;

use argus::model::{Event, EventKind, sample_event};
use argus::model::Level;
use argus::store::{EventQuery, EventStore, StatsQuery, StoreError};

pub fn q() -> EventQuery {
    EventQuery { limit: 100, ..Default::default() }
}

/// 25 events over two cameras, every fifth an incident.
pub fn events() -> Vec<Arc<Event>> {
    (0..25)
        .map(|i| {
            let cam = if i % 2 == 0 { "east" } else { "west" };
            let kind = if i % 5 == 0 { EventKind::IncidentOpened } else { EventKind::FrameAnalyzed };
            Arc::new(sample_event(cam, 1_700_000_000_000 + i * 1000, kind))
        })
        .collect()
}

/// Inserting the same events again (a replay after a crash) stores nothing new.
pub fn replays_are_idempotent(s: &dyn EventStore) {
    let events = events();
    s.insert(&events).unwrap();
    s.insert(&events[..5]).unwrap();
    assert_eq!(s.count().unwrap(), 25);
    let got = s.get(&events[3].event_id).unwrap().unwrap();
    assert_eq!(got, *events[3]);
    assert!(s.get("00000000-0000-0000-0000-000000000000").unwrap().is_none());
}

/// Expects exactly `events()` in the store.
pub fn filters_and_pages_newest_first(s: &dyn EventStore) {
    let events = events();
    let east = s.query(&EventQuery { camera: Some("east".into()), ..q() }).unwrap();
    assert_eq!(east.events.len(), 13);
    assert!(east.events.iter().all(|e| e.camera_id == "east"));
    assert!(east.events.windows(2).all(|w| w[0].captured_at >= w[1].captured_at), "newest first");

    let incidents = s.query(&EventQuery { min_level: Some(Level::Medium), ..q() }).unwrap();
    assert_eq!(incidents.events.len(), 5);
    assert_eq!(s.query(&EventQuery { min_level: Some(Level::Critical), ..q() }).unwrap().events.len(), 0);
    let opened = s.query(&EventQuery { kind: Some(EventKind::IncidentOpened), ..q() }).unwrap();
    assert_eq!(opened.events.len(), 5);
    assert_eq!(s.query(&EventQuery { class: Some("person".into()), ..q() }).unwrap().events.len(), 25);
    assert_eq!(s.query(&EventQuery { class: Some("pers".into()), ..q() }).unwrap().events.len(), 0, "whole class names only");
    assert_eq!(s.query(&EventQuery { zone: Some("gate".into()), ..q() }).unwrap().events.len(), 25);
    assert_eq!(s.query(&EventQuery { pipeline: Some("test".into()), ..q() }).unwrap().events.len(), 25);
    let inc = opened.events[0].incident_id.clone().unwrap();
    assert!(s.query(&EventQuery { incident: Some(inc.clone()), ..q() }).unwrap().events.iter().all(|e| e.incident_id.as_deref() == Some(&*inc)));
    // Hostile input is a value, never SQL.
    assert_eq!(s.query(&EventQuery { camera: Some("east' OR '1'='1".into()), ..q() }).unwrap().events.len(), 0);
    assert_eq!(s.query(&EventQuery { camera: Some("?".into()), zone: Some("\\'; DROP TABLE events; --".into()), ..q() }).unwrap().events.len(), 0);
    assert_eq!(s.count().unwrap(), 25, "still there");

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

/// Expects exactly `events()` in the store.
pub fn stats_per_camera_level_and_bucket(s: &dyn EventStore) {
    let rows = s.stats(&StatsQuery { filter: q(), bucket_s: 10 }).unwrap();
    let total: u64 = rows.iter().map(|r| r.count).sum();
    assert_eq!(total, 25);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "ordered by bucket, camera, level");
    assert!(rows.iter().all(|r| r.bucket_start_ms % 10_000 == 0));
    // 25 s of events from 1_700_000_000_000 (a multiple of 10 s): buckets 0, 10 s, 20 s.
    let buckets: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.bucket_start_ms).collect();
    assert_eq!(buckets.len(), 3);
    let high: u64 = rows.iter().filter(|r| r.level >= Level::Medium).map(|r| r.count).sum();
    assert_eq!(high, 5);
    let east = s.stats(&StatsQuery { filter: EventQuery { camera: Some("east".into()), ..q() }, bucket_s: 3600 }).unwrap();
    assert!(east.iter().all(|r| r.camera_id == "east"));
    assert_eq!(east.iter().map(|r| r.count).sum::<u64>(), 13);
}

/// Every answer of `a` equals `b`'s for the same queries.
pub fn same_answers(a: &dyn EventStore, b: &dyn EventStore, queries: &[EventQuery]) {
    for query in queries {
        let (pa, pb) = (a.query(query).unwrap(), b.query(query).unwrap());
        assert_eq!(serde_json::to_value(&pa).unwrap(), serde_json::to_value(&pb).unwrap(), "{query:?}: {} vs {}", a.describe(), b.describe());
        for bucket_s in [1, 60, 3600] {
            let sq = StatsQuery { filter: query.clone(), bucket_s };
            assert_eq!(a.stats(&sq).unwrap(), b.stats(&sq).unwrap(), "stats {sq:?}");
        }
    }
    assert_eq!(a.count().unwrap(), b.count().unwrap());
}
