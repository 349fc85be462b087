//! Per-operator shape (and element type) rules for the operators the tool lowers and the
//! shape arithmetic exporters emit.
//!
//! Each rule takes the input shapes (None where unknown) and returns one shape per output, None
//! where it cannot be determined exactly. Err is reserved for real inconsistencies (a model that
//! cannot run), with a message that [`super::GraphError::Shape`] prefixes with the node. The
//! formulas follow the ONNX operator specification at the model's opset; where onnx's own
//! Python shape inference and the runtimes disagree (MaxPool/AveragePool with `ceil_mode` whose
//! last window would start in the right padding), the runtimes (onnxruntime, PyTorch) win,
//! because the lowering must produce what they produce.
//!
//! `window.rs`: Conv and pools; `math.rs`: broadcasting, reductions, Gemm/MatMul; `layout.rs`:
//! Reshape, Flatten, Transpose, Concat, Gather, (Un)Squeeze, Slice, Split, Pad, Expand, Tile;
//! `constants.rs`: Constant, ConstantOfShape, Range.

mod constants;
mod layout;
mod math;
#[cfg(test)]
mod tests;
mod window;

use constants::{constant, constant_of_shape, range};
use layout::{concat, expand, flatten, gather, pad, reshape, slice, split, squeeze, tile, transpose, unsqueeze};
use math::{broadcast, gemm, matmul, reduce, reduced};
use window::{conv, pool};

use super::array::norm_axis;
use super::infer::Value;
use super::{Dim, Node, Shape};
use crate::onnx::proto::tensor_proto::DataType;

pub(super) type Res<T> = Result<T, String>;
pub(super) type Outs = Res<Vec<Option<Shape>>>;

/// What a rule sees of one node.
pub(crate) struct Ctx<'a> {
    pub node: &'a Node,
    pub opset: i64,
    pub shapes: Vec<Option<&'a Shape>>,
    pub values: Vec<Option<&'a Value>>,
    pub types: Vec<Option<i32>>,
}

impl Ctx<'_> {
    fn shape(&self, i: usize) -> Option<&Shape> {
        self.shapes.get(i).copied().flatten()
    }

    /// Whether input `i` is given (not omitted with "").
    fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(|t| !t.is_empty())
    }

    /// Value of input `i` when every element is a number.
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.values.get(i).copied().flatten()?.data.iter().map(|d| d.as_ref().and_then(Dim::known)).collect()
    }

    fn n_out(&self) -> usize {
        self.node.outputs.len()
    }

    fn attr_i(&self, name: &str, default: i64) -> i64 {
        self.node.attributes.int(name).unwrap_or(default)
    }

    /// An INTS attribute of `len` entries, or `default` repeated; a wrong length is an error.
    fn attr_ints(&self, name: &str, len: usize, default: i64) -> Res<Vec<i64>> {
        match self.node.attributes.ints(name) {
            None => Ok(vec![default; len]),
            Some([]) => Ok(vec![default; len]),
            Some(v) if v.len() == len => Ok(v.to_vec()),
            Some(v) => Err(format!("attribute `{name}` has {} values, {len} expected", v.len())),
        }
    }

    /// The same shape for every output.
    fn all(&self, s: Option<Shape>) -> Outs {
        Ok(vec![s; self.n_out()])
    }
}

/// Output shapes of `ctx.node`, one per output (the driver pads a short result with None).
pub(crate) fn infer(ctx: &Ctx) -> Outs {
    let x = ctx.shape(0).cloned();
    match ctx.node.op_type.as_str() {
        "Conv" => conv(ctx).map(|s| vec![s]),
        "MaxPool" | "AveragePool" | "LpPool" => {
            let s = pool(ctx)?;
            ctx.all(s)
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let Some(x) = x else { return Ok(vec![None]) };
            if x.len() < 3 {
                return Err(format!("input of rank {} (N, C and at least one spatial axis expected)", x.len()));
            }
            Ok(vec![Some(x[..2].iter().cloned().chain(std::iter::repeat_n(Dim::Known(1), x.len() - 2)).collect())])
        }
        "BatchNormalization" => {
            let channels = x.as_ref().and_then(|x| x.get(1).cloned());
            let mut outs = vec![x.clone()];
            outs.extend((1..ctx.n_out()).map(|_| channels.clone().map(|c| vec![c])));
            Ok(outs)
        }
        "Relu"
        | "LeakyRelu"
        | "PRelu"
        | "Clip"
        | "Sigmoid"
        | "HardSigmoid"
        | "HardSwish"
        | "Tanh"
        | "Elu"
        | "Selu"
        | "Celu"
        | "Softplus"
        | "Softsign"
        | "ThresholdedRelu"
        | "Gelu"
        | "Mish"
        | "Exp"
        | "Log"
        | "Sqrt"
        | "Abs"
        | "Neg"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Reciprocal"
        | "Erf"
        | "Not"
        | "Sign"
        | "Sin"
        | "Cos"
        | "IsNaN"
        | "IsInf"
        | "Identity"
        | "Cast"
        | "CastLike"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "LRN"
        | "InstanceNormalization"
        | "Shrink"
        | "MeanVarianceNormalization" => {
            if ctx.node.op_type == "Softmax" || ctx.node.op_type == "LogSoftmax" {
                if let (Some(x), Some(axis)) = (&x, ctx.node.attributes.int("axis")) {
                    norm_axis(axis, x.len())?;
                }
            }
            Ok(vec![x])
        }
        "Dropout" => ctx.all(x),
        "LayerNormalization" => Ok(vec![x]),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "BitShift" | "And" | "Or" | "Xor" | "Equal" | "Less"
        | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Max" | "Min" | "Sum" | "Mean" | "Where" => broadcast(ctx),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce(ctx).map(|s| vec![s]),
        "ArgMax" | "ArgMin" => {
            let Some(x) = x else { return Ok(vec![None]) };
            let axis = norm_axis(ctx.attr_i("axis", 0), x.len())?;
            Ok(vec![Some(reduced(&x, &[axis], ctx.attr_i("keepdims", 1) != 0))])
        }
        "Flatten" => flatten(ctx).map(|s| vec![s]),
        "Reshape" => reshape(ctx).map(|s| vec![s]),
        "Transpose" => transpose(ctx).map(|s| vec![s]),
        "Gemm" => gemm(ctx).map(|s| vec![s]),
        "MatMul" => matmul(ctx).map(|s| vec![s]),
        "Concat" => concat(ctx).map(|s| vec![s]),
        "Constant" => constant(ctx).map(|s| vec![s]),
        "ConstantOfShape" => constant_of_shape(ctx).map(|s| vec![s]),
        "Pad" => pad(ctx).map(|s| vec![s]),
        "Shape" => {
            let Some(x) = x else { return Ok(vec![None]) };
            let rank = x.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank);
            let (s, e) = (clamp(ctx.attr_i("start", 0)), clamp(ctx.node.attributes.int("end").unwrap_or(rank)));
            Ok(vec![Some(vec![Dim::Known((e - s).max(0))])])
        }
        "Size" => Ok(vec![Some(vec![])]),
        "Gather" => gather(ctx).map(|s| vec![s]),
        "GatherElements" => Ok(vec![ctx.shape(1).cloned()]),
        "Unsqueeze" => unsqueeze(ctx).map(|s| vec![s]),
        "Squeeze" => squeeze(ctx).map(|s| vec![s]),
        "Slice" => slice(ctx).map(|s| vec![s]),
        "Split" => split(ctx),
        "Range" => range(ctx).map(|s| vec![s]),
        "Expand" => expand(ctx).map(|s| vec![s]),
        "Tile" => tile(ctx).map(|s| vec![s]),
        _ => Ok(vec![None; ctx.n_out()]),
    }
}

/// Element types of the outputs (`TensorProto.DataType` values), where determined.
pub(crate) fn output_types(ctx: &Ctx) -> Vec<Option<i32>> {
    let first = ctx.types.first().copied().flatten();
    let int64 = Some(DataType::Int64 as i32);
    let boolean = Some(DataType::Bool as i32);
    let a = &ctx.node.attributes;
    let t = match ctx.node.op_type.as_str() {
        "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" => int64,
        "Cast" => a.int("to").map(|t| t as i32),
        "CastLike" => ctx.types.get(1).copied().flatten(),
        "Constant" => {
            if let Ok(Some(t)) = a.tensor("value") {
                Some(t.elem_type as i32)
            } else if a.has("value_int") || a.has("value_ints") {
                int64
            } else if a.has("value_float") || a.has("value_floats") {
                Some(DataType::Float as i32)
            } else if a.has("value_string") || a.has("value_strings") {
                Some(DataType::String as i32)
            } else {
                None
            }
        }
        "ConstantOfShape" => match a.tensor("value") {
            Ok(Some(t)) => Some(t.elem_type as i32),
            Ok(None) => Some(DataType::Float as i32),
            Err(_) => None,
        },
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Not" | "IsNaN"
        | "IsInf" => boolean,
        "Where" => ctx.types.get(1).copied().flatten(),
        _ => first,
    };
    let mut types = vec![t; ctx.n_out()];
    match ctx.node.op_type.as_str() {
        "MaxPool" if types.len() > 1 => types[1] = int64,
        "Dropout" if types.len() > 1 => types[1] = if ctx.opset >= 10 { boolean } else { first },
        _ => {}
    }
    types
}
