//! The library's top-level error: one variant per stage, each carrying the file it concerns.

use std::path::PathBuf;

use crate::data::DataError;
use crate::graph::GraphError;
use crate::lower::LowerError;
use crate::onnx::OnnxError;
use crate::spec::SpecError;
use crate::validate::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Onnx(#[from] OnnxError),

    #[error("`{path}`: {source}")]
    Graph { path: PathBuf, source: GraphError },

    #[error("`{path}`: {source}")]
    Lower { path: PathBuf, source: LowerError },

    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    #[error(transparent)]
    Data(#[from] DataError),

    #[error(transparent)]
    Spec(#[from] SpecError),

    /// Model and data do not fit together (shape, class count).
    #[error("{0}")]
    Mismatch(String),

    /// Ctrl-C or SIGTERM (interrupt.rs): the run stopped between two steps.
    #[error("interrupted: stopped between two steps; finished stages are kept in the dump folder (the main command continues with --resume)")]
    Interrupted,

    /// A libtorch operation outside the lowered graph failed.
    #[error("{context}: {source}")]
    Torch { context: &'static str, source: tch::TchError },
}

impl Error {
    /// Wraps a libtorch error of the step named by `context` (for `map_err`).
    pub(crate) fn torch(context: &'static str) -> impl Fn(tch::TchError) -> Error {
        move |source| Error::Torch { context, source }
    }
}
