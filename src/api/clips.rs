//! `GET /v1/incidents/{id}/clip.mp4`: an incident's video clip (`[evidence.clip]`),
//! with HTTP range requests so a browser's `<video>` can seek and start before the
//! whole file has arrived.

use std::io::{Read, Seek, SeekFrom};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::evidence::clip::{ClipInfo, byte_range};

/// What a request gets of a clip: its length, the range asked for, and those bytes (or
/// the whole file); `Err(len)` for a range past the end.
type Slice = (u64, Option<std::ops::Range<u64>>, Vec<u8>);

/// The clip's facts for `/v1/incidents/{id}`, when one is stored.
pub fn info(st: &AppState, incident: &str) -> Option<ClipInfo> {
    st.clips.as_ref()?.info(incident)
}

#[utoipa::path(get, path = "/v1/incidents/{id}/clip.mp4", tag = "incidents", summary = "The incident's video clip (MP4, H.264)", description = "From `evidence.clip.pre_s` before the opening to `post_s` after it (`[evidence.clip]`, off by default), encoded once the post-roll has passed. Answers `Range: bytes=…` with 206 (one range; several get the whole file), `Accept-Ranges: bytes`, and the clip's SHA-256 as its ETag.", params(("id" = String, Path, description = "incident_id (a UUID)"), ("Range" = Option<String>, Header, description = "e.g. `bytes=0-1023`")), responses((status = 200, description = "The whole clip", body = Vec<u8>, content_type = "video/mp4"), (status = 206, description = "The range asked for (`Content-Range`)", body = Vec<u8>, content_type = "video/mp4"), (status = 400, description = "Not a UUID", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No clip: clips are off, none was recorded, it is still recording (`details.state = \"recording\"`), or retention deleted it", body = crate::api::openapi::ErrorBody), (status = 416, description = "A range past the end (`Content-Range: bytes */size`)", body = crate::api::openapi::ErrorBody)))]
pub async fn clip(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::bad_request(format!("`{id}` is not an incident id (a UUID)")));
    }
    let Some(store) = st.clips.clone() else {
        return Err(ApiError::not_found("clips are off here ([evidence.clip] enabled = false)").with_details(json!({ "state": "off" })));
    };
    let Some(info) = store.info(&id) else {
        if store.is_recording(&id) {
            return Err(ApiError::not_found(format!("the clip of incident {id} is still being recorded: it is written once its post-roll has passed"))
                .with_details(json!({ "state": "recording" })));
        }
        return Err(
            ApiError::not_found(format!("no clip for incident {id} (none was recorded, or retention deleted it)")).with_details(json!({ "state": "none" }))
        );
    };
    let path = store.path_of(&id).expect("a UUID is an incident id");
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Result<Slice, u64>> {
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        let Ok(want) = byte_range(range.as_deref(), len) else { return Ok(Err(len)) };
        let r = want.clone().unwrap_or(0..len);
        let mut body = vec![0u8; (r.end - r.start) as usize];
        f.seek(SeekFrom::Start(r.start))?;
        f.read_exact(&mut body)?;
        Ok(Ok((len, want, body)))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (len, want, body) = match read {
        Ok(Ok(x)) => x,
        Ok(Err(len)) => {
            let mut r = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_NOT_SATISFIABLE", format!("the clip has {len} bytes")).into_response();
            r.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{len}")).expect("ASCII"));
            return Ok(r);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::not_found(format!("no clip for incident {id} (retention deleted it)"))),
        Err(e) => return Err(ApiError::internal(format!("reading the clip of {id}: {e}"))),
    };
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::ETAG, HeaderValue::from_str(&format!("\"{}\"", info.sha256)).expect("hex"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    Ok(match want {
        Some(r) => {
            out.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes {}-{}/{len}", r.start, r.end - 1)).expect("ASCII"));
            (StatusCode::PARTIAL_CONTENT, out, body).into_response()
        }
        None => (StatusCode::OK, out, body).into_response(),
    })
}
