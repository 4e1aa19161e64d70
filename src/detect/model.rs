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
            head: HeadSpec::Gfl(GflHead { strides: vec![8, 16, 32], reg_max: 10, num_classes: 80, center_offset: 0.5 }),
            class_names: coco_names(),
            default_nms_iou: 0.6,
            file_stem: "nanodet".into(),
        }
    }

    /// YOLOv3-tiny (COCO-80) from the original Darknet weights, converted with the YOLO
    /// decode in the graph (`[1, 2535, 85]`, YOLOv5 layout). Darknet v3 used a plain
    /// resize and RGB / 255.
    pub fn yolov3_tiny() -> Self {
        Self {
            name: "yolov3-tiny".into(),
            input: InputSpec { width: 416, height: 416, resize: Resize::Stretch, order: ChannelOrder::Rgb, mean: [0.0; 3], std: [255.0; 3] },
            head: HeadSpec::Yolo { layout: Some(YoloLayout::V5) },
            class_names: coco_names(),
            default_nms_iou: 0.45,
            file_stem: "yolov3-tiny".into(),
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
            "yolov3-tiny" => Some(Self::yolov3_tiny()),
            _ => None,
        }
    }

    pub const BUILTIN_NAMES: &'static [&'static str] = &["nanodet", "yolov3-tiny"];

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// Refines a user's `yolo` spec from the model file's own metadata, for whatever the
/// config leaves open: `argus.head` (`yolov5`/`yolov8`, written by Argus's converters),
/// and Ultralytics' `names` (`{0: 'person', 1: 'bicycle'}`) and `imgsz` (`[640, 640]`).
pub fn apply_metadata(
    spec: &mut ModelSpec,
    meta: &std::collections::BTreeMap<String, String>,
    layout_configured: bool,
    names_configured: bool,
    size_configured: bool,
) -> Result<(), DetectError> {
    if let HeadSpec::Yolo { layout } = &mut spec.head
        && !layout_configured
    {
        match meta.get("argus.head").map(String::as_str) {
            Some("yolov5") => *layout = Some(YoloLayout::V5),
            Some("yolov8") => *layout = Some(YoloLayout::V8),
            Some(other) => return Err(DetectError::OutputShape(format!("model metadata argus.head = {other:?} is not a known head (yolov5, yolov8)"))),
            None => {}
        }
    }
    if !names_configured && let Some(raw) = meta.get("names") {
        spec.class_names =
            parse_ultralytics_names(raw).ok_or_else(|| DetectError::Config(format!("model metadata `names` is not a {{id: 'name'}} map: {raw:.80}")))?;
    }
    if !size_configured && let Some(raw) = meta.get("imgsz") {
        let dims: Vec<u32> = raw.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|v| v.trim().parse().ok()).collect();
        match dims.as_slice() {
            [h, w] if h == w => {
                spec.input.width = *w;
                spec.input.height = *h;
            }
            _ => return Err(DetectError::Config(format!("model metadata imgsz = {raw} is not a square [n, n]; set detector.input_size"))),
        }
    }
    Ok(())
}

/// `{0: 'person', 1: 'bicycle'}` → names in id order.
fn parse_ultralytics_names(raw: &str) -> Option<Vec<String>> {
    let body = raw.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs: Vec<(usize, String)> = Vec::new();
    // Split on "N:" boundaries rather than commas: names may contain commas.
    let mut rest = body.trim();
    while !rest.is_empty() {
        let colon = rest.find(':')?;
        let id: usize = rest[..colon].trim().parse().ok()?;
        let after = rest[colon + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let end = after[1..].find(quote)? + 1;
        pairs.push((id, after[1..end].to_string()));
        rest = after[end + 1..].trim_start().trim_start_matches(',').trim_start();
    }
    pairs.sort_by_key(|(id, _)| *id);
    pairs.iter().enumerate().all(|(i, (id, _))| i == *id).then(|| pairs.into_iter().map(|(_, n)| n).collect())
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
    dirs.iter().map(|d| d.join(file)).find(|p| p.is_file()).ok_or_else(|| DetectError::ModelFile {
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
    let bytes = std::fs::read(path).map_err(|e| DetectError::ModelFile { path: path.to_path_buf(), reason: e.to_string() })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(format!("{name}@sha256:{}", &digest[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ultralytics_metadata_fills_what_config_leaves_open() {
        let mut spec = ModelSpec::custom_yolo(640, coco_names(), None);
        let m = meta(&[("names", "{0: 'person', 1: \"fork, lift\", 2: 'dog'}"), ("imgsz", "[320, 320]"), ("argus.head", "yolov8")]);
        apply_metadata(&mut spec, &m, false, false, false).unwrap();
        assert_eq!(spec.class_names, vec!["person", "fork, lift", "dog"]);
        assert_eq!((spec.input.width, spec.input.height), (320, 320));
        assert_eq!(spec.head, HeadSpec::Yolo { layout: Some(YoloLayout::V8) });
    }

    #[test]
    fn config_wins_and_bad_metadata_is_refused() {
        let mut spec = ModelSpec::custom_yolo(640, vec!["a".into()], Some(YoloLayout::V5));
        apply_metadata(&mut spec, &meta(&[("names", "{0: 'x'}"), ("argus.head", "yolov8")]), true, true, true).unwrap();
        assert_eq!(spec.class_names, vec!["a"]);
        assert_eq!(spec.head, HeadSpec::Yolo { layout: Some(YoloLayout::V5) });
        let mut spec = ModelSpec::custom_yolo(640, vec![], None);
        assert!(apply_metadata(&mut spec, &meta(&[("argus.head", "yolov99")]), false, false, false).is_err());
        assert!(apply_metadata(&mut spec, &meta(&[("names", "{1: 'gap'}")]), false, false, false).is_err());
        assert!(apply_metadata(&mut spec, &meta(&[("imgsz", "[640, 480]")]), false, false, false).is_err());
    }
}
