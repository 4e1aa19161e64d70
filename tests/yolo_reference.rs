//! The YOLO decode + class-aware NMS against an independent numpy reference
//! (scripts/reference/yolo_decode.py) on synthetic head tensors, both export layouts.

use argus::detect::OutputTensor;
use argus::detect::nms::nms_per_class;
use argus::detect::yolo::{YoloLayout, decode};
use serde_json::Value;

fn check(layout: YoloLayout, key: &str) {
    let doc: Value = serde_json::from_str(include_str!("fixtures/yolo_decode_reference.json")).unwrap();
    let nc = doc["num_classes"].as_u64().unwrap() as usize;
    let thr = doc["threshold"].as_f64().unwrap() as f32;
    let iou = doc["nms_iou"].as_f64().unwrap() as f32;
    let case = &doc[key];
    let shape: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let data: Vec<f32> = case["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let t = OutputTensor { shape: shape.clone(), data };
    assert_eq!(YoloLayout::infer(&shape, nc).unwrap(), layout);
    let got = nms_per_class(decode(&t, layout, nc, thr).unwrap(), iou, 1000);
    let want = case["expected"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{key}: box count");
    assert!(got.len() > 10, "the fixture must exercise NMS with many boxes");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.class_id as u64, w["class_id"].as_u64().unwrap(), "{key}: class");
        assert!((g.score as f64 - w["score"].as_f64().unwrap()).abs() < 1e-6, "{key}: score");
        for (a, b) in g.bbox.iter().zip(w["bbox"].as_array().unwrap()) {
            assert!((*a as f64 - b.as_f64().unwrap()).abs() < 1e-3, "{key}: bbox {:?} vs {}", g.bbox, w["bbox"]);
        }
    }
}

#[test]
fn v5_layout_matches_numpy_reference() {
    check(YoloLayout::V5, "v5");
}

#[test]
fn v8_layout_matches_numpy_reference() {
    check(YoloLayout::V8, "v8");
}
