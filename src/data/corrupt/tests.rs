//! Properties every corruption must have, over the three tables, both channel counts and all
//! severities. Algorithm-level checks (kernels, borders, JPEG, PIL box resize, hand-computed
//! contrast and brightness) live next to the code they check.

use super::*;

/// A test picture: smooth gradient, a bright square, a dark disc and thin stripes, so that
/// blurs, noise, colour and geometric corruptions all have something to change.
fn picture(h: usize, w: usize, c: usize, variant: usize) -> Image {
    let mut px = Vec::with_capacity(h * w * c);
    for y in 0..h {
        for x in 0..w {
            let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
            let mut v = 0.2 + 0.4 * (fx + variant as f32 * 0.1 * fy);
            if (h / 4..h / 2).contains(&y) && (w / 5..w / 2).contains(&x) {
                v = 0.85;
            }
            let (dy, dx) = (fy - 0.7, fx - 0.65);
            if dy * dy + dx * dx < 0.03 {
                v = 0.1;
            }
            if (x + variant).is_multiple_of(7) {
                v = 0.95 - v * 0.5;
            }
            for ch in 0..c {
                px.push((v * (1.0 - 0.15 * ch as f32) + 0.05 * ch as f32).clamp(0.0, 1.0));
            }
        }
    }
    // Quantise to bytes, as images read from files are.
    let img = Image::new(h, w, c, px);
    Image::from_u8(h, w, c, &img.to_u8())
}

/// A more photograph-like picture for effect sizes: moderate brightness, smooth shading,
/// a few objects and fine texture (hashed noise of ±0.08), no periodic pattern.
fn natural_picture(h: usize, w: usize, c: usize, variant: usize) -> Image {
    let mut px = Vec::with_capacity(h * w * c);
    for y in 0..h {
        for x in 0..w {
            let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
            let mut v = 0.15 + 0.3 * fx + 0.1 * variant as f32 * fy;
            if (h / 4..h / 2 + variant).contains(&y) && (w / 5..w / 2).contains(&x) {
                v = 0.7;
            }
            let (dy, dx) = (fy - 0.65, fx - 0.6);
            if dy * dy + dx * dx < 0.04 {
                v = 0.05;
            }
            let hash = splitmix64((y * 1000 + x + variant * 1_000_000) as u64);
            v += ((hash >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.16;
            for ch in 0..c {
                px.push((v * (1.0 - 0.1 * ch as f32)).clamp(0.0, 1.0));
            }
        }
    }
    Image::from_u8(h, w, c, &Image::new(h, w, c, px).to_u8())
}

fn side(params: ParamSet) -> usize {
    match params {
        ParamSet::Cifar10C => 32,
        ParamSet::Grey28 | ParamSet::CorruptTta => 28,
    }
}

fn mean_abs_diff(a: &Image, b: &Image) -> f64 {
    a.pixels.iter().zip(&b.pixels).map(|(&x, &y)| f64::from((x - y).abs())).sum::<f64>() / a.pixels.len() as f64
}

#[test]
fn every_cell_gives_a_valid_changed_image_for_grey_and_rgb() {
    // No cell of the three tables is the identity. (CIFAR-10-C's severity-1 elastic transform
    // has α = σ = 0, no elastic displacement, but its random affine warp of ±2.56 px remains.)
    for params in ParamSet::ALL {
        let n = side(params);
        for c in [1, 3] {
            let clean = picture(n, n, c, 1);
            for corruption in Corruption::ALL {
                for severity in 1..=5 {
                    let out = corrupt(&clean, corruption, severity, params, 7);
                    let cell = format!("{params} {corruption} s{severity} c{c}");
                    assert_eq!((out.height, out.width, out.channels), (n, n, c), "{cell}");
                    assert_eq!(out.pixels.len(), n * n * c, "{cell}");
                    assert!(out.pixels.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{cell}: value outside [0, 1]");
                    assert!(mean_abs_diff(&out, &clean) > 1e-4, "{cell}: the image did not change");
                }
            }
        }
    }
}

#[test]
fn other_sizes_work_too() {
    for (h, w) in [(8, 8), (9, 13), (40, 24)] {
        for c in [1, 3] {
            let clean = picture(h, w, c, 2);
            for params in ParamSet::ALL {
                for corruption in Corruption::ALL {
                    let out = corrupt(&clean, corruption, 5, params, 3);
                    assert_eq!(out.pixels.len(), h * w * c, "{params} {corruption} {h}x{w}x{c}");
                    assert!(out.pixels.iter().all(|v| (0.0..=1.0).contains(v)), "{params} {corruption} {h}x{w}x{c}");
                }
            }
        }
    }
}

#[test]
fn seeds_decide_random_corruptions_and_deterministic_ones_ignore_them() {
    for params in ParamSet::ALL {
        let n = side(params);
        for c in [1, 3] {
            let clean = picture(n, n, c, 0);
            for corruption in Corruption::ALL {
                let a = corrupt(&clean, corruption, 3, params, 11);
                let again = corrupt(&clean, corruption, 3, params, 11);
                let other_seed = corrupt(&clean, corruption, 3, params, 12);
                let other_index = corrupt_indexed(&clean, corruption, 3, params, 11, 1);
                assert_eq!(a, again, "{params} {corruption}: same seed, different result");
                if corruption.is_deterministic() {
                    assert_eq!(a, other_seed, "{params} {corruption} is deterministic but depends on the seed");
                    assert_eq!(a, other_index, "{params} {corruption} is deterministic but depends on the index");
                } else {
                    assert_ne!(a, other_seed, "{params} {corruption}: seed ignored");
                    assert_ne!(a, other_index, "{params} {corruption}: image index ignored");
                }
            }
        }
    }
}

#[test]
fn batches_match_one_by_one_whatever_the_threads() {
    let images: Vec<Image> = (0..7).map(|v| picture(28, 28, 1, v)).collect();
    for corruption in [Corruption::GaussianNoise, Corruption::GlassBlur, Corruption::Frost, Corruption::JpegCompression] {
        let batch = corrupt_batch(&images, corruption, 4, ParamSet::Grey28, 5, 100);
        assert_eq!(batch.len(), images.len());
        for (i, (img, out)) in images.iter().zip(&batch).enumerate() {
            assert_eq!(*out, corrupt_indexed(img, corruption, 4, ParamSet::Grey28, 5, 100 + i as u64), "{corruption} image {i}");
        }
        // A batch cut in two gives the same images.
        let tail = corrupt_batch(&images[3..], corruption, 4, ParamSet::Grey28, 5, 103);
        assert_eq!(tail, batch[3..].to_vec());
    }
    assert!(corrupt_batch(&[], Corruption::Fog, 1, ParamSet::Grey28, 0, 0).is_empty());
}

/// Cells where a stronger severity does not change images more by this measure, because of
/// the tables themselves: (table, corruption, severities s where effect(s+1) ≤ effect(s) is
/// allowed, why).
const NOT_MONOTONE: &[(ParamSet, Corruption, &[u8], &str)] = &[
    // CIFAR-10-C: α = 0 at severity 1, but the affine jitter shrinks with severity (±2.56,
    // 2.24, 1.92, 1.6, 0.96 px) faster than α grows: the total displacement decreases.
    (ParamSet::Cifar10C, Corruption::ElasticTransform, &[1, 2, 3, 4], "affine jitter shrinks faster than α grows"),
    (ParamSet::Grey28, Corruption::ElasticTransform, &[1, 2, 3, 4], "affine jitter shrinks faster than α grows"),
    // ImageNet-C's severities 1-2 warp the whole 28 px image (α = 448 px, ±22 / ±45 px affine
    // jitter); severities 3-5 are local (α ≤ 27 px, σ = 2.2 px, ±4.5 px).
    (ParamSet::CorruptTta, Corruption::ElasticTransform, &[1, 2], "severities 1-2 warp the whole image"),
    // Severities 1-3 shuffle the same way (one pass of ±1 px swaps) and differ only in the
    // Gaussian σ (0.05, 0.25, 0.4), which smooths the shuffled pixels back towards the clean
    // ones; likewise 4-5 (two passes, σ 0.25 then 0.4).
    (ParamSet::Cifar10C, Corruption::GlassBlur, &[1, 2, 4], "same swaps, larger σ smooths them"),
    (ParamSet::Grey28, Corruption::GlassBlur, &[1, 2, 4], "same swaps, larger σ smooths them"),
    // Severities 2-4 all have radius 15 and corrupt-tta's line kernel ignores σ: the same
    // corruption; severity 5's 41-tap line saturates on 28 px.
    (ParamSet::CorruptTta, Corruption::MotionBlur, &[2, 3, 4], "σ ignored: severities 2-4 are identical"),
    // The image weight falls as the frost weight rises ((1, .3), (.9, .4), (.85, .4)):
    // |(a − 1)·x + b·frost| barely changes from 2 to 4, below the spread of random crops.
    (ParamSet::Cifar10C, Corruption::Frost, &[2, 3], "image weight falls as frost weight rises"),
    (ParamSet::Grey28, Corruption::Frost, &[2, 3], "image weight falls as frost weight rises"),
    (ParamSet::CorruptTta, Corruption::Frost, &[2, 3], "image weight falls as frost weight rises"),
    // corrupt-tta ignores fog's decay: severities 3 and 4 are both strength 2.5.
    (ParamSet::CorruptTta, Corruption::Fog, &[3], "decay ignored: severities 3 and 4 are identical"),
];

#[test]
fn stronger_severities_change_images_more() {
    let mut failures = Vec::new();
    for params in ParamSet::ALL {
        let n = side(params);
        let images: Vec<Image> = (0..4).map(|v| natural_picture(n, n, if params == ParamSet::Cifar10C { 3 } else { 1 }, v)).collect();
        for corruption in Corruption::ALL {
            let effect: Vec<f64> = (1..=5u8)
                .map(|s| {
                    let mut total = 0.0;
                    for (i, img) in images.iter().enumerate() {
                        for seed in 0..16 {
                            total += mean_abs_diff(&corrupt_indexed(img, corruption, s, params, seed, i as u64), img);
                        }
                    }
                    total
                })
                .collect();
            let allowed = NOT_MONOTONE.iter().find(|(p, c, _, _)| *p == params && *c == corruption).map_or(&[][..], |e| e.2);
            for s in 1..5u8 {
                let (a, b) = (effect[usize::from(s) - 1], effect[usize::from(s)]);
                if std::env::var_os("PRINT_EFFECTS").is_some() {
                    eprintln!("{params} {corruption} s{s}->{}: {a:.4} -> {b:.4}", s + 1);
                }
                if b <= a && !allowed.contains(&s) {
                    failures.push(format!("{params} {corruption}: severity {} ({b:.4}) ≤ severity {s} ({a:.4})", s + 1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn names_parse_back_and_errors_list_the_valid_ones() {
    for c in Corruption::ALL {
        assert_eq!(c.name().parse::<Corruption>().unwrap(), c);
        assert_eq!(Corruption::ALL[c.index()], c);
    }
    assert_eq!("Gaussian-Noise".parse::<Corruption>().unwrap(), Corruption::GaussianNoise);
    let err = "speckle_noise".parse::<Corruption>().unwrap_err().to_string();
    assert!(err.contains("speckle_noise") && err.contains("jpeg_compression") && err.contains("elastic_transform"), "{err}");
    for p in ParamSet::ALL {
        assert_eq!(p.name().parse::<ParamSet>().unwrap(), p);
    }
    assert!("imagenet-c".parse::<ParamSet>().unwrap_err().to_string().contains("grey28"));
    let deterministic: Vec<&str> = Corruption::ALL.iter().filter(|c| c.is_deterministic()).map(|c| c.name()).collect();
    assert_eq!(deterministic, ["defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"]);
}

#[test]
fn default_tables_follow_the_image_shape() {
    assert_eq!(ParamSet::default_for(28, 28, 1), ParamSet::Grey28);
    assert_eq!(ParamSet::default_for(32, 32, 3), ParamSet::Cifar10C);
    assert_eq!(ParamSet::default_for(28, 28, 3), ParamSet::Cifar10C);
    assert_eq!(ParamSet::default_for(32, 32, 1), ParamSet::Cifar10C);
    assert!(check_shape(7, 28, 1).is_err() && check_shape(28, 28, 4).is_err() && check_shape(8, 8, 3).is_ok());
}

#[test]
fn image_seeds_separate_every_input() {
    let base = image_seed(0, Corruption::Fog, 1, 0);
    assert_ne!(base, image_seed(1, Corruption::Fog, 1, 0));
    assert_ne!(base, image_seed(0, Corruption::Frost, 1, 0));
    assert_ne!(base, image_seed(0, Corruption::Fog, 2, 0));
    assert_ne!(base, image_seed(0, Corruption::Fog, 1, 1));
    assert_eq!(base, image_seed(0, Corruption::Fog, 1, 0));
}

#[test]
fn frost_textures_match_their_calibration_targets() {
    use frost_texture::{fifth_size, full_size};
    // Per-channel means and standard deviations measured on the six reference photographs
    // (docs/corruptions.md), which the generator maps its textures to.
    let targets: [([f64; 3], [f64; 3]); 6] = [
        ([77.7, 149.1, 165.7], [26.9, 16.5, 15.3]),
        ([200.8, 205.4, 214.5], [21.4, 22.1, 22.6]),
        ([200.8, 205.4, 214.5], [21.4, 22.1, 22.6]),
        ([137.6, 152.8, 165.2], [28.5, 28.5, 29.9]),
        ([112.4, 123.4, 134.8], [44.4, 43.3, 41.7]),
        ([71.4, 95.4, 104.5], [35.2, 42.7, 47.4]),
    ];
    let full = full_size();
    assert_eq!(full.len(), 6);
    for (k, (t, (mean, std))) in full.iter().zip(targets).enumerate() {
        for ch in 0..3 {
            let v: Vec<f64> = t.rgb.iter().skip(ch).step_by(3).map(|&b| f64::from(b)).collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            assert!((m - mean[ch]).abs() < 3.0, "texture {k} channel {ch}: mean {m} vs {}", mean[ch]);
            assert!((s / std[ch] - 1.0).abs() < 0.15, "texture {k} channel {ch}: std {s} vs {}", std[ch]);
        }
        // A frost picture is structured, not noise: neighbours correlate.
        let luma: Vec<f64> = t.rgb.chunks(3).map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).collect();
        let diff = luma.windows(2).map(|p| (p[0] - p[1]).abs()).sum::<f64>() / luma.len() as f64;
        assert!(diff < 0.5 * std[1], "texture {k}: neighbours differ by {diff} on average");
    }
    let fifth = fifth_size();
    assert_eq!((fifth[0].height, fifth[0].width), (120, 180));
    assert_eq!((fifth[3].height, fifth[3].width), (70, 105)); // cv2: round(527 · 0.2) = 105
    // Same textures every time (a fixed generator seed).
    assert_eq!(full[5].rgb[..300], frost_texture::full_size()[5].rgb[..300]);
}
