//! Events flattened into `events` rows (one per event) and `objects` rows (one per
//! object per event). Field order is the column order: with validation off the
//! RowBinary stream is positional.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{Event, EventKind};
use crate::store::StoreError;

/// `Enum8` value of an event kind (the DDL lists the same numbers).
pub fn kind_code(k: EventKind) -> i8 {
    match k {
        EventKind::IncidentOpened => 1,
        EventKind::IncidentUpdated => 2,
        EventKind::IncidentClosed => 3,
        EventKind::FrameAnalyzed => 4,
        EventKind::IncidentAcknowledged => 5,
        EventKind::IncidentAssigned => 6,
        EventKind::IncidentNoted => 7,
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub kind: i8,
    pub incident_id: String,
    pub pipeline: String,
    pub camera_id: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub ts: OffsetDateTime,
    pub ts_ms: u64,
    pub processed_ms: u64,
    pub latency_ms: f32,
    /// `Enum8('low' = 0, 'medium' = 1, 'high' = 2, 'critical' = 3)`: the level's rank.
    pub level: i8,
    pub priority: u8,
    pub score: f32,
    pub classes: Vec<String>,
    pub zones: Vec<String>,
    pub rules: Vec<String>,
    pub object_count: u16,
    pub caption: String,
    /// The whole `argus.event.v1` JSON, for the API and for anything not in a column.
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ObjectRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub camera_id: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub ts: OffsetDateTime,
    pub ts_ms: u64,
    pub kind: i8,
    pub incident_id: String,
    /// Position in the event's `objects`.
    pub idx: u16,
    pub track_id: Option<u64>,
    pub class: String,
    pub confidence: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub world_x: Option<f64>,
    pub world_y: Option<f64>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
    pub zones: Vec<String>,
}

/// The rows of one event.
pub fn event_rows(ev: &Event) -> Result<(EventRow, Vec<ObjectRow>), StoreError> {
    let event_id =
        Uuid::parse_str(&ev.event_id).map_err(|e| StoreError::Corrupt { id: ev.event_id.clone(), reason: format!("event id is not a UUID: {e}") })?;
    // DateTime is seconds in UInt32: 1970..2106.
    let ts = ev.captured_at.replace_nanosecond(0).unwrap_or(ev.captured_at);
    if ts.unix_timestamp() < 0 || ts.unix_timestamp() > u32::MAX as i64 {
        return Err(StoreError::Corrupt { id: ev.event_id.clone(), reason: format!("capture time {} is outside 1970..2106", ev.captured_at) });
    }
    let ts_ms = ev.captured_ms().max(0) as u64;
    let kind = kind_code(ev.kind);
    let incident_id = ev.incident_id.clone().unwrap_or_default();
    let payload = serde_json::to_string(ev).map_err(|e| StoreError::Corrupt { id: ev.event_id.clone(), reason: e.to_string() })?;
    let row = EventRow {
        event_id,
        kind,
        incident_id: incident_id.clone(),
        pipeline: ev.pipeline.clone(),
        camera_id: ev.camera_id.clone(),
        ts,
        ts_ms,
        processed_ms: (ev.processed_at.unix_timestamp_nanos() / 1_000_000).max(0) as u64,
        latency_ms: ev.latency_ms as f32,
        level: ev.risk.level.rank() as i8,
        priority: ev.risk.priority,
        score: ev.risk.score as f32,
        classes: ev.classes(),
        zones: ev.zones(),
        rules: ev.rules(),
        object_count: ev.objects.len().min(u16::MAX as usize) as u16,
        caption: ev.caption.clone(),
        payload,
    };
    let objects = ev
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| ObjectRow {
            event_id,
            camera_id: ev.camera_id.clone(),
            ts,
            ts_ms,
            kind,
            incident_id: incident_id.clone(),
            idx: i.min(u16::MAX as usize) as u16,
            track_id: o.track_id,
            class: o.class.to_string(),
            confidence: o.confidence,
            x1: o.bbox[0],
            y1: o.bbox[1],
            x2: o.bbox[2],
            y2: o.bbox[3],
            world_x: o.world.as_ref().map(|w| w.x_m),
            world_y: o.world.as_ref().map(|w| w.y_m),
            lat: o.world.as_ref().and_then(|w| w.lat),
            lon: o.world.as_ref().and_then(|w| w.lon),
            speed_mps: o.speed_mps,
            heading_deg: o.heading_deg,
            zones: o.zones.clone(),
        })
        .collect();
    Ok((row, objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_event_and_per_object() {
        let ev = crate::model::sample_event("gate", 1_763_884_800_123, EventKind::IncidentOpened);
        let (row, objects) = event_rows(&ev).unwrap();
        assert_eq!(row.ts_ms, 1_763_884_800_123);
        assert_eq!(row.ts.unix_timestamp(), 1_763_884_800);
        assert_eq!(row.kind, 1);
        assert_eq!(row.object_count as usize, ev.objects.len());
        assert_eq!(objects.len(), ev.objects.len());
        assert!(objects.iter().enumerate().all(|(i, o)| o.idx as usize == i && o.event_id == row.event_id));
        let back: Event = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(back.event_id, ev.event_id);
    }
}
