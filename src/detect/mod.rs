//! Object detection: one `Detector` trait, inference engines behind cargo features, and
//! the pure-Rust parts every engine shares (letterbox, head decode, NMS).

pub mod coco;
pub mod config;
pub mod model;
pub mod nanodet;
pub mod nms;
pub mod preprocess;
pub mod yolo;

#[cfg(feature = "onnx")]
pub mod ort_engine;
#[cfg(feature = "torch")]
pub mod torch_plugin;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::model::Detection;

use crate::detect::config::{BackendKind, DetectorConfig};
use crate::model::RgbImage;
use model::{HeadSpec, ModelSpec};
use preprocess::InputTransform;

/// A decoded box before NMS, in model-input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class_id: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// One output tensor of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("model file {path}: {reason}")]
    ModelFile { path: PathBuf, reason: String },
    #[error("inference engine {engine}: {reason}")]
    Engine { engine: &'static str, reason: String },
    #[error("model output: {0}")]
    OutputShape(String),
    #[error("detector backend `{0}` is not built in; rebuild with `--features {1}`")]
    NotBuilt(&'static str, &'static str),
    #[error("detector config: {0}")]
    Config(String),
}

/// What the rest of Argus sees of a detector.
pub trait Detector: Send {
    /// Detects objects in each image; one result list per image, best first.
    fn detect(&mut self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError>;
    fn info(&self) -> &DetectorInfo;
    /// Takes the detector apart for the pipelined detect stage, with up to `workers`
    /// engines that may run at once. A detector that only runs whole (the tests' fakes)
    /// returns `DetectorParts::Whole(self)` and runs on one thread.
    fn into_parts(self: Box<Self>, workers: usize) -> DetectorParts;
}

/// A detector taken apart so that its pure-Rust work runs beside the model call.
pub enum DetectorParts {
    /// Pre- and post-processing (shared, any thread) and the engines, each its own loaded
    /// model running one call at a time.
    Split { codec: Arc<Codec>, engines: Vec<Box<dyn InferenceEngine>> },
    /// Runs only whole.
    Whole(Box<dyn Detector>),
}

/// Describes a loaded detector for events, /v1/info and /readyz.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorInfo {
    pub model: String,
    /// `file@sha256:…` of the weights in use.
    pub model_id: String,
    pub backend: &'static str,
    pub device: String,
    pub input_size: [u32; 2],
    pub score_threshold: f32,
    pub nms_iou: f32,
    /// Largest batch the engine runs in one call (1 for fixed-batch exports).
    pub max_engine_batch: usize,
}

/// The seam between the shared detector logic and an inference library.
pub trait InferenceEngine: Send {
    fn name(&self) -> &'static str;
    fn device(&self) -> String;
    /// Largest batch one `infer` call may carry.
    fn max_batch(&self) -> usize;
    /// The model file's custom metadata (key → value), when the format has any.
    fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        Default::default()
    }
    /// Runs `n` images packed as `[n, 3, h, w]`; returns each image's outputs in the
    /// model's output order.
    fn infer(&mut self, input: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<Vec<OutputTensor>>, DetectError>;
}

/// Loads one more engine of the same model (more workers of the pipelined stage).
pub type EngineLoader = Arc<dyn Fn() -> Result<Box<dyn InferenceEngine>, DetectError> + Send + Sync>;

/// The model-specific pure-Rust work around an engine call: images to the input tensor
/// (letterbox, normalisation) and outputs to detections (head decode, NMS, back to image
/// pixels). Stateless, so the detect stage runs it on other threads than the model.
pub struct Codec {
    spec: ModelSpec,
    info: DetectorInfo,
    max_detections: usize,
    class_names: Vec<Arc<str>>,
}

impl Codec {
    pub fn info(&self) -> &DetectorInfo {
        &self.info
    }

    /// Floats of one image's input tensor.
    pub fn tensor_len(&self) -> usize {
        3 * self.spec.input.width as usize * self.spec.input.height as usize
    }

    /// `(height, width)` of the model input.
    pub fn input_hw(&self) -> (usize, usize) {
        (self.spec.input.height as usize, self.spec.input.width as usize)
    }

    /// Writes `images` as one `[n, 3, h, w]` tensor into `tensor` (resized to fit) and
    /// returns each image's way back to its own pixels.
    pub fn prepare(&self, images: &[&RgbImage], tensor: &mut Vec<f32>) -> Vec<InputTransform> {
        let per = self.tensor_len();
        tensor.resize(per * images.len(), 0.0);
        images.iter().zip(tensor.chunks_mut(per)).map(|(img, dst)| preprocess::preprocess_into(img, &self.spec.input, dst)).collect()
    }

    /// One image's detections from its outputs.
    pub fn finish(&self, outputs: &[OutputTensor], t: &InputTransform) -> Result<Vec<Detection>, DetectError> {
        let thr = self.info.score_threshold;
        let cands = match &self.spec.head {
            HeadSpec::Gfl(head) => head.decode(outputs, self.spec.input.width, self.spec.input.height, thr)?,
            HeadSpec::Yolo { layout } => {
                let out = outputs.first().ok_or_else(|| DetectError::OutputShape("model has no outputs".into()))?;
                let nc = self.spec.num_classes();
                let layout = match layout {
                    Some(l) => *l,
                    None => yolo::YoloLayout::infer(&out.shape, nc)?,
                };
                yolo::decode(out, layout, nc, thr)?
            }
        };
        let kept = nms::nms_per_class(cands, self.info.nms_iou, self.max_detections);
        Ok(kept
            .into_iter()
            .filter_map(|c| {
                let bbox = t.to_original(c.bbox);
                // Boxes that collapse after clipping carry no information.
                (bbox[2] > bbox[0] && bbox[3] > bbox[1]).then(|| Detection {
                    class_id: c.class_id,
                    class: self.class_names.get(c.class_id).cloned().unwrap_or_else(|| Arc::from(format!("class{}", c.class_id))),
                    score: c.score,
                    bbox,
                })
            })
            .collect())
    }
}

/// The detector: shared preprocessing and decoding around one inference engine.
pub struct EngineDetector {
    codec: Arc<Codec>,
    engine: Box<dyn InferenceEngine>,
    /// Loads more engines for the pipelined stage; without it the stage runs one.
    loader: Option<EngineLoader>,
    input: Vec<f32>,
}

impl EngineDetector {
    pub fn new(spec: ModelSpec, engine: Box<dyn InferenceEngine>, model_id: String, score_threshold: f32, nms_iou: Option<f32>, max_detections: usize) -> Self {
        let info = DetectorInfo {
            model: spec.name.clone(),
            model_id,
            backend: engine.name(),
            device: engine.device(),
            input_size: [spec.input.width, spec.input.height],
            score_threshold,
            nms_iou: nms_iou.unwrap_or(spec.default_nms_iou),
            max_engine_batch: engine.max_batch(),
        };
        let class_names = spec.class_names.iter().map(|c| Arc::from(c.as_str())).collect();
        let codec = Arc::new(Codec { spec, info, max_detections, class_names });
        Self { codec, engine, loader: None, input: Vec::new() }
    }

    /// Lets the pipelined stage load `loader`'s engines beside this one.
    pub fn with_loader(mut self, loader: EngineLoader) -> Self {
        self.loader = Some(loader);
        self
    }
}

impl Detector for EngineDetector {
    fn detect(&mut self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError> {
        let (h, w) = self.codec.input_hw();
        let mut results = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.engine.max_batch().max(1)) {
            let transforms = self.codec.prepare(chunk, &mut self.input);
            let outputs = self.engine.infer(&self.input, chunk.len(), h, w)?;
            if outputs.len() != chunk.len() {
                return Err(DetectError::OutputShape(format!("engine returned {} results for {} images", outputs.len(), chunk.len())));
            }
            for (out, t) in outputs.iter().zip(&transforms) {
                results.push(self.codec.finish(out, t)?);
            }
        }
        Ok(results)
    }

    fn info(&self) -> &DetectorInfo {
        &self.codec.info
    }

    fn into_parts(self: Box<Self>, workers: usize) -> DetectorParts {
        let this = *self;
        let mut engines = vec![this.engine];
        if let Some(load) = &this.loader {
            while engines.len() < workers.max(1) {
                match load() {
                    Ok(e) => engines.push(e),
                    Err(e) => {
                        // The first engine loaded, so the model is fine: run with fewer.
                        tracing::warn!(error = %e, loaded = engines.len(), wanted = workers, "could not load another detector worker; running with fewer");
                        break;
                    }
                }
            }
        }
        DetectorParts::Split { codec: this.codec, engines }
    }
}

/// Splits a `[n, ...]` output into `n` single-image tensors shaped `[1, ...]`.
#[cfg(any(feature = "onnx", feature = "torch"))]
pub(crate) fn split_batch(shape: &[usize], data: &[f32], n: usize, name: &str, per_image: &mut [Vec<OutputTensor>]) -> Result<(), DetectError> {
    if shape.first() != Some(&n) || !data.len().is_multiple_of(n) {
        return Err(DetectError::OutputShape(format!("output {name} has shape {shape:?} for a batch of {n}")));
    }
    let per = data.len() / n;
    let mut one = shape.to_vec();
    one[0] = 1;
    for (i, img) in per_image.iter_mut().enumerate() {
        img.push(OutputTensor { shape: one.clone(), data: data[i * per..(i + 1) * per].to_vec() });
    }
    Ok(())
}

/// Resolves the model spec and weights file for `cfg` without loading anything.
pub fn resolve_model(cfg: &DetectorConfig) -> Result<(ModelSpec, PathBuf), DetectError> {
    let spec = match ModelSpec::builtin(&cfg.model) {
        Some(s) => s,
        None if cfg.model == "yolo" => {
            let names = match &cfg.class_names {
                Some(n) => n.clone(),
                None => model::coco_names(),
            };
            ModelSpec::custom_yolo(cfg.input_size.unwrap_or(640), names, cfg.yolo_layout)
        }
        None => {
            return Err(DetectError::Config(format!(
                "unknown model `{}`; expected one of {:?} or \"yolo\" (with detector.path)",
                cfg.model,
                ModelSpec::BUILTIN_NAMES
            )));
        }
    };
    let ext = match cfg.backend {
        BackendKind::Ort => "onnx",
        BackendKind::Tch => "torchscript.pt",
    };
    let path = match &cfg.path {
        Some(p) => {
            if !p.is_file() {
                return Err(DetectError::ModelFile { path: p.clone(), reason: "no such file".into() });
            }
            p.clone()
        }
        None if spec.name == "yolo" => {
            return Err(DetectError::Config("model \"yolo\" needs detector.path to your exported weights".into()));
        }
        None => model::find_model_file(&format!("{}.{ext}", spec.file_stem))?,
    };
    Ok((spec, path))
}

/// Loads the detector `cfg` describes on the configured backend.
pub fn build_detector(cfg: &DetectorConfig) -> Result<Box<dyn Detector>, DetectError> {
    let (mut spec, path) = resolve_model(cfg)?;
    let model_id = model::file_fingerprint(&path)?;
    let engine = load_engine(&path, cfg)?;
    if spec.name == "yolo" {
        model::apply_metadata(&mut spec, &engine.metadata(), cfg.yolo_layout.is_some(), cfg.class_names.is_some(), cfg.input_size.is_some())?;
    }
    tracing::info!(model = %spec.name, %model_id, backend = engine.name(), device = %engine.device(), "detector loaded");
    let (path, more) = (path.clone(), cfg.clone());
    let loader: EngineLoader = Arc::new(move || load_engine(&path, &more));
    Ok(Box::new(EngineDetector::new(spec, engine, model_id, cfg.score_threshold, cfg.nms_iou, cfg.max_detections).with_loader(loader)))
}

/// The engine alone, with the model's input spec: for benchmarks that time the model
/// call without pre- and post-processing (`argus bench`'s bound).
pub fn build_engine(cfg: &DetectorConfig) -> Result<(ModelSpec, Box<dyn InferenceEngine>), DetectError> {
    let (spec, path) = resolve_model(cfg)?;
    Ok((spec, load_engine(&path, cfg)?))
}

#[allow(unused_variables)]
fn load_engine(path: &std::path::Path, cfg: &DetectorConfig) -> Result<Box<dyn InferenceEngine>, DetectError> {
    match cfg.backend {
        #[cfg(feature = "onnx")]
        BackendKind::Ort => Ok(Box::new(ort_engine::OrtEngine::load(path, cfg)?)),
        #[cfg(not(feature = "onnx"))]
        BackendKind::Ort => Err(DetectError::NotBuilt("ort", "onnx")),
        #[cfg(feature = "torch")]
        BackendKind::Tch => Ok(Box::new(torch_plugin::TchEngine::load(path, cfg)?)),
        #[cfg(not(feature = "torch"))]
        BackendKind::Tch => Err(DetectError::NotBuilt("tch", "torch")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that returns a fixed YOLOv5-layout output: one box per image.
    struct FixedYolo;
    impl InferenceEngine for FixedYolo {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn device(&self) -> String {
            "cpu".into()
        }
        fn max_batch(&self) -> usize {
            2
        }
        fn infer(&mut self, _input: &[f32], n: usize, _h: usize, _w: usize) -> Result<Vec<Vec<OutputTensor>>, DetectError> {
            // 2 classes: box centred at (32, 32) of the 64x64 input, 16x16, class 1.
            let out = OutputTensor { shape: vec![1, 1, 7], data: vec![32.0, 32.0, 16.0, 16.0, 0.9, 0.1, 0.9] };
            Ok(vec![vec![out]; n])
        }
    }

    #[test]
    fn maps_detections_back_through_the_letterbox() {
        let spec = ModelSpec::custom_yolo(64, vec!["a".into(), "b".into()], None);
        let mut det = EngineDetector::new(spec, Box::new(FixedYolo), "x".into(), 0.5, None, 100);
        // 128x64 image → scale 0.5, letterbox offset y 16.
        let img = RgbImage::new(128, 64, vec![0; 128 * 64 * 3]).unwrap();
        let out = det.detect(&[&img, &img, &img]).unwrap();
        assert_eq!(out.len(), 3);
        let d = &out[2][0];
        assert_eq!(&*d.class, "b");
        assert!((d.score - 0.81).abs() < 1e-6);
        assert_eq!(d.bbox, [48.0, 16.0, 80.0, 48.0]);
    }
}
