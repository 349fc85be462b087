//! `probe` (ours): which unit, fine-tuned alone, repairs the most?
//!
//! A repair needs the unit where a change fixes the failures without breaking the passing
//! inputs, which is not always where the failures look most unusual (docs/BENCHMARKS.md,
//! "Ablation": the spectrum's block repairs worse than the last block on Fashion-MNIST). `probe`
//! asks the repair's question directly, at small scale:
//! - D_fail and the passing sample are each split into two seeded halves: the fit half and the
//!   check half;
//! - per unit, only its own weights (the trainable initializers its nodes read, the scope of
//!   `finetune-block`) take `localize.probe_steps` SGD steps (momentum 0.9, rate
//!   `localize.probe_lr`, mean cross-entropy) on batches of the fit half, the same batches for
//!   every unit;
//! - the unit scores its accuracy on the check half, failures and passing inputs alike (so a
//!   repaired failure counts as much as a broken passing input);
//! - the weights are then copied back bit for bit.
//!
//! Eval mode throughout: BatchNormalization statistics never move.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::Serialize;
use tch::Tensor;

use crate::baselines::{restore, snapshot, trainable_read_by, GradGuard};
use crate::commands::progress::steps_bar;
use crate::data::Dataset;
use crate::graph::Graph;
use crate::search::optim::Sgd;
use crate::Error;

use super::classifier::Classifier;
use super::units::Probes;
use super::{labelled_batch, Collected, Failure};

/// Momentum of the probe's SGD steps (as the repair's training; no weight decay).
const MOMENTUM: f64 = 0.9;

/// What one unit's probe did (ranking.json `units[].probe`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeOutcome {
    /// Weight elements trained.
    pub params: i64,
    /// Share of the check half's failures classified right after the probe.
    pub repaired: f64,
    /// Share of the check half's passing inputs classified wrong after the probe.
    pub broken: f64,
}

/// The probe's settings and inputs.
pub(crate) struct Probe<'a> {
    pub classifier: &'a Classifier<'a>,
    pub data: &'a Dataset,
    pub batch: usize,
    pub steps: usize,
    pub lr: f64,
    pub seed: u64,
    pub progress: bool,
}

impl Probe<'_> {
    /// Per unit of `probes`, its score (accuracy on the check half after its probe; NaN for a
    /// unit without trainable weights, ranked last) and what the probe did.
    pub(crate) fn measure(&self, graph: &Graph, probes: &Probes, collected: &Collected) -> Result<Vec<(f64, Option<ProbeOutcome>)>, Failure> {
        if self.steps == 0 || !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Failure::Other(Error::Mismatch(format!(
                "localize.probe_steps is {} and localize.probe_lr {}: the probe needs at least one step at a positive, finite rate (defaults: 24 and 0.001)",
                self.steps, self.lr
            ))));
        }
        let mut rng = Pcg64::seed_from_u64(self.seed ^ 0x70_726f_6265);
        let halves = |set: &[usize], rng: &mut Pcg64| {
            let mut set = set.to_vec();
            set.shuffle(rng);
            let check = set.split_off(set.len() / 2);
            (set, check)
        };
        let (fit_failures, check_failures) = halves(&collected.failures, &mut rng);
        let (fit_passing, check_passing) = halves(&collected.passing, &mut rng);
        if check_failures.is_empty() || fit_failures.is_empty() {
            return Err(Failure::Other(Error::Mismatch(format!(
                "localize.method probe needs at least 2 failures to fit on one half and check on the other; D_fail has {} (collect.failures)",
                collected.failures.len()
            ))));
        }
        let fit: Vec<usize> = fit_failures.into_iter().chain(fit_passing).collect();
        let schedule = self.schedule(&fit, &mut rng);

        let bar = steps_bar((probes.units.len() * self.steps) as u64, self.progress);
        let mut out = Vec::with_capacity(probes.units.len());
        for unit in &probes.units {
            bar.set_message(format!("probe: {}", unit.info.name));
            let weights: Vec<Tensor> = trainable_read_by(graph, self.classifier.model, Some(&unit.info.nodes)).iter().map(|w| w.tensor.shallow_clone()).collect();
            if weights.is_empty() {
                out.push((f64::NAN, None));
                bar.inc(self.steps as u64);
                continue;
            }
            let saved = snapshot(&weights);
            let probed = self.fit(&weights, &schedule, &bar).and_then(|()| Ok((self.correct(&check_failures)?, self.correct(&check_passing)?)));
            // The weights go back whatever happened, before any error goes up.
            restore(&weights, &saved);
            let (repaired, kept) = probed?;
            let total = (check_failures.len() + check_passing.len()) as f64;
            let outcome = ProbeOutcome {
                params: weights.iter().map(|w| w.numel() as i64).sum(),
                repaired: repaired as f64 / check_failures.len() as f64,
                broken: if check_passing.is_empty() { 0.0 } else { 1.0 - kept as f64 / check_passing.len() as f64 },
            };
            out.push(((repaired + kept) as f64 / total, Some(outcome)));
        }
        bar.finish_and_clear();
        Ok(out)
    }

    /// The fit half's batches for every step: seeded epochs of the fit half, cut in batches.
    fn schedule(&self, fit: &[usize], rng: &mut Pcg64) -> Vec<Vec<usize>> {
        let mut batches = Vec::with_capacity(self.steps);
        while batches.len() < self.steps {
            let mut epoch = fit.to_vec();
            epoch.shuffle(rng);
            batches.extend(epoch.chunks(self.batch.max(1)).map(<[usize]>::to_vec).take(self.steps - batches.len()));
        }
        batches
    }

    /// `steps` SGD steps with momentum on `weights` alone, one batch of `schedule` each.
    fn fit(&self, weights: &[Tensor], schedule: &[Vec<usize>], bar: &indicatif::ProgressBar) -> Result<(), Failure> {
        let _grad = GradGuard::new(weights, &[]);
        let mut sgd = Sgd::new(weights.iter().map(Tensor::shallow_clone).collect(), MOMENTUM, 0.0);
        for batch in schedule {
            let (pixels, labels, real) = labelled_batch(self.classifier.input, self.data, batch)?;
            let output = self.classifier.forward(&pixels)?.f_narrow(0, 0, real as i64)?;
            let loss = self.classifier.loss(&output, &labels.f_narrow(0, 0, real as i64)?)?.f_div_scalar(real as f64)?;
            let gradients = Tensor::f_run_backward(&[&loss], weights, false, false)?;
            sgd.step(&gradients, self.lr);
            crate::interrupt::check()?;
            bar.inc(1);
        }
        Ok(())
    }

    /// How many of `indices` the model classifies right.
    fn correct(&self, indices: &[usize]) -> Result<usize, Failure> {
        let mut right = 0;
        for chunk in indices.chunks(self.batch.max(1)) {
            let (pixels, labels, real) = labelled_batch(self.classifier.input, self.data, chunk)?;
            let predicted = self.classifier.predict(&pixels)?;
            let hits = predicted.f_eq_tensor(&labels)?.f_narrow(0, 0, real as i64)?.f_sum(tch::Kind::Int64)?.f_int64_value(&[])?;
            right += hits as usize;
        }
        Ok(right)
    }
}
