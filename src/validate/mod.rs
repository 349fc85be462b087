//! Running models in independent runtimes (onnxruntime and tract) to check our results.

pub mod options;
pub mod ort_runner;
pub mod tract_runner;

pub use ort_runner::{init_onnxruntime, onnxruntime_library, OrtModel, RuntimeError};
