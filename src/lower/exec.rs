//! Executes one parsed operator with libtorch. Semantics follow the ONNX operator specification
//! (and onnxruntime where the specification leaves room), not PyTorch's defaults.

use tch::{Kind, Tensor};

use super::indexing::{gather, gather_nd, slice};
use super::ops::{Binary, Op};
use super::window::{avg_pool, conv, max_pool};
use crate::onnx::TensorData;

/// Why an operator could not run on the given inputs.
#[derive(Debug)]
pub enum ExecError {
    Torch(tch::TchError),
    Invalid(String),
}

impl From<tch::TchError> for ExecError {
    fn from(e: tch::TchError) -> Self {
        ExecError::Torch(e)
    }
}

pub(super) type Res<T> = Result<T, ExecError>;

pub(super) fn invalid<T>(reason: impl Into<String>) -> Res<T> {
    Err(ExecError::Invalid(reason.into()))
}

/// The `i`-th input; an error if it is missing or omitted.
fn input<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Res<&'a Tensor> {
    match inputs.get(i) {
        Some(Some(t)) => Ok(t),
        _ => invalid(format!("input {i} is required")),
    }
}

fn optional<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// Values of a small integer tensor (shapes, axes, pads) as a Vec.
pub fn int_values(t: &Tensor) -> Res<Vec<i64>> {
    let flat = t.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?.f_to_device(tch::Device::Cpu)?;
    Ok(Vec::<i64>::try_from(&flat)?)
}

fn scalar_value(t: &Tensor) -> Res<f64> {
    if t.numel() != 1 {
        return invalid(format!("expected a scalar, got shape {:?}", t.size()));
    }
    Ok(t.f_to_kind(Kind::Double)?.f_flatten(0, -1)?.f_double_value(&[0])?)
}

/// Axis in [0, rank) from a possibly negative ONNX axis.
pub(super) fn norm_axis(axis: i64, rank: i64) -> Res<i64> {
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank.max(1) {
        return invalid(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a)
}

fn is_float(t: &Tensor) -> bool {
    matches!(t.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

pub fn run(op: &Op, inputs: &[Option<&Tensor>], train: bool) -> Res<Vec<Tensor>> {
    let x = || input(inputs, 0);
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Conv { window, group } => one(conv(x()?, input(inputs, 1)?, optional(inputs, 2), window, *group)?),
        Op::BatchNorm { epsilon, momentum } => one(x()?.f_batch_norm(
            Some(input(inputs, 1)?),
            Some(input(inputs, 2)?),
            Some(input(inputs, 3)?),
            Some(input(inputs, 4)?),
            train,
            // ONNX: running = running * momentum + batch * (1 - momentum); torch: the reverse.
            1.0 - momentum,
            *epsilon,
            true,
        )?),
        Op::Relu => one(x()?.f_relu()?),
        Op::LeakyRelu { alpha } => {
            let x = x()?;
            one(x.f_where_self(&x.f_gt(0.0)?, &x.f_mul_scalar(*alpha)?)?)
        }
        Op::Clip { min, max } => {
            let lo = match min {
                Some(v) => Some(*v),
                None => optional(inputs, 1).map(scalar_value).transpose()?,
            };
            let hi = match max {
                Some(v) => Some(*v),
                None => optional(inputs, 2).map(scalar_value).transpose()?,
            };
            let x = x()?;
            let x = match lo { Some(v) => x.f_clamp_min(v)?, None => x.shallow_clone() };
            one(match hi { Some(v) => x.f_clamp_max(v)?, None => x })
        }
        Op::Sigmoid => one(x()?.f_sigmoid()?),
        Op::HardSigmoid { alpha, beta } => one(x()?.f_mul_scalar(*alpha)?.f_add_scalar(*beta)?.f_clamp(0.0, 1.0)?),
        Op::HardSwish => one(x()?.f_hardswish()?),
        Op::Binary(b) => one(binary(*b, x()?, input(inputs, 1)?)?),
        Op::Sum => {
            let mut acc = x()?.shallow_clone();
            for i in 1..inputs.len() {
                acc = acc.f_add(input(inputs, i)?)?;
            }
            one(acc)
        }
        Op::MaxPool { window, ceil_mode } => one(max_pool(x()?, window, *ceil_mode)?),
        Op::AveragePool { window, ceil_mode, count_include_pad } => {
            one(avg_pool(x()?, window, *ceil_mode, *count_include_pad)?)
        }
        Op::GlobalAveragePool => {
            let x = x()?;
            let dims: Vec<i64> = (2..x.dim() as i64).collect();
            one(x.f_mean_dim(dims.as_slice(), true, None::<Kind>)?)
        }
        Op::GlobalMaxPool => {
            let x = x()?;
            let dims: Vec<i64> = (2..x.dim() as i64).collect();
            one(x.f_amax(dims.as_slice(), true)?)
        }
        Op::ReduceMean { axes, keepdims, noop_with_empty_axes } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => a.clone(),
                None => optional(inputs, 1).map(int_values).transpose()?.unwrap_or_default(),
            };
            if axes.is_empty() && *noop_with_empty_axes {
                return one(x.shallow_clone());
            }
            let rank = x.dim() as i64;
            let axes: Vec<i64> = if axes.is_empty() {
                (0..rank).collect()
            } else {
                axes.iter().map(|&a| norm_axis(a, rank)).collect::<Res<_>>()?
            };
            one(x.f_mean_dim(axes.as_slice(), *keepdims, None::<Kind>)?)
        }
        Op::Flatten { axis } => {
            let x = x()?;
            let size = x.size();
            let axis = if *axis < 0 { axis + size.len() as i64 } else { *axis };
            if axis < 0 || axis > size.len() as i64 {
                return invalid(format!("axis {axis} is out of range for rank {}", size.len()));
            }
            let outer: i64 = size[..axis as usize].iter().product();
            let inner: i64 = size[axis as usize..].iter().product();
            one(x.f_reshape([outer, inner])?)
        }
        Op::Reshape { allowzero } => {
            let x = x()?;
            let mut shape = int_values(input(inputs, 1)?)?;
            if !allowzero {
                let size = x.size();
                for (i, d) in shape.iter_mut().enumerate() {
                    if *d == 0 {
                        *d = *size.get(i).ok_or_else(|| ExecError::Invalid(format!(
                            "shape entry {i} is 0 (copy) but the input has rank {}", size.len()
                        )))?;
                    }
                }
            }
            one(x.f_reshape(shape.as_slice())?)
        }
        Op::Transpose { perm } => {
            let x = x()?;
            let perm = perm.clone().unwrap_or_else(|| (0..x.dim() as i64).rev().collect());
            one(x.f_permute(perm.as_slice())?)
        }
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            let a = x()?;
            let b = input(inputs, 1)?;
            let a = if *trans_a { a.f_tr()? } else { a.shallow_clone() };
            let b = if *trans_b { b.f_tr()? } else { b.shallow_clone() };
            let out = match optional(inputs, 2) {
                Some(c) if *alpha == 1.0 && *beta == 1.0 => c.f_addmm(&a, &b)?,
                Some(c) => a.f_matmul(&b)?.f_mul_scalar(*alpha)?.f_add(&c.f_mul_scalar(*beta)?)?,
                None => a.f_matmul(&b)?.f_mul_scalar(*alpha)?,
            };
            one(out)
        }
        Op::MatMul => one(x()?.f_matmul(input(inputs, 1)?)?),
        Op::Concat { axis } => {
            let parts: Vec<&Tensor> = (0..inputs.len()).map(|i| input(inputs, i)).collect::<Res<_>>()?;
            let Some(first) = parts.first() else { return invalid("Concat needs at least one input") };
            let rank = first.dim() as i64;
            one(Tensor::f_cat(&parts, norm_axis(*axis, rank)?)?)
        }
        Op::Identity => one(x()?.shallow_clone()),
        Op::Constant(_) => invalid("Constant nodes are evaluated when the graph is lowered"),
        Op::ConstantOfShape(value) => one(constant_of_shape(&int_values(x()?)?, value, x()?.device())?),
        Op::Pad { mode, pads, value } => {
            let x = x()?;
            let pads = match pads {
                Some(p) => p.clone(),
                None => int_values(input(inputs, 1)?)?,
            };
            let value = match optional(inputs, 2) {
                Some(v) if pads.len() > 0 => scalar_value(v)?,
                _ => *value,
            };
            let axes = optional(inputs, 3).map(int_values).transpose()?;
            one(pad(x, &pads, axes.as_deref(), mode, value)?)
        }
        Op::Softmax { axis, legacy } => {
            let x = x()?;
            let rank = x.dim() as i64;
            let axis = norm_axis(*axis, rank)?;
            if *legacy {
                let size = x.size();
                let outer: i64 = size[..axis as usize].iter().product();
                let inner: i64 = size[axis as usize..].iter().product();
                one(x.f_reshape([outer, inner])?.f_softmax(1, None::<Kind>)?.f_reshape(size.as_slice())?)
            } else {
                one(x.f_softmax(axis, None::<Kind>)?)
            }
        }
        Op::Shape { start, end } => {
            let x = x()?;
            let size = x.size();
            let rank = size.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(rank)));
            let dims: Vec<i64> = if s < e { size[s..e].to_vec() } else { Vec::new() };
            one(Tensor::from_slice(&dims).f_to_device(x.device())?)
        }
        Op::Gather { axis } => one(gather(x()?, input(inputs, 1)?, *axis)?),
        Op::GatherNd { batch_dims } => one(gather_nd(x()?, input(inputs, 1)?, *batch_dims)?),
        Op::Unsqueeze { axes } => {
            let x = x()?;
            let axes = match axes { Some(a) => a.clone(), None => int_values(input(inputs, 1)?)? };
            let out_rank = x.dim() as i64 + axes.len() as i64;
            let mut axes: Vec<i64> = axes.iter().map(|&a| norm_axis(a, out_rank)).collect::<Res<_>>()?;
            axes.sort_unstable();
            let mut t = x.shallow_clone();
            for a in axes {
                t = t.f_unsqueeze(a)?;
            }
            one(t)
        }
        Op::Squeeze { axes } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => optional(inputs, 1).map(int_values).transpose()?,
            };
            let rank = x.dim() as i64;
            let size = x.size();
            let mut axes: Vec<i64> = match axes {
                Some(a) => a.iter().map(|&a| norm_axis(a, rank)).collect::<Res<_>>()?,
                None => (0..rank).filter(|&i| size[i as usize] == 1).collect(),
            };
            axes.sort_unstable_by(|a, b| b.cmp(a));
            let mut t = x.shallow_clone();
            for a in axes {
                if size[a as usize] != 1 {
                    return invalid(format!("cannot squeeze axis {a} of size {}", size[a as usize]));
                }
                t = t.f_squeeze_dim(a)?;
            }
            one(t)
        }
        Op::Cast { to_float } => one(x()?.f_to_kind(if *to_float { Kind::Float } else { Kind::Int64 })?),
        Op::Slice { starts, ends, axes } => {
            let x = x()?;
            let (starts, ends, axes, steps) = match (starts, ends) {
                (Some(s), Some(e)) => (s.clone(), e.clone(), axes.clone(), None),
                _ => (
                    int_values(input(inputs, 1)?)?,
                    int_values(input(inputs, 2)?)?,
                    optional(inputs, 3).map(int_values).transpose()?,
                    optional(inputs, 4).map(int_values).transpose()?,
                ),
            };
            one(slice(x, &starts, &ends, axes.as_deref(), steps.as_deref())?)
        }
        Op::Split { axis, split, outputs } => {
            let x = x()?;
            let axis = norm_axis(*axis, x.dim() as i64)?;
            let dim = x.size()[axis as usize];
            let sizes = match split {
                Some(s) => s.clone(),
                None => match optional(inputs, 1) {
                    Some(t) => int_values(t)?,
                    None => {
                        let n = (*outputs).max(1) as i64;
                        let chunk = (dim + n - 1) / n;
                        (0..n).map(|i| chunk.min(dim - i * chunk).max(0)).collect()
                    }
                },
            };
            Ok(x.f_split_with_sizes(sizes.as_slice(), axis)?)
        }
        Op::Range => {
            let start = input(inputs, 0)?;
            let kind = start.kind();
            let (s, l, d) = (scalar_value(start)?, scalar_value(input(inputs, 1)?)?, scalar_value(input(inputs, 2)?)?);
            let t = if is_float(start) {
                Tensor::f_arange_start_step(s, l, d, (kind, start.device()))?
            } else {
                Tensor::f_arange_start_step(s as i64, l as i64, d as i64, (kind, start.device()))?
            };
            one(t)
        }
        Op::Lrn { alpha, beta, bias, size } => one(lrn(x()?, *alpha, *beta, *bias, *size)?),
    }
}

/// ONNX ConstantOfShape: `shape` filled with the single element of `value`.
pub fn constant_of_shape(shape: &[i64], value: &crate::onnx::Tensor, device: tch::Device) -> Result<Tensor, tch::TchError> {
    match &value.data {
        TensorData::Float(v) => Tensor::f_full(shape, v.first().copied().unwrap_or(0.0) as f64, (Kind::Float, device)),
        TensorData::Int(v) => Tensor::f_full(shape, v.first().copied().unwrap_or(0), (Kind::Int64, device)),
    }
}

fn binary(op: Binary, a: &Tensor, b: &Tensor) -> Res<Tensor> {
    Ok(match op {
        Binary::Add => a.f_add(b)?,
        Binary::Sub => a.f_sub(b)?,
        Binary::Mul => a.f_mul(b)?,
        // Integer division truncates in ONNX; torch's `div` would return floats.
        Binary::Div if !is_float(a) && !is_float(b) => a.f_div_tensor_mode(b, "trunc")?,
        Binary::Div => a.f_div(b)?,
    })
}

/// ONNX Pad: pads = all begins then all ends (for `axes`, or every axis).
fn pad(x: &Tensor, pads: &[i64], axes: Option<&[i64]>, mode: &str, value: f64) -> Res<Tensor> {
    let rank = x.dim() as i64;
    let axes: Vec<i64> = match axes {
        Some(a) => a.iter().map(|&a| norm_axis(a, rank)).collect::<Res<_>>()?,
        None => (0..rank).collect(),
    };
    let n = axes.len();
    if pads.len() != 2 * n {
        return invalid(format!("pads has {} values for {n} axes", pads.len()));
    }
    let (mut begin, mut end) = (vec![0; rank as usize], vec![0; rank as usize]);
    for (i, &a) in axes.iter().enumerate() {
        begin[a as usize] = pads[i];
        end[a as usize] = pads[n + i];
    }
    let first = (0..rank as usize).find(|&i| begin[i] != 0 || end[i] != 0);
    let Some(first) = first else { return Ok(x.shallow_clone()) };
    let list: Vec<i64> = (first..rank as usize).rev().flat_map(|i| [begin[i], end[i]]).collect();
    let torch_mode = match mode {
        "constant" => return Ok(x.f_pad(list.as_slice(), "constant", value)?),
        "reflect" => "reflect",
        "edge" => "replicate",
        other => return invalid(format!("pad mode `{other}` is not supported (constant, reflect, edge)")),
    };
    Ok(x.f_pad(list.as_slice(), torch_mode, None::<f64>)?)
}

/// Local response normalisation across channels (ONNX LRN): the square sum over
/// [c - floor((size-1)/2), c + ceil((size-1)/2)] computed as an average pool over channels.
fn lrn(x: &Tensor, alpha: f64, beta: f64, bias: f64, size: i64) -> Res<Tensor> {
    let shape = x.size();
    if shape.len() < 3 {
        return invalid(format!("LRN needs an N,C,... input, got shape {shape:?}"));
    }
    let (n, c) = (shape[0], shape[1]);
    let rest: i64 = shape[2..].iter().product();
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let squares = x.f_square()?.f_reshape([n, 1, c, rest])?.f_constant_pad_nd([0, 0, before, after])?;
    let window_sum = squares
        .f_avg_pool2d([size, 1], [1, 1], [0, 0], false, true, None::<i64>)?
        .f_mul_scalar(size as f64)?
        .f_reshape(shape.as_slice())?;
    let denom = window_sum.f_mul_scalar(alpha / size as f64)?.f_add_scalar(bias)?.f_pow_tensor_scalar(beta)?;
    Ok(x.f_div(&denom)?)
}
