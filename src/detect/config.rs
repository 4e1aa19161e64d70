//! `[detector]`: which model, on which backend and device, with which thresholds.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::model::ModelSpec;
use super::yolo::YoloLayout;
use crate::model::Issues;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// ONNX Runtime (`onnx` feature): fast on CPU.
    Ort,
    /// libtorch via tch (`torch` feature): TorchScript, CUDA when present.
    Tch,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ort" => Ok(Self::Ort),
            "tch" => Ok(Self::Tch),
            other => Err(format!("unknown backend `{other}`; expected \"ort\" or \"tch\"")),
        }
    }
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ort => "ort",
            Self::Tch => "tch",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DevicePreference {
    /// CUDA when the backend sees a GPU, else CPU.
    Auto,
    Cpu,
    /// CUDA or refuse to start.
    Cuda,
}

/// `detector.workers`: a count, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One per `threads` cores on CPU (at most [`Workers::AUTO_MAX`]); one on a GPU.
    Auto,
    Count(usize),
}

impl Workers {
    /// The most model instances `auto` loads: each holds its own copy of the model.
    pub const AUTO_MAX: usize = 8;

    /// How many workers run, for a model on `device` with `threads` intra-op threads
    /// each, on a machine with `cores` cores.
    pub fn resolve(self, device: &str, threads: usize, cores: usize) -> usize {
        match self {
            Workers::Count(n) => n.max(1),
            // One GPU runs one call at a time best; more instances only cost its memory.
            Workers::Auto if device != "cpu" => 1,
            Workers::Auto => (cores / threads.max(1)).clamp(1, Self::AUTO_MAX),
        }
    }
}

impl Serialize for Workers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Auto => s.serialize_str("auto"),
            Workers::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Workers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of workers (e.g. 2) or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Workers, E> {
                Ok(Workers::Count(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Workers, E> {
                usize::try_from(v).map(Workers::Count).map_err(|_| E::custom(format!("{v} workers: use a positive number or \"auto\"")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Workers, E> {
                match v {
                    "auto" => Ok(Workers::Auto),
                    other => Err(E::custom(format!("`{other}`: use a number of workers (e.g. 2) or \"auto\""))),
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Built-in model name (`nanodet`) or `yolo` for your own export (needs `path`).
    pub model: String,
    pub backend: BackendKind,
    pub device: DevicePreference,
    /// Weights file; default: the built-in model's file under `models/`.
    pub path: Option<PathBuf>,
    /// ONNX Runtime shared library; default: ORT_DYLIB_PATH, then `.deps/onnxruntime`.
    pub ort_library: Option<PathBuf>,
    /// The libtorch plugin (`libargus_torch.so`, backend `tch` only); default:
    /// ARGUS_TORCH_PLUGIN, then next to the executable.
    pub torch_plugin: Option<PathBuf>,
    /// Minimum score for a detection.
    pub score_threshold: f32,
    /// Class-aware NMS IoU threshold; default: the model's own.
    pub nms_iou: Option<f32>,
    pub max_detections: usize,
    /// Intra-op CPU threads of each model instance (the pipeline's workers, and each
    /// of the API's analysis workers).
    pub threads: usize,
    /// Model instances the pipeline runs at once, each on its own thread with `threads`
    /// intra-op threads; `auto`: one per `threads` cores on CPU, one on a GPU. Several
    /// single-threaded instances beat one instance on every core (NanoDet, 2 cores: 37.5
    /// against 32–36 fps end to end) because a call's threads wait for each other at
    /// every layer, and any other work on a core stalls them all; each instance costs
    /// its own copy of the model.
    pub workers: Workers,
    /// ONNX Runtime's CPU memory arena and memory patterns. On by default: without
    /// them NanoDet took 37 ms a call instead of 27–29 (`argus bench`, 2 threads) for
    /// ~3 MB less at peak; turn off only where every megabyte counts.
    pub ort_arena: bool,
    /// Frames from all cameras batched into one detector call, at most.
    pub max_batch: usize,
    /// Frames of any one camera in one call, at most. 1 (the default) batches across
    /// cameras only: one camera gets no batching delay, and its frames do not wait in
    /// the queue for a batch of their own (each waiting frame is 1.3 MB at 768x576).
    pub max_batch_per_camera: usize,
    /// How long the batcher waits to fill a batch once it has one frame.
    pub max_wait_ms: u64,
    /// `yolo` only: square input size (default 640).
    pub input_size: Option<u32>,
    /// `yolo` only: class names in output order (default COCO-80).
    pub class_names: Option<Vec<String>>,
    /// `yolo` only: `v5` or `v8` output layout (default: inferred from the output shape).
    pub yolo_layout: Option<YoloLayout>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            model: "nanodet".into(),
            backend: BackendKind::Ort,
            device: DevicePreference::Auto,
            path: None,
            ort_library: None,
            torch_plugin: None,
            score_threshold: 0.35,
            nms_iou: None,
            max_detections: 100,
            threads: 1,
            workers: Workers::Auto,
            ort_arena: true,
            max_batch: 4,
            max_batch_per_camera: 1,
            max_wait_ms: 5,
            input_size: None,
            class_names: None,
            yolo_layout: None,
        }
    }
}

/// `detector.*` keys.
pub fn validate(d: &DetectorConfig, iss: &mut Issues) {
    if ModelSpec::builtin(&d.model).is_none() && d.model != "yolo" {
        iss.add(
            "detector.model",
            format!("unknown model `{}`", d.model),
            format!("use one of {:?}, or \"yolo\" with detector.path for your own export", ModelSpec::BUILTIN_NAMES),
        );
    }
    if d.model == "yolo" && d.path.is_none() {
        iss.add("detector.path", "model \"yolo\" needs the path of your exported weights", "set detector.path = \"models/your-model.onnx\"");
    }
    if let Some(p) = &d.path
        && !p.is_file()
    {
        iss.add("detector.path", format!("{} does not exist", p.display()), "point it at the .onnx (ort) or .torchscript.pt (tch) file");
    }
    if let Some(p) = &d.torch_plugin
        && d.backend == BackendKind::Tch
        && !p.is_file()
    {
        iss.add(
            "detector.torch_plugin",
            format!("{} does not exist", p.display()),
            "point it at libargus_torch.so (built by `cargo build --release` next to the argus binary), or remove the key",
        );
    }
    if !(d.score_threshold > 0.0 && d.score_threshold < 1.0) {
        iss.add("detector.score_threshold", format!("{} is outside (0, 1)", d.score_threshold), "use e.g. 0.35");
    }
    if let Some(n) = d.nms_iou
        && !(n > 0.0 && n <= 1.0)
    {
        iss.add("detector.nms_iou", format!("{n} is outside (0, 1]"), "use e.g. 0.5, or remove it for the model's default");
    }
    if d.max_detections == 0 {
        iss.add("detector.max_detections", "must be at least 1", "use e.g. 100");
    }
    if d.threads == 0 || d.threads > 256 {
        iss.add("detector.threads", format!("{} threads", d.threads), "use 1..=256 (the number of cores is a good start)");
    }
    if let Workers::Count(n) = d.workers
        && (n == 0 || n > 64)
    {
        iss.add("detector.workers", format!("{n} workers"), "use 1..=64, or \"auto\" (one per `threads` cores)");
    }
    if d.max_batch == 0 || d.max_batch > 64 {
        iss.add("detector.max_batch", format!("{} is outside 1..=64", d.max_batch), "use e.g. 4");
    }
    if d.max_batch_per_camera == 0 || d.max_batch_per_camera > d.max_batch.max(1) {
        iss.add(
            "detector.max_batch_per_camera",
            format!("{} is outside 1..=detector.max_batch ({})", d.max_batch_per_camera, d.max_batch),
            "use 1 to batch across cameras only, or up to max_batch",
        );
    }
    if d.max_wait_ms > 1000 {
        iss.add("detector.max_wait_ms", format!("{} ms adds that much latency to every frame", d.max_wait_ms), "use 0..=1000 (e.g. 5)");
    }
    if let Some(s) = d.input_size
        && (s == 0 || s % 32 != 0)
    {
        iss.add("detector.input_size", format!("{s} is not a positive multiple of 32"), "use the size the model was exported with, e.g. 640");
    }
    if d.model != "yolo" && (d.input_size.is_some() || d.class_names.is_some() || d.yolo_layout.is_some()) {
        iss.add(
            "detector.input_size / class_names / yolo_layout",
            format!("only apply to model = \"yolo\"; built-in `{}` defines its own", d.model),
            "remove them, or set model = \"yolo\"",
        );
    }
}

/// The classes the configured model reports, when known before loading it.
pub fn known_classes(d: &DetectorConfig) -> Option<Vec<String>> {
    match ModelSpec::builtin(&d.model) {
        Some(spec) => Some(spec.class_names),
        None => d.class_names.clone().or_else(|| (d.model == "yolo").then(super::model::coco_names)),
    }
}
