//! archrepair-onnx: repairs deployed ONNX image classifiers with ArchRepair (block-level
//! architecture search and weight training). See `../shared/DESIGN.md` for the pipeline.

pub mod baselines;
pub mod commands;
pub mod data;
pub mod detect;
pub mod export;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod interrupt;
pub mod localize;
pub mod lower;
pub mod model;
pub mod onnx;
pub mod report;
pub mod search;
pub mod spec;
pub mod validate;

pub use error::Error;
