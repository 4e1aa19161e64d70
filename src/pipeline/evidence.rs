//! Evidence for incident events, made on the scene stage's thread from the frame that
//! changed the incident: its objects boxed and labelled, the incident's zones drawn, the
//! level in the banner (`snapshot::render_jpeg`), stored by `crate::evidence`.
//!
//! Incident events are few (an opening, a change of level, a closing), so rendering here
//! costs little next to the detector (`argus_stage_duration_seconds{stage="evidence"}`). A failure
//! to render or write never holds an event back: it goes out without `evidence`, counted
//! in `argus_evidence_failed_total` and logged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::snapshot::{Snapshot, render_jpeg};
use crate::evidence::EvidenceStore;
use crate::model::{Event, EventKind};
use crate::telemetry::metrics::Metrics;

/// Adds `evidence` to each incident event of `events`, drawn on `frame` (the frame the
/// events come from, or for a closing without a frame the camera's last one).
pub fn attach(store: &EvidenceStore, events: &mut [Event], frame: &Snapshot, metrics: &Metrics) {
    let hist = metrics.stage_seconds.with_label_values(&["evidence"]);
    let mut wrote = false;
    for ev in events.iter_mut().filter(|e| e.incident_id.is_some()) {
        let t0 = Instant::now();
        let picture = annotated(ev, frame);
        let stored = render_jpeg(&picture, &ev.camera_id, store.quality())
            .map_err(|e| e.to_string())
            .and_then(|jpeg| store.put(&ev.event_id, &jpeg).map_err(|e| e.to_string()));
        hist.observe(t0.elapsed().as_secs_f64());
        match stored {
            Ok(evidence) => {
                metrics.evidence_written.inc();
                metrics.evidence_bytes.inc_by(evidence.bytes);
                let incident = ev.incident_id.as_deref().expect("filtered");
                match ev.kind {
                    EventKind::IncidentClosed => store.unpin(incident),
                    _ => store.pin(incident, &evidence.sha256),
                }
                ev.evidence = Some(evidence);
                wrote = true;
            }
            Err(e) => {
                metrics.evidence_failed.inc();
                tracing::warn!(camera = %ev.camera_id, event = %ev.event_id, error = %e, dir = %store.dir().display(), "incident event published without evidence");
            }
        }
    }
    if wrote {
        prune(store, metrics);
    }
}

/// Retention after writes, and now and then (age): counted per file deleted.
pub fn prune(store: &EvidenceStore, metrics: &Metrics) {
    let pruned = store.prune(std::time::SystemTime::now());
    if pruned.files > 0 {
        metrics.retention_deleted.with_label_values(&["evidence"]).inc_by(pruned.files);
    }
    metrics.evidence_bytes_kept.set(pruned.bytes_kept as i64);
}

/// What the evidence shows: the event's objects and level on the frame, with the zones
/// its reasons and objects name (every zone of the camera when it names none).
fn annotated(ev: &Event, frame: &Snapshot) -> Snapshot {
    let named: BTreeSet<String> = ev.zones().into_iter().collect();
    let zones = if named.is_empty() { frame.zones.clone() } else { Arc::new(frame.zones.iter().filter(|z| named.contains(&z.id)).cloned().collect()) };
    Snapshot { objects: ev.objects.clone(), zones, level: Some(ev.risk.level), ..frame.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::EvidenceConfig;
    use crate::model::{Level, RgbImage, sample_event};
    use crate::risk::Zone;

    fn frame() -> Snapshot {
        let zone = |id: &str| Zone { id: id.into(), polygon: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]] };
        Snapshot {
            image: Arc::new(RgbImage::new(64, 48, vec![90; 64 * 48 * 3]).unwrap()),
            seq: 7,
            captured_at: time::OffsetDateTime::UNIX_EPOCH,
            objects: Vec::new(),
            zones: Arc::new(vec![zone("gate"), zone("yard")]),
            world_to_image: None,
            level: None,
        }
    }

    #[test]
    fn incident_events_get_a_stored_jpeg_and_summaries_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvidenceStore::open(&EvidenceConfig { dir: dir.path().into(), ..Default::default() }).unwrap().unwrap();
        let metrics = Metrics::new();
        let mut events = vec![sample_event("cam", 1000, EventKind::IncidentOpened), sample_event("cam", 1000, EventKind::FrameAnalyzed)];
        attach(&store, &mut events, &frame(), &metrics);
        let e = events[0].evidence.clone().expect("the incident event has evidence");
        assert!(events[1].evidence.is_none());
        let jpeg = store.read(&e.sha256).unwrap();
        assert_eq!(jpeg.len() as u64, e.bytes);
        let img = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (64, 48));
        assert_eq!(metrics.evidence_written.get(), 1);
        assert_eq!(metrics.evidence_bytes.get(), e.bytes);
    }

    #[test]
    fn the_picture_shows_the_events_level_objects_and_zones() {
        let mut ev = sample_event("cam", 1000, EventKind::IncidentOpened);
        ev.risk.level = Level::Critical;
        let all = annotated(&ev, &frame());
        assert_eq!(all.level, Some(Level::Critical));
        assert_eq!(all.objects, ev.objects);
        // The sample's object is in zone gate: gate is drawn, yard is not.
        let drawn: Vec<String> = all.zones.iter().map(|z| z.id.clone()).collect();
        assert_eq!(drawn, ["gate"]);
        // An event naming no zone shows every zone of the camera.
        ev.objects[0].zones.clear();
        ev.risk.reasons.iter_mut().for_each(|r| r.zone = None);
        let drawn: Vec<String> = annotated(&ev, &frame()).zones.iter().map(|z| z.id.clone()).collect();
        assert_eq!(drawn, ["gate", "yard"]);
    }

    #[test]
    fn a_failed_write_publishes_the_event_without_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvidenceStore::open(&EvidenceConfig { dir: dir.path().join("ev"), ..Default::default() }).unwrap().unwrap();
        // The directory gone and its name taken by a file: nothing can be written.
        std::fs::remove_dir(dir.path().join("ev")).unwrap();
        std::fs::write(dir.path().join("ev"), b"").unwrap();
        let metrics = Metrics::new();
        let mut events = vec![sample_event("cam", 1000, EventKind::IncidentClosed)];
        attach(&store, &mut events, &frame(), &metrics);
        assert!(events[0].evidence.is_none());
        assert_eq!(metrics.evidence_failed.get(), 1);
    }
}
