//! libtorch engine (`torch` feature): TorchScript modules through `tch`, on CUDA when
//! libtorch sees a GPU (`detector.device = "auto"`), else on the CPU.

use std::path::Path;

use tch::{CModule, Device, IValue, Kind, Tensor};

use super::{DetectError, InferenceEngine, OutputTensor};
use crate::detect::config::{DetectorConfig, DevicePreference};

fn engine_err(reason: impl ToString) -> DetectError {
    DetectError::Engine { engine: "tch", reason: reason.to_string() }
}

pub struct TchEngine {
    module: CModule,
    device: Device,
}

impl TchEngine {
    pub fn load(path: &Path, cfg: &DetectorConfig) -> Result<Self, DetectError> {
        let device = match cfg.device {
            DevicePreference::Cpu => Device::Cpu,
            DevicePreference::Auto => Device::cuda_if_available(),
            DevicePreference::Cuda => {
                if !tch::Cuda::is_available() {
                    return Err(engine_err("detector.device = \"cuda\" but libtorch sees no CUDA device; use \"auto\" or \"cpu\""));
                }
                Device::Cuda(0)
            }
        };
        if device == Device::Cpu {
            tch::set_num_threads(cfg.threads as i32);
        }
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| DetectError::ModelFile { path: path.to_path_buf(), reason: format!("libtorch cannot load it as TorchScript: {e}") })?;
        module.set_eval();
        Ok(Self { module, device })
    }
}

impl InferenceEngine for TchEngine {
    fn name(&self) -> &'static str {
        "tch"
    }
    fn device(&self) -> String {
        match self.device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        }
    }
    fn max_batch(&self) -> usize {
        // The traced exports bake batch 1 into their reshapes.
        1
    }

    fn infer(&mut self, input: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<Vec<OutputTensor>>, DetectError> {
        let x = Tensor::from_slice(input).view([n as i64, 3, h as i64, w as i64]).to_device(self.device);
        let out = tch::no_grad(|| self.module.forward_is(&[IValue::Tensor(x)])).map_err(engine_err)?;
        let tensors = match out {
            IValue::Tensor(t) => vec![t],
            IValue::Tuple(items) | IValue::GenericList(items) => items
                .into_iter()
                .map(|v| match v {
                    IValue::Tensor(t) => Ok(t),
                    other => Err(DetectError::OutputShape(format!("TorchScript output item is not a tensor: {other:?}"))),
                })
                .collect::<Result<_, _>>()?,
            IValue::TensorList(ts) => ts,
            other => return Err(DetectError::OutputShape(format!("unexpected TorchScript output {other:?}"))),
        };
        let mut per_image: Vec<Vec<OutputTensor>> = vec![Vec::with_capacity(tensors.len()); n];
        for (i, t) in tensors.into_iter().enumerate() {
            let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let shape: Vec<usize> = t.size().iter().map(|d| *d as usize).collect();
            let data = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(engine_err)?;
            super::split_batch(&shape, &data, n, &format!("output {i}"), &mut per_image)?;
        }
        Ok(per_image)
    }
}
