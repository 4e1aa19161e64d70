//! Link-time details for the optional system libraries.
//!
//! - `torch`: bake an rpath to libtorch's directory into every binary and test, so they
//!   run without LD_LIBRARY_PATH (torch-sys exports the directory as DEP_TCH_LIBTORCH_LIB).
//! - `onnx`: remember where scripts/setup put libonnxruntime.so, as the last fallback
//!   when neither the config nor ORT_DYLIB_PATH names one.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-env=ARGUS_BUILD_ORT_DYLIB={manifest}/.deps/onnxruntime/libonnxruntime.so");
    println!("cargo:rustc-env=ARGUS_BUILD_REPO_DIR={manifest}");
}
