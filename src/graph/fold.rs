//! Constant folding of the shape arithmetic exporters emit.
//!
//! TorchScript and dynamo exports compute Reshape targets and pads at run time
//! (Shape → Gather → Unsqueeze → Concat), even when every number in them is static. Block
//! detection would see those chains as structure, and lowering would run them on every
//! forward pass, so they are evaluated once here and replaced by initializers.
//!
//! What folds: Constant nodes (any type: they are constants already), and the integer shape
//! operators (Shape, Gather, Unsqueeze, Squeeze, Concat, Reshape, Cast, Slice, Add/Sub/Mul/Div,
//! ConstantOfShape, Range, Identity) whose value the inference pass computed completely. A
//! `Shape` of a tensor with a symbolic batch dimension has no complete value and stays; a
//! `Gather` of its static entries still folds. Float operators never fold: their inputs may be
//! trainable weights, and folding would freeze them into constants the lowering cannot train.

use std::collections::HashSet;

use super::infer::{is_int_type, Analysis};
use super::{Dim, Graph, GraphError, Node};
use crate::onnx::proto::{attribute_proto::AttributeType, tensor_proto::DataType};
use crate::onnx::{Tensor, TensorData};

/// Integer shape operators that fold when their value is fully known.
const SHAPE_OPS: &[&str] = &[
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Reshape",
    "Cast",
    "Slice",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "ConstantOfShape",
    "Range",
    "Identity",
];

impl Graph {
    /// Folds constant shape arithmetic into `initializers` and removes the folded nodes (and the
    /// shape operators left without consumers). Returns the number of nodes removed. Nodes that
    /// produce graph outputs are kept, so every output stays produced by a node. Shapes are
    /// unchanged by folding; inference runs here if it has not yet.
    pub fn fold_constants(&mut self) -> Result<usize, GraphError> {
        let analysis = self.analyse()?;
        let mut removed = vec![false; self.nodes.len()];
        let mut added: Vec<String> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.domain.is_empty() || node.outputs.iter().any(|o| self.is_output(o)) {
                continue;
            }
            let results = if node.op_type == "Constant" {
                constant_value(node)?.map(|t| vec![t])
            } else if SHAPE_OPS.contains(&node.op_type.as_str()) {
                computed(node, &analysis)
            } else {
                None
            };
            let Some(results) = results else { continue };
            for (name, tensor) in node.outputs.iter().zip(results) {
                if !name.is_empty() {
                    self.initializers.insert(name.clone(), tensor);
                    added.push(name.clone());
                }
            }
            removed[i] = true;
        }

        // Walk backwards: a shape operator whose outputs nobody reads any more is dead.
        let mut used: HashSet<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if removed[i] {
                continue;
            }
            let live = node.outputs.iter().any(|o| used.contains(o));
            let pure_shape_op =
                node.domain.is_empty() && (SHAPE_OPS.contains(&node.op_type.as_str()) || node.op_type == "Constant");
            if !live && pure_shape_op {
                removed[i] = true;
                continue;
            }
            used.extend(node.inputs.iter().filter(|t| !t.is_empty()).cloned());
        }

        let count = removed.iter().filter(|r| **r).count();
        if count == 0 {
            return Ok(0);
        }
        let mut k = 0;
        self.nodes.retain(|_| {
            k += 1;
            !removed[k - 1]
        });
        // Intermediate results of a folded chain are not needed as initializers.
        for name in added {
            if used.contains(&name) {
                if let Some(t) = self.initializers.get(&name) {
                    self.shapes.insert(name, t.dims.iter().map(|&d| Dim::Known(d)).collect());
                }
            } else {
                self.initializers.remove(&name);
            }
        }
        self.rebuild_index();
        // Shapes of tensors that no longer exist would only mislead.
        let inputs: HashSet<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
        let (index, initializers) = (&self.index, &self.initializers);
        self.shapes.retain(|t, _| {
            index.producer.contains_key(t) || initializers.contains_key(t) || inputs.contains(t.as_str())
        });
        Ok(count)
    }
}

/// The value of a Constant node as a tensor; None for kinds the tool does not compute with
/// (strings, sparse tensors), which then stay nodes.
fn constant_value(node: &Node) -> Result<Option<Tensor>, GraphError> {
    let a = &node.attributes;
    let numeric = |t: i32| {
        use DataType as D;
        is_int_type(t) || [D::Float, D::Double, D::Float16, D::Bfloat16].iter().any(|d| *d as i32 == t)
    };
    if let Some(p) =
        a.protos().iter().find(|p| p.name() == "value" && (p.r#type.is_none() || p.r#type() == AttributeType::Tensor))
    {
        match &p.t {
            Some(t) if numeric(t.data_type()) => return a.tensor("value"),
            _ => return Ok(None),
        }
    }
    Ok(if let Some(v) = a.float("value_float") {
        Some(Tensor::from_f32(vec![], vec![v]))
    } else if let Some(v) = a.floats("value_floats") {
        Some(Tensor::from_f32(vec![v.len() as i64], v.to_vec()))
    } else if let Some(v) = a.int("value_int") {
        Some(Tensor::from_i64(vec![], vec![v]))
    } else {
        a.ints("value_ints").map(|v| Tensor::from_i64(vec![v.len() as i64], v.to_vec()))
    })
}

/// The node's outputs as tensors when inference computed every element of them.
fn computed(node: &Node, analysis: &Analysis) -> Option<Vec<Tensor>> {
    if node.op_type == "Cast" {
        return cast_to_float(node, analysis).or_else(|| int_outputs(node, analysis));
    }
    int_outputs(node, analysis)
}

fn int_outputs(node: &Node, analysis: &Analysis) -> Option<Vec<Tensor>> {
    node.outputs
        .iter()
        .map(|out| {
            let value = analysis.values.get(out)?;
            let elem_type = analysis.types.get(out).copied().filter(|t| is_int_type(*t))?;
            let data: Vec<i64> = value.data.iter().map(|d| d.as_ref()?.known()).collect::<Option<_>>()?;
            Some(Tensor {
                dims: value.dims.iter().map(|&d| d as i64).collect(),
                elem_type: DataType::try_from(elem_type).ok()?,
                data: TensorData::Int(data),
            })
        })
        .collect()
}

/// Cast of a known integer value to a float type (e.g. a size used in a scale computation).
fn cast_to_float(node: &Node, analysis: &Analysis) -> Option<Vec<Tensor>> {
    use DataType as D;
    let to = DataType::try_from(node.attributes.int("to")? as i32).ok()?;
    if ![D::Float, D::Double, D::Float16, D::Bfloat16].contains(&to) {
        return None;
    }
    let value = analysis.values.get(node.inputs.first()?)?;
    let data: Vec<f32> = value.data.iter().map(|d| d.as_ref()?.known().map(|x| x as f32)).collect::<Option<_>>()?;
    Some(vec![Tensor {
        dims: value.dims.iter().map(|&d| d as i64).collect(),
        elem_type: to,
        data: TensorData::Float(data),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests_support::*;
    use crate::onnx::proto::ModelProto;
    use crate::onnx::tensor::{encode_f32, encode_i64};

    /// x.view(x.size(0), -1) as TorchScript exports it, axes and indices as Constant nodes.
    fn view_model(batch: i64) -> ModelProto {
        let nodes = vec![
            with(node("Constant", "zero", &[], &["zero"]), vec![tensor("value", encode_i64("", &[], &[0]))]),
            node("Shape", "shape", &["x"], &["s"]),
            node("Gather", "gather", &["s", "zero"], &["b"]),
            with(node("Constant", "axes", &[], &["axes"]), vec![tensor("value", encode_i64("", &[1], &[0]))]),
            node("Unsqueeze", "unsq", &["b", "axes"], &["bu"]),
            with(node("Constant", "m1", &[], &["minus_one"]), vec![tensor("value", encode_i64("", &[1], &[-1]))]),
            with(node("Concat", "cat", &["bu", "minus_one"], &["target"]), vec![int("axis", 0)]),
            node("Reshape", "view", &["x", "target"], &["y"]),
        ];
        model(13, nodes, &[("x", &[batch, 64, 1, 1])], &["y"])
    }

    #[test]
    fn a_static_shape_chain_folds_completely() {
        let mut g = Graph::from_model(&view_model(8)).unwrap();
        g.infer_shapes().unwrap();
        assert_eq!(g.fold_constants().unwrap(), 7);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].op_type, "Reshape");
        let target = &g.initializers["target"];
        assert_eq!((target.dims.clone(), target.to_i64(), target.elem_type), (vec![2], vec![8, -1], DataType::Int64));
        assert!(!g.initializers.contains_key("s") && !g.initializers.contains_key("bu"), "intermediates dropped");
        assert_eq!(g.producer("y"), Some(0));
        assert_eq!(g.consumers("target"), &[0]);
        assert_eq!(g.shapes["y"], [Dim::Known(8), Dim::Known(64)]);
        assert_eq!(g.fold_constants().unwrap(), 0, "folding is idempotent");
    }

    #[test]
    fn a_symbolic_batch_keeps_the_shape_read_but_folds_the_constants() {
        let mut g = Graph::from_model(&view_model(-1)).unwrap();
        assert_eq!(g.fold_constants().unwrap(), 3, "the three Constant nodes");
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]);
        assert_eq!(g.initializers["minus_one"].to_i64(), vec![-1]);
        g.infer_shapes().unwrap();
        assert_eq!(g.shapes["y"], [Dim::Symbolic("N".into()), Dim::Known(64)]);
    }

    #[test]
    fn static_entries_of_a_symbolic_shape_fold() {
        // Shape(x)[1] with x = [N, 64, 2, 1]: 64 is known although the Shape is not.
        let nodes = vec![
            node("Shape", "shape", &["x"], &["s"]),
            node("Gather", "gather", &["s", "one"], &["c"]),
            node("Mul", "mul", &["c", "two"], &["c2"]),
            node("Unsqueeze", "unsq", &["c2", "axes"], &["cu"]),
            with(node("Concat", "cat", &["minus_one", "cu"], &["target"]), vec![int("axis", 0)]),
            node("Reshape", "view", &["x", "target"], &["y"]),
        ];
        let mut m = model(13, nodes, &[("x", &[-1, 64, 2, 1])], &["y"]);
        m.graph.as_mut().unwrap().initializer = vec![
            encode_i64("one", &[], &[1]),
            encode_i64("two", &[], &[2]),
            encode_i64("axes", &[1], &[0]),
            encode_i64("minus_one", &[1], &[-1]),
        ];
        let mut g = Graph::from_model(&m).unwrap();
        g.infer_shapes().unwrap();
        assert_eq!(g.fold_constants().unwrap(), 5, "Gather, Mul, Unsqueeze, Concat, and the dead Shape");
        assert_eq!(g.initializers["target"].to_i64(), vec![-1, 128]);
        assert_eq!(g.nodes.iter().map(|n| n.op_type.as_str()).collect::<Vec<_>>(), ["Reshape"]);
        assert_eq!(g.shapes["y"], [Dim::Symbolic("N".into()), Dim::Known(128)]);
    }

    #[test]
    fn float_arithmetic_and_outputs_never_fold() {
        let nodes = vec![
            node("Mul", "scale", &["w", "s"], &["ws"]),
            node("Conv", "conv", &["x", "ws"], &["c"]),
            with(node("Constant", "out", &[], &["k"]), vec![tensor("value", encode_i64("", &[1], &[3]))]),
            with(node("Constant", "lo", &[], &["lo"]), vec![tensor("value", encode_f32("", &[], &[0.0]))]),
            node("Clip", "clip", &["c", "lo"], &["y"]),
        ];
        let mut m = model(13, nodes, &[("x", &[1, 1, 3, 3])], &["y", "k"]);
        m.graph.as_mut().unwrap().initializer =
            vec![encode_f32("w", &[1, 1, 1, 1], &[2.0]), encode_f32("s", &[1], &[0.5])];
        let mut g = Graph::from_model(&m).unwrap();
        assert_eq!(g.fold_constants().unwrap(), 1, "only the float Constant feeding Clip");
        assert_eq!(g.initializers["lo"].data, TensorData::Float(vec![0.0]));
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Mul", "Conv", "Constant", "Clip"]);
        assert!(!g.initializers.contains_key("ws"));
    }

    #[test]
    fn cast_and_range_and_constant_of_shape_fold() {
        let nodes = vec![
            node("Range", "range", &["a", "b", "c"], &["r"]),
            with(node("Cast", "cast", &["r"], &["rf"]), vec![int("to", 1)]),
            with(node("ConstantOfShape", "cos", &["shape"], &["z"]), vec![tensor("value", encode_i64("", &[1], &[0]))]),
            with(node("Cast", "cast32", &["z"], &["z32"]), vec![int("to", 6)]),
            node("Add", "add", &["x", "rf"], &["y"]),
            node("Unsqueeze", "u", &["x", "z32"], &["y2"]),
        ];
        let mut m = model(13, nodes, &[("x", &[4])], &["y", "y2"]);
        m.graph.as_mut().unwrap().initializer = vec![
            encode_i64("a", &[], &[1]),
            encode_i64("b", &[], &[8]),
            encode_i64("c", &[], &[2]),
            encode_i64("shape", &[1], &[1]),
        ];
        let mut g = Graph::from_model(&m).unwrap();
        assert_eq!(g.fold_constants().unwrap(), 4);
        assert_eq!(g.initializers["rf"].data, TensorData::Float(vec![1.0, 3.0, 5.0, 7.0]));
        assert_eq!(g.initializers["rf"].elem_type, DataType::Float);
        assert_eq!((g.initializers["z32"].to_i64(), g.initializers["z32"].elem_type), (vec![0], DataType::Int32));
    }
}
