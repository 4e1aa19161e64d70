//! `GET /v1/events` and `GET /v1/events/{id}`.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::event::{EventKind, parse_time};
use crate::risk::Level;
use crate::store::{EventQuery, StoreError};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
const PARAMS: &[&str] = &["camera", "pipeline", "since", "until", "kind", "min_level", "class", "zone", "incident", "limit", "cursor"];

/// Parses the query string strictly: unknown or malformed parameters are a 400 that
/// says which and how to fix it.
pub fn parse_query(raw: Option<&str>) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery { limit: DEFAULT_LIMIT, ..Default::default() };
    let pairs: Vec<(String, String)> = match raw {
        Some(r) => serde_urlencoded::from_str(r).map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?,
        None => Vec::new(),
    };
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
            "kind" => q.kind = Some(EventKind::parse(&v).ok_or_else(|| bad("expected incident.opened, incident.updated, incident.closed or frame.analyzed"))?),
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
    if let (Some(a), Some(b)) = (q.since, q.until) {
        if a >= b {
            return Err(ApiError::bad_request("`since` must be before `until`"));
        }
    }
    Ok(q)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::BadCursor => ApiError::bad_request(e.to_string()),
        other => {
            tracing::error!(error = %other, "event store query failed");
            ApiError::internal("the event store failed; see the server log")
        }
    }
}

pub async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = parse_query(raw.as_deref())?;
    let store = st.store.clone();
    let page = tokio::task::spawn_blocking(move || store.query(&q))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(store_error)?;
    Ok(axum::Json(page).into_response())
}

pub async fn one(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::bad_request(format!("`{id}` is not an event id (a UUID)")));
    }
    let store = st.store.clone();
    let key = id.clone();
    let ev = tokio::task::spawn_blocking(move || store.get(&key))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(store_error)?;
    match ev {
        Some(ev) => Ok(axum::Json(ev).into_response()),
        None => Err(ApiError::not_found(format!("no event {id}"))),
    }
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
