//! `argus replay` on the demo video: a longer dwell time changes that rule's incidents
//! and no other rule's, the same inputs give the same report, and bad input is refused
//! with the file, key and fix.
#![cfg(all(feature = "gstreamer", feature = "onnx"))]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const VIDEO: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_argus")).current_dir(env!("CARGO_MANIFEST_DIR")).arg("replay").args(args).output().unwrap()
}

fn demo_with(dir: &Path, from: &str, to: &str) -> String {
    let demo = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.toml")).unwrap();
    let edited = demo.replacen(from, to, 1);
    assert_ne!(edited, demo, "{from:?} is not in pipelines/demo.toml");
    let file = dir.join("edited.toml");
    std::fs::write(&file, edited).unwrap();
    file.display().to_string()
}

fn rule<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rules"].as_array().unwrap().iter().find(|r| r["rule"] == id).unwrap_or_else(|| panic!("no rule {id} in {report}"))
}

#[test]
fn a_longer_dwell_time_changes_that_rules_incidents_alone_and_the_same_inputs_give_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    // The crossing's intrusion rule: 1 s inside before an incident opens → 4 s.
    let edited = demo_with(dir.path(), "min_dwell_s = 1.0", "min_dwell_s = 4.0");
    let args = ["--pipeline", &edited, "--max-frames", "450", "--json", VIDEO];
    let first = replay(&args);
    assert!(first.status.success(), "argus replay failed: {}", String::from_utf8_lossy(&first.stderr));
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["camera"], "plaza");
    assert_eq!(report["frames"], 450);

    let crossing = rule(&report, "no-entry-crossing");
    let (now, then) = (&crossing["current"], &crossing["edited"]);
    assert!(now["incidents"].as_u64().unwrap() >= 1, "the demo's crossing gives an incident in 45 s: {crossing}");
    assert_eq!(crossing["changed"], true, "{crossing}");
    // Waiting 3 s longer: fewer incidents, or each opening at least 3 s later.
    let fewer = then["incidents"].as_u64() < now["incidents"].as_u64();
    let later = then["first_opened_s"].as_f64().unwrap_or(f64::INFINITY) >= now["first_opened_s"].as_f64().unwrap() + 2.9;
    assert!(fewer || later, "a longer dwell must delay or remove incidents: {crossing}");
    for r in report["rules"].as_array().unwrap().iter().filter(|r| r["rule"] != "no-entry-crossing") {
        assert_eq!(r["changed"], false, "only the edited rule may change: {r}");
    }

    let second = replay(&args);
    assert!(second.status.success());
    assert_eq!(String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&second.stdout), "same inputs, same report");
}

#[test]
fn a_broken_pipeline_an_unknown_camera_and_a_missing_recording_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let broken = demo_with(dir.path(), "zone = \"crossing\"", "zone = \"no-such-zone\"");
    let out = replay(&["--pipeline", &broken, VIDEO]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("edited.toml") && err.contains("no-such-zone"), "{err}");

    let fine = demo_with(dir.path(), "min_dwell_s = 1.0", "min_dwell_s = 2.0");
    let out = replay(&["--pipeline", &fine, "--camera", "gate", VIDEO]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gate") && err.contains("plaza"), "names the camera asked for and those there are: {err}");

    let out = replay(&["--pipeline", &fine, "/nonexistent/video.avi"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/video.avi"));
}
