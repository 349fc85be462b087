//! Operators that move elements around without computing: Reshape, Flatten, Transpose, Concat,
//! Gather, Unsqueeze, Squeeze, Slice, Split, Pad, Expand, Tile.

use super::math::reduced;
use super::{Ctx, Outs, Res};
use crate::graph::array::{norm_axis, slice_plan};
use crate::graph::dims::{add, broadcast_shapes, unify, Product};
use crate::graph::{shape_string, Dim, Shape};

pub(super) fn flatten(ctx: &Ctx) -> Res<Option<Shape>> {
    let Some(x) = ctx.shape(0) else { return Ok(None) };
    let rank = x.len() as i64;
    let axis = ctx.attr_i("axis", 1);
    let axis = if axis < 0 { axis + rank } else { axis };
    if !(0..=rank).contains(&axis) {
        return Err(format!("axis {} is out of range for input {}", ctx.attr_i("axis", 1), shape_string(x)));
    }
    let (head, tail) = x.split_at(axis as usize);
    let (Some(h), Some(t)) = (Product::of(head).and_then(|p| p.to_dim()), Product::of(tail).and_then(|p| p.to_dim()))
    else {
        return Ok(None);
    };
    Ok(Some(vec![h, t]))
}

pub(super) fn reshape(ctx: &Ctx) -> Res<Option<Shape>> {
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
                Some(x) => x.get(i).cloned().ok_or_else(|| {
                    format!("target dim {i} is 0 (copy) but input {} has no axis {i}", shape_string(x))
                })?,
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

pub(super) fn transpose(ctx: &Ctx) -> Res<Option<Shape>> {
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

pub(super) fn concat(ctx: &Ctx) -> Res<Option<Shape>> {
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
                out[i] = unify(&out[i], d).map_err(|e| {
                    format!(
                        "inputs {} and {} differ on axis {i} ({e}), concatenating on axis {axis}",
                        shape_string(first),
                        shape_string(s)
                    )
                })?;
            }
        }
    }
    Ok(Some(out))
}

pub(super) fn pad(ctx: &Ctx) -> Res<Option<Shape>> {
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

pub(super) fn gather(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(x), Some(idx)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if x.is_empty() {
        return Err("data is a scalar".into());
    }
    let axis = norm_axis(ctx.attr_i("axis", 0), x.len())?;
    Ok(Some(x[..axis].iter().chain(idx).chain(&x[axis + 1..]).cloned().collect()))
}

/// Axes from the attribute (before opset 13) or from input 1.
pub(super) fn axes_of(ctx: &Ctx) -> Option<Option<Vec<i64>>> {
    if ctx.opset < 13 {
        Some(ctx.node.attributes.ints("axes").map(<[i64]>::to_vec))
    } else if ctx.has_input(1) {
        ctx.ints(1).map(Some)
    } else {
        Some(None)
    }
}

pub(super) fn unsqueeze(ctx: &Ctx) -> Res<Option<Shape>> {
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
    Ok(Some(
        (0..rank)
            .map(|i| {
                if positions.binary_search(&i).is_ok() {
                    Dim::Known(1)
                } else {
                    rest.next().expect("rank adds up").clone()
                }
            })
            .collect(),
    ))
}

pub(super) fn squeeze(ctx: &Ctx) -> Res<Option<Shape>> {
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

pub(super) fn slice(ctx: &Ctx) -> Res<Option<Shape>> {
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
    if starts.len() != ends.len()
        || axes.len() != starts.len()
        || steps.as_ref().is_some_and(|s| s.len() != starts.len())
    {
        return Err("starts, ends, axes and steps have different lengths".into());
    }
    let mut out = x.clone();
    for (k, &axis) in axes.iter().enumerate() {
        let a = norm_axis(axis, x.len())?;
        let step = steps.as_ref().map_or(1, |s| s[k]);
        match &x[a] {
            Dim::Known(n) => {
                let plan = slice_plan(&[*n], &[starts[k]], &[ends[k]], None, Some(&[step]))
                    .map_err(|e| format!("axis {axis}: {e}"))?;
                out[a] = Dim::Known(plan[0].len as i64);
            }
            // The whole of a symbolic axis (torch's `x[:, ...]`) keeps its symbol.
            Dim::Symbolic(_) if starts[k] == 0 && step == 1 && ends[k] >= i32::MAX as i64 => {}
            Dim::Symbolic(_) => return Ok(None),
        }
    }
    Ok(Some(out))
}

pub(super) fn split(ctx: &Ctx) -> Outs {
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
                return Err(format!(
                    "split sizes {s:?} for {n} outputs do not add up to axis {axis} of input {}",
                    shape_string(x)
                ));
            }
            s
        }
        None if ctx.opset >= 18 => {
            let parts = ctx.node.attributes.int("num_outputs").unwrap_or(n as i64);
            if parts < 1 || parts as usize != n {
                return Err(format!("num_outputs {parts} differs from the {n} outputs"));
            }
            // i128 and max(0): dims from an untrusted file must not overflow or make clamp panic.
            let (total, parts) = (total.max(0) as i128, parts as i128);
            let chunk = (total + parts - 1) / parts;
            (0..parts).map(|i| (total - i * chunk).clamp(0, chunk) as i64).collect()
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

pub(super) fn expand(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(x), Some(v)) = (ctx.shape(0), ctx.values.get(1).copied().flatten()) else { return Ok(None) };
    let Some(target) = v.data.iter().cloned().collect::<Option<Vec<Dim>>>() else { return Ok(None) };
    broadcast_shapes(&[x, &target])
}

pub(super) fn tile(ctx: &Ctx) -> Res<Option<Shape>> {
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
