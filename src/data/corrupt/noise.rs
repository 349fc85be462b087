//! Gaussian, shot (Poisson) and impulse (salt-and-pepper) noise, drawn per value (per pixel
//! and channel), as ImageNet-C draws them over the whole HWC array.

use rand::Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use rand_pcg::Pcg64;

/// `clip(x + N(0, σ²))`.
pub(super) fn gaussian(px: &mut [f32], sigma: f32, rng: &mut Pcg64) {
    for v in px {
        let n: f32 = rng.sample(StandardNormal);
        *v = (*v + sigma * n).clamp(0.0, 1.0);
    }
}

/// Poisson distributions for `clip(Poisson(x·rate) / rate)`, prepared once per severity for
/// the 256 values that are multiples of 1/255 (every image read from bytes).
#[derive(Debug, Clone)]
pub(super) struct ShotTable {
    rate: f64,
    by_byte: Vec<Option<Poisson<f64>>>,
}

impl ShotTable {
    pub(super) fn new(rate: f64) -> ShotTable {
        ShotTable { rate, by_byte: (0..256).map(|b| poisson(f64::from(b) / 255.0 * rate)).collect() }
    }
}

/// `clip(Poisson(x·rate) / rate)`.
pub(super) fn shot(px: &mut [f32], table: &ShotTable, rng: &mut Pcg64) {
    let rate = table.rate;
    for v in px {
        let level = *v * 255.0;
        let byte = level.round();
        let dist = if (level - byte).abs() < 1e-3 && (0.0..=255.0).contains(&byte) {
            table.by_byte[byte as usize]
        } else {
            poisson(f64::from(*v) * rate)
        };
        let k = dist.map_or(0.0, |d| d.sample(rng));
        *v = ((k / rate) as f32).clamp(0.0, 1.0);
    }
}

fn poisson(lambda: f64) -> Option<Poisson<f64>> {
    // Poisson(0) is the constant 0 (rand_distr rejects λ = 0).
    if lambda > 0.0 {
        Poisson::new(lambda).ok()
    } else {
        None
    }
}

/// skimage's `random_noise(mode='s&p', amount)`: each value is replaced with probability
/// `amount`, by 1 (salt) or 0 (pepper) with equal chance.
pub(super) fn impulse(px: &mut [f32], amount: f64, rng: &mut Pcg64) {
    for v in px {
        let flipped = rng.random::<f64>() < amount;
        let salted = rng.random::<f64>() < 0.5;
        if flipped {
            *v = if salted { 1.0 } else { 0.0 };
        }
    }
}
