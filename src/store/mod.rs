//! Where events are kept for queries: one `EventStore` trait, the embedded SQLite store
//! by default (ClickHouse joins it behind the same trait).

#[cfg(feature = "clickhouse")]
pub mod clickhouse;
pub mod incidents;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::Level;
use crate::model::{Event, EventKind};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Embedded SQLite event store (survives restarts); serves /v1/events.
    pub path: PathBuf,
    /// Events stored longer ago than this are deleted (days, by when they were stored,
    /// not when they were captured: re-processing an old recording keeps its events);
    /// 0: keep everything.
    pub retention_days: f64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("var/argus.db"), retention_days: 30.0 }
    }
}

/// `store.*` keys.
pub fn validate(c: &StoreConfig, iss: &mut crate::model::Issues) {
    if c.path.as_os_str().is_empty() {
        iss.add("store.path", "empty path", "set e.g. \"var/argus.db\"");
    }
    if !(0.0..=36_500.0).contains(&c.retention_days) {
        iss.add("store.retention_days", format!("{} days", c.retention_days), "use 0 (keep everything) or up to 36500 days, e.g. 30");
    }
}

/// The store the API queries instead of the embedded one: ClickHouse, when it is enabled
/// with `serve_api`.
pub fn api_store(ch: &crate::clients::clickhouse::ClickHouseConfig) -> Result<Option<Arc<dyn EventStore>>, StoreError> {
    if !(ch.enabled && ch.serve_api) {
        return Ok(None);
    }
    #[cfg(feature = "clickhouse")]
    return Ok(Some(Arc::new(clickhouse::ClickHouseStore::new(ch)?)));
    // `argus check` refuses `enabled = true` in a build without ClickHouse.
    #[cfg(not(feature = "clickhouse"))]
    Ok(None)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("store: bad cursor (pass back the `next_cursor` of a previous page unchanged)")]
    BadCursor,
    #[error("store: stored event {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("store: {0}")]
    Io(String),
    #[error("ClickHouse: {0}")]
    ClickHouse(String),
    /// A query stopped at its work budget (`STATS_BUDGET`).
    #[error("store: the query was stopped after {0:?} of work")]
    TooMuchWork(std::time::Duration),
}

/// How long the embedded store may work on one `/v1/stats` query before it is stopped.
pub const STATS_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Filters for listing events; newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub camera: Option<String>,
    pub pipeline: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub kind: Option<EventKind>,
    pub min_level: Option<Level>,
    pub class: Option<String>,
    pub zone: Option<String>,
    pub incident: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Rows one `prune` call deletes at most, so a writer never waits long behind it.
pub const PRUNE_MAX_PER_CALL: u64 = 100_000;

/// Counts per camera × level × time bucket (`GET /v1/stats`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsQuery {
    /// Filters as for listing; `limit` and `cursor` are ignored.
    pub filter: EventQuery,
    /// Bucket width in seconds (≥ 1).
    pub bucket_s: u64,
    /// At most this many rows plus one come back (the caller refuses more); `None`: all.
    /// It bounds the answer; the work of a query is bounded by the store's own budget
    /// (SQLite's progress handler, ClickHouse's settings).
    pub max_rows: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StatsRow {
    /// Start of the bucket, Unix milliseconds (buckets are aligned to the epoch).
    pub bucket_start_ms: i64,
    pub camera_id: String,
    pub level: Level,
    pub count: u64,
}

pub trait EventStore: Send + Sync {
    /// Inserts events; an event already stored (same `event_id`) is replaced, so replays
    /// are idempotent. Returns once the events are durable.
    fn insert(&self, events: &[Arc<Event>]) -> Result<(), StoreError>;
    fn query(&self, q: &EventQuery) -> Result<EventPage, StoreError>;
    fn get(&self, event_id: &str) -> Result<Option<Event>, StoreError>;
    fn count(&self) -> Result<u64, StoreError>;
    /// Rows ordered by bucket, camera, level; empty buckets are left out.
    fn stats(&self, q: &StatsQuery) -> Result<Vec<StatsRow>, StoreError>;
    /// Incidents matching `q` in board order: open first (no `incident.closed` stored),
    /// then by opening time (their first event's capture time), newest first, then by
    /// id, descending. Paged with `incidents::encode_cursor`. Summaries come from
    /// [`incidents::list`].
    fn incident_ids(&self, q: &incidents::IncidentQuery) -> Result<incidents::IncidentIdPage, StoreError>;
    /// One mark per stored event of the incidents `ids`, in any order.
    fn incident_marks(&self, ids: &[String]) -> Result<Vec<incidents::IncidentMark>, StoreError>;
    /// The stored events among `ids`, in any order (unknown ids are left out).
    fn events_by_id(&self, ids: &[String]) -> Result<Vec<Event>, StoreError>;
    /// Where the events live, for logs and `/v1/info`.
    fn describe(&self) -> String;
    /// Deletes events stored before `stored_before`, at most [`PRUNE_MAX_PER_CALL`]
    /// (call again while it deletes that many); how many. Stores with their own
    /// retention (ClickHouse TTL) keep theirs.
    fn prune(&self, stored_before: OffsetDateTime) -> Result<u64, StoreError> {
        let _ = stored_before;
        Ok(0)
    }
}

/// Opaque paging cursor: position of the last event of a page in (time, id) order.
pub(crate) fn encode_cursor(captured_ms: i64, event_id: &str) -> String {
    hex::encode(format!("{captured_ms}|{event_id}"))
}

pub(crate) fn decode_cursor(c: &str) -> Result<(i64, String), StoreError> {
    let raw = hex::decode(c).map_err(|_| StoreError::BadCursor)?;
    let s = String::from_utf8(raw).map_err(|_| StoreError::BadCursor)?;
    let (ms, id) = s.split_once('|').ok_or(StoreError::BadCursor)?;
    Ok((ms.parse().map_err(|_| StoreError::BadCursor)?, id.to_string()))
}

pub(crate) fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
