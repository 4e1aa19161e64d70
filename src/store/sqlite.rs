//! The embedded event store: SQLite in WAL mode, one writer and one reader connection,
//! surviving restarts. Filterable columns are stored beside the JSON payload.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, params_from_iter, types::Value};

use super::incidents::{self, IncidentIdPage, IncidentMark, IncidentQuery, IncidentState};
use super::{EventPage, EventQuery, EventStore, StatsQuery, StatsRow, StoreError, decode_cursor, encode_cursor, unix_ms};
use crate::model::Level;
use crate::model::{Event, EventKind};

pub struct SqliteStore {
    path: String,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    stats_budget: std::time::Duration,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    event_id     TEXT PRIMARY KEY,
    captured_ms  INTEGER NOT NULL,
    camera_id    TEXT NOT NULL,
    pipeline     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    incident_id  TEXT,
    level_rank   INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    score        REAL NOT NULL,
    classes      TEXT NOT NULL,  -- ',person,car,' for LIKE filters
    zones        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    stored_ms    INTEGER          -- wall clock at insert, Unix ms (retention)
);
CREATE INDEX IF NOT EXISTS events_time ON events (captured_ms DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_camera_time ON events (camera_id, captured_ms DESC);
-- Covers the incident listing (an aggregate over incident events only) and its marks.
CREATE INDEX IF NOT EXISTS events_incident_marks ON events (incident_id, captured_ms, kind, level_rank, score);
DROP INDEX IF EXISTS events_incident;
CREATE TABLE IF NOT EXISTS scene_state (
    camera_id    TEXT PRIMARY KEY,
    saved_at     INTEGER NOT NULL,  -- wall clock, Unix ms
    bytes        BLOB NOT NULL      -- pipeline::scene_state::SceneState::to_bytes
);
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let p = path.display().to_string();
        let err = |source| StoreError::Sqlite { path: p.clone(), source };
        let writer = Connection::open(path).map_err(err)?;
        writer.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;").map_err(err)?;
        writer.execute_batch(SCHEMA).map_err(err)?;
        migrate_stored_ms(&writer).map_err(err)?;
        let reader = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(err)?;
        reader.execute_batch("PRAGMA busy_timeout=5000;").map_err(err)?;
        Ok(Self { path: p, writer: Mutex::new(writer), reader: Mutex::new(reader), stats_budget: super::STATS_BUDGET })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Replaces a camera's scene state checkpoint.
    pub fn save_scene_state(&self, camera_id: &str, saved_at_ms: i64, bytes: &[u8]) -> Result<(), StoreError> {
        let conn = self.writer.lock();
        conn.prepare_cached("INSERT OR REPLACE INTO scene_state (camera_id, saved_at, bytes) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(rusqlite::params![camera_id, saved_at_ms, bytes]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A camera's incidents with no `incident.closed` event, oldest first: when each
    /// opened and its latest event.
    pub fn open_incidents_of(&self, camera_id: &str) -> Result<Vec<crate::pipeline::scene_state::StoredIncident>, StoreError> {
        let conn = self.reader.lock();
        let mut open = conn
            .prepare_cached(
                "SELECT incident_id, MIN(captured_ms) FROM events WHERE camera_id = ?1 AND incident_id IS NOT NULL AND kind IN (?2, ?3, ?4)
                 GROUP BY incident_id HAVING SUM(kind = 'incident.closed') = 0 ORDER BY MIN(captured_ms), incident_id",
            )
            .map_err(|e| self.err(e))?;
        let [o, u, c] = EventKind::LIFECYCLE.map(EventKind::as_str);
        let ids: Vec<(String, i64)> = open
            .query_map([camera_id, o, u, c], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut last = conn
            // The latest of the rules' events: an operator's action is no state of the scene.
            .prepare_cached("SELECT payload FROM events WHERE incident_id = ?1 AND kind IN (?2, ?3, ?4) ORDER BY captured_ms DESC, event_id DESC LIMIT 1")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, opened_ms) in ids {
            let payload: String = last.query_row([id.as_str(), o, u, c], |r| r.get(0)).map_err(|e| self.err(e))?;
            let last: Event = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt { id: id.clone(), reason: e.to_string() })?;
            let opened_at = time::OffsetDateTime::from_unix_timestamp_nanos(opened_ms as i128 * 1_000_000).unwrap_or(last.captured_at);
            out.push(crate::pipeline::scene_state::StoredIncident { opened_at, last });
        }
        Ok(out)
    }

    /// A camera's last checkpoint: when it was saved (Unix ms) and its bytes.
    pub fn load_scene_state(&self, camera_id: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached("SELECT saved_at, bytes FROM scene_state WHERE camera_id = ?1").map_err(|e| self.err(e))?;
        let mut rows = stmt.query([camera_id]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(r) => Ok(Some((r.get(0).map_err(|e| self.err(e))?, r.get(1).map_err(|e| self.err(e))?))),
            None => Ok(None),
        }
    }
}

impl crate::pipeline::scene_state::StateWriter for SqliteStore {
    fn save_state(&self, camera_id: &str, saved_at_ms: i64, bytes: &[u8], _: Option<&crate::model::SourcePosition>) -> Result<(), String> {
        self.save_scene_state(camera_id, saved_at_ms, bytes).map_err(|e| e.to_string())
    }

    fn delete_state(&self, camera_id: &str) -> Result<(), String> {
        let conn = self.writer.lock();
        conn.execute("DELETE FROM scene_state WHERE camera_id = ?1", [camera_id]).map(|_| ()).map_err(|e| self.err(e).to_string())
    }
}

impl crate::pipeline::scene_state::StateStore for SqliteStore {
    fn load_state(&self, camera_id: &str) -> Result<Option<(i64, Vec<u8>)>, String> {
        self.load_scene_state(camera_id).map_err(|e| e.to_string())
    }

    fn open_incidents(&self, camera_id: &str) -> Result<Vec<crate::pipeline::scene_state::StoredIncident>, String> {
        self.open_incidents_of(camera_id).map_err(|e| e.to_string())
    }
}

/// `,a,b,` so that `instr(col, ',a,')` matches whole items only.
fn csv_tag(items: Vec<String>) -> String {
    format!(",{},", items.join(","))
}

impl EventStore for SqliteStore {
    fn insert(&self, events: &[Arc<Event>]) -> Result<(), StoreError> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now_ms = unix_ms(time::OffsetDateTime::now_utc());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO events (event_id, captured_ms, camera_id, pipeline, kind, incident_id, level_rank, priority, score, classes, zones, payload, stored_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(|e| self.err(e))?;
            for ev in events {
                let payload = serde_json::to_string(&**ev).expect("events serialise");
                let classes = csv_tag(ev.classes());
                let zones = csv_tag(ev.zones());
                stmt.execute(rusqlite::params![
                    ev.event_id,
                    ev.captured_ms(),
                    ev.camera_id,
                    ev.pipeline,
                    ev.kind.as_str(),
                    ev.incident_id,
                    ev.risk.level.rank(),
                    ev.risk.priority,
                    ev.risk.score,
                    classes,
                    zones,
                    payload,
                    now_ms
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        let mut sql = String::from("SELECT event_id, captured_ms, payload FROM events WHERE 1=1");
        let mut args: Vec<Value> = Vec::new();
        push_filters(q, &mut sql, &mut args);
        if let Some(c) = &q.cursor {
            let (ms, id) = decode_cursor(c)?;
            sql.push_str(" AND (captured_ms < ? OR (captured_ms = ? AND event_id < ?))");
            args.extend([Value::Integer(ms), Value::Integer(ms), Value::Text(id)]);
        }
        let limit = q.limit.clamp(1, 1000);
        sql.push_str(" ORDER BY captured_ms DESC, event_id DESC LIMIT ?");
        args.push(Value::Integer(limit as i64 + 1));

        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows =
            stmt.query_map(params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))).map_err(|e| self.err(e))?;
        let mut events = Vec::new();
        let mut last = None;
        let mut more = false;
        for row in rows {
            let (id, ms, payload) = row.map_err(|e| self.err(e))?;
            if events.len() == limit {
                more = true;
                break;
            }
            let ev: Event = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt { id: id.clone(), reason: e.to_string() })?;
            last = Some((ms, id));
            events.push(ev);
        }
        let next_cursor = if more { last.map(|(ms, id)| encode_cursor(ms, &id)) } else { None };
        Ok(EventPage { events, next_cursor })
    }

    fn get(&self, event_id: &str) -> Result<Option<Event>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached("SELECT payload FROM events WHERE event_id = ?").map_err(|e| self.err(e))?;
        let mut rows = stmt.query([event_id]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(r) => {
                let payload: String = r.get(0).map_err(|e| self.err(e))?;
                serde_json::from_str(&payload).map(Some).map_err(|e| StoreError::Corrupt { id: event_id.into(), reason: e.to_string() })
            }
            None => Ok(None),
        }
    }

    fn count(&self) -> Result<u64, StoreError> {
        let conn = self.reader.lock();
        conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(|e| self.err(e))
    }

    fn stats(&self, q: &StatsQuery) -> Result<Vec<StatsRow>, StoreError> {
        let bucket_ms = (q.bucket_s.max(1) * 1000) as i64;
        let mut sql = String::from("SELECT (captured_ms / ?) * ? AS b, camera_id, level_rank, count(*) FROM events WHERE 1=1");
        let mut args: Vec<Value> = vec![Value::Integer(bucket_ms), Value::Integer(bucket_ms)];
        push_filters(&q.filter, &mut sql, &mut args);
        sql.push_str(" GROUP BY b, camera_id, level_rank ORDER BY b, camera_id, level_rank");
        if let Some(max) = q.max_rows {
            sql.push_str(" LIMIT ?");
            args.push(Value::Integer(i64::try_from(max).unwrap_or(i64::MAX - 1) + 1));
        }
        let conn = self.reader.lock();
        self.within_budget(&conn, || self.stats_rows(&conn, &sql, args))
    }

    fn incident_ids(&self, q: &IncidentQuery) -> Result<IncidentIdPage, StoreError> {
        let mut sql = String::from(
            "SELECT incident_id, MIN(captured_ms) AS opened, MAX(kind = 'incident.closed') AS closed FROM events
             WHERE incident_id IS NOT NULL AND kind IN (?, ?, ?)",
        );
        // The rules' events only: an operator's action neither opens nor extends one.
        let mut args: Vec<Value> = EventKind::LIFECYCLE.iter().map(|k| Value::Text(k.as_str().into())).collect();
        if let Some(c) = &q.camera {
            sql.push_str(" AND camera_id = ?");
            args.push(Value::Text(c.clone()));
        }
        if let Some(p) = &q.pipeline {
            sql.push_str(" AND pipeline = ?");
            args.push(Value::Text(p.clone()));
        }
        sql.push_str(" GROUP BY incident_id HAVING 1 = 1");
        if let Some(state) = q.state {
            sql.push_str(" AND closed = ?");
            args.push(Value::Integer((state == IncidentState::Closed) as i64));
        }
        if let Some(l) = q.min_level {
            sql.push_str(" AND MAX(level_rank) >= ?");
            args.push(Value::Integer(l.rank() as i64));
        }
        let (since, until) = incidents::window_ms(q);
        if let Some(until) = until {
            sql.push_str(" AND opened < ?");
            args.push(Value::Integer(until));
        }
        if let Some(since) = since {
            sql.push_str(" AND (closed = 0 OR MAX(captured_ms) >= ?)");
            args.push(Value::Integer(since));
        }
        if let Some(c) = &q.cursor {
            let (closed, ms, id) = incidents::decode_cursor(c)?;
            sql.push_str(" AND (closed > ? OR (closed = ? AND (opened < ? OR (opened = ? AND incident_id < ?))))");
            let closed = Value::Integer(closed as i64);
            args.extend([closed.clone(), closed, Value::Integer(ms), Value::Integer(ms), Value::Text(id)]);
        }
        let limit = q.limit.clamp(1, incidents::MAX_INCIDENTS_PER_PAGE);
        sql.push_str(" ORDER BY closed ASC, opened DESC, incident_id DESC LIMIT ?");
        args.push(Value::Integer(limit as i64 + 1));
        let conn = self.reader.lock();
        let rows: Vec<(String, i64, bool)> = self.within_budget(&conn, || {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)))?;
            rows.collect()
        })?;
        let more = rows.len() > limit;
        let next_cursor = if more { rows.get(limit - 1).map(|(id, ms, closed)| incidents::encode_cursor(*closed, *ms, id)) } else { None };
        Ok(IncidentIdPage { ids: rows.into_iter().take(limit).map(|r| r.0).collect(), next_cursor })
    }

    fn incident_marks(&self, ids: &[String]) -> Result<Vec<IncidentMark>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT incident_id, event_id, captured_ms, kind, level_rank, score FROM events WHERE incident_id IN ({})",
            vec!["?"; ids.len()].join(", ")
        );
        let conn = self.reader.lock();
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params_from_iter(ids.iter()), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?, r.get::<_, f64>(5)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (incident_id, event_id, captured_ms, kind, rank, score) = row.map_err(|e| self.err(e))?;
            let corrupt = |what: String| StoreError::Corrupt { id: event_id.clone(), reason: what };
            let kind = EventKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown kind {kind}")))?;
            let level = Level::from_rank(rank as u8).ok_or_else(|| corrupt(format!("unknown level rank {rank}")))?;
            out.push(IncidentMark { incident_id, event_id, captured_ms, kind, level, score });
        }
        Ok(out)
    }

    fn events_by_id(&self, ids: &[String]) -> Result<Vec<Event>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT event_id, payload FROM events WHERE event_id IN ({})", vec!["?"; ids.len()].join(", "));
        let conn = self.reader.lock();
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params_from_iter(ids.iter()), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, payload) = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt { id, reason: e.to_string() })?);
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("embedded SQLite store {}", self.path)
    }

    fn prune(&self, stored_before: time::OffsetDateTime) -> Result<u64, StoreError> {
        let cutoff = unix_ms(stored_before);
        let mut deleted = 0u64;
        // In slices, so a scene-state checkpoint (another thread) waits for one slice at
        // most; at most PRUNE_SLICES per call, so after a long downtime the sink's next
        // batch does not wait behind millions of deletions (the next call goes on).
        for _ in 0..PRUNE_SLICES {
            let n = {
                let conn = self.writer.lock();
                conn.prepare_cached("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE stored_ms < ?1 LIMIT 5000)")
                    .and_then(|mut st| st.execute([cutoff]))
                    .map_err(|e| self.err(e))?
            };
            deleted += n as u64;
            if n < 5000 {
                break;
            }
        }
        Ok(deleted)
    }
}

/// What a budgeted query may fail with: the store's own errors or SQLite's.
enum StoreErrorOrSqlite {
    Store(StoreError),
    Sqlite(rusqlite::Error),
}

impl From<StoreError> for StoreErrorOrSqlite {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<rusqlite::Error> for StoreErrorOrSqlite {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// Slices of 5000 rows one `prune` call deletes at most.
const PRUNE_SLICES: usize = (crate::store::PRUNE_MAX_PER_CALL / 5000) as usize;

/// Stores made before `stored_ms` existed get the column, and their events count as
/// stored now (their retention starts at the upgrade rather than deleting them all).
fn migrate_stored_ms(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'stored_ms'")?.exists([])?;
    if !has {
        // One transaction: a crash between adding the column and filling it would leave
        // rows whose NULL `stored_ms` no retention ever matches.
        conn.execute_batch("BEGIN IMMEDIATE; ALTER TABLE events ADD COLUMN stored_ms INTEGER;")?;
        let filled = conn.execute("UPDATE events SET stored_ms = ?1", [unix_ms(time::OffsetDateTime::now_utc())]);
        match filled.and_then(|_| conn.execute_batch("COMMIT")) {
            Ok(()) => tracing::info!("store: added stored_ms (retention) to an older events table"),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS events_stored ON events (stored_ms)")
}

impl SqliteStore {
    /// Runs an aggregate query, stopped at the work budget: a GROUP BY over years of
    /// events is a long scan, which must not hold the reader (and a blocking thread) for
    /// as long as it takes.
    fn within_budget<T, E: Into<StoreErrorOrSqlite>>(&self, conn: &Connection, f: impl FnOnce() -> Result<T, E>) -> Result<T, StoreError> {
        let deadline = std::time::Instant::now() + self.stats_budget;
        conn.progress_handler(10_000, Some(move || std::time::Instant::now() > deadline));
        let result = f().map_err(|e| match e.into() {
            StoreErrorOrSqlite::Store(e) => e,
            StoreErrorOrSqlite::Sqlite(e) => self.err(e),
        });
        conn.progress_handler(0, None::<fn() -> bool>);
        match result {
            Err(StoreError::Sqlite { source: rusqlite::Error::SqliteFailure(f, _), .. }) if f.code == rusqlite::ErrorCode::OperationInterrupted => {
                Err(StoreError::TooMuchWork(self.stats_budget))
            }
            other => other,
        }
    }

    fn stats_rows(&self, conn: &Connection, sql: &str, args: Vec<Value>) -> Result<Vec<StatsRow>, StoreError> {
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (b, camera_id, rank, n) = row.map_err(|e| self.err(e))?;
            let level = Level::from_rank(rank as u8).ok_or_else(|| StoreError::Corrupt { id: format!("level rank {rank}"), reason: "unknown level".into() })?;
            out.push(StatsRow { bucket_start_ms: b, camera_id, level, count: n as u64 });
        }
        Ok(out)
    }

    /// A smaller work budget for `/v1/stats` queries (tests; the default is
    /// [`super::STATS_BUDGET`]).
    pub fn with_stats_budget(mut self, budget: std::time::Duration) -> Self {
        self.stats_budget = budget;
        self
    }
}

/// The WHERE clauses every listing shares (the cursor aside).
fn push_filters(q: &EventQuery, sql: &mut String, args: &mut Vec<Value>) {
    let mut add = |clause: &str, v: Value| {
        sql.push_str(clause);
        args.push(v);
    };
    if let Some(c) = &q.camera {
        add(" AND camera_id = ?", Value::Text(c.clone()));
    }
    if let Some(p) = &q.pipeline {
        add(" AND pipeline = ?", Value::Text(p.clone()));
    }
    if let Some(t) = q.since {
        add(" AND captured_ms >= ?", Value::Integer(unix_ms(t)));
    }
    if let Some(t) = q.until {
        add(" AND captured_ms < ?", Value::Integer(unix_ms(t)));
    }
    if let Some(k) = q.kind {
        add(" AND kind = ?", Value::Text(k.as_str().into()));
    }
    if let Some(l) = q.min_level {
        add(" AND level_rank >= ?", Value::Integer(l.rank() as i64));
    }
    if let Some(c) = &q.class {
        add(" AND instr(classes, ?) > 0", Value::Text(format!(",{c},")));
    }
    if let Some(z) = &q.zone {
        add(" AND instr(zones, ?) > 0", Value::Text(format!(",{z},")));
    }
    if let Some(i) = &q.incident {
        add(" AND incident_id = ?", Value::Text(i.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_state_rows_are_replaced_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("argus.db");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_scene_state("cam").unwrap(), None);
        store.save_scene_state("cam", 1000, &[1, 2, 3]).unwrap();
        store.save_scene_state("cam", 2000, &[4, 5]).unwrap();
        store.save_scene_state("other", 1500, &[9]).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_scene_state("cam").unwrap(), Some((2000, vec![4, 5])));
        assert_eq!(store.load_scene_state("other").unwrap(), Some((1500, vec![9])));
    }

    #[test]
    fn open_incidents_are_those_without_a_close_with_their_first_time_and_latest_event() {
        use crate::model::{EventKind, sample_event};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("argus.db")).unwrap();
        let ev = |cam: &str, ms: i64, kind: EventKind, incident: &str| {
            let mut e = sample_event(cam, ms, kind);
            e.incident_id = Some(incident.into());
            e.event_id = format!("{incident}-{ms}");
            Arc::new(e)
        };
        let events = vec![
            ev("east", 1_000, EventKind::IncidentOpened, "a"),
            ev("east", 3_000, EventKind::IncidentUpdated, "a"),
            ev("east", 2_000, EventKind::IncidentUpdated, "a"),
            ev("east", 1_500, EventKind::IncidentOpened, "b"),
            ev("east", 2_500, EventKind::IncidentClosed, "b"),
            ev("west", 1_200, EventKind::IncidentOpened, "c"),
            Arc::new(sample_event("east", 4_000, EventKind::FrameAnalyzed)),
            // Operators' actions: the latest on "a", a note on closed "b", one on an
            // incident with no event of the rules (none of them opens or extends one).
            ev("east", 5_000, EventKind::IncidentAcknowledged, "a"),
            ev("east", 6_000, EventKind::IncidentNoted, "b"),
            ev("east", 500, EventKind::IncidentNoted, "z"),
        ];
        store.insert(&events).unwrap();
        let open = store.open_incidents_of("east").unwrap();
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].last.event_id, "a-3000", "the latest event of the rules, not the last inserted nor the acknowledgement");
        assert_eq!(open[0].opened_at, time::OffsetDateTime::from_unix_timestamp(1).unwrap());
        assert_eq!(store.open_incidents_of("west").unwrap()[0].last.event_id, "c-1200");
        assert!(store.open_incidents_of("north").unwrap().is_empty());
    }
}
