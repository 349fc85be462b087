//! Errors of building and analysing the graph IR.
//!
//! The model file is untrusted input, so every structural problem (dangling tensor, cycle, two
//! producers, inconsistent shapes) ends here rather than in a panic. Each message names the node
//! (its name and op type) or the tensor involved and says what to do about it, because the user
//! usually did not write the model and needs to know where to look.

use crate::onnx::OnnxError;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("the model has no graph: it is not a complete ONNX model; re-export it")]
    NoGraph,

    #[error("the model imports no ai.onnx operator set, but node `{node}` ({op_type}) is an ai.onnx operator; add an opset_import entry for the default domain (re-exporting the model does this)")]
    NoOpset { node: String, op_type: String },

    #[error("initializer `{name}` cannot be decoded: {source}. The model file is damaged or incomplete: re-export it (if its weights are in an external data file, keep that file beside the model)")]
    Initializer {
        name: String,
        #[source]
        source: OnnxError,
    },

    #[error("node `{node}` ({op_type}) reads tensor `{tensor}`, which no node produces and which is neither a graph input nor an initializer. The model is incomplete: re-export it, or add `{tensor}` as a graph input or initializer")]
    MissingInput { node: String, op_type: String, tensor: String },

    #[error("graph output `{tensor}` is produced by no node and is neither a graph input nor an initializer. The model is incomplete: re-export it, or remove `{tensor}` from the graph outputs")]
    MissingOutput { tensor: String },

    #[error("the graph has a cycle: node `{node}` ({op_type}) waits for tensor `{tensor}`, which is only produced downstream of it (nodes on cycles: {members}). ONNX graphs must be acyclic; re-export the model")]
    Cycle { node: String, op_type: String, tensor: String, members: String },

    #[error("tensor `{tensor}` is produced by both node `{first}` ({first_op}) and node `{second}` ({second_op}); every tensor needs exactly one producer. Rename one of the outputs or re-export the model")]
    DuplicateOutput { tensor: String, first: String, first_op: String, second: String, second_op: String },

    #[error("node `{node}` ({op_type}) writes tensor `{tensor}`, which is also a graph {what}; every tensor needs exactly one producer. Rename the node output or re-export the model")]
    OutputShadows { node: String, op_type: String, tensor: String, what: &'static str },

    #[error("node `{node}` ({op_type}): attribute `{attribute}` is invalid: {reason}. Re-export the model")]
    Attribute { node: String, op_type: String, attribute: String, reason: String },

    #[error("node `{node}` ({op_type}): {reason}. The model is inconsistent: check the exporter's output (shapes of its inputs, its attributes) or re-export it")]
    Shape { node: String, op_type: String, reason: String },

    #[error("tensor `{tensor}`: node `{node}` ({op_type}) produces shape {inferred}, but the model declares {declared}. Fix or remove the model's value_info/output entry for `{tensor}`, or re-export the model")]
    DeclaredShape { tensor: String, node: String, op_type: String, inferred: String, declared: String },
}
