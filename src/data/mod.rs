//! Datasets and the model-input pipeline.
//!
//! Readers (IDX, CIFAR-10 binary, NPY/NPZ, image folders) all produce one [`Dataset`]: labelled
//! images of one size, kept as stored (bytes or floats). [`open`] picks the reader from a
//! [`DataSource`]; [`InputPlan`] turns images into the batches a model expects. Nothing here
//! depends on a tensor library, so that the readers can be tested and reused on their own.

mod arrays;
pub mod cifar;
pub mod corrupt;
pub mod dataset;
pub mod folder;
pub mod idx;
pub mod image;
pub mod input;
mod layout;
pub mod npy;
pub mod source;

pub use dataset::{Dataset, PixelData};
pub use image::Image;
pub use input::{Fit, InputPlan, InputSpec, ModelInput};
pub use layout::Layout;
pub use npy::{write_atomically, write_npy, NpyElement};
pub use source::{detect, open, DataSource, Format, Split};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("`{path}`: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("no dataset found in `{path}`: {reason}")]
    NotFound { path: PathBuf, reason: String },
    /// The data cannot be fed to the model as the input section says (checked before any work).
    #[error("{message}")]
    Mismatch {
        /// The model input concerned.
        input: String,
        message: String,
    },
    /// A value of the `input` section (or its command-line flag) is invalid in itself.
    #[error("input.{key}: {reason}")]
    InvalidInput { key: &'static str, reason: String },
}

impl DataError {
    pub(crate) fn format(path: &std::path::Path, reason: impl Into<String>) -> Self {
        DataError::Format { path: path.to_path_buf(), reason: reason.into() }
    }

    pub(crate) fn read(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Read { path: path.to_path_buf(), source }
    }
}
