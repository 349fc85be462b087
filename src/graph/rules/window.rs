//! Conv and pooling: sliding-window output sizes.

use super::{Ctx, Res};
use crate::graph::dims::unify;
use crate::graph::{shape_string, Dim, Shape};

/// Output size of a sliding window on an input of size `n`, as onnxruntime and PyTorch compute
/// it. `ceil` also drops a last window that would start in the right padding.
pub(super) fn window(
    n: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pads: (i64, i64),
    auto_pad: &str,
    ceil: bool,
) -> Res<i64> {
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
pub(super) fn spatial(
    ctx: &Ctx,
    x: &[Dim],
    kernel: &[i64],
    ceil: bool,
    dilations_allowed: bool,
) -> Res<Option<Vec<Dim>>> {
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
                    && pads[i] as i128 + pads[i + k] as i128 == dilations[i] as i128 * (kernel[i] as i128 - 1);
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

pub(super) fn conv(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(x), Some(w)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!(
            "input {} and weight {} must have the same rank, at least 3",
            shape_string(x),
            shape_string(w)
        ));
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
            return Err(format!(
                "bias {} does not match the {} output channels of weight {}",
                shape_string(b),
                w[0],
                shape_string(w)
            ));
        }
    }
    let kernel: Vec<i64> = match ctx.node.attributes.ints("kernel_shape").filter(|k| !k.is_empty()) {
        Some(k) => {
            if let Some(mismatch) = k.iter().zip(&w[2..]).find(|(a, b)| b.known().is_some_and(|b| b != **a)) {
                return Err(format!(
                    "kernel_shape {k:?} disagrees with weight {} ({} vs {})",
                    shape_string(w),
                    mismatch.0,
                    mismatch.1
                ));
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

pub(super) fn pool(ctx: &Ctx) -> Res<Option<Shape>> {
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
