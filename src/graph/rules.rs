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

use super::array::{norm_axis, slice_plan};
use super::dims::{add, broadcast_shapes, unify, Product};
use super::infer::Value;
use super::{shape_string, Dim, Node, Shape};
use crate::onnx::proto::tensor_proto::DataType;

type Res<T> = Result<T, String>;
type Outs = Res<Vec<Option<Shape>>>;

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
        "Relu" | "LeakyRelu" | "PRelu" | "Clip" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Elu" | "Selu"
        | "Celu" | "Softplus" | "Softsign" | "ThresholdedRelu" | "Gelu" | "Mish" | "Exp" | "Log" | "Sqrt" | "Abs"
        | "Neg" | "Floor" | "Ceil" | "Round" | "Reciprocal" | "Erf" | "Not" | "Sign" | "Sin" | "Cos" | "IsNaN"
        | "IsInf" | "Identity" | "Cast" | "CastLike" | "Softmax" | "LogSoftmax" | "Hardmax" | "LRN"
        | "InstanceNormalization" | "Shrink" | "MeanVarianceNormalization" => {
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

/// Output size of a sliding window on an input of size `n`, as onnxruntime and PyTorch compute
/// it. `ceil` also drops a last window that would start in the right padding.
fn window(n: i64, kernel: i64, stride: i64, dilation: i64, pads: (i64, i64), auto_pad: &str, ceil: bool) -> Res<i64> {
    if kernel < 1 || stride < 1 || dilation < 1 {
        return Err(format!("kernel {kernel}, stride {stride} and dilation {dilation} must all be positive"));
    }
    // i128: attribute values come from an untrusted file and must not overflow.
    let (n, kernel, stride, dilation) = (n as i128, kernel as i128, stride as i128, dilation as i128);
    let effective = dilation * (kernel - 1) + 1;
    let out = match auto_pad {
        "SAME_UPPER" | "SAME_LOWER" => (n + stride - 1) / stride,
        "VALID" | "NOTSET" | "" => {
            let (pb, pe) = if auto_pad == "VALID" { (0, 0) } else { (pads.0 as i128, pads.1 as i128) };
            let span = n + pb + pe - effective;
            if span < 0 {
                return Err(format!(
                    "a window of {effective} (kernel {kernel}, dilation {dilation}) does not fit an input of {n} padded by {pb}+{pe}"
                ));
            }
            let mut out = if ceil { (span + stride - 1) / stride + 1 } else { span / stride + 1 };
            if ceil && (out - 1) * stride >= n + pb {
                out -= 1;
            }
            out
        }
        other => return Err(format!("auto_pad `{other}` is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")),
    };
    i64::try_from(out).map_err(|_| format!("output size {out} is out of range"))
}

/// Spatial output dims of Conv/pools. A symbolic input dim survives only when the window is the
/// identity on it (stride 1 with "same" padding); otherwise the shape is unknown.
#[allow(clippy::too_many_arguments)]
fn spatial(ctx: &Ctx, x: &[Dim], kernel: &[i64], ceil: bool, dilations_allowed: bool) -> Res<Option<Vec<Dim>>> {
    let k = x.len() - 2;
    if kernel.len() != k {
        return Err(format!("kernel of {} dims for input {} ({k} spatial axes)", kernel.len(), shape_string(x)));
    }
    let strides = ctx.attr_ints("strides", k, 1)?;
    let dilations = if dilations_allowed { ctx.attr_ints("dilations", k, 1)? } else { vec![1; k] };
    let pads = ctx.attr_ints("pads", 2 * k, 0)?;
    let auto_pad = ctx.node.attributes.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let mut out = Vec::with_capacity(k);
    for i in 0..k {
        let d = match &x[2 + i] {
            Dim::Known(n) => {
                let o = window(*n, kernel[i], strides[i], dilations[i], (pads[i], pads[i + k]), &auto_pad, ceil)
                    .map_err(|e| format!("spatial axis {i} of input {}: {e}", shape_string(x)))?;
                if o < 1 {
                    return Err(format!("spatial axis {i} of input {} gives an empty output", shape_string(x)));
                }
                Dim::Known(o)
            }
            Dim::Symbolic(_) => {
                let same = auto_pad.starts_with("SAME") && strides[i] == 1;
                let explicit = (auto_pad == "NOTSET" || auto_pad.is_empty())
                    && strides[i] == 1
                    && pads[i] + pads[i + k] == dilations[i] * (kernel[i] - 1);
                if same || explicit {
                    x[2 + i].clone()
                } else {
                    return Ok(None);
                }
            }
        };
        out.push(d);
    }
    Ok(Some(out))
}

fn conv(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(x), Some(w)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!("input {} and weight {} must have the same rank, at least 3", shape_string(x), shape_string(w)));
    }
    let group = ctx.attr_i("group", 1);
    if group < 1 {
        return Err(format!("group {group} must be positive"));
    }
    if let (Dim::Known(c), Dim::Known(wc)) = (&x[1], &w[1]) {
        if Some(*c) != wc.checked_mul(group) {
            return Err(format!(
                "input {} has {c} channels but weight {} expects {wc} per group × {group} group(s) = {}",
                shape_string(x),
                shape_string(w),
                *wc as i128 * group as i128
            ));
        }
    }
    if let Dim::Known(m) = &w[0] {
        if m % group != 0 {
            return Err(format!("{m} output channels (weight {}) are not divisible by group {group}", shape_string(w)));
        }
    }
    if let Some(b) = ctx.shape(2) {
        if b.len() != 1 || unify(&b[0], &w[0]).is_err() {
            return Err(format!("bias {} does not match the {} output channels of weight {}", shape_string(b), w[0], shape_string(w)));
        }
    }
    let kernel: Vec<i64> = match ctx.node.attributes.ints("kernel_shape").filter(|k| !k.is_empty()) {
        Some(k) => {
            if let Some(mismatch) = k.iter().zip(&w[2..]).find(|(a, b)| b.known().is_some_and(|b| b != **a)) {
                return Err(format!("kernel_shape {k:?} disagrees with weight {} ({} vs {})", shape_string(w), mismatch.0, mismatch.1));
            }
            k.to_vec()
        }
        None => match w[2..].iter().map(Dim::known).collect::<Option<Vec<_>>>() {
            Some(k) => k,
            None => return Ok(None),
        },
    };
    let Some(sp) = spatial(ctx, x, &kernel, false, true)? else { return Ok(None) };
    Ok(Some([x[0].clone(), w[0].clone()].into_iter().chain(sp).collect()))
}

fn pool(ctx: &Ctx) -> Res<Option<Shape>> {
    let kernel = ctx.node.attributes.ints("kernel_shape").ok_or("attribute `kernel_shape` is missing")?.to_vec();
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    if x.len() < 3 {
        return Err(format!("input {} has no spatial axes", shape_string(x)));
    }
    let ceil = ctx.attr_i("ceil_mode", 0) != 0;
    let dilations = ctx.node.op_type == "MaxPool" && ctx.opset >= 10;
    let Some(sp) = spatial(ctx, x, &kernel, ceil, dilations)? else { return Ok(None) };
    Ok(Some(x[..2].iter().cloned().chain(sp).collect()))
}

/// Numpy broadcasting over all inputs (legacy `broadcast` attribute before opset 7: the result
/// has the first input's shape).
fn broadcast(ctx: &Ctx) -> Outs {
    if ctx.opset < 7 && matches!(ctx.node.op_type.as_str(), "Add" | "Sub" | "Mul" | "Div" | "Pow" | "And" | "Or" | "Xor" | "Equal" | "Less" | "Greater") {
        return ctx.all(ctx.shape(0).cloned());
    }
    let mut shapes: Vec<&[Dim]> = Vec::new();
    for i in 0..ctx.node.inputs.len() {
        if !ctx.has_input(i) {
            continue;
        }
        match ctx.shape(i) {
            Some(s) => shapes.push(s),
            None => return ctx.all(None),
        }
    }
    if shapes.is_empty() {
        return ctx.all(None);
    }
    let s = broadcast_shapes(&shapes)?;
    ctx.all(s)
}

/// `x` with `axes` removed, or kept as 1.
fn reduced(x: &[Dim], axes: &[usize], keep: bool) -> Shape {
    x.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keep) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect()
}

fn reduce(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let from_input = ctx.opset >= 18 || (ctx.node.op_type == "ReduceSum" && ctx.opset >= 13);
    let axes: Option<Vec<i64>> = if from_input {
        if ctx.has_input(1) {
            match ctx.ints(1) {
                Some(a) => Some(a),
                None => return Ok(None),
            }
        } else {
            None
        }
    } else {
        ctx.node.attributes.ints("axes").map(<[i64]>::to_vec)
    };
    let axes = match axes {
        Some(a) if !a.is_empty() => a,
        _ if from_input && ctx.attr_i("noop_with_empty_axes", 0) != 0 => return Ok(Some(x.clone())),
        _ => (0..x.len() as i64).collect(),
    };
    let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, x.len())).collect::<Res<_>>()?;
    Ok(Some(reduced(x, &axes, ctx.attr_i("keepdims", 1) != 0)))
}

fn flatten(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let rank = x.len() as i64;
    let axis = ctx.attr_i("axis", 1);
    let axis = if axis < 0 { axis + rank } else { axis };
    if !(0..=rank).contains(&axis) {
        return Err(format!("axis {} is out of range for input {}", ctx.attr_i("axis", 1), shape_string(x)));
    }
    let (head, tail) = x.split_at(axis as usize);
    let (Some(h), Some(t)) = (Product::of(head).and_then(|p| p.to_dim()), Product::of(tail).and_then(|p| p.to_dim())) else {
        return Ok(None);
    };
    Ok(Some(vec![h, t]))
}

fn reshape(ctx: &Ctx) -> Res<Option<Shape>> {
    let target: Vec<Option<Dim>> = if ctx.opset < 5 {
        match ctx.node.attributes.ints("shape") {
            Some(s) => s.iter().map(|&d| Some(Dim::Known(d))).collect(),
            None => return Err("attribute `shape` is missing".into()),
        }
    } else {
        match ctx.values.get(1).copied().flatten() {
            Some(v) if v.dims.len() == 1 => v.data.clone(),
            Some(v) => return Err(format!("the shape input has dims {:?}, a 1-D tensor expected", v.dims)),
            None => return Ok(None),
        }
    };
    let allowzero = ctx.attr_i("allowzero", 0) != 0;
    let x = ctx.shape(0);
    let mut out: Vec<Dim> = Vec::with_capacity(target.len());
    let mut infer_at: Option<usize> = None;
    for (i, t) in target.iter().enumerate() {
        let d = match t {
            None => return Ok(None),
            Some(Dim::Known(0)) if !allowzero => match x {
                Some(x) => x.get(i).cloned().ok_or_else(|| format!("target dim {i} is 0 (copy) but input {} has no axis {i}", shape_string(x)))?,
                None => return Ok(None),
            },
            Some(Dim::Known(-1)) => {
                if infer_at.replace(i).is_some() {
                    return Err("the target shape has more than one -1".into());
                }
                Dim::Known(-1)
            }
            Some(Dim::Known(n)) if *n < 0 => return Err(format!("target dim {i} is {n}")),
            Some(d) => d.clone(),
        };
        out.push(d);
    }
    let total = x.and_then(|x| Product::of(x));
    if let Some(at) = infer_at {
        let (Some(x), Some(total)) = (x, total) else { return Ok(None) };
        let others: Vec<Dim> = out.iter().enumerate().filter(|(i, _)| *i != at).map(|(_, d)| d.clone()).collect();
        let Some(rest) = Product::of(&others) else { return Ok(None) };
        match total.divided_by(&rest).and_then(|p| p.to_dim()) {
            Some(d) => out[at] = d,
            None if total.syms.is_empty() && rest.syms.is_empty() => {
                return Err(format!("input {} cannot be reshaped to {}", shape_string(x), shape_string(&out)))
            }
            None => return Ok(None),
        }
    } else if let (Some(x), Some(total), Some(p)) = (x, total, Product::of(&out)) {
        if total.syms.is_empty() && p.syms.is_empty() && total.coef != p.coef {
            return Err(format!("input {} cannot be reshaped to {}", shape_string(x), shape_string(&out)));
        }
    }
    Ok(Some(out))
}

fn transpose(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let perm: Vec<i64> = match ctx.node.attributes.ints("perm") {
        Some(p) if !p.is_empty() => p.to_vec(),
        _ => (0..x.len() as i64).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..x.len() as i64).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of the axes of input {}", shape_string(x)));
    }
    Ok(Some(perm.iter().map(|&p| x[p as usize].clone()).collect()))
}

fn gemm(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if a.len() != 2 || b.len() != 2 {
        return Err(format!("A {} and B {} must be matrices", shape_string(a), shape_string(b)));
    }
    let (m, ka) = if ctx.attr_i("transA", 0) != 0 { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if ctx.attr_i("transB", 0) != 0 { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    unify(ka, kb).map_err(|e| {
        format!("inner dimensions of A {} and B {} differ ({e}; transA={}, transB={})", shape_string(a), shape_string(b), ctx.attr_i("transA", 0), ctx.attr_i("transB", 0))
    })?;
    let out = vec![m.clone(), n.clone()];
    if let Some(c) = ctx.shape(2) {
        // C broadcasts to the result, one way only.
        if let Some(full) = broadcast_shapes(&[c, &out]).map_err(|e| format!("C {} does not broadcast to {}: {e}", shape_string(c), shape_string(&out)))? {
            if full.len() != 2 || full.iter().zip(&out).any(|(f, o)| f.known().zip(o.known()).is_some_and(|(f, o)| f != o)) {
                return Err(format!("C {} does not broadcast to {}", shape_string(c), shape_string(&out)));
            }
        }
    }
    Ok(Some(out))
}

fn matmul(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if a.is_empty() || b.is_empty() {
        return Err(format!("scalar operand ({} × {})", shape_string(a), shape_string(b)));
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::Known(1), a[0].clone()] } else { a.clone() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0].clone(), Dim::Known(1)] } else { b.clone() };
    let (ra, rb) = (a2.len(), b2.len());
    unify(&a2[ra - 1], &b2[rb - 2])
        .map_err(|e| format!("inner dimensions of {} and {} differ ({e})", shape_string(a), shape_string(b)))?;
    let Some(mut out) = broadcast_shapes(&[&a2[..ra - 2], &b2[..rb - 2]])
        .map_err(|e| format!("batch dimensions of {} and {} do not broadcast: {e}", shape_string(a), shape_string(b)))?
    else {
        return Ok(None);
    };
    if a.len() > 1 {
        out.push(a2[ra - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[rb - 1].clone());
    }
    Ok(Some(out))
}

fn concat(ctx: &Ctx) -> Res<Option<Shape>> {
    let default_axis = if ctx.opset < 4 { Some(1) } else { None };
    let axis = ctx.node.attributes.int("axis").or(default_axis).ok_or("attribute `axis` is missing")?;
    let mut shapes: Vec<&Shape> = Vec::new();
    for i in 0..ctx.node.inputs.len() {
        match ctx.shape(i) {
            Some(s) => shapes.push(s),
            None if !ctx.has_input(i) => {}
            None => return Ok(None),
        }
    }
    let Some(first) = shapes.first() else { return Ok(None) };
    let axis = norm_axis(axis, first.len())?;
    let mut out: Shape = (*first).clone();
    for s in &shapes[1..] {
        if s.len() != out.len() {
            return Err(format!("inputs {} and {} have different ranks", shape_string(first), shape_string(s)));
        }
        for (i, d) in s.iter().enumerate() {
            if i == axis {
                match add(&out[i], d) {
                    Some(sum) => out[i] = sum,
                    None => return Ok(None),
                }
            } else {
                out[i] = unify(&out[i], d)
                    .map_err(|e| format!("inputs {} and {} differ on axis {i} ({e}), concatenating on axis {axis}", shape_string(first), shape_string(s)))?;
            }
        }
    }
    Ok(Some(out))
}

fn constant(ctx: &Ctx) -> Res<Option<Shape>> {
    let a = &ctx.node.attributes;
    if let Some(t) = a.tensor("value").map_err(|e| e.to_string())? {
        return Ok(Some(t.dims.iter().map(|&d| Dim::Known(d)).collect()));
    }
    if let Some(v) = a.ints("value_ints") {
        return Ok(Some(vec![Dim::Known(v.len() as i64)]));
    }
    if let Some(v) = a.floats("value_floats") {
        return Ok(Some(vec![Dim::Known(v.len() as i64)]));
    }
    if a.has("value_int") || a.has("value_float") || a.has("value_string") {
        return Ok(Some(vec![]));
    }
    Ok(None)
}

fn constant_of_shape(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(v) = ctx.values.first().copied().flatten() else { return Ok(None) };
    if v.dims.len() != 1 {
        return Err(format!("the shape input has dims {:?}, a 1-D tensor expected", v.dims));
    }
    let mut out = Vec::with_capacity(v.data.len());
    for d in &v.data {
        match d {
            Some(Dim::Known(n)) if *n < 0 => return Err(format!("negative dimension {n} in the shape input")),
            Some(d) => out.push(d.clone()),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn pad(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let pads: Vec<i64> = if ctx.opset < 11 {
        let name = if ctx.opset < 2 { "paddings" } else { "pads" };
        ctx.node.attributes.ints(name).ok_or_else(|| format!("attribute `{name}` is missing"))?.to_vec()
    } else {
        match ctx.ints(1) {
            Some(p) => p,
            None => return Ok(None),
        }
    };
    let axes: Vec<usize> = if ctx.opset >= 18 && ctx.has_input(3) {
        match ctx.ints(3) {
            Some(a) => a.iter().map(|&a| norm_axis(a, x.len())).collect::<Res<_>>()?,
            None => return Ok(None),
        }
    } else {
        (0..x.len()).collect()
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} padded axes of input {}", pads.len(), axes.len(), shape_string(x)));
    }
    let mut out = x.clone();
    for (k, &axis) in axes.iter().enumerate() {
        let extra = pads[k].saturating_add(pads[k + axes.len()]);
        match (&out[axis], extra) {
            (Dim::Known(n), e) => match n.checked_add(e).filter(|v| *v >= 0) {
                Some(v) => out[axis] = Dim::Known(v),
                None => return Err(format!("pads {pads:?} do not fit axis {axis} of input {}", shape_string(x))),
            },
            (Dim::Symbolic(_), 0) => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn gather(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(x), Some(idx)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if x.is_empty() {
        return Err("data is a scalar".into());
    }
    let axis = norm_axis(ctx.attr_i("axis", 0), x.len())?;
    Ok(Some(x[..axis].iter().chain(idx).chain(&x[axis + 1..]).cloned().collect()))
}

/// Axes from the attribute (before opset 13) or from input 1.
fn axes_of(ctx: &Ctx) -> Option<Option<Vec<i64>>> {
    if ctx.opset < 13 {
        Some(ctx.node.attributes.ints("axes").map(<[i64]>::to_vec))
    } else if ctx.has_input(1) {
        ctx.ints(1).map(Some)
    } else {
        Some(None)
    }
}

fn unsqueeze(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let Some(axes) = axes_of(ctx) else { return Ok(None) };
    let axes = axes.ok_or("no axes given")?;
    let rank = x.len() + axes.len();
    let mut positions: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Res<_>>()?;
    positions.sort_unstable();
    if positions.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("axes {axes:?} repeat an axis"));
    }
    let mut rest = x.iter();
    Ok(Some((0..rank).map(|i| if positions.binary_search(&i).is_ok() { Dim::Known(1) } else { rest.next().expect("rank adds up").clone() }).collect()))
}

fn squeeze(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let Some(axes) = axes_of(ctx) else { return Ok(None) };
    match axes.filter(|a| !a.is_empty()) {
        Some(axes) => {
            let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, x.len())).collect::<Res<_>>()?;
            if let Some(&a) = axes.iter().find(|&&a| x[a].known().is_some_and(|n| n != 1)) {
                return Err(format!("axis {a} of input {} is not 1", shape_string(x)));
            }
            Ok(Some(reduced(x, &axes, false)))
        }
        // Without axes every 1 goes, which a symbolic dimension may or may not be.
        None if x.iter().any(|d| matches!(d, Dim::Symbolic(_))) => Ok(None),
        None => Ok(Some(x.iter().filter(|d| **d != Dim::Known(1)).cloned().collect())),
    }
}

fn slice(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        let a = &ctx.node.attributes;
        let starts = a.ints("starts").ok_or("attribute `starts` is missing")?.to_vec();
        let ends = a.ints("ends").ok_or("attribute `ends` is missing")?.to_vec();
        (starts, ends, a.ints("axes").map(<[i64]>::to_vec), None)
    } else {
        let (Some(starts), Some(ends)) = (ctx.ints(1), ctx.ints(2)) else { return Ok(None) };
        let axes = if ctx.has_input(3) {
            match ctx.ints(3) {
                Some(a) => Some(a),
                None => return Ok(None),
            }
        } else {
            None
        };
        let steps = if ctx.has_input(4) {
            match ctx.ints(4) {
                Some(s) => Some(s),
                None => return Ok(None),
            }
        } else {
            None
        };
        (starts, ends, axes, steps)
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.as_ref().is_some_and(|s| s.len() != starts.len()) {
        return Err("starts, ends, axes and steps have different lengths".into());
    }
    let mut out = x.clone();
    for (k, &axis) in axes.iter().enumerate() {
        let a = norm_axis(axis, x.len())?;
        let step = steps.as_ref().map_or(1, |s| s[k]);
        match &x[a] {
            Dim::Known(n) => {
                let plan = slice_plan(&[*n], &[starts[k]], &[ends[k]], None, Some(&[step])).map_err(|e| format!("axis {axis}: {e}"))?;
                out[a] = Dim::Known(plan[0].len as i64);
            }
            // The whole of a symbolic axis (torch's `x[:, ...]`) keeps its symbol.
            Dim::Symbolic(_) if starts[k] == 0 && step == 1 && ends[k] >= i32::MAX as i64 => {}
            Dim::Symbolic(_) => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn split(ctx: &Ctx) -> Outs {
    let Some(x) = ctx.shape(0) else { return ctx.all(None) };
    let axis = norm_axis(ctx.attr_i("axis", 0), x.len())?;
    let n = ctx.n_out();
    let sizes: Option<Vec<i64>> = if ctx.opset < 13 {
        ctx.node.attributes.ints("split").filter(|s| !s.is_empty()).map(<[i64]>::to_vec)
    } else if ctx.has_input(1) {
        match ctx.ints(1) {
            Some(s) => Some(s),
            None => return ctx.all(None),
        }
    } else {
        None
    };
    let Dim::Known(total) = x[axis] else {
        return ctx.all(None);
    };
    let sizes = match sizes {
        Some(s) => {
            if s.len() != n || s.iter().map(|&v| v as i128).sum::<i128>() != total as i128 || s.iter().any(|&v| v < 0) {
                return Err(format!("split sizes {s:?} for {n} outputs do not add up to axis {axis} of input {}", shape_string(x)));
            }
            s
        }
        None if ctx.opset >= 18 => {
            let parts = ctx.node.attributes.int("num_outputs").unwrap_or(n as i64);
            if parts < 1 || parts as usize != n {
                return Err(format!("num_outputs {parts} differs from the {n} outputs"));
            }
            let chunk = (total + parts - 1) / parts;
            (0..parts).map(|i| (total - i * chunk).clamp(0, chunk)).collect()
        }
        None => {
            if n == 0 || total % n as i64 != 0 {
                return Err(format!("axis {axis} of input {} does not split evenly into {n} outputs", shape_string(x)));
            }
            vec![total / n as i64; n]
        }
    };
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut o = x.clone();
            o[axis] = Dim::Known(s);
            Some(o)
        })
        .collect())
}

fn range(ctx: &Ctx) -> Res<Option<Shape>> {
    let scalar = |i: usize| ctx.ints(i).filter(|v| v.len() == 1).map(|v| v[0]);
    let (Some(start), Some(limit), Some(delta)) = (scalar(0), scalar(1), scalar(2)) else {
        return Ok(None);
    };
    if delta == 0 {
        return Err("delta is 0".into());
    }
    let len = ((limit as i128 - start as i128) + delta as i128 - delta.signum() as i128) / delta as i128;
    Ok(Some(vec![Dim::Known(len.max(0) as i64)]))
}

fn expand(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(x), Some(v)) = (ctx.shape(0), ctx.values.get(1).copied().flatten()) else { return Ok(None) };
    let Some(target) = v.data.iter().cloned().collect::<Option<Vec<Dim>>>() else { return Ok(None) };
    broadcast_shapes(&[x, &target])
}

fn tile(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(x), Some(reps)) = (ctx.shape(0), ctx.ints(1)) else { return Ok(None) };
    if reps.len() != x.len() {
        return Err(format!("{} repeats for input {}", reps.len(), shape_string(x)));
    }
    let mut out = Vec::with_capacity(x.len());
    for (d, &r) in x.iter().zip(&reps) {
        out.push(match (d, r) {
            (_, 1) => d.clone(),
            (Dim::Known(n), r) if r >= 0 => Dim::Known(n.checked_mul(r).ok_or("repeated size overflows")?),
            (Dim::Known(_), r) => return Err(format!("negative repeat count {r}")),
            _ => return Ok(None),
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use crate::graph::tests_support::*;
    use crate::graph::{Dim, Graph};
    use crate::onnx::proto::{ModelProto, NodeProto, TensorProto};
    use crate::onnx::tensor::{encode_f32, encode_i64};

    fn n() -> Dim {
        Dim::Symbolic("N".into())
    }
    fn k(v: i64) -> Dim {
        Dim::Known(v)
    }

    /// Builds, infers, and returns the graph (panics with the error).
    fn infer(opset: i64, nodes: Vec<NodeProto>, inputs: &[(&str, &[i64])], inits: Vec<TensorProto>) -> Graph {
        try_infer(opset, nodes, inputs, inits).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_infer(opset: i64, nodes: Vec<NodeProto>, inputs: &[(&str, &[i64])], inits: Vec<TensorProto>) -> Result<Graph, String> {
        let last = nodes.last().map(|n| n.output[0].clone()).unwrap();
        let mut m: ModelProto = model(opset, nodes, inputs, &[&last]);
        m.graph.as_mut().unwrap().initializer = inits;
        let mut g = Graph::from_model(&m).map_err(|e| e.to_string())?;
        g.infer_shapes().map_err(|e| e.to_string())?;
        Ok(g)
    }

    fn weight(name: &str, dims: &[i64]) -> TensorProto {
        let count = dims.iter().product::<i64>() as usize;
        encode_f32(name, dims, &vec![0.0; count])
    }

    fn conv(attrs: Vec<crate::onnx::proto::AttributeProto>, x: &[i64], w: &[i64]) -> Result<Vec<Dim>, String> {
        let g = try_infer(13, vec![with(node("Conv", "c", &["x", "w"], &["y"]), attrs)], &[("x", x)], vec![weight("w", w)])?;
        Ok(g.shapes.get("y").cloned().unwrap_or_default())
    }

    #[test]
    fn conv_pads_strides_dilations_groups() {
        assert_eq!(conv(vec![ints("pads", &[1, 1, 1, 1])], &[-1, 3, 32, 32], &[16, 3, 3, 3]).unwrap(), [n(), k(16), k(32), k(32)]);
        assert_eq!(
            conv(vec![ints("pads", &[1, 1, 1, 1]), ints("strides", &[2, 2])], &[-1, 3, 32, 32], &[16, 3, 3, 3]).unwrap(),
            [n(), k(16), k(16), k(16)]
        );
        assert_eq!(
            conv(vec![ints("pads", &[2, 2, 2, 2]), ints("dilations", &[2, 2])], &[1, 3, 32, 31], &[4, 3, 3, 3]).unwrap(),
            [k(1), k(4), k(32), k(31)]
        );
        assert_eq!(
            conv(vec![int("group", 8), ints("kernel_shape", &[3, 3])], &[1, 8, 10, 10], &[8, 1, 3, 3]).unwrap(),
            [k(1), k(8), k(8), k(8)]
        );
        assert_eq!(conv(vec![ints("pads", &[0, 1, 0, 2])], &[1, 3, 7, 7], &[2, 3, 3, 3]).unwrap(), [k(1), k(2), k(5), k(8)]);
        assert_eq!(
            conv(vec![string("auto_pad", "SAME_UPPER"), ints("strides", &[2, 2])], &[1, 3, 7, 8], &[2, 3, 3, 3]).unwrap(),
            [k(1), k(2), k(4), k(4)]
        );
        assert_eq!(
            conv(vec![string("auto_pad", "VALID"), ints("strides", &[2, 2])], &[1, 3, 7, 8], &[2, 3, 3, 3]).unwrap(),
            [k(1), k(2), k(3), k(3)]
        );
        // A symbolic spatial size survives only an identity window.
        assert_eq!(conv(vec![ints("pads", &[1, 1, 1, 1])], &[1, 3, -1, 5], &[2, 3, 3, 3]).unwrap(), [k(1), k(2), n(), k(5)]);
        assert_eq!(conv(vec![], &[1, 3, -1, 5], &[2, 3, 3, 3]).unwrap(), Vec::<Dim>::new());
    }

    #[test]
    fn conv_inconsistencies_name_the_node() {
        let e = conv(vec![], &[1, 4, 8, 8], &[2, 3, 3, 3]).unwrap_err();
        assert!(e.contains("node `c` (Conv)") && e.contains("4 channels"), "{e}");
        let e = conv(vec![int("group", 2)], &[1, 6, 8, 8], &[3, 3, 3, 3]).unwrap_err();
        assert!(e.contains("not divisible by group 2"), "{e}");
        let e = conv(vec![], &[1, 3, 2, 2], &[2, 3, 3, 3]).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
    }

    fn pool(op: &str, attrs: Vec<crate::onnx::proto::AttributeProto>, x: &[i64]) -> Vec<Dim> {
        infer(13, vec![with(node(op, "p", &["x"], &["y"]), attrs)], &[("x", x)], vec![]).shapes["y"].clone()
    }

    #[test]
    fn pools_with_ceil_mode_and_pads() {
        let k3s2 = || vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2])];
        let mut a = k3s2();
        a.push(ints("pads", &[1, 1, 1, 1]));
        assert_eq!(pool("MaxPool", a, &[-1, 64, 112, 112]), [n(), k(64), k(56), k(56)]);
        assert_eq!(pool("MaxPool", k3s2(), &[1, 1, 6, 7]), [k(1), k(1), k(2), k(3)]);
        let mut a = k3s2();
        a.push(int("ceil_mode", 1));
        assert_eq!(pool("MaxPool", a, &[1, 1, 6, 7]), [k(1), k(1), k(3), k(3)]);
        // ceil_mode drops a last window that would start in the right padding (as onnxruntime
        // and PyTorch do): 3 padded by 1+1, kernel 2, stride 2 gives 2 windows, not 3.
        let a = vec![ints("kernel_shape", &[2]), ints("strides", &[2]), ints("pads", &[1, 1]), int("ceil_mode", 1)];
        assert_eq!(pool("AveragePool", a, &[1, 1, 3]), [k(1), k(1), k(2)]);
        let a = vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])];
        assert_eq!(pool("AveragePool", a, &[-1, 8, 16, 16]), [n(), k(8), k(8), k(8)]);
        assert_eq!(pool("GlobalAveragePool", vec![], &[-1, 8, 16, 16]), [n(), k(8), k(1), k(1)]);
        let g = try_infer(13, vec![node("MaxPool", "p", &["x"], &["y"])], &[("x", &[1, 1, 4, 4])], vec![]);
        assert!(g.unwrap_err().contains("`kernel_shape` is missing"));
    }

    #[test]
    fn numpy_broadcasting() {
        let g = infer(13, vec![node("Add", "a", &["x", "b"], &["y"])], &[("x", &[-1, 3, 4]), ("b", &[4])], vec![]);
        assert_eq!(g.shapes["y"], [n(), k(3), k(4)]);
        let g = infer(13, vec![node("Mul", "m", &["x", "b"], &["y"])], &[("x", &[-1, 3, 1, 1]), ("b", &[1, 1, 5, 5])], vec![]);
        assert_eq!(g.shapes["y"], [n(), k(3), k(5), k(5)]);
        let g = infer(13, vec![node("Sum", "s", &["x", "b", "c"], &["y"])], &[("x", &[2, 1]), ("b", &[3]), ("c", &[1, 1, 1])], vec![]);
        assert_eq!(g.shapes["y"], [k(1), k(2), k(3)]);
        let e = try_infer(13, vec![node("Add", "a", &["x", "b"], &["y"])], &[("x", &[2, 3]), ("b", &[4])], vec![]).unwrap_err();
        assert!(e.contains("node `a` (Add)") && e.contains("3 and 4"), "{e}");
    }

    fn reshape(x: &[i64], target: &[i64], allowzero: bool) -> Result<Vec<Dim>, String> {
        let mut r = node("Reshape", "r", &["x", "t"], &["y"]);
        if allowzero {
            r.attribute.push(int("allowzero", 1));
        }
        let g = try_infer(14, vec![r], &[("x", x)], vec![encode_i64("t", &[target.len() as i64], target)])?;
        Ok(g.shapes.get("y").cloned().unwrap_or_default())
    }

    #[test]
    fn reshape_zero_and_minus_one() {
        assert_eq!(reshape(&[-1, 64, 1, 1], &[0, -1], false).unwrap(), [n(), k(64)]);
        assert_eq!(reshape(&[-1, 64, 1, 1], &[-1, 64], false).unwrap(), [n(), k(64)]);
        assert_eq!(reshape(&[2, 3, 4], &[-1, 4], false).unwrap(), [k(6), k(4)]);
        assert_eq!(reshape(&[2, 3, 4], &[0, 0, 2, 2], false).unwrap(), [k(2), k(3), k(2), k(2)]);
        assert_eq!(reshape(&[0, 3], &[0, 3], true).unwrap(), [k(0), k(3)]);
        // N*64 elements into [-1, 32]: the -1 is 2N, not a single symbol: unknown, not a guess.
        assert_eq!(reshape(&[-1, 64], &[-1, 32], false).unwrap(), Vec::<Dim>::new());
        let e = reshape(&[2, 3], &[4, 2], false).unwrap_err();
        assert!(e.contains("node `r` (Reshape)") && e.contains("cannot be reshaped"), "{e}");
        let e = reshape(&[2, 3], &[-1, 4], false).unwrap_err();
        assert!(e.contains("cannot be reshaped"), "{e}");
        assert!(reshape(&[2, 3], &[-1, -1], false).unwrap_err().contains("more than one -1"));
    }

    #[test]
    fn gemm_transposes_and_matmul() {
        let gemm = |attrs, a: &[i64], b: &[i64]| {
            try_infer(13, vec![with(node("Gemm", "fc", &["a", "b"], &["y"]), attrs)], &[("a", a), ("b", b)], vec![])
                .map(|g| g.shapes["y"].clone())
        };
        assert_eq!(gemm(vec![int("transB", 1)], &[-1, 64], &[10, 64]).unwrap(), [n(), k(10)]);
        assert_eq!(gemm(vec![int("transA", 1)], &[64, 5], &[64, 10]).unwrap(), [k(5), k(10)]);
        assert_eq!(gemm(vec![], &[5, 64], &[64, 10]).unwrap(), [k(5), k(10)]);
        let e = gemm(vec![], &[5, 64], &[10, 64]).unwrap_err();
        assert!(e.contains("node `fc` (Gemm)") && e.contains("inner dimensions"), "{e}");

        let mm = |a: &[i64], b: &[i64]| {
            try_infer(13, vec![node("MatMul", "mm", &["a", "b"], &["y"])], &[("a", a), ("b", b)], vec![])
                .map(|g| g.shapes["y"].clone())
        };
        assert_eq!(mm(&[-1, 5, 3], &[3, 4]).unwrap(), [n(), k(5), k(4)]);
        assert_eq!(mm(&[3], &[2, 3, 4]).unwrap(), [k(2), k(4)]);
        assert_eq!(mm(&[2, 5, 3], &[3]).unwrap(), [k(2), k(5)]);
        let e = mm(&[5, 3], &[4, 2]).unwrap_err();
        assert!(e.contains("node `mm` (MatMul)") && e.contains("inner dimensions"), "{e}");
    }

    #[test]
    fn flatten_axis() {
        let flat = |axis: i64, x: &[i64]| {
            infer(13, vec![with(node("Flatten", "f", &["x"], &["y"]), vec![int("axis", axis)])], &[("x", x)], vec![])
                .shapes
                .get("y")
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(flat(1, &[-1, 64, 1, 1]), [n(), k(64)]);
        assert_eq!(flat(2, &[2, 3, 4, 5]), [k(6), k(20)]);
        assert_eq!(flat(0, &[2, 3, 4, 5]), [k(1), k(120)]);
        assert_eq!(flat(-1, &[2, 3, 4, 5]), [k(24), k(5)]);
        assert_eq!(flat(4, &[2, 3, 4, 5]), [k(120), k(1)]);
        assert_eq!(flat(2, &[-1, 3, 4, 5]), Vec::<Dim>::new(), "3N is no single dimension");
    }

    #[test]
    fn reductions_by_attribute_and_input() {
        let r = with(node("ReduceMean", "m", &["x"], &["y"]), vec![ints("axes", &[-1, -2]), int("keepdims", 1)]);
        assert_eq!(infer(13, vec![r], &[("x", &[-1, 8, 4, 4])], vec![]).shapes["y"], [n(), k(8), k(1), k(1)]);
        let r = with(node("ReduceMean", "m", &["x", "axes"], &["y"]), vec![int("keepdims", 0)]);
        let g = infer(18, vec![r], &[("x", &[-1, 8, 4, 4])], vec![encode_i64("axes", &[2], &[2, 3])]);
        assert_eq!(g.shapes["y"], [n(), k(8)]);
        let r = node("ReduceSum", "s", &["x"], &["y"]);
        assert_eq!(infer(13, vec![r], &[("x", &[2, 3])], vec![]).shapes["y"], [k(1), k(1)]);
    }

    #[test]
    fn shape_arithmetic_of_torchscript_keeps_the_batch_symbol() {
        // x.view(x.size(0), -1) as the TorchScript exporter writes it at opset 13.
        let nodes = vec![
            node("Shape", "shape", &["x"], &["s"]),
            node("Gather", "gather", &["s", "zero"], &["b"]),
            node("Unsqueeze", "unsq", &["b", "axes"], &["bu"]),
            with(node("Concat", "cat", &["bu", "minus_one"], &["target"]), vec![int("axis", 0)]),
            node("Reshape", "view", &["x", "target"], &["y"]),
        ];
        let inits = vec![encode_i64("zero", &[], &[0]), encode_i64("axes", &[1], &[0]), encode_i64("minus_one", &[1], &[-1])];
        let g = infer(13, nodes, &[("x", &[-1, 64, 1, 1])], inits);
        assert_eq!(g.shapes["s"], [k(4)]);
        assert_eq!(g.shapes["b"], Vec::<Dim>::new());
        assert_eq!(g.shapes["target"], [k(2)]);
        assert_eq!(g.shapes["y"], [n(), k(64)]);
    }

    #[test]
    fn structural_ops() {
        let g = infer(13, vec![with(node("Transpose", "t", &["x"], &["y"]), vec![ints("perm", &[0, 2, 1])])], &[("x", &[-1, 3, 5])], vec![]);
        assert_eq!(g.shapes["y"], [n(), k(5), k(3)]);
        let g = infer(13, vec![node("Transpose", "t", &["x"], &["y"])], &[("x", &[2, 3, 5])], vec![]);
        assert_eq!(g.shapes["y"], [k(5), k(3), k(2)]);
        assert!(try_infer(13, vec![with(node("Transpose", "t", &["x"], &["y"]), vec![ints("perm", &[0, 0])])], &[("x", &[2, 3])], vec![]).is_err());

        let cat = with(node("Concat", "c", &["a", "b"], &["y"]), vec![int("axis", 1)]);
        assert_eq!(infer(13, vec![cat.clone()], &[("a", &[-1, 3, 8]), ("b", &[-1, 5, 8])], vec![]).shapes["y"], [n(), k(8), k(8)]);
        let e = try_infer(13, vec![cat], &[("a", &[-1, 3, 8]), ("b", &[-1, 5, 7])], vec![]).unwrap_err();
        assert!(e.contains("node `c` (Concat)") && e.contains("8 differs from 7"), "{e}");

        let u = with(node("Unsqueeze", "u", &["x"], &["y"]), vec![ints("axes", &[1, 2])]);
        assert_eq!(infer(11, vec![u], &[("x", &[64])], vec![]).shapes["y"], [k(64), k(1), k(1)]);
        let u = node("Unsqueeze", "u", &["x", "axes"], &["y"]);
        assert_eq!(infer(13, vec![u], &[("x", &[-1, 4])], vec![encode_i64("axes", &[1], &[-1])]).shapes["y"], [n(), k(4), k(1)]);
        let s = with(node("Squeeze", "s", &["x"], &["y"]), vec![ints("axes", &[2, 3])]);
        assert_eq!(infer(11, vec![s], &[("x", &[-1, 4, 1, 1])], vec![]).shapes["y"], [n(), k(4)]);
        let s = node("Squeeze", "s", &["x"], &["y"]);
        assert_eq!(infer(13, vec![s], &[("x", &[1, 4, 1, 1])], vec![]).shapes["y"], [k(4)]);
        let s = node("Squeeze", "s", &["x", "axes"], &["y"]);
        let e = try_infer(13, vec![s], &[("x", &[1, 4])], vec![encode_i64("axes", &[1], &[1])]).unwrap_err();
        assert!(e.contains("not 1"), "{e}");

        let sl = node("Slice", "sl", &["x", "st", "en", "ax", "sp"], &["y"]);
        let inits = vec![
            encode_i64("st", &[2], &[1, -1]),
            encode_i64("en", &[2], &[i64::MAX, i64::MIN]),
            encode_i64("ax", &[2], &[1, 2]),
            encode_i64("sp", &[2], &[2, -1]),
        ];
        assert_eq!(infer(13, vec![sl], &[("x", &[-1, 7, 5])], inits).shapes["y"], [n(), k(3), k(5)]);
        let sl = with(node("Slice", "sl", &["x"], &["y"]), vec![ints("starts", &[0]), ints("ends", &[2]), ints("axes", &[1])]);
        assert_eq!(infer(9, vec![sl], &[("x", &[4, 7])], vec![]).shapes["y"], [k(4), k(2)]);

        let sp = with(node("Split", "sp", &["x"], &["a", "b"]), vec![int("axis", 1), ints("split", &[2, 6])]);
        let mut m = model(11, vec![sp], &[("x", &[-1, 8])], &["a", "b"]);
        m.graph.as_mut().unwrap().initializer.clear();
        let mut g = Graph::from_model(&m).unwrap();
        g.infer_shapes().unwrap();
        assert_eq!((g.shapes["a"].clone(), g.shapes["b"].clone()), (vec![n(), k(2)], vec![n(), k(6)]));

        let p = node("Pad", "p", &["x", "pads"], &["y"]);
        let g = infer(13, vec![p], &[("x", &[-1, 3, 4, 4])], vec![encode_i64("pads", &[8], &[0, 0, 1, 2, 0, 0, 1, 2])]);
        assert_eq!(g.shapes["y"], [n(), k(3), k(6), k(8)]);
        let p = with(node("Pad", "p", &["x"], &["y"]), vec![ints("pads", &[0, 0, 1, 1, 0, 0, 1, 1])]);
        assert_eq!(infer(9, vec![p], &[("x", &[1, 3, 4, 4])], vec![]).shapes["y"], [k(1), k(3), k(6), k(6)]);

        let c = node("ConstantOfShape", "c", &["s"], &["y"]);
        assert_eq!(infer(13, vec![c], &[], vec![encode_i64("s", &[2], &[3, 5])]).shapes["y"], [k(3), k(5)]);
        let r = node("Range", "r", &["a", "b", "c"], &["y"]);
        let inits = vec![encode_i64("a", &[], &[2]), encode_i64("b", &[], &[11]), encode_i64("c", &[], &[3])];
        assert_eq!(infer(13, vec![r], &[], inits).shapes["y"], [k(3)]);
        let sh = with(node("Shape", "s", &["x"], &["y"]), vec![int("start", 1), int("end", -1)]);
        assert_eq!(infer(15, vec![sh], &[("x", &[-1, 3, 4, 5])], vec![]).shapes["y"], [k(2)]);
        let g = node("Gather", "g", &["x", "i"], &["y"]);
        assert_eq!(infer(13, vec![g], &[("x", &[10, 4])], vec![encode_i64("i", &[2, 3], &[0; 6])]).shapes["y"], [k(2), k(3), k(4)]);
        let c = with(node("Constant", "c", &[], &["y"]), vec![tensor("value", encode_f32("", &[2, 2], &[0.0; 4]))]);
        assert_eq!(infer(13, vec![c], &[], vec![]).shapes["y"], [k(2), k(2)]);
        let bn = node("BatchNormalization", "bn", &["x", "s", "b", "m", "v"], &["y"]);
        let inits = ["s", "b", "m", "v"].iter().map(|n| weight(n, &[3])).collect();
        assert_eq!(infer(13, vec![bn], &[("x", &[-1, 3, 4, 4])], inits).shapes["y"], [n(), k(3), k(4), k(4)]);
    }

    #[test]
    fn unknown_ops_are_skipped_and_declared_conflicts_are_errors() {
        let nodes = vec![node("FancyOp", "f", &["x"], &["a"]), node("Relu", "r", &["a"], &["y"])];
        let g = infer(13, nodes, &[("x", &[1, 2])], vec![]);
        assert!(!g.shapes.contains_key("a") && !g.shapes.contains_key("y"));

        let mut m = model(13, vec![node("Relu", "r", &["x"], &["y"])], &[("x", &[1, 2])], &["y"]);
        m.graph.as_mut().unwrap().output[0] = vi("y", &[1, 3]);
        let mut g = Graph::from_model(&m).unwrap();
        let e = g.infer_shapes().unwrap_err().to_string();
        assert!(e.contains("tensor `y`") && e.contains("`r` (Relu)") && e.contains("[1, 2]") && e.contains("[1, 3]"), "{e}");

        // A declared number fills in what inference leaves symbolic, and a declared name wins.
        let mut m = model(13, vec![node("Relu", "r", &["x"], &["y"])], &[("x", &[-1, 2])], &["y"]);
        m.graph.as_mut().unwrap().output[0] = vi("y", &[4, 2]);
        let mut g = Graph::from_model(&m).unwrap();
        g.infer_shapes().unwrap();
        assert_eq!(g.shapes["y"], [k(4), k(2)]);
    }
}
