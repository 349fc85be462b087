//! Procedural frost textures, in place of the six frost photographs that ImageNet-C, CIFAR-10-C
//! and corrupt-tta blend into the image (we ship no third-party pictures).
//!
//! Each of the six textures is built from three layers, summed and mapped to colour:
//!
//! 1. **Clouds**: fractal value noise (fBm: lattice noise with quintic interpolation, octaves
//!    halving the period and the amplitude), optionally domain-warped and "ridged" (1 − |n|),
//!    for the uneven thickness of the ice and the swirls of glazed frost.
//! 2. **Crystals**: feather-like ice dendrites: straight needles of random position, length and
//!    orientation (uniform, or around a preferred direction) with side branches at ±60° (the
//!    hexagonal habit of ice) that shorten towards the needle's tip; drawn with sub-pixel
//!    splats into an accumulator, blurred by a small Gaussian and saturated (1 − e^(−k·a)).
//! 3. **Grain**: white noise blurred by σ = 0.8 px.
//!
//! The weighted sum is standardised (zero mean, unit variance) and mapped per channel to
//! `mean_c + std_c · t`, rounded to bytes. Means, standard deviations and spatial scales are
//! calibrated on statistics measured on the reference photographs (per-channel mean and std of
//! the whole picture; std within and between 28x28 crops at full size and 32x32 crops after
//! the 0.2 resize of CIFAR-10-C); docs/corruptions.md lists targets and what we reach.
//!
//! Everything is a pure function of a fixed seed: the textures are the same in every run (as
//! the photographs were), generated once per process and cached.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// The seed of the texture generator (fixed: the textures are part of the benchmark's definition).
pub(crate) const TEXTURE_SEED: u64 = 0x5EED_F205_7C0D_E001;

/// An RGB picture, row-major, 3 bytes per pixel.
#[derive(Debug, Clone)]
pub(crate) struct FrostTexture {
    pub height: usize,
    pub width: usize,
    pub rgb: Vec<u8>,
}

impl FrostTexture {
    pub(crate) fn pixel(&self, y: usize, x: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// `cv2.resize(img, (0, 0), fx=f, fy=f)` with INTER_LINEAR for f = 1/k, k integer: the
    /// source coordinate of output pixel i is (i + 0.5)·k − 0.5, an integer for odd k, so the
    /// resize picks every k-th pixel (no anti-aliasing, as CIFAR-10-C's frost did with k = 5).
    pub(crate) fn decimate(&self, k: usize) -> FrostTexture {
        let out_h = ((self.height as f64) / k as f64).round_ties_even().max(1.0) as usize;
        let out_w = ((self.width as f64) / k as f64).round_ties_even().max(1.0) as usize;
        let offset = (k - 1) / 2;
        let mut rgb = Vec::with_capacity(out_h * out_w * 3);
        for i in 0..out_h {
            let y = (i * k + offset).min(self.height - 1);
            for j in 0..out_w {
                let x = (j * k + offset).min(self.width - 1);
                rgb.extend_from_slice(&self.pixel(y, x));
            }
        }
        FrostTexture { height: out_h, width: out_w, rgb }
    }

    /// Bilinear up-scaling (cv2.resize INTER_LINEAR, half-pixel centres) to at least
    /// `min_h` x `min_w`, keeping the aspect ratio: what corrupt-tta does when a picture is
    /// smaller than the image.
    pub(crate) fn cover(&self, min_h: usize, min_w: usize) -> FrostTexture {
        if self.height >= min_h && self.width >= min_w {
            return self.clone();
        }
        let scale = (min_h as f64 / self.height as f64).max(min_w as f64 / self.width as f64);
        let out_h = (self.height as f64 * scale).ceil() as usize;
        let out_w = (self.width as f64 * scale).ceil() as usize;
        let sy = self.height as f64 / out_h as f64;
        let sx = self.width as f64 / out_w as f64;
        let mut rgb = Vec::with_capacity(out_h * out_w * 3);
        for i in 0..out_h {
            let fy = ((i as f64 + 0.5) * sy - 0.5).max(0.0);
            let y0 = (fy.floor() as usize).min(self.height - 1);
            let y1 = (y0 + 1).min(self.height - 1);
            let ty = fy - y0 as f64;
            for j in 0..out_w {
                let fx = ((j as f64 + 0.5) * sx - 0.5).max(0.0);
                let x0 = (fx.floor() as usize).min(self.width - 1);
                let x1 = (x0 + 1).min(self.width - 1);
                let tx = fx - x0 as f64;
                for c in 0..3 {
                    let p = |y: usize, x: usize| f64::from(self.rgb[(y * self.width + x) * 3 + c]);
                    let v = (1.0 - ty) * ((1.0 - tx) * p(y0, x0) + tx * p(y0, x1))
                        + ty * ((1.0 - tx) * p(y1, x0) + tx * p(y1, x1));
                    rgb.push(v.round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        FrostTexture { height: out_h, width: out_w, rgb }
    }
}

/// The knobs of one texture.
#[derive(Debug, Clone, Copy)]
struct Style {
    height: usize,
    width: usize,
    /// Target per-channel (R, G, B) mean and standard deviation, in bytes.
    mean: [f32; 3],
    std: [f32; 3],
    /// Clouds: period of the first octave (px), octaves, weight, ridged, domain-warp amplitude (px).
    cloud_period: f32,
    cloud_octaves: u32,
    cloud_weight: f32,
    ridged: bool,
    warp: f32,
    /// Crystals: needles per 10,000 px², length range (px), preferred orientation (radians,
    /// `None`: uniform) with its spread, blur σ (px), branch spacing (px), weight.
    needle_density: f32,
    needle_length: (f32, f32),
    needle_angle: Option<(f32, f32)>,
    needle_blur: f32,
    branch_spacing: f32,
    needle_weight: f32,
    /// Grain weight.
    grain_weight: f32,
}

/// Six styles after the six reference photographs: (1) glazed blue-green ice with swirls,
/// (2, 3) dense bright needle frost (two instances), (4) grey frost with vertical fern rows,
/// (5) grey feather dendrites, (6) large ferns on a dark blue-green pane.
const STYLES: [Style; 6] = [
    Style {
        height: 600,
        width: 900,
        mean: [77.7, 149.1, 165.7],
        std: [26.9, 16.5, 15.3],
        cloud_period: 180.0,
        cloud_octaves: 7,
        cloud_weight: 1.0,
        ridged: true,
        warp: 60.0,
        needle_density: 0.0,
        needle_length: (10.0, 30.0),
        needle_angle: None,
        needle_blur: 1.0,
        branch_spacing: 4.0,
        needle_weight: 0.0,
        grain_weight: 0.5,
    },
    Style {
        height: 315,
        width: 560,
        mean: [200.8, 205.4, 214.5],
        std: [21.4, 22.1, 22.6],
        cloud_period: 120.0,
        cloud_octaves: 4,
        cloud_weight: 0.6,
        ridged: false,
        warp: 0.0,
        needle_density: 20.0,
        needle_length: (8.0, 40.0),
        needle_angle: None,
        needle_blur: 0.7,
        branch_spacing: 4.0,
        needle_weight: 1.0,
        grain_weight: 0.45,
    },
    Style {
        height: 315,
        width: 560,
        mean: [200.8, 205.4, 214.5],
        std: [21.4, 22.1, 22.6],
        cloud_period: 120.0,
        cloud_octaves: 4,
        cloud_weight: 0.6,
        ridged: false,
        warp: 0.0,
        needle_density: 20.0,
        needle_length: (8.0, 40.0),
        needle_angle: None,
        needle_blur: 0.7,
        branch_spacing: 4.0,
        needle_weight: 1.0,
        grain_weight: 0.45,
    },
    Style {
        height: 350,
        width: 527,
        mean: [137.6, 152.8, 165.2],
        std: [28.5, 28.5, 29.9],
        cloud_period: 150.0,
        cloud_octaves: 4,
        cloud_weight: 0.7,
        ridged: false,
        warp: 0.0,
        needle_density: 20.0,
        needle_length: (6.0, 28.0),
        needle_angle: Some((std::f32::consts::FRAC_PI_2, 0.35)),
        needle_blur: 0.7,
        branch_spacing: 3.0,
        needle_weight: 1.0,
        grain_weight: 0.5,
    },
    Style {
        height: 495,
        width: 660,
        mean: [112.4, 123.4, 134.8],
        std: [44.4, 43.3, 41.7],
        cloud_period: 200.0,
        cloud_octaves: 4,
        cloud_weight: 0.6,
        ridged: false,
        warp: 0.0,
        needle_density: 12.0,
        needle_length: (10.0, 50.0),
        needle_angle: None,
        needle_blur: 0.8,
        branch_spacing: 4.0,
        needle_weight: 1.0,
        grain_weight: 0.45,
    },
    Style {
        height: 323,
        width: 485,
        mean: [71.4, 95.4, 104.5],
        std: [35.2, 42.7, 47.4],
        cloud_period: 160.0,
        cloud_octaves: 4,
        cloud_weight: 0.6,
        ridged: false,
        warp: 0.0,
        needle_density: 5.0,
        needle_length: (25.0, 100.0),
        needle_angle: Some((-std::f32::consts::FRAC_PI_2, 0.6)),
        needle_blur: 0.9,
        branch_spacing: 5.0,
        needle_weight: 1.0,
        grain_weight: 0.45,
    },
];

/// The six textures at full size (corrupt-tta's frost crops them as they are).
pub(crate) fn full_size() -> &'static [FrostTexture] {
    static CACHE: OnceLock<Vec<FrostTexture>> = OnceLock::new();
    CACHE.get_or_init(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> =
                STYLES.iter().enumerate().map(|(k, style)| s.spawn(move || generate(style, TEXTURE_SEED ^ (k as u64 + 1)))).collect();
            handles.into_iter().map(|h| h.join().expect("frost texture generation")).collect()
        })
    })
}

/// The six textures after CIFAR-10-C's `cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)`.
pub(crate) fn fifth_size() -> &'static [FrostTexture] {
    static CACHE: OnceLock<Vec<FrostTexture>> = OnceLock::new();
    CACHE.get_or_init(|| full_size().iter().map(|t| t.decimate(5)).collect())
}

fn generate(style: &Style, seed: u64) -> FrostTexture {
    let (h, w) = (style.height, style.width);
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut t = vec![0f32; h * w];
    if style.cloud_weight > 0.0 {
        let clouds = clouds(style, h, w, rng.random());
        add_standardised(&mut t, &clouds, style.cloud_weight);
    }
    if style.needle_weight > 0.0 {
        let needles = needles(style, h, w, &mut rng);
        add_standardised(&mut t, &needles, style.needle_weight);
    }
    if style.grain_weight > 0.0 {
        let mut grain: Vec<f32> = (0..h * w).map(|_| rng.random::<f32>() - 0.5).collect();
        gaussian_blur(&mut grain, h, w, 0.8);
        add_standardised(&mut t, &grain, style.grain_weight);
    }
    let (mean, std) = mean_std(&t);
    let mut rgb = Vec::with_capacity(h * w * 3);
    for &v in &t {
        let z = (v - mean) / std.max(1e-12);
        for c in 0..3 {
            rgb.push((style.mean[c] + style.std[c] * z).round().clamp(0.0, 255.0) as u8);
        }
    }
    FrostTexture { height: h, width: w, rgb }
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt() as f32)
}

fn add_standardised(acc: &mut [f32], layer: &[f32], weight: f32) {
    let (mean, std) = mean_std(layer);
    let scale = weight / std.max(1e-12);
    for (a, &l) in acc.iter_mut().zip(layer) {
        *a += (l - mean) * scale;
    }
}

/// SplitMix64: the hash behind the lattice noise.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Value noise in [-1, 1] at (x, y) in lattice units.
fn value_noise(x: f32, y: f32, seed: u64) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (ix, iy) = (xf as i64, yf as i64);
    let (tx, ty) = (fade(x - xf), fade(y - yf));
    let lattice = |i: i64, j: i64| {
        let hsh = splitmix(seed ^ splitmix((i as u64).wrapping_mul(0x1000_0000_01B3) ^ (j as u64)));
        (hsh >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let a = lattice(ix, iy) + tx * (lattice(ix + 1, iy) - lattice(ix, iy));
    let b = lattice(ix, iy + 1) + tx * (lattice(ix + 1, iy + 1) - lattice(ix, iy + 1));
    a + ty * (b - a)
}

fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

fn fbm(x: f32, y: f32, period: f32, octaves: u32, seed: u64) -> f32 {
    let (mut sum, mut amp, mut p) = (0.0, 1.0, period);
    for o in 0..octaves {
        sum += amp * value_noise(x / p, y / p, splitmix(seed.wrapping_add(u64::from(o))));
        amp *= 0.5;
        p *= 0.5;
    }
    sum
}

fn clouds(style: &Style, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let (mut fx, mut fy) = (x as f32, y as f32);
            if style.warp > 0.0 {
                let wx = fbm(fx, fy, style.cloud_period, 3, seed ^ 0xA5A5);
                let wy = fbm(fx, fy, style.cloud_period, 3, seed ^ 0x5A5A);
                fx += style.warp * wx;
                fy += style.warp * wy;
            }
            let n = fbm(fx, fy, style.cloud_period, style.cloud_octaves, seed);
            out.push(if style.ridged { (1.0 - n.abs()).powi(3) } else { n });
        }
    }
    out
}

/// Feather-like dendrites drawn into an accumulator, blurred and saturated.
fn needles(style: &Style, h: usize, w: usize, rng: &mut Pcg64) -> Vec<f32> {
    let mut acc = vec![0f32; h * w];
    let count = (style.needle_density * (h * w) as f32 / 10_000.0).round() as usize;
    let branch_angle = 60f32.to_radians();
    for _ in 0..count {
        let cx = rng.random::<f32>() * w as f32;
        let cy = rng.random::<f32>() * h as f32;
        let angle = match style.needle_angle {
            Some((centre, spread)) => centre + spread * (rng.random::<f32>() * 2.0 - 1.0),
            None => rng.random::<f32>() * std::f32::consts::TAU,
        };
        let (lo, hi) = style.needle_length;
        let length = lo + (hi - lo) * rng.random::<f32>();
        let intensity = 0.5 + 0.5 * rng.random::<f32>();
        stroke(&mut acc, h, w, (cx, cy), angle, length, intensity);
        // Side branches, shorter towards the tip, alternating sides with jittered spacing.
        let mut s = style.branch_spacing * (0.5 + rng.random::<f32>());
        while s < length {
            let along = 1.0 - s / length;
            let blen = 0.45 * length * along * (0.6 + 0.4 * rng.random::<f32>());
            let (px, py) = (cx + s * angle.cos(), cy + s * angle.sin());
            for side in [-1.0f32, 1.0] {
                stroke(&mut acc, h, w, (px, py), angle + side * branch_angle, blen, 0.7 * intensity);
            }
            s += style.branch_spacing * (0.7 + 0.6 * rng.random::<f32>());
        }
    }
    gaussian_blur(&mut acc, h, w, style.needle_blur);
    for v in &mut acc {
        *v = 1.0 - (-1.5 * *v).exp();
    }
    acc
}

/// A straight segment from `start` along `angle`, splatted bilinearly every half pixel.
fn stroke(acc: &mut [f32], h: usize, w: usize, start: (f32, f32), angle: f32, length: f32, intensity: f32) {
    let steps = (length * 2.0).ceil() as usize;
    let (dx, dy) = (0.5 * angle.cos(), 0.5 * angle.sin());
    let (mut x, mut y) = start;
    for _ in 0..steps {
        if x >= 0.0 && y >= 0.0 && x < (w - 1) as f32 && y < (h - 1) as f32 {
            let (x0, y0) = (x as usize, y as usize);
            let (tx, ty) = (x - x0 as f32, y - y0 as f32);
            let i = y0 * w + x0;
            acc[i] += intensity * (1.0 - tx) * (1.0 - ty);
            acc[i + 1] += intensity * tx * (1.0 - ty);
            acc[i + w] += intensity * (1.0 - tx) * ty;
            acc[i + w + 1] += intensity * tx * ty;
        }
        x += dx;
        y += dy;
    }
}

/// In-place separable Gaussian blur (edge pixels repeated), σ in pixels.
fn gaussian_blur(v: &mut [f32], h: usize, w: usize, sigma: f32) {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / sum).collect();
    let mut tmp = vec![0f32; v.len()];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            for (k, &kw) in kernel.iter().enumerate() {
                let xx = (x as isize + k as isize - radius).clamp(0, w as isize - 1) as usize;
                s += kw * v[y * w + xx];
            }
            tmp[y * w + x] = s;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            for (k, &kw) in kernel.iter().enumerate() {
                let yy = (y as isize + k as isize - radius).clamp(0, h as isize - 1) as usize;
                s += kw * tmp[yy * w + x];
            }
            v[y * w + x] = s;
        }
    }
}
