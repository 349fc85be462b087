//! Apricot (Zhang & Chan, "Apricot: A Weight-Adaptation Approach to Fixing Deep Learning
//! Models", ASE 2019), a weight-only baseline: train k reduced models (rDLMs) on random subsets
//! of the training data; for each failing input, move the input model's (iDLM's) weights toward
//! the mean weights of the rDLMs that classify it right (or away from those that do not); then
//! retrain briefly on the training data; repeat, keeping the weights best on the held-out slice.
//!
//! Ours, not the paper's (docs/baselines.md): each rDLM starts from the subject's weights and
//! trains `rdlm_epochs` (the paper trains rDLMs from scratch, too slow on a 2-core CPU);
//! failures are adapted in batches of `batch` whose moves are averaged (`batch: 1` is the paper's
//! one input at a time); BatchNormalization statistics never move (eval mode throughout).

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::commands::progress::steps_bar;
use crate::localize::Failure;
use crate::lower::{LowerError, LoweredModel, Role};
use crate::search::optim::{clip_grad_norm, gradients, Sgd};
use crate::search::train::accuracy;
use crate::Error;

use super::{restore, snapshot, Context, GradGuard};

/// `apricot`: the reduced models, the weight adaptation and the retraining after it. The
/// optimiser's batch, momentum, weight decay and gradient clipping are `train`'s.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApricotSpec {
    /// Reduced models (rDLMs) trained, each on its own random subset of the training rows (the
    /// paper uses 20; fewer here for a CPU's budget).
    pub rdlms: usize,
    /// Share of the training rows each rDLM trains on (a fresh seeded sample per rDLM), in (0, 1].
    pub rdlm_fraction: f64,
    /// Epochs each rDLM trains, starting from the subject's weights (ours: the paper trains
    /// rDLMs from scratch).
    pub rdlm_epochs: usize,
    /// SGD learning rate of the rDLMs' training.
    pub rdlm_lr: f64,
    /// How a failure moves the weights w. 1: toward the mean of the rDLMs that classify it
    /// right, w − lr·(w − mean), or, when none does, away from the mean of the others,
    /// w + lr·(w − mean). 2: away from the rDLMs that get it wrong, or toward the others when
    /// every rDLM gets it right. 3: both moves added.
    #[schemars(range(min = 1, max = 3))]
    pub strategy: u8,
    /// Adaptation rate `lr` of the moves above.
    pub lr: f64,
    /// Failures whose moves are averaged into one weight update (1: the paper's one input at a
    /// time).
    pub batch: usize,
    /// Adaptation passes over the failures, each followed by retraining and a held-out check.
    pub iterations: usize,
    /// Epochs of retraining (fine-tuning every trainable weight on the training rows) after
    /// each adaptation pass; 0 = none.
    pub retrain_epochs: usize,
    /// SGD learning rate of the retraining.
    pub retrain_lr: f64,
}

impl Default for ApricotSpec {
    fn default() -> Self {
        ApricotSpec { rdlms: 8, rdlm_fraction: 0.1, rdlm_epochs: 1, rdlm_lr: 0.01, strategy: 1, lr: 0.02, batch: 32, iterations: 3, retrain_epochs: 1, retrain_lr: 0.001 }
    }
}

impl ApricotSpec {
    fn check(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Mismatch(format!("spec key apricot.{msg}")));
        if self.rdlms == 0 {
            return bad("rdlms is 0: Apricot needs at least one reduced model".into());
        }
        if !(self.rdlm_fraction > 0.0 && self.rdlm_fraction <= 1.0) {
            return bad(format!("rdlm_fraction is {}: expected a share in (0, 1]", self.rdlm_fraction));
        }
        if !(1..=3).contains(&self.strategy) {
            return bad(format!("strategy is {}: expected 1, 2 or 3", self.strategy));
        }
        for (key, value) in [("rdlm_lr", self.rdlm_lr), ("lr", self.lr), ("retrain_lr", self.retrain_lr)] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(format!("{key} is {value}: expected a finite number ≥ 0"));
            }
        }
        Ok(())
    }
}

/// What Apricot did, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApricotLog {
    pub strategy: u8,
    /// One entry per rDLM.
    pub rdlms: Vec<RdlmLog>,
    /// D_fail rows Apricot adapts on (the failures among the training rows, not held out).
    pub failures: usize,
    pub iterations: Vec<IterationLog>,
    pub holdout_accuracy_before: f64,
    /// Of the weights the model is left with (the subject's when `kept` is false).
    pub holdout_accuracy_after: f64,
    /// The iteration (0-based) whose weights were kept.
    pub best_iteration: Option<usize>,
    /// Some iteration beat the subject on the held-out slice; otherwise the subject's weights
    /// were put back.
    pub kept: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RdlmLog {
    /// Training rows it trained on.
    pub rows: usize,
    pub holdout_accuracy: f64,
    /// Of the `failures` rows, how many it classifies right.
    pub failures_right: usize,
    /// Its training hit a NaN or infinite loss and stopped at its last good weights.
    pub diverged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationLog {
    pub iteration: usize,
    /// Failures the model got wrong at the pass's start (the ones adapted on).
    pub failing_before: usize,
    /// Of those, how many some rDLM classifies right.
    pub with_correct_rdlm: usize,
    /// Weight updates (batches of failures).
    pub updates: usize,
    /// Failures still wrong after the adaptation, before retraining.
    pub failing_after_adaptation: usize,
    /// Failures still wrong after retraining.
    pub failing_after_retrain: usize,
    /// `failing_before − failing_after_retrain`.
    pub failures_fixed: i64,
    pub holdout_accuracy: f64,
    /// The retraining hit a NaN or infinite loss: it stopped and its epoch's starting weights
    /// were put back.
    pub retrain_diverged: bool,
    pub seconds: f64,
}

/// Runs Apricot on `ctx.model`, whose trainable weights it leaves at the kept iteration's (or
/// at the subject's when none beats it on the held-out slice).
pub fn repair(ctx: &Context) -> Result<ApricotLog, Error> {
    let spec = &ctx.spec.apricot;
    spec.check()?;
    if ctx.data.holdout.is_empty() {
        return Err(Error::Mismatch("Apricot chooses its weights on the held-out slice of the repair data, which is empty (search.holdout is 0 or the repair data too small)".into()));
    }
    let started = Instant::now();
    let rdlms = train_rdlms(ctx)?;
    let mut log = adapt_and_retrain(ctx, &rdlms).map_err(model_error("Apricot's weight adaptation"))?;
    log.seconds = started.elapsed().as_secs_f64();
    Ok(log)
}

/// The rDLMs: each one's trainable weights (in the order of [`trainable`]) and which of the
/// adapted-on failures it classifies right.
pub struct ReducedModels {
    pub weights: Vec<Vec<Tensor>>,
    /// The D_fail rows of `right` (training rows only, each once, ascending).
    pub failure_rows: Vec<i64>,
    /// `right[j][i]`: rDLM j classifies `failure_rows[i]` right.
    pub right: Vec<Vec<bool>>,
    pub log: Vec<RdlmLog>,
}

impl ReducedModels {
    /// rDLMs with the given weights (in the order of [`trainable`]), scored on the failures and
    /// the held-out slice by loading each into the model in turn; the model's weights are put
    /// back afterwards. Their log says `rows: 0` (no training of ours).
    pub fn from_weights(ctx: &Context, weights: Vec<Vec<Tensor>>) -> Result<ReducedModels, Error> {
        Self::scored(ctx, weights).map_err(model_error("scoring Apricot's reduced models"))
    }

    fn scored(ctx: &Context, weights: Vec<Vec<Tensor>>) -> Result<ReducedModels, Failure> {
        let params = trainable(ctx.model);
        let subject = snapshot(&params);
        let failure_rows = failure_rows(ctx);
        let mut rdlms = ReducedModels { weights: Vec::new(), failure_rows, right: Vec::new(), log: Vec::new() };
        for w in weights {
            if w.len() != params.len() {
                return Err(Error::Mismatch(format!("an rDLM has {} weight tensors, the model {}", w.len(), params.len())).into());
            }
            restore(&params, &w);
            rdlms.add(ctx, 0, false)?;
        }
        restore(&params, &subject);
        Ok(rdlms)
    }

    /// Records the model's current trainable weights as the next rDLM.
    fn add(&mut self, ctx: &Context, rows: usize, diverged: bool) -> Result<(), Failure> {
        let right = right_rows(ctx, &self.failure_rows)?;
        let holdout_accuracy = accuracy(&|p| ctx.classifier.predict(p), ctx.data, &ctx.data.holdout)?;
        self.log.push(RdlmLog { rows, holdout_accuracy, failures_right: right.iter().filter(|&&r| r).count(), diverged });
        self.right.push(right);
        self.weights.push(snapshot(&trainable(ctx.model)));
        Ok(())
    }
}

/// Trains `apricot.rdlms` reduced models, each from the subject's weights on its own seeded
/// sample of the training rows; the subject's weights are put back afterwards.
pub fn train_rdlms(ctx: &Context) -> Result<ReducedModels, Error> {
    rdlms_trained(ctx).map_err(model_error("training Apricot's reduced models"))
}

fn rdlms_trained(ctx: &Context) -> Result<ReducedModels, Failure> {
    let spec = &ctx.spec.apricot;
    let params = trainable(ctx.model);
    let subject = snapshot(&params);
    let mut rdlms = ReducedModels { weights: Vec::new(), failure_rows: failure_rows(ctx), right: Vec::new(), log: Vec::new() };
    let size = ((ctx.data.training.len() as f64 * spec.rdlm_fraction).round() as usize).clamp(1, ctx.data.training.len().max(1));
    for j in 0..spec.rdlms {
        restore(&params, &subject);
        let mut rows = ctx.data.training.clone();
        rows.shuffle(&mut Pcg64::seed_from_u64(ctx.spec.seed ^ 0x5244_4c4d ^ ((j as u64 + 1) << 32)));
        rows.truncate(size);
        let fit = Fit { epochs: spec.rdlm_epochs, lr: spec.rdlm_lr, seed: ctx.spec.seed ^ ((j as u64 + 1) << 40), what: format!("rDLM {}/{}", j + 1, spec.rdlms) };
        let diverged = fit.run(ctx, &params, &rows)?;
        rdlms.add(ctx, rows.len(), diverged)?;
    }
    restore(&params, &subject);
    Ok(rdlms)
}

/// One adaptation pass: the failures among `rows` go through in batches of `apricot.batch`,
/// each batch moving the trainable weights by `lr` times the mean of its failures' moves
/// (`strategy`). Returns (failures with some rDLM right, updates).
pub fn adapt(ctx: &Context, rdlms: &ReducedModels, rows: &[i64]) -> Result<(usize, usize), Error> {
    adapted(ctx, rdlms, rows).map_err(model_error("Apricot's weight adaptation"))
}

fn adapted(ctx: &Context, rdlms: &ReducedModels, rows: &[i64]) -> Result<(usize, usize), Failure> {
    let spec = &ctx.spec.apricot;
    let params = trainable(ctx.model);
    let k = rdlms.weights.len();
    let mut with_correct = 0;
    let mut updates = 0;
    for chunk in rows.chunks(spec.batch.max(1)) {
        // Each failure's move is a linear combination of w and the rDLMs' weights,
        // a·w + Σ_j b_j·W_j, so the batch's mean move is one too: sum the coefficients, then
        // make one pass over the tensors.
        let mut a = 0.0f64;
        let mut b = vec![0.0f64; k];
        for row in chunk {
            let i = rdlms.failure_rows.binary_search(row).map_err(|_| Error::Mismatch(format!("row {row} is not one of the rDLMs' scored failures")))?;
            let right: Vec<bool> = rdlms.right.iter().map(|r| r[i]).collect();
            let n_right = right.iter().filter(|&&r| r).count();
            with_correct += usize::from(n_right > 0);
            let toward = |a: &mut f64, b: &mut [f64]| {
                // −(w − mean(right)) = −w + Σ_{j right} W_j / n_right
                *a -= 1.0;
                right.iter().zip(b.iter_mut()).filter(|(r, _)| **r).for_each(|(_, b)| *b += 1.0 / n_right as f64);
            };
            let away = |a: &mut f64, b: &mut [f64]| {
                // +(w − mean(wrong)) = w − Σ_{j wrong} W_j / n_wrong
                *a += 1.0;
                right.iter().zip(b.iter_mut()).filter(|(r, _)| !**r).for_each(|(_, b)| *b -= 1.0 / (k - n_right) as f64);
            };
            match (spec.strategy, n_right > 0, n_right < k) {
                (1, true, _) | (2, true, false) => toward(&mut a, &mut b),
                (1, false, _) | (2, _, true) => away(&mut a, &mut b),
                (_, some_right, some_wrong) => {
                    if some_right {
                        toward(&mut a, &mut b);
                    }
                    if some_wrong {
                        away(&mut a, &mut b);
                    }
                }
            }
        }
        let scale = spec.lr / chunk.len() as f64;
        tch::no_grad(|| -> Result<(), tch::TchError> {
            for (t, w) in params.iter().enumerate() {
                let mut new = w.f_mul_scalar(1.0 + scale * a)?;
                for (j, &bj) in b.iter().enumerate() {
                    if bj != 0.0 {
                        new = new.f_add(&rdlms.weights[j][t].f_mul_scalar(scale * bj)?)?;
                    }
                }
                w.shallow_clone().f_copy_(&new)?;
            }
            Ok(())
        })?;
        updates += 1;
        crate::interrupt::check()?;
    }
    Ok((with_correct, updates))
}

/// Iterations of adaptation then retraining from the subject's weights; keeps the best on the
/// held-out slice if it beats the subject, else puts the subject's weights back.
fn adapt_and_retrain(ctx: &Context, rdlms: &ReducedModels) -> Result<ApricotLog, Failure> {
    let spec = &ctx.spec.apricot;
    let params = trainable(ctx.model);
    let subject = snapshot(&params);
    let holdout = |ctx: &Context| accuracy(&|p| ctx.classifier.predict(p), ctx.data, &ctx.data.holdout);
    let before = holdout(ctx)?;
    let mut best: Option<(f64, usize, Vec<Tensor>)> = None;
    let mut iterations = Vec::new();
    for iteration in 0..spec.iterations {
        let iteration_started = Instant::now();
        let failing = wrong_rows(ctx, &rdlms.failure_rows)?;
        let (with_correct_rdlm, updates) = adapted(ctx, rdlms, &failing)?;
        let failing_after_adaptation = wrong_rows(ctx, &failing)?.len();
        let fit = Fit { epochs: spec.retrain_epochs, lr: spec.retrain_lr, seed: ctx.spec.seed ^ 0x5245_5452 ^ ((iteration as u64 + 1) << 32), what: format!("retrain {}/{}", iteration + 1, spec.iterations) };
        let retrain_diverged = fit.run(ctx, &params, &ctx.data.training)?;
        let failing_after_retrain = wrong_rows(ctx, &failing)?.len();
        let holdout_accuracy = holdout(ctx)?;
        if holdout_accuracy > best.as_ref().map_or(before, |b| b.0) {
            best = Some((holdout_accuracy, iteration, snapshot(&params)));
        }
        iterations.push(IterationLog {
            iteration,
            failing_before: failing.len(),
            with_correct_rdlm,
            updates,
            failing_after_adaptation,
            failing_after_retrain,
            failures_fixed: failing.len() as i64 - failing_after_retrain as i64,
            holdout_accuracy,
            retrain_diverged,
            seconds: iteration_started.elapsed().as_secs_f64(),
        });
    }
    let (after, best_iteration) = match &best {
        Some((accuracy, iteration, weights)) => {
            restore(&params, weights);
            (*accuracy, Some(*iteration))
        }
        None => {
            restore(&params, &subject);
            (before, None)
        }
    };
    Ok(ApricotLog {
        strategy: spec.strategy,
        rdlms: rdlms.log.clone(),
        failures: rdlms.failure_rows.len(),
        iterations,
        holdout_accuracy_before: before,
        holdout_accuracy_after: after,
        best_iteration,
        kept: best.is_some(),
        seconds: 0.0,
    })
}

/// SGD on the summed cross-entropy / batch of some rows, every trainable weight moving and
/// BatchNormalization in eval mode (its statistics never change); optimiser settings from
/// `train` (batch, momentum, weight decay, gradient clipping), constant learning rate.
struct Fit {
    epochs: usize,
    lr: f64,
    seed: u64,
    what: String,
}

impl Fit {
    /// Trains on `rows`; returns whether a NaN or infinite loss stopped it, in which case the
    /// weights are those at the start of the diverging epoch.
    fn run(&self, ctx: &Context, params: &[Tensor], rows: &[i64]) -> Result<bool, Failure> {
        let train = &ctx.spec.train;
        let batch = train.batch.max(1);
        if self.epochs == 0 || rows.is_empty() {
            return Ok(false);
        }
        let _grad = GradGuard::new(params, &[]);
        let bar = steps_bar((rows.len().div_ceil(batch) * self.epochs) as u64, ctx.progress);
        let mut sgd = Sgd::new(params.iter().map(Tensor::shallow_clone).collect(), train.momentum, train.weight_decay);
        for epoch in 0..self.epochs {
            let start_of_epoch = snapshot(params);
            let mut rows = rows.to_vec();
            rows.shuffle(&mut Pcg64::seed_from_u64(self.seed ^ (epoch as u64 + 1)));
            for (step, chunk) in rows.chunks(batch).enumerate() {
                let (pixels, labels) = ctx.data.batch(chunk)?;
                let output = ctx.classifier.forward(&pixels)?;
                let loss = ctx.classifier.loss(&output, &labels)?.f_div_scalar(chunk.len() as f64)?;
                let value = loss.f_double_value(&[])?;
                if !value.is_finite() {
                    restore(params, &start_of_epoch);
                    bar.finish_and_clear();
                    return Ok(true);
                }
                let mut grads = gradients(&loss, params)?;
                clip_grad_norm(&mut grads, train.grad_clip);
                sgd.step(&grads, self.lr);
                crate::interrupt::check()?;
                bar.inc(1);
                if step % 10 == 0 {
                    bar.set_message(format!("apricot {} epoch {}/{} loss {value:.3}", self.what, epoch + 1, self.epochs));
                }
            }
        }
        bar.finish_and_clear();
        Ok(false)
    }
}

/// The model's trainable weights (Role::Trainable, in `model.weights()` order): the tensors the
/// forward pass reads, so changing them in place changes the model.
pub fn trainable(model: &LoweredModel) -> Vec<Tensor> {
    model.weights().iter().filter(|w| w.role == Role::Trainable).map(|w| w.tensor.shallow_clone()).collect()
}

/// The D_fail rows among the training rows (the held-out failures only choose the kept
/// weights), each once, ascending.
fn failure_rows(ctx: &Context) -> Vec<i64> {
    let mut rows: Vec<i64> = ctx.data.training.iter().copied().filter(|&r| r < ctx.data.failures as i64).collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// Whether the model classifies each of `rows` right.
fn right_rows(ctx: &Context, rows: &[i64]) -> Result<Vec<bool>, Failure> {
    let mut right = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(256) {
        let (pixels, labels) = ctx.data.batch(chunk)?;
        let predicted = ctx.classifier.predict(&pixels)?;
        let same = Vec::<bool>::try_from(predicted.f_eq_tensor(&labels)?).map_err(Failure::from)?;
        right.extend(same);
    }
    Ok(right)
}

/// The rows of `rows` the model gets wrong.
fn wrong_rows(ctx: &Context, rows: &[i64]) -> Result<Vec<i64>, Failure> {
    Ok(rows.iter().zip(right_rows(ctx, rows)?).filter(|(_, right)| !right).map(|(&r, _)| r).collect())
}

/// Turns an error of running the model into the library's.
fn model_error(context: &'static str) -> impl Fn(Failure) -> Error {
    move |failure| match failure {
        Failure::Other(e) => e,
        Failure::Lower(LowerError::Torch(source)) => Error::Torch { context, source },
        Failure::Lower(other) => Error::Mismatch(format!("{context}: running the model: {other}")),
    }
}
