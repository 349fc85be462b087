//! Errors of reading and writing ONNX files. Each names the file, tensor or node involved and,
//! where there is one, the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    #[error("`{path}` is not an ONNX model: {reason}. Check that the file is a complete .onnx export (not truncated, not another format)")]
    NotOnnx { path: PathBuf, reason: String },

    /// Counted on the wire before decoding, so the refusal costs no memory (onnx/limits.rs).
    #[error("`{path}` has more than {limit} nodes, far more than any image classifier; refused before decoding it, to bound memory and time. Check that it is the model you mean to repair")]
    TooManyNodes { path: PathBuf, limit: usize },

    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },

    #[error("external data of tensor `{tensor}` in `{model}`: {reason}")]
    ExternalData { model: PathBuf, tensor: String, reason: String },

    /// Saving found a tensor whose bytes live in a file the saver cannot know the folder of.
    #[error("cannot save `{path}`: tensor `{tensor}` still refers to external data at `{location}` instead of holding its bytes. Load the model with `load_model` (which reads external data into memory) before saving it")]
    UnresolvedExternal { path: PathBuf, tensor: String, location: String },

    /// Even with every movable tensor in the `.data` file the model is over protobuf's limit.
    #[error("cannot save `{path}`: the model would still take {bytes} bytes, over the {limit}-byte limit of protobuf, after moving every raw_data tensor to `{path}.data`. Tensors stored in typed fields (float_data, int64_data, ...) cannot be moved: re-export them as raw_data")]
    TooLarge { path: PathBuf, bytes: u64, limit: u64 },
}
