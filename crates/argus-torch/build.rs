//! Bakes an rpath to libtorch's directory into the plugin, so that loading it finds
//! libtorch without LD_LIBRARY_PATH (torch-sys exports the directory as
//! DEP_TCH_LIBTORCH_LIB).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
