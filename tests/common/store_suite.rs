#![allow(dead_code)] // each test file uses part of it
//! One behaviour suite for every `EventStore` (the embedded SQLite store and
//! ClickHouse): the same events in, the same answers out.

use std::sync::Arc;

use argus::model::Level;
use argus::model::{Event, EventKind, sample_event};
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
            let mut ev = sample_event(cam, 1_700_000_000_000 + i * 1000, kind);
            if kind != EventKind::FrameAnalyzed {
                // Incident events carry their evidence's reference, kept by every store.
                let sha256 = format!("{:064x}", i + 1);
                ev.evidence =
                    Some(argus::model::Evidence { url: format!("/v1/events/{}/evidence.jpg", ev.event_id), sha256, bytes: 1000 + i as u64, clip: None });
            }
            Arc::new(ev)
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
    let opened = s.get(&events[5].event_id).unwrap().unwrap();
    assert!(opened.evidence.is_some());
    assert_eq!(opened, *events[5], "an incident event comes back with its evidence");
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
    // Each camera's sample events share one incident id: opened.events[0] is event 20
    // (east), whose incident also covers events 10 and 0.
    let same_incident = s.query(&EventQuery { incident: Some(inc.clone()), ..q() }).unwrap();
    assert_eq!(same_incident.events.len(), 3);
    assert!(same_incident.events.iter().all(|e| e.incident_id.as_deref() == Some(&*inc)));
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
    let rows = s.stats(&StatsQuery { filter: q(), bucket_s: 10, max_rows: None }).unwrap();
    let total: u64 = rows.iter().map(|r| r.count).sum();
    assert_eq!(total, 25);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "ordered by bucket, camera, level");
    assert!(rows.iter().all(|r| r.bucket_start_ms % 10_000 == 0));
    // 25 s of events from 1_700_000_000_000 (a multiple of 10 s): buckets 0, 10 s, 20 s.
    let buckets: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.bucket_start_ms).collect();
    assert_eq!(buckets.len(), 3);
    let high: u64 = rows.iter().filter(|r| r.level >= Level::Medium).map(|r| r.count).sum();
    assert_eq!(high, 5);
    let east = s.stats(&StatsQuery { filter: EventQuery { camera: Some("east".into()), ..q() }, bucket_s: 3600, max_rows: None }).unwrap();
    assert!(east.iter().all(|r| r.camera_id == "east"));
    assert_eq!(east.iter().map(|r| r.count).sum::<u64>(), 13);
}

/// Every answer of `a` equals `b`'s for the same queries.
pub fn same_answers(a: &dyn EventStore, b: &dyn EventStore, queries: &[EventQuery]) {
    for query in queries {
        let (pa, pb) = (a.query(query).unwrap(), b.query(query).unwrap());
        assert_eq!(serde_json::to_value(&pa).unwrap(), serde_json::to_value(&pb).unwrap(), "{query:?}: {} vs {}", a.describe(), b.describe());
        for bucket_s in [1, 60, 3600] {
            let sq = StatsQuery { filter: query.clone(), bucket_s, max_rows: None };
            assert_eq!(a.stats(&sq).unwrap(), b.stats(&sq).unwrap(), "stats {sq:?}");
        }
    }
    assert_eq!(a.count().unwrap(), b.count().unwrap());
}

/// `(camera, i)` of `events()[i]`, the way the expectations below are written.
fn tag(e: &Event) -> (String, i64) {
    let i = (e.captured_ms() - 1_700_000_000_000) / 1000;
    (e.camera_id.clone(), i)
}

fn tags(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(c, i)| (c.to_string(), *i)).collect()
}

/// Known answers written by hand from how `events()` is built (event `i`: camera `east`
/// for even `i`, `west` for odd; an `incident.opened` of level high for `i % 5 == 0`,
/// else a low `frame.analyzed`; captured at 1_700_000_000 s + `i` s =
/// 2023-11-14T22:13:20Z + `i` s; one person in zone `gate`). The queries go through the
/// API's own parser (`parse_query`, `parse_stats_query`), so a parser bug that both
/// stores share shows too. Expects exactly `events()` in the store.
pub fn known_answers(s: &dyn EventStore) {
    use argus::api::events::{parse_query, parse_stats_query};
    let cases: &[(&str, &[(&str, i64)])] = &[
        ("camera=west&kind=incident.opened", &[("west", 15), ("west", 5)]),
        ("kind=incident.opened", &[("east", 20), ("west", 15), ("east", 10), ("west", 5), ("east", 0)]),
        ("min_level=high&limit=2", &[("east", 20), ("west", 15)]),
        ("min_level=critical", &[]),
        ("since=2023-11-14T22:13:23Z&until=2023-11-14T22:13:37Z&limit=5", &[("east", 16), ("west", 15), ("east", 14), ("west", 13), ("east", 12)]),
        ("until=2023-11-14T22:13:23Z", &[("east", 2), ("west", 1), ("east", 0)]),
        ("since=2023-11-14T22:13:42Z&camera=east", &[("east", 24), ("east", 22)]),
        ("zone=gate&class=person&limit=3", &[("east", 24), ("west", 23), ("east", 22)]),
        ("class=car", &[]),
        ("zone=crossing", &[]),
        ("camera=east&kind=frame.analyzed&limit=4", &[("east", 24), ("east", 22), ("east", 18), ("east", 16)]),
    ];
    for (qs, want) in cases {
        let page = s.query(&parse_query(Some(qs)).unwrap()).unwrap();
        let got: Vec<(String, i64)> = page.events.iter().map(tag).collect();
        assert_eq!(got, tags(want), "{qs} on {}", s.describe());
    }
    // Every incident of a camera shares the camera's sample incident id: east's are 0, 10, 20.
    let east_incident = s.query(&parse_query(Some("camera=east&kind=incident.opened&limit=1")).unwrap()).unwrap().events[0].incident_id.clone().unwrap();
    let got: Vec<(String, i64)> = s.query(&parse_query(Some(&format!("incident={east_incident}"))).unwrap()).unwrap().events.iter().map(tag).collect();
    assert_eq!(got, tags(&[("east", 20), ("east", 10), ("east", 0)]), "incident= on {}", s.describe());
    // Paging: limit 10 → 10 + 10 + 5, the cursor continuing exactly where the page ended.
    let first = s.query(&parse_query(Some("limit=10")).unwrap()).unwrap();
    assert_eq!(first.events.iter().map(tag).map(|t| t.1).collect::<Vec<_>>(), (15..25).rev().collect::<Vec<_>>());
    let second = s.query(&parse_query(Some(&format!("limit=10&cursor={}", first.next_cursor.unwrap()))).unwrap()).unwrap();
    assert_eq!(second.events.iter().map(tag).map(|t| t.1).collect::<Vec<_>>(), (5..15).rev().collect::<Vec<_>>());
    let third = s.query(&parse_query(Some(&format!("limit=10&cursor={}", second.next_cursor.unwrap()))).unwrap()).unwrap();
    assert_eq!(third.events.iter().map(tag).map(|t| t.1).collect::<Vec<_>>(), (0..5).rev().collect::<Vec<_>>());
    assert!(third.next_cursor.is_none(), "the last page has no cursor");

    // Stats: 10 s buckets from 1_700_000_000 s (a multiple of 10). Bucket 0 holds i 0..=9:
    // east 0 (high), 2, 4, 6, 8 (low); west 5 (high), 1, 3, 7, 9 (low). Bucket 10 s the
    // same pattern shifted by 10 (east 10 high, west 15 high). Bucket 20 s: east 20
    // (high), 22, 24; west 21, 23.
    let b = |k: i64| 1_700_000_000_000 + k * 10_000;
    let row = |bucket: i64, camera: &str, level: Level, count: u64| argus::store::StatsRow { bucket_start_ms: bucket, camera_id: camera.into(), level, count };
    let want = vec![
        row(b(0), "east", Level::Low, 4),
        row(b(0), "east", Level::High, 1),
        row(b(0), "west", Level::Low, 4),
        row(b(0), "west", Level::High, 1),
        row(b(1), "east", Level::Low, 4),
        row(b(1), "east", Level::High, 1),
        row(b(1), "west", Level::Low, 4),
        row(b(1), "west", Level::High, 1),
        row(b(2), "east", Level::Low, 2),
        row(b(2), "east", Level::High, 1),
        row(b(2), "west", Level::Low, 2),
    ];
    assert_eq!(s.stats(&parse_stats_query(Some("bucket=10s")).unwrap()).unwrap(), want, "stats bucket=10s on {}", s.describe());
    let want = vec![row(b(0), "west", Level::High, 1), row(b(1), "west", Level::High, 1)];
    assert_eq!(s.stats(&parse_stats_query(Some("bucket=10s&camera=west&min_level=medium")).unwrap()).unwrap(), want, "stats west medium+ on {}", s.describe());
    // One hour bucket: 1_700_000_000 s is 22:13:20, inside the hour from 22:00 (1_699_999_200 s).
    let h = 1_699_999_200_000;
    let want = vec![row(h, "east", Level::Low, 10), row(h, "east", Level::High, 3), row(h, "west", Level::Low, 10), row(h, "west", Level::High, 2)];
    assert_eq!(s.stats(&parse_stats_query(Some("bucket=1h")).unwrap()).unwrap(), want, "stats bucket=1h on {}", s.describe());
}

/// Incident events of pipeline `board`, written so the board's answers can be worked
/// out by hand (times in seconds after 1_700_100_000 s = 2023-11-16T02:00:00Z + …):
/// - A (east): opened 0 s medium 0.4; updated 10 s and 20 s high 0.8 (equal scores: the
///   earlier is the thumbnail); closed 30 s low 0.1 → closed, 30 s, peak high.
/// - B (east): opened 40 s high 0.7; updated 50 s critical 0.95 → open.
/// - C (west): opened 5 s low 0.2, no evidence → open, no thumbnail.
/// - D (west): opened 60 s medium 0.5; closed 70 s low 0.1 → closed.
/// - E (west): opened 80 s high 0.6 → open.
///
/// And operators' actions, which change nothing in a lifecycle (times, level, peak,
/// order, filters) and are summarised apart:
/// - B: acknowledged at 45 s by alice ("on it"), assigned to bob by alice at 46 s, a
///   note by bob at 47 s, acknowledged again by carol at 55 s (after its last update).
/// - A: a note by dave at 100 s, long after it closed, carrying a critical level.
pub fn board_events() -> Vec<Arc<Event>> {
    let plan: &[(&str, &str, i64, EventKind, Level, f64, bool)] = &[
        ("A", "east", 0, EventKind::IncidentOpened, Level::Medium, 0.4, true),
        ("A", "east", 10, EventKind::IncidentUpdated, Level::High, 0.8, true),
        ("A", "east", 20, EventKind::IncidentUpdated, Level::High, 0.8, true),
        ("A", "east", 30, EventKind::IncidentClosed, Level::Low, 0.1, true),
        ("B", "east", 40, EventKind::IncidentOpened, Level::High, 0.7, true),
        ("B", "east", 50, EventKind::IncidentUpdated, Level::Critical, 0.95, true),
        ("C", "west", 5, EventKind::IncidentOpened, Level::Low, 0.2, false),
        ("D", "west", 60, EventKind::IncidentOpened, Level::Medium, 0.5, true),
        ("D", "west", 70, EventKind::IncidentClosed, Level::Low, 0.1, true),
        ("E", "west", 80, EventKind::IncidentOpened, Level::High, 0.6, true),
        ("B", "east", 45, EventKind::IncidentAcknowledged, Level::High, 0.7, false),
        ("B", "east", 46, EventKind::IncidentAssigned, Level::High, 0.7, false),
        ("B", "east", 47, EventKind::IncidentNoted, Level::High, 0.7, false),
        ("B", "east", 55, EventKind::IncidentAcknowledged, Level::Critical, 0.95, false),
        ("A", "east", 100, EventKind::IncidentNoted, Level::Critical, 0.99, false),
    ];
    let actions: [(&str, Option<&str>, Option<&str>); 5] = [
        ("alice", Some("on it"), None),
        ("alice", None, Some("bob")),
        ("bob", Some("two people at the gate"), None),
        ("carol", None, None),
        ("dave", Some("reviewed"), None),
    ];
    let mut actions = actions.into_iter();
    plan.iter()
        .map(|&(inc, cam, s, kind, level, score, evidence)| {
            let mut ev = sample_event(cam, 1_700_100_000_000 + s * 1000, kind);
            if kind.is_action() {
                let (by, text, assignee) = actions.next().expect("one per action");
                ev.action = Some(argus::model::OperatorAction { by: by.into(), text: text.map(Into::into), assignee: assignee.map(Into::into) });
            }
            ev.pipeline = "board".into();
            ev.incident_id = Some(board_id(inc));
            ev.event_id = argus::model::derive_id(&[b"board", inc.as_bytes(), &s.to_le_bytes()]);
            ev.risk.level = level;
            ev.risk.score = score;
            ev.caption = format!("{inc} at {s} s");
            if evidence {
                ev.evidence = Some(argus::model::Evidence {
                    url: format!("/v1/events/{}/evidence.jpg", ev.event_id),
                    sha256: format!("{:064x}", s + 7),
                    bytes: 900 + s as u64,
                    clip: None,
                });
            }
            Arc::new(ev)
        })
        .collect()
}

/// The incident id of `board_events`' incident `name`.
pub fn board_id(name: &str) -> String {
    argus::model::derive_id(&[b"board-incident", name.as_bytes()])
}

/// Names of the incidents on one board page, in order.
fn board_names(page: &argus::store::incidents::IncidentPage) -> Vec<String> {
    page.incidents.iter().map(|i| ["A", "B", "C", "D", "E"].into_iter().find(|n| board_id(n) == i.incident_id).unwrap_or("?").to_string()).collect()
}

/// The board over `board_events()` (inserted here): order, filters, paging, summaries
/// and a detail, all through the API's own parser.
pub fn incident_board(s: &dyn EventStore) {
    use argus::api::incidents::parse_incident_query;
    use argus::store::incidents::{IncidentState, detail, list};
    s.insert(&board_events()).unwrap();
    let board = |qs: &str| list(s, &parse_incident_query(Some(&format!("pipeline=board{qs}"))).unwrap()).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("", &["E", "B", "C", "D", "A"]),
        ("&state=closed", &["D", "A"]),
        ("&state=open&camera=east", &["B"]),
        ("&min_level=critical", &["B"]),
        ("&min_level=high", &["E", "B", "A"]),
        ("&until=2023-11-16T02:00:41Z", &["B", "C", "A"]),
        ("&since=2023-11-16T02:00:35Z", &["E", "B", "C", "D"]),
        ("&since=2023-11-16T02:00:35Z&state=closed&camera=west", &["D"]),
        ("&camera=north", &[]),
    ];
    for (qs, want) in cases {
        assert_eq!(board_names(&board(qs)), want.iter().map(|n| n.to_string()).collect::<Vec<_>>(), "{qs} on {}", s.describe());
    }
    // Paging by 2: every incident once, in board order, the cursor going on exactly.
    let mut names = Vec::new();
    let mut cursor = String::new();
    for page_no in 0.. {
        let page = board(&format!("&limit=2{cursor}"));
        names.extend(board_names(&page));
        match page.next_cursor {
            Some(c) => cursor = format!("&cursor={c}"),
            None => {
                assert_eq!(page_no, 2, "three pages");
                break;
            }
        }
    }
    assert_eq!(names, ["E", "B", "C", "D", "A"], "paged on {}", s.describe());
    assert!(matches!(list(s, &parse_incident_query(Some("cursor=abcd")).unwrap()), Err(StoreError::BadCursor)));

    let all = board("");
    let a = &all.incidents[4];
    let t = |sec: i64| time::OffsetDateTime::from_unix_timestamp(1_700_100_000 + sec).unwrap();
    assert_eq!((a.state, a.opened_at, a.closed_at, a.last_event_at), (IncidentState::Closed, t(0), Some(t(30)), t(30)));
    assert_eq!((a.duration_s, a.level, a.peak_level, a.peak_score, a.events), (30.0, Level::Low, Level::High, 0.8, 4));
    assert_eq!((a.camera_id.as_str(), a.pipeline.as_str(), a.caption.as_str()), ("east", "board", "A at 30 s"));
    let events = board_events();
    assert_eq!(a.thumbnail_event_id.as_deref(), Some(events[1].event_id.as_str()), "the best score, the earlier of equals");
    assert_eq!(a.thumbnail, events[1].evidence);
    assert_eq!(a.latest_event_id, events[3].event_id);
    let b = &all.incidents[1];
    assert_eq!((b.state, b.closed_at, b.duration_s, b.level, b.peak_score), (IncidentState::Open, None, 10.0, Level::Critical, 0.95));
    let c = &all.incidents[2];
    assert_eq!((c.thumbnail.as_ref(), c.events, c.peak_level), (None, 1, Level::Low), "no evidence, no thumbnail");
    assert_eq!((c.acknowledged.as_ref(), c.assigned.as_ref(), c.notes, c.actions), (None, None, 0, 0));

    // Actions: summarised apart, the latest of each kind, and nothing else moves.
    assert_eq!((b.events, b.latest_event_id.as_str(), b.last_event_at, b.caption.as_str()), (2, events[5].event_id.as_str(), t(50), "B at 50 s"));
    let ack = b.acknowledged.as_ref().expect("B is acknowledged");
    assert_eq!(
        (ack.by.as_str(), ack.at, ack.text.as_deref(), ack.event_id.as_str()),
        ("carol", t(55), None, events[13].event_id.as_str()),
        "the latest acknowledgement"
    );
    let assigned = b.assigned.as_ref().expect("B is assigned");
    assert_eq!((assigned.by.as_str(), assigned.assignee.as_deref(), assigned.at), ("alice", Some("bob"), t(46)));
    assert_eq!((b.notes, b.actions), (1, 4));
    assert_eq!((a.notes, a.actions, a.acknowledged.as_ref()), (1, 1, None), "a note after closing counts, and reopens nothing");

    let d = detail(s, &board_id("A")).unwrap().unwrap();
    assert_eq!(d.incident, *a);
    let ids = |evs: &[Event]| evs.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
    let want: Vec<Event> = events[..4].iter().chain(&events[14..15]).map(|e| (**e).clone()).collect();
    assert_eq!(ids(&d.lifecycle), ids(&want), "oldest first, the note among them");
    assert_eq!(d.lifecycle[4], want[4], "the action comes back whole");
    assert!(!d.lifecycle_truncated);
    let d = detail(s, &board_id("B")).unwrap().unwrap();
    let want: Vec<Event> = [4, 10, 11, 12, 5, 13].iter().map(|&i| (*events[i]).clone()).collect();
    assert_eq!(ids(&d.lifecycle), ids(&want), "B's lifecycle with its actions, oldest first");
    assert!(detail(s, &argus::model::derive_id(&[b"no such incident"])).unwrap().is_none());
}
