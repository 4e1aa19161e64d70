//! `GET /v1/cameras`, `GET /v1/cameras/{id}` and `GET /v1/cameras/{id}/snapshot.jpg`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState};

fn with_links(id: &str, status: &crate::telemetry::health::SourceStatus) -> Value {
    let mut v = serde_json::to_value(status).expect("status serialises");
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(id));
        o.insert("snapshot_url".into(), json!(format!("/v1/cameras/{id}/snapshot.jpg")));
    }
    v
}

#[utoipa::path(get, path = "/v1/cameras", tag = "cameras", summary = "Every camera with its health", responses((status = 200, description = "`{cameras: {id: status}}`", body = Object), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody)))]
pub async fn list(State(st): State<AppState>) -> Response {
    let cams: BTreeMap<String, Value> = st.health.sources().into_iter().map(|(id, s)| (id.clone(), with_links(&id, &s))).collect();
    axum::Json(json!({ "cameras": cams })).into_response()
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no camera `{id}`")).with_details(json!({ "camera": id, "hint": "GET /v1/cameras lists them" }))
}

#[utoipa::path(get, path = "/v1/cameras/{id}", tag = "cameras", summary = "One camera: state, fps, drops, restarts, last frame, snapshot URL", params(("id" = String, Path, description = "Camera id")), responses((status = 200, description = "Camera status", body = Object), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "Unknown camera", body = crate::api::openapi::ErrorBody)))]
pub async fn one(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let status = st.health.sources().into_iter().find(|(c, _)| *c == id).map(|(_, s)| s).ok_or_else(|| unknown(&id))?;
    Ok(axum::Json(with_links(&id, &status)).into_response())
}

/// The latest frame with boxes, track ids, zones and the risk level drawn on it,
/// encoded off the async workers.
#[utoipa::path(get, path = "/v1/cameras/{id}/snapshot.jpg", tag = "cameras", summary = "The latest frame with boxes, track ids, zones and the risk level drawn", params(("id" = String, Path, description = "Camera id")), responses((status = 200, description = "JPEG", body = Vec<u8>, content_type = "image/jpeg"), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "Unknown camera, or no frame yet", body = crate::api::openapi::ErrorBody)))]
pub async fn snapshot(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !st.health.sources().iter().any(|(c, _)| *c == id) {
        return Err(unknown(&id));
    }
    let snap =
        st.snapshots.get(&id).ok_or_else(|| ApiError::not_found(format!("camera `{id}` has no analysed frame yet")).with_details(json!({ "camera": id })))?;
    let cam = id.clone();
    let jpeg = tokio::task::spawn_blocking(move || crate::pipeline::snapshot::render_jpeg(&snap, &cam, 80))
        .await
        .map_err(|_| ApiError::internal("snapshot rendering stopped"))?
        .map_err(|e| ApiError::internal(format!("cannot encode the snapshot: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], jpeg).into_response())
}
