//! Scene state across restarts, through the binary: the demo recording read at its own
//! frame rate (`realtime = true`, like a camera), SIGKILLed while an incident is open,
//! restarted on the same store.
//!
//! - Within `max_gap_s`: the recording resumes after its checkpoint's frame and the scene
//!   continues from the checkpoint, so the union of both runs' events is exactly the
//!   event set of one uninterrupted run over the same frames (ids and contents; the
//!   frames between the last checkpoint and the kill are analysed twice and yield the
//!   same events again), and every incident opens and closes exactly once.
//! - After the gap: what the checkpoint left open closes at the restart with the downtime
//!   ("not observed from T1 to T2"), nothing stays open, nothing opens twice.
//!
//! The uninterrupted reference runs as fast as analysis allows: with capture times from
//! the recording itself (`start_time`), pacing changes nothing in the events.
#![cfg(all(feature = "gstreamer", feature = "onnx", feature = "opencv"))]

#[path = "common/events.rs"]
mod events;
#[path = "common/logs.rs"]
mod logs;
use events::by_id;
use logs::plain_log;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Frames of vtest.avi each run covers (10 fps: 13 s of video). An intrusion into
/// `crossing` opens within the first seconds and several incidents overlap later.
const FRAMES: u64 = 130;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The demo at `realtime`, with its own JSONL (`jsonl`), the store and scene state in
/// `dir`; stdout off. Batches of one frame: the detector then sees exactly the same
/// inputs at any pacing.
fn write_config(dir: &Path, name: &str, jsonl: &str, realtime: bool, max_gap_s: f64) -> PathBuf {
    let repo = env!("CARGO_MANIFEST_DIR");
    let pipeline = std::fs::read_to_string(format!("{repo}/pipelines/demo.toml")).unwrap();
    assert!(pipeline.contains("realtime = false"), "the demo pipeline's realtime line moved");
    let pipeline = pipeline.replacen("realtime = false", &format!("realtime = {realtime}"), 1);
    std::fs::write(dir.join(format!("{name}.pipeline.toml")), pipeline).unwrap();
    let text = argus::config::EMBEDDED_CONFIG
        .replace("pipelines = [\"pipelines/demo.toml\"]", &format!("pipelines = [\"{}\"]", dir.join(format!("{name}.pipeline.toml")).display()))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", free_port()))
        .replace("var/events.jsonl", &dir.join(jsonl).display().to_string())
        .replace("var/argus.db", &dir.join("argus.db").display().to_string())
        .replace("max_batch = 4 ", "max_batch = 1 ")
        .replace("[sinks.stdout]\nenabled = true", "[sinks.stdout]\nenabled = false")
        + &format!("\n[scene_state]\nenabled = true\ncheckpoint_every_s = 0.5\nmax_gap_s = {max_gap_s}\n");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn argus(cfg: &Path, stderr: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", &FRAMES.to_string(), "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

fn wait_ok(mut child: Child, within: Duration, what: &str) {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{what}: {s}");
            return;
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            panic!("{what}: still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A JSONL file's events in order, parsed strictly. `killed`: the file of a SIGKILLed
/// run, whose last line may be torn (never written whole, so never durable: the next
/// run analyses that frame again).
fn events(path: &Path, killed: bool) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    assert!(killed || whole.len() == text.len(), "{}: a torn last line", path.display());
    whole.lines().enumerate().map(|(n, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{} line {}: {e}: {l}", path.display(), n + 1))).collect()
}

/// Every incident opens once and closes once (copies of one event, from frames analysed
/// twice, count once), and no two incidents of one rule are open at the same time.
fn check_lifecycles(all: &[Value]) {
    let mut seen = BTreeSet::new();
    let mut per_incident: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in all {
        if let Some(id) = e["incident_id"].as_str()
            && seen.insert(e["event_id"].as_str().unwrap())
        {
            per_incident.entry(id).or_default().push(e);
        }
    }
    assert!(!per_incident.is_empty(), "the demo's first {FRAMES} frames open incidents");
    let mut spans: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (id, life) in &per_incident {
        let count = |k: &str| life.iter().filter(|e| e["kind"] == k).count();
        assert_eq!((count("incident.opened"), count("incident.closed")), (1, 1), "incident {id}: opened and closed exactly once");
        let at = |k: &str| life.iter().find(|e| e["kind"] == k).unwrap()["captured_at"].as_str().unwrap().to_string();
        let rule = life[0]["risk"]["reasons"][0]["rule"].as_str().unwrap().to_string();
        spans.entry(rule).or_default().push((at("incident.opened"), at("incident.closed")));
    }
    for (rule, mut s) in spans {
        s.sort();
        for w in s.windows(2) {
            assert!(w[0].1 <= w[1].0, "two {rule} incidents open at once: {w:?}");
        }
    }
}

/// Runs the realtime demo until an incident has been open for a while (so that a
/// checkpoint holds it), then SIGKILLs it. Returns the incident's id.
fn kill_mid_incident(cfg: &Path, jsonl: &Path, stderr: &Path) -> String {
    let mut child = argus(cfg, stderr);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut open_since: Option<(String, Instant)> = None;
    loop {
        assert!(Instant::now() < deadline, "no incident opened in time; stderr:\n{}", std::fs::read_to_string(stderr).unwrap_or_default());
        assert!(child.try_wait().unwrap().is_none(), "argus ended before the kill");
        let evs = events(jsonl, true);
        let closed: BTreeSet<&str> = evs.iter().filter(|e| e["kind"] == "incident.closed").filter_map(|e| e["incident_id"].as_str()).collect();
        let open = evs.iter().filter(|e| e["kind"] == "incident.opened").filter_map(|e| e["incident_id"].as_str()).find(|id| !closed.contains(id));
        match (open, &open_since) {
            (Some(id), Some((was, since))) if id == was && since.elapsed() > Duration::from_millis(1500) => {
                child.kill().unwrap();
                child.wait().unwrap();
                return id.to_string();
            }
            (Some(id), Some((was, _))) if id == was => {}
            (Some(id), _) => open_since = Some((id.to_string(), Instant::now())),
            (None, _) => open_since = None,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_recording_killed_mid_incident_continues_within_the_gap_and_closes_with_the_downtime_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The uninterrupted reference (its own store), as fast as analysis allows.
    let reference_dir = d.join("reference");
    std::fs::create_dir(&reference_dir).unwrap();
    let cfg = write_config(&reference_dir, "reference", "events.jsonl", false, 30.0);
    wait_ok(argus(&cfg, &reference_dir.join("stderr")), Duration::from_secs(180), "the reference run");
    let reference_events = events(&reference_dir.join("events.jsonl"), false);
    check_lifecycles(&reference_events);
    let reference = by_id(&reference_events);

    // Killed and restarted within the gap.
    let within = d.join("within");
    std::fs::create_dir(&within).unwrap();
    let first = write_config(&within, "first", "first.jsonl", true, 30.0);
    let second = write_config(&within, "second", "second.jsonl", true, 30.0);
    let open = kill_mid_incident(&first, &within.join("first.jsonl"), &within.join("first.stderr"));
    let before = events(&within.join("first.jsonl"), true);
    wait_ok(argus(&second, &within.join("second.stderr")), Duration::from_secs(120), "the restarted run");
    let log = plain_log(&within.join("second.stderr"));
    assert!(log.contains("outcome=\"restored\""), "the scene continued from its checkpoint:\n{log}");
    assert!(log.contains("resuming the recording"), "the recording resumed after its checkpoint's frame:\n{log}");
    let after = events(&within.join("second.jsonl"), false);
    assert!(after.iter().all(|e| e["frame"]["seq"].as_u64().unwrap() > 0), "the restart did not read the recording from its beginning");
    assert!(!after.iter().any(|e| e["kind"] == "incident.opened" && e["incident_id"] == open.as_str()), "{open} was not opened again");
    let both = [before.clone(), after.clone()].concat();
    check_lifecycles(&both);
    let union = by_id(&both);
    let missing: Vec<&String> = reference.keys().filter(|id| !union.contains_key(*id)).collect();
    let extra: Vec<&String> = union.keys().filter(|id| !reference.contains_key(*id)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "event ids differ from the uninterrupted run: missing {missing:?}, extra {extra:?}");
    for (id, e) in &union {
        assert_eq!(e, &reference[id], "{id}: contents differ from the uninterrupted run");
    }
    // Analysed twice: only frames after the last checkpoint (at most ~checkpoint_every_s
    // of video plus what was in flight), never the whole recording again.
    let repeated = before.len() + after.len() - union.len();
    assert!(repeated < before.len(), "{repeated} of {} events repeated", before.len());

    // Killed, then restarted after the gap.
    let gap = d.join("gap");
    std::fs::create_dir(&gap).unwrap();
    let first = write_config(&gap, "first", "first.jsonl", true, 2.0);
    let second = write_config(&gap, "second", "second.jsonl", true, 2.0);
    let open = kill_mid_incident(&first, &gap.join("first.jsonl"), &gap.join("first.stderr"));
    std::thread::sleep(Duration::from_secs(4));
    let before = events(&gap.join("first.jsonl"), true);
    wait_ok(argus(&second, &gap.join("second.stderr")), Duration::from_secs(120), "the run after the gap");
    let after = events(&gap.join("second.jsonl"), false);
    // The restart first closes what the checkpoint left open, with the downtime, stamped
    // with the last frame the checkpoint saw; nothing else says "not observed".
    let downtime = |e: &Value| e["kind"] == "incident.closed" && e["caption"].as_str().unwrap().contains("not observed from");
    let leading = after.iter().take_while(|e| downtime(e)).count();
    assert!(after[leading..].iter().all(|e| !downtime(e)), "downtime closes come before any frame's events");
    let closed = after[..leading].iter().find(|e| e["incident_id"] == open.as_str()).unwrap_or_else(|| panic!("{open} was not closed with the downtime"));
    let reason = &closed["risk"]["reasons"][0];
    assert!(reason["not_observed"]["from"].is_string() && reason["not_observed"]["to"].is_string(), "{closed}");
    assert!(closed["captured_at"].as_str() <= after[leading..].first().and_then(|e| e["captured_at"].as_str()), "{closed}");
    check_lifecycles(&[before, after].concat());
}

/// The property of `tests/scene_state.rs` on the demo's real objects: the first 300
/// frames' detections (NanoDet through `argus run`, a summary per frame) replayed through
/// the demo camera's own scene (calibration, zones, rules); a checkpoint after every frame
/// k, encoded, decoded and restored into a freshly built scene, continues with exactly the
/// events of the uninterrupted replay.
#[test]
fn the_demo_restores_exactly_after_every_one_of_its_first_300_frames() {
    use argus::model::{Detection, Event, Frame, Models, RgbImage};
    use argus::pipeline::scene::CameraScene;
    use argus::pipeline::scene_state::SceneState;
    use std::sync::Arc;

    const N: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = env!("CARGO_MANIFEST_DIR");
    let demo = std::fs::read_to_string(format!("{repo}/pipelines/demo.toml")).unwrap();
    assert!(demo.contains("frame_summary_every_s = 5.0"), "pipelines/demo.toml changed: update this test");
    let cfg = write_config(d, "every", "events.jsonl", false, 30.0);
    std::fs::write(d.join("every.pipeline.toml"), demo.replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", &N.to_string(), "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let summaries: Vec<Value> = events(&d.join("events.jsonl"), false).into_iter().filter(|e| e["kind"] == "frame.analyzed").collect();
    assert_eq!(summaries.len() as u64, N, "a summary per frame");

    // The frames: their times and sizes, and the detections the camera kept.
    let image = Arc::new(RgbImage::new(768, 576, vec![0; 768 * 576 * 3]).unwrap());
    let frames: Vec<(Frame, Vec<Detection>)> = summaries
        .iter()
        .map(|e| {
            let captured_at = time::OffsetDateTime::parse(e["captured_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
            let frame = Frame {
                camera_id: Arc::from("plaza"),
                seq: e["frame"]["seq"].as_u64().unwrap(),
                pts_ns: None,
                captured_at,
                time_source: "stream",
                received: Instant::now(),
                image: image.clone(),
                ack: None,
                telemetry: None,
                position: None,
            };
            let detections = e["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    let class = o["class"].as_str().unwrap();
                    let b: Vec<f32> = o["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                    Detection {
                        class_id: argus::detect::coco::class_id(class).unwrap(),
                        class: Arc::from(class),
                        score: o["confidence"].as_f64().unwrap() as f32,
                        bbox: [b[0], b[1], b[2], b[3]],
                    }
                })
                .collect();
            (frame, detections)
        })
        .collect();

    // The demo camera's scene as `argus run` builds it (summaries every 5 s, as shipped).
    let shipped = argus::config::load(Some(&write_config(d, "shipped", "unused.jsonl", false, 30.0))).unwrap();
    let scene =
        || -> CameraScene { argus::app::build_scenes(&shipped, &Default::default(), &Default::default()).unwrap().into_scenes().remove("plaza").unwrap() };
    let models = Models { detector: "replay".into(), captioner: "scene".into() };
    let normalised = |mut v: Vec<Event>| {
        for e in &mut v {
            e.processed_at = time::OffsetDateTime::UNIX_EPOCH;
            e.latency_ms = 0.0;
        }
        v
    };
    let run = |s: &mut CameraScene, from: usize| -> Vec<Event> { frames[from..].iter().flat_map(|(f, dets)| s.process(f, dets.clone(), &models)).collect() };
    let mut whole = scene();
    let uninterrupted = normalised(run(&mut whole, 0));
    let incidents = uninterrupted.iter().filter(|e| e.incident_id.is_some()).count();
    assert!(incidents >= 10, "the demo's first {N} frames are busy: {incidents} incident events");

    let mut live = scene();
    let mut before: Vec<Event> = Vec::new();
    for k in 0..frames.len() {
        let (f, dets) = &frames[k];
        before.extend(live.process(f, dets.clone(), &models));
        let bytes = live.checkpoint().to_bytes();
        let mut restored = scene();
        restored.restore(SceneState::from_bytes(&bytes).unwrap()).unwrap();
        let mut got = normalised(before.clone());
        got.extend(normalised(run(&mut restored, k + 1)));
        assert!(got == uninterrupted, "restored after frame {k}: the events differ from the uninterrupted replay");
    }
}
