//! The graph IR every stage after `load` works on: nodes in topological order, decoded
//! initializers, true inputs and outputs, per-tensor shapes, and producer/consumer maps.
//!
//! The protobuf is kept separately (for lossless saving); this IR is the analysed view of it.
//! Why a separate IR: block detection, lowering and export all need "who produces / who reads
//! this tensor", a guaranteed topological order, stable non-empty node names (errors and variable
//! names refer to them), and shapes the exporter did not always write down. Building that once
//! here keeps each later stage to its own job.
//!
//! Files: [`from_model`](Graph::from_model) builds it (`from_model.rs`), `topo.rs` orders the
//! nodes, `attributes.rs` reads attributes, `infer.rs` + `rules/` + `values.rs` + `dims.rs`
//! infer shapes, `fold.rs` folds exporter shape arithmetic, `array.rs` holds the small
//! array kernels both share.

pub(crate) mod array;
mod attributes;
mod dims;
mod error;
mod fold;
pub mod from_model;
mod infer;
pub mod patch;
mod rules;
mod topo;
mod values;

use std::collections::HashMap;

pub use attributes::Attributes;
pub use error::GraphError;

use crate::onnx::Tensor;

/// A tensor shape; every dimension either a number or a named symbol (e.g. the batch "N").
pub type Shape = Vec<Dim>;

/// One dimension of a [`Shape`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    /// A named dimension (ONNX `dim_param`); two equal names denote the same size.
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => write!(f, "{s}"),
        }
    }
}

/// Formats a shape as `[N, 3, 32, 32]` for messages.
pub fn shape_string(shape: &[Dim]) -> String {
    format!("[{}]", shape.iter().map(Dim::to_string).collect::<Vec<_>>().join(", "))
}

/// A graph input or output as the model declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    /// A `TensorProto.DataType` value (0 when the model does not say, or for non-tensor types).
    pub elem_type: i32,
    /// None when the model declares no shape. A dimension the model leaves anonymous becomes a
    /// symbol of its own (`<tensor>_dim<axis>`) so that it still propagates.
    pub shape: Option<Shape>,
}

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique and non-empty (see [`Graph::from_model`]).
    pub name: String,
    pub op_type: String,
    /// "" for ai.onnx ("ai.onnx" is normalised to "").
    pub domain: String,
    /// "" marks an omitted optional input.
    pub inputs: Vec<String>,
    /// "" marks an omitted optional output.
    pub outputs: Vec<String>,
    pub attributes: Attributes,
}

/// The analysed graph. See the module documentation.
#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    /// Topologically sorted.
    pub nodes: Vec<Node>,
    /// Decoded constants: the graph initializers, plus what [`Graph::fold_constants`] folds.
    /// Constant nodes stay nodes until folding.
    pub initializers: HashMap<String, Tensor>,
    /// True inputs only: graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Domain ("" for ai.onnx) → opset version.
    pub opsets: HashMap<String, i64>,
    /// Per tensor name, filled by [`Graph::infer_shapes`]; only fully determined shapes.
    pub shapes: HashMap<String, Shape>,
    index: Index,
    /// What the model's inputs, outputs and value_info say, for inference to start from and be
    /// checked against.
    declared: Declared,
}

/// Declared tensor types and shapes (a dimension the model leaves anonymous is None).
#[derive(Debug, Clone, Default)]
struct Declared {
    shapes: HashMap<String, Vec<Option<Dim>>>,
    elem_types: HashMap<String, i32>,
}

/// Producer and consumer maps, kept in sync with `nodes` by [`Graph::rebuild_index`].
#[derive(Debug, Clone, Default)]
struct Index {
    producer: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
}

impl Graph {
    /// The index of the node producing `tensor` (None for inputs, initializers, unknown names).
    pub fn producer(&self, tensor: &str) -> Option<usize> {
        self.index.producer.get(tensor).copied()
    }

    /// Indices of the nodes reading `tensor`, ascending, each once.
    pub fn consumers(&self, tensor: &str) -> &[usize] {
        self.index.consumers.get(tensor).map_or(&[], Vec::as_slice)
    }

    /// The ai.onnx opset version (0 when the model imports none, which [`Graph::from_model`]
    /// only allows when no node uses ai.onnx).
    pub fn opset(&self) -> i64 {
        self.opsets.get("").copied().unwrap_or(0)
    }

    /// Recomputes the producer/consumer maps; call after editing `nodes` directly.
    pub fn rebuild_index(&mut self) {
        let mut index = Index::default();
        for (i, node) in self.nodes.iter().enumerate() {
            for out in node.outputs.iter().filter(|o| !o.is_empty()) {
                index.producer.insert(out.clone(), i);
            }
            for input in node.inputs.iter().filter(|t| !t.is_empty()) {
                let list = index.consumers.entry(input.clone()).or_default();
                // Nodes are visited in order, so a repeat can only be the last entry.
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        self.index = index;
    }

    /// The node called `name`, if any.
    pub fn node_by_name(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Whether `tensor` is a graph output.
    pub fn is_output(&self, tensor: &str) -> bool {
        self.outputs.iter().any(|o| o.name == tensor)
    }
}

/// Builders of small models for the unit tests of this module.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::onnx::proto::{
        attribute_proto::AttributeType, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto,
        AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        ValueInfoProto,
    };

    /// A float tensor value_info; -1 in `dims` is the symbol "N".
    pub fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| Dimension {
                value: Some(if d < 0 { dimension::Value::DimParam("N".into()) } else { dimension::Value::DimValue(d) }),
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn with(mut n: NodeProto, attrs: Vec<AttributeProto>) -> NodeProto {
        n.attribute.extend(attrs);
        n
    }

    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(v),
            ..Default::default()
        }
    }

    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::String as i32),
            s: Some(v.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    pub fn tensor(name: &str, t: crate::onnx::proto::TensorProto) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Tensor as i32),
            t: Some(t),
            ..Default::default()
        }
    }

    /// A model with float inputs of the given dims and outputs without declared shapes.
    pub fn model(opset: i64, nodes: Vec<NodeProto>, inputs: &[(&str, &[i64])], outputs: &[&str]) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
            graph: Some(GraphProto {
                name: Some("g".into()),
                node: nodes,
                input: inputs.iter().map(|(n, d)| vi(n, d)).collect(),
                output: outputs
                    .iter()
                    .map(|n| ValueInfoProto { name: Some(n.to_string()), ..Default::default() })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
