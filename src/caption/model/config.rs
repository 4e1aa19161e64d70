//! `[captioner]`: the optional captioning model.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Issues;

/// Which part of the frame the captioning model sees.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CaptionRegion {
    /// The whole frame.
    Frame,
    /// The event's objects (an incident's member tracks), with a margin.
    Objects,
}

/// `[captioner]`: the optional captioning model (docs/captioner.md). Every event keeps
/// its deterministic `caption`; events at or above `min_level` also get `model_caption`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptionerConfig {
    pub enabled: bool,
    /// ONNX model (image + tokens → next-token logits).
    pub model: Option<PathBuf>,
    /// Vocabulary file (`argus.tokenizer.v1` JSON).
    pub tokenizer: Option<PathBuf>,
    pub prompt: String,
    /// Events at or above this risk level get a model caption.
    pub min_level: crate::model::Level,
    /// Most tokens generated per caption.
    pub max_tokens: usize,
    /// Side of the square image the model takes.
    pub input_size: u32,
    pub region: CaptionRegion,
    /// Intra-op CPU threads for the model.
    pub threads: usize,
}

impl Default for CaptionerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            model: None,
            tokenizer: None,
            prompt: "describe the scene.".into(),
            min_level: crate::model::Level::High,
            max_tokens: 24,
            input_size: 64,
            region: CaptionRegion::Frame,
            threads: 1,
        }
    }
}

/// `[captioner]`, when enabled. The tokenizer is parsed here too (it is small), so
/// `argus check` reports a bad one before anything starts.
pub fn validate(c: &CaptionerConfig, iss: &mut Issues) {
    if !c.enabled {
        return;
    }
    if !cfg!(feature = "onnx") {
        iss.add(
            "captioner.enabled",
            "this build has no ONNX Runtime (the captioning model needs it)",
            "build with `--features onnx` (on by default) or set enabled = false",
        );
    }
    match &c.model {
        None => iss.add(
            "captioner.model",
            "not set (the captioner is enabled)",
            "set model = \"models/your-captioner.onnx\" (docs/captioner.md) or enabled = false",
        ),
        Some(p) if !p.is_file() => {
            iss.add("captioner.model", format!("{} does not exist", p.display()), "point it at an .onnx captioning model (docs/captioner.md)")
        }
        Some(_) => {}
    }
    if let Some(p) = &c.tokenizer {
        match super::Tokenizer::from_file(p) {
            Ok(_) => {}
            Err(super::TokenizerError::Read(e)) => {
                iss.add("captioner.tokenizer", format!("{}: {e}", p.display()), "point it at the model's argus.tokenizer.v1 JSON file (docs/captioner.md)")
            }
            Err(e) => iss.add("captioner.tokenizer", format!("{}: {e}", p.display()), "fix the file; its format is in docs/captioner.md"),
        }
    } else {
        iss.add("captioner.tokenizer", "not set (the captioner is enabled)", "set tokenizer = \"models/your-captioner.tokenizer.json\"");
    }
    if c.max_tokens == 0 || c.max_tokens > 256 {
        iss.add("captioner.max_tokens", format!("{} is outside 1..=256", c.max_tokens), "use e.g. 24");
    }
    if c.input_size < 8 || c.input_size > 1024 {
        iss.add("captioner.input_size", format!("{} is outside 8..=1024", c.input_size), "use the side the model was exported with, e.g. 64");
    }
    if c.threads == 0 || c.threads > 256 {
        iss.add("captioner.threads", format!("{} threads", c.threads), "use 1..=256");
    }
}
