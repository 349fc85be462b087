//! The closed set of operators the lowered graph executes, with their attributes parsed and
//! checked once, at lowering time, so that running a batch never meets a malformed attribute.

use crate::graph::{Attributes, Node};
use crate::onnx::Tensor;

use super::LowerError;

/// ONNX operator types (domain ai.onnx) that `parse` accepts.
pub const SUPPORTED_OPS: &[&str] = &[
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "Div", "Dropout", "Flatten", "Gather", "GatherND", "Gemm", "GlobalAveragePool",
    "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "LRN", "MatMul",
    "MaxPool", "Mul", "Pad", "Range", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice",
    "Softmax", "Split", "Squeeze", "Sub", "Sum", "Transpose", "Unsqueeze",
];

/// How a convolution or pooling node pads its input.
#[derive(Debug, Clone, PartialEq)]
pub enum Padding {
    /// ONNX order: all begins, then all ends.
    Explicit(Vec<i64>),
    SameUpper,
    SameLower,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// Spatial window of a convolution or pooling (per spatial axis).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    pub padding: Padding,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv { window: Window, group: i64 },
    BatchNorm { epsilon: f64, momentum: f64 },
    Relu,
    LeakyRelu { alpha: f64 },
    /// Bounds from attributes (opset < 11); from inputs 1 and 2 otherwise.
    Clip { min: Option<f64>, max: Option<f64> },
    Sigmoid,
    HardSigmoid { alpha: f64, beta: f64 },
    HardSwish,
    Binary(Binary),
    Sum,
    MaxPool { window: Window, ceil_mode: bool },
    AveragePool { window: Window, ceil_mode: bool, count_include_pad: bool },
    GlobalAveragePool,
    GlobalMaxPool,
    /// `axes` from the attribute (opset < 18) or None: from input 1, or all axes.
    ReduceMean { axes: Option<Vec<i64>>, keepdims: bool, noop_with_empty_axes: bool },
    Flatten { axis: i64 },
    Reshape { allowzero: bool },
    Transpose { perm: Option<Vec<i64>> },
    Gemm { alpha: f64, beta: f64, trans_a: bool, trans_b: bool },
    MatMul,
    Concat { axis: i64 },
    Identity,
    Constant(Tensor),
    ConstantOfShape(Tensor),
    /// `pads`/`value` from attributes before opset 11, from inputs after.
    Pad { mode: String, pads: Option<Vec<i64>>, value: f64 },
    /// `legacy`: opset < 13 semantics (input coerced to 2-D at `axis`).
    Softmax { axis: i64, legacy: bool },
    Shape { start: i64, end: Option<i64> },
    Gather { axis: i64 },
    /// The first `batch_dims` axes of data and indices correspond one to one.
    GatherNd { batch_dims: i64 },
    /// `axes` from the attribute (opset < 13) or None: from input 1.
    Unsqueeze { axes: Option<Vec<i64>> },
    Squeeze { axes: Option<Vec<i64>> },
    Cast { to_float: bool },
    /// Attributes before opset 10; inputs after.
    Slice { starts: Option<Vec<i64>>, ends: Option<Vec<i64>>, axes: Option<Vec<i64>> },
    Split { axis: i64, split: Option<Vec<i64>>, outputs: usize },
    Range,
    Lrn { alpha: f64, beta: f64, bias: f64, size: i64 },
}

/// Result of parsing one node: its op, or "not supported" (collected by the caller into one
/// error listing every unsupported op of the model).
pub enum Parsed {
    Op(Op),
    Unsupported,
}

/// Parses a node of the ai.onnx domain at the model's opset.
pub fn parse(node: &Node, opset: i64) -> Result<Parsed, LowerError> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Ok(Parsed::Unsupported);
    }
    let a = &node.attributes;
    let bad = |reason: String| LowerError::Node {
        node: node.name.clone(),
        op_type: node.op_type.clone(),
        reason,
    };
    let op = match node.op_type.as_str() {
        "Conv" => Op::Conv { window: window(a, None).map_err(bad)?, group: a.int("group").unwrap_or(1) },
        "BatchNormalization" => {
            if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(bad("training-mode outputs (running mean/var) are not supported; export the model in eval mode".into()));
            }
            Op::BatchNorm {
                epsilon: a.float("epsilon").unwrap_or(1e-5) as f64,
                momentum: a.float("momentum").unwrap_or(0.9) as f64,
            }
        }
        "Relu" => Op::Relu,
        "LeakyRelu" => Op::LeakyRelu { alpha: a.float("alpha").unwrap_or(0.01) as f64 },
        "Clip" if opset < 11 => Op::Clip {
            min: Some(a.float("min").map_or(f32::MIN as f64, f64::from)),
            max: Some(a.float("max").map_or(f32::MAX as f64, f64::from)),
        },
        "Clip" => Op::Clip { min: None, max: None },
        "Sigmoid" => Op::Sigmoid,
        "HardSigmoid" => Op::HardSigmoid {
            alpha: a.float("alpha").unwrap_or(0.2) as f64,
            beta: a.float("beta").unwrap_or(0.5) as f64,
        },
        "HardSwish" => Op::HardSwish,
        "Add" => Op::Binary(Binary::Add),
        "Sub" => Op::Binary(Binary::Sub),
        "Mul" => Op::Binary(Binary::Mul),
        "Div" => Op::Binary(Binary::Div),
        "Sum" => Op::Sum,
        "MaxPool" => {
            if node.outputs.len() > 1 && !node.outputs[1].is_empty() {
                return Err(bad("the Indices output of MaxPool is not supported".into()));
            }
            let kernel = required_ints(a, "kernel_shape").map_err(bad)?;
            Op::MaxPool { window: window(a, Some(kernel)).map_err(bad)?, ceil_mode: a.int("ceil_mode") == Some(1) }
        }
        "AveragePool" => {
            let kernel = required_ints(a, "kernel_shape").map_err(bad)?;
            Op::AveragePool {
                window: window(a, Some(kernel)).map_err(bad)?,
                ceil_mode: a.int("ceil_mode") == Some(1),
                count_include_pad: a.int("count_include_pad") == Some(1),
            }
        }
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "GlobalMaxPool" => Op::GlobalMaxPool,
        "ReduceMean" => Op::ReduceMean {
            axes: if opset < 18 { a.ints("axes").map(<[i64]>::to_vec) } else { None },
            keepdims: a.int("keepdims").unwrap_or(1) == 1,
            noop_with_empty_axes: a.int("noop_with_empty_axes") == Some(1),
        },
        "Flatten" => Op::Flatten { axis: a.int("axis").unwrap_or(1) },
        "Reshape" => Op::Reshape { allowzero: a.int("allowzero") == Some(1) },
        "Transpose" => Op::Transpose { perm: a.ints("perm").map(<[i64]>::to_vec) },
        "Gemm" => Op::Gemm {
            alpha: a.float("alpha").unwrap_or(1.0) as f64,
            beta: a.float("beta").unwrap_or(1.0) as f64,
            trans_a: a.int("transA") == Some(1),
            trans_b: a.int("transB") == Some(1),
        },
        "MatMul" => Op::MatMul,
        "Concat" => Op::Concat { axis: a.int("axis").ok_or_else(|| bad("attribute `axis` is missing".into()))? },
        "Identity" | "Dropout" => Op::Identity,
        "Constant" => Op::Constant(constant_value(a).map_err(bad)?),
        "ConstantOfShape" => Op::ConstantOfShape(match a.tensor("value").map_err(|e| bad(e.to_string()))? {
            Some(t) => t,
            None => Tensor::from_f32(vec![1], vec![0.0]),
        }),
        "Pad" => Op::Pad {
            mode: a.string("mode").unwrap_or_else(|| "constant".into()),
            pads: if opset < 11 { Some(required_ints(a, "pads").map_err(bad)?) } else { None },
            value: a.float("value").unwrap_or(0.0) as f64,
        },
        "Softmax" => Op::Softmax {
            axis: a.int("axis").unwrap_or(if opset < 13 { 1 } else { -1 }),
            legacy: opset < 13,
        },
        "Shape" => Op::Shape { start: a.int("start").unwrap_or(0), end: a.int("end") },
        "Gather" => Op::Gather { axis: a.int("axis").unwrap_or(0) },
        "GatherND" => match a.int("batch_dims").unwrap_or(0) {
            b if b >= 0 => Op::GatherNd { batch_dims: b },
            b => return Err(bad(format!("batch_dims {b} is negative"))),
        },
        "Unsqueeze" => Op::Unsqueeze { axes: if opset < 13 { Some(required_ints(a, "axes").map_err(bad)?) } else { None } },
        "Squeeze" => Op::Squeeze { axes: if opset < 13 { a.ints("axes").map(<[i64]>::to_vec) } else { None } },
        "Cast" => {
            let to = a.int("to").ok_or_else(|| bad("attribute `to` is missing".into()))?;
            // FLOAT, FLOAT16, DOUBLE, BFLOAT16 compute as f32; everything else as i64.
            Op::Cast { to_float: matches!(to, 1 | 10 | 11 | 16) }
        }
        "Slice" if opset < 10 => Op::Slice {
            starts: Some(required_ints(a, "starts").map_err(bad)?),
            ends: Some(required_ints(a, "ends").map_err(bad)?),
            axes: a.ints("axes").map(<[i64]>::to_vec),
        },
        "Slice" => Op::Slice { starts: None, ends: None, axes: None },
        "Split" => Op::Split {
            axis: a.int("axis").unwrap_or(0),
            split: if opset < 13 { a.ints("split").map(<[i64]>::to_vec) } else { None },
            outputs: node.outputs.len(),
        },
        "Range" => Op::Range,
        "LRN" => Op::Lrn {
            alpha: a.float("alpha").unwrap_or(1e-4) as f64,
            beta: a.float("beta").unwrap_or(0.75) as f64,
            bias: a.float("bias").unwrap_or(1.0) as f64,
            size: a.int("size").ok_or_else(|| bad("attribute `size` is missing".into()))?,
        },
        _ => return Ok(Parsed::Unsupported),
    };
    Ok(Parsed::Op(op))
}

fn required_ints(a: &Attributes, name: &str) -> Result<Vec<i64>, String> {
    a.ints(name).map(<[i64]>::to_vec).ok_or_else(|| format!("attribute `{name}` is missing"))
}

/// Parses kernel/strides/dilations/pads/auto_pad. For Conv the kernel comes from the weight
/// shape at run time, so `kernel` is None and the per-axis lists are sized then.
fn window(a: &Attributes, kernel: Option<Vec<i64>>) -> Result<Window, String> {
    let kernel = kernel.or_else(|| a.ints("kernel_shape").map(<[i64]>::to_vec)).unwrap_or_default();
    let padding = match a.string("auto_pad").as_deref().unwrap_or("NOTSET") {
        "NOTSET" => Padding::Explicit(a.ints("pads").map(<[i64]>::to_vec).unwrap_or_default()),
        "VALID" => Padding::Explicit(Vec::new()),
        "SAME_UPPER" => Padding::SameUpper,
        "SAME_LOWER" => Padding::SameLower,
        other => return Err(format!("auto_pad `{other}` is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")),
    };
    let window = Window {
        kernel,
        strides: a.ints("strides").map(<[i64]>::to_vec).unwrap_or_default(),
        dilations: a.ints("dilations").map(<[i64]>::to_vec).unwrap_or_default(),
        padding,
    };
    if window.strides.iter().chain(&window.dilations).chain(&window.kernel).any(|&v| v < 1) {
        return Err(format!("kernel/strides/dilations must be positive, got {window:?}"));
    }
    Ok(window)
}

/// The value of a Constant node, from whichever `value*` attribute it carries.
fn constant_value(a: &Attributes) -> Result<Tensor, String> {
    if let Some(t) = a.tensor("value").map_err(|e| e.to_string())? {
        return Ok(t);
    }
    if let Some(v) = a.float("value_float") {
        return Ok(Tensor::from_f32(vec![], vec![v]));
    }
    if let Some(v) = a.floats("value_floats") {
        return Ok(Tensor::from_f32(vec![v.len() as i64], v.to_vec()));
    }
    if let Some(v) = a.int("value_int") {
        return Ok(Tensor::from_i64(vec![], vec![v]));
    }
    if let Some(v) = a.ints("value_ints") {
        return Ok(Tensor::from_i64(vec![v.len() as i64], v.to_vec()));
    }
    Err("no supported value attribute (value, value_float(s), value_int(s))".into())
}
