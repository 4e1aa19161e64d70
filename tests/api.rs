//! The HTTP API over real HTTP on loopback, backed by a real SQLite store.

use std::sync::Arc;

use argus::api::{self, AppState, Info};
use argus::model::{EventKind, sample_event};
use argus::store::EventStore;
use argus::store::sqlite::SqliteStore;
use argus::telemetry::health::{Health, State};
use argus::telemetry::metrics::Metrics;
use serde_json::Value;

struct Server {
    base: String,
    health: Arc<Health>,
    live: Arc<argus::api::live::LiveHub>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("a.db")).unwrap());
    let events: Vec<_> = (0..30)
        .map(|i| {
            let kind = if i % 3 == 0 { EventKind::IncidentOpened } else { EventKind::FrameAnalyzed };
            Arc::new(sample_event(if i < 20 { "east" } else { "west" }, 1_763_884_800_000 + i * 1000, kind))
        })
        .collect();
    store.insert(&events).unwrap();
    let health = Arc::new(Health::default());
    let info = Arc::new(std::sync::RwLock::new(Info {
        name: "argus",
        role: "run",
        shard: None,
        fleet: None,
        version: "test",
        schema: "argus.event.v1",
        detector: None,
        captioner: "scene".into(),
        pipelines: vec![],
        features: argus::app::compiled_features(),
        pipeline_docs: vec![],
    }));
    let metrics = Arc::new(Metrics::new());
    let live = argus::api::live::LiveHub::new(8, metrics.clone());
    let state = AppState::new(store, health.clone(), metrics, info, live.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await.unwrap() });
    Server { base: format!("http://{addr}"), health, live, _dir: dir }
}

async fn get(url: String) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn events_filters_paging_and_lookup() {
    let s = start().await;
    let (code, body) = get(format!("{}/v1/events?camera=west&limit=4", s.base)).await;
    assert_eq!(code, 200);
    let evs = body["events"].as_array().unwrap();
    assert_eq!(evs.len(), 4);
    assert!(evs.iter().all(|e| e["camera_id"] == "west"));
    let cursor = body["next_cursor"].as_str().unwrap().to_string();
    let (_, page2) = get(format!("{}/v1/events?camera=west&limit=4&cursor={cursor}", s.base)).await;
    assert_eq!(page2["events"].as_array().unwrap().len(), 4);
    let (_, page3) = get(format!("{}/v1/events?camera=west&limit=4&cursor={}", s.base, page2["next_cursor"].as_str().unwrap())).await;
    assert_eq!(page3["events"].as_array().unwrap().len(), 2);
    assert!(page3.get("next_cursor").is_none());

    let (_, hi) = get(format!("{}/v1/events?min_level=medium&kind=incident.opened", s.base)).await;
    assert_eq!(hi["events"].as_array().unwrap().len(), 10);
    let (_, window) = get(format!("{}/v1/events?since=2025-11-23T08:00:05Z&until=2025-11-23T08:00:10Z", s.base)).await;
    assert_eq!(window["events"].as_array().unwrap().len(), 5, "{window}");

    let id = evs[0]["event_id"].as_str().unwrap();
    let (code, one) = get(format!("{}/v1/events/{id}", s.base)).await;
    assert_eq!(code, 200);
    assert_eq!(one["event_id"], id);
}

#[tokio::test]
async fn errors_are_json_with_code_message_details() {
    let s = start().await;
    for (path, code, err) in [
        ("/v1/events?limit=0", 400, "BAD_REQUEST"),
        ("/v1/events?min_level=extreme", 400, "BAD_REQUEST"),
        ("/v1/events?cursor=nonsense", 400, "BAD_REQUEST"),
        ("/v1/events?bogus=1", 400, "BAD_REQUEST"),
        ("/v1/events/not-a-uuid", 400, "BAD_REQUEST"),
        ("/v1/events/00000000-0000-4000-8000-000000000000", 404, "NOT_FOUND"),
        ("/v2/nothing", 404, "NOT_FOUND"),
    ] {
        let (c, body) = get(format!("{}{path}", s.base)).await;
        assert_eq!(c, code, "{path}: {body}");
        assert_eq!(body["error"], err, "{path}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}");
        assert!(body["details"].is_object(), "{path}");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = start().await;
    assert_eq!(get(format!("{}/healthz", s.base)).await.0, 200);
    let (code, body) = get(format!("{}/readyz", s.base)).await;
    assert_eq!(code, 503, "no detector yet");
    assert!(body["reasons"][0].as_str().unwrap().contains("detector"));
    s.health.set_detector(State::Running, None);
    s.health.register_source("cam", "p", "file:///x", false);
    let (code, body) = get(format!("{}/readyz", s.base)).await;
    assert_eq!(code, 503, "source still starting: {body}");
    s.health.update_source("cam", |st| st.state = argus::telemetry::health::SourceState::Streaming);
    assert_eq!(get(format!("{}/readyz", s.base)).await.0, 200);

    get(format!("{}/v1/events", s.base)).await;
    let text = reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap();
    assert!(text.contains("argus_http_requests_total{route=\"/v1/events\",status=\"200\"} 1"), "{text}");
    let (code, info) = get(format!("{}/v1/info", s.base)).await;
    assert_eq!(code, 200);
    assert_eq!(info["schema"], "argus.event.v1");
}

/// Reads an SSE response until `want` appears in what arrived (or 10 s pass).
async fn read_until(r: &mut reqwest::Response, got: &mut String, want: &str) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !got.contains(want) {
        match tokio::time::timeout_at(deadline, r.chunk()).await {
            Ok(Ok(Some(c))) => got.push_str(&String::from_utf8_lossy(&c)),
            _ => return false,
        }
    }
    true
}

/// Waits (a generous 30 s) until the hub has `n` clients.
async fn wait_clients(live: &argus::api::live::LiveHub, n: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while live.clients() != n {
        assert!(tokio::time::Instant::now() < deadline, "{} live clients, expected {n}", live.clients());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn live_stream_filters_by_camera_and_level() {
    let s = start().await;
    let mut r = reqwest::get(format!("{}/v1/events/stream?camera=east&min_level=medium", s.base)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    wait_clients(&s.live, 1).await;
    let west = Arc::new(sample_event("west", 1_763_900_000_000, EventKind::IncidentOpened));
    let east_low = Arc::new(sample_event("east", 1_763_900_001_000, EventKind::FrameAnalyzed));
    let east_incident = Arc::new(sample_event("east", 1_763_900_002_000, EventKind::IncidentOpened));
    for ev in [&west, &east_low, &east_incident] {
        s.live.publish(ev);
    }
    let mut got = String::new();
    assert!(read_until(&mut r, &mut got, &east_incident.event_id).await, "{got}");
    assert!(got.contains("event: incident.opened"), "{got}");
    assert!(!got.contains(&west.event_id) && !got.contains(&east_low.event_id), "filtered out: {got}");
    let data = got.lines().find(|l| l.starts_with("data: ")).unwrap();
    let ev: Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
    assert_eq!(ev["camera_id"], "east");

    let (status, body) = get(format!("{}/v1/events/stream?min_level=severe", s.base)).await;
    assert_eq!(status, 400);
    assert_eq!(body["details"]["parameter"], "min_level");
    let (status, _) = get(format!("{}/v1/events/stream?colour=red", s.base)).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_slow_live_client_is_dropped_with_a_reason_and_never_blocks() {
    let s = start().await;
    let mut r = reqwest::get(format!("{}/v1/events/stream", s.base)).await.unwrap();
    wait_clients(&s.live, 1).await;
    // Nobody reads: the hub's buffer (8 here) fills, and publish must not wait for the
    // client. A publish that waited would wait forever (nobody reads until the loop is
    // done): on a thread, so that the test fails instead of hanging.
    let live = s.live.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..50 {
            live.publish(&Arc::new(sample_event("east", 1_763_900_000_000 + i * 1000, EventKind::FrameAnalyzed)));
        }
        done.send(()).unwrap();
    });
    finished.recv_timeout(std::time::Duration::from_secs(30)).expect("publish waited for a client that reads nothing");
    assert_eq!(s.live.clients(), 0, "the slow client is gone");
    let mut got = String::new();
    assert!(read_until(&mut r, &mut got, "event: dropped").await, "{got}");
    assert!(got.contains("fell 7 events behind"), "{got}");
    let metrics = reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("argus_live_clients_dropped_total 1"), "{metrics}");
}
