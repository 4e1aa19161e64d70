//! The HTTP API (axum): health, readiness, metrics, info and event queries.
//! Errors are JSON `{ "error": CODE, "message": …, "details": {…} }`.

mod error;
pub mod events;
pub mod live;
mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::EventStore;
pub use error::ApiError;

/// What /v1/info reports.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub name: &'static str,
    pub version: &'static str,
    pub schema: &'static str,
    pub detector: Option<crate::detect::DetectorInfo>,
    pub captioner: &'static str,
    pub pipelines: Vec<PipelineSummary>,
    pub features: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineSummary {
    pub name: String,
    pub file: String,
    pub cameras: Vec<String>,
    pub zones: Vec<String>,
    pub rules: Vec<String>,
}

pub fn build_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "gstreamer") {
        f.push("gstreamer");
    }
    if cfg!(feature = "opencv") {
        f.push("opencv");
    }
    if cfg!(feature = "onnx") {
        f.push("onnx");
    }
    if cfg!(feature = "onnx-cuda") {
        f.push("onnx-cuda");
    }
    if cfg!(feature = "torch") {
        f.push("torch");
    }
    f
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Behind a lock because a configuration reload (SIGHUP) changes the cameras.
    pub info: Arc<std::sync::RwLock<Info>>,
    /// Live events for `/v1/events/stream`.
    pub live: Arc<live::LiveHub>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/docs", get(web::docs))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/info", get(info))
        .route("/v1/cameras", get(cameras))
        .route("/v1/events", get(events::list))
        .route("/v1/events/stream", get(live::stream))
        .route("/v1/events/{id}", get(events::one))
        .route("/v1/stats", get(events::stats))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
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

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(st): State<AppState>) -> Response {
    let r = st.health.readiness();
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(r)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], st.metrics.render()).into_response()
}

async fn info(State(st): State<AppState>) -> Response {
    let info = st.info.read().unwrap_or_else(|e| e.into_inner()).clone();
    axum::Json(info).into_response()
}

async fn cameras(State(st): State<AppState>) -> Response {
    let cams: HashMap<String, crate::health::SourceStatus> = st.health.sources().into_iter().collect();
    axum::Json(serde_json::json!({ "cameras": cams })).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve(addr: SocketAddr, state: AppState, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP API listening");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
