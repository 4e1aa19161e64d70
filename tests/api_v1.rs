//! The operator API over real HTTP on loopback: API keys, the error shape and codes,
//! CORS, body limits, cameras and snapshots, live messages over SSE and WebSocket, image
//! analysis (sync, async tasks, batch) with a bounded queue, and signed webhooks with a
//! retry, received by a real HTTP server in the test. The detector is a fake at the
//! `Detector` seam (the real one is exercised by tests/demo_e2e.rs through the binary).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argus::analysis::{AnalysisPool, CameraContext, CameraContexts, DetectorFactory, PoolSettings};
use argus::api::analysis::AnalysisApi;
use argus::api::auth::ApiKeys;
use argus::api::webhook::{WebhookSettings, sign};
use argus::api::{self, AppState, Info, Limits};
use argus::detect::{DetectError, Detector, DetectorInfo, DetectorParts};
use argus::geo::{CameraGeometry, Homography};
use argus::model::Detection;
use argus::model::RgbImage;
use argus::risk::Zone;
use argus::risk::config::{IntrusionRule, RuleConfig};
use argus::store::sqlite::SqliteStore;
use argus::telemetry::health::Health;
use argus::telemetry::metrics::Metrics;
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "test-key-0123456789abcdef";
const KEY2: &str = "second-key-0123456789abcdef";
const SECRET: &str = "webhook-secret-0123456789";

/// One person filling the middle of the image, after `delay`.
struct FakeDetector {
    delay: Duration,
    info: DetectorInfo,
}

impl Detector for FakeDetector {
    fn info(&self) -> &DetectorInfo {
        &self.info
    }
    fn into_parts(self: Box<Self>, _workers: usize) -> DetectorParts {
        DetectorParts::Whole(self)
    }
    fn detect(&mut self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError> {
        std::thread::sleep(self.delay);
        Ok(images
            .iter()
            .map(|im| {
                let (w, h) = (im.width as f32, im.height as f32);
                vec![Detection { class_id: 0, class: Arc::from("person"), score: 0.9, bbox: [w * 0.25, h * 0.25, w * 0.75, h * 0.75] }]
            })
            .collect())
    }
}

fn fake_info() -> DetectorInfo {
    DetectorInfo {
        model: "fake".into(),
        model_id: "fake.onnx@sha256:00".into(),
        backend: "fake",
        device: "cpu".into(),
        input_size: [32, 32],
        score_threshold: 0.3,
        nms_iou: 0.5,
        max_engine_batch: 1,
    }
}

struct Options {
    keys: bool,
    /// A second key, for per-key limits.
    second_key: bool,
    live: api::live::LiveLimits,
    connections: api::server::ConnectionLimits,
    /// `server.webhook_allow` (the receivers here are on loopback).
    webhook_allow: Vec<String>,
    delay_ms: u64,
    queue: usize,
    max_body: usize,
    analysis: bool,
    model_fails: bool,
    /// `[evidence]` on, its files in the test's directory.
    evidence: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keys: true,
            second_key: false,
            live: api::live::LiveLimits::default(),
            connections: api::server::ConnectionLimits { max_connections: 64, header_read_timeout: Duration::from_secs(10), drain: Duration::from_secs(1) },
            webhook_allow: vec!["127.0.0.1".into()],
            delay_ms: 0,
            queue: 4,
            max_body: 1 << 20,
            analysis: true,
            model_fails: false,
            evidence: true,
        }
    }
}

struct Server {
    base: String,
    state: AppState,
    _dir: tempfile::TempDir,
}

/// A camera "gate": 1 px = 0.1 m, zone "yard" covers x, y in 0..20 m, intrusion rule.
fn gate_camera() -> CameraContext {
    CameraContext {
        id: "gate".into(),
        pipeline: "test".into(),
        geometry: Some(CameraGeometry::from_homography(Homography([0.1, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0]), None)),
        zones: Arc::new(vec![Zone { id: "yard".into(), polygon: vec![[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0]] }]),
        rules: vec![RuleConfig::Intrusion(IntrusionRule {
            id: "no-entry".into(),
            zone: "yard".into(),
            classes: vec!["person".into()],
            severity: 0.7,
            min_dwell_s: 0.0,
            clear_after_s: 1.0,
            update_every_s: 5.0,
        })],
        risk: Default::default(),
        classes: None,
    }
}

async fn start(o: Options) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("a.db")).unwrap());
    let health = Arc::new(Health::default());
    health.register_source("gate", "test", "rtsp://cam.example/stream", true);
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
        pipeline_docs: vec![argus::api::PipelineDoc {
            name: "site".into(),
            doc: serde_json::json!({ "name": "site", "file": "pipelines/site.toml", "pipeline": { "name": "site" }, "cameras": [{ "id": "gate", "calibration": null }] }),
        }],
    }));
    let metrics = Arc::new(Metrics::new());
    let live = api::live::LiveHub::with_limits(64, o.live, metrics.clone());
    let mut state = AppState::new(store, health, metrics, info, live);
    if o.keys {
        let keys = if o.second_key { vec![KEY.to_string(), KEY2.to_string()] } else { vec![KEY.to_string()] };
        state.keys = Arc::new(ApiKeys::new(keys, false));
    }
    if o.evidence {
        let cfg = argus::evidence::EvidenceConfig { dir: dir.path().join("evidence"), ..Default::default() };
        state.evidence = argus::evidence::EvidenceStore::open(&cfg).unwrap().map(Arc::new);
    }
    state.limits = Limits { max_body_bytes: o.max_body, cors_origins: vec!["https://ops.example.com".into()], ..Limits::default() };
    if o.analysis {
        let (delay, fails) = (Duration::from_millis(o.delay_ms), o.model_fails);
        let factory: DetectorFactory =
            Arc::new(move || if fails { Err("weights missing".into()) } else { Ok(Box::new(FakeDetector { delay, info: fake_info() }) as Box<dyn Detector>) });
        let mut cams = CameraContexts::default();
        cams.insert(gate_camera());
        let cams = Arc::new(cams);
        let destinations = Arc::new(argus::api::destination::DestinationPolicy::new(&o.webhook_allow).unwrap());
        let pool = AnalysisPool::start(
            PoolSettings { workers: 1, queue: o.queue, max_side: 2048, max_pixels: 1_000_000, preload: true, max_queued_bytes: 64 << 20 },
            factory,
            cams.clone(),
        )
        .unwrap();
        wait_until("the analysis pool loaded its detector", || pool.state() != argus::analysis::PoolState::Loading).await;
        state.analysis = Some(Arc::new(AnalysisApi {
            pool,
            cameras: cams,
            tasks: Arc::new(argus::analysis::tasks::TaskStore::new(100)),
            webhook: Arc::new(WebhookSettings {
                secret: Some(SECRET.into()),
                destinations: destinations.clone(),
                attempts: 3,
                timeout: Duration::from_secs(2),
                first_backoff: Duration::from_millis(200),
            }),
            client: api::webhook::client(&destinations).unwrap(),
            timeout: Duration::from_secs(10),
            batch_max_items: 3,
        }));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (router, metrics, limits) = (api::router(state.clone()), state.metrics.clone(), o.connections);
    tokio::spawn(async move { api::server::serve(listener, router, limits, metrics, std::future::pending()).await.unwrap() });
    Server { base: format!("http://{addr}"), state, _dir: dir }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(w, h, image::Rgb([90, 120, 150])).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Waits for `cond`, checked every 10 ms, up to a generous 30 s (a condition, never a
/// fixed sleep).
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the task until `done` holds for it, up to 30 s; returns it.
async fn wait_task(base: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, t) = send(authed(client().get(format!("{base}/v1/tasks/{id}")))).await;
        if done(&t) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 30 s; task {t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = rb.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn authed(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.bearer_auth(KEY)
}

/// Every error: the one shape, with the expected code.
fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["details"].is_object(), "{body}");
}

#[tokio::test]
async fn api_keys_guard_every_route_but_probes_and_metrics() {
    let s = start(Options::default()).await;
    let c = client();
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (code, _, _) = send(c.get(format!("{}{path}", s.base))).await;
        assert!(code == 200 || code == 503, "{path}: {code}");
    }
    for path in
        ["/v1/info", "/v1/pipelines", "/v1/pipelines/site", "/v1/cameras", "/v1/cameras/gate", "/v1/events", "/v1/stats", "/v1/tasks/x", "/v1/events/stream"]
    {
        let (code, headers, body) = send(c.get(format!("{}{path}", s.base))).await;
        assert_error(code, &body, 401, "UNAUTHORIZED");
        assert!(headers.get("www-authenticate").is_some());
        let (code, _, body) = send(c.get(format!("{}{path}", s.base)).bearer_auth("wrong-key-0123456789abc")).await;
        assert_error(code, &body, 401, "UNAUTHORIZED");
    }
    let (code, _, body) = send(c.post(format!("{}/v1/analyze", s.base)).body(png(8, 8))).await;
    assert_error(code, &body, 401, "UNAUTHORIZED");
    // /readyz answers probes without a key, but only ready or not: no camera URIs,
    // errors or sink targets. With the key (or a wrong one) it is the full report or
    // the bare one.
    let (code, _, body) = send(c.get(format!("{}/readyz", s.base))).await;
    assert_eq!(body.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["ready".to_string()]), "{body}");
    assert_eq!(code == 200, body["ready"] == true);
    let (_, _, body) = send(c.get(format!("{}/readyz", s.base)).bearer_auth("wrong-key-0123456789abc")).await;
    assert!(body.get("sources").is_none(), "{body}");
    let (_, _, body) = send(authed(c.get(format!("{}/readyz", s.base)))).await;
    assert!(body["sources"].is_object() && body["reasons"].is_array(), "{body}");
    // The right key in the header, or as access_token (removed before the handler's
    // strict query parsing sees it).
    let (code, _, _) = send(authed(c.get(format!("{}/v1/cameras", s.base)))).await;
    assert_eq!(code, 200);
    let (code, _, body) = send(c.get(format!("{}/v1/events?access_token={KEY}&limit=5", s.base))).await;
    assert_eq!(code, 200, "{body}");
    // Pipelines: every document, one by name, an unknown name 404 with those there are.
    let (code, _, body) = send(authed(c.get(format!("{}/v1/pipelines", s.base)))).await;
    assert_eq!((code, body["pipelines"][0]["name"].as_str()), (200, Some("site")), "{body}");
    let (code, _, one) = send(authed(c.get(format!("{}/v1/pipelines/site", s.base)))).await;
    assert_eq!((code, &one), (200, &body["pipelines"][0]));
    let (code, _, body) = send(authed(c.get(format!("{}/v1/pipelines/nope", s.base)))).await;
    assert_error(code, &body, 404, "NOT_FOUND");
    assert_eq!(body["details"]["pipelines"], serde_json::json!(["site"]));
    // Camera credentials never appear.
    let (_, _, body) = send(authed(c.get(format!("{}/v1/cameras/gate", s.base)))).await;
    assert_eq!(body["id"], "gate");
    assert_eq!(body["snapshot_url"], "/v1/cameras/gate/snapshot.jpg");
    assert!(!body.to_string().contains(KEY));
}

#[tokio::test]
async fn errors_have_one_shape_and_the_right_codes() {
    let s = start(Options { max_body: 64 << 10, ..Default::default() }).await;
    let c = client();
    let b = &s.base;
    // 400: bad parameters, malformed JSON.
    let (code, _, body) = send(authed(c.get(format!("{b}/v1/events?min_level=extreme")))).await;
    assert_error(code, &body, 400, "BAD_REQUEST");
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).header("content-type", "application/json").body("{not json"))).await;
    assert_error(code, &body, 400, "BAD_REQUEST");
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze?async=maybe")).header("content-type", "image/png").body(png(8, 8)))).await;
    assert_error(code, &body, 400, "BAD_REQUEST");
    // 404: unknown route, camera, task, snapshot before any frame.
    for path in ["/v1/nope", "/v1/cameras/ghost", "/v1/tasks/ghost", "/v1/cameras/ghost/snapshot.jpg", "/v1/cameras/gate/snapshot.jpg"] {
        let (code, _, body) = send(authed(c.get(format!("{b}{path}")))).await;
        assert_error(code, &body, 404, "NOT_FOUND");
    }
    // 405 from the router, still in the one shape.
    let (code, _, body) = send(authed(c.delete(format!("{b}/v1/events")))).await;
    assert_error(code, &body, 405, "METHOD_NOT_ALLOWED");
    // 413: announced and streamed bodies over the limit.
    let big = vec![0u8; 100 << 10];
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(big.clone()))).await;
    assert_error(code, &body, 413, "PAYLOAD_TOO_LARGE");
    let stream = futures_util::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1024])));
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(reqwest::Body::wrap_stream(stream)))).await;
    assert_error(code, &body, 413, "PAYLOAD_TOO_LARGE");
    // 415: content types and image types.
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).header("content-type", "text/plain").body("hello"))).await;
    assert_error(code, &body, 415, "UNSUPPORTED_MEDIA_TYPE");
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(gif.clone()))).await;
    assert_error(code, &body, 415, "UNSUPPORTED_MEDIA_TYPE");
    let form = reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(gif).file_name("a.gif").mime_str("image/gif").unwrap());
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).multipart(form))).await;
    assert_error(code, &body, 415, "UNSUPPORTED_MEDIA_TYPE");
    // 422: bad base64, a truncated PNG, unknown camera, unknown JSON field, a webhook
    // without async, too many batch items.
    for (payload, what) in [
        (json!({ "image_base64": "!!!" }), "base64"),
        (json!({ "image_base64": b64(&png(8, 8)[..30]) }), "decode"),
        (json!({ "image_base64": b64(&png(8, 8)), "camera_id": "ghost" }), "camera"),
        (json!({ "image_base64": b64(&png(8, 8)), "colour": "red" }), "colour"),
        (json!({ "image_base64": b64(&png(8, 8)), "webhook_url": "http://127.0.0.1:9/x" }), "async"),
    ] {
        let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).json(&payload))).await;
        assert_error(code, &body, 422, "UNPROCESSABLE");
        assert!(body["message"].as_str().unwrap().contains(what), "{what}: {body}");
    }
    // Image bombs: ~150 bytes declaring 8192x8192 (200 MB of RGB; over the side limit)
    // or 2000x2000 (over this server's 1 MP limit) are refused from their headers,
    // with the numbers, as raw bytes and as base64.
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(argus::model::png_bomb(8192, 8192)))).await;
    assert_error(code, &body, 422, "UNPROCESSABLE");
    assert_eq!(body["details"]["max_side"], 2048, "{body}");
    let bomb = argus::model::png_bomb(2000, 2000);
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(bomb.clone()))).await;
    assert_error(code, &body, 422, "UNPROCESSABLE");
    assert_eq!(body["details"]["max_pixels"], 1_000_000, "{body}");
    assert_eq!(body["details"]["width"], 2000, "{body}");
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze")).json(&json!({ "image_base64": b64(&bomb) })))).await;
    assert_error(code, &body, 422, "UNPROCESSABLE");
    assert!(body["message"].as_str().unwrap().contains("limits.max_frame_pixels"), "{body}");
    let items: Vec<Value> = (0..4).map(|i| json!({ "id": format!("i{i}"), "image_base64": b64(&png(8, 8)) })).collect();
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze/batch")).json(&json!({ "items": items })))).await;
    assert_error(code, &body, 422, "UNPROCESSABLE");
    let dup = json!({ "items": [{ "id": "a", "image_base64": b64(&png(8, 8)) }, { "id": "a", "image_base64": b64(&png(8, 8)) }] });
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze/batch")).json(&dup))).await;
    assert_error(code, &body, 422, "UNPROCESSABLE");
}

#[tokio::test]
async fn not_ready_and_disabled_analysis_answer_503_with_retry_after() {
    let s = start(Options { model_fails: true, ..Default::default() }).await;
    let (code, headers, body) = send(authed(client().post(format!("{}/v1/analyze", s.base)).header("content-type", "image/png").body(png(8, 8)))).await;
    assert_error(code, &body, 503, "UNAVAILABLE");
    assert!(body["message"].as_str().unwrap().contains("weights missing"), "{body}");
    assert!(headers.get("retry-after").is_some());
    let s = start(Options { analysis: false, ..Default::default() }).await;
    let (code, headers, body) = send(authed(client().get(format!("{}/v1/tasks/x", s.base)))).await;
    assert_error(code, &body, 503, "UNAVAILABLE");
    assert!(headers.get("retry-after").is_some());
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let s = start(Options { delay_ms: 2000, queue: 1, ..Default::default() }).await;
    let b = s.base.clone();
    let pool = &s.state.analysis.as_ref().unwrap().pool;
    // One running, one queued (each seen in the pool before the next is sent): the third
    // is refused at once.
    let mut pending = Vec::new();
    for i in 0..2 {
        let b = b.clone();
        pending.push(tokio::spawn(async move {
            send(authed(client().post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(png(8, 8)))).await.0
        }));
        wait_until("the request accepted by the pool", || pool.in_flight() == i + 1).await;
    }
    let (code, headers, body) = send(authed(client().post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(png(8, 8)))).await;
    assert_error(code, &body, 429, "TOO_MANY_REQUESTS");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    // Two requests in flight on one worker at the pool's first estimate (0.2 s each, none
    // finished yet): ceil(2 × 0.2) = 1 s.
    assert_eq!(retry, 1);
    for p in pending {
        assert_eq!(p.await.unwrap(), 200);
    }
    let (code, _, _) = send(authed(client().post(format!("{b}/v1/analyze")).header("content-type", "image/png").body(png(8, 8)))).await;
    assert_eq!(code, 200, "room again once the queue drained");
}

#[tokio::test]
async fn analysis_sync_multipart_json_raw_and_batch() {
    let s = start(Options::default()).await;
    let c = client();
    let b = &s.base;
    // Multipart with a camera: placed in the world, inside the zone, judged.
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png(100, 80)).file_name("a.png").mime_str("image/png").unwrap())
        .text("camera_id", "gate");
    let (code, _, ev) = send(authed(c.post(format!("{b}/v1/analyze")).multipart(form))).await;
    assert_eq!(code, 200, "{ev}");
    assert_eq!(ev["kind"], "frame.analyzed");
    assert_eq!(ev["camera_id"], "gate");
    assert_eq!(ev["objects"][0]["class"], "person");
    assert_eq!(ev["objects"][0]["world"]["x_m"], 5.0);
    assert_eq!(ev["objects"][0]["zones"], json!(["yard"]));
    assert_eq!(ev["risk"]["level"], "high");
    assert_eq!(ev["risk"]["reasons"][0]["rule"], "no-entry");
    assert!(ev["caption"].as_str().unwrap().len() > 10);
    let schema: Value = serde_json::from_str(include_str!("../schema/argus.event.v1.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&ev), "the analysis is a valid argus.event.v1");
    // JSON with a data URL, and a raw body: no camera, so no world position or risk.
    let (code, _, ev) =
        send(authed(c.post(format!("{b}/v1/analyze")).json(&json!({ "image_base64": format!("data:image/png;base64,{}", b64(&png(64, 48))) })))).await;
    assert_eq!(code, 200, "{ev}");
    assert!(ev["objects"][0].get("world").is_none());
    assert_eq!(ev["risk"]["level"], "low");
    let (code, _, ev) = send(authed(c.post(format!("{b}/v1/analyze?camera_id=gate")).header("content-type", "image/png").body(png(64, 48)))).await;
    assert_eq!((code, ev["camera_id"].as_str()), (200, Some("gate")));
    // Batch: results by id, in order, a bad image fails alone.
    let batch = json!({ "items": [
        { "id": "one", "image_base64": b64(&png(32, 32)) },
        { "id": "broken", "image_base64": b64(&png(32, 32)[..40]) },
        { "id": "three", "image_base64": b64(&png(40, 20)), "camera_id": "gate" },
    ] });
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze/batch")).json(&batch))).await;
    assert_eq!(code, 200, "{body}");
    let r = body["results"].as_array().unwrap();
    assert_eq!(r.iter().map(|x| x["id"].as_str().unwrap()).collect::<Vec<_>>(), ["one", "broken", "three"]);
    assert_eq!(r[0]["status"], "completed");
    assert_eq!(r[1]["status"], "failed");
    assert_eq!(r[1]["error"]["error"], "UNPROCESSABLE");
    assert_eq!(r[2]["event"]["camera_id"], "gate");
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png(16, 16)).file_name("left.png").mime_str("image/png").unwrap())
        .part("image", reqwest::multipart::Part::bytes(png(16, 16)).file_name("right.png").mime_str("image/png").unwrap());
    let (code, _, body) = send(authed(c.post(format!("{b}/v1/analyze/batch")).multipart(form))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"][1]["id"], "right.png");
}

/// A webhook receiver that fails its first delivery, then records the rest.
async fn webhook_receiver() -> (String, Arc<AtomicUsize>, tokio::sync::mpsc::Receiver<(HashMap<String, String>, Vec<u8>)>) {
    use axum::routing::post;
    let hits = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (h, tx) = (h.clone(), tx.clone());
            async move {
                if h.fetch_add(1, Ordering::SeqCst) == 0 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let hs = headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
                let _ = tx.send((hs, body.to_vec())).await;
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), hits, rx)
}

#[tokio::test]
async fn async_task_with_progress_over_sse_and_a_signed_webhook_after_a_retry() {
    let s = start(Options { delay_ms: 200, ..Default::default() }).await;
    let (hook, hits, mut received) = webhook_receiver().await;
    let c = client();
    // Follow every task over SSE (the key as access_token, as a browser would).
    let sse = c.get(format!("{}/v1/events/stream?task=*&access_token={KEY}", s.base)).send().await.unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream();
    wait_until("the SSE client subscribed", || s.state.live.clients() == 1).await;

    let payload = json!({ "image_base64": b64(&png(100, 80)), "camera_id": "gate", "webhook_url": hook });
    let (code, headers, body) = send(authed(c.post(format!("{}/v1/analyze?async=true", s.base)).json(&payload))).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["task_id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"].to_str().unwrap(), format!("/v1/tasks/{id}"));

    // Poll until completed; before that it is queued or processing, nothing else.
    let task = wait_task(&s.base, &id, "the task completed", |t| {
        assert!(["queued", "processing", "completed"].contains(&t["status"].as_str().unwrap()), "{t}");
        t["status"] == "completed"
    })
    .await;
    assert_eq!(task["progress"], 1.0);
    assert_eq!(task["result"]["risk"]["reasons"][0]["zone"], "yard");

    // SSE saw queued → processing → completed for this task.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains("event: task.completed") && tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_millis(500), sse.next()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names, ["task.update", "task.update", "task.completed"], "{text}");
    assert!(text.contains(&id));

    // The webhook: first attempt answered 503, the retry delivered with a valid signature.
    let (hs, body) = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.expect("webhook retried in time").unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let ts: i64 = hs["x-argus-timestamp"].parse().unwrap();
    assert_eq!(hs["x-argus-signature"], sign(SECRET, ts, &body), "signature over timestamp.body");
    assert_ne!(hs["x-argus-signature"], sign("another-secret-0123456789", ts, &body));
    assert_eq!(hs["x-argus-task-id"], id);
    assert_eq!(hs["x-argus-attempt"], "2");
    let delivered: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(delivered["status"], "completed");
    assert_eq!(delivered["result"]["camera_id"], "gate");
    // The task records the delivery (right after the receiver answered: wait for it).
    let t = wait_task(&s.base, &id, "the task records the webhook delivery", |t| t["webhook"]["delivered"] == true).await;
    assert_eq!(t["webhook"]["attempts"], 2, "{t}");
    assert_eq!(t["webhook"]["delivered"], true);

    // A failed task: an undecodable image.
    let (code, _, body) = send(authed(c.post(format!("{}/v1/analyze?async=true", s.base)).json(&json!({ "image_base64": b64(&png(8, 8)[..30]) })))).await;
    assert_eq!(code, 202);
    let id = body["task_id"].as_str().unwrap();
    let t = wait_task(&s.base, id, "the task failed", |t| t["status"] != "queued" && t["status"] != "processing").await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["error"], "UNPROCESSABLE");
}

#[tokio::test]
async fn websocket_live_events_with_filters() {
    use tokio_tungstenite::tungstenite::Message;
    let s = start(Options::default()).await;
    let ws_base = s.base.replace("http://", "ws://");
    // Without a key the upgrade is refused.
    assert!(tokio_tungstenite::connect_async(format!("{ws_base}/v1/ws")).await.is_err());
    let (mut all, _) = tokio_tungstenite::connect_async(format!("{ws_base}/v1/ws?access_token={KEY}")).await.unwrap();
    let (mut high, _) = tokio_tungstenite::connect_async(format!("{ws_base}/v1/ws?access_token={KEY}&camera=gate&min_level=high")).await.unwrap();
    wait_until("both WebSocket clients subscribed", || s.state.live.clients() == 2).await;
    let mut low = argus::model::sample_event("gate", 1_700_000_000_000, argus::model::EventKind::FrameAnalyzed);
    low.risk = argus::model::Risk::none();
    let mut hot = argus::model::sample_event("gate", 1_700_000_001_000, argus::model::EventKind::IncidentOpened);
    hot.risk.level = argus::model::Level::Critical;
    let other = argus::model::sample_event("yard", 1_700_000_002_000, argus::model::EventKind::IncidentOpened);
    for ev in [low, hot.clone(), other] {
        s.state.live.publish(&Arc::new(ev));
    }
    let next = |m: Message| -> Value { serde_json::from_str(m.to_text().unwrap()).unwrap() };
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(5), all.next()).await.unwrap().unwrap().unwrap();
        got.push(next(m)["data"]["camera_id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ["gate", "gate", "yard"]);
    let m = next(tokio::time::timeout(Duration::from_secs(5), high.next()).await.unwrap().unwrap().unwrap());
    assert_eq!(m["type"], "incident.opened");
    assert_eq!(m["data"]["event_id"], hot.event_id);
    // Nothing else for the filtered client: the next thing it gets is the next matching
    // event, published after the ones it had to skip.
    let mut hot2 = argus::model::sample_event("gate", 1_700_000_003_000, argus::model::EventKind::IncidentOpened);
    hot2.risk.level = argus::model::Level::High;
    s.state.live.publish(&Arc::new(hot2.clone()));
    let m = next(tokio::time::timeout(Duration::from_secs(5), high.next()).await.unwrap().unwrap().unwrap());
    assert_eq!(m["data"]["event_id"], hot2.event_id, "the filtered client skipped the low and the yard events");
    // A bad filter is a 400 before the upgrade.
    let (code, _, body) = send(authed(client().get(format!("{}/v1/ws?min_level=extreme", s.base)))).await;
    assert_error(code, &body, 400, "BAD_REQUEST");
    let (code, _, body) = send(authed(client().get(format!("{}/v1/ws", s.base)))).await;
    assert_error(code, &body, 400, "BAD_REQUEST");
}

#[tokio::test]
async fn cors_preflight_and_snapshot_with_overlay() {
    let s = start(Options::default()).await;
    let c = client();
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{}/v1/events", s.base))
        .header("origin", "https://ops.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "https://ops.example.com");
    let r = c.get(format!("{}/v1/cameras", s.base)).bearer_auth(KEY).header("origin", "https://evil.example.com").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // A frame on the board: the snapshot is a JPEG of the frame's size.
    let image = Arc::new(RgbImage::new(160, 120, vec![30; 160 * 120 * 3]).unwrap());
    let obj = argus::model::SceneObject {
        track_id: Some(4),
        class: Arc::from("person"),
        confidence: 0.8,
        bbox: [40.0, 30.0, 90.0, 100.0],
        world: None,
        speed_mps: Some(1.4),
        heading_deg: None,
        zones: vec!["yard".into()],
    };
    let cam: Arc<str> = Arc::from("gate");
    s.state.snapshots.update(
        &cam,
        argus::pipeline::snapshot::Snapshot {
            image,
            seq: 12,
            captured_at: time::OffsetDateTime::now_utc(),
            objects: vec![obj],
            zones: gate_camera().zones,
            world_to_image: Homography([0.1, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0]).inverse(),
            level: Some(argus::model::Level::High),
        },
    );
    let r = c.get(format!("{}/v1/cameras/gate/snapshot.jpg?access_token={KEY}", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (160, 120));
    // The banner carries the level's colour; the box edge is drawn.
    let p = img.get_pixel(150, 1).0;
    assert!(p[0] > 180 && p[2] < 100, "high = orange banner, got {p:?}");
    assert_ne!(img.get_pixel(40, 60).0, [30, 30, 30]);
}

/// A receiver that never accepts: the webhook is tried `attempts` (3) times, with the
/// backoff between, then given up — recorded on the task and in the metrics, and never
/// tried again.
#[tokio::test]
async fn a_webhook_that_never_succeeds_gives_up_after_its_attempts() {
    use axum::routing::post;
    let s = start(Options::default()).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let payload = json!({ "image_base64": b64(&png(100, 80)), "camera_id": "gate", "webhook_url": hook });
    let (code, _, body) = send(authed(client().post(format!("{}/v1/analyze?async=true", s.base)).json(&payload))).await;
    assert_eq!(code, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_string();
    let outcome = |o: &str| s.state.metrics.webhooks.with_label_values(&[o]).get();
    // `gave_up` is counted after the last attempt returned: the loop is over.
    wait_until("the webhook given up", || outcome("gave_up") == 1).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3, "exactly the configured attempts reached the receiver");
    assert_eq!(outcome("failed_attempt"), 3);
    assert_eq!(outcome("delivered"), 0);
    let t = wait_task(&s.base, &id, "the task", |t| t["webhook"]["attempts"] == 3).await;
    assert_eq!(t["status"], "completed", "the analysis itself succeeded: {t}");
    assert_eq!(t["webhook"]["delivered"], false, "{t}");
    assert_eq!(t["webhook"]["last_error"], "HTTP 503", "{t}");
}

/// The OpenAPI document against the router that serves it: every documented operation
/// is routed (no fallback "no route", no 405), and on every documented path the methods
/// the document does not list are refused with 405 (the router has nothing there the
/// document misses). Path parameters are filled with an id nothing has.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let s = start(Options::default()).await;
    let (code, _, doc) = send(client().get(format!("{}/openapi.json", s.base))).await;
    assert_eq!(code, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{} paths documented", paths.len());
    let methods = ["get", "post", "put", "delete", "patch"];
    let mut checked = 0;
    for (path, item) in paths {
        let url = format!("{}{}", s.base, path.replace("{id}", "no-such-id"));
        for m in methods {
            let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            // The status only, and the body only for errors: /v1/events/stream never ends.
            let r = authed(client().request(method, &url)).send().await.unwrap();
            let code = r.status().as_u16();
            let body: Value = if code >= 400 { r.json().await.unwrap_or(Value::Null) } else { Value::Null };
            let fallback = code == 404 && body["message"].as_str().is_some_and(|t| t.starts_with("no route for"));
            if item.get(m).is_some() {
                assert!(!fallback && code != 405, "{} {path} is documented but not routed: {code} {body}", m.to_uppercase());
                checked += 1;
            } else {
                assert_eq!(code, 405, "{} {path} is not documented but answered {code} {body}", m.to_uppercase());
            }
        }
    }
    assert!(checked >= 15, "{checked} documented operations checked");
    // The guard's answers are documented on every operation, the live limits on the live routes.
    for (path, item) in paths {
        for (m, op) in item.as_object().unwrap() {
            for code in ["403", "408", "421"] {
                assert!(op["responses"][code]["content"]["application/json"].is_object(), "{m} {path} does not document {code}");
            }
        }
    }
    for path in ["/v1/events/stream", "/v1/ws"] {
        assert!(doc["paths"][path]["get"]["responses"]["429"].is_object(), "{path} does not document 429");
    }
    // The pages and the document itself are routes, not API operations.
    for p in ["/", "/docs", "/openapi.json"] {
        assert!(!paths.contains_key(p), "{p} is documented as an API operation");
        let (code, _, _) = send(client().get(format!("{}{p}", s.base))).await;
        assert_eq!(code, 200, "{p}");
    }
    let (code, _, body) = send(authed(client().get(format!("{}/v1/nothing-here", s.base)))).await;
    assert!(code == 404 && body["message"].as_str().unwrap().starts_with("no route for"), "{code} {body}");
}

fn hardened(connections: api::server::ConnectionLimits) -> Options {
    Options { connections, analysis: false, ..Default::default() }
}

/// Whether the server has closed `t` (a read sees the end, an error, or the 408 hyper
/// may write before closing), without waiting long.
async fn closed_by_server(t: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    tokio::time::timeout(Duration::from_millis(5), t.read(&mut buf)).await.is_ok()
}

#[tokio::test]
async fn slowloris_and_idle_clients_are_cut_off_and_connections_are_limited() {
    use tokio::io::AsyncWriteExt;
    let limits = api::server::ConnectionLimits { max_connections: 3, header_read_timeout: Duration::from_secs(1), drain: Duration::from_secs(1) };
    let s = start(hardened(limits)).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // Two clients that send a header line every 300 ms and never the blank line, and one
    // that sends nothing: together they hold every connection slot.
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut t = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i < 2 {
            t.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
        }
        clients.push(t);
    }
    let open = || s.state.metrics.http_connections_open.get();
    wait_until("three connections held", || open() == 3).await;
    // A well-behaved client waits for a slot instead of being refused.
    let base = s.base.clone();
    let legit = tokio::spawn(async move { client().get(format!("{base}/healthz")).timeout(Duration::from_secs(20)).send().await.map(|r| r.status().as_u16()) });
    let t0 = std::time::Instant::now();
    let mut cut = [None; 3];
    while cut.iter().any(Option::is_none) && t0.elapsed() < Duration::from_secs(15) {
        for (i, t) in clients.iter_mut().enumerate() {
            if cut[i].is_some() {
                continue;
            }
            let dripped = i >= 2 || t.write_all(format!("X-Drip: {}\r\n", t0.elapsed().as_millis()).as_bytes()).await.is_ok();
            if !dripped || closed_by_server(t).await {
                cut[i] = Some(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("slow clients cut after {cut:?} (header_read_timeout 1 s)");
    assert!(cut.iter().all(Option::is_some), "every slow or idle client is cut off: {cut:?}");
    assert_eq!(legit.await.unwrap().unwrap(), 200, "the waiting client is served once a slot frees");
    assert!(s.state.metrics.http_connections_failed.with_label_values(&["timeout"]).get() >= 2);
    wait_until("the slots freed", || open() == 0).await;
}

#[tokio::test]
async fn host_names_and_foreign_origins_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = start(Options::default()).await;
    let c = client();
    // DNS rebinding: a page's own name pointed at 127.0.0.1 arrives with its Host.
    let (code, _, body) = send(authed(c.get(format!("{}/v1/info", s.base)).header("host", "rebind.evil.example"))).await;
    assert_error(code, &body, 421, "MISDIRECTED");
    assert!(body["details"]["fix"].as_str().unwrap().contains("server.allowed_hosts"), "{body}");
    for host in ["localhost", "127.0.0.1:1234", "[::1]:8080"] {
        let (code, _, body) = send(authed(c.get(format!("{}/v1/info", s.base)).header("host", host))).await;
        assert_eq!(code, 200, "{host}: {body}");
    }
    // A foreign page may not open a live stream, post an analysis or read events through
    // a visitor's browser; the API's own page and the configured origin may.
    let foreign = "https://evil.example";
    for rb in [
        c.get(format!("{}/v1/events/stream", s.base)),
        c.post(format!("{}/v1/analyze", s.base)).header("content-type", "image/png").body(png(8, 8)),
        c.get(format!("{}/v1/events", s.base)),
    ] {
        let (code, _, body) = send(authed(rb.header("origin", foreign))).await;
        assert_error(code, &body, 403, "FORBIDDEN");
    }
    let (code, _, _) = send(authed(c.get(format!("{}/v1/events", s.base)).header("origin", "null"))).await;
    assert_eq!(code, 403);
    for origin in [s.base.as_str(), "https://ops.example.com"] {
        let (code, _, body) = send(authed(c.get(format!("{}/v1/events", s.base)).header("origin", origin))).await;
        assert_eq!(code, 200, "{origin}: {body}");
    }
    let ws = format!("{}/v1/ws?access_token={KEY}", s.base.replace("http://", "ws://"));
    let mut req = ws.as_str().into_client_request().unwrap();
    req.headers_mut().insert("origin", foreign.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err(), "a WebSocket from a foreign page is refused");
    let mut req = ws.as_str().into_client_request().unwrap();
    req.headers_mut().insert("origin", s.base.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok(), "the API's own page may open one");
}

#[tokio::test]
async fn live_clients_are_bounded_per_key_and_in_all() {
    let s = start(Options { second_key: true, live: api::live::LiveLimits { total: 3, per_key: 2 }, analysis: false, ..Default::default() }).await;
    let c = client();
    let open = |key: &'static str| c.get(format!("{}/v1/events/stream", s.base)).bearer_auth(key).send();
    let a1 = open(KEY).await.unwrap();
    let a2 = open(KEY).await.unwrap();
    assert_eq!((a1.status().as_u16(), a2.status().as_u16()), (200, 200));
    let r = open(KEY).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.text().await.unwrap().contains("max_live_clients_per_key"));
    // The WebSocket counts against the same limits.
    let ws = format!("{}/v1/ws?access_token={KEY}", s.base.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(ws.as_str()).await.is_err(), "a third client for the key over WebSocket");
    let b1 = open(KEY2).await.unwrap();
    assert_eq!(b1.status().as_u16(), 200);
    let r = open(KEY2).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.text().await.unwrap().contains("server.max_live_clients"));
    let refused = |l: &str| s.state.metrics.live_clients_refused.with_label_values(&[l]).get();
    assert_eq!((refused("per_key"), refused("total")), (2, 1));
    // A client that leaves frees its place.
    drop(a1);
    let mut again = None;
    for _ in 0..50 {
        let r = open(KEY2).await.unwrap();
        if r.status().as_u16() == 200 {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a place freed by a client that left");
    drop((a2, b1));
}

#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused_unless_allowed() {
    use reqwest::dns::Resolve;
    let s = start(Options { webhook_allow: vec![], ..Default::default() }).await;
    for (url, kind) in [
        ("http://127.0.0.1:9/x", "loopback"),
        ("http://[::1]:9/x", "loopback"),
        ("http://localhost:9/x", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://10.0.0.8/hook", "private"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
    ] {
        let payload = json!({ "image_base64": b64(&png(8, 8)), "webhook_url": url });
        let (code, _, body) = send(authed(client().post(format!("{}/v1/analyze?async=true", s.base)).json(&payload))).await;
        assert_error(code, &body, 422, "UNPROCESSABLE");
        assert!(body["message"].as_str().unwrap().contains(kind), "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains("server.webhook_allow"), "{body}");
    }
    // Names are checked where the client resolves them: one that resolves only to
    // loopback gets no address; allowed, it does.
    let strict = Arc::new(argus::api::destination::DestinationPolicy::default());
    assert!(strict.resolver().resolve("localhost".parse().unwrap()).await.is_err());
    let allowed = Arc::new(argus::api::destination::DestinationPolicy::new(&["127.0.0.1".into()]).unwrap());
    let addrs: Vec<_> = allowed.resolver().resolve("localhost".parse().unwrap()).await.unwrap().collect();
    assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST), "{addrs:?}");
}

#[tokio::test]
async fn a_websocket_client_sending_a_huge_message_is_cut_off() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let s = start(Options { analysis: false, ..Default::default() }).await;
    let ws = format!("{}/v1/ws?access_token={KEY}", s.base.replace("http://", "ws://"));
    let (mut sock, _) = tokio_tungstenite::connect_async(ws.as_str()).await.unwrap();
    wait_until("the client subscribed", || s.state.live.clients() == 1).await;
    let _ = sock.send(Message::Text("x".repeat(api::live::CLIENT_MESSAGE_MAX + 1).into())).await;
    // The server ends the session: a close frame or the end of the stream, soon.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sock.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "a message over the limit ends the session");
}

/// `GET /v1/events/{id}/evidence.jpg`: the stored JPEG, byte for byte, behind the key, with
/// its digest as ETag; every way it can be missing answered 404 with the reason; a file
/// changed on disk is an error, never served as evidence.
#[tokio::test]
async fn evidence_is_served_by_digest_and_its_absence_explained() {
    use argus::model::{EventKind, sample_event};
    let s = start(Options { analysis: false, ..Options::default() }).await;
    let files = s.state.evidence.clone().unwrap();
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(32, 24, image::Rgb([200, 40, 40])).write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    let mut opened = sample_event("gate", 1_700_000_000_000, EventKind::IncidentOpened);
    opened.evidence = Some(files.put(&opened.event_id, &jpeg).unwrap());
    let summary = sample_event("gate", 1_700_000_000_500, EventKind::FrameAnalyzed);
    let mut gone = sample_event("gate", 1_700_000_001_000, EventKind::IncidentClosed);
    gone.evidence = Some(argus::model::Evidence { url: argus::evidence::url_of(&gone.event_id), sha256: "ab".repeat(32), bytes: 10, clip: None });
    s.state.store.insert(&[Arc::new(opened.clone()), Arc::new(summary.clone()), Arc::new(gone.clone())]).unwrap();
    let url = |id: &str| format!("{}/v1/events/{id}/evidence.jpg", s.base);

    let r = authed(client().get(url(&opened.event_id))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sha = &opened.evidence.as_ref().unwrap().sha256;
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), format!("\"{sha}\""));
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), jpeg.as_slice());

    let (status, _, body) = send(client().get(url(&opened.event_id))).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    for (id, says) in
        [(&summary.event_id, "no evidence"), (&gone.event_id, "no longer kept"), (&"00000000-0000-0000-0000-000000000000".to_string(), "no event")]
    {
        let (status, _, body) = send(authed(client().get(url(id)))).await;
        assert_error(status, &body, 404, "NOT_FOUND");
        assert!(body["message"].as_str().unwrap().contains(says), "{says}: {body}");
    }
    let (status, _, body) = send(authed(client().get(url("../../etc/passwd")))).await;
    assert!(status == 400 || status == 404, "{status} {body}");
    let (status, _, body) = send(authed(client().get(url("not-a-uuid")))).await;
    assert_error(status, &body, 400, "BAD_REQUEST");

    // Changed on disk: refused, not served.
    std::fs::write(files.path_of(sha).unwrap(), b"not the evidence").unwrap();
    let (status, _, body) = send(authed(client().get(url(&opened.event_id)))).await;
    assert_error(status, &body, 500, "INTERNAL");
    assert!(body["message"].as_str().unwrap().contains("does not match its digest"), "{body}");
}

#[tokio::test]
async fn incidents_are_listed_open_first_and_detailed_with_their_lifecycle() {
    use argus::model::{EventKind, sample_event};
    let s = start(Options { analysis: false, ..Options::default() }).await;
    let incident = |cam: &str, name: &str, t0: i64, closed: bool| {
        let id = argus::model::derive_id(&[name.as_bytes()]);
        let mut evs = vec![sample_event(cam, t0, EventKind::IncidentOpened)];
        if closed {
            evs.push(sample_event(cam, t0 + 4_000, EventKind::IncidentClosed));
        }
        for e in &mut evs {
            e.incident_id = Some(id.clone());
            e.event_id = argus::model::derive_id(&[name.as_bytes(), &e.captured_ms().to_le_bytes()]);
        }
        (id, evs)
    };
    let (old, mut events) = incident("gate", "old", 1_700_000_000_000, true);
    let (open, more) = incident("gate", "open", 1_700_000_010_000, false);
    events.extend(more);
    events.push(sample_event("gate", 1_700_000_011_000, EventKind::FrameAnalyzed));
    s.state.store.insert(&events.into_iter().map(Arc::new).collect::<Vec<_>>()).unwrap();
    let get = |path: &str| send(authed(client().get(format!("{}{path}", s.base))));

    let (status, _, body) = get("/v1/incidents").await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["incidents"].as_array().unwrap().iter().map(|i| i["incident_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [open.as_str(), old.as_str()], "open first: {body}");
    assert_eq!(body["incidents"][0]["state"], "open");
    assert!(body["incidents"][0].get("closed_at").is_none());
    assert_eq!(body["incidents"][1]["state"], "closed");
    assert_eq!(body["incidents"][1]["duration_s"], 4.0);
    assert!(body.get("next_cursor").is_none());
    let (_, _, page) = get("/v1/incidents?limit=1").await;
    let (_, _, next) = get(&format!("/v1/incidents?limit=1&cursor={}", page["next_cursor"].as_str().unwrap())).await;
    assert_eq!(next["incidents"][0]["incident_id"], old.as_str(), "the cursor goes on: {next}");
    let (_, _, closed) = get("/v1/incidents?state=closed&camera=gate").await;
    assert_eq!(closed["incidents"].as_array().unwrap().len(), 1);

    let (status, _, detail) = get(&format!("/v1/incidents/{old}")).await;
    assert_eq!(status, 200, "{detail}");
    let kinds: Vec<&str> = detail["lifecycle"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["incident.opened", "incident.closed"], "oldest first");
    assert_eq!(detail["lifecycle_truncated"], false);
    assert_eq!(detail["events"], 2);

    for (path, status_want, code, says) in [
        ("/v1/incidents/00000000-0000-0000-0000-000000000000".to_string(), 404, "NOT_FOUND", "no incident"),
        ("/v1/incidents/not-an-id".to_string(), 400, "BAD_REQUEST", "not an incident id"),
        ("/v1/incidents?state=acked".to_string(), 400, "BAD_REQUEST", "open or closed"),
        ("/v1/incidents?limit=500".to_string(), 400, "BAD_REQUEST", "1..=200"),
        ("/v1/incidents?cursor=abc".to_string(), 400, "BAD_REQUEST", "cursor"),
        ("/v1/incidents?colour=red".to_string(), 400, "BAD_REQUEST", "unknown parameter"),
    ] {
        let (status, _, body) = get(&path).await;
        assert_error(status, &body, status_want, code);
        assert!(body["message"].as_str().unwrap().contains(says), "{path}: {body}");
    }
    let (status, _, body) = send(client().get(format!("{}/v1/incidents", s.base))).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

/// The pipeline's end of operators' actions, faked at the `ActionOutlet` seam: each
/// event is stored at once (durable), or refused with `refuse`.
struct StoreOutlet {
    store: Arc<dyn argus::store::EventStore>,
    published: std::sync::Mutex<Vec<argus::model::Event>>,
    refuse: Option<&'static str>,
}

impl argus::api::incidents::ActionOutlet for StoreOutlet {
    fn publish(&self, ev: argus::model::Event) -> Result<u64, String> {
        if let Some(why) = self.refuse {
            return Err(why.into());
        }
        self.store.insert(&[Arc::new(ev.clone())]).map_err(|e| e.to_string())?;
        let mut p = self.published.lock().unwrap();
        p.push(ev);
        Ok(p.len() as u64)
    }
    fn durable(&self) -> u64 {
        self.published.lock().unwrap().len() as u64
    }
}

#[tokio::test]
async fn operators_acknowledge_assign_and_note_incidents_as_events() {
    use argus::api::incidents::ActionOutlet as _;
    use argus::model::{EventKind, sample_event};
    let mut s = start(Options { analysis: false, ..Options::default() }).await;
    let id = argus::model::derive_id(&[b"gate-incident"]);
    let mut opened = sample_event("gate", 1_700_000_000_000, EventKind::IncidentOpened);
    opened.incident_id = Some(id.clone());
    opened.event_id = argus::model::derive_id(&[b"opened"]);
    let mut frame = sample_event("gate", 1_700_000_001_000, EventKind::FrameAnalyzed);
    frame.event_id = argus::model::derive_id(&[b"frame"]);
    s.state.store.insert(&[Arc::new(opened.clone()), Arc::new(frame)]).unwrap();
    let post =
        |path: String, body: &'static str| send(authed(client().post(format!("{}{path}", s.base)).header("content-type", "application/json").body(body)));

    // No pipeline to publish through: 503, nothing stored.
    let (status, _, body) = post(format!("/v1/incidents/{id}/ack"), "").await;
    assert_error(status, &body, 503, "UNAVAILABLE");

    // Only the named key is named; the router reads keys and the outlet at request time.
    let named: std::collections::BTreeMap<String, String> = [("alice".to_string(), KEY.to_string())].into();
    let keys = ApiKeys::from_env_and(&[KEY2.to_string()], &named, false).unwrap();
    let outlet = Arc::new(StoreOutlet { store: s.state.store.clone(), published: Default::default(), refuse: None });
    *s.state.actions.write() = Some(outlet.clone());
    s = restart_router(s, keys).await;
    let post = |path: String, key: &'static str, body: &'static str| {
        send(client().post(format!("{}{path}", s.base)).bearer_auth(key).header("content-type", "application/json").body(body))
    };

    let (status, _, ack) = post(format!("/v1/incidents/{id}/ack"), KEY, r#"{"text": "  on my way  "}"#).await;
    assert_eq!(status, 201, "{ack}");
    assert_eq!(ack["durable"], true);
    let ev = &ack["event"];
    assert_eq!((ev["kind"].as_str(), ev["incident_id"].as_str(), ev["camera_id"].as_str()), (Some("incident.acknowledged"), Some(id.as_str()), Some("gate")));
    assert_eq!(ev["action"], json!({ "by": "alice", "text": "on my way" }), "who is the key's name; the text trimmed");
    assert_eq!(ev["objects"], json!([]));
    assert_eq!(ev["risk"], serde_json::to_value(&opened.risk).unwrap(), "the incident's risk as last seen");
    let (status, _, assigned) = post(format!("/v1/incidents/{id}/assign"), KEY2, r#"{"assignee": "bob"}"#).await;
    assert_eq!(status, 201, "{assigned}");
    let unnamed = format!("key-{}", &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(KEY2.as_bytes()))[..8]);
    assert_eq!(assigned["event"]["action"], json!({ "by": unnamed, "assignee": "bob" }), "an unnamed key by its digest prefix");
    let (status, _, noted) = post(format!("/v1/incidents/{id}/note"), KEY, r#"{"text": "two people, one left\nthe other waits"}"#).await;
    assert_eq!(status, 201, "{noted}");
    assert_eq!(noted["event"]["caption"], "Note by alice: two people, one left\nthe other waits");

    // Every action validates against the event schema and is stored; the board says who.
    let schema: Value = serde_json::from_str(include_str!("../schema/argus.event.v1.json")).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    for ev in outlet.published.lock().unwrap().iter() {
        let j = serde_json::to_value(ev).unwrap();
        assert!(v.is_valid(&j), "{j}");
    }
    let (status, _, detail) = send(authed(client().get(format!("{}/v1/incidents/{id}", s.base)))).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["state"], "open", "acknowledging closes nothing");
    assert_eq!(detail["events"], 1);
    assert_eq!((detail["actions"].as_u64(), detail["notes"].as_u64()), (Some(3), Some(1)));
    assert_eq!(detail["acknowledged"]["by"], "alice");
    assert_eq!(detail["acknowledged"]["text"], "on my way");
    assert_eq!(detail["assigned"]["assignee"], "bob");
    let kinds: Vec<&str> = detail["lifecycle"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["incident.opened", "incident.acknowledged", "incident.assigned", "incident.noted"]);

    // Bad input: every case a clear error, nothing published.
    let before = outlet.durable();
    let long = Box::leak(format!("{{\"text\": \"{}\"}}", "x".repeat(2001)).into_boxed_str());
    for (path, body, want, code, says) in [
        (format!("/v1/incidents/{}/ack", argus::model::derive_id(&[b"nothing"])), "", 404, "NOT_FOUND", "no incident"),
        ("/v1/incidents/not-a-uuid/ack".to_string(), "", 400, "BAD_REQUEST", "not an incident id"),
        (format!("/v1/incidents/{id}/ack"), "{\"txt\": \"x\"}", 400, "BAD_REQUEST", "unknown field"),
        (format!("/v1/incidents/{id}/ack"), "not json", 400, "BAD_REQUEST", "must be JSON"),
        (format!("/v1/incidents/{id}/note"), "{}", 400, "BAD_REQUEST", "missing field `text`"),
        (format!("/v1/incidents/{id}/note"), "{\"text\": \"   \"}", 422, "UNPROCESSABLE", "empty"),
        (format!("/v1/incidents/{id}/note"), long, 422, "UNPROCESSABLE", "at most 2000"),
        (format!("/v1/incidents/{id}/note"), "{\"text\": \"bell\\u0007\"}", 422, "UNPROCESSABLE", "control characters"),
        (format!("/v1/incidents/{id}/assign"), "{\"assignee\": \"bob smith\"}", 422, "UNPROCESSABLE", "assignee"),
        (format!("/v1/incidents/{id}/assign"), "{\"text\": \"x\"}", 400, "BAD_REQUEST", "assignee"),
    ] {
        let (status, _, body) = post(path.clone(), KEY, body).await;
        assert_error(status, &body, want, code);
        assert!(body["message"].as_str().unwrap().contains(says), "{path} {body}");
    }
    assert_eq!(outlet.durable(), before, "nothing published by a refused request");
    // The frame event is no incident.
    let frame_id = argus::model::derive_id(&[b"frame"]);
    let (status, _, body) = post(format!("/v1/incidents/{frame_id}/ack"), KEY, "").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, _, body) = send(client().post(format!("{}/v1/incidents/{id}/ack", s.base))).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");

    // A pipeline that cannot take it: 503 with the reason.
    *s.state.actions.write() =
        Some(Arc::new(StoreOutlet { store: s.state.store.clone(), published: Default::default(), refuse: Some("the pipeline has stopped") }));
    let (status, _, body) = post(format!("/v1/incidents/{id}/note"), KEY, r#"{"text": "late"}"#).await;
    assert_error(status, &body, 503, "UNAVAILABLE");
    assert!(body["message"].as_str().unwrap().contains("the pipeline has stopped"), "{body}");
}

/// The same state (store, outlet) served with other keys on a new port.
async fn restart_router(s: Server, keys: ApiKeys) -> Server {
    let mut state = s.state.clone();
    state.keys = Arc::new(keys);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (router, metrics) = (api::router(state.clone()), state.metrics.clone());
    let limits = api::server::ConnectionLimits { max_connections: 64, header_read_timeout: Duration::from_secs(10), drain: Duration::from_secs(1) };
    tokio::spawn(async move { api::server::serve(listener, router, limits, metrics, std::future::pending()).await.unwrap() });
    Server { base: format!("http://{addr}"), state, _dir: s._dir }
}
