//! Indexing operators: Gather, GatherND and Slice with ONNX index semantics (negative indices,
//! clamped ranges, negative steps).

use tch::{Kind, Tensor};

use super::exec::{invalid, norm_axis, Res};
use crate::graph::array::slice_plan;

/// Indices into an axis of `dim` elements with negative ones counted from the end; an index
/// outside [-dim, dim) is an error (ONNX leaves it undefined; wrapping it would hide a bad model).
fn wrap_indices(idx: &Tensor, dim: i64) -> Res<Tensor> {
    if idx.numel() > 0 {
        let (lo, hi) = (idx.f_min()?.int64_value(&[]), idx.f_max()?.int64_value(&[]));
        if lo < -dim || hi >= dim {
            return invalid(format!("index {} is out of range for an axis of {dim}", if hi >= dim { hi } else { lo }));
        }
    }
    Ok(idx.f_remainder(dim)?)
}

pub(super) fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> Res<Tensor> {
    let rank = data.dim() as i64;
    let axis = norm_axis(axis, rank)?;
    let dim = data.size()[axis as usize];
    let idx = wrap_indices(&indices.f_to_kind(Kind::Int64)?, dim)?;
    let flat = data.f_index_select(axis, &idx.f_flatten(0, -1)?)?;
    let size = data.size();
    let mut shape: Vec<i64> = size[..axis as usize].to_vec();
    shape.extend(indices.size());
    shape.extend_from_slice(&size[axis as usize + 1..]);
    Ok(flat.f_reshape(shape.as_slice())?)
}

/// ONNX GatherND: indices of shape [B..., M..., k] (B: the `batch_dims` axes shared with data)
/// pick the slices data[b..., i_0, ..., i_{k-1}, :...]; output shape [B..., M..., data[b+k..]].
/// As advanced indexing: an arange per batch axis, then the k index columns, all broadcast over
/// [B..., M...].
pub(super) fn gather_nd(data: &Tensor, indices: &Tensor, batch_dims: i64) -> Res<Tensor> {
    let (dshape, ishape) = (data.size(), indices.size());
    let b = batch_dims as usize;
    let Some(&k) = ishape.last() else { return invalid("GatherND indices must have rank 1 or more") };
    let k = k as usize;
    if ishape.len() <= b || dshape.len() < b + k || dshape[..b] != ishape[..b] || b + k == 0 {
        return invalid(format!("GatherND: indices of shape {ishape:?} (batch_dims {b}) do not fit data of shape {dshape:?}"));
    }
    let lead = ishape.len() - 1;
    let idx = indices.f_to_kind(Kind::Int64)?;
    let mut index: Vec<Option<Tensor>> = Vec::with_capacity(b + k);
    for (j, &n) in ishape[..b].iter().enumerate() {
        let mut shape = vec![1; lead];
        shape[j] = n;
        index.push(Some(Tensor::f_arange(n, (Kind::Int64, data.device()))?.f_reshape(shape.as_slice())?));
    }
    for i in 0..k {
        index.push(Some(wrap_indices(&idx.f_select(-1, i as i64)?, dshape[b + i])?));
    }
    Ok(data.f_index(&index)?)
}

pub(super) fn slice(x: &Tensor, starts: &[i64], ends: &[i64], axes: Option<&[i64]>, steps: Option<&[i64]>) -> Res<Tensor> {
    let plan = match slice_plan(&x.size(), starts, ends, axes, steps) {
        Ok(plan) => plan,
        Err(message) => return invalid(message),
    };
    let mut t = x.shallow_clone();
    for (axis, range) in plan.into_iter().enumerate() {
        let (axis, len) = (axis as i64, range.len as i64);
        if len == 0 {
            t = t.f_narrow(axis, 0, 0)?;
        } else if range.step > 0 {
            t = t.f_slice(axis, range.start, range.start + (len - 1) * range.step + 1, range.step)?;
        } else {
            // libtorch slices forward only: take the same elements forward, then reverse them.
            let last = range.start + (len - 1) * range.step;
            t = t.f_slice(axis, last, range.start + 1, -range.step)?.f_flip([axis])?;
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The five examples of the ONNX GatherND specification.
    #[test]
    fn gather_nd_follows_the_onnx_examples() {
        let t = |v: &[i64], shape: &[i64]| Tensor::from_slice(v).reshape(shape);
        let run = |data: &Tensor, idx: &Tensor, b: i64| {
            let out = gather_nd(data, idx, b).unwrap();
            (out.size(), Vec::<i64>::try_from(&out.flatten(0, -1)).unwrap())
        };
        let d2 = t(&[0, 1, 2, 3], &[2, 2]);
        let d3 = t(&[0, 1, 2, 3, 4, 5, 6, 7], &[2, 2, 2]);
        assert_eq!(run(&d2, &t(&[0, 0, 1, 1], &[2, 2]), 0), (vec![2], vec![0, 3]));
        assert_eq!(run(&d2, &t(&[1, 0], &[2, 1]), 0), (vec![2, 2], vec![2, 3, 0, 1]));
        assert_eq!(run(&d3, &t(&[0, 1, 1, 0], &[2, 2]), 0), (vec![2, 2], vec![2, 3, 4, 5]));
        assert_eq!(run(&d3, &t(&[0, 1, 1, 0], &[2, 1, 2]), 0), (vec![2, 1, 2], vec![2, 3, 4, 5]));
        assert_eq!(run(&d3, &t(&[1, 0], &[2, 1]), 1), (vec![2, 2], vec![2, 3, 4, 5]));
        // Negative indices count from the end; shapes that do not fit are refused.
        assert_eq!(run(&d2, &t(&[-1, -2], &[1, 2]), 0), (vec![1], vec![2]));
        assert!(gather_nd(&d2, &t(&[0, 0, 0], &[1, 3]), 0).is_err());
        assert!(gather_nd(&d2, &t(&[2, 0], &[1, 2]), 0).is_err());
        assert!(gather(&d2, &t(&[-3], &[1]), 1).is_err());
    }
}
