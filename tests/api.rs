//! The HTTP API over real HTTP on loopback, backed by a real SQLite store.

use std::sync::Arc;

use argus::api::{self, AppState, Info};
use argus::event::{EventKind, sample_event};
use argus::health::{Health, State};
use argus::metrics::Metrics;
use argus::store::EventStore;
use argus::store::sqlite::SqliteStore;
use serde_json::Value;

struct Server {
    base: String,
    health: Arc<Health>,
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
    let info = Arc::new(std::sync::RwLock::new(Info { name: "argus", version: "test", schema: "argus.event.v1", detector: None, captioner: "scene", pipelines: vec![], features: api::build_features() }));
    let state = AppState { store, health: health.clone(), metrics: Arc::new(Metrics::new()), info };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await.unwrap() });
    Server { base: format!("http://{addr}"), health, _dir: dir }
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
    s.health.update_source("cam", |st| st.state = argus::health::SourceState::Streaming);
    assert_eq!(get(format!("{}/readyz", s.base)).await.0, 200);

    get(format!("{}/v1/events", s.base)).await;
    let text = reqwest::get(format!("{}/metrics", s.base)).await.unwrap().text().await.unwrap();
    assert!(text.contains("argus_http_requests_total{route=\"/v1/events\",status=\"200\"} 1"), "{text}");
    let (code, info) = get(format!("{}/v1/info", s.base)).await;
    assert_eq!(code, 200);
    assert_eq!(info["schema"], "argus.event.v1");
}
