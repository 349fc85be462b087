//! The bi-level search loop: per step, α takes an Adam step on a batch of half B (first or
//! second order), then the cell weights an SGD step on a batch of half A; everything outside
//! the cell stays frozen. Per epoch: losses, accuracies, the current genotype and its op
//! histogram are logged, and a checkpoint is written so an interrupted search can resume.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::commands::progress::steps_bar;
use crate::localize::Failure;
use crate::Error;

use super::checkpoint::Checkpoint;
use super::data::RepairData;
use super::genotype::Genotype;
use super::net::SplicedNet;
use super::ops::OpKind;
use super::optim::{clip_grad_norm, cosine, gradients, Adam, Sgd};
use super::options::{Order, SearchSpec};
use super::second_order::unrolled_alpha_gradient;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f64,
    /// Weight steps on half A.
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// α steps on half B (absent during warm-up).
    pub alpha_loss: Option<f64>,
    pub alpha_accuracy: Option<f64>,
    pub genotype: String,
    /// Derived op per edge → how many edges use it, before the skip cap (to watch collapse).
    pub histogram: BTreeMap<String, usize>,
    pub seconds: f64,
    /// The epoch diverged once, was rolled back and ran again at a tenth of the learning rates.
    #[serde(default)]
    pub rolled_back: bool,
}

pub struct SearchResult {
    pub genotype: Genotype,
    pub history: Vec<EpochLog>,
    /// softmax(α) at the end, [edge][op].
    pub mixing: Vec<Vec<f64>>,
    /// Largest |α_end − α_start| over all entries: 0 means the architecture never moved.
    pub alpha_max_change: f64,
    pub stopped_by_budget: bool,
    pub resumed_from_epoch: Option<usize>,
}

pub struct SearchLoop<'a> {
    pub spec: &'a SearchSpec,
    pub ops: &'a [OpKind],
    pub data: &'a RepairData,
    pub seed: u64,
    pub progress: bool,
    /// Where the per-epoch checkpoint goes, and whether to resume from it.
    pub checkpoint: Option<PathBuf>,
    pub resume: bool,
    /// Identifies the run a checkpoint belongs to (spec, model, block, seed).
    pub fingerprint: String,
}

impl SearchLoop<'_> {
    pub fn run(&self, net: &SplicedNet) -> Result<SearchResult, Failure> {
        let spec = self.spec;
        let alpha = net.alpha.as_ref().ok_or_else(|| Error::Mismatch("the search needs a search cell".into()))?.shallow_clone();
        let initial_alpha = alpha.detach().copy();
        let weights = net.cell_weights();
        let mut sgd = Sgd::new(weights.iter().map(Tensor::shallow_clone).collect(), spec.momentum, spec.weight_decay);
        let mut adam = Adam::new(vec![alpha.shallow_clone()], spec.alpha_betas, spec.alpha_weight_decay);
        let mut history = Vec::new();
        let mut first_epoch = 0;
        let mut resumed_from_epoch = None;
        if let (Some(path), true) = (&self.checkpoint, self.resume) {
            if let Some(saved) = Checkpoint::load(path, &self.fingerprint)? {
                saved.restore(net, &mut sgd, &mut adam)?;
                first_epoch = saved.state.epochs_done;
                resumed_from_epoch = Some(first_epoch);
                history = saved.state.history;
            }
        }

        let batch = spec.batch.max(1);
        let steps = self.data.half_a.len().min(self.data.half_b.len()) / batch;
        if steps == 0 {
            return Err(Error::Mismatch(format!(
                "the repair data is too small for one search step: {} + {} rows for batches of {batch}; lower `search.batch` or add training images",
                self.data.half_a.len(),
                self.data.half_b.len()
            ))
            .into());
        }
        let started = Instant::now();
        let budget = spec.budget_minutes.map(|m| m * 60.0);
        let mut stopped_by_budget = false;
        let bar = steps_bar((steps * spec.epochs.saturating_sub(first_epoch)) as u64, self.progress);
        // An epoch whose loss turns NaN or infinite is rolled back to its start and run again
        // at a tenth of both learning rates (for the rest of the search); a second divergence
        // ends the search with an error instead of a broken cell.
        let mut lr_scale = 1.0;
        let mut rolled_back_epoch = None;
        let mut epoch = first_epoch;
        while epoch < spec.epochs {
            let start_of_epoch = Checkpoint::capture(&self.fingerprint, epoch, &history, net, &sgd, &adam);
            let mut diverged = false;
            let epoch_started = Instant::now();
            let lr = cosine(spec.lr, spec.lr_min, epoch, spec.epochs) * lr_scale;
            let update_alpha = epoch >= spec.warmup_epochs;
            let mut rng = Pcg64::seed_from_u64(self.seed ^ (0x5345_4152 + epoch as u64));
            let (mut rows_a, mut rows_b) = (self.data.half_a.clone(), self.data.half_b.clone());
            rows_a.shuffle(&mut rng);
            rows_b.shuffle(&mut rng);
            let mut tally = Tally::default();
            for step in 0..steps {
                let range = step * batch..(step + 1) * batch;
                let (pa, la) = self.data.batch(&rows_a[range.clone()])?;
                if update_alpha {
                    let (pb, lb) = self.data.batch(&rows_b[range])?;
                    let (loss_b, correct_b) = net.loss(&pb, &lb, true)?;
                    if !tally.alpha.add(&loss_b, correct_b, batch).is_finite() {
                        diverged = true;
                        break;
                    }
                    let grads = match spec.order {
                        Order::First => gradients(&loss_b, std::slice::from_ref(&alpha))?,
                        Order::Second => {
                            let mut train_loss = || net.loss(&pa, &la, true).map(|l| l.0).map_err(lower_to_tch);
                            let mut val_loss = || net.loss(&pb, &lb, true).map(|l| l.0).map_err(lower_to_tch);
                            unrolled_alpha_gradient(&weights, std::slice::from_ref(&alpha), lr, spec.weight_decay, &mut train_loss, &mut val_loss)?
                        }
                    };
                    adam.step(&grads, spec.alpha_lr * lr_scale);
                }
                let (loss_a, correct_a) = net.loss(&pa, &la, true)?;
                if !tally.weights.add(&loss_a, correct_a, batch).is_finite() {
                    diverged = true;
                    break;
                }
                let mut grads = gradients(&loss_a, &weights)?;
                clip_grad_norm(&mut grads, spec.grad_clip);
                sgd.step(&grads, lr);
                crate::interrupt::check()?;
                bar.inc(1);
                if step % 10 == 0 {
                    let genotype = current_genotype(net, self.ops, spec);
                    bar.set_message(format!(
                        "search epoch {}/{} loss {:.3} acc {:.1}% | {genotype}",
                        epoch + 1,
                        spec.epochs,
                        tally.weights.mean_loss(),
                        100.0 * tally.weights.accuracy()
                    ));
                }
                if budget.is_some_and(|b| started.elapsed().as_secs_f64() > b) {
                    stopped_by_budget = true;
                    break;
                }
            }
            if diverged {
                if let Some(first) = rolled_back_epoch {
                    return Err(Error::Mismatch(format!(
                        "the search diverged (a NaN or infinite loss) in epoch {}, was rolled back to the epoch's start with a tenth of its learning rates, and diverged again in epoch {} (search.lr {:e}, search.alpha_lr {:e}); lower them, lower search.grad_clip, or check the data for NaN",
                        first + 1,
                        epoch + 1,
                        spec.lr,
                        spec.alpha_lr
                    ))
                    .into());
                }
                start_of_epoch.restore(net, &mut sgd, &mut adam)?;
                history.truncate(start_of_epoch.state.history.len());
                lr_scale = 0.1;
                rolled_back_epoch = Some(epoch);
                continue;
            }
            let genotype = current_genotype(net, self.ops, spec);
            let unguarded = Genotype::derive(&net.mixing(), self.ops, spec.nodes, usize::MAX);
            history.push(EpochLog {
                epoch,
                lr,
                train_loss: tally.weights.mean_loss(),
                train_accuracy: tally.weights.accuracy(),
                alpha_loss: update_alpha.then(|| tally.alpha.mean_loss()),
                alpha_accuracy: update_alpha.then(|| tally.alpha.accuracy()),
                genotype: genotype.to_string(),
                histogram: unguarded.histogram().into_iter().map(|(op, n)| (op.to_string(), n)).collect(),
                seconds: epoch_started.elapsed().as_secs_f64(),
                rolled_back: rolled_back_epoch == Some(epoch),
            });
            if let Some(path) = &self.checkpoint {
                Checkpoint::save(path, &self.fingerprint, epoch + 1, &history, net, &sgd, &adam)?;
            }
            if stopped_by_budget {
                break;
            }
            epoch += 1;
        }
        bar.finish_and_clear();
        let alpha_max_change = (alpha.detach() - initial_alpha).abs().max().double_value(&[]);
        Ok(SearchResult { genotype: current_genotype(net, self.ops, spec), history, mixing: net.mixing(), alpha_max_change, stopped_by_budget, resumed_from_epoch })
    }
}

fn current_genotype(net: &SplicedNet, ops: &[OpKind], spec: &SearchSpec) -> Genotype {
    Genotype::derive(&net.mixing(), ops, spec.nodes, spec.max_skip)
}

fn lower_to_tch(e: crate::lower::LowerError) -> tch::TchError {
    match e {
        crate::lower::LowerError::Torch(t) => t,
        other => tch::TchError::Torch(other.to_string()),
    }
}

/// Running sums of a loop's losses and accuracies.
#[derive(Default)]
pub(super) struct Tally {
    weights: Sums,
    alpha: Sums,
}

#[derive(Default)]
pub(super) struct Sums {
    loss: f64,
    correct: i64,
    seen: usize,
    batches: usize,
}

impl Sums {
    /// Adds one batch; returns its loss (NaN or infinite when the optimisation diverged).
    pub(super) fn add(&mut self, loss: &Tensor, correct: i64, batch: usize) -> f64 {
        let value = loss.double_value(&[]);
        self.loss += value;
        self.correct += correct;
        self.seen += batch;
        self.batches += 1;
        value
    }

    pub(super) fn mean_loss(&self) -> f64 {
        self.loss / self.batches.max(1) as f64
    }

    pub(super) fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}
