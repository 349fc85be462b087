//! Operators that create tensors: Constant, ConstantOfShape, Range.

use super::{Ctx, Res};
use crate::graph::{Dim, Shape};

pub(super) fn constant(ctx: &Ctx) -> Res<Option<Shape>> {
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

pub(super) fn constant_of_shape(ctx: &Ctx) -> Res<Option<Shape>> {
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

pub(super) fn range(ctx: &Ctx) -> Res<Option<Shape>> {
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
