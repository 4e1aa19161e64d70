//! Model descriptions: what a detector file expects as input and how its head decodes.
//!
//! Built-in models (shipped under `models/`) are described here in code; users' own YOLO
//! exports are described by the `detector` config section.

use std::path::{Path, PathBuf};

use super::nanodet::GflHead;
use super::preprocess::{ChannelOrder, InputSpec, Resize};
use super::yolo::YoloLayout;
use super::{DetectError, coco::COCO80};

/// How a model's outputs are decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadSpec {
    /// NanoDet v0.x GFL head (outputs `cls_s*` then `reg_s*`).
    Gfl(GflHead),
    /// A YOLO export with the box decode inside the graph; `None` = infer from the shape.
    Yolo { layout: Option<YoloLayout> },
}

/// Everything the detector needs to know about one model, besides its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Short name used in config and events (`nanodet`, `yolo`, …).
    pub name: String,
    pub input: InputSpec,
    pub head: HeadSpec,
    pub class_names: Vec<String>,
    /// The NMS IoU threshold the model was evaluated with.
    pub default_nms_iou: f32,
    /// File stem under the models directory (`<stem>.onnx`, `<stem>.torchscript.pt`).
    pub file_stem: String,
}

impl ModelSpec {
    /// NanoDet-g 416, COCO-80, converted from the TF.js weights (see models/README.md).
    pub fn nanodet() -> Self {
        Self {
            name: "nanodet".into(),
            input: InputSpec {
                width: 416,
                height: 416,
                resize: Resize::Letterbox { pad: 0 },
                order: ChannelOrder::Bgr,
                mean: [103.53, 116.28, 123.675],
                std: [57.375, 57.12, 58.395],
            },
            head: HeadSpec::Gfl(GflHead {
                strides: vec![8, 16, 32],
                reg_max: 10,
                num_classes: 80,
                center_offset: 0.5,
            }),
            class_names: coco_names(),
            default_nms_iou: 0.6,
            file_stem: "nanodet".into(),
        }
    }

    /// A user's YOLOv5/v8/v11-style export: RGB, /255, letterboxed with grey (114) as
    /// Ultralytics does.
    pub fn custom_yolo(input_size: u32, class_names: Vec<String>, layout: Option<YoloLayout>) -> Self {
        Self {
            name: "yolo".into(),
            input: InputSpec {
                width: input_size,
                height: input_size,
                resize: Resize::Letterbox { pad: 114 },
                order: ChannelOrder::Rgb,
                mean: [0.0; 3],
                std: [255.0; 3],
            },
            head: HeadSpec::Yolo { layout },
            class_names,
            default_nms_iou: 0.45,
            file_stem: "yolo".into(),
        }
    }

    /// Built-in model by name.
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "nanodet" => Some(Self::nanodet()),
            _ => None,
        }
    }

    pub const BUILTIN_NAMES: &'static [&'static str] = &["nanodet"];

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

pub fn coco_names() -> Vec<String> {
    COCO80.iter().map(|s| s.to_string()).collect()
}

/// Where built-in model files are looked for, in order: `$ARGUS_MODELS_DIR`, `./models`,
/// the `models/` of the source tree the binary was built from.
pub fn models_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("ARGUS_MODELS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    dirs.push(Path::new(env!("ARGUS_BUILD_REPO_DIR")).join("models"));
    dirs
}

/// Finds `file` in the models directories.
pub fn find_model_file(file: &str) -> Result<PathBuf, DetectError> {
    let dirs = models_dirs();
    dirs.iter()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
        .ok_or_else(|| DetectError::ModelFile {
            path: PathBuf::from(file),
            reason: format!(
                "not found in {}; run scripts/setup, or set detector.path",
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        })
}

/// `name@sha256:<first 12 hex>` for events and /v1/info.
pub fn file_fingerprint(path: &Path) -> Result<String, DetectError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| DetectError::ModelFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(format!("{name}@sha256:{}", &digest[..12]))
}
