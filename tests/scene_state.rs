//! Scene state restores exactly: for every scenario of the scenario suite (through the
//! whole image-space scene stage), every image-space case and a drone, a checkpoint
//! after every frame k, encoded to bytes, decoded and restored into a fresh scene built
//! from the same configuration, continues to give exactly the events (ids and contents)
//! of the uninterrupted run. Only `processed_at` and `latency_ms`, which are wall-clock,
//! are normalised before comparing.
//!
//! Pure library code: runs under `cargo test --no-default-features`.

#[path = "common/scenarios.rs"]
mod common;

use std::sync::Arc;

use argus::config::PipelineConfig;
use argus::geo::DroneGeometry;
use argus::geo::config::{DroneConfig, OriginConfig};
use argus::model::{Detection, Event, Models, Telemetry};
use argus::pipeline::scene::{CameraScene, SceneSettings};
use argus::pipeline::scene_state::{RestoreError, STATE_VERSION, SceneState};
use argus::risk::Zone;
use common::*;
use time::OffsetDateTime;

/// One camera to replay: how to build its scene (the same for every restore) and its
/// detections (and telemetry) per frame.
struct Case {
    name: String,
    pipeline: String,
    summary_every_s: f64,
    drone: bool,
    frames: u64,
    detections: Box<dyn Fn(f64) -> Vec<Detection>>,
}

const ZONES: &str = r#"
[[zones]]
id = "gate"
polygon = [[0, 0], [10, 0], [10, 10], [0, 10]]

[[zones]]
id = "bench"
polygon = [[20, 0], [24, 0], [24, 4], [20, 4]]
"#;

fn class_id(class: &str) -> usize {
    match class {
        "person" => 0,
        "car" => 2,
        "truck" => 7,
        _ => 99,
    }
}

/// A scenario of the suite as boxes through the tracker (the switch, when given, as a
/// detector miss of `gap_s`: the tracker decides whether it becomes a new id).
fn scenario_case(s: Scenario, switched: bool) -> Case {
    let actors = (s.actors)();
    let switch = switched.then_some(s.switch);
    let detections = move |t: f64| {
        actors
            .iter()
            .filter(|a| !switch.as_ref().is_some_and(|w| w.from == a.id && t >= w.at && t < w.at + w.gap_s))
            .filter_map(|a| {
                let (x, y, _) = (a.path)(t)?;
                Some(Detection { class_id: class_id(a.class), class: Arc::from(a.class), score: 0.9, bbox: person_box(x, y) })
            })
            .collect()
    };
    Case {
        name: format!("{}{}", s.name, if switched { " (with the switch)" } else { "" }),
        // With the switch, the tracker gives up the track while it is missed (max_lost =
        // 2 frames) and gives it a new id when it is seen again: a real id switch.
        pipeline: format!("{ZONES}\n{}{}", s.rules, if switched { "\n[tracker]\nmax_lost = 2\n" } else { "" }),
        summary_every_s: 1.0,
        drone: false,
        frames: (s.duration_s * FPS).round() as u64,
        detections: Box::new(detections),
    }
}

fn person(x: f64, y: f64) -> Detection {
    Detection { class_id: 0, class: Arc::from("person"), score: 0.9, bbox: person_box(x, y) }
}

fn image_cases() -> Vec<Case> {
    let both = |hidden: bool| {
        move |t: f64| {
            let (x, y) = walker(t);
            let mut v = if hidden && (7.0..7.5).contains(&t) { vec![] } else { vec![person(x, y)] };
            if let Some((x, y)) = runner(t) {
                v.push(person(x, y));
            }
            v
        }
    };
    vec![
        Case {
            name: "image space: walker and runner".into(),
            pipeline: IMAGE_PIPELINE.into(),
            summary_every_s: 0.5,
            drone: false,
            frames: 160,
            detections: Box::new(both(false)),
        },
        Case {
            name: "image space: the walker missed for longer than max_lost".into(),
            pipeline: IMAGE_PIPELINE.into(),
            summary_every_s: 0.0,
            drone: false,
            frames: 160,
            detections: Box::new(both(true)),
        },
    ]
}

/// A drone without a configured origin (world (0, 0) is its first telemetry position),
/// flying east over two people, one of them walking into a zone.
fn drone_case() -> Case {
    Case {
        name: "drone: origin from the first telemetry".into(),
        pipeline: r#"
[[zones]]
id = "pad"
polygon = [[-50, -50], [50, -50], [50, 50], [-50, 50]]

[[rules]]
kind = "intrusion"
id = "pad-entry"
zone = "pad"
min_dwell_s = 0.5
update_every_s = 1
"#
        .into(),
        summary_every_s: 0.3,
        drone: true,
        frames: 120,
        detections: Box::new(|t: f64| {
            let u = 200.0 + 20.0 * t as f32;
            vec![
                Detection { class_id: 0, class: Arc::from("person"), score: 0.9, bbox: [u, 300.0, u + 20.0, 360.0] },
                Detection { class_id: 0, class: Arc::from("person"), score: 0.9, bbox: [600.0, 200.0, 620.0, 260.0] },
            ]
        }),
    }
}

fn telemetry(t: f64) -> Telemetry {
    // Flies east at about 5 m/s, 40 m up, looking straight down.
    Telemetry { lat: 51.5, lon: -0.1 + 7.2e-5 * t, alt_m: 40.0, yaw: 0.0, pitch: -90.0, roll: 0.0, hfov: 80.0 }
}

/// The scene of a case, built from its configuration alone.
fn build(c: &Case) -> CameraScene {
    build_as(c, "cam")
}

/// `build` for camera `id`.
fn build_as(c: &Case, id: &str) -> CameraScene {
    let p: PipelineConfig = toml::from_str(&format!("name = \"img\"\n{}", c.pipeline)).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let settings = SceneSettings {
        pipeline: "img".into(),
        geometry: (!c.drone).then(geometry),
        zones: Arc::new(p.zones.iter().map(|z| Zone { id: z.id.clone(), polygon: z.polygon.clone() }).collect()),
        rules: p.rules.clone(),
        classes: vec![],
        summary_every_s: c.summary_every_s,
        tracker: p.tracker.clone(),
        risk: p.risk.clone(),
    };
    let scene = CameraScene::new(id.into(), settings);
    if c.drone { scene.with_drone(Some(DroneGeometry::new(id, &DroneConfig::default(), None))) } else { scene }
}

fn case_frame(c: &Case, seq: u64) -> argus::model::Frame {
    let t = seq as f64 / FPS;
    let mut f = frame(seq, t);
    if c.drone {
        f.image = Arc::new(argus::model::RgbImage::new(800, 600, vec![0; 800 * 600 * 3]).unwrap());
        f.telemetry = Some(Arc::new(telemetry(t)));
    }
    f
}

fn models() -> Models {
    Models { detector: "scripted".into(), captioner: "scene".into() }
}

/// Wall-clock fields out, so that two runs of the same frames compare equal.
fn normalised(mut events: Vec<Event>) -> Vec<Event> {
    for e in &mut events {
        e.processed_at = OffsetDateTime::UNIX_EPOCH;
        e.latency_ms = 0.0;
    }
    events
}

/// Frames `from..frames` of `c` through `scene`, then the end of the source; the events
/// of each frame (the last entry: those of `finish`).
fn run_from(c: &Case, scene: &mut CameraScene, from: u64) -> Vec<Vec<Event>> {
    let m = models();
    let mut out = Vec::new();
    for seq in from..c.frames {
        let dets = (c.detections)(seq as f64 / FPS);
        out.push(normalised(scene.process(&case_frame(c, seq), dets, &m)));
    }
    out.push(normalised(scene.finish("source ended", &m)));
    out
}

fn first_difference(a: &[Vec<Event>], b: &[Vec<Event>]) -> String {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            return format!(
                "{i} frames after the restore:\n  uninterrupted: {}\n  restored:      {}",
                serde_json::to_string(x).unwrap(),
                serde_json::to_string(y).unwrap()
            );
        }
    }
    format!("lengths {} vs {}", a.len(), b.len())
}

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = scenarios().into_iter().map(|s| scenario_case(s, false)).collect();
    v.extend(scenarios().into_iter().map(|s| scenario_case(s, true)));
    v.extend(image_cases());
    v.push(drone_case());
    v
}

#[test]
fn a_restore_after_any_frame_continues_exactly_like_the_uninterrupted_run() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for c in cases() {
        // The uninterrupted run, with a checkpoint (as bytes) before every frame and after
        // the last one.
        let mut scene = build(&c);
        let m = models();
        let mut checkpoints = Vec::new();
        let mut per_frame = Vec::new();
        for seq in 0..c.frames {
            checkpoints.push(scene.checkpoint().to_bytes());
            per_frame.push(normalised(scene.process(&case_frame(&c, seq), (c.detections)(seq as f64 / FPS), &m)));
        }
        checkpoints.push(scene.checkpoint().to_bytes());
        per_frame.push(normalised(scene.finish("source ended", &m)));
        let incidents = per_frame.iter().flatten().filter(|e| e.incident_id.is_some()).count();
        assert!(incidents > 0 || c.name.contains("drone"), "{}: no incident events, nothing to check", c.name);

        let mut teeth = false;
        for (k, bytes) in checkpoints.iter().enumerate() {
            let state = SceneState::from_bytes(bytes).unwrap_or_else(|e| panic!("{} frame {k}: {e}", c.name));
            let mut fresh = build(&c);
            fresh.restore(state.clone()).unwrap_or_else(|e| panic!("{} frame {k}: {e}", c.name));
            let state_differs = fresh.checkpoint() != state;
            let got = run_from(&c, &mut fresh, k as u64);
            let want = &per_frame[k..];
            if got != want || state_differs {
                let events = if got != want { first_difference(want, &got) } else { "events equal".into() };
                failures.push(format!("{} — restored after frame {k} (state {}): {events}", c.name, if state_differs { "differs" } else { "equal" }));
                break;
            }
            // And the comparison has teeth: a fresh scene without the state goes wrong
            // somewhere in every case.
            teeth = teeth || run_from(&c, &mut build(&c), k as u64) != want;
            checked += 1;
        }
        assert!(teeth, "{}: a scene without the state gives the same events: the case checks nothing", c.name);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    assert!(checked > 3000, "{checked} restores checked");
}

#[test]
fn a_state_of_another_camera_configuration_or_version_is_refused_with_the_reason() {
    let c = &image_cases()[0];
    let mut scene = build(c);
    let m = models();
    for seq in 0..60 {
        scene.process(&case_frame(c, seq), (c.detections)(seq as f64 / FPS), &m);
    }
    let state = scene.checkpoint();
    assert!(state.open_incidents() > 0 && state.tracks() > 0);
    assert_eq!(state.state_version, STATE_VERSION);

    // Another camera.
    let other = CameraScene::new(
        "other".into(),
        SceneSettings {
            pipeline: "img".into(),
            geometry: Some(geometry()),
            zones: Arc::new(vec![]),
            rules: vec![],
            classes: vec![],
            summary_every_s: 0.0,
            tracker: Default::default(),
            risk: Default::default(),
        },
    );
    let mut other = other;
    assert!(matches!(other.restore(state.clone()), Err(RestoreError::Incompatible { why }) if why.contains("camera cam")));

    // The same camera with its zone moved, a rule changed, or the tracker retuned.
    for (what, edit) in [
        ("zone", IMAGE_PIPELINE.replace("[[8, 8], [12, 8]", "[[8, 7], [12, 8]")),
        ("rule", IMAGE_PIPELINE.replace("max_speed_mps = 2.5", "max_speed_mps = 3.0")),
        ("tracker", IMAGE_PIPELINE.replace("max_lost = 3", "max_lost = 4")),
    ] {
        let changed = Case { name: what.into(), pipeline: edit, summary_every_s: 0.5, drone: false, frames: 0, detections: Box::new(|_| vec![]) };
        let mut s = build(&changed);
        assert_ne!(s.fingerprint(), scene.fingerprint(), "{what}");
        let err = s.restore(state.clone()).unwrap_err();
        assert!(matches!(&err, RestoreError::Incompatible { why } if why.contains("configuration")), "{what}: {err}");
        assert_eq!(s.open_incidents(), 0, "{what}: nothing restored");
    }
    // A summary interval is not part of the state's configuration.
    let mut s = build(&Case {
        name: "summary".into(),
        pipeline: IMAGE_PIPELINE.into(),
        summary_every_s: 5.0,
        drone: false,
        frames: 0,
        detections: Box::new(|_| vec![]),
    });
    s.restore(state.clone()).unwrap();

    // Another version; corrupt bytes.
    let mut fresh = build(c);
    let mut old = state.clone();
    old.state_version = STATE_VERSION + 1;
    assert_eq!(fresh.restore(old.clone()), Err(RestoreError::Version { found: STATE_VERSION + 1, expected: STATE_VERSION }));
    assert!(matches!(SceneState::from_bytes(&old.to_bytes()), Err(RestoreError::Version { .. })));
    let mut bytes = state.to_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    assert!(matches!(SceneState::from_bytes(&bytes), Err(RestoreError::Corrupt(_))));
    assert_eq!(fresh.open_incidents(), 0);
}

#[test]
fn a_drone_restore_keeps_the_first_telemetry_origin_and_a_configured_one_is_kept() {
    let c = drone_case();
    let mut scene = build(&c);
    let m = models();
    for seq in 0..30 {
        scene.process(&case_frame(&c, seq), (c.detections)(seq as f64 / FPS), &m);
    }
    let bytes = scene.checkpoint().to_bytes();
    let mut fresh = build(&c);
    fresh.restore(SceneState::from_bytes(&bytes).unwrap()).unwrap();
    let a = scene.process(&case_frame(&c, 30), (c.detections)(3.0), &m);
    let b = fresh.process(&case_frame(&c, 30), (c.detections)(3.0), &m);
    assert_eq!(normalised(a), normalised(b));
    // A configured origin is part of the configuration.
    let origin = OriginConfig { lat: 51.5, lon: -0.1 };
    let configured = build(&c);
    let configured = configured.with_drone(Some(DroneGeometry::new("cam", &DroneConfig::default(), Some(&origin))));
    assert_ne!(configured.fingerprint(), scene.fingerprint());
}

/// A scene of the first image case after `frames` frames, with an open incident.
fn with_open_incident(frames: u64) -> (Case, CameraScene) {
    let c = image_cases().into_iter().next().unwrap();
    let mut scene = build(&c);
    let m = models();
    for seq in 0..frames {
        scene.process(&case_frame(&c, seq), (c.detections)(seq as f64 / FPS), &m);
    }
    assert!(scene.open_incidents() > 0);
    (c, scene)
}

#[test]
fn a_start_continues_a_recent_checkpoint_and_closes_an_old_ones_incidents_with_the_downtime() {
    use argus::model::EventKind;
    use argus::pipeline::scene_state::ResumeOutcome;
    let (c, scene) = with_open_incident(60);
    let open = scene.open_incidents();
    let bytes = scene.checkpoint().to_bytes();
    let saved_at = 1_800_000_000_000i64;
    let m = models();

    // Within the gap: continued, nothing closed.
    let mut fresh = build(&c);
    let (outcome, detail, events) = fresh.resume(Some((saved_at, bytes.clone())), saved_at + 4_000, 10.0, &m);
    assert_eq!((outcome, events.len(), fresh.open_incidents()), (ResumeOutcome::Restored, 0, open), "{detail}");

    // After the gap: started fresh, every open incident closed with the downtime.
    let mut fresh = build(&c);
    let (outcome, detail, events) = fresh.resume(Some((saved_at, bytes.clone())), saved_at + 25_000, 10.0, &m);
    assert_eq!((outcome, fresh.open_incidents()), (ResumeOutcome::TooOld, 0), "{detail}");
    assert_eq!(events.len(), open);
    let why = "not observed from 2027-01-15T08:00:00Z to 2027-01-15T08:00:25Z";
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schema/argus.event.v1.json")).unwrap();
    let schema = jsonschema::validator_for(&schema).unwrap();
    for e in &events {
        assert_eq!(e.kind, EventKind::IncidentClosed);
        assert!(e.caption.contains(why), "{}", e.caption);
        assert!(e.risk.reasons.iter().all(|r| r.detail.contains(why)), "{:?}", e.risk.reasons);
        let gap = argus::model::Unobserved { from: "2027-01-15T08:00:00Z".into(), to: "2027-01-15T08:00:25Z".into() };
        assert!(e.risk.reasons.iter().all(|r| r.not_observed.as_ref() == Some(&gap)), "{:?}", e.risk.reasons);
        let json = serde_json::to_value(e).unwrap();
        let errors: Vec<String> = schema.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    // The same incidents the uninterrupted scene has open (same ids).
    let mut ids: Vec<String> = events.iter().filter_map(|e| e.incident_id.clone()).collect();
    ids.sort();
    let mut keep = build(&c);
    keep.restore(SceneState::from_bytes(&bytes).unwrap()).unwrap();
    let mut open_ids: Vec<String> = keep.finish("x", &m).into_iter().filter_map(|e| e.incident_id).collect();
    open_ids.sort();
    assert_eq!(ids, open_ids);

    // Another configuration: closed as such; corrupt: fresh, nothing to close; none.
    let changed = Case {
        name: "changed".into(),
        pipeline: IMAGE_PIPELINE.replace("max_lost = 3", "max_lost = 5"),
        summary_every_s: 0.5,
        drone: false,
        frames: 0,
        detections: Box::new(|_| vec![]),
    };
    let mut other = build(&changed);
    let (outcome, detail, events) = other.resume(Some((saved_at, bytes.clone())), saved_at + 1_000, 10.0, &m);
    assert_eq!((outcome, events.len()), (ResumeOutcome::Incompatible, open), "{detail}");
    assert!(events.iter().all(|e| e.caption.contains("configuration changed")), "{:?}", events.iter().map(|e| &e.caption).collect::<Vec<_>>());
    let mut bad = bytes.clone();
    bad[10] ^= 0xff;
    let (outcome, _, events) = build(&c).resume(Some((saved_at, bad)), saved_at + 1_000, 10.0, &m);
    assert_eq!((outcome, events.len()), (ResumeOutcome::Corrupt, 0));
    let (outcome, _, _) = build(&c).resume(None, saved_at, 10.0, &m);
    assert_eq!(outcome, ResumeOutcome::None);
}

#[test]
fn scene_state_keys_are_validated_with_file_key_and_fix() {
    let pipeline = include_str!("../pipelines/demo.toml").to_string();
    let issues = |toml: &str| {
        let p = pipeline.clone();
        let read = move |_: &std::path::Path| Ok(p.clone());
        match argus::config::load_from_str(std::path::Path::new("config/argus.toml"), toml, &[], &read) {
            Err(e) => e.issues().to_vec(),
            Ok(cfg) => argus::config::validate(&cfg),
        }
    };
    assert!(issues("[scene_state]\nenabled = true\n").is_empty());
    for (toml, key, problem) in [
        ("[scene_state]\ncheckpoint_every_s = 0\n", "scene_state.checkpoint_every_s", "outside (0, 3600]"),
        ("[scene_state]\nmax_gap_s = -1\n", "scene_state.max_gap_s", "not a finite number"),
        ("[scene_state]\ncheckpoint_every_s = 5\nmax_gap_s = 2\n", "scene_state.max_gap_s", "shorter than checkpoint_every_s"),
    ] {
        let list = issues(toml);
        assert!(
            list.iter().any(|i| i.file == std::path::Path::new("config/argus.toml") && i.key == key && i.problem.contains(problem) && !i.fix.is_empty()),
            "{toml}: {list:?}"
        );
    }
    assert!(issues("[scene_state]\nevery = 1\n").iter().any(|i| i.problem.contains("every")), "unknown keys are refused");
}

// ---------------------------------------------------------------------------------------
// The scene stage with a state store: a stop mid-incident and a start within the gap
// continue the same incident; a start after the gap closes it with the downtime.

mod stage {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use argus::detect::{DetectError, Detector, DetectorInfo, DetectorParts};
    use argus::model::{Detection, Event, EventKind, RgbImage};
    use argus::pipeline::hub::Pushed;
    use argus::pipeline::scene_stage::StateKeeping;
    use argus::pipeline::scene_state::{StateStore, StateWriter, StoredIncident};
    use argus::pipeline::snapshot::SnapshotBoard;
    use argus::pipeline::{StageContext, StageSettings};
    use argus::sinks::{Sink, SinkError};
    use argus::telemetry::health::Health;
    use argus::telemetry::metrics::Metrics;
    use parking_lot::Mutex;

    use super::*;

    /// Checkpoints, and the events an event store would hold (for `open_incidents`).
    #[derive(Default)]
    struct MemoryStore(Mutex<HashMap<String, (i64, Vec<u8>)>>, Mutex<Vec<Event>>);

    impl StateWriter for MemoryStore {
        fn save_state(&self, camera_id: &str, saved_at_ms: i64, bytes: &[u8], _: Option<&argus::model::SourcePosition>) -> Result<(), String> {
            self.0.lock().insert(camera_id.into(), (saved_at_ms, bytes.to_vec()));
            Ok(())
        }
        fn delete_state(&self, camera_id: &str) -> Result<(), String> {
            self.0.lock().remove(camera_id);
            Ok(())
        }
    }

    impl StateStore for MemoryStore {
        fn load_state(&self, camera_id: &str) -> Result<Option<(i64, Vec<u8>)>, String> {
            Ok(self.0.lock().get(camera_id).cloned())
        }
        fn open_incidents(&self, camera_id: &str) -> Result<Vec<StoredIncident>, String> {
            let events = self.1.lock();
            let mut out = Vec::new();
            for opened in events.iter().filter(|e| e.camera_id == camera_id && e.kind == EventKind::IncidentOpened) {
                let life: Vec<&Event> = events.iter().filter(|e| e.incident_id == opened.incident_id).collect();
                if life.iter().all(|e| e.kind != EventKind::IncidentClosed) {
                    let last = life.iter().max_by_key(|e| e.captured_at).unwrap();
                    out.push(StoredIncident { opened_at: opened.captured_at, last: (*last).clone() });
                }
            }
            Ok(out)
        }
    }

    /// The case's boxes for the frame whose sequence number the image carries.
    struct Scripted {
        boxes: Box<dyn Fn(f64) -> Vec<Detection> + Send>,
        info: DetectorInfo,
    }

    impl Detector for Scripted {
        fn info(&self) -> &DetectorInfo {
            &self.info
        }
        fn into_parts(self: Box<Self>, _workers: usize) -> DetectorParts {
            DetectorParts::Whole(self)
        }
        fn detect(&mut self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError> {
            Ok(images.iter().map(|im| (self.boxes)((im.pixels[0] as u64 + 256 * im.pixels[1] as u64) as f64 / FPS)).collect())
        }
    }

    /// The image `Scripted` reads frame `seq`'s number from.
    fn seq_image(seq: u64) -> Arc<RgbImage> {
        Arc::new(RgbImage::new(4, 4, [vec![(seq % 256) as u8, (seq / 256) as u8], vec![0; 46]].concat()).unwrap())
    }

    /// What `Collect` has seen.
    type Collected = Arc<Mutex<Vec<Event>>>;

    /// Stage settings that run one frame at a time through the detector.
    fn one_at_a_time(frame_queue: usize, camera_down_after: Option<Duration>) -> StageSettings {
        StageSettings {
            frame_queue,
            frame_queue_bytes: usize::MAX,
            max_batch: 1,
            max_batch_per_camera: 1,
            max_wait: Duration::from_millis(1),
            detect_layout: argus::pipeline::detect_stage::Layout { workers: argus::detect::config::Workers::Count(1), threads_per_worker: 1 },
            camera_down_after,
        }
    }

    /// The event bus with one sink that collects every event.
    fn collecting(metrics: &Arc<Metrics>, health: &Arc<Health>) -> (argus::pipeline::bus::EventBus, argus::sinks::SinkThreads, Collected) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (bus, sinks) = argus::sinks::start(vec![Box::new(Collect(got.clone()))], 1024, metrics.clone(), health.clone());
        (bus, sinks, got)
    }

    struct Collect(Arc<Mutex<Vec<Event>>>);

    impl Sink for Collect {
        fn name(&self) -> &str {
            "collect"
        }
        fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
            self.0.lock().extend(events.iter().map(|e| (**e).clone()));
            Ok(())
        }
    }

    /// The first image case's boxes (`Case::detections` is not Send: written again).
    fn walker_and_runner(t: f64) -> Vec<Detection> {
        let (x, y) = walker(t);
        let mut v = vec![person(x, y)];
        if let Some((x, y)) = runner(t) {
            v.push(person(x, y));
        }
        v
    }

    /// The ids of the incidents `events` opened.
    fn opened_ids(events: &[Event]) -> Vec<String> {
        incidents(events).into_iter().filter(|(k, _)| *k == EventKind::IncidentOpened).map(|(_, id)| id).collect()
    }

    fn info() -> DetectorInfo {
        DetectorInfo {
            model: "scripted".into(),
            model_id: "scripted".into(),
            backend: "fake",
            device: "cpu".into(),
            input_size: [4, 4],
            score_threshold: 0.3,
            nms_iou: 0.5,
            max_engine_batch: 1,
        }
    }

    /// Frames `from..to` of the walker case through the stages; `graceful`: Argus stops
    /// (instead of the source ending). The events, in order.
    fn run(store: &Arc<MemoryStore>, from: u64, to: u64, max_gap_s: f64, graceful: bool) -> Vec<Event> {
        run_with_origin(store, from, to, max_gap_s, graceful).0
    }

    /// `run`, and where the camera's state came from (as `/v1/cameras` shows it).
    fn run_with_origin(store: &Arc<MemoryStore>, from: u64, to: u64, max_gap_s: f64, graceful: bool) -> (Vec<Event>, String) {
        let c = image_cases().into_iter().next().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        health.register_source("cam", "img", "scripted", false);
        let (bus, sinks, got) = collecting(&metrics, &health);
        let stopping = Arc::new(AtomicBool::new(false));
        let keeping = StateKeeping::new(store.clone(), Duration::from_millis(1), max_gap_s, stopping);
        let settings = one_at_a_time(4, None);
        let cx = StageContext { metrics, health: health.clone(), board: Arc::new(SnapshotBoard::default()), evidence: None, clips: None };
        let detector = Box::new(Scripted { boxes: Box::new(walker_and_runner), info: info() });
        let (stages, mut lanes) = argus::pipeline::start(vec![("cam".into(), build(&c), false)], None, detector, bus, settings, cx, Some(keeping)).unwrap();
        let lane = lanes.remove("cam").unwrap();
        for seq in from..to {
            let mut f = frame(seq, seq as f64 / FPS);
            f.image = seq_image(seq);
            assert!(matches!(lane.push(f), Pushed::Queued), "frame {seq}");
        }
        if graceful {
            stages.begin_shutdown();
        }
        drop(lane);
        stages.join();
        assert!(sinks.drain(Duration::from_secs(30)).is_empty());
        let v = got.lock().clone();
        (v, health.sources()["cam"].scene_state.clone().unwrap_or_default())
    }

    fn incidents(events: &[Event]) -> Vec<(EventKind, String)> {
        events.iter().filter(|e| e.incident_id.is_some()).map(|e| (e.kind, e.incident_id.clone().unwrap())).collect()
    }

    #[test]
    fn a_graceful_stop_and_a_start_within_the_gap_continue_the_same_incidents() {
        let uninterrupted = run(&Arc::new(MemoryStore::default()), 0, 160, 10.0, false);
        let store = Arc::new(MemoryStore::default());
        let first = run(&store, 0, 60, 10.0, true);
        assert!(first.iter().all(|e| e.kind != EventKind::IncidentClosed), "a graceful stop closes nothing: {:?}", incidents(&first));
        assert!(first.iter().any(|e| e.kind == EventKind::IncidentOpened));
        let (second, origin) = run_with_origin(&store, 60, 160, 10.0, false);
        assert!(origin.starts_with("restored: checkpoint"), "{origin}");
        let both: Vec<Event> = first.into_iter().chain(second).collect();
        assert_eq!(incidents(&both), incidents(&uninterrupted));
        assert_eq!(normalised(both), normalised(uninterrupted), "the same events, ids and contents");
    }

    #[test]
    fn incidents_the_event_store_holds_open_close_when_the_checkpoint_is_unreadable() {
        let store = Arc::new(MemoryStore::default());
        let first = run(&store, 0, 60, 10.0, true);
        let open = opened_ids(&first);
        assert!(!open.is_empty());
        // The events reached the event store; the checkpoint did not survive (a flipped
        // bit): nothing in it says what was open.
        *store.1.lock() = first.clone();
        for (_, bytes) in store.0.lock().values_mut() {
            bytes[5] ^= 0x40;
        }
        let (second, origin) = run_with_origin(&store, 60, 160, 10.0, false);
        assert!(origin.starts_with("corrupt:"), "{origin}");
        let leading: Vec<&Event> = second.iter().take_while(|e| e.kind == EventKind::IncidentClosed && e.caption.contains("not observed from")).collect();
        let mut closed: Vec<String> = leading.iter().map(|e| e.incident_id.clone().unwrap()).collect();
        let mut want = open.clone();
        closed.sort();
        want.sort();
        assert_eq!(closed, want, "every incident left open closes first, once");
        for e in &leading {
            assert!(e.risk.reasons[0].not_observed.is_some(), "{e:?}");
            let last = first.iter().filter(|f| f.incident_id == e.incident_id).max_by_key(|f| f.captured_at).unwrap();
            assert_eq!(e.captured_at, last.captured_at, "stamped with the incident's latest event");
            assert_ne!(e.event_id, last.event_id);
        }
        // Nothing stays open, nothing closes twice.
        let both: Vec<Event> = first.into_iter().chain(second).collect();
        let all = incidents(&both);
        for (_, id) in all.iter().filter(|(k, _)| *k == EventKind::IncidentOpened) {
            assert_eq!(all.iter().filter(|(k, i)| *k == EventKind::IncidentClosed && i == id).count(), 1, "{id}: {all:?}");
        }
    }

    #[test]
    fn a_start_after_the_gap_closes_what_was_open_with_the_downtime() {
        let store = Arc::new(MemoryStore::default());
        let first = run(&store, 0, 60, 10.0, true);
        let open = opened_ids(&first);
        assert!(!open.is_empty());
        // Saved "long ago": move the checkpoint's time back by a minute.
        for (at, _) in store.0.lock().values_mut() {
            *at -= 60_000;
        }
        let (second, origin) = run_with_origin(&store, 60, 160, 10.0, false);
        assert!(origin.starts_with("too_old: checkpoint 60."), "{origin}");
        let closed: Vec<&Event> = second.iter().filter(|e| e.kind == EventKind::IncidentClosed && open.contains(e.incident_id.as_ref().unwrap())).collect();
        assert_eq!(closed.len(), open.len(), "{:?}", incidents(&second));
        assert!(closed.iter().all(|e| e.caption.contains("not observed from")), "{:?}", closed.iter().map(|e| &e.caption).collect::<Vec<_>>());
        // Nothing left open: every opened incident of the second run closes too.
        let opened2 = incidents(&second).iter().filter(|(k, _)| *k == EventKind::IncidentOpened).count();
        let closed2 = incidents(&second).iter().filter(|(k, _)| *k == EventKind::IncidentClosed).count();
        assert_eq!(closed2, opened2 + open.len());
    }

    /// A Kafka camera's state topic, as the scene stage sees it: the last checkpoint
    /// written, with the frames position it reflects.
    #[derive(Default)]
    struct Topic(Mutex<Option<(Vec<u8>, i64)>>);

    impl StateWriter for Topic {
        fn save_state(&self, _: &str, _: i64, bytes: &[u8], position: Option<&argus::model::SourcePosition>) -> Result<(), String> {
            if let Some(argus::model::SourcePosition::Kafka(p)) = position {
                *self.0.lock() = Some((bytes.to_vec(), p.offset));
            }
            Ok(())
        }
        fn delete_state(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    /// One member's stages with the walker case's camera as a Kafka camera: assigned
    /// from `topic`'s checkpoint, fed frames `from..to` (frame k at offset k), released
    /// (a revocation), then fed `after` more frames, which it must drop. The events.
    fn member(topic: &Arc<Topic>, from: u64, to: u64, after: u64) -> Vec<Event> {
        let c = image_cases().into_iter().next().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        health.register_source("cam", "img", "kafka", false);
        let (bus, sinks, got) = collecting(&metrics, &health);
        let keeping = StateKeeping::new(Arc::new(MemoryStore::default()), Duration::from_millis(1), 10.0, Arc::default()).excluding(["cam".into()]);
        let settings = one_at_a_time(4, None);
        let cx = StageContext { metrics: metrics.clone(), health, board: Arc::new(SnapshotBoard::default()), evidence: None, clips: None };
        let detector = Box::new(Scripted { boxes: Box::new(walker_and_runner), info: info() });
        let (stages, mut lanes) = argus::pipeline::start(vec![("cam".into(), build(&c), false)], None, detector, bus, settings, cx, Some(keeping)).unwrap();
        let handoff = stages.handoff().expect("scene state keeping is on");
        let state = topic.0.lock().clone();
        if let Some((_, offset)) = &state {
            assert_eq!(*offset as u64 + 1, from, "the member continues after the checkpoint's frame");
        }
        let writer: Arc<dyn StateWriter> = topic.clone();
        handoff.assign(argus::pipeline::scene_stage::Assignment { camera: "cam".into(), state: state.map(|(b, _)| b), from: "test".into(), writer });
        let lane = lanes.remove("cam").unwrap();
        let push = |seq: u64| {
            let mut f = frame(seq, seq as f64 / FPS);
            f.image = seq_image(seq);
            f.position =
                Some(argus::model::SourcePosition::Kafka(argus::model::KafkaPosition { topic: "frames".into(), partition: 0, offset: seq as i64, seq }));
            assert!(matches!(lane.push(f), Pushed::Queued), "frame {seq}");
        };
        (from..to).for_each(push);
        // A revocation waits for the frames in flight before it releases the camera.
        let t0 = Instant::now();
        while metrics.frames_processed.with_label_values(&["cam"]).get() < to - from {
            assert!(t0.elapsed() < Duration::from_secs(10), "frames in flight");
            std::thread::sleep(Duration::from_millis(5));
        }
        handoff.release(vec!["cam".into()], true).recv_timeout(Duration::from_secs(10)).expect("the release's checkpoint is written");
        (to..to + after).for_each(push);
        stages.begin_shutdown();
        drop(lane);
        stages.join();
        assert!(sinks.drain(Duration::from_secs(30)).is_empty());
        assert_eq!(metrics.frames_dropped.with_label_values(&["cam", "not_assigned"]).get(), after, "frames after the release are another member's");
        got.lock().clone()
    }

    /// A Kafka camera moves between members in the middle of an incident: the second
    /// continues from the first's last checkpoint, and together they write exactly the
    /// events of one member that kept the camera (ids and contents).
    #[test]
    fn a_kafka_camera_handed_over_mid_incident_continues_on_the_next_member() {
        let uninterrupted = member(&Arc::default(), 0, 160, 0);
        let topic = Arc::new(Topic::default());
        let first = member(&topic, 0, 60, 5);
        assert!(!opened_ids(&first).is_empty() && first.iter().all(|e| e.kind != EventKind::IncidentClosed), "the handover is mid-incident");
        let second = member(&topic, 60, 160, 0);
        let both: Vec<Event> = first.into_iter().chain(second).collect();
        assert_eq!(incidents(&both), incidents(&uninterrupted));
        assert_eq!(normalised(both), normalised(uninterrupted), "the same events, ids and contents");
    }

    /// A recording that ends while another camera goes on: its open incidents close at
    /// once ("source ended", stamped with its last frame), not when the last camera
    /// ends, and its checkpoint is forgotten.
    #[test]
    fn a_recording_that_ends_while_another_camera_runs_closes_its_incidents_then() {
        let c = image_cases().into_iter().next().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let (bus, sinks, got) = collecting(&metrics, &health);
        let store = Arc::new(MemoryStore::default());
        let keeping = StateKeeping::new(store.clone(), Duration::from_millis(1), 10.0, Arc::default());
        let settings = one_at_a_time(4, None);
        let cx = StageContext { metrics: metrics.clone(), health, board: Arc::new(SnapshotBoard::default()), evidence: None, clips: None };
        let detector = Box::new(Scripted { boxes: Box::new(walker_and_runner), info: info() });
        let cameras = vec![("cam".into(), build(&c), false), ("other".into(), build_as(&c, "other"), true)];
        let (stages, mut lanes) = argus::pipeline::start(cameras, None, detector, bus, settings, cx, Some(keeping)).unwrap();
        let (lane, other) = (lanes.remove("cam").unwrap(), lanes.remove("other").unwrap());
        for seq in 0..60 {
            let mut f = frame(seq, seq as f64 / FPS);
            f.image = seq_image(seq);
            assert!(matches!(lane.push(f), Pushed::Queued), "frame {seq}");
        }
        lane.end();
        drop(lane);
        let t0 = Instant::now();
        let closed = loop {
            let events = got.lock().clone();
            let open = opened_ids(&events);
            let closed: Vec<Event> = events.into_iter().filter(|e| e.kind == EventKind::IncidentClosed).collect();
            if !open.is_empty() && closed.len() == open.len() {
                break closed;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the ended camera's incidents stay open while the other camera runs: {open:?}, {} closed",
                closed.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            closed.iter().all(|e| e.camera_id == "cam" && e.caption.contains("source ended")),
            "{:?}",
            closed.iter().map(|e| &e.caption).collect::<Vec<_>>()
        );
        // …while the stages still run: the other camera's frames are still analysed.
        for seq in 0..3 {
            let mut f = frame(seq, seq as f64 / FPS);
            f.camera_id = "other".into();
            f.image = seq_image(seq);
            assert!(matches!(other.push(f), Pushed::Queued));
        }
        let t0 = Instant::now();
        while metrics.frames_processed.with_label_values(&["other"]).get() < 3 {
            assert!(t0.elapsed() < Duration::from_secs(10), "the stages stopped with the ended camera");
            std::thread::sleep(Duration::from_millis(10));
        }
        let t0 = Instant::now();
        while store.0.lock().contains_key("cam") {
            assert!(t0.elapsed() < Duration::from_secs(10), "the ended recording's checkpoint is forgotten");
            std::thread::sleep(Duration::from_millis(10));
        }
        stages.begin_shutdown();
        drop(other);
        stages.join();
        assert!(sinks.drain(Duration::from_secs(30)).is_empty());
        assert!(!store.0.lock().contains_key("cam"), "a stop after the end saves no state for the ended recording");
    }

    /// A live camera that stops sending frames: its open incidents close once it has
    /// been silent for `camera_down_after`, with the silence in the reason; none stays open.
    #[test]
    fn a_live_camera_silent_past_the_gap_has_its_open_incidents_closed_once() {
        let c = image_cases().into_iter().next().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let (bus, sinks, got) = collecting(&metrics, &health);
        let down_after = Duration::from_millis(700);
        let settings = one_at_a_time(64, Some(down_after));
        let cx = StageContext { metrics, health, board: Arc::new(SnapshotBoard::default()), evidence: None, clips: None };
        let (stages, mut lanes) = argus::pipeline::start(
            vec![("cam".into(), build(&c), true)],
            None,
            Box::new(Scripted { boxes: Box::new(walker_and_runner), info: info() }),
            bus,
            settings,
            cx,
            None,
        )
        .unwrap();
        let lane = lanes.remove("cam").unwrap();
        // The frames the stage test stops at mid-incident; then the camera goes quiet.
        const LAST: u64 = 59;
        for seq in 0..=LAST {
            let mut f = frame(seq, seq as f64 / FPS);
            f.image = seq_image(seq);
            assert!(matches!(lane.push(f), Pushed::Queued), "frame {seq}");
        }
        let opened_at = Instant::now();
        let closed_for_silence = |events: &[Event]| {
            events.iter().filter(|e| e.kind == EventKind::IncidentClosed && e.caption.contains("not observed since")).cloned().collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let closed = loop {
            let closed = closed_for_silence(&got.lock());
            if !closed.is_empty() {
                break closed;
            }
            assert!(Instant::now() < deadline, "no incident closed for silence: {:?}", got.lock().iter().map(|e| e.kind).collect::<Vec<_>>());
            std::thread::sleep(Duration::from_millis(20));
        };
        // Not before the camera had been silent for `down_after`.
        assert!(opened_at.elapsed() >= down_after, "closed after {:?}", opened_at.elapsed());
        // Exactly the incidents open at the last frame close, each once.
        let events = got.lock().clone();
        let ids = |k: EventKind| -> Vec<String> { events.iter().filter(|e| e.kind == k).map(|e| e.incident_id.clone().unwrap()).collect() };
        let closed_before: Vec<String> = events
            .iter()
            .filter(|e| e.kind == EventKind::IncidentClosed && !e.caption.contains("not observed since"))
            .map(|e| e.incident_id.clone().unwrap())
            .collect();
        let mut open_at_last: Vec<String> = ids(EventKind::IncidentOpened).into_iter().filter(|id| !closed_before.contains(id)).collect();
        assert!(!open_at_last.is_empty(), "the walker's intrusion is open at frame {LAST}");
        let mut closed_ids: Vec<String> = closed.iter().map(|e| e.incident_id.clone().unwrap()).collect();
        open_at_last.sort();
        closed_ids.sort();
        assert_eq!(closed_ids, open_at_last);
        for e in &closed {
            let gap = e.risk.reasons[0].not_observed.clone().expect("the silence in the reason");
            assert!(gap.from < gap.to, "{gap:?}");
            // Stamped with the camera's last frame, not the wall clock.
            assert_eq!(e.captured_at, frame(LAST, LAST as f64 / FPS).captured_at);
        }
        // Silence goes on: nothing more closes; the camera's end closes nothing twice.
        std::thread::sleep(down_after * 2);
        drop(lane);
        stages.join();
        assert!(sinks.drain(Duration::from_secs(30)).is_empty());
        let all = got.lock().clone();
        let opened = all.iter().filter(|e| e.kind == EventKind::IncidentOpened).count();
        assert_eq!(
            all.iter().filter(|e| e.kind == EventKind::IncidentClosed).count(),
            opened,
            "{:?}",
            all.iter().map(|e| (e.kind, &e.caption)).collect::<Vec<_>>()
        );
    }
}
