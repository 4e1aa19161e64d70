//! `GET /v1/incidents` (the board: open first) and `GET /v1/incidents/{id}` (one
//! incident's whole lifecycle), answered by whichever store serves the API.

use std::collections::HashSet;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::events::store_error;
use super::{ApiError, AppState};
use crate::model::{Level, parse_time};
use crate::store::incidents::{self, IncidentQuery, IncidentState, MAX_INCIDENTS_PER_PAGE};

pub const DEFAULT_LIMIT: usize = 50;
const PARAMS: &[&str] = &["camera", "pipeline", "state", "min_level", "since", "until", "limit", "cursor"];

/// Parses the query string strictly, like `/v1/events`: unknown, repeated or malformed
/// parameters are a 400 that names the parameter and the fix.
pub fn parse_incident_query(raw: Option<&str>) -> Result<IncidentQuery, ApiError> {
    let mut q = IncidentQuery { limit: DEFAULT_LIMIT, ..Default::default() };
    let mut seen = HashSet::new();
    for (k, v) in super::error::query_pairs(raw)? {
        if !PARAMS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("unknown parameter `{k}`")).with_details(json!({ "parameter": k, "allowed": PARAMS })));
        }
        if !seen.insert(k.clone()) {
            return Err(ApiError::bad_request(format!("parameter `{k}` given twice")).with_details(json!({ "parameter": k })));
        }
        let bad = |why: &str| ApiError::bad_request(format!("parameter `{k}`: {why}")).with_details(json!({ "parameter": k, "value": v }));
        match k.as_str() {
            "camera" => q.camera = Some(v),
            "pipeline" => q.pipeline = Some(v),
            "cursor" => q.cursor = Some(v),
            "state" => q.state = Some(IncidentState::parse(&v).ok_or_else(|| bad("expected open or closed"))?),
            "min_level" => q.min_level = Some(Level::parse(&v).ok_or_else(|| bad("expected low, medium, high or critical"))?),
            "since" => q.since = Some(parse_time(&v).map_err(|_| bad("expected an RFC 3339 time like 2026-11-23T08:00:00Z"))?),
            "until" => q.until = Some(parse_time(&v).map_err(|_| bad("expected an RFC 3339 time like 2026-11-23T09:00:00Z"))?),
            "limit" => {
                let n: usize = v.parse().map_err(|_| bad("expected a whole number"))?;
                if n == 0 || n > MAX_INCIDENTS_PER_PAGE {
                    return Err(bad(&format!("must be 1..={MAX_INCIDENTS_PER_PAGE}")));
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

#[utoipa::path(get, path = "/v1/incidents", tag = "incidents", summary = "Incidents, open first, then newest opening first", description = "Each incident summarised from its stored events: state, opening/closing times, duration, latest and peak level, caption, and a thumbnail (the evidence of its best-scoring event).", params(
        ("camera" = Option<String>, Query, description = "Camera id"),
        ("pipeline" = Option<String>, Query, description = "Pipeline name"),
        ("state" = Option<IncidentState>, Query, description = "open or closed"),
        ("min_level" = Option<crate::model::Level>, Query, description = "Incidents whose peak level reached at least this"),
        ("since" = Option<String>, Query, description = "RFC 3339: incidents still open or with an event at or after this"),
        ("until" = Option<String>, Query, description = "RFC 3339: incidents opened before this"),
        ("limit" = Option<u32>, Query, description = "1..=200, default 50", minimum = 1, maximum = 200),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ), responses((status = 200, description = "`{incidents: [Incident], next_cursor?}`", body = Object), (status = 400, description = "Bad parameter", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 422, description = "The query needs more work than a request may take", body = crate::api::openapi::ErrorBody), (status = 503, description = "The store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = parse_incident_query(raw.as_deref())?;
    let store = st.store.clone();
    let page = tokio::task::spawn_blocking(move || incidents::list(&*store, &q)).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(store_error)?;
    Ok(axum::Json(page).into_response())
}

#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents", summary = "One incident and its lifecycle", description = "The incident's summary plus `lifecycle`: its events oldest first (the newest 500; `lifecycle_truncated` says when there are more, listed by /v1/events?incident=).", params(("id" = String, Path, description = "incident_id (a UUID)")), responses((status = 200, description = "The incident", body = Object), (status = 400, description = "Not a UUID", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No event of this incident is stored", body = crate::api::openapi::ErrorBody), (status = 503, description = "The store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn one(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::bad_request(format!("`{id}` is not an incident id (a UUID)")));
    }
    let store = st.store.clone();
    let key = id.clone();
    let found = tokio::task::spawn_blocking(move || incidents::detail(&*store, &key)).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(store_error)?;
    let detail = found.ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    Ok(axum::Json(detail).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_and_refuses_bad_ones_with_reasons() {
        let q = parse_incident_query(Some("camera=a&state=open&min_level=high&limit=5&since=2026-11-23T08:00:00Z")).unwrap();
        assert_eq!((q.camera.as_deref(), q.state, q.min_level, q.limit), (Some("a"), Some(IncidentState::Open), Some(Level::High), 5));
        assert_eq!(parse_incident_query(None).unwrap().limit, DEFAULT_LIMIT);
        for (qs, needle) in [
            ("state=acked", "open or closed"),
            ("limit=0", "1..=200"),
            ("limit=201", "1..=200"),
            ("min_level=severe", "critical"),
            ("kind=incident.opened", "unknown parameter"),
            ("state=open&state=closed", "twice"),
            ("since=2026-11-23T09:00:00Z&until=2026-11-23T08:00:00Z", "before"),
        ] {
            let e = parse_incident_query(Some(qs)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{qs}");
            assert!(e.message.contains(needle), "{qs}: {}", e.message);
        }
    }
}
