//! `GET /v1/incidents` (the board: open first) and `GET /v1/incidents/{id}` (one
//! incident's whole lifecycle), answered by whichever store serves the API; and the
//! operators' workflow, `POST /v1/incidents/{id}/ack`, `/assign` and `/note`.
//!
//! An action is an event of its own kind (`incident.acknowledged`, `.assigned`,
//! `.noted`) on the incident, published through the pipeline like the rules' events: in
//! one order with them to every sink (Kafka, ClickHouse, the embedded store, JSONL,
//! live clients), so other consoles see it and it survives restarts. It changes nothing
//! in the incident's life: the rules still open and close it.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use serde::Deserialize;

use super::auth::Caller;
use super::events::store_error;
use super::{ApiError, AppState};
use crate::model::{Event, EventKind, Level, OperatorAction, parse_time};
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

#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents", summary = "One incident and its lifecycle", description = "The incident's summary plus `lifecycle`: its events oldest first (the newest 500; `lifecycle_truncated` says when there are more, listed by /v1/events?incident=), and `clip` (url, sha256, bytes, frames, fps, width, height, from, to, duration_s, encoder) once its clip is stored.", params(("id" = String, Path, description = "incident_id (a UUID)")), responses((status = 200, description = "The incident", body = Object), (status = 400, description = "Not a UUID", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No event of this incident is stored", body = crate::api::openapi::ErrorBody), (status = 503, description = "The store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn one(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::bad_request(format!("`{id}` is not an incident id (a UUID)")));
    }
    let store = st.store.clone();
    let key = id.clone();
    let found =
        tokio::task::spawn_blocking(move || incidents::detail(&*store, &key)).await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(store_error)?;
    let detail = found.ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let mut body = serde_json::to_value(&detail).map_err(|e| ApiError::internal(e.to_string()))?;
    // The clip is a file of this member's evidence directory, the same whichever store
    // answered.
    if let Some(clip) = super::clips::info(&st, &id) {
        body["clip"] = serde_json::to_value(clip).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(axum::Json(body).into_response())
}

/// Where actions are published: the running pipeline ([`crate::pipeline::EventOutlet`]).
pub trait ActionOutlet: Send + Sync {
    /// Hands the event to every sink: its number on the bus, or why it cannot.
    fn publish(&self, ev: Event) -> Result<u64, String>;
    /// Events durable in every sink so far (an event is once this reaches its number).
    fn durable(&self) -> u64;
}

impl ActionOutlet for crate::pipeline::EventOutlet {
    fn publish(&self, ev: Event) -> Result<u64, String> {
        crate::pipeline::EventOutlet::publish(self, ev, PUBLISH_WAIT)
    }

    fn durable(&self) -> u64 {
        crate::pipeline::EventOutlet::durable(self)
    }
}

/// How long an action waits for the pipeline to take it, and then for every sink to
/// hold it durably (201); past that it is 202: published, not yet durable everywhere
/// (a sink spooling while its server is down counts as durable).
const PUBLISH_WAIT: Duration = Duration::from_secs(5);
const DURABLE_WAIT: Duration = Duration::from_secs(5);

/// Longest note or comment, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    assignee: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

/// The JSON body (an empty body is `{}` where every field is optional): 400 when it is
/// no JSON of that shape.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("the body must be JSON {shape}: {e}")).with_details(json!({ "expected": shape })))
}

/// A note or comment: trimmed, 1 to [`MAX_TEXT_CHARS`] characters, no control
/// characters but newlines and tabs; 422 otherwise.
fn text(field: &str, v: Option<String>, required: bool) -> Result<Option<String>, ApiError> {
    let bad = |why: String| ApiError::unprocessable(format!("`{field}`: {why}")).with_details(json!({ "field": field }));
    let Some(t) = v.map(|t| t.trim().to_string()) else {
        return if required { Err(bad("required".into())) } else { Ok(None) };
    };
    if t.is_empty() {
        return Err(bad("empty (write something, or leave it out where it is optional)".into()));
    }
    let n = t.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(bad(format!("{n} characters; at most {MAX_TEXT_CHARS}")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("control characters (only newlines and tabs are kept)".into()));
    }
    Ok(Some(t))
}

#[utoipa::path(post, path = "/v1/incidents/{id}/ack", tag = "incidents", summary = "Acknowledge an incident", description = "Records who (the API key's name) acknowledged it, when, and an optional comment, as an `incident.acknowledged` event published to every sink. The incident stays open until its rules close it. Body: `{\"text\"?: string}` or empty.", params(("id" = String, Path, description = "incident_id (a UUID)")), request_body(content = Object, description = "`{text?}`", content_type = "application/json"), responses((status = 201, description = "`{event, durable: true}`: stored in every sink", body = Object), (status = 202, description = "`{event, durable: false}`: published, not yet durable in every sink", body = Object), (status = 400, description = "Not a UUID, or not JSON of this shape", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No such incident", body = crate::api::openapi::ErrorBody), (status = 422, description = "Bad text", body = crate::api::openapi::ErrorBody), (status = 503, description = "The pipeline is not running, or the store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn ack(
    State(st): State<AppState>,
    Path(id): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: AckBody = body(&bytes, "{\"text\"?: string}")?;
    let action = OperatorAction { by: who(&st, caller), text: text("text", b.text, false)?, assignee: None };
    act(st, id, EventKind::IncidentAcknowledged, action).await
}

#[utoipa::path(post, path = "/v1/incidents/{id}/assign", tag = "incidents", summary = "Assign an incident to someone", description = "An `incident.assigned` event: to `assignee` (1 to 64 letters, digits, `.`, `_`, `-`), by the API key's name, with an optional comment.", params(("id" = String, Path, description = "incident_id (a UUID)")), request_body(content = Object, description = "`{assignee, text?}`", content_type = "application/json"), responses((status = 201, description = "`{event, durable: true}`", body = Object), (status = 202, description = "`{event, durable: false}`", body = Object), (status = 400, description = "Not a UUID, or not JSON of this shape", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No such incident", body = crate::api::openapi::ErrorBody), (status = 422, description = "Bad assignee or text", body = crate::api::openapi::ErrorBody), (status = 503, description = "The pipeline is not running, or the store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn assign(
    State(st): State<AppState>,
    Path(id): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: AssignBody = body(&bytes, "{\"assignee\": string, \"text\"?: string}")?;
    let assignee = b.assignee.trim().to_string();
    if !super::config::valid_operator_name(&assignee) {
        return Err(ApiError::unprocessable("`assignee`: 1 to 64 letters, digits, `.`, `_` or `-` (a name like alice or ops-desk-2)")
            .with_details(json!({ "field": "assignee" })));
    }
    let action = OperatorAction { by: who(&st, caller), text: text("text", b.text, false)?, assignee: Some(assignee) };
    act(st, id, EventKind::IncidentAssigned, action).await
}

#[utoipa::path(post, path = "/v1/incidents/{id}/note", tag = "incidents", summary = "Write a note on an incident", description = "An `incident.noted` event with `text` (1 to 2000 characters), by the API key's name.", params(("id" = String, Path, description = "incident_id (a UUID)")), request_body(content = Object, description = "`{text}`", content_type = "application/json"), responses((status = 201, description = "`{event, durable: true}`", body = Object), (status = 202, description = "`{event, durable: false}`", body = Object), (status = 400, description = "Not a UUID, or not JSON of this shape", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody), (status = 404, description = "No such incident", body = crate::api::openapi::ErrorBody), (status = 422, description = "Bad text", body = crate::api::openapi::ErrorBody), (status = 503, description = "The pipeline is not running, or the store is unreachable", body = crate::api::openapi::ErrorBody)))]
pub async fn note(
    State(st): State<AppState>,
    Path(id): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: NoteBody = body(&bytes, "{\"text\": string}")?;
    let action = OperatorAction { by: who(&st, caller), text: text("text", Some(b.text), true)?, assignee: None };
    act(st, id, EventKind::IncidentNoted, action).await
}

/// Who the caller is: the key's name, or `local` when the API needs no key.
fn who(st: &AppState, caller: Option<axum::Extension<Caller>>) -> String {
    match caller.and_then(|c| c.key) {
        Some(i) => st.keys.name_of(i),
        None => "local".into(),
    }
}

/// The last action's time here, in ms since the epoch.
static LAST_ACTION_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Now, to the millisecond events keep, and after every earlier action of this process:
/// the audit trail lists actions in the order they were taken, even two in one
/// millisecond (stores order by time, then by event id).
fn action_time() -> time::OffsetDateTime {
    use std::sync::atomic::Ordering;
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let prev = LAST_ACTION_MS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1))).unwrap_or(now);
    let ms = now.max(prev + 1);
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or_else(|_| time::OffsetDateTime::now_utc())
}

/// Publishes `action` on incident `id` and waits (bounded) until it is durable.
async fn act(st: AppState, id: String, kind: EventKind, action: OperatorAction) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::bad_request(format!("`{id}` is not an incident id (a UUID)")));
    }
    let Some(outlet) = st.actions.read().clone() else {
        return Err(ApiError::unavailable("operators' actions are published through the pipeline, which is not running here"));
    };
    let store = st.store.clone();
    let metrics = st.metrics.clone();
    let key = id.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<(Event, bool), ApiError> {
        let latest = incidents::latest_lifecycle_event(&*store, &key).map_err(store_error)?.ok_or_else(|| ApiError::not_found(format!("no incident {key}")))?;
        let ev = crate::model::action_event(&latest, kind, action, action_time());
        let n = outlet.publish(ev.clone()).map_err(|why| ApiError::unavailable(format!("the action was not published: {why}")))?;
        let deadline = std::time::Instant::now() + DURABLE_WAIT;
        while outlet.durable() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        metrics.incident_actions.with_label_values(&[kind.as_str()]).inc();
        Ok((ev, outlet.durable() >= n))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let (ev, durable) = done;
    let a = ev.action.as_ref().expect("an action event");
    tracing::info!(incident = %id, kind = kind.as_str(), by = %a.by, assignee = a.assignee.as_deref().unwrap_or(""), event_id = %ev.event_id, durable, "operator action on an incident");
    let status = if durable { axum::http::StatusCode::CREATED } else { axum::http::StatusCode::ACCEPTED };
    Ok((status, axum::Json(json!({ "event": ev, "durable": durable }))).into_response())
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

    #[test]
    fn actions_are_stamped_in_order_to_the_millisecond() {
        let times: Vec<time::OffsetDateTime> = (0..50).map(|_| action_time()).collect();
        assert!(times.windows(2).all(|w| w[1] > w[0]), "strictly increasing, even within one millisecond");
        assert!(times.iter().all(|t| t.nanosecond() % 1_000_000 == 0), "whole milliseconds, as stored");
    }

    #[test]
    fn texts_are_trimmed_bounded_and_printable() {
        assert_eq!(text("text", Some("  seen it\n".into()), true).unwrap().as_deref(), Some("seen it"));
        assert_eq!(text("text", None, false).unwrap(), None);
        for (v, needle) in [(None, "required"), (Some("   ".to_string()), "empty"), (Some("x".repeat(2001)), "at most"), (Some("a\u{7}b".into()), "control")] {
            let e = text("text", v, true).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message.contains(needle), "{}", e.message);
        }
        assert!(body::<AckBody>(b"", "{}").unwrap().text.is_none(), "an empty body is {{}}");
        assert_eq!(body::<AckBody>(b"{\"txt\": 1}", "{}").unwrap_err().status, axum::http::StatusCode::BAD_REQUEST);
    }
}
