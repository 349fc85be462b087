//! Errors of lowering an ONNX graph to libtorch and of running the lowered graph.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// Every operator of the model that cannot be lowered, in one error, so that a user sees the
    /// whole list at once instead of fixing one op at a time.
    #[error("{}", unsupported_message(.opset, .ops))]
    Unsupported {
        opset: i64,
        /// op type (with its domain when not ai.onnx) → names of the nodes using it
        ops: BTreeMap<String, Vec<String>>,
    },

    #[error("node `{node}` ({op_type}): {reason}")]
    Node { node: String, op_type: String, reason: String },

    #[error("tensor `{tensor}`: {reason}")]
    Tensor { tensor: String, reason: String },

    #[error("the model has {count} inputs ({names}); archrepair-onnx repairs single-input image classifiers")]
    InputCount { count: usize, names: String },

    #[error("the model has {count} outputs ({names}); archrepair-onnx repairs classifiers with one output (logits or probabilities)")]
    OutputCount { count: usize, names: String },

    #[error("running node `{node}` ({op_type}): {source}")]
    Run { node: String, op_type: String, source: tch::TchError },

    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

fn unsupported_message(opset: &i64, ops: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = format!(
        "the model (ai.onnx opset {opset}) uses {} operator type(s) that archrepair-onnx cannot lower to a trainable graph:",
        ops.len()
    );
    for (op, nodes) in ops {
        let shown: Vec<&str> = nodes.iter().take(5).map(String::as_str).collect();
        let more = if nodes.len() > 5 { format!(" and {} more", nodes.len() - 5) } else { String::new() };
        text.push_str(&format!("\n  - {op}: {} node(s): {}{more}", nodes.len(), shown.join(", ")));
    }
    text.push_str(&format!(
        "\nSupported operators: {}. Re-export the model with these operators or open an issue with the model attached.",
        super::ops::SUPPORTED_OPS.join(", ")
    ));
    text
}
