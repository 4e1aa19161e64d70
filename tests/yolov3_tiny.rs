//! YOLOv3-tiny (real Darknet COCO weights) on both backends: real images, parity, and
//! agreement with OpenCV's own Darknet reader (tests/fixtures/yolov3_tiny_opencv.json,
//! made by scripts/reference/yolov3_tiny_opencv.py).
#![cfg(all(feature = "onnx", feature = "torch"))]

use argus::detect::config::{BackendKind, DetectorConfig};
use argus::detect::nms::iou;
use argus::detect::{Detector, build_detector};
use argus::model::Detection;
use argus::model::RgbImage;
use argus::model::decode_image;
use serde_json::Value;

fn image(name: &str) -> RgbImage {
    let path = format!("/usr/share/darknet/data/{name}");
    decode_image(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn detector(backend: BackendKind) -> Box<dyn Detector> {
    build_detector(&DetectorConfig { model: "yolov3-tiny".into(), backend, score_threshold: 0.3, ..Default::default() }).unwrap()
}

fn names(d: &[Detection]) -> Vec<String> {
    d.iter().map(|d| format!("{} {:.2}", d.class, d.score)).collect()
}

#[test]
fn finds_the_objects_on_both_backends() {
    for backend in [BackendKind::Ort, BackendKind::Tch] {
        let mut det = detector(backend);
        assert_eq!(det.info().model, "yolov3-tiny");
        let dog = det.detect(&[&image("dog.jpg")]).unwrap().remove(0);
        let has = |c: &str| dog.iter().any(|d| &*d.class == c);
        assert!(has("dog") && has("bicycle") && (has("car") || has("truck")), "{backend:?}: {:?}", names(&dog));
        let person = det.detect(&[&image("person.jpg")]).unwrap().remove(0);
        let best = person.iter().find(|d| &*d.class == "person").expect("a person");
        assert!(best.score >= 0.9, "{backend:?}: {:?}", names(&person));
    }
}

#[test]
fn ort_and_tch_agree() {
    let (mut a, mut b) = (detector(BackendKind::Ort), detector(BackendKind::Tch));
    let mut n = 0;
    for name in ["dog.jpg", "person.jpg", "kite.jpg", "horses.jpg", "giraffe.jpg", "eagle.jpg"] {
        let img = image(name);
        let (x, y) = (a.detect(&[&img]).unwrap().remove(0), b.detect(&[&img]).unwrap().remove(0));
        assert_eq!(names(&x).len(), names(&y).len(), "{name}: {:?} vs {:?}", names(&x), names(&y));
        for (p, q) in x.iter().zip(&y) {
            assert_eq!(p.class, q.class, "{name}");
            assert!(iou(&p.bbox, &q.bbox) >= 0.99 && (p.score - q.score).abs() <= 1e-3, "{name}: {p:?} vs {q:?}");
            n += 1;
        }
    }
    // Every box of the six pictures compared: 23, as many as OpenCV's reference
    // (tests/fixtures/yolov3_tiny_opencv.json) has for them.
    assert_eq!(n, 23, "boxes compared");
}

#[test]
fn matches_opencv_darknet_reader() {
    let doc: Value = serde_json::from_str(include_str!("fixtures/yolov3_tiny_opencv.json")).unwrap();
    for backend in [BackendKind::Ort, BackendKind::Tch] {
        let mut det = detector(backend);
        for (name, want) in doc["images"].as_object().unwrap() {
            let got = det.detect(&[&image(name)]).unwrap().remove(0);
            let want = want.as_array().unwrap();
            // OpenCV resizes uint8 with fixed-point weights, Argus in f32: the inputs differ
            // by rounding, so boxes and scores agree closely, not bit for bit.
            for w in want {
                let wb: Vec<f32> = w["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let wb = [wb[0], wb[1], wb[2], wb[3]];
                let ws = w["score"].as_f64().unwrap() as f32;
                let class = w["class_id"].as_u64().unwrap() as usize;
                let m = got.iter().find(|g| g.class_id == class && iou(&g.bbox, &wb) >= 0.97);
                match m {
                    Some(g) => assert!((g.score - ws).abs() <= 0.02, "{backend:?} {name}: score {} vs OpenCV {ws}", g.score),
                    // A reference box right at the threshold may fall on either side.
                    None => assert!(ws < 0.33, "{backend:?} {name}: OpenCV's class {class} {ws:.3} {wb:?} not found in {:?}", names(&got)),
                }
            }
            let strong_extra = got.iter().filter(|g| g.score > 0.33).filter(|g| !want.iter().any(|w| w["class_id"].as_u64().unwrap() as usize == g.class_id));
            assert_eq!(strong_extra.count(), 0, "{backend:?} {name}: detections OpenCV does not have: {:?}", names(&got));
        }
    }
}

#[test]
fn users_yolo_exports_use_the_same_path_and_odd_heads_are_refused() {
    let repo = env!("CARGO_MANIFEST_DIR");
    // The converted YOLOv3-tiny as if it were a user's export: layout from its metadata.
    let mut det = build_detector(&DetectorConfig {
        model: "yolo".into(),
        path: Some(format!("{repo}/models/yolov3-tiny.onnx").into()),
        input_size: Some(416),
        score_threshold: 0.3,
        ..Default::default()
    })
    .unwrap();
    let dog = det.detect(&[&image("dog.jpg")]).unwrap().remove(0);
    // Letterboxed (the Ultralytics convention) rather than stretched: a little lower scores.
    assert!(dog.iter().any(|d| &*d.class == "dog" && d.score > 0.5), "{:?}", names(&dog));

    // NanoDet's six GFL outputs are no YOLO head: a clear error, not garbage boxes.
    let mut det = build_detector(&DetectorConfig {
        model: "yolo".into(),
        path: Some(format!("{repo}/models/nanodet.onnx").into()),
        input_size: Some(416),
        ..Default::default()
    })
    .unwrap();
    let err = det.detect(&[&image("dog.jpg")]).unwrap_err().to_string();
    assert!(err.contains("fits no known head"), "{err}");
}
