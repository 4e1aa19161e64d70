//! Incidents as a resource (`GET /v1/incidents`, `GET /v1/incidents/{id}`), derived from
//! the stored incident events of every `EventStore` alike.
//!
//! Each store answers three small questions in its own SQL: which incidents match a
//! filter in board order (open first, newest opening first), the marks of given
//! incidents (one light row per event: time, kind, level, score), and events by id.
//! Everything an incident *says* (state, duration, peak, thumbnail, caption) is derived
//! here, once, from those answers, so the embedded store and ClickHouse cannot drift
//! apart in meaning; the shared store suite checks the SQL parts give equal answers.

use serde::Serialize;
use time::OffsetDateTime;

use super::{EventStore, StoreError, unix_ms};
use crate::model::timestamp::rfc3339_ms;
use crate::model::{Event, EventKind, Evidence, Level};

/// Open or closed: an incident is closed once its `incident.closed` event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Open,
    Closed,
}

impl IncidentState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// Filters for listing incidents, in board order: open ones first, then by opening time,
/// newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentQuery {
    pub camera: Option<String>,
    pub pipeline: Option<String>,
    pub state: Option<IncidentState>,
    /// Incidents whose peak level reached at least this.
    pub min_level: Option<Level>,
    /// Incidents active at some time in `[since, until)`: opened before `until`, and
    /// still open or with their last event at or after `since`.
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// One page of incident ids in board order.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentIdPage {
    pub ids: Vec<String>,
    pub next_cursor: Option<String>,
}

/// One stored incident event, without its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentMark {
    pub incident_id: String,
    pub event_id: String,
    pub captured_ms: i64,
    pub kind: EventKind,
    pub level: Level,
    pub score: f64,
}

/// Most incidents one page lists.
pub const MAX_INCIDENTS_PER_PAGE: usize = 200;
/// Most events a detail's `lifecycle` holds (the newest; the rest page through
/// `/v1/events?incident=`).
pub const MAX_LIFECYCLE: usize = 500;

/// What the board shows of one incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub incident_id: String,
    pub camera_id: String,
    pub pipeline: String,
    pub state: IncidentState,
    /// Capture time of its first event.
    #[serde(with = "rfc3339_ms")]
    pub opened_at: OffsetDateTime,
    /// Capture time of its latest event.
    #[serde(with = "rfc3339_ms")]
    pub last_event_at: OffsetDateTime,
    /// Capture time of its `incident.closed` event; absent while open.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub closed_at: Option<OffsetDateTime>,
    /// From opening to closing, or to the latest event while open (a board counts on
    /// from `opened_at`).
    pub duration_s: f64,
    /// The latest event's level, score and priority…
    pub level: Level,
    pub score: f64,
    pub priority: u8,
    /// …and the highest ever reached.
    pub peak_level: Level,
    pub peak_score: f64,
    /// Rules behind the latest event's risk.
    pub rules: Vec<String>,
    /// The latest event's caption.
    pub caption: String,
    /// Events of its lifecycle stored (the rules'; operators' actions apart).
    pub events: u64,
    pub latest_event_id: String,
    /// The evidence of its best-scoring event (the earliest of equals), else of its
    /// latest; absent when neither has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Evidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_event_id: Option<String>,
    /// The latest acknowledgement (absent: never acknowledged). Acknowledging closes
    /// nothing: the rules do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<ActionSummary>,
    /// The latest assignment, with its `assignee`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<ActionSummary>,
    /// Notes written on it.
    pub notes: u64,
    /// Operators' actions on it, all kinds (each is an event of its lifecycle).
    pub actions: u64,
}

/// Who did it, when, and what they wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionSummary {
    pub by: String,
    #[serde(with = "rfc3339_ms")]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    pub event_id: String,
}

impl ActionSummary {
    fn of(ev: &Event) -> Option<Self> {
        let a = ev.action.as_ref()?;
        Some(Self { by: a.by.clone(), at: ev.captured_at, text: a.text.clone(), assignee: a.assignee.clone(), event_id: ev.event_id.clone() })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One incident with its lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    /// Its events, operators' actions included, oldest first (at most
    /// [`MAX_LIFECYCLE`], the newest).
    pub lifecycle: Vec<Event>,
    /// More events than `lifecycle` holds: the rest via `/v1/events?incident=`.
    pub lifecycle_truncated: bool,
}

mod opt_time {
    use serde::Serializer;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => crate::model::timestamp::rfc3339_ms::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

/// Incidents matching `q`, summarised, in board order.
pub fn list(store: &dyn EventStore, q: &IncidentQuery) -> Result<IncidentPage, StoreError> {
    let page = store.incident_ids(q)?;
    let summaries = summaries(store, &page.ids)?;
    Ok(IncidentPage { incidents: summaries, next_cursor: page.next_cursor })
}

/// Incident `id` with its lifecycle; `None` when no event of it is stored.
pub fn detail(store: &dyn EventStore, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
    let Some(incident) = summaries(store, &[id.to_string()])?.pop() else {
        return Ok(None);
    };
    let mut newest = store.query(&super::EventQuery { incident: Some(id.to_string()), limit: MAX_LIFECYCLE, ..Default::default() })?;
    newest.events.reverse();
    Ok(Some(IncidentDetail { lifecycle_truncated: newest.next_cursor.is_some(), lifecycle: newest.events, incident }))
}

/// The latest event of incident `id`'s lifecycle (the rules' events, not operators'
/// actions); `None` when none is stored.
pub fn latest_lifecycle_event(store: &dyn EventStore, id: &str) -> Result<Option<Event>, StoreError> {
    let marks = store.incident_marks(&[id.to_string()])?;
    let life: Vec<&IncidentMark> = marks.iter().filter(|m| !m.kind.is_action()).collect();
    if life.is_empty() {
        return Ok(None);
    }
    let want = latest(&life).event_id.clone();
    Ok(store.events_by_id(&[want])?.pop())
}

/// Summaries of `ids`, in their order; ids with no stored lifecycle event are left out.
fn summaries(store: &dyn EventStore, ids: &[String]) -> Result<Vec<Incident>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = store.incident_marks(ids)?;
    let mut per: std::collections::HashMap<&str, Marks> = std::collections::HashMap::new();
    for m in &marks {
        let e = per.entry(m.incident_id.as_str()).or_default();
        if m.kind.is_action() { e.actions.push(m) } else { e.life.push(m) }
    }
    // The payloads needed: each incident's latest and best-scoring event, and its
    // latest acknowledgement and assignment.
    let mut picks = Vec::new();
    for id in ids {
        let Some(ms) = per.get(id.as_str()).filter(|m| !m.life.is_empty()) else { continue };
        let last_of = |kind: EventKind| ms.actions.iter().copied().filter(|m| m.kind == kind).max_by(|a, b| by_time(a, b)).map(|m| m.event_id.clone());
        let pick = Picks {
            latest: latest(&ms.life).event_id.clone(),
            best: best(&ms.life).event_id.clone(),
            ack: last_of(EventKind::IncidentAcknowledged),
            assign: last_of(EventKind::IncidentAssigned),
        };
        picks.push((id.clone(), pick));
    }
    let wanted: Vec<String> =
        picks.iter().flat_map(|(_, p)| [Some(p.latest.clone()), Some(p.best.clone()), p.ack.clone(), p.assign.clone()]).flatten().collect();
    let events: std::collections::HashMap<String, Event> = store.events_by_id(&wanted)?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
    let mut out = Vec::with_capacity(picks.len());
    for (id, p) in picks {
        let missing = |which: &str| StoreError::Corrupt { id: id.clone(), reason: format!("its {which} event is listed but cannot be read") };
        let latest = events.get(&p.latest).ok_or_else(|| missing("latest"))?;
        let best = events.get(&p.best).ok_or_else(|| missing("best-scoring"))?;
        let action = |pick: &Option<String>| pick.as_ref().and_then(|i| events.get(i)).and_then(ActionSummary::of);
        let mut inc = summarise(&per[id.as_str()].life, latest, best);
        let ms = &per[id.as_str()];
        inc.acknowledged = action(&p.ack);
        inc.assigned = action(&p.assign);
        inc.notes = ms.actions.iter().filter(|m| m.kind == EventKind::IncidentNoted).count() as u64;
        inc.actions = ms.actions.len() as u64;
        out.push(inc);
    }
    Ok(out)
}

/// One incident's marks: the rules' events and the operators' actions.
#[derive(Default)]
struct Marks<'a> {
    life: Vec<&'a IncidentMark>,
    actions: Vec<&'a IncidentMark>,
}

/// The events a summary reads in full.
struct Picks {
    latest: String,
    best: String,
    ack: Option<String>,
    assign: Option<String>,
}

/// Time order, then event id (the order `/v1/events` uses, reversed).
fn by_time(a: &IncidentMark, b: &IncidentMark) -> std::cmp::Ordering {
    (a.captured_ms, &a.event_id).cmp(&(b.captured_ms, &b.event_id))
}

/// The latest mark (ties: the greater event id).
fn latest<'a>(marks: &[&'a IncidentMark]) -> &'a IncidentMark {
    marks.iter().copied().max_by(|a, b| by_time(a, b)).expect("at least one mark")
}

/// The best-scoring mark; of equal scores the earliest, then the smaller event id.
fn best<'a>(marks: &[&'a IncidentMark]) -> &'a IncidentMark {
    marks
        .iter()
        .copied()
        .min_by(|a, b| b.score.total_cmp(&a.score).then(a.captured_ms.cmp(&b.captured_ms)).then(a.event_id.cmp(&b.event_id)))
        .expect("at least one mark")
}

fn summarise(marks: &[&IncidentMark], latest_ev: &Event, best_ev: &Event) -> Incident {
    let to_time = |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let opened_ms = marks.iter().map(|m| m.captured_ms).min().expect("at least one mark");
    let last_ms = marks.iter().map(|m| m.captured_ms).max().expect("at least one mark");
    let closed_ms = marks.iter().filter(|m| m.kind == EventKind::IncidentClosed).map(|m| m.captured_ms).min();
    let end_ms = closed_ms.unwrap_or(last_ms);
    let thumbnail = best_ev.evidence.clone().map(|e| (e, best_ev)).or_else(|| latest_ev.evidence.clone().map(|e| (e, latest_ev)));
    Incident {
        incident_id: latest_ev.incident_id.clone().unwrap_or_default(),
        camera_id: latest_ev.camera_id.clone(),
        pipeline: latest_ev.pipeline.clone(),
        state: if closed_ms.is_some() { IncidentState::Closed } else { IncidentState::Open },
        opened_at: to_time(opened_ms),
        last_event_at: to_time(last_ms),
        closed_at: closed_ms.map(to_time),
        duration_s: (end_ms - opened_ms).max(0) as f64 / 1000.0,
        level: latest_ev.risk.level,
        score: latest_ev.risk.score,
        priority: latest_ev.risk.priority,
        peak_level: marks.iter().map(|m| m.level).max().expect("at least one mark"),
        // From the best event's payload: a store's mark may hold a narrower copy
        // (ClickHouse: Float32) that orders the same.
        peak_score: best_ev.risk.score,
        rules: latest_ev.rules(),
        caption: latest_ev.caption.clone(),
        events: marks.len() as u64,
        latest_event_id: latest_ev.event_id.clone(),
        thumbnail_event_id: thumbnail.as_ref().map(|(_, e)| e.event_id.clone()),
        thumbnail: thumbnail.map(|(t, _)| t),
        acknowledged: None,
        assigned: None,
        notes: 0,
        actions: 0,
    }
}

/// Opaque incident cursor: the board position (closed, opened ms, id) of a page's last
/// incident.
pub(crate) fn encode_cursor(closed: bool, opened_ms: i64, id: &str) -> String {
    hex::encode(format!("i|{}|{opened_ms}|{id}", u8::from(closed)))
}

pub(crate) fn decode_cursor(c: &str) -> Result<(bool, i64, String), StoreError> {
    let raw = hex::decode(c).map_err(|_| StoreError::BadCursor)?;
    let s = String::from_utf8(raw).map_err(|_| StoreError::BadCursor)?;
    let mut parts = s.splitn(4, '|');
    if parts.next() != Some("i") {
        return Err(StoreError::BadCursor);
    }
    let closed = match parts.next() {
        Some("0") => false,
        Some("1") => true,
        _ => return Err(StoreError::BadCursor),
    };
    let ms = parts.next().and_then(|m| m.parse().ok()).ok_or(StoreError::BadCursor)?;
    let id = parts.next().ok_or(StoreError::BadCursor)?;
    Ok((closed, ms, id.to_string()))
}

/// `since`/`until` as the stores compare them (Unix ms).
pub(crate) fn window_ms(q: &IncidentQuery) -> (Option<i64>, Option<i64>) {
    (q.since.map(unix_ms), q.until.map(unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample_event;

    fn mark(id: &str, ms: i64, kind: EventKind, level: Level, score: f64) -> IncidentMark {
        IncidentMark { incident_id: "inc".into(), event_id: id.into(), captured_ms: ms, kind, level, score }
    }

    #[test]
    fn cursors_round_trip_and_refuse_event_cursors() {
        let c = encode_cursor(true, 1234, "abc|def");
        assert_eq!(decode_cursor(&c).unwrap(), (true, 1234, "abc|def".to_string()));
        assert!(decode_cursor(&crate::store::encode_cursor(1, "x")).is_err(), "an event cursor is not an incident cursor");
        assert!(decode_cursor("zz").is_err());
    }

    #[test]
    fn the_best_is_the_highest_score_and_the_earliest_of_equals() {
        let marks = [
            mark("a", 1000, EventKind::IncidentOpened, Level::Medium, 0.5),
            mark("c", 3000, EventKind::IncidentUpdated, Level::High, 0.8),
            mark("b", 2000, EventKind::IncidentUpdated, Level::High, 0.8),
            mark("d", 4000, EventKind::IncidentClosed, Level::Low, 0.1),
        ];
        let refs: Vec<&IncidentMark> = marks.iter().collect();
        assert_eq!(best(&refs).event_id, "b");
        assert_eq!(latest(&refs).event_id, "d");
    }

    #[test]
    fn a_summary_says_state_duration_peak_and_thumbnail() {
        let marks = [mark("a", 1000, EventKind::IncidentOpened, Level::Medium, 0.5), mark("b", 3500, EventKind::IncidentClosed, Level::Low, 0.2)];
        let refs: Vec<&IncidentMark> = marks.iter().collect();
        let mut first = sample_event("east", 1000, EventKind::IncidentOpened);
        first.evidence = Some(Evidence { url: "/v1/events/a/evidence.jpg".into(), sha256: "0".repeat(64), bytes: 5, clip: None });
        first.event_id = "a".into();
        let mut last = sample_event("east", 3500, EventKind::IncidentClosed);
        last.event_id = "b".into();
        last.caption = "Nobody is left.".into();
        let s = summarise(&refs, &last, &first);
        assert_eq!(s.state, IncidentState::Closed);
        assert_eq!(s.duration_s, 2.5);
        assert_eq!(s.peak_level, Level::Medium);
        assert_eq!(s.caption, "Nobody is left.");
        assert_eq!(s.thumbnail_event_id.as_deref(), Some("a"));
        assert_eq!(s.closed_at, Some(OffsetDateTime::from_unix_timestamp_nanos(3_500_000_000).unwrap()));
        let open = summarise(&refs[..1], &first, &first);
        assert_eq!((open.state, open.closed_at, open.duration_s), (IncidentState::Open, None, 0.0));
        let json = serde_json::to_value(&open).unwrap();
        assert!(json.get("closed_at").is_none(), "{json}");
        assert_eq!(json["state"], "open");
    }
}
