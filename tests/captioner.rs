//! The captioning model on ONNX Runtime against a numpy reference decode of the same
//! model: scripts/make-tiny-captioner.py builds a tiny ONNX captioner (deterministic
//! weights), its tokenizer, test images and the token ids greedy decoding must give;
//! Argus must produce exactly those ids and texts. Needs .deps (scripts/setup): the
//! numpy + onnx virtualenv and ONNX Runtime.
#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};
use std::process::Command;

use argus::caption::model as caption_model;
use argus::caption::model::config::{CaptionRegion, CaptionerConfig};
use argus::caption::model::{CaptionError, Tokenizer};
use argus::detect::config::DetectorConfig;
use argus::model::Level;
use argus::model::RgbImage;
use argus::model::{EventKind, sample_event};
use argus::telemetry::metrics::Metrics;
use serde_json::Value;

struct Tiny {
    _dir: tempfile::TempDir,
    model: PathBuf,
    tokenizer: PathBuf,
    cases: Vec<Value>,
}

fn build_tiny() -> Tiny {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".deps/pyenv/bin/python");
    assert!(python.is_file(), "{} missing: run scripts/setup", python.display());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&python).arg(root.join("scripts/make-tiny-captioner.py")).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "make-tiny-captioner.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.path().join("cases.json")).unwrap()).unwrap();
    assert_eq!(doc["input_size"], 32);
    Tiny { model: dir.path().join("captioner.onnx"), tokenizer: dir.path().join("tokenizer.json"), cases: doc["cases"].as_array().unwrap().clone(), _dir: dir }
}

fn config(t: &Tiny, prompt: &str, max_tokens: usize) -> CaptionerConfig {
    CaptionerConfig {
        enabled: true,
        model: Some(t.model.clone()),
        tokenizer: Some(t.tokenizer.clone()),
        prompt: prompt.into(),
        min_level: Level::High,
        max_tokens,
        input_size: 32,
        region: CaptionRegion::Frame,
        threads: 1,
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn case_image(c: &Value) -> RgbImage {
    let px: Vec<u8> = c["pixels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    RgbImage::new(c["width"].as_u64().unwrap() as u32, c["height"].as_u64().unwrap() as u32, px).unwrap()
}

fn crop(c: &Value) -> Option<[u32; 4]> {
    c["crop"].as_array().map(|a| [0, 1, 2, 3].map(|i| a[i].as_u64().unwrap() as u32))
}

#[test]
fn greedy_decoding_matches_the_numpy_reference() {
    let t = build_tiny();
    let tok = Tokenizer::from_file(&t.tokenizer).unwrap();
    let det = DetectorConfig::default();
    let mut texts = std::collections::HashSet::new();
    let (mut ended, mut cut) = (0, 0);
    for c in &t.cases {
        let name = c["name"].as_str().unwrap();
        let prompt = c["prompt"].as_str().unwrap();
        let max_tokens = c["max_tokens"].as_u64().unwrap() as usize;
        assert_eq!(tok.encode_prompt(prompt), ids(&c["prompt_ids"]), "{name}: prompt {prompt:?} encodes like the reference");
        let mut captioner = caption_model::build(&config(&t, prompt, max_tokens), &det).unwrap().expect("enabled");
        let img = case_image(c);
        let want = ids(&c["expected_ids"]);
        assert_eq!(captioner.generate(&img, crop(c)).unwrap(), want, "{name}: token ids");
        let text = captioner.caption(&img, crop(c)).unwrap();
        assert_eq!(text, c["expected_text"].as_str().unwrap(), "{name}: text");
        texts.insert(text);
        if want.len() < max_tokens { ended += 1 } else { cut += 1 }
    }
    // The comparison means something only if the images and prompts steer the model.
    assert!(texts.len() >= 6, "too few distinct captions: {texts:?}");
    assert!(ended >= 2 && cut >= 2, "cases must cover both EOS ({ended}) and the token budget ({cut})");
}

#[test]
fn events_at_or_above_the_level_get_the_model_text() {
    let t = build_tiny();
    let c = t.cases.iter().find(|c| c["name"] == "green").unwrap();
    let mut captioner = caption_model::build(&config(&t, c["prompt"].as_str().unwrap(), 12), &DetectorConfig::default()).unwrap().unwrap();
    assert!(captioner.description().contains(&t.model.display().to_string()) && captioner.description().contains("sha256 "), "{}", captioner.description());
    let metrics = Metrics::new();
    let mut evs = vec![sample_event("cam", 1000, EventKind::IncidentOpened), sample_event("cam", 1000, EventKind::FrameAnalyzed)];
    captioner.annotate(&mut evs, &case_image(c), &metrics);
    assert_eq!(evs[0].model_caption.as_deref(), Some(c["expected_text"].as_str().unwrap()));
    assert!(evs[0].models.captioner.starts_with("scene+captioner.onnx@sha256:"));
    assert_eq!(evs[1].model_caption, None, "a low-level summary is below min_level = high");
    // The event with its model caption still satisfies the shipped schema.
    let schema: Value = serde_json::from_str(include_str!("../schema/argus.event.v1.json")).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let json = serde_json::to_value(&evs[0]).unwrap();
    assert!(v.is_valid(&json), "{json}");
    assert_eq!(metrics.captions_failed.with_label_values(&["cam"]).get(), 0);
}

#[test]
fn mismatched_models_are_refused_at_start_up() {
    let t = build_tiny();
    let det = DetectorConfig::default();
    let err = |cfg: CaptionerConfig| caption_model::build(&cfg, &det).err().expect("refused");
    // The model takes 32x32 images.
    let e = err(CaptionerConfig { input_size: 64, ..config(&t, "", 4) });
    assert!(matches!(e, CaptionError::Config { key: "input_size", .. }) && e.to_string().contains("captioner.input_size = 32"), "{e}");
    // A tokenizer with a different vocabulary size.
    let small = t.tokenizer.with_file_name("small.json");
    std::fs::write(
        &small,
        r#"{"format": "argus.tokenizer.v1", "vocab": ["<pad>", "<bos>", "<eos>", "<unk>"], "bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>"}"#,
    )
    .unwrap();
    let e = err(CaptionerConfig { tokenizer: Some(small), ..config(&t, "", 4) });
    assert!(e.to_string().contains("captioner.tokenizer") && e.to_string().contains("4"), "{e}");
    // Not a captioning model: the detector's ONNX file lacks `tokens`.
    let nanodet = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nanodet.onnx");
    if nanodet.is_file() {
        let e = err(CaptionerConfig { model: Some(nanodet), ..config(&t, "", 4) });
        assert!(e.to_string().starts_with("captioner.model = ") && e.to_string().contains("docs/captioner.md"), "{e}");
    }
    // A prompt longer than the model's 48 positions: ONNX Runtime's error, not a panic.
    let e = err(config(&t, &"the ".repeat(60), 4));
    assert!(matches!(e, CaptionError::Model(_)), "{e}");
}
