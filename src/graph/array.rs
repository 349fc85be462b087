//! Small dense arrays and the data-movement kernels (Gather, Concat, Slice, broadcasting) that
//! shape arithmetic needs.
//!
//! Written once, generically over the element, because two passes evaluate the same
//! Shape→Gather→Unsqueeze→Concat chains: shape inference on partly symbolic values
//! (`Option<Dim>` elements, so a batch "N" can flow into a Reshape target) and constant folding
//! on plain integers. Every kernel checks its arguments and returns an error string instead of
//! panicking, because the values come from an untrusted model.

/// Elements of arrays that shape arithmetic may build; above this, a tensor is data, not a shape,
/// and is neither tracked nor folded (a guard against huge ConstantOfShape/Range outputs).
pub(crate) const MAX_ELEMENTS: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Array<T> {
    pub dims: Vec<usize>,
    pub data: Vec<T>,
}

pub(crate) type Res<T> = Result<T, String>;

/// Normalises a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Res<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

fn count(dims: &[usize]) -> Res<usize> {
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("element count overflows")?;
    if n > MAX_ELEMENTS {
        return Err(format!("{n} elements exceed the {MAX_ELEMENTS}-element limit of shape arithmetic"));
    }
    Ok(n)
}

/// Converts ONNX dims (i64) to sizes, rejecting negative ones.
pub(crate) fn to_sizes(dims: &[i64]) -> Res<Vec<usize>> {
    dims.iter().map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}"))).collect()
}

impl<T: Clone> Array<T> {
    pub fn new(dims: Vec<usize>, data: Vec<T>) -> Res<Self> {
        if count(&dims)? != data.len() {
            return Err(format!("dims {dims:?} do not match {} elements", data.len()));
        }
        Ok(Array { dims, data })
    }

    pub fn scalar(v: T) -> Self {
        Array { dims: vec![], data: vec![v] }
    }

    pub fn vector(data: Vec<T>) -> Self {
        Array { dims: vec![data.len()], data }
    }

    pub fn filled(dims: Vec<usize>, v: T) -> Res<Self> {
        let n = count(&dims)?;
        Ok(Array { dims, data: vec![v; n] })
    }

    /// The same elements under new dims (Reshape, Flatten, Squeeze, Unsqueeze).
    pub fn reshaped(&self, dims: Vec<usize>) -> Res<Self> {
        Array::new(dims, self.data.clone())
    }

    /// (outer, axis size, inner) element counts around `axis`.
    fn split_at(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.dims[..axis].iter().product();
        let inner = self.dims[axis + 1..].iter().product();
        (outer, self.dims[axis], inner)
    }

    /// ONNX Gather along `axis` with integer `indices` (negative ones count from the end).
    pub fn gather(&self, axis: i64, indices: &Array<i64>) -> Res<Self> {
        let axis = norm_axis(axis, self.dims.len())?;
        let (outer, size, inner) = self.split_at(axis);
        let mut dims = self.dims[..axis].to_vec();
        dims.extend(&indices.dims);
        dims.extend(&self.dims[axis + 1..]);
        count(&dims)?;
        let idx: Vec<usize> = indices
            .data
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + size as i64 } else { i };
                if (0..size as i64).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(format!("index {i} is out of range for a dimension of size {size}"))
                }
            })
            .collect::<Res<_>>()?;
        let mut data = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &j in &idx {
                let start = (o * size + j) * inner;
                data.extend_from_slice(&self.data[start..start + inner]);
            }
        }
        Array::new(dims, data)
    }

    /// ONNX Concat along `axis`.
    pub fn concat(parts: &[&Self], axis: i64) -> Res<Self> {
        let first = parts.first().ok_or("no inputs")?;
        let axis = norm_axis(axis, first.dims.len())?;
        for p in parts {
            let same_rank = p.dims.len() == first.dims.len();
            if !same_rank || p.dims.iter().zip(&first.dims).enumerate().any(|(i, (a, b))| i != axis && a != b) {
                return Err(format!(
                    "inputs of dims {:?} and {:?} cannot be concatenated on axis {axis}",
                    first.dims, p.dims
                ));
            }
        }
        let mut dims = first.dims.clone();
        dims[axis] = parts.iter().map(|p| p.dims[axis]).sum();
        let outer: usize = first.dims[..axis].iter().product();
        let mut data = Vec::with_capacity(count(&dims)?);
        for o in 0..outer {
            for p in parts {
                let chunk = p.dims[axis..].iter().product::<usize>();
                data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
            }
        }
        Array::new(dims, data)
    }

    /// ONNX Slice (opset ≥ 10 semantics; clamping as the specification describes).
    pub fn slice(&self, starts: &[i64], ends: &[i64], axes: Option<&[i64]>, steps: Option<&[i64]>) -> Res<Self> {
        let plan = slice_plan(&self.dims.iter().map(|&d| d as i64).collect::<Vec<_>>(), starts, ends, axes, steps)?;
        let dims: Vec<usize> = plan.iter().map(|r| r.len).collect();
        let n = count(&dims)?;
        let strides: Vec<usize> = (0..self.dims.len()).map(|i| self.dims[i + 1..].iter().product()).collect();
        let mut data = Vec::with_capacity(n);
        let mut pos = vec![0usize; dims.len()];
        for _ in 0..n {
            let offset: usize = pos
                .iter()
                .zip(&plan)
                .zip(&strides)
                .map(|((&p, r), &s)| (r.start + p as i64 * r.step) as usize * s)
                .sum();
            data.push(self.data[offset].clone());
            for d in (0..dims.len()).rev() {
                pos[d] += 1;
                if pos[d] < dims[d] {
                    break;
                }
                pos[d] = 0;
            }
        }
        Array::new(dims, data)
    }
}

/// One axis of a slice: first index, step and resulting length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SliceRange {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

/// Resolves Slice arguments against `dims` (all known) into one range per axis.
pub(crate) fn slice_plan(
    dims: &[i64],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Res<Vec<SliceRange>> {
    let rank = dims.len();
    let default_axes: Vec<i64> = (0..starts.len() as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.is_some_and(|s| s.len() != starts.len()) {
        return Err(format!(
            "starts, ends, axes and steps have different lengths ({}, {}, {}, {})",
            starts.len(),
            ends.len(),
            axes.len(),
            steps.map_or(starts.len(), <[i64]>::len)
        ));
    }
    let mut plan: Vec<SliceRange> =
        dims.iter().map(|&d| SliceRange { start: 0, step: 1, len: d.max(0) as usize }).collect();
    let mut seen = vec![false; rank];
    for (k, &axis) in axes.iter().enumerate() {
        let a = norm_axis(axis, rank)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("axis {axis} is sliced twice"));
        }
        let dim = dims[a];
        let step = steps.map_or(1, |s| s[k]);
        if step == 0 {
            return Err("a step of 0".into());
        }
        if dim <= 0 {
            plan[a] = SliceRange { start: 0, step, len: 0 };
            continue;
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = (fix(starts[k]), fix(ends[k]));
        let (start, end) = if step > 0 {
            (start.clamp(0, dim), end.clamp(0, dim))
        } else {
            (start.clamp(0, dim - 1), end.clamp(-1, dim - 1))
        };
        let len = if step > 0 {
            if end > start {
                (end - start + step - 1) / step
            } else {
                0
            }
        } else if start > end {
            (start - end + (-step) - 1) / (-step)
        } else {
            0
        };
        plan[a] = SliceRange { start, step, len: len as usize };
    }
    Ok(plan)
}

/// Numpy broadcasting of two shapes of known sizes.
pub(crate) fn broadcast_sizes(a: &[usize], b: &[usize]) -> Res<Vec<usize>> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, rank - s.len()).chain(s.iter().copied()).collect() };
    let (a, b) = (pad(a), pad(b));
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Ok(x),
            (1, _) => Ok(y),
            (_, 1) => Ok(x),
            _ => Err(format!("dims {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// Elementwise `f` with numpy broadcasting.
pub(crate) fn broadcast_zip<A: Clone, B: Clone, C: Clone>(
    a: &Array<A>,
    b: &Array<B>,
    mut f: impl FnMut(&A, &B) -> C,
) -> Res<Array<C>> {
    let dims = broadcast_sizes(&a.dims, &b.dims)?;
    let n = count(&dims)?;
    let index = |src: &[usize], flat: usize| -> usize {
        // Map a flat index of the output to the (broadcast) source.
        let mut rem = flat;
        let mut offset = 0;
        let mut stride = 1;
        for (i, &d) in dims.iter().enumerate().rev() {
            let coord = rem % d.max(1);
            rem /= d.max(1);
            let k = i as isize - (dims.len() - src.len()) as isize;
            if k >= 0 {
                let sd = src[k as usize];
                if sd != 1 {
                    offset += coord * stride;
                }
                stride *= sd;
            }
        }
        offset
    };
    let data = (0..n).map(|i| f(&a.data[index(&a.dims, i)], &b.data[index(&b.dims, i)])).collect();
    Array::new(dims, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(dims: &[usize], data: &[i64]) -> Array<i64> {
        Array::new(dims.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn gather_concat_slice() {
        let shape = arr(&[4], &[8, 3, 32, 32]);
        assert_eq!(shape.gather(0, &Array::scalar(0)).unwrap(), Array::scalar(8));
        assert_eq!(shape.gather(0, &arr(&[2], &[-1, 1])).unwrap(), arr(&[2], &[32, 3]));
        assert!(shape.gather(0, &Array::scalar(4)).is_err());
        let m = arr(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(m.gather(1, &arr(&[1], &[2])).unwrap(), arr(&[2, 1], &[3, 6]));
        let c = Array::concat(&[&arr(&[1], &[8]), &arr(&[1], &[-1])], 0).unwrap();
        assert_eq!(c, arr(&[2], &[8, -1]));
        assert_eq!(Array::concat(&[&m, &arr(&[2, 1], &[7, 8])], 1).unwrap(), arr(&[2, 4], &[1, 2, 3, 7, 4, 5, 6, 8]));
        assert!(Array::concat(&[&m, &arr(&[1, 1], &[7])], 1).is_err());
        assert_eq!(shape.slice(&[1], &[i64::MAX], None, None).unwrap(), arr(&[3], &[3, 32, 32]));
        assert_eq!(shape.slice(&[-1], &[i64::MIN], None, Some(&[-2])).unwrap(), arr(&[2], &[32, 3]));
        assert_eq!(m.slice(&[1], &[3], Some(&[1]), None).unwrap(), arr(&[2, 2], &[2, 3, 5, 6]));
        let empty = Array::<i64>::new(vec![0], vec![]).unwrap();
        assert_eq!(empty.slice(&[-1], &[i64::MIN], None, Some(&[-1])).unwrap(), empty);
    }

    #[test]
    fn broadcasting() {
        let a = arr(&[2, 1], &[1, 2]);
        let b = arr(&[3], &[10, 20, 30]);
        assert_eq!(broadcast_zip(&a, &b, |x, y| x * y).unwrap(), arr(&[2, 3], &[10, 20, 30, 20, 40, 60]));
        assert!(broadcast_sizes(&[3], &[4]).is_err());
        assert_eq!(broadcast_sizes(&[5, 1, 4], &[3, 1]).unwrap(), vec![5, 3, 4]);
    }

    #[test]
    fn huge_arrays_are_refused() {
        assert!(Array::filled(vec![1 << 20], 0i64).is_err());
    }
}
