//! Broadcasting elementwise operators, reductions and matrix products.

use super::{Ctx, Outs, Res};
use crate::graph::array::norm_axis;
use crate::graph::dims::{broadcast_shapes, unify};
use crate::graph::{shape_string, Dim, Shape};

/// Numpy broadcasting over all inputs (legacy `broadcast` attribute before opset 7: the result
/// has the first input's shape).
pub(super) fn broadcast(ctx: &Ctx) -> Outs {
    if ctx.opset < 7
        && matches!(
            ctx.node.op_type.as_str(),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "And" | "Or" | "Xor" | "Equal" | "Less" | "Greater"
        )
    {
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
pub(super) fn reduced(x: &[Dim], axes: &[usize], keep: bool) -> Shape {
    x.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keep) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect()
}

pub(super) fn reduce(ctx: &Ctx) -> Res<Option<Shape>> {
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

pub(super) fn gemm(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if a.len() != 2 || b.len() != 2 {
        return Err(format!("A {} and B {} must be matrices", shape_string(a), shape_string(b)));
    }
    let (m, ka) = if ctx.attr_i("transA", 0) != 0 { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if ctx.attr_i("transB", 0) != 0 { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    unify(ka, kb).map_err(|e| {
        format!(
            "inner dimensions of A {} and B {} differ ({e}; transA={}, transB={})",
            shape_string(a),
            shape_string(b),
            ctx.attr_i("transA", 0),
            ctx.attr_i("transB", 0)
        )
    })?;
    let out = vec![m.clone(), n.clone()];
    if let Some(c) = ctx.shape(2) {
        // C broadcasts to the result, one way only.
        if let Some(full) = broadcast_shapes(&[c, &out])
            .map_err(|e| format!("C {} does not broadcast to {}: {e}", shape_string(c), shape_string(&out)))?
        {
            if full.len() != 2
                || full.iter().zip(&out).any(|(f, o)| f.known().zip(o.known()).is_some_and(|(f, o)| f != o))
            {
                return Err(format!("C {} does not broadcast to {}", shape_string(c), shape_string(&out)));
            }
        }
    }
    Ok(Some(out))
}

pub(super) fn matmul(ctx: &Ctx) -> Res<Option<Shape>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(1)) else { return Ok(None) };
    if a.is_empty() || b.is_empty() {
        return Err(format!("scalar operand ({} × {})", shape_string(a), shape_string(b)));
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::Known(1), a[0].clone()] } else { a.clone() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0].clone(), Dim::Known(1)] } else { b.clone() };
    let (ra, rb) = (a2.len(), b2.len());
    unify(&a2[ra - 1], &b2[rb - 2])
        .map_err(|e| format!("inner dimensions of {} and {} differ ({e})", shape_string(a), shape_string(b)))?;
    let Some(mut out) = broadcast_shapes(&[&a2[..ra - 2], &b2[..rb - 2]]).map_err(|e| {
        format!("batch dimensions of {} and {} do not broadcast: {e}", shape_string(a), shape_string(b))
    })?
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
