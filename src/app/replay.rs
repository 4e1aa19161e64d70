//! `argus replay`: a recording through two versions of a pipeline, to try a rule change
//! before it goes live.
//!
//! The recording is decoded and its frames detected once; each frame's detections go to
//! the camera's scene in both versions, so the tracker sees the same input on both sides
//! and only the pipelines' differences show. It runs as fast as decoding and the detector
//! allow. The report is deterministic: the same recording, pipelines and model give the
//! same incidents, timed from the recording's first frame (not the wall clock).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use super::{AppError, RunOptions, build_scenes};
use crate::config::ValidConfig;
use crate::model::{Event, EventKind, Level, Models, SCENE_CAPTIONER};
use crate::pipeline::bus::Durability;
use crate::pipeline::hub::{FrameHub, Overflow};
use crate::pipeline::scene::CameraScene;
use crate::sources::{self, CameraSource, SourceContext, SourceSpec};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// What to replay: `camera` of both configurations (each holding the one pipeline to
/// compare) over `recording`.
pub struct ReplayRequest<'a> {
    pub current: &'a ValidConfig,
    pub edited: &'a ValidConfig,
    pub camera: &'a str,
    pub recording: &'a Path,
    /// Stop after this many frames (the whole recording when `None`).
    pub max_frames: Option<u64>,
}

/// Both sides' incidents over one recording.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayReport {
    pub recording: PathBuf,
    pub camera: String,
    pub frames: u64,
    /// From the first frame's capture time to the last's.
    pub video_s: f64,
    pub current: Side,
    pub edited: Side,
    /// Per rule id (every rule either side has, or that gave an incident), both sides.
    pub rules: Vec<RuleDiff>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Side {
    pub pipeline_file: PathBuf,
    pub incidents: Vec<IncidentSummary>,
}

/// One incident, timed in seconds from the recording's first frame.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncidentSummary {
    pub rules: Vec<String>,
    pub opened_s: f64,
    /// `None`: still open when the recording ended.
    pub closed_s: Option<f64>,
    /// Until closed, or until the recording's end.
    pub duration_s: f64,
    pub peak_level: Level,
    pub updates: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleDiff {
    pub rule: String,
    pub current: RuleTotals,
    pub edited: RuleTotals,
    pub changed: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuleTotals {
    pub incidents: u32,
    pub total_s: f64,
    pub first_opened_s: Option<f64>,
}

/// Decodes `req.recording` as `req.camera`, detects once per frame and runs both scenes.
pub fn replay(req: &ReplayRequest) -> Result<ReplayReport, AppError> {
    let mut current = scene_of(req.current, req.camera)?;
    let mut edited = scene_of(req.edited, req.camera)?;
    let cam = req
        .edited
        .config
        .pipelines
        .iter()
        .flat_map(|(_, p)| p.cameras.iter().map(move |c| (p, c)))
        .find(|(_, c)| c.id == req.camera)
        .ok_or_else(|| AppError::Config(format!("camera `{}` is not in the edited pipeline", req.camera)))?;
    let mut camera = cam.1.clone();
    camera.source = req.recording.display().to_string();
    camera.realtime = false;
    camera.live = Some(false);
    let mut spec = SourceSpec::from_camera(&camera, &cam.0.name, req.max_frames);
    spec.max_pixels = req.edited.config.argus.limits.max_frame_pixels;

    // One model call at a time on every core: a replay is a batch job, and decoding
    // runs on the source's own thread.
    let mut detector_cfg = req.edited.config.argus.detector.clone();
    detector_cfg.threads = detector_cfg.threads.max(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut detector = crate::detect::build_detector(&detector_cfg).map_err(AppError::Detector)?;
    let models = Models { detector: detector.info().model_id.clone(), captioner: SCENE_CAPTIONER.into() };

    let hub = FrameHub::new();
    let lane = hub.lane(Arc::from(req.camera), 8, Overflow::Block);
    let health = Arc::new(Health::default());
    let cx =
        SourceContext { stop: Arc::new(AtomicBool::new(false)), metrics: Arc::new(Metrics::new()), health: health.clone(), durability: Durability::default() };
    let source = sources::spawn(Box::new(CameraSource { spec, lane }), cx).map_err(AppError::Thread)?;

    let started = Instant::now();
    let (mut frames, mut first, mut last) = (0u64, None::<OffsetDateTime>, None::<OffsetDateTime>);
    let (mut current_events, mut edited_events) = (Vec::new(), Vec::new());
    let result = loop {
        let batch = hub.take_batch(1, Duration::ZERO);
        if batch.is_empty() {
            // Empty: the source ended (its end reported once every frame was taken), or
            // it stopped without ending (an error) and its lane closed.
            if !hub.take_ended().is_empty() || source.is_finished() {
                break Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let images: Vec<_> = batch.iter().map(|f| f.image.as_ref()).collect();
        let detections = match detector.detect(&images) {
            Ok(d) => d,
            Err(e) => break Err(AppError::Detector(e)),
        };
        for (frame, dets) in batch.iter().zip(detections) {
            first.get_or_insert(frame.captured_at);
            last = Some(frame.captured_at);
            current_events.extend(current.process(frame, dets.clone(), &models).into_iter().filter(is_incident));
            edited_events.extend(edited.process(frame, dets, &models).into_iter().filter(is_incident));
            frames += 1;
        }
    };
    hub.shutdown();
    let _ = source.join();
    result?;
    let (Some(first), Some(last)) = (first, last) else {
        let why = health.sources().get(req.camera).and_then(|s| s.detail.clone()).unwrap_or_else(|| "the recording has no video frames".into());
        return Err(AppError::Config(format!("{}: no frames: {why}", req.recording.display())));
    };
    let video_s = secs(last - first);
    tracing::info!(frames, wall_s = started.elapsed().as_secs_f64(), fps = frames as f64 / started.elapsed().as_secs_f64().max(1e-9), "replayed");
    let current = Side { pipeline_file: pipeline_file(req.current), incidents: incidents(&current_events, first, video_s) };
    let edited = Side { pipeline_file: pipeline_file(req.edited), incidents: incidents(&edited_events, first, video_s) };
    let rules = rule_diffs(req, &current, &edited);
    Ok(ReplayReport { recording: req.recording.to_path_buf(), camera: req.camera.into(), frames, video_s, current, edited, rules })
}

fn scene_of(cfg: &ValidConfig, camera: &str) -> Result<CameraScene, AppError> {
    let mut scenes = build_scenes(&cfg.config, &cfg.validated, &RunOptions::default())?.into_scenes();
    scenes.remove(camera).ok_or_else(|| AppError::Config(format!("{}: no camera `{camera}` (cameras: {})", pipeline_file(cfg).display(), camera_ids(&scenes))))
}

fn camera_ids(scenes: &std::collections::HashMap<Arc<str>, CameraScene>) -> String {
    let mut ids: Vec<&str> = scenes.keys().map(|k| k.as_ref()).collect();
    ids.sort_unstable();
    if ids.is_empty() { "none".into() } else { ids.join(", ") }
}

fn pipeline_file(cfg: &ValidConfig) -> PathBuf {
    cfg.config.pipelines.first().map(|(f, _)| f.clone()).unwrap_or_default()
}

fn is_incident(e: &Event) -> bool {
    matches!(e.kind, EventKind::IncidentOpened | EventKind::IncidentUpdated | EventKind::IncidentClosed)
}

fn secs(d: time::Duration) -> f64 {
    // Milliseconds: the report must not differ in its last digits between runs.
    (d.whole_milliseconds() as f64 / 1000.0).max(0.0)
}

/// Incidents in the order they opened, from their events.
fn incidents(events: &[Event], first: OffsetDateTime, video_s: f64) -> Vec<IncidentSummary> {
    let mut by_id: BTreeMap<&str, (usize, IncidentSummary, BTreeSet<String>)> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let Some(id) = e.incident_id.as_deref() else { continue };
        let at = secs(e.captured_at - first);
        let entry = by_id.entry(id).or_insert_with(|| {
            (i, IncidentSummary { rules: Vec::new(), opened_s: at, closed_s: None, duration_s: 0.0, peak_level: e.risk.level, updates: 0 }, BTreeSet::new())
        });
        entry.2.extend(e.risk.reasons.iter().map(|r| r.rule.clone()));
        entry.1.peak_level = entry.1.peak_level.max(e.risk.level);
        match e.kind {
            EventKind::IncidentUpdated => entry.1.updates += 1,
            EventKind::IncidentClosed => entry.1.closed_s = Some(at),
            _ => {}
        }
    }
    let mut out: Vec<(usize, IncidentSummary)> = by_id
        .into_values()
        .map(|(i, mut s, rules)| {
            s.rules = rules.into_iter().collect();
            s.duration_s = round_ms(s.closed_s.unwrap_or(video_s) - s.opened_s);
            (i, s)
        })
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, s)| s).collect()
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

fn totals(side: &Side, rule: &str) -> RuleTotals {
    let mut t = RuleTotals::default();
    for i in side.incidents.iter().filter(|i| i.rules.iter().any(|r| r == rule)) {
        t.incidents += 1;
        t.total_s = round_ms(t.total_s + i.duration_s);
        t.first_opened_s = Some(t.first_opened_s.map_or(i.opened_s, |f: f64| f.min(i.opened_s)));
    }
    t
}

fn rule_diffs(req: &ReplayRequest, current: &Side, edited: &Side) -> Vec<RuleDiff> {
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for cfg in [req.current, req.edited] {
        ids.extend(cfg.config.pipelines.iter().flat_map(|(_, p)| p.rules.iter().map(|r| r.id().to_string())));
    }
    ids.extend(current.incidents.iter().chain(&edited.incidents).flat_map(|i| i.rules.iter().cloned()));
    ids.into_iter()
        .map(|rule| {
            let (c, e) = (totals(current, &rule), totals(edited, &rule));
            RuleDiff { changed: c != e, rule, current: c, edited: e }
        })
        .collect()
}

impl ReplayReport {
    /// The report as text: per rule, then each side's incidents. Deterministic.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "replay of {} as camera {}: {} frames, {:.1} s of video", self.recording.display(), self.camera, self.frames, self.video_s);
        let _ = writeln!(s, "current: {}", self.current.pipeline_file.display());
        let _ = writeln!(s, "edited:  {}", self.edited.pipeline_file.display());
        let _ = writeln!(s);
        let _ = writeln!(s, "{:<28} {:>22}   {:>22}", "rule", "current", "edited");
        for r in &self.rules {
            let _ = writeln!(s, "{:<28} {:>22}   {:>22}{}", r.rule, totals_text(&r.current), totals_text(&r.edited), if r.changed { "   changed" } else { "" });
        }
        for (name, side) in [("current", &self.current), ("edited", &self.edited)] {
            let _ = writeln!(s);
            let _ = writeln!(s, "{name} incidents (seconds from the recording's start):");
            if side.incidents.is_empty() {
                let _ = writeln!(s, "  none");
            }
            for i in &side.incidents {
                let closed = i.closed_s.map_or_else(|| "still open".to_string(), |c| format!("{c:7.1}"));
                let _ = writeln!(
                    s,
                    "  {:<28} opened {:7.1}  closed {:>10}  lasted {:6.1} s  peak {:<8} updates {}",
                    i.rules.join("+"),
                    i.opened_s,
                    closed,
                    i.duration_s,
                    format!("{:?}", i.peak_level).to_lowercase(),
                    i.updates
                );
            }
        }
        s
    }
}

fn totals_text(t: &RuleTotals) -> String {
    match t.first_opened_s {
        None => "none".into(),
        Some(f) => format!("{} in {:.1} s, 1st {:.1}", t.incidents, t.total_s, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reason, Risk, sample_event};

    const T0_MS: i64 = 1_800_000_000_000;

    fn event(kind: EventKind, incident: &str, rule: &str, at_ms: i64, level: Level) -> Event {
        let mut e = sample_event("cam", T0_MS + at_ms, kind);
        e.incident_id = Some(incident.into());
        e.risk = Risk { score: 0.5, level, priority: 2, reasons: vec![Reason { rule: rule.into(), kind: "intrusion".into(), ..Default::default() }] };
        e
    }

    #[test]
    fn incidents_are_timed_from_the_first_frame_in_opening_order_with_their_peak_level() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(t0.unix_timestamp() * 1000, T0_MS);
        let events = vec![
            event(EventKind::IncidentOpened, "b", "zone", 2_000, Level::Medium),
            event(EventKind::IncidentOpened, "a", "crowd", 3_500, Level::Low),
            event(EventKind::IncidentUpdated, "b", "zone", 4_000, Level::High),
            event(EventKind::IncidentClosed, "b", "zone", 6_250, Level::Low),
        ];
        let got = incidents(&events, t0, 10.0);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].rules.clone(), got[0].opened_s, got[0].closed_s, got[0].duration_s), (vec!["zone".to_string()], 2.0, Some(6.25), 4.25));
        assert_eq!((got[0].peak_level, got[0].updates), (Level::High, 1));
        // Still open at the end: it lasts until the recording's end.
        assert_eq!((got[1].closed_s, got[1].duration_s), (None, 6.5));
    }

    #[test]
    fn a_rule_is_changed_only_when_its_totals_differ() {
        let side = |incidents: Vec<IncidentSummary>| Side { pipeline_file: PathBuf::new(), incidents };
        let inc = |rule: &str, opened_s: f64, duration_s: f64| IncidentSummary {
            rules: vec![rule.into()],
            opened_s,
            closed_s: Some(opened_s + duration_s),
            duration_s,
            peak_level: Level::Medium,
            updates: 0,
        };
        let current = side(vec![inc("zone", 1.0, 5.0), inc("crowd", 2.0, 3.0)]);
        let edited = side(vec![inc("zone", 4.0, 2.0), inc("crowd", 2.0, 3.0)]);
        let (z, c) = (totals(&current, "zone"), totals(&edited, "zone"));
        assert_eq!((z.incidents, z.total_s, z.first_opened_s), (1, 5.0, Some(1.0)));
        assert_ne!(z, c);
        assert_eq!(totals(&current, "crowd"), totals(&edited, "crowd"));
        assert_eq!(totals(&current, "speed"), RuleTotals::default());
    }

    #[test]
    fn the_text_report_marks_changed_rules_and_open_incidents() {
        let inc = IncidentSummary { rules: vec!["zone".into()], opened_s: 1.0, closed_s: None, duration_s: 9.0, peak_level: Level::High, updates: 2 };
        let side = |incidents| Side { pipeline_file: "p.toml".into(), incidents };
        let current = side(vec![inc.clone()]);
        let edited = side(vec![]);
        let rules = vec![RuleDiff { rule: "zone".into(), current: totals(&current, "zone"), edited: totals(&edited, "zone"), changed: true }];
        let r = ReplayReport { recording: "v.avi".into(), camera: "cam".into(), frames: 100, video_s: 10.0, current, edited, rules };
        let text = r.to_text();
        assert!(text.contains("1 in 9.0 s, 1st 1.0") && text.contains("none   changed"), "{text}");
        assert!(text.contains("still open") && text.contains("peak high"), "{text}");
    }
}
