//! `GET /v1/events`, `GET /v1/events/{id}` and its evidence JPEG.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::model::Level;
use crate::model::{EventKind, parse_time};
use crate::store::{EventQuery, StatsQuery, StoreError};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
const PARAMS: &[&str] = &["camera", "pipeline", "since", "until", "kind", "min_level", "class", "zone", "incident", "limit", "cursor"];

/// Parses the query string strictly: unknown or malformed parameters are a 400 that
/// says which and how to fix it.
pub fn parse_query(raw: Option<&str>) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery { limit: DEFAULT_LIMIT, ..Default::default() };
    let pairs = super::error::query_pairs(raw)?;
    let mut seen = HashMap::new();
    for (k, v) in pairs {
        if !PARAMS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("unknown parameter `{k}`")).with_details(json!({ "parameter": k, "allowed": PARAMS })));
        }
        if seen.insert(k.clone(), ()).is_some() {
            return Err(ApiError::bad_request(format!("parameter `{k}` given twice")).with_details(json!({ "parameter": k })));
        }
        let bad = |why: &str| ApiError::bad_request(format!("parameter `{k}`: {why}")).with_details(json!({ "parameter": k, "value": v }));
        match k.as_str() {
            "camera" => q.camera = Some(v),
            "pipeline" => q.pipeline = Some(v),
            "class" => q.class = Some(v),
            "zone" => q.zone = Some(v),
            "incident" => q.incident = Some(v),
            "cursor" => q.cursor = Some(v),
            "since" => q.since = Some(parse_time(&v).map_err(|_| bad("expected an RFC 3339 time like 2026-11-23T08:00:00Z"))?),
            "until" => q.until = Some(parse_time(&v).map_err(|_| bad("expected an RFC 3339 time like 2026-11-23T09:00:00Z"))?),
            "kind" => q.kind = Some(EventKind::parse(&v).ok_or_else(|| bad(&format!("expected {}", EventKind::names())))?),
            "min_level" => q.min_level = Some(Level::parse(&v).ok_or_else(|| bad("expected low, medium, high or critical"))?),
            "limit" => {
                let n: usize = v.parse().map_err(|_| bad("expected a whole number"))?;
                if n == 0 || n > MAX_LIMIT {
                    return Err(bad(&format!("must be 1..={MAX_LIMIT}")));
                }
                q.limit = n;
            }
            _ => unreachable!("checked against PARAMS"),
        }
    }
    if let (Some(a), Some(b)) = (q.since, q.until)
        && a >= b
    {
        return Err(ApiError::bad_request("`since` must be before `until`"));
    }
    Ok(q)
}

/// Buckets a `/v1/stats` answer may hold; beyond it the caller widens the bucket.
pub const MAX_STATS_ROWS: usize = 50_000;

/// `/v1/stats`: the listing filters (no `limit`/`cursor`) plus `bucket` (`90s`, `5m`,
/// `1h`, `1d` or plain seconds; default `1h`).
pub fn parse_stats_query(raw: Option<&str>) -> Result<StatsQuery, ApiError> {
    let pairs = super::error::query_pairs(raw)?;
    let mut bucket_s = 3600;
    let mut rest = Vec::new();
    let mut seen_bucket = false;
    for (k, v) in pairs {
        match k.as_str() {
            "bucket" => {
                if std::mem::replace(&mut seen_bucket, true) {
                    return Err(ApiError::bad_request("parameter `bucket` given twice").with_details(json!({ "parameter": "bucket" })));
                }
                bucket_s = parse_bucket(&v).ok_or_else(|| {
                    ApiError::bad_request("parameter `bucket`: expected a width like 60s, 5m, 1h or 1d (1 s to 31 d)")
                        .with_details(json!({ "parameter": "bucket", "value": v }))
                })?;
            }
            "limit" | "cursor" => {
                return Err(ApiError::bad_request(format!("parameter `{k}` does not apply to /v1/stats")).with_details(json!({ "parameter": k })));
            }
            _ => rest.push((k, v)),
        }
    }
    let qs = serde_urlencoded::to_string(&rest).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let filter = parse_query(Some(&qs))?;
    Ok(StatsQuery { filter, bucket_s, max_rows: Some(MAX_STATS_ROWS) })
}

fn parse_bucket(v: &str) -> Option<u64> {
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = n.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    })?;
    (1..=31 * 86_400).contains(&secs).then_some(secs)
}

#[utoipa::path(get, path = "/v1/stats", tag = "events", summary = "Counts per camera × level × time bucket", params(
        ("bucket" = Option<String>, Query, description = "60s, 5m, 1h (default), 1d or seconds"),
        ("camera" = Option<String>, Query, description = "Camera id"),
        ("pipeline" = Option<String>, Query, description = "Pipeline name"),
        ("since" = Option<String>, Query, description = "RFC 3339"),
        ("until" = Option<String>, Query, description = "RFC 3339"),
        ("kind" = Option<crate::model::EventKind>, Query, description = "Event kind"),
        ("min_level" = Option<crate::model::Level>, Query, description = "Events at or above this level"),
        ("class" = Option<String>, Query, description = "Object class"),
        ("zone" = Option<String>, Query, description = "Zone id"),
        ("incident" = Option<String>, Query, description = "Incident id"),
    ), responses((status = 200, description = "`{bucket_s, rows: [{bucket_start_ms, camera_id, level, count}]}`", body = Object), (status = 400, description = "Bad parameter", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 503, description = "The store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn stats(State(st): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = parse_stats_query(raw.as_deref())?;
    let bucket_s = q.bucket_s;
    let store = st.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.stats(&q)).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(store_error)?;
    if rows.len() > MAX_STATS_ROWS {
        return Err(ApiError::unprocessable(format!("more than {MAX_STATS_ROWS} buckets: use a wider `bucket` or a narrower `since`/`until`"))
            .with_details(json!({ "parameter": "bucket", "max_rows": MAX_STATS_ROWS })));
    }
    Ok(axum::Json(json!({ "bucket_s": bucket_s, "rows": rows })).into_response())
}

/// A store's failure as the API answers it (shared by every store-backed route).
pub(super) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::BadCursor => ApiError::bad_request(e.to_string()).with_details(json!({ "parameter": "cursor" })),
        StoreError::TooMuchWork(budget) => ApiError::unprocessable(format!(
            "the query needs more than {budget:?} of work: narrow `since`/`until`, filter by `camera`, or use a wider `bucket`"
        )),
        StoreError::ClickHouse(msg) => {
            tracing::error!(error = %msg, "ClickHouse query failed");
            ApiError::unavailable("the event store (ClickHouse) is unavailable; retry shortly")
        }
        other => {
            tracing::error!(error = %other, "event store query failed");
            ApiError::internal("the event store failed; see the server log")
        }
    }
}

#[utoipa::path(get, path = "/v1/events", tag = "events", summary = "Events, newest first, filtered and paged", params(
        ("camera" = Option<String>, Query, description = "Camera id"),
        ("pipeline" = Option<String>, Query, description = "Pipeline name"),
        ("since" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("until" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("kind" = Option<crate::model::EventKind>, Query, description = "Event kind"),
        ("min_level" = Option<crate::model::Level>, Query, description = "Events at or above this level"),
        ("class" = Option<String>, Query, description = "Events with an object of this class"),
        ("zone" = Option<String>, Query, description = "Events with an object in this zone"),
        ("incident" = Option<String>, Query, description = "One incident's events"),
        ("limit" = Option<u32>, Query, description = "1..=1000, default 100", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ), responses((status = 200, description = "`{events: [Event], next_cursor?}`", body = Object), (status = 400, description = "Bad parameter", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 503, description = "The store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = parse_query(raw.as_deref())?;
    let store = st.store.clone();
    let page = tokio::task::spawn_blocking(move || store.query(&q)).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(store_error)?;
    Ok(axum::Json(page).into_response())
}

#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", summary = "One event", params(("id" = String, Path, description = "event_id (a UUID)")), responses((status = 200, description = "The event", body = ref("#/components/schemas/Event")), (status = 400, description = "Not a UUID", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No such event", body = crate::api::openapi::ErrorBody), (status = 503, description = "The store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn one(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(axum::Json(event(&st, &id).await?).into_response())
}

/// The stored event `id`: 400 for what is not an event id, 404 for an unknown one.
async fn event(st: &AppState, id: &str) -> Result<crate::model::Event, ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ApiError::bad_request(format!("`{id}` is not an event id (a UUID)")));
    }
    let store = st.store.clone();
    let key = id.to_string();
    let ev = tokio::task::spawn_blocking(move || store.get(&key)).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(store_error)?;
    ev.ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

#[utoipa::path(get, path = "/v1/events/{id}/evidence.jpg", tag = "events", summary = "The annotated frame of an incident event: its objects boxed, its zones, its level", description = "Content-addressed: the body's SHA-256 is the event's `evidence.sha256` (also the ETag); it never changes, so it may be cached for good.", params(("id" = String, Path, description = "event_id (a UUID)")), responses((status = 200, description = "JPEG", body = Vec<u8>, content_type = "image/jpeg"), (status = 400, description = "Not a UUID", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No such event, an event without evidence (summaries; evidence off), or a file no longer kept", body = crate::api::openapi::ErrorBody), (status = 503, description = "The store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn evidence(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    use axum::http::header;
    let ev = event(&st, &id).await?;
    let Some(files) = st.evidence.clone() else {
        return Err(ApiError::not_found("evidence is not kept here ([evidence] enabled = false)"));
    };
    let Some(reference) = ev.evidence else {
        return Err(ApiError::not_found(format!("event {id} has no evidence (only incident events have one)")).with_details(json!({ "kind": ev.kind })));
    };
    let sha256 = reference.sha256.clone();
    let bytes = tokio::task::spawn_blocking(move || files.read(&sha256)).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("the evidence of event {id} is no longer kept")).with_details(json!({ "sha256": reference.sha256 })));
        }
        Err(e) => return Err(ApiError::internal(format!("reading the evidence of event {id}: {e}"))),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg".to_string()),
            (header::ETAG, format!("\"{}\"", reference.sha256)),
            (header::CACHE_CONTROL, "private, max-age=31536000, immutable".to_string()),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_filters() {
        let q = parse_query(Some("camera=a&kind=incident.opened&min_level=high&limit=5&since=2026-11-23T08:00:00Z")).unwrap();
        assert_eq!(q.camera.as_deref(), Some("a"));
        assert_eq!(q.kind, Some(EventKind::IncidentOpened));
        assert_eq!(q.min_level, Some(Level::High));
        assert_eq!(q.limit, 5);
        assert!(q.since.is_some());
        assert_eq!(parse_query(None).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn stats_buckets_and_filters() {
        let q = parse_stats_query(Some("bucket=5m&camera=a&min_level=high")).unwrap();
        assert_eq!(q.bucket_s, 300);
        assert_eq!(q.filter.camera.as_deref(), Some("a"));
        assert_eq!(parse_stats_query(None).unwrap().bucket_s, 3600);
        assert_eq!(parse_stats_query(Some("bucket=90")).unwrap().bucket_s, 90);
        assert_eq!(parse_stats_query(Some("bucket=1d")).unwrap().bucket_s, 86_400);
        for (qs, needle) in [
            ("bucket=0s", "bucket"),
            ("bucket=2w", "bucket"),
            ("bucket=32d", "bucket"),
            ("limit=3", "does not apply"),
            ("colour=red", "unknown parameter"),
            ("bucket=1h&bucket=1d", "twice"),
        ] {
            let e = parse_stats_query(Some(qs)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{qs}");
            assert!(e.message.contains(needle), "{qs}: {}", e.message);
        }
    }

    #[test]
    fn rejects_bad_parameters_with_reasons() {
        for (qs, needle) in [
            ("limit=0", "1..=1000"),
            ("limit=x", "whole number"),
            ("kind=boom", "incident.opened"),
            ("min_level=severe", "critical"),
            ("since=yesterday", "RFC 3339"),
            ("colour=red", "unknown parameter"),
            ("camera=a&camera=b", "twice"),
            ("since=2026-11-23T09:00:00Z&until=2026-11-23T08:00:00Z", "before"),
        ] {
            let e = parse_query(Some(qs)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(e.message.contains(needle), "{qs}: {}", e.message);
        }
    }
}
