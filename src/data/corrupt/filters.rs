//! Building blocks shared by the corruptions, each with the border rule and rounding of the
//! library the original called: border modes, 1-D operators (Gaussian filters), sparse 2-D
//! correlation (cv2.filter2D), linear zoom (scipy.ndimage.zoom, order 1), bilinear sampling
//! (cv2.warpAffine, scipy map_coordinates) and affine transforms.
//!
//! Images here are plain HWC `f32` slices with explicit `(h, w, c)`.

/// How a filter reads outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Border {
    /// OpenCV's BORDER_REFLECT_101 (its default): `gfedcb|abcdefgh|gfedcba`.
    Reflect101,
    /// scipy's / skimage's 'reflect' (half-sample symmetric): `dcba|abcd|dcba`.
    Reflect,
    /// Edge pixel repeated: scipy's 'nearest', ImageMagick's default virtual pixels.
    Nearest,
}

impl Border {
    /// The pixel read for index `i` of a line of `n` pixels (any `i`: folded repeatedly).
    pub(crate) fn index(self, i: isize, n: usize) -> usize {
        let len = n as isize;
        if (0..len).contains(&i) {
            return i as usize;
        }
        match self {
            Border::Nearest => i.clamp(0, len - 1) as usize,
            Border::Reflect => {
                let period = 2 * len;
                let m = i.rem_euclid(period);
                (if m < len { m } else { period - 1 - m }) as usize
            }
            Border::Reflect101 => {
                if n == 1 {
                    return 0;
                }
                let period = 2 * (len - 1);
                let m = i.rem_euclid(period);
                (if m < len { m } else { period - m }) as usize
            }
        }
    }
}

/// scipy.ndimage's Gaussian kernel: radius `int(truncate·σ + 0.5)`, weights
/// `exp(−x²/2σ²)` normalised to sum 1. σ ≤ 0 gives the identity `[1]`.
pub(crate) fn scipy_gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    if sigma <= 1e-15 {
        return vec![1.0];
    }
    let radius = (truncate * sigma + 0.5) as i64;
    let weights: Vec<f64> = (-radius..=radius).map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp()).collect();
    let sum: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / sum).collect()
}

/// OpenCV's `getGaussianKernel(ksize, σ)` for σ > 0: `exp(−(i − (n−1)/2)² / 2σ²)` normalised.
pub(crate) fn cv_gaussian_kernel(ksize: usize, sigma: f64) -> Vec<f64> {
    let centre = (ksize as f64 - 1.0) / 2.0;
    let weights: Vec<f64> = (0..ksize).map(|i| (-((i as f64 - centre).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / sum).collect()
}

/// A linear map from a line of `n` values to a line of `n` values, stored sparsely: a centred
/// 1-D correlation kernel with the border folded into the weights once, so that applying it
/// costs no index arithmetic (and kernels longer than the line, as in corrupt-tta's elastic
/// transform with σ = 157 px on 28 px, stay cheap).
#[derive(Debug, Clone)]
pub(crate) struct Op1d {
    /// Row `i` of the operator is `taps[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    taps: Vec<(usize, f32)>,
}

impl Op1d {
    /// `out[i] = Σ_k kernel[k] · in[border(i + k − r)]` with `r = len / 2` (odd `len`).
    pub(crate) fn correlate(n: usize, kernel: &[f64], border: Border) -> Op1d {
        let radius = (kernel.len() / 2) as isize;
        let mut starts = Vec::with_capacity(n + 1);
        let mut taps = Vec::new();
        let mut row = vec![0f64; n];
        for i in 0..n {
            row.iter_mut().for_each(|v| *v = 0.0);
            for (k, &wk) in kernel.iter().enumerate() {
                row[border.index(i as isize + k as isize - radius, n)] += wk;
            }
            starts.push(taps.len());
            taps.extend(row.iter().enumerate().filter(|(_, &v)| v != 0.0).map(|(j, &v)| (j, v as f32)));
        }
        starts.push(taps.len());
        Op1d { starts, taps }
    }

    pub(crate) fn is_identity(&self) -> bool {
        (0..self.starts.len() - 1).all(|i| self.row(i) == [(i, 1.0)])
    }

    fn row(&self, i: usize) -> &[(usize, f32)] {
        &self.taps[self.starts[i]..self.starts[i + 1]]
    }

    /// The dense weights of output `i` (for tests).
    #[cfg(test)]
    pub(crate) fn dense_row(&self, i: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        for &(j, w) in self.row(i) {
            out[j] += w;
        }
        out
    }
}

/// Applies `op_y` along the rows axis and `op_x` along the columns of an HWC image (the
/// channels independently), as scipy's `gaussian_filter` with σ = 0 on the channel axis.
pub(crate) fn separable(px: &[f32], h: usize, w: usize, c: usize, op_y: &Op1d, op_x: &Op1d) -> Vec<f32> {
    let mut tmp = vec![0f32; px.len()];
    for y in 0..h {
        for &(yy, wt) in op_y.row(y) {
            let (dst, src) = (&mut tmp[y * w * c..(y + 1) * w * c], &px[yy * w * c..(yy + 1) * w * c]);
            for (d, s) in dst.iter_mut().zip(src) {
                *d += wt * s;
            }
        }
    }
    let mut out = vec![0f32; px.len()];
    for y in 0..h {
        let row_in = &tmp[y * w * c..(y + 1) * w * c];
        let row_out = &mut out[y * w * c..(y + 1) * w * c];
        for x in 0..w {
            for &(xx, wt) in op_x.row(x) {
                for ch in 0..c {
                    row_out[x * c + ch] += wt * row_in[xx * c + ch];
                }
            }
        }
    }
    out
}

/// A sparse 2-D correlation kernel: `(dy, dx, weight)` taps around the anchor.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kernel2d {
    pub taps: Vec<(isize, isize, f32)>,
}

impl Kernel2d {
    /// From a dense `size x size` kernel anchored at its centre (cv2.filter2D's default
    /// anchor), keeping the non-zero weights.
    pub(crate) fn from_dense(dense: &[f64], size: usize) -> Kernel2d {
        let r = (size / 2) as isize;
        let mut taps = Vec::new();
        for ky in 0..size {
            for kx in 0..size {
                let v = dense[ky * size + kx];
                if v != 0.0 {
                    taps.push((ky as isize - r, kx as isize - r, v as f32));
                }
            }
        }
        Kernel2d { taps }
    }

    #[cfg(test)]
    pub(crate) fn sum(&self) -> f64 {
        self.taps.iter().map(|&(_, _, w)| f64::from(w)).sum()
    }

    fn reach(&self) -> usize {
        self.taps.iter().map(|&(dy, dx, _)| dy.unsigned_abs().max(dx.unsigned_abs())).max().unwrap_or(0)
    }
}

/// `out(y, x) = Σ w · in(border(y + dy), border(x + dx))` per channel (cv2.filter2D).
pub(crate) fn correlate2d(px: &[f32], h: usize, w: usize, c: usize, kernel: &Kernel2d, border: Border) -> Vec<f32> {
    let r = kernel.reach();
    let (ph, pw) = (h + 2 * r, w + 2 * r);
    // Padded copy: the inner loop then reads without index folding.
    let mut pad = vec![0f32; ph * pw * c];
    for py in 0..ph {
        let sy = border.index(py as isize - r as isize, h);
        for pxx in 0..pw {
            let sx = border.index(pxx as isize - r as isize, w);
            let (d, s) = ((py * pw + pxx) * c, (sy * w + sx) * c);
            pad[d..d + c].copy_from_slice(&px[s..s + c]);
        }
    }
    let mut out = vec![0f32; h * w * c];
    for &(dy, dx, wt) in &kernel.taps {
        let oy = (r as isize + dy) as usize;
        let ox = (r as isize + dx) as usize;
        for y in 0..h {
            let src = &pad[((y + oy) * pw + ox) * c..((y + oy) * pw + ox + w) * c];
            let dst = &mut out[y * w * c..(y + 1) * w * c];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += wt * s;
            }
        }
    }
    out
}

/// Python's `round` (half to even), used by scipy for zoomed sizes.
pub(crate) fn py_round(v: f64) -> usize {
    v.round_ties_even().max(0.0) as usize
}

/// Source positions and weights of scipy's order-1 zoom of a line of `n_in` samples to
/// `n_out` (grid_mode=False: `in = out · (n_in − 1)/(n_out − 1)`), for outputs `range`.
fn zoom_taps(n_in: usize, n_out: usize, range: std::ops::Range<usize>) -> Vec<(usize, usize, f32)> {
    let scale = if n_out > 1 { (n_in as f64 - 1.0) / (n_out as f64 - 1.0) } else { 1.0 };
    range
        .map(|o| {
            let pos = o as f64 * scale;
            let i0 = (pos.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, (pos - i0 as f64) as f32)
        })
        .collect()
}

/// ImageNet-C's `clipped_zoom`: crop the centre `ceil(h/z) x ceil(w/z)`, zoom it by `z`
/// (scipy.ndimage.zoom, order 1, output size `round(crop·z)`) and keep the centre `h x w`.
pub(crate) fn clipped_zoom(px: &[f32], h: usize, w: usize, c: usize, zoom: f64) -> Vec<f32> {
    let ch = ((h as f64 / zoom).ceil() as usize).clamp(1, h);
    let cw = ((w as f64 / zoom).ceil() as usize).clamp(1, w);
    let (top, left) = ((h - ch) / 2, (w - cw) / 2);
    let (zh, zw) = (py_round(ch as f64 * zoom), py_round(cw as f64 * zoom));
    let trim_top = zh.saturating_sub(h) / 2;
    let trim_left = zw.saturating_sub(w) / 2;
    let rows_out = h.min(zh - trim_top);
    let cols_out = w.min(zw - trim_left);
    let ty = zoom_taps(ch, zh, trim_top..trim_top + rows_out);
    let tx = zoom_taps(cw, zw, trim_left..trim_left + cols_out);
    // Rows first (on the crop's columns), then columns.
    let mut rows = vec![0f32; rows_out * cw * c];
    for (oy, &(y0, y1, t)) in ty.iter().enumerate() {
        for x in 0..cw {
            for ch_i in 0..c {
                let a = px[((top + y0) * w + left + x) * c + ch_i];
                let b = px[((top + y1) * w + left + x) * c + ch_i];
                rows[(oy * cw + x) * c + ch_i] = a + t * (b - a);
            }
        }
    }
    let mut out = vec![0f32; h * w * c];
    for oy in 0..rows_out {
        for (ox, &(x0, x1, t)) in tx.iter().enumerate() {
            for ch_i in 0..c {
                let a = rows[(oy * cw + x0) * c + ch_i];
                let b = rows[(oy * cw + x1) * c + ch_i];
                out[(oy * w + ox) * c + ch_i] = a + t * (b - a);
            }
        }
    }
    out
}

/// A 2x3 affine map `(x, y) ↦ (m[0][0]x + m[0][1]y + m[0][2], m[1][0]x + m[1][1]y + m[1][2])`.
pub(crate) type Affine = [[f64; 3]; 2];

/// The affine map sending the three `src` points onto `dst` (cv2.getAffineTransform).
pub(crate) fn affine_from_points(src: [[f64; 2]; 3], dst: [[f64; 2]; 3]) -> Option<Affine> {
    // Solve [x y 1] · [a b; c d; e f] = [x' y'] for the three points (Cramer's rule).
    let det = src[0][0] * (src[1][1] - src[2][1]) - src[0][1] * (src[1][0] - src[2][0]) + (src[1][0] * src[2][1] - src[2][0] * src[1][1]);
    if det.abs() < 1e-12 {
        return None;
    }
    let inv = invert3([[src[0][0], src[0][1], 1.0], [src[1][0], src[1][1], 1.0], [src[2][0], src[2][1], 1.0]], det);
    let mut m = [[0.0; 3]; 2];
    for (r, row) in m.iter_mut().enumerate() {
        for (col, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| inv[col][k] * dst[k][r]).sum();
        }
    }
    Some(m)
}

/// The inverse of `a` (determinant `det`) by cofactors: `inv[i][j] = cof(a)[j][i] / det`.
#[allow(clippy::needless_range_loop)]
fn invert3(a: [[f64; 3]; 3], det: f64) -> [[f64; 3]; 3] {
    let mut inv = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let (r0, r1) = ((j + 1) % 3, (j + 2) % 3);
            let (c0, c1) = ((i + 1) % 3, (i + 2) % 3);
            inv[i][j] = (a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]) / det;
        }
    }
    inv
}

/// The inverse of an invertible affine map.
pub(crate) fn invert_affine(m: &Affine) -> Affine {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let (a, b, c, d) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
    [[a, b, -(a * m[0][2] + b * m[1][2])], [c, d, -(c * m[0][2] + d * m[1][2])]]
}

/// cv2.getRotationMatrix2D(centre, angle in degrees, scale 1).
pub(crate) fn rotation_matrix(cx: f64, cy: f64, angle_deg: f64) -> Affine {
    let (s, c) = angle_deg.to_radians().sin_cos();
    [[c, s, (1.0 - c) * cx - s * cy], [-s, c, s * cx + (1.0 - c) * cy]]
}

/// cv2.warpAffine with INTER_LINEAR: `dst(x, y) = src(M⁻¹(x, y))`, bilinear, with OpenCV's
/// quantisation of source positions to 1/32 pixel; outside pixels read `border`, or 0 when
/// `border` is `None` (BORDER_CONSTANT).
pub(crate) fn warp_affine(px: &[f32], h: usize, w: usize, c: usize, m: &Affine, border: Option<Border>) -> Vec<f32> {
    let inv = invert_affine(m);
    let mut out = vec![0f32; h * w * c];
    for y in 0..h {
        for x in 0..w {
            // OpenCV: X = round(M·(x, y) · 1024) >> 5 (1/32 pixel), split into integer and fraction.
            let q = |v: f64| -> (isize, f32) {
                let fixed = ((v * 1024.0).round() as i64 + 16) >> 5;
                ((fixed >> 5) as isize, (fixed & 31) as f32 / 32.0)
            };
            let (ix, tx) = q(inv[0][0] * x as f64 + inv[0][1] * y as f64 + inv[0][2]);
            let (iy, ty) = q(inv[1][0] * x as f64 + inv[1][1] * y as f64 + inv[1][2]);
            for ch in 0..c {
                let read = |yy: isize, xx: isize| -> f32 {
                    match border {
                        Some(b) => px[(b.index(yy, h) * w + b.index(xx, w)) * c + ch],
                        None if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w => px[(yy as usize * w + xx as usize) * c + ch],
                        None => 0.0,
                    }
                };
                let top = read(iy, ix) * (1.0 - tx) + read(iy, ix + 1) * tx;
                let bottom = read(iy + 1, ix) * (1.0 - tx) + read(iy + 1, ix + 1) * tx;
                out[(y * w + x) * c + ch] = top * (1.0 - ty) + bottom * ty;
            }
        }
    }
    out
}

/// Bilinear value of channel `ch` at the continuous position (y, x) of an HWC image of
/// `(h, w, c)`, reading outside pixels through `border` (scipy map_coordinates, order 1).
pub(crate) fn sample_bilinear(px: &[f32], (h, w, c): (usize, usize, usize), ch: usize, (y, x): (f32, f32), border: Border) -> f32 {
    let (y0, x0) = (y.floor(), x.floor());
    let (ty, tx) = (y - y0, x - x0);
    let (iy, ix) = (y0 as isize, x0 as isize);
    let (ya, yb) = (border.index(iy, h), border.index(iy + 1, h));
    let (xa, xb) = (border.index(ix, w), border.index(ix + 1, w));
    let p = |yy: usize, xx: usize| px[(yy * w + xx) * c + ch];
    let top = p(ya, xa) + tx * (p(ya, xb) - p(ya, xa));
    let bottom = p(yb, xa) + tx * (p(yb, xb) - p(yb, xa));
    top + ty * (bottom - top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_modes_fold_like_opencv_and_scipy() {
        let n = 4;
        let idx = |b: Border| (-5..9).map(|i| b.index(i, n)).collect::<Vec<_>>();
        // reflect-101: ... 1 2 3 | 0 1 2 3 | 2 1 0 ...
        assert_eq!(idx(Border::Reflect101), vec![1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        // reflect (half-sample): ... 3 2 1 0 | 0 1 2 3 | 3 2 1 0
        assert_eq!(idx(Border::Reflect), vec![3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0]);
        assert_eq!(idx(Border::Nearest), vec![0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3]);
        assert_eq!(Border::Reflect101.index(-3, 1), 0);
    }

    #[test]
    fn reflect101_correlation_matches_a_hand_computed_line() {
        // in = [1, 2, 4, 8], kernel [1, 2, 3] (correlation, anchor at the centre):
        // out[0] = 1·in[1] + 2·in[0] + 3·in[1] = 2 + 2 + 6 = 10 (in[-1] reads in[1])
        // out[1] = 1 + 4 + 12 = 17; out[2] = 2 + 8 + 24 = 34; out[3] = 4 + 16 + 3·in[2] = 32.
        let line = [1.0f32, 2.0, 4.0, 8.0];
        let k = Kernel2d { taps: vec![(0, -1, 1.0), (0, 0, 2.0), (0, 1, 3.0)] };
        assert_eq!(correlate2d(&line, 1, 4, 1, &k, Border::Reflect101), vec![10.0, 17.0, 34.0, 32.0]);
        let op = Op1d::correlate(4, &[1.0, 2.0, 3.0], Border::Reflect101);
        let id = Op1d::correlate(1, &[1.0], Border::Reflect101);
        assert_eq!(separable(&line, 1, 4, 1, &id, &op), vec![10.0, 17.0, 34.0, 32.0]);
        assert!(id.is_identity() && !op.is_identity());
    }

    #[test]
    fn gaussian_kernels_sum_to_one_and_fold_without_losing_weight() {
        for sigma in [0.05, 0.4, 1.0, 2.5, 156.8] {
            let k = scipy_gaussian_kernel(sigma, 4.0);
            assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12, "σ={sigma}");
            assert_eq!(k.len() % 2, 1);
            let op = Op1d::correlate(28, &k, Border::Reflect);
            for i in 0..28 {
                let s: f32 = op.dense_row(i, 28).iter().sum();
                assert!((s - 1.0).abs() < 1e-4, "σ={sigma} row {i}: {s}");
            }
        }
        assert_eq!(scipy_gaussian_kernel(0.05, 4.0), vec![1.0]);
        assert_eq!(scipy_gaussian_kernel(0.4, 4.0).len(), 5); // radius int(1.6 + 0.5) = 2
        let cv = cv_gaussian_kernel(3, 0.5);
        assert!((cv.iter().sum::<f64>() - 1.0).abs() < 1e-12 && (cv[0] - cv[2]).abs() < 1e-15);
    }

    #[test]
    fn clipped_zoom_by_one_is_the_identity_and_zoom_keeps_the_size() {
        let px: Vec<f32> = (0..8 * 8 * 3).map(|i| (i % 17) as f32 / 17.0).collect();
        assert_eq!(clipped_zoom(&px, 8, 8, 3, 1.0), px);
        let z = clipped_zoom(&px, 8, 8, 3, 1.3);
        assert_eq!(z.len(), px.len());
        // scipy: crop 7 -> round(7 · 1.3) = round(9.1) = 9, trim 0; crop 6 for 1.5 -> 9, trim 0.
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(3.5), 4);
    }

    #[test]
    fn affine_helpers_invert_and_fit_points() {
        let src = [[1.0, 2.0], [5.0, 1.0], [2.0, 7.0]];
        let dst = [[1.5, 2.2], [5.1, 0.4], [2.3, 7.7]];
        let m = affine_from_points(src, dst).unwrap();
        for (s, d) in src.iter().zip(&dst) {
            let x = m[0][0] * s[0] + m[0][1] * s[1] + m[0][2];
            let y = m[1][0] * s[0] + m[1][1] * s[1] + m[1][2];
            assert!((x - d[0]).abs() < 1e-9 && (y - d[1]).abs() < 1e-9);
        }
        let inv = invert_affine(&m);
        let (x, y) = (dst[1][0], dst[1][1]);
        let bx = inv[0][0] * x + inv[0][1] * y + inv[0][2];
        assert!((bx - src[1][0]).abs() < 1e-9);
        // The identity warp returns the image.
        let px: Vec<f32> = (0..8 * 9).map(|i| i as f32).collect();
        let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(warp_affine(&px, 8, 9, 1, &id, Some(Border::Reflect101)), px);
    }
}
