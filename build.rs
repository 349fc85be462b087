//! Build script: generates the ONNX protobuf types from `schemas/onnx.proto` without `protoc`
//! (protox parses the schema in pure Rust), and makes the binaries find their native libraries
//! without LD_LIBRARY_PATH (rpath to libtorch, default path of libonnxruntime).

use std::path::{Path, PathBuf};

fn main() {
    generate_onnx_types();
    link_libtorch_with_rpath();
    record_default_onnxruntime_path();
}

fn generate_onnx_types() {
    println!("cargo:rerun-if-changed=schemas/onnx.proto");
    let descriptors = protox::compile(["schemas/onnx.proto"], ["schemas"])
        .unwrap_or_else(|e| panic!("schemas/onnx.proto does not parse: {e}"));
    prost_build::Config::new()
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating Rust types from schemas/onnx.proto failed: {e}"));
}

/// torch-sys links libtorch dynamically but only its own C++ shim gets an rpath; the final
/// binaries need one too. `--no-as-needed` keeps libtorch_cuda in DT_NEEDED although no symbol
/// of it is referenced directly, so that a CUDA device is found when the machine has one.
fn link_libtorch_with_rpath() {
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report the libtorch folder: no rpath set");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// The onnxruntime shared library is loaded at run time (ort's `load-dynamic`). Its default
/// location is the one scripts/setup.sh installs; ORT_DYLIB_PATH overrides it at run time.
fn record_default_onnxruntime_path() {
    println!("cargo:rerun-if-env-changed=ARCHREPAIR_ORT_DYLIB");
    let path = std::env::var("ARCHREPAIR_ORT_DYLIB")
        .map(PathBuf::from)
        .unwrap_or_else(|_| find_venv_onnxruntime().unwrap_or_default());
    println!("cargo:rustc-env=ARCHREPAIR_DEFAULT_ORT_DYLIB={}", path.display());
}

fn find_venv_onnxruntime() -> Option<PathBuf> {
    let venv_lib = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?).join(".venv/lib");
    for entry in std::fs::read_dir(venv_lib).ok()?.flatten() {
        let candidate = entry
            .path()
            .join("site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0");
        if candidate.exists() {
            return Some(candidate);
        }
    }
    None
}
