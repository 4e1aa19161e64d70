//! NanoDet on ONNX Runtime against an independent reference: the same committed model
//! run in Python onnxruntime with letterbox, normalisation, GFL decode and NMS written in
//! numpy from the model's contract (scripts/reference/nanodet_reference.py). The two
//! backends share Argus's pre- and post-processing, so their parity cannot catch a bug
//! there; this can. Needs .deps (scripts/setup): the virtualenv with onnxruntime, and
//! ONNX Runtime.
#![cfg(feature = "onnx")]

use std::path::Path;
use std::process::Command;

use argus::detect::config::DetectorConfig;
use argus::detect::{Detector, build_detector};
use argus::model::{Detection, decode_image};
use serde_json::{Value, json};

const SAMPLES: &str = "/usr/share/darknet/data";
/// Landscape and portrait-ish pictures of several sizes: the letterbox pads both ways.
const IMAGES: [&str; 6] = ["dog.jpg", "person.jpg", "kite.jpg", "horses.jpg", "giraffe.jpg", "eagle.jpg"];
/// Below Argus's default (0.35), so that many weak, overlapping boxes go through NMS.
const THRESHOLD: f32 = 0.25;
const NMS_IOU: f32 = 0.6;
/// The reference computes the input in f64 and Argus in f32, on the same ONNX Runtime
/// release (1.32.0): inputs differ by ~1e-7, scores by ~2e-6 (measured: 2.3e-6 at most),
/// box corners by ~1e-4 px (measured: 4e-4 at most). Tolerances: 2e-5 on scores (10×), 0.01 original pixels on
/// corners; a wrong cell offset, stride, bin count, channel order, mean or letterbox
/// offset moves boxes by pixels and scores by far more.
const SCORE_TOL: f64 = 2e-5;
const BOX_TOL: f64 = 0.01;

fn reference(dir: &Path, images: &[(String, argus::model::RgbImage)]) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".deps/pyenv/bin/python");
    assert!(python.is_file(), "{} missing: run scripts/setup", python.display());
    let mut list = Vec::new();
    for (name, img) in images {
        let raw = dir.join(format!("{name}.rgb"));
        std::fs::write(&raw, &img.pixels).unwrap();
        list.push(json!({"name": name, "width": img.width, "height": img.height, "rgb": raw}));
    }
    let manifest = json!({
        "model": root.join("models/nanodet.onnx"),
        "threshold": THRESHOLD,
        "nms_iou": NMS_IOU,
        "max_detections": 100,
        "images": list,
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let out = Command::new(&python)
        .arg(root.join("scripts/reference/nanodet_reference.py"))
        .arg(dir.join("manifest.json"))
        .arg(dir.join("reference.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "nanodet_reference.py failed (onnxruntime in .deps/pyenv? scripts/setup):\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap()
}

fn show(d: &[Detection]) -> Vec<String> {
    d.iter().map(|d| format!("{} {:.4} {:?}", d.class, d.score, d.bbox.map(|v| v.round()))).collect()
}

#[test]
fn nanodet_on_ort_matches_the_numpy_onnxruntime_reference() {
    let images: Vec<(String, argus::model::RgbImage)> = IMAGES
        .iter()
        .map(|n| {
            let path = format!("{SAMPLES}/{n}");
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (scripts/setup installs Debian's darknet package)"));
            (n.to_string(), decode_image(&bytes).unwrap())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let doc = reference(dir.path(), &images);
    let mut det: Box<dyn Detector> =
        build_detector(&DetectorConfig { score_threshold: THRESHOLD, nms_iou: Some(NMS_IOU), max_detections: 100, ..Default::default() }).unwrap();
    assert_eq!(det.info().input_size, [416, 416]);
    let (mut compared, mut worst_score, mut worst_box) = (0, 0.0f64, 0.0f64);
    for (name, img) in &images {
        let got = det.detect(&[img]).unwrap().remove(0);
        let want = doc["images"][name].as_array().unwrap();
        // The same detections in the same order (score descending): no box near the
        // threshold or an NMS boundary differs on these pictures.
        assert_eq!(got.len(), want.len(), "{name}: Argus {:?}\nreference {want:?}", show(&got));
        for (g, w) in got.iter().zip(want) {
            let class = w["class_id"].as_u64().unwrap() as usize;
            let score = w["score"].as_f64().unwrap();
            let bbox: Vec<f64> = w["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(g.class_id, class, "{name}: Argus {:?}\nreference {want:?}", show(&got));
            let ds = (g.score as f64 - score).abs();
            let db = g.bbox.iter().zip(&bbox).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(ds <= SCORE_TOL, "{name}: class {class} score {} vs reference {score}", g.score);
            assert!(db <= BOX_TOL, "{name}: class {class} box {:?} vs reference {bbox:?}", g.bbox);
            (worst_score, worst_box) = (worst_score.max(ds), worst_box.max(db));
            compared += 1;
        }
    }
    eprintln!("{compared} boxes compared; worst |Δscore| {worst_score:.2e}, worst |Δcorner| {worst_box:.2e} px");
    // The six pictures give 41 boxes at this threshold (dog, bicycle, truck, people,
    // horses, kites, giraffes, ...): a reference that found nothing cannot pass.
    assert_eq!(compared, 41, "boxes compared");
}
