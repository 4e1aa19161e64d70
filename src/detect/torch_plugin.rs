//! The libtorch engine (`torch` feature), through the `argus-torch` plugin
//! (crates/argus-torch, `libargus_torch.so`): TorchScript modules on CUDA when libtorch
//! sees a GPU (`detector.device = "auto"`), else on the CPU.
//!
//! libtorch is opened only here, when a configuration asks for `backend = "tch"`: linked
//! into `argus` it cost every process ≈ 90 MB resident and 0.5 s at start, whichever
//! backend it used. The plugin is found at `detector.torch_plugin`, `ARGUS_TORCH_PLUGIN`,
//! next to the executable (or one folder up, for test binaries in `deps/`), in
//! `../lib/argus/` from it, or in the build's own target folder, in that order.

use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{DetectError, InferenceEngine, OutputTensor};
use crate::detect::config::{DetectorConfig, DevicePreference};

/// Must equal the plugin's `ABI_VERSION` (crates/argus-torch/src/lib.rs).
const ABI_VERSION: u32 = 1;
const FILE_NAME: &str = "libargus_torch.so";

type ErrorFn = extern "C" fn(*mut c_void, *const u8, usize);
type OutputFn = extern "C" fn(*mut c_void, usize, *const usize, usize, *const f32, usize);
type AbiFn = unsafe extern "C" fn() -> u32;
type LoadFn = unsafe extern "C" fn(*const c_char, usize, i32, i32, *mut *mut c_void, ErrorFn, *mut c_void) -> i32;
type DeviceFn = unsafe extern "C" fn(*mut c_void) -> i32;
type InferFn = unsafe extern "C" fn(*mut c_void, *const f32, usize, *const usize, OutputFn, *mut c_void, ErrorFn, *mut c_void) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_void);

fn engine_err(reason: impl ToString) -> DetectError {
    DetectError::Engine { engine: "tch", reason: reason.to_string() }
}

/// The plugin's entry points. The library stays open for the process's life (libtorch
/// does not support being unloaded).
struct Plugin {
    load: LoadFn,
    device: DeviceFn,
    infer: InferFn,
    free: FreeFn,
}

static PLUGIN: OnceLock<Result<Plugin, String>> = OnceLock::new();

/// Where to look for the plugin, in order.
pub fn candidates(cfg: &DetectorConfig) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = &cfg.torch_plugin {
        return vec![p.clone()];
    }
    if let Some(p) = std::env::var_os("ARGUS_TORCH_PLUGIN").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        out.push(dir.join(FILE_NAME));
        if let Some(up) = dir.parent() {
            out.push(up.join(FILE_NAME));
            out.push(up.join("lib/argus").join(FILE_NAME));
        }
    }
    out.push(PathBuf::from(env!("ARGUS_BUILD_PROFILE_DIR")).join(FILE_NAME));
    out
}

fn open(cfg: &DetectorConfig) -> Result<&'static Plugin, DetectError> {
    let plugin = PLUGIN.get_or_init(|| {
        let tried = candidates(cfg);
        let path = tried.iter().find(|p| p.is_file()).ok_or_else(|| {
            format!(
                "the libtorch plugin {FILE_NAME} was not found (looked in {}); build it with `cargo build --release -p argus-torch`, \
                 or set detector.torch_plugin / ARGUS_TORCH_PLUGIN",
                tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })?;
        // SAFETY: loading runs the plugin's (and libtorch's) initialisers; the plugin is
        // ours, built from this workspace, and its version is checked before any other
        // call. The library is leaked: it stays loaded for the process's life.
        unsafe {
            let lib = libloading::Library::new(path).map_err(|e| format!("cannot load the libtorch plugin {}: {e}", path.display()))?;
            let lib: &'static libloading::Library = Box::leak(Box::new(lib));
            let sym = |name: &[u8]| -> Result<*const (), String> { lib.get::<*const ()>(name).map(|s| *s).map_err(|e| format!("{}: {e}", path.display())) };
            let abi: AbiFn = std::mem::transmute(sym(b"argus_torch_abi_version\0")?);
            let found = abi();
            if found != ABI_VERSION {
                return Err(format!(
                    "{} speaks plugin ABI {found}, this argus speaks {ABI_VERSION}: rebuild both from one checkout (`cargo build --release`)",
                    path.display()
                ));
            }
            crate::telemetry::memory::tune_allocator_for_libtorch();
            tracing::info!(plugin = %path.display(), "loaded the libtorch plugin");
            Ok(Plugin {
                load: std::mem::transmute::<*const (), LoadFn>(sym(b"argus_torch_load\0")?),
                device: std::mem::transmute::<*const (), DeviceFn>(sym(b"argus_torch_device\0")?),
                infer: std::mem::transmute::<*const (), InferFn>(sym(b"argus_torch_infer\0")?),
                free: std::mem::transmute::<*const (), FreeFn>(sym(b"argus_torch_free\0")?),
            })
        }
    });
    plugin.as_ref().map_err(engine_err)
}

extern "C" fn keep_error(ctx: *mut c_void, msg: *const u8, len: usize) {
    // SAFETY: ctx is the `String` the caller passed; (msg, len) is valid for the call.
    unsafe { (*(ctx as *mut String)).push_str(&String::from_utf8_lossy(std::slice::from_raw_parts(msg, len))) };
}

/// What `infer` collects from the plugin's output callback.
struct Collected {
    n: usize,
    per_image: Vec<Vec<OutputTensor>>,
    error: Option<DetectError>,
}

extern "C" fn keep_output(ctx: *mut c_void, index: usize, shape: *const usize, ndim: usize, data: *const f32, len: usize) {
    // SAFETY: ctx is the `Collected` the caller passed; the slices are valid for the call.
    let (c, shape, data) = unsafe { (&mut *(ctx as *mut Collected), std::slice::from_raw_parts(shape, ndim), std::slice::from_raw_parts(data, len)) };
    if c.error.is_none()
        && let Err(e) = super::split_batch(shape, data, c.n, &format!("output {index}"), &mut c.per_image)
    {
        c.error = Some(e);
    }
}

pub struct TchEngine {
    plugin: &'static Plugin,
    handle: *mut c_void,
    device: i32,
}

// SAFETY: the handle is a TorchScript module owned by this engine alone; it is only used
// through `&mut self` (one thread at a time), which libtorch modules allow.
unsafe impl Send for TchEngine {}

impl TchEngine {
    pub fn load(path: &Path, cfg: &DetectorConfig) -> Result<Self, DetectError> {
        let plugin = open(cfg)?;
        let device = match cfg.device {
            DevicePreference::Cpu => 0,
            DevicePreference::Auto => 1,
            DevicePreference::Cuda => 2,
        };
        let path_text = path.to_str().ok_or_else(|| DetectError::ModelFile { path: path.to_path_buf(), reason: "the path is not UTF-8".into() })?;
        let mut err = String::new();
        let mut handle = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the plugin writes `handle` on success.
        let rc = unsafe {
            (plugin.load)(
                path_text.as_ptr() as *const c_char,
                path_text.len(),
                device,
                cfg.threads as i32,
                &mut handle,
                keep_error,
                &mut err as *mut String as *mut c_void,
            )
        };
        if rc != 0 || handle.is_null() {
            return Err(if err.starts_with("model file") { DetectError::ModelFile { path: path.to_path_buf(), reason: err } } else { engine_err(err) });
        }
        // SAFETY: a live handle.
        let device = unsafe { (plugin.device)(handle) };
        Ok(Self { plugin, handle, device })
    }
}

impl Drop for TchEngine {
    fn drop(&mut self) {
        // SAFETY: the handle came from the plugin's load and is not used again.
        unsafe { (self.plugin.free)(self.handle) };
    }
}

impl InferenceEngine for TchEngine {
    fn name(&self) -> &'static str {
        "tch"
    }
    fn device(&self) -> String {
        if self.device >= 0 { format!("cuda:{}", self.device) } else { "cpu".into() }
    }
    fn max_batch(&self) -> usize {
        // The traced exports bake batch 1 into their reshapes.
        1
    }

    fn infer(&mut self, input: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<Vec<OutputTensor>>, DetectError> {
        let dims = [n, 3, h, w];
        let mut collected = Collected { n, per_image: vec![Vec::new(); n], error: None };
        let mut err = String::new();
        // SAFETY: every pointer is valid for the call; the callbacks copy what they keep.
        let rc = unsafe {
            (self.plugin.infer)(
                self.handle,
                input.as_ptr(),
                input.len(),
                dims.as_ptr(),
                keep_output,
                &mut collected as *mut Collected as *mut c_void,
                keep_error,
                &mut err as *mut String as *mut c_void,
            )
        };
        if rc != 0 {
            return Err(engine_err(err));
        }
        match collected.error {
            Some(e) => Err(e),
            None => Ok(collected.per_image),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_plugin_path_is_the_only_candidate() {
        let cfg = DetectorConfig { torch_plugin: Some(PathBuf::from("/opt/x/libargus_torch.so")), ..Default::default() };
        assert_eq!(candidates(&cfg), vec![PathBuf::from("/opt/x/libargus_torch.so")]);
        let found = candidates(&DetectorConfig::default());
        assert!(found.iter().all(|p| p.ends_with(FILE_NAME)), "{found:?}");
        assert!(found.last().unwrap().starts_with(env!("ARGUS_BUILD_PROFILE_DIR")));
    }
}
