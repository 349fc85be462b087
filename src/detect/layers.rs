//! What detection needs to know about single nodes: convolution geometry, which operators are
//! activations, and the per-node cost (parameters, FLOPs).

use crate::graph::{Dim, Graph, Node};
use std::collections::HashMap;

use crate::lower::Role;

/// Element-wise activations a block may end with or contain between convolutions.
const ACTIVATIONS: &[&str] = &["Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Elu", "Selu", "Tanh"];

pub(super) fn is_activation(node: &Node) -> bool {
    node.domain.is_empty() && ACTIVATIONS.contains(&node.op_type.as_str())
}

/// Geometry of a Conv node, read from its weight (shape `[C_out, C_in / group, k...]`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConvShape {
    pub kernel: Vec<i64>,
    pub group: i64,
    pub in_channels: i64,
    pub out_channels: i64,
    pub strided: bool,
}

impl ConvShape {
    pub fn of(graph: &Graph, node: &Node) -> Option<ConvShape> {
        if node.op_type != "Conv" || !node.domain.is_empty() {
            return None;
        }
        let weight = known_dims(graph, node.inputs.get(1)?)?;
        let group = node.attributes.int("group").unwrap_or(1).max(1);
        Some(ConvShape {
            kernel: weight.get(2..)?.to_vec(),
            group,
            in_channels: weight.get(1)?.checked_mul(group)?,
            out_channels: *weight.first()?,
            strided: node.attributes.ints("strides").is_some_and(|s| s.iter().any(|&s| s > 1)),
        })
    }

    pub fn is_pointwise(&self) -> bool {
        self.group == 1 && self.kernel.iter().all(|&k| k == 1)
    }

    /// One filter per input channel (MobileNet's depthwise convolution).
    pub fn is_depthwise(&self) -> bool {
        self.group > 1 && self.group == self.in_channels
    }

    pub fn is_spatial(&self) -> bool {
        self.kernel.iter().any(|&k| k > 1)
    }
}

/// Dims of a tensor when all are known: a constant's dims, or its inferred shape.
fn known_dims(graph: &Graph, tensor: &str) -> Option<Vec<i64>> {
    if let Some(t) = graph.initializers.get(tensor) {
        return Some(t.dims.clone());
    }
    graph.shapes.get(tensor)?.iter().map(Dim::known).collect()
}

/// The shape of one example: `tensor`'s inferred shape without its batch axis, when known.
pub(super) fn example_shape(graph: &Graph, tensor: &str) -> Option<Vec<i64>> {
    let shape = graph.shapes.get(tensor)?;
    shape.get(1..)?.iter().map(Dim::known).collect()
}

/// The trainable constants a node reads (what PyTorch counts as parameters: weights and biases,
/// not BatchNormalization running statistics), with their element counts.
pub(super) fn parameters<'a>(graph: &'a Graph, roles: &'a HashMap<String, Role>, node: &'a Node) -> impl Iterator<Item = (&'a str, usize)> + 'a {
    node.inputs.iter().filter_map(move |name| {
        let elements = known_dims(graph, name).and_then(|d| crate::onnx::tensor::element_count(&d)).unwrap_or(0);
        (roles.get(name) == Some(&Role::Trainable)).then_some((name.as_str(), elements))
    })
}

/// FLOPs of one node for one example, multiply-adds counted as 2; None when a shape is unknown
/// (or the count overflows i64: dims from a hostile file).
/// Conv, Gemm and MatMul dominate; other operators count one FLOP per output element (pools:
/// one per window element).
pub(super) fn node_flops(graph: &Graph, node: &Node) -> Option<u64> {
    let product = |dims: &[i64]| dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d));
    let out = product(&example_shape(graph, node.outputs.first()?)?)?;
    let flops = match node.op_type.as_str() {
        "Conv" => {
            let conv = ConvShape::of(graph, node)?;
            let per_output = conv.in_channels.checked_mul(2)?.checked_div(conv.group)?.checked_mul(product(&conv.kernel)?)?;
            let bias = i64::from(node.inputs.get(2).is_some_and(|b| !b.is_empty()));
            out.checked_mul(per_output.checked_add(bias)?)?
        }
        "Gemm" | "MatMul" => {
            let a = known_dims(graph, node.inputs.first()?).or_else(|| example_shape(graph, node.inputs.first()?))?;
            let transposed = node.op_type == "Gemm" && node.attributes.int("transA") == Some(1);
            let inner = if transposed { *a.get(a.len().checked_sub(2)?)? } else { *a.last()? };
            out.checked_mul(2)?.checked_mul(inner)?
        }
        "MaxPool" | "AveragePool" => out.checked_mul(node.attributes.ints("kernel_shape").map_or(Some(1), product)?)?,
        "GlobalAveragePool" | "GlobalMaxPool" | "ReduceMean" => product(&example_shape(graph, node.inputs.first()?)?)?,
        _ => out,
    };
    u64::try_from(flops).ok()
}
