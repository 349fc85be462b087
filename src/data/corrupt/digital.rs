//! Brightness, contrast, elastic transform, pixelate and JPEG compression.

use rand::Rng;
use rand_pcg::Pcg64;

use super::filters::{self, Border, Op1d};

/// HSV value + `delta` (clipped to 1), hue and saturation kept: each channel is scaled by
/// `V'/V` where `V = max(r, g, b)` (black pixels, S = 0, become `V'` grey). On one channel,
/// the value is the pixel: `min(x + delta, 1)`.
pub(super) fn brightness(px: &mut [f32], c: usize, delta: f32) {
    for p in px.chunks_exact_mut(c) {
        let v = p.iter().copied().fold(0f32, f32::max);
        let v2 = (v + delta).clamp(0.0, 1.0);
        if v > 0.0 {
            let ratio = v2 / v;
            p.iter_mut().for_each(|x| *x *= ratio);
        } else {
            p.iter_mut().for_each(|x| *x = v2);
        }
    }
}

/// `(x − mean) · factor + mean` with the mean of each channel over the image.
pub(super) fn contrast(px: &mut [f32], c: usize, factor: f32) {
    let n = (px.len() / c) as f64;
    let means: Vec<f32> = (0..c).map(|ch| (px.iter().skip(ch).step_by(c).map(|&v| f64::from(v)).sum::<f64>() / n) as f32).collect();
    for p in px.chunks_exact_mut(c) {
        for (x, m) in p.iter_mut().zip(&means) {
            *x = (*x - m) * factor + m;
        }
    }
}

/// Prepared Gaussian for the displacement fields (skimage `gaussian`, mode 'reflect', truncate 3).
#[derive(Debug, Clone)]
pub(super) struct ElasticPlan {
    pub alpha: f64,
    pub affine: f64,
    pub op_y: Op1d,
    pub op_x: Op1d,
}

impl ElasticPlan {
    pub(super) fn new(h: usize, w: usize, alpha: f64, sigma: f64, affine: f64) -> ElasticPlan {
        let k = filters::scipy_gaussian_kernel(sigma, 3.0);
        ElasticPlan { alpha, affine, op_y: Op1d::correlate(h, &k, Border::Reflect), op_x: Op1d::correlate(w, &k, Border::Reflect) }
    }
}

/// ImageNet-C's elastic transform: a random affine warp of three points around the centre
/// (jitter uniform in ±`affine` px; cv2.warpAffine, reflect-101), then a displacement field
/// `α · gaussian(U(−1, 1), σ)` per axis, sampled bilinearly with half-sample reflection
/// (scipy map_coordinates, order 1, mode 'reflect').
pub(super) fn elastic(px: &[f32], h: usize, w: usize, c: usize, plan: &ElasticPlan, rng: &mut Pcg64) -> Vec<f32> {
    // np.float32((h, w)) // 2 used as a cv2 (x, y) point, as in the original.
    let (c0, c1) = ((h / 2) as f64, (w / 2) as f64);
    let sq = (h.min(w) / 3) as f64;
    let pts1 = [[c0 + sq, c1 + sq], [c0 + sq, c1 - sq], [c0 - sq, c1 - sq]];
    let mut pts2 = pts1;
    for p in &mut pts2 {
        for v in p.iter_mut() {
            *v += (rng.random_range(-plan.affine..=plan.affine) as f32) as f64;
        }
    }
    let warped = match filters::affine_from_points(pts1, pts2) {
        Some(m) => filters::warp_affine(px, h, w, c, &m, Some(Border::Reflect101)),
        None => px.to_vec(),
    };
    if plan.alpha == 0.0 {
        return warped;
    }
    let field = |rng: &mut Pcg64| -> Vec<f32> {
        let noise: Vec<f32> = (0..h * w).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut f = filters::separable(&noise, h, w, 1, &plan.op_y, &plan.op_x);
        f.iter_mut().for_each(|v| *v *= plan.alpha as f32);
        f
    };
    let dx = field(rng);
    let dy = field(rng);
    let mut out = vec![0f32; px.len()];
    for y in 0..h {
        for x in 0..w {
            let (sy, sx) = (y as f32 + dy[y * w + x], x as f32 + dx[y * w + x]);
            for ch in 0..c {
                out[(y * w + x) * c + ch] = filters::sample_bilinear(&warped, (h, w, c), ch, (sy, sx), Border::Reflect);
            }
        }
    }
    out
}

/// Pillow's resampling coefficients (`precompute_coeffs` with the box filter, support 0.5)
/// in its 8-bit fixed point (22 fractional bits, rounded).
fn pil_box_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i64>)> {
    const PRECISION_BITS: u32 = 22;
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 0.5 * filterscale;
    (0..out_size)
        .map(|xx| {
            let centre = (xx as f64 + 0.5) * scale;
            let xmin = ((centre - support + 0.5) as i64).max(0) as usize;
            let xmax = ((centre + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = (x as f64 - centre + 0.5) / filterscale;
                    if t > -0.5 && t <= 0.5 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    (0.5 + k * f64::from(1u32 << PRECISION_BITS)) as i64
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> 22).clamp(0, 255) as u8
}

/// `PIL.Image.resize((out_w, out_h), Image.BOX)` on bytes: horizontal pass, then vertical,
/// each rounded to bytes.
pub(super) fn pil_resize_box(bytes: &[u8], h: usize, w: usize, c: usize, out_h: usize, out_w: usize) -> Vec<u8> {
    let half = 1i64 << 21;
    let mut horizontal = bytes.to_vec();
    let mut cur_w = w;
    if out_w != w {
        let coeffs = pil_box_coeffs(w, out_w);
        horizontal = vec![0u8; h * out_w * c];
        for y in 0..h {
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for ch in 0..c {
                    let acc = k.iter().enumerate().fold(half, |a, (j, &kj)| a + i64::from(bytes[(y * w + xmin + j) * c + ch]) * kj);
                    horizontal[(y * out_w + xx) * c + ch] = clip8(acc);
                }
            }
        }
        cur_w = out_w;
    }
    if out_h == h {
        return horizontal;
    }
    let coeffs = pil_box_coeffs(h, out_h);
    let mut out = vec![0u8; out_h * cur_w * c];
    for (yy, (ymin, k)) in coeffs.iter().enumerate() {
        for x in 0..cur_w {
            for ch in 0..c {
                let acc = k.iter().enumerate().fold(half, |a, (j, &kj)| a + i64::from(horizontal[((ymin + j) * cur_w + x) * c + ch]) * kj);
                out[(yy * cur_w + x) * c + ch] = clip8(acc);
            }
        }
    }
    out
}

/// Down to `int(size · factor)` and back up with Pillow's box filter, on the image's bytes.
pub(super) fn pixelate(bytes: &[u8], h: usize, w: usize, c: usize, factor: f64) -> Vec<u8> {
    let small_h = ((h as f64 * factor) as usize).max(1);
    let small_w = ((w as f64 * factor) as usize).max(1);
    let small = pil_resize_box(bytes, h, w, c, small_h, small_w);
    pil_resize_box(&small, small_h, small_w, c, h, w)
}

/// Baseline JPEG at `quality` (IJG tables, 4:2:0 chroma for RGB as Pillow/libjpeg do by
/// default, chroma box-averaged as libjpeg's h2v2_downsample; grey images as one-component
/// JPEG), decoded back to bytes.
pub(super) fn jpeg(bytes: &[u8], h: usize, w: usize, c: usize, quality: u8) -> Result<Vec<u8>, String> {
    use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, SamplingFactor};
    let mut encoded = Vec::new();
    let mut encoder = Encoder::new(&mut encoded, quality);
    let color = if c == 3 {
        encoder.set_sampling_factor(SamplingFactor::F_2_2);
        // jpeg-encoder's default takes the top-left pixel of each 2x2 block.
        encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
        ColorType::Rgb
    } else {
        ColorType::Luma
    };
    let (wu, hu) = (u16::try_from(w).map_err(|e| e.to_string())?, u16::try_from(h).map_err(|e| e.to_string())?);
    encoder.encode(bytes, wu, hu, color).map_err(|e| e.to_string())?;
    let decoded = image::load_from_memory_with_format(&encoded, image::ImageFormat::Jpeg).map_err(|e| e.to_string())?;
    Ok(if c == 3 { decoded.to_rgb8().into_raw() } else { decoded.to_luma8().into_raw() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_and_brightness_by_hand_on_a_2x2_image() {
        // Grey 2x2: mean 0.5; factor 0.5 pulls every value half-way to it.
        let mut g = vec![0.0f32, 0.2, 0.8, 1.0];
        contrast(&mut g, 1, 0.5);
        assert_eq!(g, vec![0.25, 0.35, 0.65, 0.75]);
        // RGB 2x2: channel means (0.5, 0.25, 0.0).
        let mut rgb = vec![0.0f32, 0.5, 0.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.5, 0.0, 0.0];
        contrast(&mut rgb, 3, 0.0);
        assert_eq!(rgb, vec![0.5, 0.25, 0.0, 0.5, 0.25, 0.0, 0.5, 0.25, 0.0, 0.5, 0.25, 0.0]);
        // Brightness: V = max channel; (0.2, 0.4, 0.1) + 0.1 → V' = 0.5, every channel × 1.25.
        let mut p = vec![0.2f32, 0.4, 0.1, 0.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.9, 0.9, 0.9];
        brightness(&mut p, 3, 0.1);
        let want = [0.25, 0.5, 0.125, 0.1, 0.1, 0.1, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{p:?}");
        }
        let mut grey = vec![0.0f32, 0.5, 0.95, 1.0];
        brightness(&mut grey, 1, 0.1);
        assert_eq!(grey, vec![0.1, 0.6, 1.0, 1.0]);
    }

    #[test]
    fn pil_box_resize_averages_blocks_and_upsamples_by_replication() {
        // 4 → 2 averages pairs (rounded), 2 → 4 repeats.
        let line = [10u8, 20, 30, 41];
        assert_eq!(pil_resize_box(&line, 1, 4, 1, 1, 2), vec![15, 36]);
        assert_eq!(pil_resize_box(&[15, 36], 1, 2, 1, 1, 4), vec![15, 15, 36, 36]);
        // 28 → 16 → 28 keeps a constant image.
        let flat = vec![77u8; 28 * 28 * 3];
        assert_eq!(pixelate(&flat, 28, 28, 3, 0.6), flat);
    }

    #[test]
    fn jpeg_chroma_is_averaged_over_2x2_blocks_as_libjpeg_does() {
        // Columns alternate red and blue: each 2x2 chroma block averages one of each, so red
        // and blue come out alike on average. Taking one pixel per block (jpeg-encoder's
        // default) would tint the whole image red, the colour of the top-left pixels.
        let (h, w) = (16, 16);
        let bytes: Vec<u8> = (0..h * w).flat_map(|i| if i % 2 == 0 { [255, 0, 0] } else { [0, 0, 255] }).collect();
        let out = jpeg(&bytes, h, w, 3, 100).unwrap();
        let mean = |ch: usize| out.iter().skip(ch).step_by(3).map(|&v| f64::from(v)).sum::<f64>() / (h * w) as f64;
        assert!((mean(0) - mean(2)).abs() < 10.0, "red {} vs blue {}", mean(0), mean(2));
    }

    #[test]
    fn jpeg_at_quality_100_is_close_to_the_input() {
        let (h, w) = (28, 28);
        for c in [1, 3] {
            let bytes: Vec<u8> = (0..h * w * c).map(|i| ((i / c) % w * 9 + (i / c) / w * 4) as u8).collect();
            let out = jpeg(&bytes, h, w, c, 100).unwrap();
            assert_eq!(out.len(), bytes.len());
            let mad = out.iter().zip(&bytes).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs()).sum::<f64>() / bytes.len() as f64;
            assert!(mad < 1.5, "{c} channels: mean |diff| {mad}");
            let low = jpeg(&bytes, h, w, c, 10).unwrap();
            let mad_low = low.iter().zip(&bytes).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs()).sum::<f64>() / bytes.len() as f64;
            assert!(mad_low > mad, "{c} channels: quality 10 ({mad_low}) not worse than 100 ({mad})");
        }
    }
}
