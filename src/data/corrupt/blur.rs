//! Defocus, glass, motion and zoom blur.

use rand::Rng;
use rand_pcg::Pcg64;

use super::filters::{self, Border, Kernel2d, Op1d};
use super::params::{np_arange, MotionKernel, SwapOrder};

/// ImageNet-C's `disk(radius, alias_blur)`: the lattice disk `x² + y² ≤ r²` on
/// `arange(−8, 9)` (radius ≤ 8, smoothed by a 3x3 Gaussian) or `arange(−r, r + 1)` (5x5
/// Gaussian), normalised before the smoothing (cv2.GaussianBlur, reflect-101 borders).
pub(super) fn disk_kernel(radius: f64, alias_sigma: f64) -> Kernel2d {
    let (grid, ksize) = if radius <= 8.0 { (np_arange(-8.0, 9.0, 1.0), 3) } else { (np_arange(-radius, radius + 1.0, 1.0), 5) };
    let n = grid.len();
    let mut disk = vec![0f64; n * n];
    for (i, &y) in grid.iter().enumerate() {
        for (j, &x) in grid.iter().enumerate() {
            if x * x + y * y <= radius * radius {
                disk[i * n + j] = 1.0;
            }
        }
    }
    let total: f64 = disk.iter().sum();
    disk.iter_mut().for_each(|v| *v /= total);
    let g = filters::cv_gaussian_kernel(ksize, alias_sigma);
    let op = Op1d::correlate(n, &g, Border::Reflect101);
    let disk32: Vec<f32> = disk.iter().map(|&v| v as f32).collect();
    let smoothed = filters::separable(&disk32, n, n, 1, &op, &op);
    Kernel2d::from_dense(&smoothed.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), n)
}

/// cv2.filter2D of the image with the disk.
pub(super) fn defocus(px: &[f32], h: usize, w: usize, c: usize, kernel: &Kernel2d) -> Vec<f32> {
    filters::correlate2d(px, h, w, c, kernel, Border::Reflect101)
}

/// Glass blur's prepared Gaussian (skimage `gaussian`: mode 'nearest', truncate 4).
#[derive(Debug, Clone)]
pub(super) struct GlassPlan {
    pub op_y: Op1d,
    pub op_x: Op1d,
    pub max_delta: usize,
    pub iterations: usize,
    pub order: SwapOrder,
}

impl GlassPlan {
    pub(super) fn new(h: usize, w: usize, sigma: f64, max_delta: usize, iterations: usize, order: SwapOrder) -> GlassPlan {
        let k = filters::scipy_gaussian_kernel(sigma, 4.0);
        GlassPlan { op_y: Op1d::correlate(h, &k, Border::Nearest), op_x: Op1d::correlate(w, &k, Border::Nearest), max_delta, iterations, order }
    }
}

/// Gaussian blur, quantisation to bytes (`np.uint8(x·255)`), local pixel swaps with shifts
/// uniform in `[−d, d − 1]`, Gaussian blur again.
pub(super) fn glass(px: &[f32], h: usize, w: usize, c: usize, plan: &GlassPlan, rng: &mut Pcg64) -> Vec<f32> {
    // σ = 0.05 (CIFAR-10-C's severity 1) gives a one-tap kernel: skip the no-op blurs.
    let identity = plan.op_y.is_identity() && plan.op_x.is_identity();
    let blur = |v: &[f32]| if identity { v.to_vec() } else { filters::separable(v, h, w, c, &plan.op_y, &plan.op_x) };
    let blurred = blur(px);
    let mut q: Vec<f32> = blurred.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).trunc()).collect();
    let d = plan.max_delta as isize;
    let (hi, wi) = (h as isize, w as isize);
    let rows: Vec<isize> = match plan.order {
        SwapOrder::Descending => (d + 1..=hi - d).rev().collect(),
        SwapOrder::Ascending => (d..hi - d).collect(),
    };
    let cols: Vec<isize> = match plan.order {
        SwapOrder::Descending => (d + 1..=wi - d).rev().collect(),
        SwapOrder::Ascending => (d..wi - d).collect(),
    };
    for _ in 0..plan.iterations {
        for &y in &rows {
            for &x in &cols {
                let dx = rng.random_range(-(d as i64)..d as i64) as isize;
                let dy = rng.random_range(-(d as i64)..d as i64) as isize;
                let (yy, xx) = (y + dy, x + dx);
                if yy < 0 || xx < 0 || yy >= hi || xx >= wi {
                    continue;
                }
                let (a, b) = ((y * wi + x) as usize * c, (yy * wi + xx) as usize * c);
                for ch in 0..c {
                    q.swap(a + ch, b + ch);
                }
            }
        }
    }
    q.iter_mut().for_each(|v| *v /= 255.0);
    blur(&q)
}

/// The motion-blur kernel for one angle (degrees); see [`MotionKernel`].
pub(super) fn motion_kernel(kind: MotionKernel, radius: f64, sigma: f64, angle_deg: f64) -> Kernel2d {
    match kind {
        MotionKernel::Magick => {
            // GetOptimalKernelWidth1D: 2⌈r⌉ + 1 taps for r > 0 (ImageMagick then ignores σ for the width).
            let width = if radius > 1e-12 { 2 * radius.ceil() as usize + 1 } else { 3 };
            let sigma = sigma.max(1e-12);
            let weights: Vec<f64> = (0..width).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
            let total: f64 = weights.iter().sum();
            let (sin, cos) = angle_deg.to_radians().sin_cos();
            let taps = weights
                .iter()
                .enumerate()
                .map(|(i, &wt)| {
                    let ox = ((i as f64) * cos - 0.5).ceil() as isize;
                    let oy = ((i as f64) * sin - 0.5).ceil() as isize;
                    (oy, ox, (wt / total) as f32)
                })
                .collect();
            Kernel2d { taps }
        }
        MotionKernel::Line => {
            let size = (2.0 * radius + 1.0) as usize;
            let centre = radius;
            let row = centre as usize;
            let mut line = vec![0f32; size * size];
            line[row * size..(row + 1) * size].iter_mut().for_each(|v| *v = 1.0);
            let m = filters::rotation_matrix(centre, centre, angle_deg);
            let rotated = filters::warp_affine(&line, size, size, 1, &m, None);
            let total: f64 = rotated.iter().map(|&v| f64::from(v)).sum();
            Kernel2d::from_dense(&rotated.iter().map(|&v| f64::from(v) / total).collect::<Vec<_>>(), size)
        }
    }
}

/// Border rule that goes with each motion kernel.
pub(super) fn motion_border(kind: MotionKernel) -> Border {
    match kind {
        MotionKernel::Magick => Border::Nearest,
        MotionKernel::Line => Border::Reflect101,
    }
}

/// Motion blur at an angle uniform in [−45°, 45°]. CIFAR-10-C stores ImageMagick's result as
/// bytes, so the Magick kernel's output goes through bytes too ([`magick_bytes`]).
pub(super) fn motion(px: &[f32], h: usize, w: usize, c: usize, (kind, radius, sigma): (MotionKernel, f64, f64), rng: &mut Pcg64) -> Vec<f32> {
    let angle = rng.random_range(-45.0..45.0);
    let kernel = motion_kernel(kind, radius, sigma, angle);
    let mut out = filters::correlate2d(px, h, w, c, &kernel, motion_border(kind));
    if kind == MotionKernel::Magick {
        out.iter_mut().for_each(|v| *v = magick_bytes(*v));
    }
    out
}

/// A value of ImageMagick's motion blur as the 8-bit PNG it writes: truncated to 1/255 (as
/// measured against ImageMagick 6.9.11 Q16, `convert -motion-blur RxS+A`: our kernel then
/// matches it to 0.02 levels on average; rounding instead would be 0.5 levels off). The
/// 1e-3 keeps f32 sums that should be whole levels from falling below them.
pub(super) fn magick_bytes(v: f32) -> f32 {
    (v.clamp(0.0, 1.0) * 255.0 + 1e-3).floor().min(255.0) / 255.0
}

/// `(x + Σ clipped_zoom(x, z)) / (n + 1)` over the zoom factors.
pub(super) fn zoom(px: &[f32], h: usize, w: usize, c: usize, factors: &[f64]) -> Vec<f32> {
    let mut acc = px.to_vec();
    for &z in factors {
        let zoomed = filters::clipped_zoom(px, h, w, c, z);
        acc.iter_mut().zip(&zoomed).for_each(|(a, b)| *a += b);
    }
    let n = (factors.len() + 1) as f32;
    acc.iter_mut().for_each(|v| *v /= n);
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_kernels_sum_to_one() {
        for (r, a) in [(0.3, 0.4), (1.0, 0.2), (1.5, 0.1), (3.0, 0.1), (6.0, 0.5)] {
            let k = disk_kernel(r, a);
            assert!((k.sum() - 1.0).abs() < 1e-5, "disk r={r}: {}", k.sum());
        }
        // Disks that touch their grid's border (r = 8 on 17x17, r = 10 on 21x21) gain a little
        // weight from the reflect-101 smoothing; the original does not renormalise. The sums
        // are OpenCV's (corrupt-tta's disk(8, 0.5).sum() and disk(10, 0.5).sum()).
        assert!((disk_kernel(8.0, 0.5).sum() - 1.0129755).abs() < 1e-6);
        assert!((disk_kernel(10.0, 0.5).sum() - 1.0107858).abs() < 1e-6);
        for angle in [-45.0, -10.0, 0.0, 30.0, 44.9] {
            for (kind, r, s) in [(MotionKernel::Magick, 6.0, 1.0), (MotionKernel::Magick, 9.0, 2.5), (MotionKernel::Line, 10.0, 3.0), (MotionKernel::Line, 20.0, 15.0)] {
                let k = motion_kernel(kind, r, s, angle);
                assert!((k.sum() - 1.0).abs() < 1e-5, "{kind:?} r={r} angle={angle}: {}", k.sum());
            }
        }
    }

    #[test]
    fn magick_motion_kernel_is_one_sided_along_the_angle() {
        let k = motion_kernel(MotionKernel::Magick, 2.0, 1.0, 0.0);
        let offsets: Vec<(isize, isize)> = k.taps.iter().map(|&(dy, dx, _)| (dy, dx)).collect();
        assert_eq!(offsets, vec![(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)]);
        let w: Vec<f32> = k.taps.iter().map(|t| t.2).collect();
        assert!(w.windows(2).all(|p| p[0] > p[1]));
        let k = motion_kernel(MotionKernel::Magick, 2.0, 1.0, 90.0);
        assert_eq!(k.taps[4].0, 4);
        assert_eq!(k.taps[4].1, 0);
    }

    #[test]
    fn line_kernel_at_zero_degrees_is_the_centre_row() {
        let k = motion_kernel(MotionKernel::Line, 3.0, 1.0, 0.0);
        assert_eq!(k.taps.len(), 7);
        assert!(k.taps.iter().all(|&(dy, _, w)| dy == 0 && (w - 1.0 / 7.0).abs() < 1e-6));
    }
}
