//! FGSM and PGD (untargeted, L∞) on the lowered graph, in pixel space [0, 1]: every adversarial
//! image stays within eps of its source and inside [0, 1]. Random starts come from a Pcg64 per
//! example (seed, example index), so the result does not depend on the batch size or device.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::Serialize;
use tch::Tensor;

use crate::lower::LowerError;

use super::classifier::Classifier;
use super::options::{AttackMethod, AttackSpec};

/// An attack with every parameter resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Attack {
    pub method: AttackMethod,
    pub eps: f32,
    pub step_size: f32,
    pub steps: usize,
    pub random_start: bool,
}

impl Attack {
    /// The spec's attack for images of `data` = [height, width, channels]; None for `none`.
    pub fn resolve(spec: &AttackSpec, [height, width, channels]: [usize; 3]) -> Option<Attack> {
        let eps = spec.eps.unwrap_or(if channels == 1 && height <= 28 && width <= 28 { 0.1 } else { 8.0 / 255.0 });
        match spec.method {
            AttackMethod::None => None,
            AttackMethod::Fgsm => Some(Attack { method: AttackMethod::Fgsm, eps, step_size: eps, steps: 1, random_start: false }),
            AttackMethod::Pgd => Some(Attack {
                method: AttackMethod::Pgd,
                eps,
                step_size: spec.step_size.unwrap_or(eps / 4.0),
                steps: spec.steps,
                random_start: spec.random_start,
            }),
        }
    }

    /// Checks the values a spec can get wrong, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if !(self.eps > 0.0 && self.eps <= 1.0) {
            return Err(format!("attack.eps = {} must be in (0, 1] (pixel space)", self.eps));
        }
        if !(self.step_size > 0.0) {
            return Err(format!("attack.step_size = {} must be positive", self.step_size));
        }
        if self.steps == 0 {
            return Err("attack.steps must be at least 1".into());
        }
        Ok(())
    }

    /// Adversarial versions of `pixels` for `labels`. `examples` are the rows' example indices
    /// (their dataset positions) that seed each row's random start with `seed`; rows past them
    /// (filling a fixed batch) reuse the last.
    pub fn run(&self, classifier: &Classifier, pixels: &Tensor, labels: &Tensor, seed: u64, examples: &[usize]) -> Result<Tensor, LowerError> {
        let start = match (self.method, self.random_start) {
            (AttackMethod::Pgd, true) => {
                let noise = uniform_start(pixels, self.eps, seed, examples)?;
                pixels.f_add(&noise)?.f_clamp(0.0, 1.0)?
            }
            _ => pixels.shallow_clone(),
        };
        self.iterate(classifier, pixels, labels, start)
    }

    /// The attack's iterations from `start` (for tests against a reference with its own start).
    pub fn iterate(&self, classifier: &Classifier, pixels: &Tensor, labels: &Tensor, start: Tensor) -> Result<Tensor, LowerError> {
        let (low, high) = ((pixels.f_sub_scalar(self.eps as f64))?, pixels.f_add_scalar(self.eps as f64)?);
        let mut x = start.f_detach()?;
        for _ in 0..self.steps {
            let probe = x.f_detach()?.f_set_requires_grad(true)?;
            let loss = classifier.loss(&classifier.forward(&probe)?, labels)?;
            let [grad] = <[Tensor; 1]>::try_from(Tensor::f_run_backward(&[&loss], &[&probe], false, false)?)
                .map_err(|_| LowerError::Torch(tch::TchError::Kind("autograd returned no input gradient".into())))?;
            let stepped = x.f_add(&grad.f_sign()?.f_mul_scalar(self.step_size as f64)?)?;
            x = stepped.f_minimum(&high)?.f_maximum(&low)?.f_clamp(0.0, 1.0)?.f_detach()?;
        }
        Ok(x)
    }
}

/// Uniform noise in [-eps, eps] shaped like `pixels`, one Pcg64 stream per example index.
fn uniform_start(pixels: &Tensor, eps: f32, seed: u64, examples: &[usize]) -> Result<Tensor, tch::TchError> {
    let size = pixels.size();
    let rows = size[0] as usize;
    let per_row = pixels.numel() / rows.max(1);
    let mut values = Vec::with_capacity(rows * per_row);
    for row in 0..rows {
        let example = examples.get(row).or(examples.last()).copied().unwrap_or(row) as u64;
        let mut rng = Pcg64::seed_from_u64(seed ^ example.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        values.extend((0..per_row).map(|_| rng.random_range(-eps..=eps)));
    }
    Tensor::f_from_slice(&values)?.f_reshape(size.as_slice())?.f_to_device(pixels.device())
}
