//! The optional captioning model (docs/captioner.md): image + prompt → text by greedy
//! decoding, for events at or above a configured risk level. It runs on the scene stage's
//! thread (never on the API's tokio workers) and never fails an event: an error is logged,
//! counted (`argus_captions_failed_total`) and the event keeps its deterministic caption.
//!
//! The decoding loop, tokenizer and image preparation are pure Rust; the model behind
//! [`StepModel`] is ONNX Runtime (`onnx` feature).

pub mod config;
pub mod image;
#[cfg(feature = "onnx")]
pub mod ort_model;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use crate::caption::model::config::{CaptionRegion, CaptionerConfig};
use crate::detect::config::DetectorConfig;
use crate::model::Event;
use crate::model::RgbImage;
use crate::model::{Level, SceneObject};
use crate::telemetry::metrics::Metrics;
pub use tokenizer::{Tokenizer, TokenizerError};

/// Margin around an event's objects when `region = "objects"`, as a share of their size.
const OBJECT_MARGIN: f32 = 0.15;
/// Smallest crop side in pixels, so a far-away person still comes with some context.
const MIN_CROP_SIDE: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum CaptionError {
    #[error("captioner.{key} = {}: {reason}; {fix}", path.display())]
    File { key: &'static str, path: PathBuf, reason: String, fix: String },
    #[error("captioner.{key}: {reason}; {fix}")]
    Config { key: &'static str, reason: String, fix: String },
    #[error("the captioning model is not built in; rebuild with `--features {0}` or set captioner.enabled = false")]
    NotBuilt(&'static str),
    #[error("captioning model: {0}")]
    Model(String),
}

/// One forward pass of a captioning model: the logits of the token after `tokens`.
pub trait StepModel: Send {
    /// `image` is `[3, size, size]` RGB in 0..1; `tokens` is the prompt (with BOS) and
    /// what was generated so far. Returns the next-token logits (one per vocabulary id).
    fn next_logits(&mut self, image: &[f32], size: u32, tokens: &[i64]) -> Result<Vec<f32>, CaptionError>;
    fn backend(&self) -> &'static str;
    fn device(&self) -> String;
}

/// Greedy decoding: feed the prompt, take the highest logit (the lowest id on a tie),
/// stop at EOS or after `max_tokens`. Returns the generated ids (EOS not included).
pub fn greedy_decode(
    model: &mut dyn StepModel,
    image: &[f32],
    size: u32,
    prompt: &[i64],
    eos: i64,
    vocab_size: usize,
    max_tokens: usize,
) -> Result<Vec<i64>, CaptionError> {
    let mut tokens = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..max_tokens {
        let logits = model.next_logits(image, size, &tokens)?;
        if logits.len() != vocab_size {
            return Err(CaptionError::Model(format!(
                "the model scores {} tokens but the tokenizer has {vocab_size}; use the tokenizer file the model was trained with",
                logits.len()
            )));
        }
        let next = argmax(&logits).ok_or_else(|| CaptionError::Model("the model produced NaN logits".into()))? as i64;
        if next == eos {
            break;
        }
        out.push(next);
        tokens.push(next);
    }
    Ok(out)
}

/// Index of the largest value (first on ties); `None` if any value is NaN.
fn argmax(v: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in v.iter().enumerate() {
        if x.is_nan() {
            return None;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// A loaded captioner: model, tokenizer, encoded prompt and when to run.
pub struct Captioner {
    model: Box<dyn StepModel>,
    tokenizer: Tokenizer,
    prompt_ids: Vec<i64>,
    min_level: Level,
    max_tokens: usize,
    input_size: u32,
    region: CaptionRegion,
    /// `file@sha256:<12 hex>`, for events' `models.captioner`.
    model_id: String,
    /// What /v1/info says.
    description: String,
}

impl Captioner {
    /// Wraps a model; checks it answers the prompt with one logit per vocabulary id
    /// (so a mismatched tokenizer fails at start-up, not on the first incident).
    pub fn new(
        mut model: Box<dyn StepModel>,
        tokenizer: Tokenizer,
        cfg: &CaptionerConfig,
        model_id: String,
        description: String,
    ) -> Result<Self, CaptionError> {
        if cfg.max_tokens == 0 || cfg.input_size == 0 {
            return Err(CaptionError::Config {
                key: "max_tokens / input_size",
                reason: "must be at least 1".into(),
                fix: "use e.g. max_tokens = 24, input_size = 64".into(),
            });
        }
        let unknown = tokenizer.unknown_words(&cfg.prompt);
        if !unknown.is_empty() {
            tracing::warn!(words = ?unknown, "captioner.prompt has words the tokenizer cannot spell; they reach the model as the unknown token");
        }
        let prompt_ids = tokenizer.encode_prompt(&cfg.prompt);
        let size = cfg.input_size;
        let blank = vec![0.5f32; 3 * (size * size) as usize];
        let logits = model.next_logits(&blank, size, &prompt_ids)?;
        if logits.len() != tokenizer.vocab_size() {
            return Err(CaptionError::Config {
                key: "tokenizer",
                reason: format!("the model scores {} tokens but the tokenizer has {}", logits.len(), tokenizer.vocab_size()),
                fix: "use the tokenizer file the model was built with".into(),
            });
        }
        Ok(Self {
            model,
            tokenizer,
            prompt_ids,
            min_level: cfg.min_level,
            max_tokens: cfg.max_tokens,
            input_size: size,
            region: cfg.region,
            model_id,
            description,
        })
    }

    /// Whether `ev` gets a model caption.
    pub fn wants(&self, ev: &Event) -> bool {
        ev.risk.level >= self.min_level
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// What /v1/info reports for `captioner`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Token ids generated for `image` (cropped to `crop`).
    pub fn generate(&mut self, image: &RgbImage, crop: Option<image::Rect>) -> Result<Vec<i64>, CaptionError> {
        let input = image::prepare(image, crop, self.input_size);
        let t = &self.tokenizer;
        greedy_decode(self.model.as_mut(), &input, self.input_size, &self.prompt_ids, t.eos, t.vocab_size(), self.max_tokens)
    }

    /// The model's text for `image`, cropped to `crop`.
    pub fn caption(&mut self, image: &RgbImage, crop: Option<image::Rect>) -> Result<String, CaptionError> {
        let ids = self.generate(image, crop)?;
        Ok(self.tokenizer.decode(&ids))
    }

    /// The crop an event's caption looks at.
    fn crop_for(&self, ev: &Event, image: &RgbImage) -> Option<image::Rect> {
        match self.region {
            CaptionRegion::Frame => None,
            CaptionRegion::Objects => {
                let members: Vec<u64> = ev.risk.reasons.iter().flat_map(|r| r.track_ids.iter().copied()).collect();
                crop_of(&ev.objects, &members, image)
            }
        }
    }

    /// Adds `model_caption` to the events (all from the frame `image`) that want one.
    /// Failures are logged and counted; the events are published regardless.
    pub fn annotate(&mut self, events: &mut [Event], image: &RgbImage, metrics: &Metrics) {
        // Events of one frame often share a crop (and the prompt): decode each once.
        let mut done: Vec<(Option<image::Rect>, Option<String>)> = Vec::new();
        for ev in events.iter_mut().filter(|e| e.model_caption.is_none()) {
            if !self.wants(ev) {
                continue;
            }
            let crop = self.crop_for(ev, image);
            let text = match done.iter().find(|(c, _)| *c == crop) {
                Some((_, t)) => t.clone(),
                None => {
                    let t0 = std::time::Instant::now();
                    let result = self.caption(image, crop);
                    metrics.stage_seconds.with_label_values(&["caption"]).observe(t0.elapsed().as_secs_f64());
                    let text = match result {
                        Ok(t) => Some(t),
                        Err(e) => {
                            metrics.captions_failed.with_label_values(&[&ev.camera_id]).inc();
                            tracing::warn!(camera = %ev.camera_id, event = %ev.event_id, error = %e, "captioning model failed; the event keeps its scene caption");
                            None
                        }
                    };
                    done.push((crop, text.clone()));
                    text
                }
            };
            // An empty text (EOS first) says nothing: leave the field out.
            if let Some(t) = text.filter(|t| !t.is_empty()) {
                ev.model_caption = Some(t);
                ev.models.captioner = format!("{}+{}", crate::model::SCENE_CAPTIONER, self.model_id);
            }
        }
    }
}

/// The crop around `objects` (those of `members` when given) for `region = "objects"`.
pub fn crop_of(objects: &[SceneObject], members: &[u64], image: &RgbImage) -> Option<image::Rect> {
    image::objects_rect(objects, members, image.width, image.height, OBJECT_MARGIN, MIN_CROP_SIDE)
}

/// The configured file behind `key`, which must exist.
fn required_file<'a>(p: &'a Option<PathBuf>, key: &'static str, fix: &str) -> Result<&'a Path, CaptionError> {
    let p = p.as_deref().ok_or_else(|| CaptionError::Config { key, reason: "not set (the captioner is enabled)".into(), fix: fix.into() })?;
    if !p.is_file() {
        return Err(CaptionError::File { key, path: p.to_path_buf(), reason: "no such file".into(), fix: fix.into() });
    }
    Ok(p)
}

/// Loads and checks the tokenizer `[captioner]` names.
pub fn load_tokenizer(cfg: &CaptionerConfig) -> Result<Tokenizer, CaptionError> {
    let path = required_file(&cfg.tokenizer, "tokenizer", "point it at the model's argus.tokenizer.v1 JSON file (docs/captioner.md)")?;
    Tokenizer::from_file(path).map_err(|e| CaptionError::File {
        key: "tokenizer",
        path: path.to_path_buf(),
        reason: e.to_string(),
        fix: "see docs/captioner.md for the file format".into(),
    })
}

/// `(model_id, sha256)` of the model file.
fn fingerprint(path: &Path) -> Result<(String, String), CaptionError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| CaptionError::File {
        key: "model",
        path: path.to_path_buf(),
        reason: e.to_string(),
        fix: "check the path and its permissions".into(),
    })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((format!("{name}@sha256:{}", &digest[..12]), digest))
}

/// The captioner `[captioner]` describes, or `None` when it is disabled. ONNX Runtime is
/// the detector's (`detector.ort_library`, `ORT_DYLIB_PATH`, `.deps`).
#[cfg_attr(not(feature = "onnx"), allow(unused_variables))]
pub fn build(cfg: &CaptionerConfig, detector: &DetectorConfig) -> Result<Option<Captioner>, CaptionError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let tokenizer = load_tokenizer(cfg)?;
    let path = required_file(&cfg.model, "model", "point it at an .onnx captioning model (docs/captioner.md)")?;
    let (model_id, sha256) = fingerprint(path)?;
    #[cfg(feature = "onnx")]
    {
        let lib = crate::detect::ort_engine::library_path(detector);
        let model = ort_model::OrtStepModel::load(path, cfg.input_size, cfg.threads, &lib)?;
        let description = format!(
            "scene; model {} (sha256 {sha256}, {} on {}) for events at or above {}",
            path.display(),
            model.backend(),
            model.device(),
            level_name(cfg.min_level)
        );
        let c = Captioner::new(Box::new(model), tokenizer, cfg, model_id, description)?;
        tracing::info!(model = %c.model_id, min_level = level_name(cfg.min_level), "captioning model loaded");
        Ok(Some(c))
    }
    #[cfg(not(feature = "onnx"))]
    {
        let _ = (tokenizer, model_id, sha256);
        Err(CaptionError::NotBuilt("onnx"))
    }
}

#[cfg_attr(not(feature = "onnx"), allow(dead_code))]
fn level_name(l: Level) -> &'static str {
    match l {
        Level::Low => "low",
        Level::Medium => "medium",
        Level::High => "high",
        Level::Critical => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventKind, sample_event};

    /// A model whose next token is a fixed function of the image's mean red and the
    /// last token: enough to check the loop feeds back what it generated.
    struct Fake {
        vocab: usize,
        calls: Vec<Vec<i64>>,
        fail_on_call: Option<usize>,
    }

    impl StepModel for Fake {
        fn next_logits(&mut self, image: &[f32], size: u32, tokens: &[i64]) -> Result<Vec<f32>, CaptionError> {
            assert_eq!(image.len(), 3 * (size * size) as usize);
            self.calls.push(tokens.to_vec());
            if self.fail_on_call == Some(self.calls.len()) {
                return Err(CaptionError::Model("boom".into()));
            }
            let plane = (size * size) as usize;
            let red = image[..plane].iter().sum::<f32>() / plane as f32;
            let mut l = vec![0.0; self.vocab];
            let last = *tokens.last().unwrap();
            // Red images count up from 4 and end (EOS = 2) after id 6; others repeat id 5.
            let next = if red > 0.5 { if last >= 6 { 2 } else { (last + 1).max(4) } } else { 5 };
            l[next as usize] = 1.0;
            Ok(l)
        }
        fn backend(&self) -> &'static str {
            "fake"
        }
        fn device(&self) -> String {
            "cpu".into()
        }
    }

    fn fake() -> Box<Fake> {
        Box::new(Fake { vocab: 8, calls: vec![], fail_on_call: None })
    }

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_json(r#"{"format": "argus.tokenizer.v1", "lowercase": true, "vocab": ["<pad>", "<bos>", "<eos>", "<unk>", "person", "near", "truck", "."], "bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>"}"#).unwrap()
    }

    fn solid(rgb: [u8; 3]) -> RgbImage {
        RgbImage::new(8, 6, rgb.repeat(48)).unwrap()
    }

    #[test]
    fn greedy_feeds_back_stops_at_eos_or_budget() {
        let mut m = fake();
        let img = image::prepare(&solid([255, 0, 0]), None, 4);
        let ids = greedy_decode(m.as_mut(), &img, 4, &[1], 2, 8, 10).unwrap();
        assert_eq!(ids, vec![4, 5, 6]);
        assert_eq!(m.calls, vec![vec![1], vec![1, 4], vec![1, 4, 5], vec![1, 4, 5, 6]]);
        // The budget cuts a text that has not ended.
        assert_eq!(greedy_decode(fake().as_mut(), &img, 4, &[1], 2, 8, 2).unwrap(), vec![4, 5]);
        let mut m = fake();
        let img = image::prepare(&solid([0, 0, 255]), None, 4);
        assert_eq!(greedy_decode(m.as_mut(), &img, 4, &[1], 2, 8, 3).unwrap(), vec![5, 5, 5]);
        assert_eq!(m.calls.len(), 3);
        // Wrong vocabulary size and model errors are errors, not panics.
        assert!(matches!(greedy_decode(fake().as_mut(), &img, 4, &[1], 2, 9, 3), Err(CaptionError::Model(_))));
        let mut m = Fake { vocab: 8, calls: vec![], fail_on_call: Some(2) };
        assert!(greedy_decode(&mut m, &img, 4, &[1], 2, 8, 3).is_err());
    }

    #[test]
    fn argmax_takes_the_first_maximum_and_refuses_nan() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY]), Some(0));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[1.0, f32::NAN]), None);
    }

    fn captioner(model: Box<dyn StepModel>, min_level: Level) -> Result<Captioner, CaptionError> {
        let cfg = CaptionerConfig { enabled: true, prompt: "Person near".into(), min_level, input_size: 4, max_tokens: 5, ..Default::default() };
        Captioner::new(model, tokenizer(), &cfg, "fake.onnx@sha256:0123456789ab".into(), "fake".into())
    }

    #[test]
    fn annotates_only_events_at_or_above_the_level() {
        let metrics = Metrics::new();
        let mut c = captioner(fake(), Level::Medium).unwrap();
        assert_eq!(c.prompt_ids, vec![1, 4, 5]);
        // sample incidents are high (score 0.6); summaries are low.
        let mut evs = vec![sample_event("cam", 1000, EventKind::IncidentOpened), sample_event("cam", 1000, EventKind::FrameAnalyzed)];
        assert!(evs[0].risk.level >= Level::Medium && evs[1].risk.level < Level::Medium);
        c.annotate(&mut evs, &solid([250, 10, 10]), &metrics);
        assert_eq!(evs[0].model_caption.as_deref(), Some("truck"));
        assert_eq!(evs[0].models.captioner, "scene+fake.onnx@sha256:0123456789ab");
        assert_eq!(evs[0].caption, "1 person in view.", "the deterministic caption stays");
        assert_eq!(evs[1].model_caption, None);
        assert_eq!(evs[1].models.captioner, "scene");
        let mut evs = vec![sample_event("cam", 2000, EventKind::IncidentUpdated)];
        c.annotate(&mut evs, &solid([0, 0, 0]), &metrics);
        assert_eq!(evs[0].model_caption.as_deref(), Some("near near near near near"));
        assert_eq!(metrics.captions_failed.with_label_values(&["cam"]).get(), 0);
    }

    #[test]
    fn failures_are_counted_and_never_fatal() {
        let metrics = Metrics::new();
        // The start-up check is call 1; the first caption fails on call 2.
        let mut c = captioner(Box::new(Fake { vocab: 8, calls: vec![], fail_on_call: Some(2) }), Level::Low).unwrap();
        let mut evs = vec![sample_event("cam", 1000, EventKind::IncidentOpened), sample_event("cam", 1000, EventKind::IncidentClosed)];
        c.annotate(&mut evs, &solid([250, 0, 0]), &metrics);
        // Both events share the frame crop: one failed decode, counted once.
        assert!(evs.iter().all(|e| e.model_caption.is_none() && e.models.captioner == "scene"));
        assert_eq!(metrics.captions_failed.with_label_values(&["cam"]).get(), 1);
        assert!(metrics.render().contains("argus_captions_failed_total{camera=\"cam\"} 1"));
        // A tokenizer that does not fit the model is refused at start-up.
        let err = captioner(Box::new(Fake { vocab: 9, calls: vec![], fail_on_call: None }), Level::Low).err().unwrap();
        assert!(err.to_string().contains("captioner.tokenizer") && err.to_string().contains("9 tokens"), "{err}");
    }

    #[test]
    fn objects_region_crops_to_the_incident_members() {
        let cfg = CaptionerConfig { enabled: true, region: CaptionRegion::Objects, input_size: 4, ..Default::default() };
        let c = Captioner::new(fake(), tokenizer(), &cfg, "m".into(), "d".into()).unwrap();
        let img = RgbImage::new(640, 480, vec![0; 640 * 480 * 3]).unwrap();
        let ev = sample_event("cam", 1000, EventKind::IncidentOpened);
        // sample: track 1 at [10, 20, 50, 120], a member of the reason.
        let r = c.crop_for(&ev, &img).unwrap();
        assert!(r[0] <= 10 && r[1] <= 20 && r[2] >= 50 && r[3] >= 120 && r[2] < 100, "{r:?}");
        let c = Captioner::new(fake(), tokenizer(), &CaptionerConfig { input_size: 4, ..Default::default() }, "m".into(), "d".into()).unwrap();
        assert_eq!(c.crop_for(&ev, &img), None);
    }

    #[test]
    fn build_names_missing_files_and_bad_tokenizers() {
        let det = DetectorConfig::default();
        assert!(build(&CaptionerConfig::default(), &det).unwrap().is_none(), "disabled by default");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let cfg = CaptionerConfig { enabled: true, tokenizer: Some(missing.clone()), model: Some(dir.path().join("m.onnx")), ..Default::default() };
        let e = build(&cfg, &det).err().unwrap().to_string();
        assert!(e.starts_with("captioner.tokenizer = ") && e.contains("no such file"), "{e}");
        std::fs::write(&missing, "{\"format\": \"argus.tokenizer.v1\"}").unwrap();
        let e = build(&cfg, &det).err().unwrap().to_string();
        assert!(e.contains("captioner.tokenizer") && e.contains("missing field `vocab`"), "{e}");
        std::fs::write(&missing, r#"{"format": "argus.tokenizer.v1", "vocab": ["<pad>", "<bos>", "<eos>", "<unk>"], "bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>"}"#).unwrap();
        let e = build(&cfg, &det).err().unwrap().to_string();
        assert!(e.starts_with("captioner.model = ") && e.contains("m.onnx: no such file"), "{e}");
        let e = build(&CaptionerConfig { model: None, ..cfg }, &det).err().unwrap().to_string();
        assert!(e.starts_with("captioner.model: not set"), "{e}");
    }
}
