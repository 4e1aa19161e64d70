//! ONNX Runtime engine (`onnx` feature). The shared library is loaded at run time
//! (`load-dynamic`), from `detector.ort_library`, `ORT_DYLIB_PATH`, or where
//! scripts/setup put it, in that order.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::{DetectError, InferenceEngine, OutputTensor};
use crate::detect::config::{DetectorConfig, DevicePreference};

static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Prepacked weights per model file, shared by every session of that model in the
/// process (the pipeline's workers, the API's analysis workers): each session would
/// otherwise keep its own copy of the weights in the kernels' layout.
static PREPACKED: OnceLock<parking_lot::Mutex<std::collections::HashMap<PathBuf, ort::session::builder::PrepackedWeights>>> = OnceLock::new();

fn prepacked(path: &Path) -> ort::session::builder::PrepackedWeights {
    PREPACKED.get_or_init(Default::default).lock().entry(path.to_path_buf()).or_insert_with(ort::session::builder::PrepackedWeights::new).clone()
}

fn engine_err(reason: impl ToString) -> DetectError {
    DetectError::Engine { engine: "ort", reason: reason.to_string() }
}

/// The ONNX Runtime library this process will load.
pub fn library_path(cfg: &DetectorConfig) -> PathBuf {
    if let Some(p) = &cfg.ort_library {
        return p.clone();
    }
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(env!("ARGUS_BUILD_ORT_DYLIB"));
    if built.is_file() { built } else { PathBuf::from("libonnxruntime.so") }
}

pub(crate) fn environment(lib: &Path) -> Result<&'static Environment, DetectError> {
    let env = ENV.get_or_init(|| {
        let builder = ort::init_from(lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}; run scripts/setup or set detector.ort_library / ORT_DYLIB_PATH", lib.display()))?;
        builder.with_name("argus").build().map_err(|e| e.to_string())
    });
    env.as_ref().map_err(engine_err)
}

pub struct OrtEngine {
    session: Session,
    input_name: String,
    output_names: Vec<String>,
    max_batch: usize,
    device: String,
    metadata: std::collections::BTreeMap<String, String>,
}

impl OrtEngine {
    pub fn load(path: &Path, cfg: &DetectorConfig) -> Result<Self, DetectError> {
        let env = environment(&library_path(cfg))?;
        let mut builder = Session::builder(env)
            .map_err(engine_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(engine_err)?
            .with_intra_threads(cfg.threads)
            .map_err(engine_err)?
            .with_prepacked_weights(&prepacked(path))
            .map_err(engine_err)?;
        if !cfg.ort_arena {
            // Registering the CPU provider with its arena off sets the session option
            // (it adds no provider: CPU is always last). Memory patterns preallocate a
            // run's peak from the previous runs; without the arena they are freed again.
            builder = builder
                .with_memory_pattern(false)
                .map_err(engine_err)?
                .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
                .map_err(engine_err)?;
        }
        #[cfg_attr(not(feature = "onnx-cuda"), allow(unused_mut))]
        let mut device = "cpu".to_string();
        if cfg.device != DevicePreference::Cpu {
            #[cfg(feature = "onnx-cuda")]
            {
                let mut ep = ort::ep::CUDA::default().build();
                if cfg.device == DevicePreference::Cuda {
                    ep = ep.error_on_failure();
                }
                builder = builder.with_execution_providers([ep]).map_err(engine_err)?;
                if ort::ep::CUDA::default().is_available().unwrap_or(false) {
                    device = "cuda".into();
                }
            }
            #[cfg(not(feature = "onnx-cuda"))]
            if cfg.device == DevicePreference::Cuda {
                return Err(DetectError::NotBuilt("ort with CUDA", "onnx-cuda"));
            }
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| DetectError::ModelFile { path: path.to_path_buf(), reason: format!("ONNX Runtime cannot load it: {e}") })?;
        let input = session.inputs().first().ok_or_else(|| engine_err("model has no inputs"))?;
        let input_name = input.name().to_string();
        // A fixed leading dimension of 1 means one image per run; dynamic (-1) batches.
        let max_batch = match input.dtype() {
            ort::value::ValueType::Tensor { shape, .. } if shape.first().copied().unwrap_or(1) < 1 => cfg.max_batch.max(1),
            _ => 1,
        };
        let output_names = session.outputs().iter().map(|o| o.name().to_string()).collect();
        let metadata = match session.metadata() {
            Ok(m) => m.custom_keys().unwrap_or_default().into_iter().filter_map(|k| m.custom(&k).map(|v| (k, v))).collect(),
            Err(_) => Default::default(),
        };
        Ok(Self { session, input_name, output_names, max_batch, device, metadata })
    }
}

impl InferenceEngine for OrtEngine {
    fn name(&self) -> &'static str {
        "ort"
    }
    fn device(&self) -> String {
        self.device.clone()
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        self.metadata.clone()
    }

    fn infer(&mut self, input: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<Vec<OutputTensor>>, DetectError> {
        let tensor = TensorRef::from_array_view(([n, 3, h, w], input)).map_err(engine_err)?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(engine_err)?;
        let mut per_image: Vec<Vec<OutputTensor>> = vec![Vec::with_capacity(self.output_names.len()); n];
        for name in &self.output_names {
            let (shape, data) = outputs[name.as_str()].try_extract_tensor::<f32>().map_err(engine_err)?;
            let shape: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
            super::split_batch(&shape, data, n, name, &mut per_image)?;
        }
        Ok(per_image)
    }
}
