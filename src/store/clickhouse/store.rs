//! `EventStore` on ClickHouse: the same filters, order and paging as the embedded store
//! (a shared test suite runs against both). Reads use `FINAL` so replayed events count
//! once even before ClickHouse merged them away.

use std::sync::Arc;

use clickhouse::Row;
use serde::Deserialize;

use super::{Conn, ch_err, insert_events, migrate};
use crate::clients::clickhouse::ClickHouseConfig;
use crate::model::Level;
use crate::model::{Event, EventKind};
use crate::store::incidents::{self, IncidentIdPage, IncidentMark, IncidentQuery, IncidentState};
use crate::store::{EventPage, EventQuery, EventStore, StatsQuery, StatsRow, StoreError, decode_cursor, encode_cursor, unix_ms};

pub struct ClickHouseStore {
    conn: Conn,
}

#[derive(Row, Deserialize)]
struct PayloadRow {
    id: String,
    ts_ms: u64,
    payload: String,
}

#[derive(Row, Deserialize)]
struct StatsLine {
    bucket: u64,
    camera_id: String,
    level: String,
    n: u64,
}

#[derive(Row, Deserialize)]
struct IncidentLine {
    id: String,
    opened: u64,
    closed: u8,
}

#[derive(Row, Deserialize)]
struct MarkLine {
    incident_id: String,
    id: String,
    ts_ms: u64,
    kind: String,
    level: String,
    score: f32,
}

/// A value bound to a `?`.
enum Arg {
    Str(String),
    U64(u64),
}

impl ClickHouseStore {
    /// Connects lazily: queries fail with a `ClickHouse` error (503 in the API) while
    /// the server is down.
    pub fn new(cfg: &ClickHouseConfig) -> Result<Self, StoreError> {
        Ok(Self { conn: Conn::new(cfg)? })
    }

    /// Applies the migrations (also done by the sink); for tools and tests.
    pub fn migrate(&self, retention_days: u32) -> Result<Vec<u32>, StoreError> {
        migrate(&self.conn, retention_days)
    }

    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    fn bind(&self, sql: &str, args: Vec<Arg>) -> clickhouse::query::Query {
        let mut q = self.conn.client().query(sql);
        for a in args {
            q = match a {
                Arg::Str(s) => q.bind(s),
                Arg::U64(n) => q.bind(n),
            };
        }
        q
    }
}

fn push_filters(q: &EventQuery, sql: &mut String, args: &mut Vec<Arg>) {
    let mut add = |clause: &str, v: Arg| {
        sql.push_str(clause);
        args.push(v);
    };
    if let Some(c) = &q.camera {
        add(" AND camera_id = ?", Arg::Str(c.clone()));
    }
    if let Some(p) = &q.pipeline {
        add(" AND pipeline = ?", Arg::Str(p.clone()));
    }
    // Times before 1970 match nothing stored; clamp instead of wrapping.
    if let Some(t) = q.since {
        add(" AND ts_ms >= ?", Arg::U64(unix_ms(t).max(0) as u64));
    }
    if let Some(t) = q.until {
        add(" AND ts_ms < ?", Arg::U64(unix_ms(t).max(0) as u64));
    }
    if let Some(k) = q.kind {
        add(" AND kind = ?", Arg::Str(k.as_str().into()));
    }
    if let Some(c) = &q.class {
        add(" AND has(classes, ?)", Arg::Str(c.clone()));
    }
    if let Some(z) = &q.zone {
        add(" AND has(zones, ?)", Arg::Str(z.clone()));
    }
    if let Some(i) = &q.incident {
        add(" AND incident_id = ?", Arg::Str(i.clone()));
    }
    if let Some(l) = q.min_level {
        // Enum8 compared by name, one bound value per level at or above `l`.
        let levels: Vec<Level> = [Level::Low, Level::Medium, Level::High, Level::Critical].into_iter().filter(|x| *x >= l).collect();
        sql.push_str(" AND level IN (");
        sql.push_str(&vec!["?"; levels.len()].join(", "));
        sql.push(')');
        args.extend(levels.into_iter().map(|x| Arg::Str(x.as_str().into())));
    }
}

fn parse_payload(id: &str, payload: &str) -> Result<Event, StoreError> {
    serde_json::from_str(payload).map_err(|e| StoreError::Corrupt { id: id.to_string(), reason: e.to_string() })
}

impl EventStore for ClickHouseStore {
    /// Direct inserts (tests, tools); the pipeline writes through `ClickHouseSink`.
    fn insert(&self, events: &[Arc<Event>]) -> Result<(), StoreError> {
        insert_events(&self.conn, events, false).map(|_| ())
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        let mut sql = String::from("SELECT toString(event_id) AS id, ts_ms, payload FROM events FINAL WHERE 1 = 1");
        let mut args = Vec::new();
        push_filters(q, &mut sql, &mut args);
        if let Some(c) = &q.cursor {
            let (ms, id) = decode_cursor(c)?;
            let ms = ms.max(0) as u64;
            sql.push_str(" AND (ts_ms < ? OR (ts_ms = ? AND toString(event_id) < ?))");
            args.extend([Arg::U64(ms), Arg::U64(ms), Arg::Str(id)]);
        }
        let limit = q.limit.clamp(1, 1000);
        sql.push_str(" ORDER BY ts_ms DESC, id DESC LIMIT ?");
        args.push(Arg::U64(limit as u64 + 1));
        let rows: Vec<PayloadRow> = self.conn.block_on(self.bind(&sql, args).fetch_all()).map_err(ch_err)?;
        let more = rows.len() > limit;
        let mut events = Vec::with_capacity(limit);
        let mut last = None;
        for r in rows.into_iter().take(limit) {
            events.push(parse_payload(&r.id, &r.payload)?);
            last = Some((r.ts_ms as i64, r.id));
        }
        let next_cursor = if more { last.map(|(ms, id)| encode_cursor(ms, &id)) } else { None };
        Ok(EventPage { events, next_cursor })
    }

    fn get(&self, event_id: &str) -> Result<Option<Event>, StoreError> {
        let Ok(id) = uuid::Uuid::parse_str(event_id) else {
            return Ok(None);
        };
        let q =
            self.bind("SELECT toString(event_id) AS id, ts_ms, payload FROM events FINAL WHERE event_id = toUUID(?) LIMIT 1", vec![Arg::Str(id.to_string())]);
        let row: Option<PayloadRow> = self.conn.block_on(q.fetch_optional()).map_err(ch_err)?;
        row.map(|r| parse_payload(&r.id, &r.payload)).transpose()
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.conn.block_on(self.conn.client().query("SELECT count() FROM events FINAL").fetch_one::<u64>()).map_err(ch_err)
    }

    fn stats(&self, q: &StatsQuery) -> Result<Vec<StatsRow>, StoreError> {
        let bucket_ms = q.bucket_s.max(1) * 1000;
        let mut sql = String::from("SELECT intDiv(ts_ms, ?) * ? AS bucket, camera_id, toString(level) AS level, count() AS n FROM events FINAL WHERE 1 = 1");
        let mut args = vec![Arg::U64(bucket_ms), Arg::U64(bucket_ms)];
        push_filters(&q.filter, &mut sql, &mut args);
        sql.push_str(" GROUP BY bucket, camera_id, level");
        if let Some(max) = q.max_rows {
            sql.push_str(&format!(" LIMIT {}", max + 1));
        }
        let lines: Vec<StatsLine> = self.conn.block_on(self.bind(&sql, args).fetch_all()).map_err(ch_err)?;
        let mut out = Vec::with_capacity(lines.len());
        for l in lines {
            let level = Level::parse(&l.level).ok_or_else(|| StoreError::Corrupt { id: format!("level {}", l.level), reason: "unknown level".into() })?;
            out.push(StatsRow { bucket_start_ms: l.bucket as i64, camera_id: l.camera_id, level, count: l.n });
        }
        out.sort();
        Ok(out)
    }

    fn incident_ids(&self, q: &IncidentQuery) -> Result<IncidentIdPage, StoreError> {
        let mut sql = String::from(
            "SELECT incident_id AS id, min(ts_ms) AS opened, max(kind = 'incident.closed') AS closed FROM events FINAL
             WHERE incident_id != '' AND kind IN ('incident.opened', 'incident.updated', 'incident.closed')",
        );
        // The rules' events only: an operator's action neither opens nor extends one.
        let mut args = Vec::new();
        if let Some(c) = &q.camera {
            sql.push_str(" AND camera_id = ?");
            args.push(Arg::Str(c.clone()));
        }
        if let Some(p) = &q.pipeline {
            sql.push_str(" AND pipeline = ?");
            args.push(Arg::Str(p.clone()));
        }
        sql.push_str(" GROUP BY incident_id HAVING 1 = 1");
        if let Some(state) = q.state {
            sql.push_str(" AND closed = ?");
            args.push(Arg::U64((state == IncidentState::Closed) as u64));
        }
        if let Some(l) = q.min_level {
            sql.push_str(" AND max(CAST(level AS Int8)) >= ?");
            args.push(Arg::U64(l.rank() as u64));
        }
        // Times before 1970 match nothing stored; clamp instead of wrapping.
        let (since, until) = incidents::window_ms(q);
        if let Some(until) = until {
            sql.push_str(" AND opened < ?");
            args.push(Arg::U64(until.max(0) as u64));
        }
        if let Some(since) = since {
            sql.push_str(" AND (closed = 0 OR max(ts_ms) >= ?)");
            args.push(Arg::U64(since.max(0) as u64));
        }
        if let Some(c) = &q.cursor {
            let (closed, ms, id) = incidents::decode_cursor(c)?;
            let ms = ms.max(0) as u64;
            sql.push_str(" AND (closed > ? OR (closed = ? AND (opened < ? OR (opened = ? AND id < ?))))");
            args.extend([Arg::U64(closed as u64), Arg::U64(closed as u64), Arg::U64(ms), Arg::U64(ms), Arg::Str(id)]);
        }
        let limit = q.limit.clamp(1, incidents::MAX_INCIDENTS_PER_PAGE);
        sql.push_str(" ORDER BY closed ASC, opened DESC, id DESC LIMIT ?");
        args.push(Arg::U64(limit as u64 + 1));
        let rows: Vec<IncidentLine> = self.conn.block_on(self.bind(&sql, args).fetch_all()).map_err(ch_err)?;
        let more = rows.len() > limit;
        let next_cursor = if more { rows.get(limit - 1).map(|r| incidents::encode_cursor(r.closed != 0, r.opened as i64, &r.id)) } else { None };
        Ok(IncidentIdPage { ids: rows.into_iter().take(limit).map(|r| r.id).collect(), next_cursor })
    }

    fn incident_marks(&self, ids: &[String]) -> Result<Vec<IncidentMark>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT incident_id, toString(event_id) AS id, ts_ms, toString(kind) AS kind, toString(level) AS level, score FROM events FINAL WHERE incident_id IN ({})",
            vec!["?"; ids.len()].join(", ")
        );
        let args = ids.iter().map(|i| Arg::Str(i.clone())).collect();
        let rows: Vec<MarkLine> = self.conn.block_on(self.bind(&sql, args).fetch_all()).map_err(ch_err)?;
        rows.into_iter()
            .map(|r| {
                let corrupt = |what: String| StoreError::Corrupt { id: r.id.clone(), reason: what };
                let kind = EventKind::parse(&r.kind).ok_or_else(|| corrupt(format!("unknown kind {}", r.kind)))?;
                let level = Level::parse(&r.level).ok_or_else(|| corrupt(format!("unknown level {}", r.level)))?;
                Ok(IncidentMark { incident_id: r.incident_id, event_id: r.id, captured_ms: r.ts_ms as i64, kind, level, score: r.score as f64 })
            })
            .collect()
    }

    fn events_by_id(&self, ids: &[String]) -> Result<Vec<Event>, StoreError> {
        // Only UUIDs can name a stored event (toUUID of anything else fails the query).
        let ids: Vec<String> = ids.iter().filter_map(|i| uuid::Uuid::parse_str(i).ok()).map(|u| u.to_string()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT toString(event_id) AS id, ts_ms, payload FROM events FINAL WHERE event_id IN ({})", vec!["toUUID(?)"; ids.len()].join(", "));
        let rows: Vec<PayloadRow> = self.conn.block_on(self.bind(&sql, ids.into_iter().map(Arg::Str).collect()).fetch_all()).map_err(ch_err)?;
        rows.iter().map(|r| parse_payload(&r.id, &r.payload)).collect()
    }

    fn describe(&self) -> String {
        format!("ClickHouse {} (database {})", self.conn.url(), self.conn.database())
    }
}
