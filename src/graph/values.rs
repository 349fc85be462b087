//! Propagation of the values of small integer tensors through the shape arithmetic exporters
//! emit (Shape → Gather → Unsqueeze → Concat → Reshape, Slice, Cast, int Add/Mul/…, Range).
//!
//! Why values and not just shapes: a TorchScript `x.view(x.size(0), -1)` reaches Reshape as a
//! tensor computed at run time. Knowing that tensor is `[N, -1]`, with the batch symbol intact,
//! lets inference give the Reshape output `[N, 64]`, and lets constant folding replace the whole
//! chain by an initializer once every element is a number. Elements are `Option<Dim>`: a number,
//! a symbol, or unknown. Nothing here fails: a value that cannot be computed is just absent
//! (the shape rules report real inconsistencies).

use super::array::{broadcast_zip, Array};
use super::infer::{is_int_type, Value};
use super::rules::Ctx;
use super::{Dim, Shape};

/// Values of the node's outputs, where computable (an empty or short result means none).
pub(crate) fn propagate(ctx: &Ctx, shapes: &[Option<Shape>], types: &[Option<i32>]) -> Vec<Option<Value>> {
    // Only integer outputs carry values.
    if !types.first().copied().flatten().is_some_and(is_int_type) {
        return Vec::new();
    }
    let out_dims = || -> Option<Vec<usize>> {
        shapes.first()?.as_ref()?.iter().map(|d| d.known().and_then(|n| usize::try_from(n).ok())).collect()
    };
    let input = |i: usize| ctx.values.get(i).copied().flatten();
    let v: Option<Value> = match ctx.node.op_type.as_str() {
        "Constant" => constant(ctx),
        "Shape" => ctx.shapes.first().copied().flatten().map(|x| {
            let rank = x.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clamp(ctx.node.attributes.int("start").unwrap_or(0));
            let end = clamp(ctx.node.attributes.int("end").unwrap_or(rank));
            Array::vector(x[start..end.max(start)].iter().cloned().map(Some).collect())
        }),
        "Size" => ctx
            .shapes
            .first()
            .copied()
            .flatten()
            .map(|x| Array::scalar(super::dims::Product::of(x).and_then(|p| p.to_dim()))),
        "Gather" => (|| {
            let indices = input(1)?;
            let idx = Array::new(
                indices.dims.clone(),
                indices.data.iter().map(|d| d.as_ref()?.known()).collect::<Option<Vec<i64>>>()?,
            )
            .ok()?;
            input(0)?.gather(ctx.node.attributes.int("axis").unwrap_or(0), &idx).ok()
        })(),
        "Identity" | "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
            input(0).and_then(|v| v.reshaped(out_dims()?).ok())
        }
        "Cast" => input(0).filter(|_| ctx.types.first().copied().flatten().is_some_and(is_int_type)).cloned(),
        "Concat" => (|| {
            let parts: Vec<&Value> = (0..ctx.node.inputs.len()).map(input).collect::<Option<_>>()?;
            Array::concat(&parts, ctx.node.attributes.int("axis")?).ok()
        })(),
        "Slice" => slice(ctx),
        "Add" | "Sub" | "Mul" | "Div" => (|| {
            let (a, b) = (input(0)?, input(1)?);
            broadcast_zip(a, b, |x, y| arith(&ctx.node.op_type, x.as_ref()?, y.as_ref()?)).ok()
        })(),
        "ConstantOfShape" => (|| {
            let dims: Vec<usize> =
                input(0)?.data.iter().map(|d| usize::try_from(d.as_ref()?.known()?).ok()).collect::<Option<_>>()?;
            let fill = match ctx.node.attributes.tensor("value").ok()? {
                Some(t) => *t.to_i64().first()?,
                None => 0,
            };
            Array::filled(dims, Some(Dim::Known(fill))).ok()
        })(),
        "Range" => (|| {
            let scalar = |i| -> Option<i64> { input(i)?.data.first()?.as_ref()?.known() };
            // The length comes from the shape rule, which used the limit.
            let (start, delta) = (scalar(0)?, scalar(2)?);
            let n = out_dims()?.first().copied().filter(|&n| n <= super::array::MAX_ELEMENTS)?;
            let data = (0..n as i64)
                .map(|i| i.checked_mul(delta).and_then(|x| x.checked_add(start)).map(Dim::Known))
                .collect();
            Array::new(vec![n], data).ok()
        })(),
        _ => None,
    };
    // A value must agree with the inferred shape where both exist (defensive: never let a wrong
    // value through to folding).
    match (&v, shapes.first().and_then(Option::as_ref)) {
        (Some(value), Some(s))
            if s.len() != value.dims.len()
                || s.iter().zip(&value.dims).any(|(d, &n)| d.known().is_some_and(|d| d != n as i64)) =>
        {
            vec![None]
        }
        _ => vec![v],
    }
}

fn constant(ctx: &Ctx) -> Option<Value> {
    let a = &ctx.node.attributes;
    if let Some(t) = a.tensor("value").ok()? {
        if !is_int_type(t.elem_type as i32) {
            return None;
        }
        let dims = super::array::to_sizes(&t.dims).ok()?;
        return Array::new(dims, t.to_i64().into_iter().map(|x| Some(Dim::Known(x))).collect()).ok();
    }
    if let Some(v) = a.int("value_int") {
        return Some(Array::scalar(Some(Dim::Known(v))));
    }
    a.ints("value_ints").map(|v| Array::vector(v.iter().map(|&x| Some(Dim::Known(x))).collect()))
}

fn slice(ctx: &Ctx) -> Option<Value> {
    let data = ctx.values.first().copied().flatten()?;
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        let a = &ctx.node.attributes;
        (a.ints("starts")?.to_vec(), a.ints("ends")?.to_vec(), a.ints("axes").map(<[i64]>::to_vec), None)
    } else {
        let opt = |i: usize| -> Option<Option<Vec<i64>>> {
            if ctx.node.inputs.get(i).is_some_and(|t| !t.is_empty()) {
                ctx.ints(i).map(Some)
            } else {
                Some(None)
            }
        };
        (ctx.ints(1)?, ctx.ints(2)?, opt(3)?, opt(4)?)
    };
    data.slice(&starts, &ends, axes.as_deref(), steps.as_deref()).ok()
}

/// Integer arithmetic on dims: exact on numbers, identities on symbols (x*1, x+0, x-0, x/1).
/// Division truncates toward zero like onnxruntime's integer Div; division by zero is unknown.
fn arith(op: &str, a: &Dim, b: &Dim) -> Option<Dim> {
    match (op, a, b) {
        ("Add", Dim::Known(x), Dim::Known(y)) => x.checked_add(*y).map(Dim::Known),
        ("Sub", Dim::Known(x), Dim::Known(y)) => x.checked_sub(*y).map(Dim::Known),
        ("Mul", Dim::Known(x), Dim::Known(y)) => x.checked_mul(*y).map(Dim::Known),
        ("Div", Dim::Known(x), Dim::Known(y)) => x.checked_div(*y).map(Dim::Known),
        ("Add" | "Sub", _, Dim::Known(0)) => Some(a.clone()),
        ("Mul" | "Div", _, Dim::Known(1)) => Some(a.clone()),
        ("Add", Dim::Known(0), _) | ("Mul", Dim::Known(1), _) => Some(b.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_keeps_symbols_only_through_identities() {
        let n = Dim::Symbolic("N".into());
        assert_eq!(arith("Mul", &n, &Dim::Known(1)), Some(n.clone()));
        assert_eq!(arith("Add", &Dim::Known(0), &n), Some(n.clone()));
        assert_eq!(arith("Sub", &n, &Dim::Known(0)), Some(n.clone()));
        assert_eq!(arith("Div", &n, &Dim::Known(0)), None);
        assert_eq!(arith("Mul", &n, &Dim::Known(2)), None);
        assert_eq!(arith("Div", &Dim::Known(-7), &Dim::Known(2)), Some(Dim::Known(-3)));
        assert_eq!(arith("Div", &Dim::Known(7), &Dim::Known(0)), None);
    }
}
