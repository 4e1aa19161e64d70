//! The plugin's C ABI exercised as `argus` calls it: errors come back as text, a real
//! TorchScript module runs and hands back its outputs, a bad input is refused.

use std::ffi::c_void;

use argus_torch::*;

extern "C" fn keep_error(ctx: *mut c_void, msg: *const u8, len: usize) {
    // SAFETY: ctx is the &mut String passed below; msg/len come from the plugin.
    unsafe { (*(ctx as *mut String)).push_str(std::str::from_utf8(std::slice::from_raw_parts(msg, len)).unwrap()) };
}

#[cfg(feature = "libtorch")]
extern "C" fn keep_output(ctx: *mut c_void, index: usize, shape: *const usize, ndim: usize, data: *const f32, len: usize) {
    // SAFETY: ctx is the &mut Vec passed below; shape/data come from the plugin.
    unsafe {
        let shape = std::slice::from_raw_parts(shape, ndim).to_vec();
        let data = std::slice::from_raw_parts(data, len).to_vec();
        (*(ctx as *mut Vec<(usize, Vec<usize>, Vec<f32>)>)).push((index, shape, data));
    }
}

fn load(path: &str) -> Result<*mut c_void, String> {
    let mut err = String::new();
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid pointers for the call's duration.
    let rc = unsafe { argus_torch_load(path.as_ptr() as *const _, path.len(), DEVICE_CPU, 1, &mut handle, keep_error, &mut err as *mut String as *mut c_void) };
    if rc == 0 { Ok(handle) } else { Err(err) }
}

#[test]
fn abi_version_is_exported() {
    assert_eq!(argus_torch_abi_version(), ABI_VERSION);
}

#[test]
fn a_missing_model_is_an_error_with_its_path() {
    let err = load("/nonexistent/model.pt").unwrap_err();
    assert!(err.contains("/nonexistent/model.pt") || err.contains("without libtorch"), "{err}");
}

#[cfg(feature = "libtorch")]
#[test]
fn nanodet_runs_and_hands_back_its_six_outputs() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/nanodet.torchscript.pt");
    let handle = load(model).expect("the committed NanoDet TorchScript loads");
    // SAFETY: a live handle.
    assert_eq!(unsafe { argus_torch_device(handle) }, -1, "DEVICE_CPU runs on the CPU");
    let input = vec![0.0f32; 3 * 416 * 416];
    let mut outputs: Vec<(usize, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut err = String::new();
    let dims = [1usize, 3, 416, 416];
    // SAFETY: valid pointers for the call's duration.
    let rc = unsafe {
        argus_torch_infer(
            handle,
            input.as_ptr(),
            input.len(),
            dims.as_ptr(),
            keep_output,
            &mut outputs as *mut _ as *mut c_void,
            keep_error,
            &mut err as *mut String as *mut c_void,
        )
    };
    assert_eq!(rc, 0, "{err}");
    assert_eq!(outputs.len(), 6, "cls and reg at three strides");
    for (i, (index, shape, data)) in outputs.iter().enumerate() {
        assert_eq!(*index, i);
        assert_eq!(shape.iter().product::<usize>(), data.len());
        assert_eq!(shape[0], 1);
    }
    // A shape that does not match the data is refused, not read past.
    let bad = [1usize, 3, 416, 417];
    err.clear();
    // SAFETY: valid pointers; the plugin must refuse before reading.
    let rc = unsafe {
        argus_torch_infer(
            handle,
            input.as_ptr(),
            input.len(),
            bad.as_ptr(),
            keep_output,
            &mut outputs as *mut _ as *mut c_void,
            keep_error,
            &mut err as *mut String as *mut c_void,
        )
    };
    assert_eq!(rc, -1);
    assert!(err.contains("does not match"), "{err}");
    // SAFETY: the handle is not used again.
    unsafe { argus_torch_free(handle) };
}
