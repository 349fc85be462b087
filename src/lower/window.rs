//! Convolution and pooling windows: ONNX padding rules (explicit, SAME_UPPER/LOWER, asymmetric)
//! mapped onto libtorch's symmetric-padding kernels.

use tch::Tensor;

use super::exec::{invalid, Res};
use super::ops::{Padding, Window};

/// Explicit (begin, end) pads per spatial axis for input `x` and a window.
fn spatial_pads(x: &Tensor, window: &Window, kernel: &[i64]) -> Res<(Vec<i64>, Vec<i64>)> {
    let n = kernel.len();
    let size = x.size();
    if size.len() != n + 2 {
        return invalid(format!("expected a rank-{} input (N, C and {n} spatial axes), got shape {size:?}", n + 2));
    }
    let strides = per_axis(&window.strides, n, "strides")?;
    let dilations = per_axis(&window.dilations, n, "dilations")?;
    match &window.padding {
        Padding::Explicit(p) if p.is_empty() => Ok((vec![0; n], vec![0; n])),
        Padding::Explicit(p) if p.len() == 2 * n => Ok((p[..n].to_vec(), p[n..].to_vec())),
        Padding::Explicit(p) => invalid(format!("pads has {} values, {} spatial axes need {}", p.len(), n, 2 * n)),
        same => {
            let (mut begin, mut end) = (vec![0; n], vec![0; n]);
            for i in 0..n {
                let input = size[2 + i];
                let effective = (kernel[i] - 1) * dilations[i] + 1;
                let out = (input + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + effective - input).max(0);
                let small = total / 2;
                (begin[i], end[i]) = if *same == Padding::SameUpper { (small, total - small) } else { (total - small, small) };
            }
            Ok((begin, end))
        }
    }
}

/// A per-axis attribute, defaulting to 1 on every axis when absent.
fn per_axis(values: &[i64], n: usize, name: &str) -> Res<Vec<i64>> {
    match values.len() {
        0 => Ok(vec![1; n]),
        len if len == n => Ok(values.to_vec()),
        len => invalid(format!("{name} has {len} values for {n} spatial axes")),
    }
}

/// torch's pad list (last axis first) for spatial pads of an N,C,... tensor.
fn torch_spatial_pad(begin: &[i64], end: &[i64]) -> Vec<i64> {
    (0..begin.len()).rev().flat_map(|i| [begin[i], end[i]]).collect()
}

pub(super) fn conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, window: &Window, group: i64) -> Res<Tensor> {
    let kernel: Vec<i64> = w.size()[2..].to_vec();
    let n = kernel.len();
    let (begin, end) = spatial_pads(x, window, &kernel)?;
    let strides = per_axis(&window.strides, n, "strides")?;
    let dilations = per_axis(&window.dilations, n, "dilations")?;
    let (x, padding) = if begin == end {
        (x.shallow_clone(), begin)
    } else {
        (x.f_constant_pad_nd(torch_spatial_pad(&begin, &end).as_slice())?, vec![0; n])
    };
    Ok(x.f_convolution(w, b, strides.as_slice(), padding.as_slice(), dilations.as_slice(), false, vec![0; n].as_slice(), group)?)
}

pub(super) fn max_pool(x: &Tensor, window: &Window, ceil_mode: bool) -> Res<Tensor> {
    let kernel = &window.kernel;
    let n = kernel.len();
    let (begin, end) = spatial_pads(x, window, kernel)?;
    let strides = per_axis(&window.strides, n, "strides")?;
    let dilations = per_axis(&window.dilations, n, "dilations")?;
    // torch pads implicitly only when symmetric and at most half the kernel; otherwise pad
    // explicitly with -inf, which max pooling never selects.
    let native = begin == end && begin.iter().zip(kernel).all(|(p, k)| 2 * p <= *k);
    let (x, padding) = if native {
        (x.shallow_clone(), begin)
    } else {
        (x.f_pad(torch_spatial_pad(&begin, &end).as_slice(), "constant", f64::NEG_INFINITY)?, vec![0; n])
    };
    let (k, s, p, d) = (kernel.as_slice(), strides.as_slice(), padding.as_slice(), dilations.as_slice());
    Ok(match n {
        1 => x.f_max_pool1d(k, s, p, d, ceil_mode)?,
        2 => x.f_max_pool2d(k, s, p, d, ceil_mode)?,
        3 => x.f_max_pool3d(k, s, p, d, ceil_mode)?,
        _ => return invalid(format!("{n}-d max pooling is not supported")),
    })
}

pub(super) fn avg_pool(x: &Tensor, window: &Window, ceil_mode: bool, count_include_pad: bool) -> Res<Tensor> {
    let kernel = &window.kernel;
    let n = kernel.len();
    if window.dilations.iter().any(|&d| d != 1) {
        return invalid("dilated average pooling is not supported");
    }
    let (begin, end) = spatial_pads(x, window, kernel)?;
    let strides = per_axis(&window.strides, n, "strides")?;
    let pool = |t: &Tensor, padding: &[i64], include: bool| -> Res<Tensor> {
        let (k, s) = (kernel.as_slice(), strides.as_slice());
        Ok(match n {
            1 => t.f_avg_pool1d(k, s, padding, ceil_mode, include)?,
            2 => t.f_avg_pool2d(k, s, padding, ceil_mode, include, None::<i64>)?,
            3 => t.f_avg_pool3d(k, s, padding, ceil_mode, include, None::<i64>)?,
            _ => return invalid(format!("{n}-d average pooling is not supported")),
        })
    };
    if begin == end && begin.iter().zip(kernel).all(|(p, k)| 2 * p <= *k) {
        return pool(x, &begin, count_include_pad);
    }
    // Asymmetric pads: pad with zeros explicitly. Without count_include_pad the divisor is the
    // number of real input elements under the window: pool a mask of ones the same way.
    let pad = torch_spatial_pad(&begin, &end);
    let padded = x.f_constant_pad_nd(pad.as_slice())?;
    let zeros = vec![0; n];
    let sum_mean = pool(&padded, &zeros, true)?;
    if count_include_pad {
        return Ok(sum_mean);
    }
    let mut mask_shape = vec![1, 1];
    mask_shape.extend_from_slice(&x.size()[2..]);
    let mask = Tensor::f_ones(mask_shape.as_slice(), (x.kind(), x.device()))?.f_constant_pad_nd(pad.as_slice())?;
    let coverage = pool(&mask, &zeros, true)?;
    Ok(sum_mean.f_div(&coverage)?)
}

/// Per-example, per-output-channel norm of a 2-D convolution's weight gradient (kernel and,
/// with `bias`, bias), from the layer's input `x` [N, Cin, H, W] and the gradient `delta` of the
/// summed loss w.r.t. its output [N, Cout, Ho, Wo]. In eval mode examples do not interact, so
/// `delta[i]` is example i's own output gradient and the result is exact: row i, column c is
/// ||∂L_i/∂(W[c], b[c])||. Computed as delta · im2col(x)ᵀ per group, without N backward passes.
pub(super) fn conv_weight_grad_norms(x: &Tensor, delta: &Tensor, weight_size: &[i64], window: &Window, group: i64, bias: bool) -> Res<Tensor> {
    let kernel: Vec<i64> = weight_size[2..].to_vec();
    if kernel.len() != 2 {
        return invalid(format!("per-example weight gradients are implemented for 2-D convolutions, not {}-D", kernel.len()));
    }
    let (begin, end) = spatial_pads(x, window, &kernel)?;
    let strides = per_axis(&window.strides, 2, "strides")?;
    let dilations = per_axis(&window.dilations, 2, "dilations")?;
    let padded = x.f_constant_pad_nd(torch_spatial_pad(&begin, &end).as_slice())?;
    let columns = padded.f_im2col(kernel.as_slice(), dilations.as_slice(), [0, 0].as_slice(), strides.as_slice())?;
    let (n, c_out) = (delta.size()[0], weight_size[0]);
    let positions = columns.size()[2];
    let columns = columns.f_reshape([n, group, -1, positions])?;
    let delta = delta.f_reshape([n, group, c_out / group, positions])?;
    let kernel_grads = delta.f_matmul(&columns.f_transpose(2, 3)?)?;
    let mut squares = kernel_grads.f_square()?.f_sum_dim_intlist([3i64].as_slice(), false, None)?;
    if bias {
        squares = squares.f_add(&delta.f_sum_dim_intlist([3i64].as_slice(), false, None)?.f_square()?)?;
    }
    Ok(squares.f_sqrt()?.f_reshape([n, c_out])?)
}
