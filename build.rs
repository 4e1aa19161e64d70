//! Link-time details for the optional system libraries.
//!
//! - `torch`: remember this build's target folder (`target/<profile>`), where cargo puts
//!   the libtorch plugin (crates/argus-torch), as the last place to look for it.
//! - `onnx`: remember where scripts/setup put libonnxruntime.so, as the last fallback
//!   when neither the config nor ORT_DYLIB_PATH names one.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    // OUT_DIR is target/<profile>/build/argus-<hash>/out.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let profile_dir = out.ancestors().nth(3).map(|p| p.display().to_string()).unwrap_or_default();
    println!("cargo:rustc-env=ARGUS_BUILD_PROFILE_DIR={profile_dir}");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-env=ARGUS_BUILD_ORT_DYLIB={manifest}/.deps/onnxruntime/libonnxruntime.so");
    println!("cargo:rustc-env=ARGUS_BUILD_REPO_DIR={manifest}");
}
