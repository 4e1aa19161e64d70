//! The captioning model on ONNX Runtime (`onnx` feature): the contract in
//! docs/captioner.md — inputs `image` float32 [1,3,S,S] and `tokens` int64 [1,T],
//! output `logits` float32 [1,T,V]. Shares the detector's ONNX Runtime environment.

use std::path::Path;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::{CaptionError, StepModel};

pub struct OrtStepModel {
    session: Session,
}

fn model_err(reason: impl std::fmt::Display) -> CaptionError {
    CaptionError::Model(reason.to_string())
}

fn contract(path: &Path, reason: String) -> CaptionError {
    CaptionError::File {
        key: "model",
        path: path.to_path_buf(),
        reason,
        fix: "export it with inputs `image` [1,3,S,S] float32 and `tokens` [1,T] int64 and output `logits` [1,T,V] float32 (docs/captioner.md)".into(),
    }
}

impl OrtStepModel {
    /// Loads `path` and checks its inputs and outputs against the contract; a fixed image
    /// side must equal `input_size`.
    pub fn load(path: &Path, input_size: u32, threads: usize, ort_library: &Path) -> Result<Self, CaptionError> {
        let env = crate::detect::ort_engine::environment(ort_library).map_err(model_err)?;
        let session = Session::builder(env)
            .map_err(model_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(model_err)?
            .with_intra_threads(threads.max(1))
            .map_err(model_err)?
            .commit_from_file(path)
            .map_err(|e| contract(path, format!("ONNX Runtime cannot load it: {e}")))?;
        let input = |name: &str| session.inputs().iter().find(|i| i.name() == name).map(|i| i.dtype().clone());
        match input("image") {
            Some(ValueType::Tensor { ty: TensorElementType::Float32, shape, .. }) if shape.len() == 4 => {
                let (h, w) = (shape[2], shape[3]);
                for side in [h, w] {
                    if side > 0 && side != input_size as i64 {
                        return Err(CaptionError::Config {
                            key: "input_size",
                            reason: format!("{input_size}, but {} takes {h}x{w} images", path.display()),
                            fix: format!("set captioner.input_size = {side}"),
                        });
                    }
                }
            }
            other => return Err(contract(path, format!("input `image` is {other:?}"))),
        }
        match input("tokens") {
            Some(ValueType::Tensor { ty: TensorElementType::Int64, shape, .. }) if shape.len() == 2 => {}
            other => return Err(contract(path, format!("input `tokens` is {other:?}"))),
        }
        if !session.outputs().iter().any(|o| o.name() == "logits") {
            return Err(contract(path, "it has no output `logits`".into()));
        }
        Ok(Self { session })
    }
}

impl StepModel for OrtStepModel {
    fn next_logits(&mut self, image: &[f32], size: u32, tokens: &[i64]) -> Result<Vec<f32>, CaptionError> {
        let s = size as usize;
        let t = tokens.len();
        if t == 0 {
            return Err(model_err("no tokens to continue (the prompt always starts with BOS)"));
        }
        let image = TensorRef::from_array_view(([1usize, 3, s, s], image)).map_err(model_err)?;
        let toks = TensorRef::from_array_view(([1usize, t], tokens)).map_err(model_err)?;
        let outputs = self.session.run(ort::inputs!["image" => image, "tokens" => toks]).map_err(model_err)?;
        let (shape, data) = outputs["logits"].try_extract_tensor::<f32>().map_err(model_err)?;
        if shape.len() != 3 || shape[0] != 1 || shape[1] != t as i64 || shape[2] < 1 {
            return Err(model_err(format!("`logits` has shape {:?}; expected [1, {t}, V]", &shape[..])));
        }
        let v = shape[2] as usize;
        Ok(data[(t - 1) * v..t * v].to_vec())
    }

    fn backend(&self) -> &'static str {
        "ort"
    }

    fn device(&self) -> String {
        "cpu".into()
    }
}
