//! libtorch engine for Argus, as a plugin: TorchScript modules through `tch`, on CUDA
//! when libtorch sees a GPU (`detector.device = "auto"`), else on the CPU.
//!
//! Why a plugin: linking libtorch into `argus` made every process map and relocate it
//! (≈ 90 MB resident and 0.5 s before `main`, even for `argus --version` or a run on
//! ONNX Runtime). `argus` opens this library only when a configuration asks for the
//! `tch` backend.
//!
//! The interface is a small C ABI (`argus_torch_*`), checked by [`ABI_VERSION`]: a
//! handle per loaded module, inputs as `[n, 3, h, w]` f32, outputs handed back one
//! tensor at a time through a callback (the caller copies them before it returns).
//! Errors are handed back as UTF-8 text through a callback. No panic crosses the
//! boundary.

use std::ffi::{c_char, c_void};

/// Bumped whenever a signature below changes; `argus` refuses a plugin whose version
/// differs from its own.
pub const ABI_VERSION: u32 = 1;

/// Device codes of `argus_torch_load`.
pub const DEVICE_CPU: i32 = 0;
pub const DEVICE_AUTO: i32 = 1;
pub const DEVICE_CUDA: i32 = 2;

/// Receives an error message (UTF-8, not NUL-terminated).
pub type ErrorFn = extern "C" fn(ctx: *mut c_void, msg: *const u8, len: usize);
/// Receives output `index` with its shape and data (f32, row-major, on the CPU).
pub type OutputFn = extern "C" fn(ctx: *mut c_void, index: usize, shape: *const usize, ndim: usize, data: *const f32, len: usize);

fn report(on_error: ErrorFn, ctx: *mut c_void, msg: &str) {
    on_error(ctx, msg.as_ptr(), msg.len());
}

/// Runs `f`, turning an error or a panic into a message for the caller and -1.
fn guarded(on_error: ErrorFn, ctx: *mut c_void, f: impl FnOnce() -> Result<(), String>) -> i32 {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => {
            report(on_error, ctx, &msg);
            -1
        }
        Err(panic) => {
            let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            report(on_error, ctx, &format!("the libtorch plugin panicked: {what}"));
            -1
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn argus_torch_abi_version() -> u32 {
    ABI_VERSION
}

/// Loads a TorchScript module. On success writes the handle to `out` and returns 0.
///
/// # Safety
/// `path` points to `path_len` bytes of UTF-8; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn argus_torch_load(
    path: *const c_char,
    path_len: usize,
    device: i32,
    threads: i32,
    out: *mut *mut c_void,
    on_error: ErrorFn,
    err_ctx: *mut c_void,
) -> i32 {
    guarded(on_error, err_ctx, || {
        // SAFETY: the caller passes a valid (ptr, len) pair.
        let bytes = unsafe { std::slice::from_raw_parts(path as *const u8, path_len) };
        let path = std::str::from_utf8(bytes).map_err(|e| format!("model path is not UTF-8: {e}"))?;
        let engine = engine::Engine::load(std::path::Path::new(path), device, threads)?;
        // SAFETY: the caller passes a writable pointer.
        unsafe { *out = Box::into_raw(Box::new(engine)) as *mut c_void };
        Ok(())
    })
}

/// The device a loaded module runs on: -1 for the CPU, else the CUDA index.
///
/// # Safety
/// `handle` comes from `argus_torch_load` and was not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn argus_torch_device(handle: *mut c_void) -> i32 {
    // SAFETY: see the function's contract.
    let engine = unsafe { &*(handle as *const engine::Engine) };
    engine.device_index()
}

/// Runs the module on `n` images packed as `[n, 3, h, w]`; each output tensor is handed
/// to `on_output` in the module's output order. Returns 0, or -1 after `on_error`.
///
/// # Safety
/// `handle` comes from `argus_torch_load` and is used by one thread at a time; `input`
/// points to `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn argus_torch_infer(
    handle: *mut c_void,
    input: *const f32,
    len: usize,
    dims: *const usize,
    on_output: OutputFn,
    out_ctx: *mut c_void,
    on_error: ErrorFn,
    err_ctx: *mut c_void,
) -> i32 {
    guarded(on_error, err_ctx, || {
        // SAFETY: see the function's contract (dims is [n, c, h, w]).
        let (engine, input, dims) =
            unsafe { (&mut *(handle as *mut engine::Engine), std::slice::from_raw_parts(input, len), std::slice::from_raw_parts(dims, 4)) };
        if dims.iter().product::<usize>() != len {
            return Err(format!("input of {len} floats does not match its shape {dims:?}"));
        }
        engine
            .infer(input, [dims[0], dims[1], dims[2], dims[3]], |i, shape, data| on_output(out_ctx, i, shape.as_ptr(), shape.len(), data.as_ptr(), data.len()))
    })
}

/// Frees a module loaded by `argus_torch_load`.
///
/// # Safety
/// `handle` comes from `argus_torch_load` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn argus_torch_free(handle: *mut c_void) {
    if !handle.is_null() {
        // SAFETY: see the function's contract.
        drop(unsafe { Box::from_raw(handle as *mut engine::Engine) });
    }
}

#[cfg(feature = "libtorch")]
pub mod engine {
    use std::path::Path;

    use tch::{CModule, Device, IValue, Kind, Tensor};

    pub struct Engine {
        module: CModule,
        device: Device,
    }

    impl Engine {
        pub fn load(path: &Path, device: i32, threads: i32) -> Result<Self, String> {
            let device = match device {
                super::DEVICE_CPU => Device::Cpu,
                super::DEVICE_CUDA => {
                    if !tch::Cuda::is_available() {
                        return Err("detector.device = \"cuda\" but libtorch sees no CUDA device; use \"auto\" or \"cpu\"".into());
                    }
                    Device::Cuda(0)
                }
                _ => Device::cuda_if_available(),
            };
            if device == Device::Cpu && threads > 0 {
                tch::set_num_threads(threads);
            }
            let mut module =
                CModule::load_on_device(path, device).map_err(|e| format!("model file {}: libtorch cannot load it as TorchScript: {e}", path.display()))?;
            module.set_eval();
            Ok(Self { module, device })
        }

        pub fn device_index(&self) -> i32 {
            match self.device {
                Device::Cuda(i) => i as i32,
                _ => -1,
            }
        }

        /// Runs the module; `each` gets every output (index, shape, data) in order.
        pub fn infer(&mut self, input: &[f32], dims: [usize; 4], mut each: impl FnMut(usize, &[usize], &[f32])) -> Result<(), String> {
            let shape: Vec<i64> = dims.iter().map(|d| *d as i64).collect();
            let x = Tensor::from_slice(input).view(shape.as_slice()).to_device(self.device);
            let out = tch::no_grad(|| self.module.forward_is(&[IValue::Tensor(x)])).map_err(|e| e.to_string())?;
            let tensors = match out {
                IValue::Tensor(t) => vec![t],
                IValue::Tuple(items) | IValue::GenericList(items) => items
                    .into_iter()
                    .map(|v| match v {
                        IValue::Tensor(t) => Ok(t),
                        other => Err(format!("TorchScript output item is not a tensor: {other:?}")),
                    })
                    .collect::<Result<_, _>>()?,
                IValue::TensorList(ts) => ts,
                other => return Err(format!("unexpected TorchScript output {other:?}")),
            };
            for (i, t) in tensors.into_iter().enumerate() {
                let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
                let shape: Vec<usize> = t.size().iter().map(|d| *d as usize).collect();
                let data = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| e.to_string())?;
                each(i, &shape, &data);
            }
            Ok(())
        }
    }
}

/// Built without libtorch: every load says how to get it.
#[cfg(not(feature = "libtorch"))]
pub mod engine {
    use std::path::Path;

    pub struct Engine;

    impl Engine {
        pub fn load(_path: &Path, _device: i32, _threads: i32) -> Result<Self, String> {
            Err("this libargus_torch was built without libtorch (feature `libtorch`); rebuild it with `cargo build --release -p argus-torch`".into())
        }
        pub fn device_index(&self) -> i32 {
            -1
        }
        pub fn infer(&mut self, _input: &[f32], _dims: [usize; 4], _each: impl FnMut(usize, &[usize], &[f32])) -> Result<(), String> {
            Err("built without libtorch".into())
        }
    }
}
