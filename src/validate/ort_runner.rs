//! onnxruntime, loaded at run time from `libonnxruntime.so.1.32.0` (ort's `load-dynamic`).
//!
//! Accuracy of a repaired model is measured by onnxruntime, never by our own interpreter, so
//! this runner is the reference the lowered graph is compared against.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::value::Tensor as OrtTensor;

/// The onnxruntime version whose C API the `ort` crate is built against.
pub const ONNXRUNTIME_VERSION: &str = "1.32.0";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot load onnxruntime {ONNXRUNTIME_VERSION} from `{path}`: {reason}. Run scripts/setup.sh (it installs onnxruntime=={ONNXRUNTIME_VERSION} into .venv) or set ORT_DYLIB_PATH to libonnxruntime.so.{ONNXRUNTIME_VERSION}")]
    Library { path: PathBuf, reason: String },

    #[error("onnxruntime rejects `{model}`: {reason}")]
    Session { model: String, reason: String },

    #[error("onnxruntime failed running `{model}`: {reason}")]
    Run { model: String, reason: String },

    #[error("tract cannot run `{model}`: {reason}")]
    Tract { model: String, reason: String },
}

/// Path of the onnxruntime shared library: `ORT_DYLIB_PATH` if set, else the one found in the
/// repository's venv when the binary was built.
pub fn onnxruntime_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("ARCHREPAIR_DEFAULT_ORT_DYLIB")))
}

/// Loads the library and creates the process-wide environment once; later calls reuse it (or
/// repeat the first failure).
fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    static ENV: OnceLock<Result<ort::environment::Environment, RuntimeError>> = OnceLock::new();
    let result = ENV.get_or_init(|| {
        let path = onnxruntime_library();
        let fail = |reason: String| RuntimeError::Library { path: path.clone(), reason };
        if !path.is_file() {
            return Err(fail("no such file".into()));
        }
        ort::init_from(&path)
            .map_err(|e| fail(e.to_string()))?
            .with_name("archrepair-onnx")
            .build()
            .map_err(|e| fail(e.to_string()))
    });
    result.as_ref().map_err(|e| match e {
        RuntimeError::Library { path, reason } => {
            RuntimeError::Library { path: path.clone(), reason: reason.clone() }
        }
        other => RuntimeError::Library { path: onnxruntime_library(), reason: other.to_string() },
    })
}

/// Loads onnxruntime eagerly so that a missing or wrong library is reported at start-up.
pub fn init_onnxruntime() -> Result<(), RuntimeError> {
    environment().map(|_| ())
}

/// A model loaded in onnxruntime, with one float input and float outputs.
pub struct OrtModel {
    session: Session,
    label: String,
    input_name: String,
}

impl OrtModel {
    /// Loads a model file. `threads` = intra-op threads (0: onnxruntime's default).
    pub fn from_file(path: &Path, threads: usize) -> Result<Self, RuntimeError> {
        let label = path.display().to_string();
        let mut builder = Self::builder(&label, threads)?;
        let session = builder
            .commit_from_file(path)
            .map_err(|e| RuntimeError::Session { model: label.clone(), reason: e.to_string() })?;
        Self::with_session(session, label)
    }

    /// Loads a serialized model held in memory; `label` names it in errors.
    pub fn from_bytes(bytes: &[u8], label: &str, threads: usize) -> Result<Self, RuntimeError> {
        let mut builder = Self::builder(label, threads)?;
        let session = builder
            .commit_from_memory(bytes)
            .map_err(|e| RuntimeError::Session { model: label.to_string(), reason: e.to_string() })?;
        Self::with_session(session, label.to_string())
    }

    fn builder(label: &str, threads: usize) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
        let env = environment()?;
        let fail = |reason: String| RuntimeError::Session { model: label.to_string(), reason };
        let builder = Session::builder(env).map_err(|e| fail(e.to_string()))?;
        if threads > 0 {
            builder.with_intra_threads(threads).map_err(|e| fail(e.to_string()))
        } else {
            Ok(builder)
        }
    }

    fn with_session(session: Session, label: String) -> Result<Self, RuntimeError> {
        let input_name = match session.inputs() {
            [only] => only.name().to_string(),
            inputs => {
                return Err(RuntimeError::Session {
                    model: label,
                    reason: format!("expected one input, the model has {}", inputs.len()),
                })
            }
        };
        Ok(OrtModel { session, label, input_name })
    }

    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// Runs the model on one f32 batch and returns the first output as (shape, values).
    pub fn run(&mut self, shape: &[i64], values: Vec<f32>) -> Result<(Vec<i64>, Vec<f32>), RuntimeError> {
        let fail = |reason: String| RuntimeError::Run { model: self.label.clone(), reason };
        let input = OrtTensor::from_array((shape.to_vec(), values)).map_err(|e| fail(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(|e| fail(e.to_string()))?;
        let (out_shape, out_values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(format!("first output is not a float tensor: {e}")))?;
        Ok((out_shape.to_vec(), out_values.to_vec()))
    }
}
