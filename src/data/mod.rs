//! Datasets, streamed as plain (shape, Vec<f32>) batches so that no tensor library's types leak
//! into the readers.

pub mod corrupt;
pub mod idx;
pub mod image;

pub use idx::{load_idx_split, LabeledImages};
pub use image::Image;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("`{path}`: {reason}")]
    Format { path: std::path::PathBuf, reason: String },
    #[error("no dataset found in `{path}`: {reason}")]
    NotFound { path: std::path::PathBuf, reason: String },
}
