//! `POST /v1/analyze`, `POST /v1/analyze/batch` and `GET /v1/tasks/{id}` (seeds 000, 001,
//! 004): one image (multipart, raw JPEG/PNG body, or JSON with base64) analysed by the
//! worker pool — synchronously, or as a task whose progress goes out over SSE/WebSocket
//! and, optionally, to a signed webhook.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::live::TaskMessage;
use super::webhook::{self, WebhookSettings};
use super::{ApiError, AppState};
use crate::analysis::AnalyzeError;
use crate::analysis::tasks::{TaskStatus, TaskStore};
use crate::analysis::{AnalysisPool, AnalysisRequest, CameraContexts, SubmitError};
use crate::model::DecodeError;
use crate::model::Event;

/// Everything the analysis routes need.
pub struct AnalysisApi {
    pub pool: AnalysisPool,
    pub cameras: Arc<CameraContexts>,
    pub tasks: Arc<TaskStore>,
    pub webhook: Arc<WebhookSettings>,
    pub client: reqwest::Client,
    pub timeout: Duration,
    pub batch_max_items: usize,
}

/// One image and what to do with it.
#[derive(Debug, Default)]
struct Upload {
    id: Option<String>,
    bytes: Vec<u8>,
    camera_id: Option<String>,
    webhook_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonUpload {
    /// The image, base64 (a `data:image/...;base64,` prefix is allowed).
    image_base64: String,
    #[serde(default)]
    camera_id: Option<String>,
    #[serde(default)]
    webhook_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatchItem {
    id: String,
    image_base64: String,
    #[serde(default)]
    camera_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    items: Vec<JsonBatchItem>,
}

fn service(st: &AppState) -> Result<&Arc<AnalysisApi>, ApiError> {
    st.analysis.as_ref().ok_or_else(|| ApiError::unavailable("image analysis is not enabled in this process"))
}

/// Reads the whole body within the size limit (413 beyond it, before reading when the
/// client announced the length).
async fn read_body(req: Request, limit: usize) -> Result<(String, axum::body::Bytes), ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        ApiError::too_large(format!("the request body is larger than the {limit}-byte limit (server.max_body_bytes)"))
            .with_details(json!({ "limit_bytes": limit }))
    };
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| too_large())?;
    Ok((content_type, bytes))
}

fn decode_base64(field: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    let data = match s.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => s,
    };
    let cleaned: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| ApiError::unprocessable(format!("`{field}` is not valid base64: {e}")).with_details(json!({ "field": field })))
}

fn json_error(e: serde_json::Error) -> ApiError {
    if e.is_syntax() || e.is_eof() { ApiError::bad_request(format!("malformed JSON: {e}")) } else { ApiError::unprocessable(format!("invalid request: {e}")) }
}

/// JPEG or PNG by their magic bytes (the declared type is not trusted).
fn check_image(field: &str, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::unprocessable(format!("`{field}` is empty")).with_details(json!({ "field": field })));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) || bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(())
    } else {
        Err(ApiError::unsupported_media(format!("`{field}` is not a JPEG or PNG image"))
            .with_details(json!({ "field": field, "accepted": ["image/jpeg", "image/png"] })))
    }
}

const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/jpg", "image/png", "application/octet-stream"];

/// Parses multipart: image parts (`image`, or every file part for a batch) and the text
/// fields `camera_id` and `webhook_url`.
async fn parse_multipart(content_type: &str, bytes: axum::body::Bytes, batch: bool) -> Result<(Vec<Upload>, Option<String>, Option<String>), ApiError> {
    let req = Request::builder().header(header::CONTENT_TYPE, content_type).body(Body::from(bytes)).expect("valid request");
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {}", e.body_text())))?;
    let (mut images, mut camera_id, mut webhook_url) = (Vec::new(), None, None);
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let part_type = field.content_type().map(str::to_ascii_lowercase);
        let data = field.bytes().await.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {}", e.body_text())))?;
        let text = || {
            String::from_utf8(data.to_vec()).map(|s| s.trim().to_string()).map_err(|_| ApiError::unprocessable(format!("field `{name}` must be UTF-8 text")))
        };
        match name.as_str() {
            "camera_id" => camera_id = Some(text()?),
            "webhook_url" => webhook_url = Some(text()?),
            "image" | "images" | "file" => {
                if let Some(t) = &part_type
                    && !IMAGE_TYPES.iter().any(|a| t.starts_with(a))
                {
                    return Err(ApiError::unsupported_media(format!("part `{name}` has type {t}; send image/jpeg or image/png"))
                        .with_details(json!({ "field": name, "accepted": ["image/jpeg", "image/png"] })));
                }
                if !batch && !images.is_empty() {
                    return Err(ApiError::unprocessable("one image per request: use /v1/analyze/batch for several"));
                }
                images.push(Upload { id: file_name, bytes: data.to_vec(), ..Default::default() });
            }
            other => {
                return Err(ApiError::unprocessable(format!("unknown form field `{other}`"))
                    .with_details(json!({ "field": other, "allowed": ["image", "camera_id", "webhook_url"] })));
            }
        }
    }
    Ok((images, camera_id, webhook_url))
}

async fn parse_single(content_type: &str, bytes: axum::body::Bytes) -> Result<Upload, ApiError> {
    let base = content_type.split(';').next().unwrap_or("").trim().to_string();
    let up = match base.as_str() {
        "multipart/form-data" => {
            let (mut images, camera_id, webhook_url) = parse_multipart(content_type, bytes, false).await?;
            let mut up = images.pop().ok_or_else(|| ApiError::unprocessable("the form has no `image` file part"))?;
            up.camera_id = camera_id;
            up.webhook_url = webhook_url;
            up
        }
        "application/json" => {
            let j: JsonUpload = serde_json::from_slice(&bytes).map_err(json_error)?;
            Upload { id: None, bytes: decode_base64("image_base64", &j.image_base64)?, camera_id: j.camera_id, webhook_url: j.webhook_url }
        }
        "image/jpeg" | "image/png" => Upload { bytes: bytes.to_vec(), ..Default::default() },
        "" => return Err(ApiError::unsupported_media("no Content-Type: send multipart/form-data, application/json, image/jpeg or image/png")),
        other => {
            return Err(ApiError::unsupported_media(format!("Content-Type {other} is not accepted"))
                .with_details(json!({ "accepted": ["multipart/form-data", "application/json", "image/jpeg", "image/png"] })));
        }
    };
    check_image("image", &up.bytes)?;
    Ok(up)
}

#[derive(Debug, Default)]
struct AnalyzeParams {
    run_async: bool,
    camera_id: Option<String>,
    webhook_url: Option<String>,
}

fn parse_params(raw: Option<&str>) -> Result<AnalyzeParams, ApiError> {
    let pairs = super::error::query_pairs(raw)?;
    let mut p = AnalyzeParams::default();
    for (k, v) in pairs {
        match k.as_str() {
            "async" => {
                p.run_async = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(
                            ApiError::bad_request("parameter `async`: expected true or false").with_details(json!({ "parameter": "async", "value": v }))
                        );
                    }
                }
            }
            "camera_id" => p.camera_id = Some(v),
            "webhook_url" => p.webhook_url = Some(v),
            _ => {
                return Err(ApiError::bad_request(format!("unknown parameter `{k}`"))
                    .with_details(json!({ "parameter": k, "allowed": ["async", "camera_id", "webhook_url"] })));
            }
        }
    }
    Ok(p)
}

fn submit_error(e: SubmitError, st: &AppState) -> ApiError {
    match e {
        SubmitError::NotReady(why) => {
            st.metrics.analyses_rejected.with_label_values(&["not_ready"]).inc();
            ApiError::unavailable(format!("the analysis detector is not ready: {why}")).retry_after(5)
        }
        SubmitError::Busy { queued, limit, retry_after_s } => {
            st.metrics.analyses_rejected.with_label_values(&["busy"]).inc();
            ApiError::too_many_requests(format!("{queued} analysis requests are waiting (limit {limit}); retry later"), retry_after_s)
                .with_details(json!({ "queued": queued, "limit": limit }))
        }
        SubmitError::BusyBytes { queued_mb, limit_mb, retry_after_s } => {
            st.metrics.analyses_rejected.with_label_values(&["busy"]).inc();
            let e = SubmitError::BusyBytes { queued_mb, limit_mb, retry_after_s };
            ApiError::too_many_requests(e.to_string(), retry_after_s).with_details(json!({ "queued_mb": queued_mb, "limit_mb": limit_mb }))
        }
    }
}

fn analyze_error(e: &AnalyzeError) -> ApiError {
    match e {
        AnalyzeError::Image(DecodeError::Decode(_)) => ApiError::unprocessable(e.to_string()),
        AnalyzeError::Image(DecodeError::TooLarge { width, height, max }) => {
            ApiError::unprocessable(e.to_string()).with_details(json!({ "width": width, "height": height, "max_side": max }))
        }
        AnalyzeError::Image(DecodeError::TooManyPixels { width, height, max_pixels }) => {
            ApiError::unprocessable(e.to_string()).with_details(json!({ "width": width, "height": height, "max_pixels": max_pixels }))
        }
        AnalyzeError::UnknownCamera(id) => ApiError::unprocessable(e.to_string()).with_details(json!({ "field": "camera_id", "value": id })),
        AnalyzeError::Detect(_) => ApiError::internal(format!("the detector failed: {e}")),
        AnalyzeError::ModelUnavailable(_) => ApiError::unavailable(e.to_string()).retry_after(5),
    }
}

fn error_json(e: &ApiError) -> Value {
    json!({ "error": e.code, "message": e.message, "details": e.details })
}

fn check_camera(svc: &AnalysisApi, camera: &Option<String>) -> Result<(), ApiError> {
    match camera {
        Some(id) if svc.cameras.get(id).is_none() => Err(analyze_error(&AnalyzeError::UnknownCamera(id.clone()))),
        _ => Ok(()),
    }
}

/// Queues one request whose result comes back on a channel.
fn submit_for_result(st: &AppState, svc: &AnalysisApi, req: AnalysisRequest) -> Result<oneshot::Receiver<Result<Event, AnalyzeError>>, SubmitError> {
    let (tx, rx) = oneshot::channel();
    let metrics = st.metrics.clone();
    let done = move |r: Result<Event, AnalyzeError>| {
        metrics.images_analyzed.with_label_values(&[if r.is_ok() { "ok" } else { "failed" }]).inc();
        let _ = tx.send(r);
    };
    svc.pool.submit(req, Box::new(|| {}), Box::new(done))?;
    Ok(rx)
}

/// Waits for a queued request's result, at most `server.analyze_timeout_s`.
async fn await_result(svc: &AnalysisApi, rx: oneshot::Receiver<Result<Event, AnalyzeError>>) -> Result<Event, ApiError> {
    match tokio::time::timeout(svc.timeout, rx).await {
        Ok(Ok(Ok(ev))) => Ok(ev),
        Ok(Ok(Err(e))) => Err(analyze_error(&e)),
        Ok(Err(_)) => Err(ApiError::internal("the analysis worker stopped")),
        Err(_) => {
            Err(ApiError::unavailable(format!("the analysis took longer than {:.0} s (server.analyze_timeout_s); retry later", svc.timeout.as_secs_f64()))
                .retry_after(5))
        }
    }
}

#[utoipa::path(post, path = "/v1/analyze", tag = "analyze", summary = "Analyse one image: detector, geometry and rules of `camera_id` if given, caption",
    params(
        ("async" = Option<bool>, Query, description = "true: answer 202 with a task id at once"),
        ("camera_id" = Option<String>, Query, description = "Judge as this camera (also a body field)"),
        ("webhook_url" = Option<String>, Query, description = "With async: POST the signed result here (also a body field)"),
    ),
    request_body(content(
        (crate::api::openapi::AnalyzeForm = "multipart/form-data"),
        (crate::api::openapi::AnalyzeJson = "application/json"),
        (Vec<u8> = "image/jpeg"),
        (Vec<u8> = "image/png"),
    )),
    responses(
        (status = 200, description = "The analysis as an event", body = ref("#/components/schemas/Event")),
        (status = 202, description = "Queued as a task", body = crate::api::openapi::TaskAccepted),
        (status = 400, description = "Malformed request", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = crate::api::openapi::ErrorBody),
        (status = 415, description = "Not JPEG/PNG, or an unsupported Content-Type", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "Undecodable image, resolution over the limit, unknown camera, bad webhook URL", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "The queue is full (Retry-After)", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The model is not ready (Retry-After)", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn analyze(State(st): State<AppState>, RawQuery(raw): RawQuery, req: Request) -> Result<Response, ApiError> {
    let params = parse_params(raw.as_deref())?;
    let svc = service(&st)?.clone();
    let (content_type, bytes) = read_body(req, st.limits.max_body_bytes).await?;
    let mut up = parse_single(&content_type, bytes).await?;
    up.camera_id = up.camera_id.or(params.camera_id).filter(|c| !c.is_empty());
    up.webhook_url = up.webhook_url.or(params.webhook_url).filter(|c| !c.is_empty());
    check_camera(&svc, &up.camera_id)?;
    let source = up.camera_id.clone().unwrap_or_else(|| "upload".into());
    let req = AnalysisRequest { source, bytes: up.bytes, camera_id: up.camera_id };
    if !params.run_async {
        if up.webhook_url.is_some() {
            return Err(ApiError::unprocessable("`webhook_url` needs an asynchronous task: add ?async=true"));
        }
        let rx = submit_for_result(&st, &svc, req).map_err(|e| submit_error(e, &st))?;
        let ev = await_result(&svc, rx).await?;
        return Ok(axum::Json(ev).into_response());
    }
    let webhook_url = match &up.webhook_url {
        Some(u) => {
            if svc.webhook.secret.is_none() {
                return Err(ApiError::unprocessable("webhooks are disabled: set server.webhook_secret (or ARGUS_WEBHOOK_SECRET) to sign them"));
            }
            Some(webhook::check_url(u, &svc.webhook.destinations).map_err(|m| ApiError::unprocessable(m).with_details(json!({ "field": "webhook_url" })))?)
        }
        None => None,
    };
    let task = svc.tasks.create(webhook_url.as_ref().map(|u| u.to_string()));
    let id = task.task_id.clone();
    let rt = tokio::runtime::Handle::current();
    let (s1, s2, id1) = (svc.clone(), svc.clone(), id.clone());
    let (live1, live2, metrics) = (st.live.clone(), st.live.clone(), st.metrics.clone());
    let on_start = Box::new(move || {
        s1.tasks.update(&id1, |t| {
            t.status = TaskStatus::Processing;
            t.progress = 0.5;
        });
        live1.publish_task(TaskMessage {
            kind: "task.update",
            task_id: id1,
            status: "processing",
            progress: 0.5,
            message: "analysing the image".into(),
            result: None,
            error: None,
        });
    });
    let id2 = id.clone();
    let on_done = Box::new(move |r: Result<Event, AnalyzeError>| {
        metrics.images_analyzed.with_label_values(&[if r.is_ok() { "ok" } else { "failed" }]).inc();
        let (msg, body) = match r {
            Ok(ev) => {
                let ev = Arc::new(ev);
                s2.tasks.update(&id2, |t| {
                    t.status = TaskStatus::Completed;
                    t.progress = 1.0;
                    t.result = Some(ev.clone());
                });
                let msg = TaskMessage {
                    kind: "task.completed",
                    task_id: id2.clone(),
                    status: "completed",
                    progress: 1.0,
                    message: "analysis completed".into(),
                    result: Some(ev.clone()),
                    error: None,
                };
                (msg, json!({ "task_id": id2, "status": "completed", "result": &*ev }))
            }
            Err(e) => {
                let err = error_json(&analyze_error(&e));
                s2.tasks.update(&id2, |t| {
                    t.status = TaskStatus::Failed;
                    t.progress = 1.0;
                    t.error = Some(err.clone());
                });
                let msg = TaskMessage {
                    kind: "task.failed",
                    task_id: id2.clone(),
                    status: "failed",
                    progress: 1.0,
                    message: e.to_string(),
                    result: None,
                    error: Some(err.clone()),
                };
                (msg, json!({ "task_id": id2, "status": "failed", "error": err }))
            }
        };
        live2.publish_task(msg);
        if let Some(url) = webhook_url {
            let body = serde_json::to_vec(&body).expect("JSON serialises");
            rt.spawn(webhook::deliver(s2.client.clone(), s2.webhook.clone(), s2.tasks.clone(), metrics.clone(), id2, url, body));
        }
    });
    svc.pool.submit(req, on_start, on_done).map_err(|e| {
        svc.tasks.update(&id, |t| {
            t.status = TaskStatus::Failed;
            t.error = Some(json!({ "error": "REJECTED", "message": e.to_string(), "details": {} }));
        });
        submit_error(e, &st)
    })?;
    st.live.publish_task(TaskMessage {
        kind: "task.update",
        task_id: id.clone(),
        status: "queued",
        progress: 0.0,
        message: "queued".into(),
        result: None,
        error: None,
    });
    let location = format!("/v1/tasks/{id}");
    let body = json!({ "task_id": id, "status": "queued", "status_url": location });
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "analyze", summary = "An asynchronous analysis: queued, processing, completed (with result) or failed (with error)", params(("id" = String, Path, description = "task_id")), responses((status = 200, description = "The task", body = crate::api::openapi::TaskState), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "Unknown or expired task", body = crate::api::openapi::ErrorBody), (status = 503, description = "Analysis is not enabled", body = crate::api::openapi::ErrorBody)))]
pub async fn task(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let svc = service(&st)?;
    let t = svc.tasks.get(&id).ok_or_else(|| ApiError::not_found(format!("no task {id} (tasks are kept for the most recent server.tasks_kept)")))?;
    Ok(axum::Json(t).into_response())
}

#[utoipa::path(post, path = "/v1/analyze/batch", tag = "analyze", summary = "Analyse several images; one result per id, in order",
    request_body(content(
        (crate::api::openapi::BatchJson = "application/json"),
        (crate::api::openapi::AnalyzeForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "`{results: [{id, status: completed, event} | {id, status: failed, error}]}`", body = Object),
        (status = 400, description = "Malformed request", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = crate::api::openapi::ErrorBody),
        (status = 415, description = "Unsupported Content-Type or image type", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "Too many or no items, duplicate ids, bad base64, unknown camera", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "Not enough room in the queue for the batch (Retry-After)", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The model is not ready (Retry-After)", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn batch(State(st): State<AppState>, RawQuery(raw): RawQuery, req: Request) -> Result<Response, ApiError> {
    if let Some(r) = raw.as_deref().filter(|r| !r.is_empty()) {
        let pairs = super::error::query_pairs(Some(r))?;
        if let Some((k, _)) = pairs.first() {
            return Err(ApiError::bad_request(format!("unknown parameter `{k}`")).with_details(json!({ "parameter": k, "allowed": [] })));
        }
    }
    let svc = service(&st)?.clone();
    let (content_type, bytes) = read_body(req, st.limits.max_body_bytes).await?;
    let base = content_type.split(';').next().unwrap_or("").trim().to_string();
    let items: Vec<Upload> = match base.as_str() {
        "multipart/form-data" => {
            let (images, camera_id, webhook) = parse_multipart(&content_type, bytes, true).await?;
            if webhook.is_some() {
                return Err(ApiError::unprocessable("`webhook_url` is for asynchronous single analyses"));
            }
            images
                .into_iter()
                .enumerate()
                .map(|(i, mut u)| {
                    u.id = Some(u.id.unwrap_or_else(|| format!("image-{}", i + 1)));
                    u.camera_id = camera_id.clone();
                    u
                })
                .collect()
        }
        "application/json" => {
            let b: JsonBatch = serde_json::from_slice(&bytes).map_err(json_error)?;
            b.items
                .into_iter()
                .map(|it| {
                    Ok(Upload {
                        bytes: decode_base64(&format!("items[{}].image_base64", it.id), &it.image_base64)?,
                        id: Some(it.id),
                        camera_id: it.camera_id,
                        webhook_url: None,
                    })
                })
                .collect::<Result<_, ApiError>>()?
        }
        "" => return Err(ApiError::unsupported_media("no Content-Type: send multipart/form-data or application/json")),
        other => {
            return Err(ApiError::unsupported_media(format!("Content-Type {other} is not accepted"))
                .with_details(json!({ "accepted": ["multipart/form-data", "application/json"] })));
        }
    };
    if items.is_empty() || items.len() > svc.batch_max_items {
        return Err(ApiError::unprocessable(format!("a batch holds 1..={} images, this one {}", svc.batch_max_items, items.len()))
            .with_details(json!({ "max_items": svc.batch_max_items })));
    }
    let mut seen = HashSet::new();
    for it in &items {
        let id = it.id.as_deref().unwrap_or("");
        if id.is_empty() || !seen.insert(id.to_string()) {
            return Err(
                ApiError::unprocessable(format!("every item needs a unique, non-empty id (`{id}`)")).with_details(json!({ "field": "id", "value": id }))
            );
        }
        check_image(&format!("image `{id}`"), &it.bytes)?;
        check_camera(&svc, &it.camera_id)?;
    }
    // All or nothing at the door: a batch that cannot fit is refused whole.
    if svc.pool.free_slots() < items.len() {
        let e = SubmitError::Busy { queued: svc.pool.in_flight(), limit: svc.pool.free_slots(), retry_after_s: svc.pool.retry_after_s() };
        return Err(submit_error(e, &st));
    }
    let mut waits = Vec::new();
    for it in items {
        let id = it.id.clone().unwrap_or_default();
        let req = AnalysisRequest { source: it.camera_id.clone().unwrap_or_else(|| id.clone()), bytes: it.bytes, camera_id: it.camera_id };
        waits.push((id, submit_for_result(&st, &svc, req)));
    }
    let mut results = Vec::new();
    for (id, w) in waits {
        let r = match w {
            Err(e) => Err(submit_error(e, &st)),
            Ok(rx) => await_result(&svc, rx).await,
        };
        results.push(match r {
            Ok(ev) => json!({ "id": id, "status": "completed", "event": ev }),
            Err(e) => json!({ "id": id, "status": "failed", "error": error_json(&e) }),
        });
    }
    Ok(axum::Json(json!({ "results": results })).into_response())
}
