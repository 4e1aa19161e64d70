//! `GET /v1/pipelines` and `GET /v1/pipelines/{name}`: each running pipeline as JSON,
//! its file's content plus each camera's fitted calibration with every point's error, as
//! editors need them (the configuration layer builds the documents; the API serves them).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};

#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", summary = "Every pipeline: its file's content and each camera's fitted calibration", responses((status = 200, description = "`{pipelines: [{name, file, pipeline, cameras}]}`", body = Object), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody)))]
pub async fn list(State(st): State<AppState>) -> Response {
    let info = st.info.read().unwrap_or_else(|e| e.into_inner());
    let docs: Vec<&serde_json::Value> = info.pipeline_docs.iter().map(|d| &d.doc).collect();
    axum::Json(json!({ "pipelines": docs })).into_response()
}

#[utoipa::path(get, path = "/v1/pipelines/{name}", tag = "pipelines", summary = "One pipeline: its file's content and each camera's fitted calibration with every point's error", params(("name" = String, Path, description = "Pipeline name")), responses((status = 200, description = "`{name, file, pipeline, cameras}`", body = Object), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "Unknown pipeline", body = crate::api::openapi::ErrorBody)))]
pub async fn one(State(st): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let info = st.info.read().unwrap_or_else(|e| e.into_inner());
    match info.pipeline_docs.iter().find(|d| d.name == name) {
        Some(d) => Ok(axum::Json(&d.doc).into_response()),
        None => {
            let names: Vec<&str> = info.pipeline_docs.iter().map(|d| d.name.as_str()).collect();
            Err(ApiError::not_found(format!("no pipeline `{name}`"))
                .with_details(json!({ "pipeline": name, "pipelines": names, "hint": "GET /v1/pipelines lists them" })))
        }
    }
}
