//! Snow, frost and fog.

use std::borrow::Cow;

use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::blur::{magick_bytes, motion_border, motion_kernel};
use super::filters;
use super::frost_texture::{self, FrostTexture};
use super::params::{FrostSource, MotionKernel};

/// ITU-R 601 luma, as cv2.COLOR_RGB2GRAY: the grey of a pixel (the value itself for 1 channel).
pub(super) fn luma(p: &[f32]) -> f32 {
    if p.len() == 3 {
        0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
    } else {
        p[0]
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SnowParams {
    pub loc: f64,
    pub scale: f64,
    pub zoom: f64,
    pub threshold: f64,
    pub radius: f64,
    pub sigma: f64,
    pub blend: f32,
    pub kernel: MotionKernel,
}

/// A Gaussian snow layer, zoomed, thresholded, motion-blurred at an angle uniform in
/// [−135°, −45°], added twice (as is and rotated by 180°) to the image after it has been
/// brightened towards `max(x, 1.5·grey + 0.5)`.
///
/// With ImageMagick's kernel (CIFAR-10-C) the layer goes through bytes as in the original:
/// clipped and truncated to bytes before the blur (a PNG), and ImageMagick's 8-bit output after.
pub(super) fn snow(px: &[f32], h: usize, w: usize, c: usize, p: &SnowParams, rng: &mut Pcg64) -> Vec<f32> {
    let layer: Vec<f32> = (0..h * w)
        .map(|_| {
            let n: f64 = rng.sample(StandardNormal);
            (p.loc + p.scale * n) as f32
        })
        .collect();
    let mut layer = filters::clipped_zoom(&layer, h, w, 1, p.zoom);
    for v in &mut layer {
        if f64::from(*v) < p.threshold {
            *v = 0.0;
        }
    }
    if p.kernel == MotionKernel::Magick {
        layer.iter_mut().for_each(|v| *v = (v.clamp(0.0, 1.0) * 255.0).trunc() / 255.0);
    }
    let angle = rng.random_range(-135.0..-45.0);
    let kernel = motion_kernel(p.kernel, p.radius, p.sigma, angle);
    let mut layer = filters::correlate2d(&layer, h, w, 1, &kernel, motion_border(p.kernel));
    match p.kernel {
        MotionKernel::Magick => layer.iter_mut().for_each(|v| *v = magick_bytes(*v)),
        MotionKernel::Line => layer.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0)),
    }
    let mut out = vec![0f32; px.len()];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * c;
            let grey = luma(&px[i..i + c]);
            let flakes = layer[y * w + x] + layer[(h - 1 - y) * w + (w - 1 - x)];
            for ch in 0..c {
                let v = px[i + ch];
                let lit = p.blend * v + (1.0 - p.blend) * v.max(grey * 1.5 + 0.5);
                out[i + ch] = lit + flakes;
            }
        }
    }
    out
}

/// The pictures frost crops from, covering the image (up-scaled when an image is larger than
/// a picture, as corrupt-tta does).
#[derive(Debug, Clone)]
pub(super) struct FrostPlan {
    pub image_weight: f32,
    pub frost_weight: f32,
    pub source: FrostSource,
    pub textures: Vec<Cow<'static, FrostTexture>>,
}

impl FrostPlan {
    pub(super) fn new(h: usize, w: usize, image_weight: f32, frost_weight: f32, source: FrostSource) -> FrostPlan {
        let (pictures, strict) = match source {
            FrostSource::FirstFiveFifthSize => (&frost_texture::fifth_size()[..5], 1),
            FrostSource::AllSixFullSize => (frost_texture::full_size(), 0),
        };
        // CIFAR-10-C draws the crop start in [0, size − h): it needs one spare row and column.
        let textures = pictures
            .iter()
            .map(|t| if t.height >= h + strict && t.width >= w + strict { Cow::Borrowed(t) } else { Cow::Owned(t.cover(h + strict, w + strict)) })
            .collect();
        FrostPlan { image_weight, frost_weight, source, textures }
    }
}

/// `clip(a·x + b·frost_crop)` on the 0..255 scale, with a picture and a crop position drawn
/// at random; grey images take the crop's luma.
pub(super) fn frost(px: &[f32], h: usize, w: usize, c: usize, plan: &FrostPlan, rng: &mut Pcg64) -> Vec<f32> {
    let texture = &plan.textures[rng.random_range(0..plan.textures.len())];
    let (rows, cols) = match plan.source {
        FrostSource::FirstFiveFifthSize => ((texture.height - h).max(1), (texture.width - w).max(1)),
        FrostSource::AllSixFullSize => ((texture.height - h + 1).max(1), (texture.width - w + 1).max(1)),
    };
    let top = rng.random_range(0..rows);
    let left = rng.random_range(0..cols);
    let mut out = vec![0f32; px.len()];
    for y in 0..h {
        for x in 0..w {
            let rgb = texture.pixel(top + y, left + x).map(f32::from);
            let i = (y * w + x) * c;
            for ch in 0..c {
                let f = if c == 3 { rgb[ch] } else { luma(&rgb) };
                out[i + ch] = (plan.image_weight * px[i + ch] * 255.0 + plan.frost_weight * f).clamp(0.0, 255.0) / 255.0;
            }
        }
    }
    out
}

/// `x += s·plasma; x·max(x)/(max(x) + s)`, the plasma map shared by all channels; the map is
/// the smallest power of two covering the image and at least `min_map`.
pub(super) fn fog(px: &[f32], h: usize, w: usize, c: usize, (strength, decay, min_map): (f64, f64, usize), rng: &mut Pcg64) -> Vec<f32> {
    let mapsize = h.max(w).next_power_of_two().max(min_map.next_power_of_two());
    let plasma = plasma_fractal(mapsize, decay, rng);
    let max_val = px.iter().fold(0f32, |m, &v| m.max(v));
    let scale = max_val / (max_val + strength as f32);
    let mut out = vec![0f32; px.len()];
    for y in 0..h {
        for x in 0..w {
            let fogv = (strength * plasma[y * mapsize + x]) as f32;
            let i = (y * w + x) * c;
            for ch in 0..c {
                out[i + ch] = (px[i + ch] + fogv) * scale;
            }
        }
    }
    out
}

/// ImageNet-C's `plasma_fractal` (diamond-square with wrap-around, noise amplitude
/// `wibble²` decaying by `decay` per level), normalised to [0, 1]; `mapsize` a power of two.
pub(super) fn plasma_fractal(mapsize: usize, decay: f64, rng: &mut Pcg64) -> Vec<f64> {
    assert!(mapsize.is_power_of_two());
    let n = mapsize;
    let mut m = vec![0f64; n * n];
    let mut step = n;
    let mut wibble = 100.0f64;
    while step >= 2 {
        let half = step / 2;
        let k = n / step; // points per axis at this level
        let wibbled = |v: f64, rng: &mut Pcg64, wibble: f64| v / 4.0 + wibble * rng.random_range(-wibble..wibble);
        // Squares: centre = mean of the four corners (+ noise).
        let corner = |m: &Vec<f64>, i: usize, j: usize| m[(i % k) * step * n + (j % k) * step];
        let mut centres = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                let s = corner(&m, i, j) + corner(&m, i + 1, j) + corner(&m, i, j + 1) + corner(&m, i + 1, j + 1);
                centres[i * k + j] = wibbled(s, rng, wibble);
            }
        }
        for i in 0..k {
            for j in 0..k {
                m[(i * step + half) * n + j * step + half] = centres[i * k + j];
            }
        }
        // Diamonds: edge midpoints from the two corners and two centres around them.
        let dr = |m: &Vec<f64>, i: usize, j: usize| m[((i % k) * step + half) * n + (j % k) * step + half];
        let ul = |m: &Vec<f64>, i: usize, j: usize| m[(i % k) * step * n + (j % k) * step];
        let mut top = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                let s = dr(&m, i, j) + dr(&m, i + k - 1, j) + ul(&m, i, j) + ul(&m, i, j + 1);
                top[i * k + j] = wibbled(s, rng, wibble);
            }
        }
        let mut left = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                let s = dr(&m, i, j) + dr(&m, i, j + k - 1) + ul(&m, i, j) + ul(&m, i + 1, j);
                left[i * k + j] = wibbled(s, rng, wibble);
            }
        }
        for i in 0..k {
            for j in 0..k {
                m[i * step * n + j * step + half] = top[i * k + j];
                m[(i * step + half) * n + j * step] = left[i * k + j];
            }
        }
        step /= 2;
        wibble /= decay;
    }
    let min = m.iter().copied().fold(f64::INFINITY, f64::min);
    m.iter_mut().for_each(|v| *v -= min);
    let max = m.iter().copied().fold(0.0, f64::max);
    if max > 0.0 {
        m.iter_mut().for_each(|v| *v /= max);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn plasma_is_normalised_and_fills_every_cell() {
        let mut rng = Pcg64::seed_from_u64(1);
        for n in [2, 8, 32, 64] {
            let p = plasma_fractal(n, 3.0, &mut rng);
            assert_eq!(p.len(), n * n);
            let (lo, hi) = p.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            assert_eq!((lo, hi), (0.0, 1.0));
            // Neighbouring cells correlate (a fractal, not white noise) at 32 and above.
            if n >= 32 {
                let mut same = 0.0;
                for y in 0..n {
                    for x in 0..n - 1 {
                        same += (p[y * n + x] - p[y * n + x + 1]).abs();
                    }
                }
                assert!(same / ((n * (n - 1)) as f64) < 0.15);
            }
        }
    }
}
