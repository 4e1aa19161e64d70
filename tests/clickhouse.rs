//! ClickHouse against a real server (Debian's clickhouse-server, started per test on
//! loopback in a temporary directory): migrations, a full row round trip (the client
//! runs without schema validation), the shared store suite, the analyst queries of
//! docs/analysts.md, and the demo pipeline through a 60 s outage.
#![cfg(feature = "clickhouse")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argus::model::{EventKind, sample_event};
use argus::store::clickhouse::{ClickHouseStore, EventRow, ObjectRow, event_rows, insert_events};
use argus::store::{EventQuery, EventStore, StatsQuery};
use serde_json::Value;

#[path = "common/clickhouse_server.rs"]
mod clickhouse_server;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/store_suite.rs"]
mod store_suite;

use clickhouse_server::{Server, free_port};

fn store(server: &Server, dir: &Path) -> ClickHouseStore {
    let s = ClickHouseStore::new(&server.config(&dir.join("spool"))).unwrap();
    assert_eq!(s.migrate(0).unwrap(), vec![1, 2], "a first run applies every migration");
    assert!(s.migrate(0).unwrap().is_empty(), "migrations are idempotent");
    s
}

#[test]
fn a_full_row_round_trips_and_replays_replace_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ch"));
    let s = store(&server, dir.path());
    let mut ev = sample_event("gate", 1_763_884_800_123, EventKind::IncidentOpened);
    ev.objects[0].speed_mps = Some(1.25);
    ev.objects[0].world.as_mut().unwrap().lat = Some(51.44);
    ev.objects.push(argus::model::SceneObject { track_id: None, world: None, zones: vec![], ..ev.objects[0].clone() });
    let ev = Arc::new(ev);
    s.insert(std::slice::from_ref(&ev)).unwrap();
    s.insert(std::slice::from_ref(&ev)).unwrap();
    let (want_event, want_objects) = event_rows(&ev).unwrap();
    let c = s.conn();
    let got: Vec<EventRow> = c.block_on(c.client().query("SELECT ?fields FROM events FINAL").fetch_all()).unwrap();
    assert_eq!(got, vec![want_event]);
    let got: Vec<ObjectRow> = c.block_on(c.client().query("SELECT ?fields FROM objects FINAL ORDER BY idx").fetch_all()).unwrap();
    assert_eq!(got, want_objects);
    assert_eq!(s.get(&ev.event_id).unwrap().as_ref(), Some(&*ev));
    // Readable by analysts as text, too.
    let row = server.sql("SELECT kind, level, toString(ts), ts_ms, has(zones, 'gate') FROM events FINAL FORMAT TSV");
    assert_eq!(row.trim(), "incident.opened\thigh\t2025-11-23 08:00:00\t1763884800123\t1");
}

/// Rows are built while the objects insert streams, so an event ClickHouse cannot hold
/// (captured in 2200: `DateTime` ends in 2106) is met after earlier events' objects are
/// on their way. Without skipping, the whole batch fails and none of it is stored (the
/// streamed insert is aborted, not committed half); with skipping, only it is left out.
#[test]
fn an_unrepresentable_event_fails_its_batch_whole_or_is_left_out_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ch"));
    let s = store(&server, dir.path());
    let good = |camera: &str| Arc::new(sample_event(camera, 1_763_884_800_123, EventKind::FrameAnalyzed));
    let mut far = sample_event("far", 1_763_884_800_123, EventKind::FrameAnalyzed);
    far.captured_at = time::OffsetDateTime::from_unix_timestamp(7_258_118_400).unwrap();
    let batch = vec![good("a"), Arc::new(far), good("b")];
    let objects_of_good = batch[0].objects.len() + batch[2].objects.len();
    assert!(objects_of_good > 0);
    let counts = || {
        let text = server.sql("SELECT (SELECT count() FROM events), (SELECT count() FROM objects) FORMAT TSV");
        let v: Vec<usize> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
        (v[0], v[1])
    };

    let err = insert_events(s.conn(), &batch, false).unwrap_err();
    assert!(err.to_string().contains("far") || err.to_string().contains("2106") || err.to_string().contains("1970"), "{err}");
    assert_eq!(counts(), (0, 0), "nothing of a failed batch is stored, not even the objects streamed before the bad event");

    assert_eq!(insert_events(s.conn(), &batch, true).unwrap(), (2, objects_of_good));
    assert_eq!(counts(), (2, objects_of_good));
}

/// The rows as ClickHouse stores them, against fixtures written by hand from the event
/// (not from the row builder under test), read raw (no FINAL) as analysts would. The ids
/// are from scripts/reference/event_id.py: derive_id("gate", "incident") and
/// event_id("gate", 2025-11-23T08:00:00.123Z, incident.opened, that incident).
#[test]
fn rows_match_hand_written_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ch"));
    let s = store(&server, dir.path());
    let mut ev = sample_event("gate", 1_763_884_800_123, EventKind::IncidentOpened);
    ev.objects[0].speed_mps = Some(1.25);
    ev.objects[0].world.as_mut().unwrap().lat = Some(51.44);
    ev.objects.push(argus::model::SceneObject { track_id: None, world: None, zones: vec![], ..ev.objects[0].clone() });
    s.insert(&[Arc::new(ev)]).unwrap();

    let events = server.sql(
        "SELECT toString(event_id), kind, incident_id, pipeline, camera_id, toString(ts), ts_ms, processed_ms, latency_ms, level, \
         priority, score, classes, zones, rules, object_count, caption FROM events FORMAT TSV",
    );
    let want = [
        "807777ee-b5eb-88f8-863b-d23d84df254f",
        "incident.opened",
        "7d3434a1-4788-86af-8311-c4ad074cd01b",
        "test",
        "gate",
        "2025-11-23 08:00:00",
        "1763884800123",
        "1763884800123",
        "12.5",
        "high",
        "2",
        "0.6",
        "['person']",
        "['gate']",
        "['no-entry']",
        "2",
        "1 person in view.",
    ]
    .join("\t");
    assert_eq!(events, format!("{want}\n"), "the events table, raw");

    let objects = server.sql(
        "SELECT toString(event_id), camera_id, toString(ts), ts_ms, kind, incident_id, idx, track_id, class, confidence, x1, y1, x2, y2, \
         world_x, world_y, lat, lon, speed_mps, heading_deg, zones FROM objects ORDER BY idx FORMAT TSV",
    );
    let common = "807777ee-b5eb-88f8-863b-d23d84df254f\tgate\t2025-11-23 08:00:00\t1763884800123\tincident.opened\t7d3434a1-4788-86af-8311-c4ad074cd01b";
    let want = format!(
        "{common}\t0\t1\tperson\t0.9\t10\t20\t50\t120\t1\t2\t51.44\t\\N\t1.25\t\\N\t['gate']\n\
         {common}\t1\t\\N\tperson\t0.9\t10\t20\t50\t120\t\\N\t\\N\t\\N\t\\N\t1.25\t\\N\t[]\n"
    );
    assert_eq!(objects, want, "the objects table, raw");

    // The payload column is the event's JSON: a few fields checked by hand.
    let payload: Value = serde_json::from_str(server.sql("SELECT payload FROM events FORMAT TSVRaw").trim()).unwrap();
    assert_eq!(payload["schema"], "argus.event.v1");
    assert_eq!(payload["captured_at"], "2025-11-23T08:00:00.123Z");
    assert_eq!(payload["objects"][0]["world"]["lat"], 51.44);
    assert_eq!(payload["objects"][1]["track_id"], Value::Null);
}

#[test]
fn the_shared_store_suite_passes_and_answers_equal_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ch"));
    let ch = store(&server, dir.path());
    store_suite::replays_are_idempotent(&ch);
    store_suite::filters_and_pages_newest_first(&ch);
    store_suite::stats_per_camera_level_and_bucket(&ch);
    store_suite::known_answers(&ch);
    store_suite::incident_board(&ch);

    let sqlite = argus::store::sqlite::SqliteStore::open(&dir.path().join("a.db")).unwrap();
    sqlite.insert(&store_suite::events()).unwrap();
    sqlite.insert(&store_suite::board_events()).unwrap();
    let q = store_suite::q;
    let events = store_suite::events();
    let page2 = sqlite.query(&EventQuery { limit: 4, ..q() }).unwrap().next_cursor;
    store_suite::same_answers(
        &ch,
        &sqlite,
        &[
            q(),
            EventQuery { camera: Some("west".into()), ..q() },
            EventQuery { kind: Some(EventKind::IncidentOpened), ..q() },
            EventQuery { min_level: Some(argus::model::Level::High), ..q() },
            EventQuery { since: Some(events[3].captured_at), until: Some(events[17].captured_at), limit: 5, ..q() },
            EventQuery { limit: 4, cursor: page2, ..q() },
            EventQuery { zone: Some("gate".into()), class: Some("person".into()), ..q() },
        ],
    );
    // The board, over both event sets (the suite's own incidents among them), equal to
    // the last byte, each page and each detail.
    use argus::store::incidents::{IncidentQuery, detail, list};
    let iq = |qs: &str| argus::api::incidents::parse_incident_query(Some(qs)).unwrap();
    let mut queries: Vec<IncidentQuery> =
        ["", "state=open", "state=closed&limit=2", "camera=west&min_level=medium", "since=2023-11-16T02:00:35Z"].iter().map(|qs| iq(qs)).collect();
    let first = list(&sqlite, &iq("limit=3")).unwrap();
    queries.push(IncidentQuery { cursor: first.next_cursor.clone(), ..iq("limit=3") });
    for q in &queries {
        let (a, b) = (list(&ch, q).unwrap(), list(&sqlite, q).unwrap());
        assert!(!b.incidents.is_empty() || q.state.is_some(), "{q:?} lists something");
        assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap(), "incidents {q:?}");
    }
    for inc in list(&sqlite, &iq("limit=200")).unwrap().incidents {
        let (a, b) = (detail(&ch, &inc.incident_id).unwrap(), detail(&sqlite, &inc.incident_id).unwrap());
        assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap(), "incident {}", inc.incident_id);
    }
}

/// Every ```sql block in docs/analysts.md runs on the real server and returns rows.
#[test]
fn the_analyst_queries_in_the_docs_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ch"));
    let s = store(&server, dir.path());
    s.insert(&store_suite::events()).unwrap();
    // Incidents with operators' actions, for the audit trail queries.
    s.insert(&store_suite::board_events()).unwrap();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analysts.md")).unwrap();
    let blocks: Vec<&str> = doc.split("```sql").skip(1).map(|b| b.split("```").next().unwrap().trim()).collect();
    assert!(blocks.len() >= 3, "the doc shows at least three analyst queries");
    for sql in blocks {
        let out = server.sql(&format!("{sql}\nFORMAT TSV"));
        assert!(!out.trim().is_empty(), "no rows from:\n{sql}");
    }
}

/// The same DDL, the data written by 18.16, and the analyst queries on a modern
/// ClickHouse (chDB 26.x, installed into .deps/pyenv by scripts/setup).
#[test]
fn a_modern_clickhouse_takes_the_same_schema_data_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ch"));
    let s = store(&server, dir.path());
    s.insert(&store_suite::events()).unwrap();
    s.insert(&store_suite::board_events()).unwrap();
    let ddl: Vec<String> = argus::store::clickhouse::MIGRATIONS.iter().flat_map(|m| m.statements(&argus::store::clickhouse::Layout::Single)).collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analysts.md")).unwrap();
    let queries: Vec<&str> = doc.split("```sql").skip(1).map(|b| b.split("```").next().unwrap().trim()).collect();
    let tables = serde_json::json!({
        "events": server.sql("SELECT * FROM events FINAL FORMAT TabSeparated"),
        "objects": server.sql("SELECT * FROM objects FINAL FORMAT TabSeparated"),
    });
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, serde_json::json!({ "ddl": ddl, "tables": tables, "queries": queries }).to_string()).unwrap();
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/pyenv/bin/python");
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check/clickhouse_modern.py"))
        .arg(&spec)
        .output()
        .expect(".deps/pyenv (scripts/setup)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let want = store_suite::events().len() + store_suite::board_events().len();
    assert!(text.contains(&format!("events: {want} rows from 18.16 loaded")), "{text}");
}

fn jsonl_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn get_json(url: &str) -> Option<Value> {
    reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(5)).send().ok()?.json().ok()
}

/// The demo at camera speed (~80 s); ClickHouse is stopped for 60 s in the middle.
/// Afterwards ClickHouse holds exactly the JSONL's events, once each, with their
/// objects, and the API (answering from ClickHouse) agrees with the embedded store.
#[test]
fn demo_survives_a_60s_outage_with_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut server = Server::start(&d.join("ch"));
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let demo = demo.replace("realtime = false", "realtime = true");
    assert!(demo.contains("realtime = true"));
    std::fs::write(d.join("demo.toml"), demo).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut argus = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .env("ARGUS_PIPELINES", format!("[{:?}]", d.join("demo.toml").display().to_string()))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARGUS_STORE__PATH", d.join("a.db"))
        .env("ARGUS_SINKS__JSONL__PATH", d.join("e.jsonl"))
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__ENABLED", "true")
        .env("ARGUS_SINKS__CLICKHOUSE__URL", server.url())
        .env("ARGUS_SINKS__CLICKHOUSE__SPOOL_DIR", d.join("spool"))
        .env("ARGUS_SINKS__CLICKHOUSE__MAX_WAIT_MS", "200")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    // The table appears once Argus has run its migrations.
    let count = |server: &Server| server.try_sql("SELECT count() FROM events").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    let t0 = Instant::now();
    while count(&server) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no events reached ClickHouse");
        std::thread::sleep(Duration::from_millis(200));
    }

    server.stop();
    std::thread::sleep(Duration::from_secs(20));
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    let spooled = metric(&metrics, "argus_spool_events{sink=\"clickhouse\"}");
    assert!(spooled > 0.0, "events spool while ClickHouse is down:\n{metrics}");
    let (status, _) = (reqwest::blocking::get(format!("{base}/v1/events")).unwrap().status(), ());
    assert_eq!(status.as_u16(), 503, "queries say ClickHouse is unavailable");
    std::thread::sleep(Duration::from_secs(40));
    server.restart();
    // No background merges from here on (the setting does not survive the restart): a
    // ReplacingMergeTree merge would collapse a replay's duplicate rows before the raw
    // count below could see them.
    server.sql("SYSTEM STOP MERGES events");
    server.sql("SYSTEM STOP MERGES objects");

    // The video ends at ~80 s; then the spool empties and every queue drains.
    let t0 = Instant::now();
    loop {
        let ready = get_json(&format!("{base}/readyz")).unwrap_or_default();
        let m = reqwest::blocking::get(format!("{base}/metrics")).map(|r| r.text().unwrap()).unwrap_or_default();
        if ready["pipeline"]["state"] == "ended" && metric(&m, "argus_spool_events{sink=\"clickhouse\"}") == 0.0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "pipeline did not finish: {ready}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let jsonl = jsonl_events(&d.join("e.jsonl"));
    assert!(jsonl.len() > 20, "{} events", jsonl.len());
    let mut want: Vec<String> = jsonl.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    want.sort();
    let mut got: Vec<String> = server.sql("SELECT toString(event_id) FROM events FINAL ORDER BY 1").lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, want, "ClickHouse holds exactly the JSONL's events");
    let objects: usize = jsonl.iter().map(|e| e["objects"].as_array().unwrap().len()).sum();
    assert_eq!(server.sql("SELECT count() FROM objects FINAL").trim(), objects.to_string());
    // FINAL and OPTIMIZE collapse duplicates by construction: count the raw rows too.
    // ClickHouse is stopped with SIGTERM, which lets running inserts finish, so every
    // insert either failed (its events were spooled and replayed once) or was confirmed:
    // no event id has two rows, and no (event, object) pair either.
    let raw_events = server.sql("SELECT count(), uniqExact(event_id) FROM events FORMAT TSV");
    assert_eq!(raw_events.trim(), format!("{}\t{}", want.len(), want.len()), "raw rows vs distinct ids in events (no FINAL)");
    let doubled = server.sql("SELECT toString(event_id), count() AS n FROM events GROUP BY event_id HAVING n > 1 ORDER BY event_id LIMIT 10 FORMAT TSV");
    assert!(doubled.trim().is_empty(), "event ids with more than one raw row:\n{doubled}");
    let raw_objects = server.sql("SELECT count(), uniqExact(event_id, idx) FROM objects FORMAT TSV");
    assert_eq!(raw_objects.trim(), format!("{objects}\t{objects}"), "raw rows vs distinct (event, object) in objects (no FINAL)");
    server.sql("SYSTEM START MERGES events");
    server.sql("SYSTEM START MERGES objects");
    server.sql("OPTIMIZE TABLE events FINAL");
    assert_eq!(server.sql("SELECT count() FROM events").trim(), want.len().to_string(), "no duplicate after OPTIMIZE FINAL");
    let incidents = jsonl.iter().filter(|e| e["kind"] == "incident.opened").count();
    assert!(incidents >= 1);
    assert_eq!(server.sql("SELECT count() FROM events FINAL WHERE kind = 'incident.opened'").trim(), incidents.to_string());

    // The API answers from ClickHouse exactly what the embedded store answers.
    let sqlite = argus::store::sqlite::SqliteStore::open(&d.join("a.db")).unwrap();
    for qs in ["", "limit=1000", "kind=incident.opened", "min_level=high", "class=person&limit=7", "zone=crossing"] {
        let api = get_json(&format!("{base}/v1/events?{qs}")).unwrap();
        let q = argus::api::events::parse_query(Some(qs)).unwrap();
        let want = as_json(&sqlite.query(&q).unwrap());
        assert!(api == want, "/v1/events?{qs}: the API (ClickHouse) and the embedded store differ");
    }
    for qs in ["bucket=10s", "bucket=1m&kind=frame.analyzed"] {
        let api = get_json(&format!("{base}/v1/stats?{qs}")).unwrap();
        let q = argus::api::events::parse_stats_query(Some(qs)).unwrap();
        assert_eq!(api["rows"], as_json(&sqlite.stats(&StatsQuery { ..q }).unwrap()), "/v1/stats?{qs}");
    }
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());
    let log = std::fs::read_to_string(d.join("stderr")).unwrap();
    assert!(log.contains("server is back; the spool is replayed"), "{log}");
    eprintln!("ClickHouse down 60 s (SIGTERM, restarted): {} events, {} rows, 0 lost, 0 doubled (raw rows, no FINAL)", want.len(), want.len());
}

/// Through text, as the API does (`to_value` would widen f32 fields to f64 digits).
fn as_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

/// Every record in a spool directory, oldest segment first (the spool's files are
/// newline-separated events; `cursor` and `lock` are not records).
fn spool_records(dir: &Path) -> Vec<Value> {
    let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse().ok()).map(|n| (n, e.path())))
        .collect();
    segs.sort();
    let mut out = Vec::new();
    for (_, p) in segs {
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: a torn or bad record ({e}): {line}", p.display())));
        }
    }
    out
}

/// A ClickHouse that accepts connections and never answers (a hung server, a stuck
/// proxy): the inserts time out, every event goes to the spool, and the pipeline is not
/// held up: the run ends on its own, the JSONL is complete, and the spool holds exactly
/// its events, once each. A real server then receives all of them from that spool.
#[test]
fn a_clickhouse_that_never_answers_holds_nothing_up_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for s in hole.incoming().flatten() {
                held.lock().unwrap().push(s); // never read, never answered
            }
        });
    }
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let demo = demo.replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    assert!(demo.contains("frame_summary_every_s = 0.000001"), "pipelines/demo.toml changed: update this test");
    std::fs::write(d.join("demo.toml"), demo).unwrap();
    let t0 = Instant::now();
    let mut argus = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", "150", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .env("ARGUS_PIPELINES", format!("[{:?}]", d.join("demo.toml").display().to_string()))
        .env("ARGUS_SERVER__ENABLED", "false")
        .env("ARGUS_STORE__PATH", d.join("a.db"))
        .env("ARGUS_SINKS__JSONL__PATH", d.join("e.jsonl"))
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__ENABLED", "true")
        .env("ARGUS_SINKS__CLICKHOUSE__URL", &hole_url)
        .env("ARGUS_SINKS__CLICKHOUSE__SPOOL_DIR", d.join("spool"))
        .env("ARGUS_SINKS__CLICKHOUSE__MAX_WAIT_MS", "100")
        .env("ARGUS_SINKS__CLICKHOUSE__SERVE_API", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__REQUEST_TIMEOUT_MS", "1500")
        .env("ARGUS_SINKS__CLICKHOUSE__INSERT_TIMEOUT_MS", "1500")
        .env("ARGUS_LIMITS__DRAIN_TIMEOUT_S", "3")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = argus.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(240) {
            let _ = argus.kill();
            let log = std::fs::read_to_string(d.join("stderr")).unwrap_or_default();
            panic!("Argus did not finish with a silent ClickHouse; log tail:\n{}", log.lines().rev().take(30).collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = logs::plain_log(&d.join("stderr"));
    assert!(status.success(), "{status}\n{log}");
    assert!(!held.lock().unwrap().is_empty(), "Argus connected to the silent server");
    assert!(log.contains("no answer yet; spooling the batch meanwhile"), "{log}");

    let jsonl = jsonl_events(&d.join("e.jsonl"));
    assert!(jsonl.len() >= 150, "one frame summary per frame at least: {}", jsonl.len());
    let want: Vec<&str> = jsonl.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    let spooled = spool_records(&d.join("spool"));
    let got: Vec<&str> = spooled.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(got, want, "the spool holds the JSONL's events, once each, in order");

    // A real server gets them all from that spool.
    let server = Server::start(&d.join("ch"));
    let metrics = Arc::new(argus::telemetry::metrics::Metrics::new());
    let health = Arc::new(argus::telemetry::health::Health::default());
    let mut sink = argus::sinks::clickhouse::open_sink(&server.config(&d.join("spool")), metrics.clone(), health).unwrap();
    let t0 = Instant::now();
    while metrics.spool_events.with_label_values(&["clickhouse"]).get() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "the spool did not empty into the real server");
        argus::sinks::Sink::idle(&mut sink);
    }
    let drained = t0.elapsed();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut stored: Vec<String> = server.sql("SELECT toString(event_id) FROM events FINAL").lines().map(String::from).collect();
    stored.sort();
    assert!(stored == want, "ClickHouse holds {} events, the JSONL {}", stored.len(), want.len());
    eprintln!(
        "ClickHouse accepting and never answering: {} events, all spooled in order, 0 lost; the spool emptied into a real server in {drained:.2?}",
        want.len()
    );
}

/// A TCP proxy to a real server that can freeze: while frozen, every connection it
/// holds, and every new one, stops forwarding for good (accepted, never answered, never
/// closed: a server whose process hangs). Connections opened after a thaw work again.
struct FreezingProxy {
    addr: std::net::SocketAddr,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    stalled: Arc<std::sync::atomic::AtomicUsize>,
}

impl FreezingProxy {
    fn start(upstream: u16) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicUsize::new(0));
        let (f, st) = (frozen.clone(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let dead = Arc::new(AtomicBool::new(false));
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let (f, st, dead) = (f.clone(), st.clone(), dead.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        from.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if f.load(Ordering::SeqCst) && !dead.swap(true, Ordering::SeqCst) {
                                st.fetch_add(1, Ordering::SeqCst);
                            }
                            if dead.load(Ordering::SeqCst) {
                                // Frozen for good: hold both ends open, move nothing.
                                std::thread::sleep(Duration::from_secs(3600));
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Self { addr, frozen, stalled }
    }

    fn freeze(&self, on: bool) {
        self.frozen.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// ClickHouse hangs for 5 s in the middle of a camera-speed run (its connections stay
/// open and never answer again). The timed-out inserts go to the spool, the client
/// opens new connections once the server answers again, and ClickHouse ends up with
/// exactly the JSONL's events. Without request timeouts the hung connection would hold
/// the sink's delivery forever and the spool would never drain.
#[test]
fn a_clickhouse_that_hangs_mid_run_recovers_through_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(&d.join("ch"));
    let proxy = FreezingProxy::start(server.http);
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let demo = demo.replace("realtime = false", "realtime = true").replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    assert!(demo.contains("realtime = true") && demo.contains("frame_summary_every_s = 0.000001"), "pipelines/demo.toml changed: update this test");
    std::fs::write(d.join("demo.toml"), demo).unwrap();
    let mut argus = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", "150", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .env("ARGUS_PIPELINES", format!("[{:?}]", d.join("demo.toml").display().to_string()))
        .env("ARGUS_SERVER__ENABLED", "false")
        .env("ARGUS_STORE__PATH", d.join("a.db"))
        .env("ARGUS_SINKS__JSONL__PATH", d.join("e.jsonl"))
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__ENABLED", "true")
        .env("ARGUS_SINKS__CLICKHOUSE__URL", format!("http://{}", proxy.addr))
        .env("ARGUS_SINKS__CLICKHOUSE__SPOOL_DIR", d.join("spool"))
        .env("ARGUS_SINKS__CLICKHOUSE__MAX_WAIT_MS", "100")
        .env("ARGUS_SINKS__CLICKHOUSE__SERVE_API", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__REQUEST_TIMEOUT_MS", "1500")
        .env("ARGUS_SINKS__CLICKHOUSE__INSERT_TIMEOUT_MS", "1500")
        .env("ARGUS_LIMITS__DRAIN_TIMEOUT_S", "30")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let count = |server: &Server| server.try_sql("SELECT count() FROM events").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    let t0 = Instant::now();
    while count(&server) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no events reached ClickHouse");
        std::thread::sleep(Duration::from_millis(100));
    }
    proxy.freeze(true);
    std::thread::sleep(Duration::from_secs(5));
    proxy.freeze(false);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = argus.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = argus.kill();
            panic!("Argus did not finish; log:\n{}", logs::plain_log(&d.join("stderr")));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = logs::plain_log(&d.join("stderr"));
    assert!(status.success(), "{status}\n{log}");
    assert!(proxy.stalled.load(std::sync::atomic::Ordering::SeqCst) > 0, "the freeze caught a connection");
    assert!(log.contains("no answer yet; spooling the batch meanwhile"), "{log}");
    assert!(log.contains("server is back; the spool is replayed"), "{log}");
    assert!(spool_records(&d.join("spool")).is_empty(), "the spool emptied before the exit");
    let jsonl = jsonl_events(&d.join("e.jsonl"));
    let mut want: Vec<String> = jsonl.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    want.sort();
    let mut stored: Vec<String> = server.sql("SELECT toString(event_id) FROM events FINAL").lines().map(String::from).collect();
    stored.sort();
    assert!(stored == want, "ClickHouse holds {} events, the JSONL {}", stored.len(), want.len());
    eprintln!("ClickHouse hung 5 s mid-run: {} events, 0 lost; the run finished {:.1?} after the thaw with the spool empty", want.len(), t0.elapsed());
}

/// A small tmpfs mounted for one test (the spool's own disk, so it can really fill);
/// unmounted on drop. None where this process may not mount (not root, no
/// CAP_SYS_ADMIN).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, kib: u32) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs", at.to_str().unwrap()]).output().ok()?;
        if !out.status.success() {
            eprintln!("cannot mount a tmpfs here ({}); the full-disk test needs root", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(Self(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The ClickHouse spool on a real 384 KiB filesystem while ClickHouse is down: the disk
/// check alarms first (`argus_disk_low_total`), then appends fail with ENOSPC. A failed
/// append is rolled back (every spooled line still parses), the pipeline waits instead
/// of dropping, and once ClickHouse is up the spool drains, the disk frees and the run
/// ends with exactly the JSONL's events in ClickHouse.
#[test]
fn a_full_disk_under_the_spool_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spool = d.join("spoolfs");
    let Some(_disk) = SmallDisk::mount(&spool, 384) else {
        // SAFETY: geteuid has no preconditions.
        assert!(unsafe { libc::geteuid() } != 0, "root, yet no tmpfs could be mounted");
        return;
    };
    let mut server = Server::start(&d.join("ch"));
    server.stop();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let demo = demo.replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    assert!(demo.contains("frame_summary_every_s = 0.000001"), "pipelines/demo.toml changed: update this test");
    std::fs::write(d.join("demo.toml"), demo).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = d.join("stderr");
    let mut argus = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", "400", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .env("ARGUS_PIPELINES", format!("[{:?}]", d.join("demo.toml").display().to_string()))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARGUS_STORE__PATH", d.join("a.db"))
        .env("ARGUS_SINKS__JSONL__PATH", d.join("e.jsonl"))
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__ENABLED", "true")
        .env("ARGUS_SINKS__CLICKHOUSE__URL", server.url())
        .env("ARGUS_SINKS__CLICKHOUSE__SPOOL_DIR", &spool)
        .env("ARGUS_SINKS__CLICKHOUSE__SPOOL_MAX_MB", "64")
        .env("ARGUS_SINKS__CLICKHOUSE__WHEN_FULL", "wait")
        .env("ARGUS_SINKS__CLICKHOUSE__SERVE_API", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__MAX_WAIT_MS", "200")
        .env("ARGUS_LIMITS__MIN_FREE_DISK_MB", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !logs::plain_log(&log).contains("No space left on device") {
        assert!(argus.try_wait().unwrap().is_none(), "argus ended before the disk filled:\n{}", logs::plain_log(&log));
        assert!(t0.elapsed() < Duration::from_secs(120), "the spool's disk never filled:\n{}", logs::plain_log(&log));
        std::thread::sleep(Duration::from_millis(200));
    }
    let full_at = t0.elapsed();
    // The pipeline waits for the sink (when_full = "wait"): nothing more is analysed.
    let m = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    assert!(m.lines().any(|l| l.starts_with("argus_disk_low_total") && l.contains("spoolfs")), "the disk check alarmed first:\n{m}");
    let spooled = spool_records(&spool);
    assert!(!spooled.is_empty(), "events spooled before the disk filled");
    let ready = get_json(&format!("{base}/readyz")).unwrap_or_default();
    assert_eq!(ready["ready"], false, "/readyz says why: {ready}");
    let reasons = ready["reasons"].to_string();
    assert!(reasons.contains("spoolfs"), "/readyz names the low disk: {ready}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(argus.try_wait().unwrap().is_none(), "argus is still up with a full disk:\n{}", logs::plain_log(&log));

    server.restart();
    let status = {
        let t0 = Instant::now();
        loop {
            if let Some(s) = argus.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(180) {
                let _ = argus.kill();
                panic!("argus did not finish after ClickHouse came back:\n{}", logs::plain_log(&log));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let recovered = t0.elapsed();
    assert!(status.success(), "argus: {status}\n{}", logs::plain_log(&log));
    let jsonl = jsonl_events(&d.join("e.jsonl"));
    assert!(jsonl.len() >= 400, "a summary per frame at least: {}", jsonl.len());
    let mut want: Vec<String> = jsonl.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    want.sort();
    let mut got: Vec<String> = server.sql("SELECT toString(event_id) FROM events FINAL").lines().map(String::from).collect();
    got.sort();
    let left = spool_records(&spool).len();
    assert!(got == want, "ClickHouse holds {} events, the JSONL {}, the spool {left}; log:\n{}", got.len(), want.len(), logs::plain_log(&log));
    assert_eq!(left, 0, "the spool emptied");
    eprintln!(
        "spool on a 384 KiB tmpfs, ClickHouse down: disk full after {full_at:.1?} ({} events spooled, /readyz {}), \
         ClickHouse back: run finished {:.1?} later with all {} events in ClickHouse, 0 lost",
        spooled.len(),
        ready["reasons"],
        recovered - full_at,
        want.len()
    );
}
