//! Paths shared by the integration tests: the repository, its venv and the fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the venv that scripts/setup.sh creates (torch, onnxruntime, onnx).
pub fn venv_python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// The folder of the `onnx` package inside the venv.
pub fn onnx_package_dir() -> PathBuf {
    let lib = repo_root().join(".venv/lib");
    let version_dir = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh first", lib.display()))
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))
        .unwrap_or_else(|| panic!("no python* folder in {}", lib.display()));
    version_dir.path().join("site-packages/onnx")
}

/// The `light_*.onnx` models shipped in the onnx wheel (made by others, opset 9).
pub fn light_models() -> Vec<PathBuf> {
    onnx_files_in(&onnx_package_dir().join("backend/test/data/light"))
}

/// Every fixture model under fixtures/models (see fixtures/generate.py).
pub fn fixture_models() -> Vec<PathBuf> {
    onnx_files_in(&repo_root().join("fixtures/models"))
}

/// The `.onnx` files of a folder, sorted; panics when there are none, so that a test over them
/// never passes vacuously.
fn onnx_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut models: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    models.sort();
    assert!(!models.is_empty(), "no .onnx files in {}", dir.display());
    models
}

/// A copy of `model` in `dir` whose input and output fix the batch size to `batch`.
pub fn with_fixed_batch(model: &Path, dir: &Path, batch: i64) -> PathBuf {
    use archrepair_onnx::onnx::proto::{tensor_shape_proto::dimension, type_proto};
    let mut proto = archrepair_onnx::onnx::load_model(model).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    for vi in graph.input.iter_mut().take(1).chain(graph.output.iter_mut()) {
        let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) else { panic!("tensor input") };
        t.shape.as_mut().unwrap().dim[0].value = Some(dimension::Value::DimValue(batch));
    }
    let fixed = dir.join(format!("batch{batch}.onnx"));
    archrepair_onnx::onnx::save_model(&proto, &fixed).unwrap();
    fixed
}
