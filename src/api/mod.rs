//! The HTTP API (axum): health, readiness, metrics, info, cameras and snapshots, event
//! queries, live events (SSE, WebSocket), image analysis and tasks, the OpenAPI document.
//! Errors are JSON `{ "error": CODE, "message": …, "details": {…} }` everywhere.
//!
//! Layers, outermost first: CORS → Host/Origin checks and the request deadline → JSON
//! errors → API keys → request metrics. Connections are limited and timed in `server`.

pub mod analysis;
pub mod auth;
pub mod cameras;
pub mod clips;
pub mod config;
pub mod destination;
pub mod error;
pub mod events;
pub mod guard;
pub mod incidents;
pub mod live;
pub mod openapi;
pub mod pipelines;
pub mod server;
mod web;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::pipeline::snapshot::SnapshotBoard;
use crate::store::EventStore;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;
pub use error::ApiError;

/// What /v1/info reports.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub name: &'static str,
    pub version: &'static str,
    /// `run` (analysis: sources or the frames topic → events) or `ingest` (cameras →
    /// the frames topic, no detector).
    pub role: &'static str,
    /// `argus ingest`: the shard this member runs (`I/N`), and how cameras map to shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// This member's id in the fleet view (`[fleet]` enabled: `GET /v1/fleet` answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    pub schema: &'static str,
    pub detector: Option<crate::detect::DetectorInfo>,
    pub captioner: String,
    pub pipelines: Vec<PipelineSummary>,
    pub features: Vec<&'static str>,
    /// `GET /v1/pipelines`: each pipeline's document (not part of `/v1/info`).
    #[serde(skip)]
    pub pipeline_docs: Vec<PipelineDoc>,
}

/// One pipeline as `GET /v1/pipelines/{name}` answers: `{name, file, pipeline, cameras}`.
#[derive(Debug, Clone)]
pub struct PipelineDoc {
    pub name: String,
    pub doc: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
    /// Where the shard came from (`--shard`, `ARGUS_SHARD`, the pod name, or `all`).
    pub from: String,
    /// The camera → shard map, so an operator can check it by hand.
    pub map: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineSummary {
    pub name: String,
    pub file: String,
    pub cameras: Vec<String>,
    pub zones: Vec<String>,
    pub rules: Vec<String>,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Behind a lock because a configuration reload (SIGHUP) changes the cameras.
    pub info: Arc<std::sync::RwLock<Info>>,
    /// Live events for `/v1/events/stream` and `/v1/ws`.
    pub live: Arc<live::LiveHub>,
    /// Latest frame per camera, for snapshots.
    pub snapshots: Arc<SnapshotBoard>,
    /// Incident evidence files (`[evidence]` enabled), for `/v1/events/{id}/evidence.jpg`.
    pub evidence: Option<Arc<crate::evidence::EvidenceStore>>,
    /// Incident clips (`[evidence.clip]` enabled), for `/v1/incidents/{id}/clip.mp4`.
    pub clips: Option<Arc<crate::evidence::clip::ClipStore>>,
    /// Image analysis (`None`: the routes answer 503).
    pub analysis: Option<Arc<analysis::AnalysisApi>>,
    pub keys: Arc<auth::ApiKeys>,
    pub limits: Limits,
    /// Every member's status record (`[fleet]` enabled).
    pub fleet: Option<Arc<crate::fleet::FleetView>>,
    /// Where operators' actions on incidents are published (set once the pipeline runs;
    /// `None`: the action routes answer 503).
    pub actions: Arc<parking_lot::RwLock<Option<Arc<dyn incidents::ActionOutlet>>>>,
    /// `PUT /v1/pipelines/{name}` (`None`: 503).
    pub pipeline_editor: Option<Arc<dyn pipelines::PipelineEditor>>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    /// `Host` names answered (DNS rebinding guard).
    pub hosts: guard::HostPolicy,
    /// A request must be answered within this, its body read included.
    pub request_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let s = crate::api::config::ServerConfig::default();
        Self {
            max_body_bytes: s.max_body_bytes,
            cors_origins: s.cors_origins,
            hosts: guard::HostPolicy::default(),
            request_timeout: std::time::Duration::from_secs_f64(s.request_timeout_s),
        }
    }
}

impl AppState {
    /// A state with no API keys, no analysis and default limits.
    pub fn new(store: Arc<dyn EventStore>, health: Arc<Health>, metrics: Arc<Metrics>, info: Arc<std::sync::RwLock<Info>>, live: Arc<live::LiveHub>) -> Self {
        Self {
            store,
            health,
            metrics,
            info,
            live,
            snapshots: Arc::default(),
            evidence: None,
            clips: None,
            analysis: None,
            keys: Arc::default(),
            limits: Limits::default(),
            fleet: None,
            actions: Arc::default(),
            pipeline_editor: None,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let keys = state.keys.clone();
    let cors = cors_layer(&state.limits.cors_origins);
    let max_body = state.limits.max_body_bytes;
    let checks = Arc::new(guard::Guard {
        hosts: state.limits.hosts.clone(),
        cors_origins: state.limits.cors_origins.clone(),
        request_timeout: state.limits.request_timeout,
    });
    let router = Router::new()
        .route("/", get(web::index))
        .route("/docs", get(web::docs))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/info", get(info))
        .route("/v1/fleet", get(fleet))
        .route("/v1/pipelines", get(pipelines::list))
        .route("/v1/pipelines/{name}", get(pipelines::one).put(pipelines::put))
        .route("/v1/cameras", get(cameras::list))
        .route("/v1/cameras/{id}", get(cameras::one))
        .route("/v1/cameras/{id}/snapshot.jpg", get(cameras::snapshot))
        .route("/v1/events", get(events::list))
        .route("/v1/events/stream", get(live::stream))
        .route("/v1/events/{id}", get(events::one))
        .route("/v1/events/{id}/evidence.jpg", get(events::evidence))
        .route("/v1/stats", get(events::stats))
        .route("/v1/incidents", get(incidents::list))
        .route("/v1/incidents/{id}", get(incidents::one))
        .route("/v1/incidents/{id}/clip.mp4", get(clips::clip))
        .route("/v1/incidents/{id}/ack", post(incidents::ack))
        .route("/v1/incidents/{id}/assign", post(incidents::assign))
        .route("/v1/incidents/{id}/note", post(incidents::note))
        .route("/v1/ws", get(live::websocket))
        .route("/v1/analyze", post(analysis::analyze))
        .route("/v1/analyze/batch", post(analysis::batch))
        .route("/v1/tasks/{id}", get(analysis::task))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(middleware::from_fn_with_state(keys, auth::require_key))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn_with_state(checks, guard::check))
        .with_state(state);
    match cors {
        Some(c) => router.layer(c),
        None => router,
    }
}

/// CORS for the configured origins (`*`: any); none configured, no CORS headers.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") { AllowOrigin::any() } else { AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok())) };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST, axum::http::Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER, header::LOCATION])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

async fn count_requests(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    st.metrics.http_requests.with_label_values(&[&route, status.as_str()]).inc();
    tracing::debug!(%method, route, status = status.as_u16(), "http request");
    resp
}

#[utoipa::path(get, path = "/healthz", tag = "health", summary = "The process is alive", responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "health", summary = "Ready: model loaded, sources and sinks with their status", responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready, with reasons", body = Object)))]
async fn readyz(State(st): State<AppState>, caller: Option<axum::Extension<auth::Caller>>) -> Response {
    let r = st.health.readiness();
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // With API keys, a probe without one learns ready or not, never the camera URIs,
    // errors or sink targets in the reasons.
    if !caller.is_some_and(|c| c.authenticated) {
        return (code, axum::Json(serde_json::json!({ "ready": r.ready }))).into_response();
    }
    (code, axum::Json(r)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "health", summary = "Prometheus metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody)))]
async fn metrics(State(st): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], st.metrics.render()).into_response()
}

#[utoipa::path(get, path = "/v1/info", tag = "info", summary = "Version, model files with SHA-256, backend and device, pipelines", responses((status = 200, description = "Info", body = Object), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody)))]
async fn info(State(st): State<AppState>) -> Response {
    let info = st.info.read().unwrap_or_else(|e| e.into_inner()).clone();
    axum::Json(info).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    limits: server::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP API listening");
    let metrics = state.metrics.clone();
    server::serve(listener, router(state), limits, metrics, shutdown).await
}

#[utoipa::path(get, path = "/v1/fleet", tag = "info", summary = "Every member of the fleet (workers, ingest shards), which runs which camera, stale members marked", responses((status = 200, description = "`{member, complete, members: [{member, role, shard, cameras, partitions, age_s, stale, …}], cameras: {id: [member]}}`", body = Object), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "The fleet view is off (`fleet.enabled = false`)", body = crate::api::openapi::ErrorBody)))]
async fn fleet(State(st): State<AppState>) -> Result<Response, error::ApiError> {
    match &st.fleet {
        Some(v) => Ok(axum::Json(v.answer(std::time::Instant::now())).into_response()),
        None => Err(error::ApiError::not_found("the fleet view is off on this member")
            .with_details(serde_json::json!({ "hint": "set [fleet] enabled = true with the brokers of the fleet topic on every member" }))),
    }
}
