//! The three parameter tables: what each corruption does at each severity.
//!
//! - [`ParamSet::Cifar10C`]: the numbers of CIFAR-10-C's `make_cifar_c.py` (Hendrycks &
//!   Dietterich), with its kernels (ImageMagick's motion blur, quantised snow layer, frost
//!   pictures resized by 0.2, plasma map of 32).
//! - [`ParamSet::Grey28`]: the same numbers for 28x28 grey images, continuous lengths (Gaussian
//!   σ, motion-blur radius and σ, elastic's image size) scaled by 28/32; see docs/corruptions.md.
//! - [`ParamSet::CorruptTta`]: corrupt-tta 0.1.7's numbers (ImageNet-C's, for 224 px) and kernels.

use super::{Corruption, ParamSet};

/// Which motion-blur kernel a table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MotionKernel {
    /// ImageMagick's MotionBlurImage (ImageNet-C / CIFAR-10-C through Wand): a one-sided line
    /// of `2⌈r⌉ + 1` taps `exp(−i²/2σ²)` at offsets `round(i·(cos a, sin a))`, edge pixels
    /// repeated.
    Magick,
    /// corrupt-tta's replacement: a centred horizontal line of `2r + 1` ones rotated by
    /// cv2.warpAffine (bilinear), normalised, applied by cv2.filter2D (reflect-101); σ unused.
    Line,
}

/// Order in which glass blur walks the pixels it swaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwapOrder {
    /// CIFAR-10-C: rows and columns from `size − d` down to `d + 1`, one (dx, dy) drawn per pixel.
    Descending,
    /// corrupt-tta: rows and columns from `d` up to `size − d − 1`, shifts drawn per iteration.
    Ascending,
}

/// Which frost pictures a table crops from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrostSource {
    /// CIFAR-10-C: the first five pictures resized by 0.2; crop start in `[0, size − h)`.
    FirstFiveFifthSize,
    /// corrupt-tta: all six pictures at full size; crop start in `[0, size − h]`.
    AllSixFullSize,
}

/// One cell of a table: a corruption at a severity, with everything its algorithm needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Spec {
    GaussianNoise { sigma: f32 },
    ShotNoise { rate: f64 },
    ImpulseNoise { amount: f64 },
    DefocusBlur { radius: f64, alias_sigma: f64 },
    GlassBlur { sigma: f64, max_delta: usize, iterations: usize, order: SwapOrder },
    MotionBlur { radius: f64, sigma: f64, kernel: MotionKernel },
    ZoomBlur { factors: Vec<f64> },
    Snow { loc: f64, scale: f64, zoom: f64, threshold: f64, radius: f64, sigma: f64, blend: f32, kernel: MotionKernel },
    Frost { image_weight: f32, frost_weight: f32, source: FrostSource },
    Fog { strength: f64, decay: f64, min_map: usize },
    Brightness { delta: f32 },
    Contrast { factor: f32 },
    Elastic { alpha: f64, sigma: f64, affine: f64 },
    Pixelate { factor: f64 },
    Jpeg { quality: u8 },
}

/// `np.arange(start, stop, step)`: `ceil((stop − start)/step)` values `start + i·δ` with
/// `δ = (start + step) − start`, as numpy computes them.
pub(crate) fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| start + i as f64 * delta).collect()
}

/// The ratio by which Grey28 scales CIFAR-10-C's continuous lengths.
pub(crate) const GREY28_SCALE: f64 = 28.0 / 32.0;

/// The parameters of `corruption` at `severity` (1..=5) in `params`.
pub(crate) fn spec(params: ParamSet, corruption: Corruption, severity: u8) -> Spec {
    assert!((1..=5).contains(&severity), "severity must be 1..=5, got {severity}");
    let s = usize::from(severity - 1);
    match params {
        ParamSet::Cifar10C => cifar10c(corruption, s, 1.0, 32.0),
        ParamSet::Grey28 => cifar10c(corruption, s, GREY28_SCALE, 28.0),
        ParamSet::CorruptTta => corrupt_tta(corruption, s),
    }
}

/// CIFAR-10-C's table; `scale` multiplies continuous lengths, `imsize` is elastic's IMSIZE.
fn cifar10c(corruption: Corruption, s: usize, scale: f64, imsize: f64) -> Spec {
    use Corruption::*;
    match corruption {
        GaussianNoise => Spec::GaussianNoise { sigma: [0.04, 0.06, 0.08, 0.09, 0.10][s] },
        ShotNoise => Spec::ShotNoise { rate: [500.0, 250.0, 100.0, 75.0, 50.0][s] },
        ImpulseNoise => Spec::ImpulseNoise { amount: [0.01, 0.02, 0.03, 0.05, 0.07][s] },
        DefocusBlur => {
            // The disk radius is a lattice threshold (x² + y² ≤ r²): scaling 1 to 0.875 would
            // drop the 4-neighbour cross and make severity 4 nearly the identity, so it is kept.
            let (radius, alias) = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)][s];
            Spec::DefocusBlur { radius, alias_sigma: alias * scale }
        }
        GlassBlur => {
            let (sigma, max_delta, iterations) = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][s];
            Spec::GlassBlur { sigma: sigma * scale, max_delta, iterations, order: SwapOrder::Descending }
        }
        MotionBlur => {
            let (radius, sigma) = [(6.0, 1.0), (6.0, 1.5), (6.0, 2.0), (8.0, 2.0), (9.0, 2.5)][s];
            Spec::MotionBlur { radius: radius * scale, sigma: sigma * scale, kernel: MotionKernel::Magick }
        }
        ZoomBlur => Spec::ZoomBlur { factors: np_arange(1.0, [1.06, 1.11, 1.16, 1.21, 1.26][s], 0.01) },
        Snow => {
            let (loc, sc, zoom, threshold, radius, sigma, blend) = [
                (0.1, 0.2, 1.0, 0.6, 8.0, 3.0, 0.95),
                (0.1, 0.2, 1.0, 0.5, 10.0, 4.0, 0.9),
                (0.15, 0.3, 1.75, 0.55, 10.0, 4.0, 0.9),
                (0.25, 0.3, 2.25, 0.6, 12.0, 6.0, 0.85),
                (0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8),
            ][s];
            Spec::Snow { loc, scale: sc, zoom, threshold, radius: radius * scale, sigma: sigma * scale, blend, kernel: MotionKernel::Magick }
        }
        Frost => {
            let (image_weight, frost_weight) = [(1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][s];
            Spec::Frost { image_weight, frost_weight, source: FrostSource::FirstFiveFifthSize }
        }
        Fog => {
            let (strength, decay) = [(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)][s];
            Spec::Fog { strength, decay, min_map: 32 }
        }
        Brightness => Spec::Brightness { delta: [0.05, 0.1, 0.15, 0.2, 0.3][s] },
        Contrast => Spec::Contrast { factor: [0.75, 0.5, 0.4, 0.3, 0.15][s] },
        ElasticTransform => {
            let (alpha, sigma, affine) = [(0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][s];
            Spec::Elastic { alpha: imsize * alpha, sigma: imsize * sigma, affine: imsize * affine }
        }
        Pixelate => Spec::Pixelate { factor: [0.95, 0.9, 0.85, 0.75, 0.65][s] },
        JpegCompression => Spec::Jpeg { quality: [80, 65, 58, 50, 40][s] },
    }
}

/// corrupt-tta 0.1.7's table (ImageNet-C's numbers for 224 px images).
fn corrupt_tta(corruption: Corruption, s: usize) -> Spec {
    use Corruption::*;
    match corruption {
        GaussianNoise => Spec::GaussianNoise { sigma: [0.08, 0.12, 0.18, 0.26, 0.38][s] },
        ShotNoise => Spec::ShotNoise { rate: [60.0, 25.0, 12.0, 5.0, 3.0][s] },
        ImpulseNoise => Spec::ImpulseNoise { amount: [0.03, 0.06, 0.09, 0.17, 0.27][s] },
        DefocusBlur => {
            let (radius, alias_sigma) = [(3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)][s];
            Spec::DefocusBlur { radius, alias_sigma }
        }
        GlassBlur => {
            let (sigma, max_delta, iterations) = [(0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][s];
            Spec::GlassBlur { sigma, max_delta, iterations, order: SwapOrder::Ascending }
        }
        MotionBlur => {
            let (radius, sigma) = [(10.0, 3.0), (15.0, 5.0), (15.0, 8.0), (15.0, 12.0), (20.0, 15.0)][s];
            Spec::MotionBlur { radius, sigma, kernel: MotionKernel::Line }
        }
        ZoomBlur => {
            let (stop, step) = [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)][s];
            Spec::ZoomBlur { factors: np_arange(1.0, stop, step) }
        }
        Snow => {
            let (loc, scale, zoom, threshold, radius, sigma, blend) = [
                (0.1, 0.3, 3.0, 0.5, 10.0, 4.0, 0.8),
                (0.2, 0.3, 2.0, 0.5, 12.0, 4.0, 0.7),
                (0.55, 0.3, 4.0, 0.9, 12.0, 8.0, 0.7),
                (0.55, 0.3, 4.5, 0.85, 12.0, 8.0, 0.65),
                (0.55, 0.3, 2.5, 0.85, 12.0, 12.0, 0.55),
            ][s];
            Spec::Snow { loc, scale, zoom, threshold, radius, sigma, blend, kernel: MotionKernel::Line }
        }
        Frost => {
            let (image_weight, frost_weight) = [(1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][s];
            Spec::Frost { image_weight, frost_weight, source: FrostSource::AllSixFullSize }
        }
        Fog => {
            // corrupt-tta calls plasma_fractal without its wibble decay: always 3.
            let strength = [1.5, 2.0, 2.5, 2.5, 3.0][s];
            Spec::Fog { strength, decay: 3.0, min_map: 1 }
        }
        Brightness => Spec::Brightness { delta: [0.1, 0.2, 0.3, 0.4, 0.5][s] },
        Contrast => Spec::Contrast { factor: [0.4, 0.3, 0.2, 0.1, 0.05][s] },
        ElasticTransform => {
            let (alpha, sigma, affine) = [(2.0, 0.7, 0.1), (2.0, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)][s];
            Spec::Elastic { alpha: 224.0 * alpha, sigma: 224.0 * sigma, affine: 224.0 * affine }
        }
        Pixelate => Spec::Pixelate { factor: [0.6, 0.5, 0.4, 0.3, 0.25][s] },
        JpegCompression => Spec::Jpeg { quality: [25, 18, 15, 10, 7][s] },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn np_arange_has_numpys_lengths() {
        // numpy: len(np.arange(1, 1.11, 0.01)) == 12 (1.11 − 1 = 0.11000000000000010 > 0.11).
        assert_eq!(np_arange(1.0, 1.11, 0.01).len(), 12);
        assert_eq!(np_arange(1.0, 1.16, 0.01).len(), 16);
        assert_eq!(np_arange(1.0, 1.21, 0.02).len(), 11);
        assert_eq!(np_arange(1.0, 1.26, 0.02).len(), 13);
        assert_eq!(np_arange(1.0, 1.31, 0.03).len(), 11);
        let cifar: Vec<usize> = [1.06, 1.11, 1.16, 1.21, 1.26].iter().map(|&s| np_arange(1.0, s, 0.01).len()).collect();
        assert_eq!(cifar, vec![7, 12, 16, 21, 26]);
        assert_eq!(np_arange(1.0, 1.06, 0.01)[0], 1.0);
    }

    #[test]
    fn every_cell_of_every_table_exists() {
        for params in ParamSet::ALL {
            for c in Corruption::ALL {
                for s in 1..=5 {
                    let _ = spec(params, c, s);
                }
            }
        }
    }

    #[test]
    fn grey28_scales_continuous_lengths_only() {
        let c = spec(ParamSet::Cifar10C, Corruption::MotionBlur, 5);
        let g = spec(ParamSet::Grey28, Corruption::MotionBlur, 5);
        assert_eq!(c, Spec::MotionBlur { radius: 9.0, sigma: 2.5, kernel: MotionKernel::Magick });
        assert_eq!(g, Spec::MotionBlur { radius: 9.0 * 0.875, sigma: 2.5 * 0.875, kernel: MotionKernel::Magick });
        assert_eq!(spec(ParamSet::Grey28, Corruption::Pixelate, 3), spec(ParamSet::Cifar10C, Corruption::Pixelate, 3));
        assert_eq!(
            spec(ParamSet::Grey28, Corruption::ElasticTransform, 2),
            Spec::Elastic { alpha: 28.0 * 0.05, sigma: 28.0 * 0.2, affine: 28.0 * 0.07 }
        );
    }
}
