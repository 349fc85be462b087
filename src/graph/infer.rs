//! The shape inference pass: walks the sorted nodes once, applying the per-op rules of
//! `rules.rs`, propagating small integer values (`values.rs`) so that Reshape targets built from
//! `Shape` at run time are understood, and reconciling the result with what the model declares.
//!
//! Why our own inference instead of trusting the model: TorchScript exports declare no
//! intermediate shapes at all, and block detection, the search space (same input/output shape
//! and stride) and the lowering all need them. Why best-effort: an operator we do not know must
//! not stop a repair that never touches it, so its outputs are simply unknown.

use std::collections::HashMap;

use super::array::{Array, MAX_ELEMENTS};
use super::rules::{self, Ctx};
use super::{shape_string, values, Dim, Graph, GraphError, Node, Shape};
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::TensorData;

/// A small integer tensor whose elements may be symbolic or unknown (None): the value of a
/// shape tensor such as `Shape(x)` = [N, 64, 1, 1].
pub(crate) type Value = Array<Option<Dim>>;

/// Everything one inference pass learns.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub shapes: HashMap<String, Shape>,
    /// Element type (a `TensorProto.DataType` value) per tensor, where known.
    pub types: HashMap<String, i32>,
    /// Values of small integer tensors, where at least their layout is known.
    pub values: HashMap<String, Value>,
}

/// Whether `elem_type` is an integer or boolean type (the tensors shape arithmetic works on).
pub(crate) fn is_int_type(elem_type: i32) -> bool {
    use DataType as D;
    [D::Int64, D::Int32, D::Int16, D::Int8, D::Uint64, D::Uint32, D::Uint16, D::Uint8, D::Bool]
        .iter()
        .any(|t| *t as i32 == elem_type)
}

impl Graph {
    /// Infers the shape of every tensor it can and stores them in `shapes` (replacing what was
    /// there). Unknown operators are skipped; an inconsistency (channel mismatch, broadcast of
    /// 3 against 4, a declared shape contradicting the inferred one) is an error naming the node.
    pub fn infer_shapes(&mut self) -> Result<(), GraphError> {
        self.shapes = self.analyse()?.shapes;
        Ok(())
    }

    /// Shapes known before any inference: fully declared ones (inputs, outputs, value_info) and
    /// those of the initializers.
    pub(super) fn seed_shapes(&self) -> HashMap<String, Shape> {
        let mut shapes: HashMap<String, Shape> = HashMap::new();
        for (name, dims) in &self.declared.shapes {
            if let Some(full) = dims.iter().cloned().collect::<Option<Shape>>() {
                shapes.insert(name.clone(), full);
            }
        }
        for v in &self.inputs {
            if let Some(s) = &v.shape {
                shapes.insert(v.name.clone(), s.clone());
            }
        }
        for (name, t) in &self.initializers {
            shapes.insert(name.clone(), t.dims.iter().map(|&d| Dim::Known(d)).collect());
        }
        shapes
    }

    /// One inference pass over the graph as it is now.
    pub(crate) fn analyse(&self) -> Result<Analysis, GraphError> {
        let mut a = Analysis::default();
        for v in &self.inputs {
            if let Some(s) = &v.shape {
                a.shapes.insert(v.name.clone(), s.clone());
            }
            if v.elem_type != 0 {
                a.types.insert(v.name.clone(), v.elem_type);
            }
        }
        for (name, t) in &self.initializers {
            a.shapes.insert(name.clone(), t.dims.iter().map(|&d| Dim::Known(d)).collect());
            a.types.insert(name.clone(), t.elem_type as i32);
            if let (TensorData::Int(v), Ok(dims)) = (&t.data, super::array::to_sizes(&t.dims)) {
                if v.len() <= MAX_ELEMENTS {
                    if let Ok(value) = Array::new(dims, v.iter().map(|&x| Some(Dim::Known(x))).collect()) {
                        a.values.insert(name.clone(), value);
                    }
                }
            }
        }
        let opset = self.opset();
        for node in &self.nodes {
            self.infer_node(node, opset, &mut a)?;
        }
        Ok(a)
    }

    fn infer_node(&self, node: &Node, opset: i64, a: &mut Analysis) -> Result<(), GraphError> {
        let shape_error =
            |reason: String| GraphError::Shape { node: node.name.clone(), op_type: node.op_type.clone(), reason };
        fn get(t: &str) -> Option<&str> {
            (!t.is_empty()).then_some(t)
        }
        let ctx = Ctx {
            node,
            opset,
            shapes: node.inputs.iter().map(|t| get(t).and_then(|t| a.shapes.get(t))).collect(),
            values: node.inputs.iter().map(|t| get(t).and_then(|t| a.values.get(t))).collect(),
            types: node.inputs.iter().map(|t| get(t).and_then(|t| a.types.get(t)).copied()).collect(),
        };
        let known_op = node.domain.is_empty();
        let mut shapes =
            if known_op { rules::infer(&ctx).map_err(shape_error)? } else { vec![None; node.outputs.len()] };
        shapes.resize(node.outputs.len(), None);
        let types = if known_op { rules::output_types(&ctx) } else { vec![None; node.outputs.len()] };
        let mut outs_values = if known_op { values::propagate(&ctx, &shapes, &types) } else { Vec::new() };
        outs_values.resize(node.outputs.len(), None);

        for (k, out) in node.outputs.iter().enumerate() {
            if out.is_empty() {
                continue;
            }
            let elem_type = types.get(k).copied().flatten().or_else(|| self.declared.elem_types.get(out).copied());
            if let Some(t) = elem_type {
                a.types.insert(out.clone(), t);
            }
            let mut inferred = shapes[k].take();
            if let Some(v) = &outs_values[k] {
                // A computed value fixes the layout even when no rule did.
                inferred.get_or_insert_with(|| v.dims.iter().map(|&d| Dim::Known(d as i64)).collect());
            }
            let merged = self.merge_declared(node, out, inferred)?;
            if let Some(s) = merged {
                a.shapes.insert(out.clone(), s);
            }
            if let Some(v) = outs_values[k].take() {
                if elem_type.is_some_and(is_int_type) {
                    a.values.insert(out.clone(), v);
                }
            }
        }
        Ok(())
    }

    /// Reconciles an inferred shape with the model's declaration of `tensor`, as ONNX does: a
    /// number beats a symbol, the declared symbol name beats an inferred one, and two different
    /// numbers (or ranks) are an error.
    fn merge_declared(&self, node: &Node, tensor: &str, inferred: Option<Shape>) -> Result<Option<Shape>, GraphError> {
        let Some(declared) = self.declared.shapes.get(tensor) else { return Ok(inferred) };
        let Some(inferred) = inferred else { return Ok(declared.iter().cloned().collect()) };
        let conflict = || GraphError::DeclaredShape {
            tensor: tensor.to_string(),
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            inferred: shape_string(&inferred),
            declared: format!(
                "[{}]",
                declared
                    .iter()
                    .map(|d| d.as_ref().map_or("?".to_string(), Dim::to_string))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        if declared.len() != inferred.len() {
            return Err(conflict());
        }
        let mut out = Vec::with_capacity(inferred.len());
        for (d, i) in declared.iter().zip(&inferred) {
            out.push(match (d, i) {
                (None, _) => i.clone(),
                (Some(Dim::Known(x)), Dim::Known(y)) if x != y => return Err(conflict()),
                (Some(Dim::Known(_)), _) => d.clone().expect("matched Some"),
                (Some(Dim::Symbolic(_)), Dim::Known(_)) => i.clone(),
                (Some(Dim::Symbolic(_)), Dim::Symbolic(_)) => d.clone().expect("matched Some"),
            });
        }
        Ok(Some(out))
    }
}
