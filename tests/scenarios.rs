//! The scenario suite: scripted situations, for every rule kind, produce exactly the
//! expected incidents (no missing, no extra, no duplicate after a tracker id switch) and
//! the expected captions, word for word.
//!
//! Two paths:
//! - world space: scripted tracks (metres, speeds) fed straight to the `RiskEngine`;
//! - image space: scripted boxes through the whole scene stage (`CameraScene`: tracker,
//!   homography, zones, speeds, rules, incidents, captions).
//!
//! Pure library code: runs under `cargo test --no-default-features`.

#[path = "common/scenarios.rs"]
mod common;

use std::sync::Arc;

use argus::model::Detection;
use argus::model::{EventKind, Models};
use argus::model::{IncidentChange, IncidentPhase};
use argus::pipeline::scene::CameraScene;
use argus::risk::RiskEngine;
use argus::risk::config::RiskConfig;
use common::*;

fn run_world(s: &Scenario, switch: Option<&Switch>) -> Vec<(f64, IncidentChange, String)> {
    let actors = (s.actors)();
    let zones = zones();
    let mut engine = RiskEngine::with_settings("cam".into(), &rules(s.rules), RiskConfig::default());
    let mut out = Vec::new();
    let frames = (s.duration_s * FPS).round() as i64;
    let mut last_objects = Vec::new();
    for i in 0..frames {
        let t = i as f64 / FPS;
        let objects = objects_at(t, &actors, &zones, switch);
        for c in engine.evaluate(t, &objects) {
            let caption = argus::caption::describe_change(&objects, &c);
            out.push((t, c, caption));
        }
        last_objects = objects;
    }
    let end = (frames - 1) as f64 / FPS;
    for c in engine.close_all(end, "source ended") {
        let caption = argus::caption::describe_change(&last_objects, &c);
        out.push((end, c, caption));
    }
    out
}

fn kind(p: IncidentPhase) -> &'static str {
    match p {
        IncidentPhase::Opened => "opened",
        IncidentPhase::Updated => "updated",
        IncidentPhase::Closed => "closed",
    }
}

fn show(events: &[(f64, IncidentChange, String)]) -> String {
    events.iter().map(|(t, c, cap)| format!("        (\"{}\", {t:.1}, \"{cap}\"),", kind(c.phase))).collect::<Vec<_>>().join("\n")
}

/// Incidents: each id's phases, in order of opening.
fn lifecycles(events: &[(f64, IncidentChange, String)]) -> Vec<Vec<&'static str>> {
    let mut ids: Vec<&str> = Vec::new();
    for (_, c, _) in events {
        if !ids.contains(&c.incident_id.as_str()) {
            ids.push(&c.incident_id);
        }
    }
    ids.iter().map(|id| events.iter().filter(|e| e.1.incident_id == *id).map(|e| kind(e.1.phase)).collect()).collect()
}

#[test]
fn world_space_scenarios_give_exactly_the_expected_incidents_and_captions() {
    let mut failures = Vec::new();
    for s in scenarios() {
        let got = run_world(&s, None);
        let want: Vec<String> = s.expected.iter().map(|(k, t, c)| format!("        (\"{k}\", {t:.1}, \"{c}\"),")).collect();
        if show(&got) != want.join("\n") {
            failures.push(format!("{}:\n  got:\n{}\n  want:\n{}", s.name, show(&got), want.join("\n")));
        }
        // Every incident is a whole lifecycle with one id: opened, updates, closed.
        for l in lifecycles(&got) {
            assert_eq!(l.first(), Some(&"opened"), "{}: {l:?}", s.name);
            assert_eq!(l.last(), Some(&"closed"), "{}: {l:?}", s.name);
            assert!(l[1..l.len() - 1].iter().all(|k| *k == "updated"), "{}: {l:?}", s.name);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn a_tracker_id_switch_opens_no_second_incident_and_adds_at_most_one_update() {
    for s in scenarios() {
        let plain = run_world(&s, None);
        let switched = run_world(&s, Some(&s.switch));
        let (a, b) = (lifecycles(&plain), lifecycles(&switched));
        assert_eq!(a.len(), b.len(), "{}: incidents\n{}\nvs\n{}", s.name, show(&plain), show(&switched));
        for (x, y) in a.iter().zip(&b) {
            let updates = |l: &Vec<&str>| l.iter().filter(|k| **k == "updated").count();
            assert!(updates(y) <= updates(x) + 1, "{}: {x:?} vs {y:?}\n{}", s.name, show(&switched));
            assert_eq!(y.iter().filter(|k| **k != "updated").count(), 2, "{}: {y:?}", s.name);
        }
        // The switched-to id really took part (the switch happened inside the incident).
        assert!(
            switched.iter().any(|(_, c, _)| c.risk.reasons.iter().any(|r| r.track_ids.contains(&s.switch.to))) || plain.is_empty(),
            "{}: the new id {} never appears\n{}",
            s.name,
            s.switch.to,
            show(&switched)
        );
    }
}

/// Runs `frames` frames at 10 fps; `boxes(t)` gives the person boxes of each frame.
fn run_image(scene: &mut CameraScene, frames: u64, boxes: impl Fn(f64) -> Vec<[f32; 4]>) -> Vec<(EventKind, String, String)> {
    let models = Models { detector: "scripted".into(), captioner: "scene".into() };
    let mut out = Vec::new();
    for seq in 0..frames {
        let t = seq as f64 / FPS;
        let dets = boxes(t).into_iter().map(|b| Detection { class_id: 0, class: Arc::from("person"), score: 0.9, bbox: b }).collect();
        for e in scene.process(&frame(seq, t), dets, &models) {
            out.push((e.kind, e.incident_id.unwrap_or_default(), e.caption));
        }
    }
    for e in scene.finish("source ended", &models) {
        out.push((e.kind, e.incident_id.unwrap_or_default(), e.caption));
    }
    out
}

#[test]
fn image_space_tracks_through_the_full_scene_path() {
    let mut s = scene(IMAGE_PIPELINE);
    let events = run_image(&mut s, 160, |t| {
        let mut v = vec![{
            let (x, y) = walker(t);
            person_box(x, y)
        }];
        if let Some((x, y)) = runner(t) {
            v.push(person_box(x, y));
        }
        v
    });
    let got: Vec<String> = events.iter().map(|(k, _, c)| format!("{}: {c}", k.as_str())).collect();
    let want = vec![
        "incident.opened: A person is moving at 3.5 m/s, above the 2.5 m/s limit.",
        "incident.opened: A person has been inside restricted zone gate for 1 s.",
        "incident.closed: No person is moving faster than 2.5 m/s any more; the incident lasted 6 s.",
        "incident.closed: Restricted zone gate is clear again after 5 s.",
    ];
    assert_eq!(got, want, "\n{}", got.join("\n"));
}

#[test]
fn an_image_space_id_switch_keeps_the_incident() {
    // The walker is missed for 5 frames (longer than max_lost = 3) in the middle of the
    // gate: the tracker ends the track and starts a new id when it reappears.
    let boxes = |hidden: bool| {
        move |t: f64| {
            let (x, y) = walker(t);
            if hidden && (7.0..7.5).contains(&t) { vec![] } else { vec![person_box(x, y)] }
        }
    };
    let mut a = scene(IMAGE_PIPELINE);
    let plain = run_image(&mut a, 160, boxes(false));
    let mut b = scene(IMAGE_PIPELINE);
    let switched = run_image(&mut b, 160, boxes(true));
    let kinds = |v: &[(EventKind, String, String)]| v.iter().map(|e| e.0.as_str()).collect::<Vec<_>>();
    assert_eq!(kinds(&plain), vec!["incident.opened", "incident.closed"]);
    let k = kinds(&switched);
    assert_eq!(k.iter().filter(|k| **k == "incident.opened").count(), 1, "{switched:?}");
    assert!(k.iter().filter(|k| **k == "incident.updated").count() <= 1, "{switched:?}");
    assert!(switched.iter().all(|e| e.1 == switched[0].1), "one incident id");
}

/// A frame dated far ahead (a producer's clock gone wrong), then frames at the right
/// time again: the camera's summaries go on instead of waiting for the future.
#[test]
fn a_frame_from_the_future_does_not_freeze_the_summaries() {
    let p: argus::config::PipelineConfig = toml::from_str("name = \"img\"\n").unwrap();
    let mut scene = CameraScene::new(
        "cam".into(),
        argus::pipeline::scene::SceneSettings {
            pipeline: "img".into(),
            geometry: Some(geometry()),
            zones: Arc::new(vec![]),
            rules: vec![],
            classes: vec![],
            summary_every_s: 1.0,
            tracker: p.tracker.clone(),
            risk: p.risk.clone(),
        },
    );
    let models = Models { detector: "scripted".into(), captioner: "scene".into() };
    let summaries = |scene: &mut CameraScene, times: &[f64]| {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| scene.process(&frame(i as u64, *t), vec![], &models).iter().filter(|e| e.kind == EventKind::FrameAnalyzed).count())
            .sum::<usize>()
    };
    let before: Vec<f64> = (0..20).map(|i| i as f64 / FPS).collect();
    assert_eq!(summaries(&mut scene, &before), 2);
    assert_eq!(summaries(&mut scene, &[1.0e6]), 1);
    let after: Vec<f64> = (20..60).map(|i| i as f64 / FPS).collect();
    assert!(summaries(&mut scene, &after) >= 3, "summaries resume after the future frame");
}
