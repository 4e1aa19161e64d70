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

/// Writes an edited pipeline into its file and has it applied: the configuration layer
/// implements it (`app`), the API only calls it.
pub trait PipelineEditor: Send + Sync {
    /// Whether the API key named `who` may change pipelines (`server.pipeline_editors`).
    fn may_edit(&self, who: &str) -> bool;
    /// Validates `pipeline` (the shape `GET /v1/pipelines/{name}` returns under
    /// `pipeline`) as `argus check` would, writes it over pipeline `name`'s file (the old
    /// one kept as a backup) and requests a reload. Blocking: file IO and calibration.
    fn replace(&self, name: &str, pipeline: serde_json::Value, who: &str) -> Result<PipelineEdit, EditError>;
}

/// A written edit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineEdit {
    pub file: String,
    pub backup: String,
    /// Whether the file changed at all (an edit that says what the file says writes nothing).
    pub changed: bool,
}

#[derive(Debug)]
pub enum EditError {
    /// No pipeline of that name; the names there are.
    NotFound(Vec<String>),
    /// What `argus check` would say about the edited configuration.
    Invalid(Vec<crate::model::ConfigIssue>),
    /// Reading or writing the file failed.
    Io(String),
}

#[utoipa::path(
    put,
    path = "/v1/pipelines/{name}",
    tag = "pipelines",
    summary = "Change a pipeline: validated as `argus check` does, written into its file keeping comments, applied by a reload",
    description = "Needs an API key named in `server.pipeline_editors`; the change is logged with the key's name. The body is the pipeline as `GET /v1/pipelines/{name}` returns it under `pipeline`. A pipeline with problems is refused whole with every problem in `details.issues` (`key`, `problem`, `fix`, `file`, `line`). Otherwise the file is replaced atomically, its previous version kept as `<file>.bak`, and the configuration reloaded: only cameras whose settings changed restart.",
    params(("name" = String, Path, description = "Pipeline name")),
    request_body(content = Object, description = "The pipeline: `{name, cameras, zones, rules, …}`", content_type = "application/json"),
    responses(
        (status = 200, description = "`{file, backup, changed, reload, by}`: written; the reload is requested (GET /v1/pipelines shows it once applied)", body = Object),
        (status = 400, description = "Not JSON", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "The key may not change pipelines", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "Unknown pipeline", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "The edited pipeline has problems: `details.issues`", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "Editing is not available in this process (e.g. `argus ingest`)", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    caller: Option<axum::Extension<super::auth::Caller>>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let Some(editor) = st.pipeline_editor.clone() else {
        return Err(ApiError::unavailable("pipelines cannot be changed through this process's API (only `argus run` edits its files)"));
    };
    let who = caller.and_then(|c| c.key).and_then(|i| st.keys.named(i).map(str::to_string));
    let Some(who) = who.filter(|w| editor.may_edit(w)) else {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this key may not change pipelines: use a named key (server.named_api_keys) listed in server.pipeline_editors",
        ));
    };
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("the body must be the pipeline as JSON: {e}")))?;
    let job = {
        let who = who.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || editor.replace(&name, body, &who))
    };
    match job.await.map_err(|e| ApiError::internal(format!("the edit did not finish: {e}")))? {
        Ok(edit) => Ok(axum::Json(json!({ "file": edit.file, "backup": edit.backup, "changed": edit.changed, "reload": if edit.changed { "requested" } else { "not needed" }, "by": who })).into_response()),
        Err(EditError::NotFound(names)) => Err(ApiError::not_found(format!("no pipeline `{name}`")).with_details(json!({ "pipeline": name, "pipelines": names }))),
        Err(EditError::Invalid(issues)) => {
            let list: Vec<serde_json::Value> = issues
                .iter()
                .map(|i| json!({ "file": i.file.display().to_string(), "key": i.key, "line": i.line, "problem": i.problem, "fix": i.fix }))
                .collect();
            Err(ApiError::unprocessable(format!("the edited pipeline has {} problem(s); nothing was written", list.len())).with_details(json!({ "issues": list })))
        }
        Err(EditError::Io(e)) => Err(ApiError::internal(e)),
    }
}
