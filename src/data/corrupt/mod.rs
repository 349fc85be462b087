//! The 15 ImageNet-C / CIFAR-10-C corruptions at severities 1-5 (Hendrycks & Dietterich,
//! "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR 2019).
//!
//! Three parameter tables ([`ParamSet`]): CIFAR-10-C's (32x32), our adaptation to 28x28 grey
//! images, and corrupt-tta's (the reference implementation we compare against). Every
//! corruption works on 1- and 3-channel images of any size from 8x8; results are clipped to
//! [0, 1]. docs/corruptions.md describes each algorithm, the tables and where we differ from
//! the originals.
//!
//! Determinism: the random numbers of image `index` come from a Pcg64 seeded with
//! [`image_seed`]`(seed, corruption, severity, index)`, so an image's result depends on
//! nothing else (not on batching, threads or the other images).
//!
//! Modules: [`params`] (the tables), `noise`, `blur`, `weather` (snow, frost, fog), `digital`
//! (brightness, contrast, elastic, pixelate, JPEG), `filters` (borders, convolution, zoom,
//! warps) and `frost_texture` (the procedural frost pictures).

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::image::Image;

mod blur;
mod digital;
mod filters;
mod frost_texture;
mod noise;
pub(crate) mod params;
mod weather;

#[cfg(test)]
mod tests;

use params::Spec;

/// The 15 corruptions of the benchmark, in the order of the paper's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Corruption {
    GaussianNoise,
    ShotNoise,
    ImpulseNoise,
    DefocusBlur,
    GlassBlur,
    MotionBlur,
    ZoomBlur,
    Snow,
    Frost,
    Fog,
    Brightness,
    Contrast,
    ElasticTransform,
    Pixelate,
    JpegCompression,
}

impl Corruption {
    /// All 15, in the paper's order (also CIFAR-10-C's file order).
    pub const ALL: [Corruption; 15] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::DefocusBlur,
        Corruption::GlassBlur,
        Corruption::MotionBlur,
        Corruption::ZoomBlur,
        Corruption::Snow,
        Corruption::Frost,
        Corruption::Fog,
        Corruption::Brightness,
        Corruption::Contrast,
        Corruption::ElasticTransform,
        Corruption::Pixelate,
        Corruption::JpegCompression,
    ];

    /// The snake_case name CIFAR-10-C gives its file (`gaussian_noise.npy`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::DefocusBlur => "defocus_blur",
            Corruption::GlassBlur => "glass_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::ZoomBlur => "zoom_blur",
            Corruption::Snow => "snow",
            Corruption::Frost => "frost",
            Corruption::Fog => "fog",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::ElasticTransform => "elastic_transform",
            Corruption::Pixelate => "pixelate",
            Corruption::JpegCompression => "jpeg_compression",
        }
    }

    /// Position in [`Corruption::ALL`].
    pub fn index(self) -> usize {
        Corruption::ALL.iter().position(|&c| c == self).expect("every corruption is in ALL")
    }

    /// True for the corruptions that draw no random numbers (their result ignores the seed).
    pub fn is_deterministic(self) -> bool {
        matches!(
            self,
            Corruption::Brightness
                | Corruption::Contrast
                | Corruption::Pixelate
                | Corruption::JpegCompression
                | Corruption::DefocusBlur
                | Corruption::ZoomBlur
        )
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown corruption or parameter-set name; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}` (valid: {valid})")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub valid: String,
}

impl FromStr for Corruption {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Corruption::ALL.into_iter().find(|c| c.name() == wanted).ok_or_else(|| UnknownName {
            what: "corruption",
            name: s.to_string(),
            valid: Corruption::ALL.map(Corruption::name).join(", "),
        })
    }
}

/// Which table of parameters (per corruption and severity) to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamSet {
    /// CIFAR-10-C's tables (make_cifar_c.py), for 32x32 images.
    Cifar10C,
    /// Our adaptation of CIFAR-10-C to 28x28 grey images (MNIST, Fashion-MNIST).
    Grey28,
    /// The parameters and kernels of the reference Python implementation corrupt-tta 0.1.7
    /// (ImageNet-C's tables), so that the two can be compared on the same images.
    CorruptTta,
}

impl ParamSet {
    pub const ALL: [ParamSet; 3] = [ParamSet::Cifar10C, ParamSet::Grey28, ParamSet::CorruptTta];

    /// `cifar10-c`, `grey28` or `corrupt-tta` (the command line's spelling).
    pub fn name(self) -> &'static str {
        match self {
            ParamSet::Cifar10C => "cifar10-c",
            ParamSet::Grey28 => "grey28",
            ParamSet::CorruptTta => "corrupt-tta",
        }
    }

    /// The table for images of this shape: [`ParamSet::Grey28`] for one-channel images of at
    /// most 28x28 (MNIST, Fashion-MNIST, ...), [`ParamSet::Cifar10C`] for everything else.
    pub fn default_for(height: usize, width: usize, channels: usize) -> ParamSet {
        if channels == 1 && height <= 28 && width <= 28 {
            ParamSet::Grey28
        } else {
            ParamSet::Cifar10C
        }
    }
}

impl fmt::Display for ParamSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ParamSet {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match wanted.as_str() {
            "cifar10c" | "cifar-10-c" => "cifar10-c",
            "corrupttta" | "corrupt-tta" | "tta" => "corrupt-tta",
            "grey-28" | "gray28" | "gray-28" => "grey28",
            other => other,
        };
        ParamSet::ALL.into_iter().find(|p| p.name() == alias).ok_or_else(|| UnknownName {
            what: "parameter set",
            name: s.to_string(),
            valid: ParamSet::ALL.map(ParamSet::name).join(", "),
        })
    }
}

/// Smallest side the corruptions accept.
pub const MIN_SIDE: usize = 8;

/// Whether images of this shape can be corrupted: 1 or 3 channels, at least 8x8, at most
/// 65,535 on a side (JPEG's limit).
pub fn check_shape(height: usize, width: usize, channels: usize) -> Result<(), String> {
    if channels != 1 && channels != 3 {
        return Err(format!("corruptions need 1 (grey) or 3 (RGB) channels, not {channels}"));
    }
    if height < MIN_SIDE || width < MIN_SIDE {
        return Err(format!("corruptions need images of at least {MIN_SIDE}x{MIN_SIDE}, not {height}x{width}"));
    }
    if height > usize::from(u16::MAX) || width > usize::from(u16::MAX) {
        return Err(format!("images of {height}x{width} are too large"));
    }
    Ok(())
}

/// SplitMix64's finaliser (Steele, Lea & Flood 2014).
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of image `index`'s random numbers:
/// `s = splitmix64(seed); s = splitmix64(s ^ (16·corruption_index + severity)); s = splitmix64(s ^ index)`,
/// each step SplitMix64's full mix, so neighbouring seeds, corruptions, severities and indices
/// give unrelated streams. The Pcg64 is then `Pcg64::seed_from_u64(s)`.
pub fn image_seed(seed: u64, corruption: Corruption, severity: u8, index: u64) -> u64 {
    let s = splitmix64(seed);
    let s = splitmix64(s ^ (16 * corruption.index() as u64 + u64::from(severity)));
    splitmix64(s ^ index)
}

/// `image` corrupted by `corruption` at `severity` (1..=5) with the parameters of `params`;
/// the same `seed` gives the same result. Same as [`corrupt_indexed`] with index 0.
///
/// # Panics
/// When `severity` is not in 1..=5 or the image's shape fails [`check_shape`].
pub fn corrupt(image: &Image, corruption: Corruption, severity: u8, params: ParamSet, seed: u64) -> Image {
    corrupt_indexed(image, corruption, severity, params, seed, 0)
}

/// [`corrupt`] for image number `index` of a data set (its random numbers come from
/// [`image_seed`]`(seed, corruption, severity, index)`).
pub fn corrupt_indexed(image: &Image, corruption: Corruption, severity: u8, params: ParamSet, seed: u64, index: u64) -> Image {
    let plan = Plan::new(corruption, severity, params, image.height, image.width, image.channels);
    plan.apply(image, seed, index)
}

/// The images corrupted in parallel (one thread per available core): image `i` gets index
/// `first_index + i`, so the result is the same as calling [`corrupt_indexed`] one by one.
/// All images must have the same shape. Kernels and tables are prepared once.
pub fn corrupt_batch(images: &[Image], corruption: Corruption, severity: u8, params: ParamSet, seed: u64, first_index: u64) -> Vec<Image> {
    let Some(first) = images.first() else { return Vec::new() };
    let plan = Plan::new(corruption, severity, params, first.height, first.width, first.channels);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(images.len()).max(1);
    let chunk = images.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = images
            .chunks(chunk)
            .enumerate()
            .map(|(k, part)| {
                let plan = &plan;
                s.spawn(move || {
                    let base = first_index + (k * chunk) as u64;
                    part.iter().enumerate().map(|(i, img)| plan.apply(img, seed, base + i as u64)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("corruption worker panicked")).collect()
    })
}

/// Everything that depends on (corruption, severity, table, shape) but not on the image:
/// kernels, filter operators, Poisson tables, frost pictures.
struct Plan {
    corruption: Corruption,
    severity: u8,
    h: usize,
    w: usize,
    c: usize,
    prepared: Prepared,
}

enum Prepared {
    GaussianNoise(f32),
    ShotNoise(noise::ShotTable),
    ImpulseNoise(f64),
    DefocusBlur(filters::Kernel2d),
    GlassBlur(blur::GlassPlan),
    MotionBlur { radius: f64, sigma: f64, kernel: params::MotionKernel },
    ZoomBlur(Vec<f64>),
    Snow(weather::SnowParams),
    Frost(weather::FrostPlan),
    Fog { strength: f64, decay: f64, min_map: usize },
    Brightness(f32),
    Contrast(f32),
    Elastic(digital::ElasticPlan),
    Pixelate(f64),
    Jpeg(u8),
}

impl Plan {
    fn new(corruption: Corruption, severity: u8, params: ParamSet, h: usize, w: usize, c: usize) -> Plan {
        if let Err(e) = check_shape(h, w, c) {
            panic!("{e}");
        }
        let prepared = match params::spec(params, corruption, severity) {
            Spec::GaussianNoise { sigma } => Prepared::GaussianNoise(sigma),
            Spec::ShotNoise { rate } => Prepared::ShotNoise(noise::ShotTable::new(rate)),
            Spec::ImpulseNoise { amount } => Prepared::ImpulseNoise(amount),
            Spec::DefocusBlur { radius, alias_sigma } => Prepared::DefocusBlur(blur::disk_kernel(radius, alias_sigma)),
            Spec::GlassBlur { sigma, max_delta, iterations, order } => Prepared::GlassBlur(blur::GlassPlan::new(h, w, sigma, max_delta, iterations, order)),
            Spec::MotionBlur { radius, sigma, kernel } => Prepared::MotionBlur { radius, sigma, kernel },
            Spec::ZoomBlur { factors } => Prepared::ZoomBlur(factors),
            Spec::Snow { loc, scale, zoom, threshold, radius, sigma, blend, kernel } => {
                Prepared::Snow(weather::SnowParams { loc, scale, zoom, threshold, radius, sigma, blend, kernel })
            }
            Spec::Frost { image_weight, frost_weight, source } => Prepared::Frost(weather::FrostPlan::new(h, w, image_weight, frost_weight, source)),
            Spec::Fog { strength, decay, min_map } => Prepared::Fog { strength, decay, min_map },
            Spec::Brightness { delta } => Prepared::Brightness(delta),
            Spec::Contrast { factor } => Prepared::Contrast(factor),
            Spec::Elastic { alpha, sigma, affine } => Prepared::Elastic(digital::ElasticPlan::new(h, w, alpha, sigma, affine)),
            Spec::Pixelate { factor } => Prepared::Pixelate(factor),
            Spec::Jpeg { quality } => Prepared::Jpeg(quality),
        };
        Plan { corruption, severity, h, w, c, prepared }
    }

    fn apply(&self, image: &Image, seed: u64, index: u64) -> Image {
        let (h, w, c) = (self.h, self.w, self.c);
        assert!(
            image.height == h && image.width == w && image.channels == c,
            "image {index} is {}x{}x{}, the batch {h}x{w}x{c}",
            image.height,
            image.width,
            image.channels
        );
        let mut rng = Pcg64::seed_from_u64(image_seed(seed, self.corruption, self.severity, index));
        let px = &image.pixels;
        let mut out = match &self.prepared {
            Prepared::GaussianNoise(sigma) => {
                let mut p = px.clone();
                noise::gaussian(&mut p, *sigma, &mut rng);
                p
            }
            Prepared::ShotNoise(table) => {
                let mut p = px.clone();
                noise::shot(&mut p, table, &mut rng);
                p
            }
            Prepared::ImpulseNoise(amount) => {
                let mut p = px.clone();
                noise::impulse(&mut p, *amount, &mut rng);
                p
            }
            Prepared::DefocusBlur(kernel) => blur::defocus(px, h, w, c, kernel),
            Prepared::GlassBlur(plan) => blur::glass(px, h, w, c, plan, &mut rng),
            Prepared::MotionBlur { radius, sigma, kernel } => blur::motion(px, h, w, c, (*kernel, *radius, *sigma), &mut rng),
            Prepared::ZoomBlur(factors) => blur::zoom(px, h, w, c, factors),
            Prepared::Snow(p) => weather::snow(px, h, w, c, p, &mut rng),
            Prepared::Frost(plan) => weather::frost(px, h, w, c, plan, &mut rng),
            Prepared::Fog { strength, decay, min_map } => weather::fog(px, h, w, c, (*strength, *decay, *min_map), &mut rng),
            Prepared::Brightness(delta) => {
                let mut p = px.clone();
                digital::brightness(&mut p, c, *delta);
                p
            }
            Prepared::Contrast(factor) => {
                let mut p = px.clone();
                digital::contrast(&mut p, c, *factor);
                p
            }
            Prepared::Elastic(plan) => digital::elastic(px, h, w, c, plan, &mut rng),
            Prepared::Pixelate(factor) => bytes_to_unit(&digital::pixelate(&image.to_u8(), h, w, c, *factor)),
            Prepared::Jpeg(quality) => {
                let encoded = digital::jpeg(&image.to_u8(), h, w, c, *quality);
                bytes_to_unit(&encoded.unwrap_or_else(|e| panic!("JPEG round trip of a {h}x{w}x{c} image failed: {e}")))
            }
        };
        for v in &mut out {
            *v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        }
        Image::new(h, w, c, out)
    }
}

fn bytes_to_unit(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| f32::from(b) / 255.0).collect()
}
