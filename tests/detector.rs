//! The real detector on real images (Debian's darknet samples), on both backends, and
//! the two backends against each other.
#![cfg(all(feature = "onnx", feature = "torch"))]

use argus::detect::config::{BackendKind, DetectorConfig};
use argus::detect::nms::iou;
use argus::detect::{Detector, build_detector};
use argus::model::Detection;
use argus::model::RgbImage;
use argus::model::decode_image;

const SAMPLES: &str = "/usr/share/darknet/data";

fn image(name: &str) -> RgbImage {
    let path = format!("{SAMPLES}/{name}");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (scripts/setup installs Debian's darknet package)"));
    decode_image(&bytes).unwrap()
}

fn detector(backend: BackendKind) -> Box<dyn Detector> {
    build_detector(&DetectorConfig { backend, ..Default::default() }).unwrap()
}

fn classes(d: &[Detection]) -> Vec<&str> {
    d.iter().map(|d| &*d.class).collect()
}

fn expect_real_objects(backend: BackendKind) {
    let mut det = detector(backend);
    let dog = det.detect(&[&image("dog.jpg")]).unwrap().remove(0);
    let c = classes(&dog);
    assert!(c.contains(&"dog") && c.contains(&"bicycle") && (c.contains(&"car") || c.contains(&"truck")), "{backend:?} dog.jpg: {c:?}");
    let best_dog = dog.iter().find(|d| &*d.class == "dog").unwrap();
    assert!(best_dog.score > 0.6, "dog score {}", best_dog.score);
    // The dog is in the lower left of the 768x576 picture.
    assert!(best_dog.bbox[0] < 200.0 && best_dog.bbox[3] > 450.0, "{:?}", best_dog.bbox);

    let person = det.detect(&[&image("person.jpg")]).unwrap().remove(0);
    let c = classes(&person);
    assert!(c.contains(&"person") && (c.contains(&"horse") || c.contains(&"cow")) && c.contains(&"dog"), "{backend:?} person.jpg: {c:?}");
}

#[test]
fn ort_finds_the_objects_in_darknet_samples() {
    expect_real_objects(BackendKind::Ort);
}

#[test]
fn tch_finds_the_objects_in_darknet_samples() {
    expect_real_objects(BackendKind::Tch);
}

#[test]
fn ort_and_tch_give_the_same_boxes() {
    let mut ort = detector(BackendKind::Ort);
    let mut tch = detector(BackendKind::Tch);
    let mut compared = 0;
    for name in ["dog.jpg", "person.jpg", "kite.jpg", "horses.jpg", "giraffe.jpg", "eagle.jpg"] {
        let img = image(name);
        let a = ort.detect(&[&img]).unwrap().remove(0);
        let b = tch.detect(&[&img]).unwrap().remove(0);
        assert_eq!(a.len(), b.len(), "{name}: ort {:?} vs tch {:?}", classes(&a), classes(&b));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.class, y.class, "{name}");
            assert!(iou(&x.bbox, &y.bbox) >= 0.99, "{name}: {:?} vs {:?}", x.bbox, y.bbox);
            assert!((x.score - y.score).abs() <= 1e-3, "{name}: {} vs {}", x.score, y.score);
            compared += 1;
        }
    }
    assert!(compared >= 15, "parity must cover many boxes, got {compared}");
}

#[test]
fn batches_give_the_same_result_as_single_frames() {
    let mut det = detector(BackendKind::Ort);
    let (a, b) = (image("dog.jpg"), image("person.jpg"));
    let batch = det.detect(&[&a, &b, &a]).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch[0], det.detect(&[&a]).unwrap()[0]);
    assert_eq!(batch[1], det.detect(&[&b]).unwrap()[0]);
    assert_eq!(batch[0], batch[2]);
}

#[test]
fn missing_or_corrupt_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.onnx");
    std::fs::write(&bogus, b"not a model").unwrap();
    for backend in [BackendKind::Ort, BackendKind::Tch] {
        let err = build_detector(&DetectorConfig { backend, path: Some(bogus.clone()), ..Default::default() }).err().unwrap().to_string();
        assert!(err.contains("bogus.onnx"), "{backend:?}: {err}");
    }
    let err = build_detector(&DetectorConfig { path: Some(dir.path().join("missing.onnx")), ..Default::default() }).err().unwrap().to_string();
    assert!(err.contains("missing.onnx") && err.contains("no such file"), "{err}");
    let err = build_detector(&DetectorConfig { model: "yolo9000".into(), ..Default::default() }).err().unwrap().to_string();
    assert!(err.contains("unknown model"), "{err}");
}
