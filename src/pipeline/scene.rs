//! The scene stage for one camera: track → place → judge → caption → events.

use std::collections::HashSet;
use std::sync::Arc;

use time::OffsetDateTime;

use super::scene_state::{self, LastFrame, RestoreError, ResumeOutcome, STATE_VERSION, SceneState};
use crate::caption;
use crate::geo::{CameraGeometry, DroneGeometry, MotionEstimator};
use crate::model::Detection;
use crate::model::WorldPos;
use crate::model::{Event, EventKind, FrameInfo, Models, SCHEMA, event_id};
use crate::model::{FileIdentity, Frame, SourcePosition};
use crate::model::{IncidentPhase, Risk, SceneObject};
use crate::risk::{RiskEngine, Zone};
use crate::track::Tracker;
use crate::track::config::TrackerConfig;

pub struct CameraScene {
    camera_id: Arc<str>,
    pipeline: String,
    tracker: Tracker,
    geometry: Option<CameraGeometry>,
    /// A flying camera: placed per frame from its telemetry (instead of `geometry`).
    drone: Option<DroneGeometry>,
    zones: Arc<Vec<Zone>>,
    risk: RiskEngine,
    classes: Option<HashSet<String>>,
    summary_every_s: f64,
    last_summary_t: Option<f64>,
    motion: MotionEstimator,
    last: Option<(OffsetDateTime, FrameInfo, Vec<SceneObject>)>,
    /// Where the source stood after the last frame (files), for the checkpoint.
    position: Option<SourcePosition>,
    /// The recording this camera reads now (files): a state of another one is refused.
    source_file: Option<FileIdentity>,
    /// Zones, rules, tracker and risk settings, classes as text (the fingerprint's part).
    settings_key: String,
    /// The calibration as text: the geometry's by default, the config's when given.
    geometry_key: String,
    /// What a scene state must carry to be restored here (see `scene_state`).
    fingerprint: String,
}

pub struct SceneSettings {
    pub pipeline: String,
    pub geometry: Option<CameraGeometry>,
    pub zones: Arc<Vec<Zone>>,
    pub rules: Vec<crate::risk::config::RuleConfig>,
    pub classes: Vec<String>,
    pub summary_every_s: f64,
    /// The pipeline's `[tracker]` table.
    pub tracker: TrackerConfig,
    /// The pipeline's `[risk]` table.
    pub risk: crate::risk::config::RiskConfig,
}

/// What an event says, besides when and where.
struct EventBody {
    kind: EventKind,
    incident_id: Option<String>,
    objects: Vec<SceneObject>,
    risk: Risk,
    caption: String,
}

fn secs(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

impl CameraScene {
    pub fn new(camera_id: Arc<str>, s: SceneSettings) -> Self {
        let mut classes: Vec<&String> = s.classes.iter().collect();
        classes.sort();
        classes.dedup();
        let zones: Vec<(&str, &Vec<[f64; 2]>)> = s.zones.iter().map(|z| (z.id.as_str(), &z.polygon)).collect();
        let settings_key = serde_json::to_string(&(zones, &s.rules, &s.tracker, &s.risk, classes)).expect("scene settings serialise");
        let geometry_key = match &s.geometry {
            Some(g) => format!("{:?} {:?} {:?}", g.homography, g.lens, g.origin),
            None => "none".into(),
        };
        let mut scene = Self {
            risk: RiskEngine::with_settings(camera_id.clone(), &s.rules, s.risk.clone()),
            camera_id,
            pipeline: s.pipeline,
            tracker: Tracker::new(s.tracker.clone()),
            geometry: s.geometry,
            drone: None,
            zones: s.zones,
            classes: (!s.classes.is_empty()).then(|| s.classes.into_iter().collect()),
            summary_every_s: s.summary_every_s,
            last_summary_t: None,
            motion: MotionEstimator::default(),
            last: None,
            position: None,
            source_file: None,
            settings_key,
            geometry_key,
            fingerprint: String::new(),
        };
        scene.update_fingerprint();
        scene
    }

    /// Makes this a drone camera (see `crate::geo::drone`).
    pub fn with_drone(mut self, drone: Option<DroneGeometry>) -> Self {
        self.drone = drone;
        self.update_fingerprint();
        self
    }

    /// Fingerprints the calibration by its configuration (`key`) rather than by the
    /// fitted geometry, whose last bits may differ between builds and machines.
    pub fn with_calibration_key(mut self, key: String) -> Self {
        self.geometry_key = key;
        self.update_fingerprint();
        self
    }

    /// The recording a file camera reads now: a state that reflects another recording
    /// (another size or modification time) is refused, its incidents closed.
    pub fn with_source_file(mut self, file: Option<FileIdentity>) -> Self {
        self.source_file = file;
        self
    }

    fn update_fingerprint(&mut self) {
        let drone = self.drone.as_ref().map_or("none", |d| d.config_key());
        self.fingerprint = scene_state::fingerprint(&[&self.settings_key, &self.geometry_key, drone]);
    }

    /// The fingerprint of the configuration this scene runs (a state must carry it).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Everything the scene carries from frame to frame, as one value (no configuration).
    pub fn checkpoint(&self) -> SceneState {
        SceneState {
            state_version: STATE_VERSION,
            camera_id: self.camera_id.to_string(),
            fingerprint: self.fingerprint.clone(),
            tracker: self.tracker.state(),
            motion: self.motion.state(),
            risk: self.risk.state(),
            last_summary_t: self.last_summary_t,
            last: self.last.as_ref().map(|(at, info, objects)| LastFrame::new(*at, info, objects)),
            drone: self.drone.as_ref().map(|d| d.state()),
            position: self.position.clone(),
        }
    }

    /// Continues from `state` as if the frames it reflects had just been processed here:
    /// the same tracks, dwell times, incidents (same ids) and timers. Refused, with the
    /// scene unchanged, when the state is of another version, another camera or another
    /// configuration.
    pub fn restore(&mut self, state: SceneState) -> Result<(), RestoreError> {
        let SceneState { state_version, camera_id, fingerprint, tracker, motion, risk, last_summary_t, last, drone, position } = state;
        if state_version != STATE_VERSION {
            return Err(RestoreError::Version { found: state_version, expected: STATE_VERSION });
        }
        if camera_id != *self.camera_id {
            return Err(RestoreError::Incompatible { why: format!("the state is camera {camera_id}'s, not {}'s", self.camera_id) });
        }
        if fingerprint != self.fingerprint {
            return Err(RestoreError::Incompatible {
                why: "the camera's configuration (calibration, zones, rules, tracker, risk, classes or drone settings) changed since the state was saved"
                    .into(),
            });
        }
        if drone.is_some() != self.drone.is_some() {
            return Err(RestoreError::Incompatible { why: "drone state for a fixed camera, or the other way round".into() });
        }
        if let (Some(SourcePosition::File(p)), Some(now)) = (&position, &self.source_file)
            && p.file != *now
        {
            return Err(RestoreError::SourceChanged { was: p.file.clone(), now: now.clone() });
        }
        let last = match last {
            Some(l) => Some((l.at()?, l.info, l.objects)),
            None => None,
        };
        self.risk.restore(risk).map_err(|why| RestoreError::Incompatible { why })?;
        self.tracker.restore(tracker);
        self.motion.restore(motion);
        self.last_summary_t = last_summary_t;
        self.last = last;
        self.position = position;
        if let (Some(d), Some(s)) = (self.drone.as_mut(), drone) {
            d.restore(s);
        }
        Ok(())
    }

    /// Ground positions of the detections: per frame from telemetry for a drone, else
    /// through the fixed calibration.
    fn locate(&mut self, frame: &Frame, detections: &[Detection]) -> Vec<Option<WorldPos>> {
        let boxes: Vec<[f32; 4]> = detections.iter().map(|d| d.bbox).collect();
        match (&mut self.drone, &self.geometry) {
            (Some(d), _) => d.locate_boxes(frame, &boxes),
            (None, Some(g)) => g.locate_boxes(&boxes),
            (None, None) => vec![None; boxes.len()],
        }
    }

    /// Turns one analysed frame into objects, and its incident changes into events.
    pub fn process(&mut self, frame: &Frame, mut detections: Vec<Detection>, models: &Models) -> Vec<Event> {
        if let Some(keep) = &self.classes {
            detections.retain(|d| keep.contains(&*d.class));
        }
        let t = secs(frame.captured_at);
        let assignments = self.tracker.update(&detections);
        let placed = self.locate(frame, &detections);
        let mut objects = Vec::with_capacity(detections.len());
        for ((d, a), world) in detections.iter().zip(&assignments).zip(placed) {
            let zones = match &world {
                Some(w) => self.zones.iter().filter(|z| z.contains([w.x_m, w.y_m])).map(|z| z.id.clone()).collect(),
                None => Vec::new(),
            };
            let (speed_mps, heading_deg) = match (a.track_id, &world) {
                (Some(id), Some(w)) => {
                    let m = self.motion.update(id, t, [w.x_m, w.y_m]);
                    (m.speed_mps, m.heading_deg)
                }
                _ => (None, None),
            };
            objects.push(SceneObject {
                track_id: a.track_id,
                class: d.class.clone(),
                confidence: round3(d.score),
                bbox: d.bbox.map(|v| (v * 10.0).round() / 10.0),
                world: world.map(WorldPos::rounded),
                speed_mps: speed_mps.map(round2),
                heading_deg: heading_deg.map(|h| (h * 10.0).round() / 10.0),
                zones,
            });
        }
        self.motion.prune(t);

        let info = FrameInfo { seq: frame.seq, width: frame.image.width, height: frame.image.height, time_source: Some(frame.time_source.into()) };
        let mut events = Vec::new();
        for change in self.risk.evaluate(t, &objects) {
            events.push(self.incident_event(frame.captured_at, &info, &objects, change, models));
        }
        // Time going backwards (frames replayed, or a clock corrected after a frame dated
        // ahead) restarts the summary period instead of waiting for the old time.
        if self.summary_every_s > 0.0 && self.last_summary_t.is_none_or(|l| t - l >= self.summary_every_s || t < l) {
            self.last_summary_t = Some(t);
            let risk = Risk::none();
            let caption = caption::describe(EventKind::FrameAnalyzed, &objects, &risk, None);
            let body = EventBody { kind: EventKind::FrameAnalyzed, incident_id: None, objects: objects.clone(), risk, caption };
            events.push(self.event(frame.captured_at, &info, body, models));
        }
        let latency = frame.received.elapsed().as_secs_f64() * 1000.0;
        for e in &mut events {
            e.latency_ms = (latency * 10.0).round() / 10.0;
        }
        self.last = Some((frame.captured_at, info, objects));
        self.position = frame.position.clone();
        events
    }

    /// Starts this (fresh) scene from a saved checkpoint, as a camera's start does:
    /// continues from it when it is at most `max_gap_s` old (wall clock, `now_ms`) and
    /// fits; otherwise stays fresh and returns the `incident.closed` events of the
    /// checkpoint's open incidents (too old: "not observed from T1 to T2"; another
    /// configuration: "configuration changed"). The detail says what happened.
    pub fn resume(&mut self, saved: Option<(i64, Vec<u8>)>, now_ms: i64, max_gap_s: f64, models: &Models) -> (ResumeOutcome, String, Vec<Event>) {
        let Some((saved_at_ms, bytes)) = saved else { return (ResumeOutcome::None, "no checkpoint".into(), Vec::new()) };
        let state = match SceneState::from_bytes(&bytes) {
            Ok(s) => s,
            Err(e @ RestoreError::Version { .. }) => return (ResumeOutcome::Incompatible, e.to_string(), Vec::new()),
            Err(e) => return (ResumeOutcome::Corrupt, e.to_string(), Vec::new()),
        };
        let age_s = (now_ms - saved_at_ms) as f64 / 1000.0;
        if age_s > max_gap_s {
            let why = scene_state::not_observed(saved_at_ms, now_ms);
            let mut events = self.close_saved(&state, &why, models);
            scene_state::mark_unobserved(&mut events, saved_at_ms, now_ms);
            return (ResumeOutcome::TooOld, format!("checkpoint {age_s:.1} s old (max_gap_s = {max_gap_s}): {why}"), events);
        }
        match self.restore(state.clone()) {
            Ok(()) => (ResumeOutcome::Restored, format!("checkpoint {age_s:.1} s old, {} open incidents continued", self.open_incidents()), Vec::new()),
            Err(e) => {
                let events = if state.camera_id == *self.camera_id { self.close_saved(&state, e.close_reason(), models) } else { Vec::new() };
                (ResumeOutcome::Incompatible, e.to_string(), events)
            }
        }
    }

    /// The `incident.closed` events of a saved state's open incidents, stamped with the
    /// state's last frame; this scene is not changed.
    pub fn close_saved(&self, state: &SceneState, why: &str, models: &Models) -> Vec<Event> {
        let Some(last) = &state.last else { return Vec::new() };
        let Ok(at) = last.at() else { return Vec::new() };
        state.risk.close_all(secs(at), why).into_iter().map(|c| self.incident_event(at, &last.info, &last.objects, c, models)).collect()
    }

    /// Closes the camera's open incidents (its source ended or Argus is stopping).
    pub fn finish(&mut self, why: &str, models: &Models) -> Vec<Event> {
        let Some((at, info, objects)) = self.last.clone() else { return Vec::new() };
        let changes = self.risk.close_all(secs(at), why);
        changes.into_iter().map(|c| self.incident_event(at, &info, &objects, c, models)).collect()
    }

    pub fn open_incidents(&self) -> usize {
        self.risk.open_incidents()
    }

    /// The ids of the incidents open in this scene.
    pub fn open_incident_ids(&self) -> Vec<String> {
        self.risk.open_incident_ids()
    }

    /// A recording (a file camera): its frames after a checkpoint are analysed again on
    /// a restart, so what they opened opens again, under the same ids.
    pub fn is_recording(&self) -> bool {
        self.source_file.is_some()
    }

    /// The `incident.closed` event of an incident the event store holds open, stamped
    /// with its latest event (its frame, objects and risk) and closed for `why`.
    pub fn close_stored(&self, inc: &scene_state::StoredIncident, why: &str, models: &Models) -> Event {
        let last = &inc.last;
        let mut risk = last.risk.clone();
        for r in &mut risk.reasons {
            r.detail = format!("{}; closed: {why}", r.detail);
        }
        let change = crate::model::IncidentChange {
            phase: IncidentPhase::Closed,
            incident_id: last.incident_id.clone().unwrap_or_default(),
            rule_id: last.risk.reasons.first().map(|r| r.rule.clone()).unwrap_or_default(),
            risk,
            duration_s: (last.captured_at - inc.opened_at).as_seconds_f64().max(0.0),
            why: Some(why.to_string()),
        };
        self.incident_event(last.captured_at, &last.frame, &last.objects, change, models)
    }

    /// The objects of the last processed frame (snapshots draw them).
    pub fn last_objects(&self) -> &[SceneObject] {
        self.last.as_ref().map(|(_, _, o)| o.as_slice()).unwrap_or(&[])
    }

    pub fn zones(&self) -> &Arc<Vec<Zone>> {
        &self.zones
    }

    /// Ground → pixels, to draw world-space zones on the image.
    pub fn world_to_image(&self) -> Option<crate::geo::Homography> {
        self.geometry.as_ref().and_then(|g| g.homography.inverse())
    }

    fn incident_event(&self, at: OffsetDateTime, info: &FrameInfo, objects: &[SceneObject], change: crate::model::IncidentChange, models: &Models) -> Event {
        let kind = match change.phase {
            IncidentPhase::Opened => EventKind::IncidentOpened,
            IncidentPhase::Updated => EventKind::IncidentUpdated,
            IncidentPhase::Closed => EventKind::IncidentClosed,
        };
        let caption = caption::describe_change(objects, &change);
        self.event(at, info, EventBody { kind, incident_id: Some(change.incident_id), objects: objects.to_vec(), risk: change.risk, caption }, models)
    }

    /// An event of this camera at one moment: `at` with the frame's `info`.
    fn event(&self, at: OffsetDateTime, info: &FrameInfo, body: EventBody, models: &Models) -> Event {
        let EventBody { kind, incident_id, objects, risk, caption } = body;
        Event {
            schema: SCHEMA.into(),
            event_id: event_id(&self.camera_id, at, kind, incident_id.as_deref()),
            kind,
            incident_id,
            pipeline: self.pipeline.clone(),
            camera_id: self.camera_id.to_string(),
            captured_at: at,
            processed_at: OffsetDateTime::now_utc(),
            latency_ms: 0.0,
            frame: info.clone(),
            risk,
            objects,
            caption,
            model_caption: None,
            evidence: None,
            action: None,
            models: models.clone(),
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}
