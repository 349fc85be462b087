//! Arachne (Sohn, Kang, Yoo: "Arachne: Search-Based Repair of Deep Neural Networks", ACM TOSEM
//! 2023), the weight-only baseline that changes a handful of the last layer's weights: localize
//! them (bidirectional localization, localize.rs), search their values by differential
//! evolution (evolve.rs) on logits recomputed from captured features (head.rs), write the best
//! values into the model, and keep them only when the held-out accuracy does not drop.
//! docs/baselines.md says what is the paper's and what is ours.

mod evolve;
mod head;
mod localize;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Context;
use crate::Error;


/// The spec's `arachne` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ArachneSpec {
    /// Passing inputs (I_pos), a seeded sample of the correctly classified training images;
    /// absent: as many as there are failures (I_neg), the paper's practice.
    pub positives: Option<usize>,
    /// Upper bound on the passing inputs, whatever `positives` says (bounds the search's memory
    /// and time).
    pub max_positives: usize,
    /// The localized weights are the Pareto front of (gradient loss, forward impact), extended
    /// by the next fronts until at least this many are taken (1: the front only, as the paper).
    pub min_weights: usize,
    /// At most this many weights are searched (a front larger than this is cut, strongest
    /// gradient loss first).
    pub max_weights: usize,
    /// Candidates per generation of the differential evolution (at least 4).
    pub population: usize,
    /// Most generations of the differential evolution.
    pub generations: usize,
    /// Stop after this many generations without a better best candidate.
    pub patience: usize,
    /// Differential weight F of the mutation a + F (b − c).
    pub mutation: f64,
    /// Crossover rate CR: the chance each weight of a trial comes from the mutant.
    pub crossover: f64,
    /// Weight of the failing inputs' term in the fitness relative to the passing inputs' (the
    /// authors' `patch_aggr`; 1 = equal).
    pub patch_weight: f64,
    /// Wall-clock budget of the search in minutes; absent: no limit.
    pub budget_minutes: Option<f64>,
}

impl Default for ArachneSpec {
    fn default() -> Self {
        ArachneSpec {
            positives: None,
            max_positives: 1000,
            min_weights: 1,
            max_weights: 100,
            population: 100,
            generations: 100,
            patience: 10,
            mutation: 0.3,
            crossover: 0.5,
            patch_weight: 1.0,
            budget_minutes: None,
        }
    }
}

impl ArachneSpec {
    fn check(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Mismatch(format!("spec `arachne`: {what}")));
        if self.population < 4 {
            return bad(format!("population must be at least 4 (DE picks three others per member), not {}", self.population));
        }
        if self.max_weights == 0 {
            return bad("max_weights must be at least 1".into());
        }
        if !(self.mutation.is_finite() && self.mutation > 0.0) {
            return bad(format!("mutation must be a positive number, not {}", self.mutation));
        }
        if !(0.0..=1.0).contains(&self.crossover) {
            return bad(format!("crossover must be in [0, 1], not {}", self.crossover));
        }
        if !(self.patch_weight.is_finite() && self.patch_weight >= 0.0) {
            return bad(format!("patch_weight must be ≥ 0, not {}", self.patch_weight));
        }
        if self.budget_minutes.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            return bad("budget_minutes must be ≥ 0".into());
        }
        Ok(())
    }
}

/// What Arachne did, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArachneLog {
    /// The repaired layer's node and its op (`Gemm` or `MatMul+Add`).
    pub layer: String,
    pub op: String,
    /// The initializer holding the weights.
    pub weight: String,
    /// Failing inputs searched on (I_neg: the D_fail rows of the training rows the subject gets
    /// wrong).
    pub negatives: usize,
    /// Passing inputs searched on (I_pos).
    pub positives: usize,
    /// The localized weights, in the order of the search vector.
    pub localized: Vec<LocalizedWeight>,
    /// Generations run.
    pub generations: usize,
    /// Best fitness after each generation ([0]: the initial population).
    pub best_fitness: Vec<f64>,
    /// Why the search stopped.
    pub stopped: String,
    /// I_neg inputs the patched model classifies right (measured by the model).
    pub patched: usize,
    /// I_pos inputs the patched model gets wrong.
    pub broken: usize,
    /// Accuracy on the held-out rows before and with the patch (None without held-out rows).
    pub holdout_before: Option<f64>,
    pub holdout_after: Option<f64>,
    /// Whether the patch is kept (false: the held-out accuracy dropped, the weights are back).
    pub kept: bool,
    pub seconds: f64,
}

/// One searched weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalizedWeight {
    /// Index into the initializer (its own layout, e.g. [class, feature] when transB=1).
    pub index: Vec<i64>,
    /// Pareto front it came from (0 = the first).
    pub front: usize,
    pub gradient_loss: f64,
    pub forward_impact: f64,
    pub before: f32,
    /// The value in the model after the repair (= `before` when the patch is not kept).
    pub after: f32,
}

/// Repairs the model's last fully connected layer in place (see the module documentation).
pub fn repair(ctx: &Context) -> Result<ArachneLog, Error> {
    let started = Instant::now();
    let spec = &ctx.spec.arachne;
    spec.check()?;
    let layer = head::Layer::new(ctx, head::find(ctx.graph)?)?;
    let torch = Error::torch("arachne");

    // I_neg: the failures among the training rows (oversampling repeats them) still wrong.
    let failure_rows: Vec<i64> = ctx.data.training.iter().copied().filter(|&r| r >= 0 && (r as usize) < ctx.data.failures).collect::<BTreeSet<_>>().into_iter().collect();
    let (x_fail, logits_fail) = layer.capture(ctx, &failure_rows)?;
    let labels_fail = labels_of(ctx, &failure_rows)?;
    let wrong = predictions(&logits_fail)?.iter().zip(&labels_of_vec(&labels_fail)?).map(|(p, l)| p != l).collect::<Vec<_>>();
    let keep: Vec<i64> = (0..failure_rows.len() as i64).filter(|&i| wrong[i as usize]).collect();
    if keep.is_empty() {
        return Err(Error::Mismatch("arachne: the model already classifies every failure of the repair data right; nothing to repair".into()));
    }
    let negatives: Vec<i64> = keep.iter().map(|&i| failure_rows[i as usize]).collect();
    let keep_t = Tensor::f_from_slice(&keep).and_then(|k| k.f_to_device(x_fail.device())).map_err(&torch)?;
    let select = |t: &Tensor| t.f_index_select(0, &keep_t);
    let (x_neg, logits_neg, labels_neg) = (select(&x_fail).map_err(&torch)?, select(&logits_fail).map_err(&torch)?, select(&labels_fail).map_err(&torch)?);

    // I_pos: a seeded sample of the training images the model classifies right.
    let wanted = spec.positives.unwrap_or(negatives.len()).min(spec.max_positives);
    let (positives, x_pos, logits_pos, labels_pos) = sample_positives(ctx, &layer, wanted)?;

    // Localization on the [K, C] weight.
    let scores = localize::scores(
        &layer.w_eff,
        layer.head.alpha,
        &localize::Inputs { x: &x_neg, logits: &logits_neg, labels: &labels_neg },
        &localize::Inputs { x: &x_pos, logits: &logits_pos, labels: &labels_pos },
    )
    .map_err(&torch)?;
    let chosen = localize::pareto(&scores.gradient_loss, &scores.forward_impact, spec.min_weights, spec.max_weights);
    let classes = layer.classes();
    let positions: Vec<(i64, i64)> = chosen.iter().map(|&(flat, _)| (flat as i64 / classes, flat as i64 % classes)).collect();
    let weight_values: Vec<f32> = tch::no_grad(|| layer.weight.f_detach()?.f_to_kind(Kind::Float)?.f_reshape([-1]).and_then(|t| Vec::<f32>::try_from(&t))).map_err(&torch)?;
    let original: Vec<f64> = positions.iter().map(|&(k, j)| weight_values[layer.flat_index(k, j) as usize] as f64).collect();

    // Differential evolution on I_neg ∪ I_pos.
    let x_all = Tensor::f_cat(&[&x_neg, &x_pos], 0).map_err(&torch)?;
    let logits_all = Tensor::f_cat(&[&logits_neg, &logits_pos], 0).map_err(&torch)?;
    let labels_all = Tensor::f_cat(&[&labels_neg, &labels_pos], 0).map_err(&torch)?;
    let problem = evolve::Problem::new(&x_all, &logits_all, &labels_all, negatives.len() as i64, layer.head.alpha, spec.patch_weight, &positions, original.clone()).map_err(&torch)?;
    let (min, max) = weight_values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v as f64), hi.max(v as f64)));
    let settings = evolve::Settings {
        population: spec.population,
        generations: spec.generations,
        patience: spec.patience,
        mutation: spec.mutation,
        crossover: spec.crossover,
        budget: spec.budget_minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
        seed: ctx.spec.seed,
        sigma: std_of(&weight_values),
        bounds: (if min < 0.0 { min * 2.0 } else { min / 2.0 }, if max > 0.0 { max * 2.0 } else { max / 2.0 }),
    };
    let bar = crate::commands::progress::steps_bar(spec.generations as u64, ctx.progress);
    let evolution = evolve::evolve(&problem, &settings, |_, best| {
        bar.set_message(format!("arachne: best fitness {best:.3}"));
        bar.inc(1);
        crate::interrupt::check()
    })?;
    bar.finish_and_clear();

    // Apply, measure with the model itself, keep only without a held-out drop.
    let holdout_before = accuracy(ctx, &ctx.data.holdout)?;
    let original_weight = tch::no_grad(|| {
        let mut copy = layer.weight.f_zeros_like()?;
        copy.f_copy_(&layer.weight)?;
        Ok::<_, tch::TchError>(copy)
    })
    .map_err(&torch)?;
    let mut patched_values = weight_values.clone();
    for (&(k, j), &v) in positions.iter().zip(&evolution.best) {
        patched_values[layer.flat_index(k, j) as usize] = v as f32;
    }
    set_weight(&layer.weight, &patched_values)?;
    let patched = correct_count(ctx, &negatives)?;
    let broken = positives.len() - correct_count(ctx, &positives)?;
    let holdout_after = accuracy(ctx, &ctx.data.holdout)?;
    let kept = match (holdout_before, holdout_after) {
        (Some(before), Some(after)) => after >= before,
        _ => true,
    };
    if !kept {
        let mut w = layer.weight.shallow_clone();
        tch::no_grad(|| w.f_copy_(&original_weight)).map_err(&torch)?;
    }
    let localized = chosen
        .iter()
        .zip(&positions)
        .zip(original.iter().zip(&evolution.best))
        .map(|((&(flat, front), &(k, j)), (&before, &after))| LocalizedWeight {
            index: layer.index(k, j),
            front,
            gradient_loss: scores.gradient_loss[flat],
            forward_impact: scores.forward_impact[flat],
            before: before as f32,
            after: if kept { after as f32 } else { before as f32 },
        })
        .collect();
    Ok(ArachneLog {
        layer: layer.head.node.clone(),
        op: layer.head.op.to_string(),
        weight: layer.head.weight.clone(),
        negatives: negatives.len(),
        positives: positives.len(),
        localized,
        generations: evolution.generations,
        best_fitness: evolution.best_fitness,
        stopped: evolution.stopped,
        patched,
        broken,
        holdout_before,
        holdout_after,
        kept,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Scans the training images (not failures) in a seeded order, 256 at a time, and keeps the
/// first `wanted` the model classifies right: rows, features, logits, labels.
fn sample_positives(ctx: &Context, layer: &head::Layer, wanted: usize) -> Result<(Vec<i64>, Tensor, Tensor, Tensor), Error> {
    let torch = Error::torch("sampling arachne's passing inputs");
    let mut rows: Vec<i64> = ctx.data.training.iter().copied().filter(|&r| r as usize >= ctx.data.failures).collect::<BTreeSet<_>>().into_iter().collect();
    rows.shuffle(&mut Pcg64::seed_from_u64(ctx.spec.seed ^ 0x706f_7369_7469_7665));
    let (mut chosen, mut xs, mut ls) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in rows.chunks(256) {
        if chosen.len() >= wanted {
            break;
        }
        let (x, logits) = layer.capture(ctx, chunk)?;
        let labels = labels_of_vec(&labels_of(ctx, chunk)?)?;
        let right: Vec<i64> = predictions(&logits)?.iter().zip(&labels).enumerate().filter(|(_, (p, l))| p == l).map(|(i, _)| i as i64).take(wanted - chosen.len()).collect();
        let index = Tensor::f_from_slice(&right).and_then(|t| t.f_to_device(x.device())).map_err(&torch)?;
        xs.push(x.f_index_select(0, &index).map_err(&torch)?);
        ls.push(logits.f_index_select(0, &index).map_err(&torch)?);
        chosen.extend(right.iter().map(|&i| chunk[i as usize]));
    }
    let device = ctx.model.device();
    let x = if xs.is_empty() { Tensor::f_zeros([0, layer.features()], (Kind::Float, device)) } else { Tensor::f_cat(&xs, 0) }.map_err(&torch)?;
    let logits = if ls.is_empty() { Tensor::f_zeros([0, layer.classes()], (Kind::Float, device)) } else { Tensor::f_cat(&ls, 0) }.map_err(&torch)?;
    let labels = labels_of(ctx, &chosen)?;
    Ok((chosen, x, logits, labels))
}

fn labels_of(ctx: &Context, rows: &[i64]) -> Result<Tensor, Error> {
    let index = Tensor::f_from_slice(rows).and_then(|t| t.f_to_device(ctx.data.labels.device())).map_err(Error::torch("reading labels"))?;
    ctx.data.labels.f_index_select(0, &index).and_then(|l| l.f_to_kind(Kind::Int64)).and_then(|l| l.f_to_device(ctx.model.device())).map_err(Error::torch("reading labels"))
}

fn labels_of_vec(labels: &Tensor) -> Result<Vec<i64>, Error> {
    Vec::<i64>::try_from(labels).map_err(Error::torch("reading labels"))
}

fn predictions(logits: &Tensor) -> Result<Vec<i64>, Error> {
    logits.f_argmax(-1, false).and_then(|p| Vec::<i64>::try_from(&p)).map_err(Error::torch("reading predictions"))
}

/// How many of `rows` the model (the real forward pass) classifies right.
fn correct_count(ctx: &Context, rows: &[i64]) -> Result<usize, Error> {
    let mut right = 0;
    for chunk in rows.chunks(ctx.classifier.input.batch_size(256)) {
        let (pixels, real) = head::padded_pixels(ctx, chunk)?;
        let predicted = ctx.classifier.predict(&pixels).map_err(head::lower("measuring arachne's patch"))?;
        let predicted = predicted.f_narrow(0, 0, real).map_err(Error::torch("measuring arachne's patch"))?;
        let predicted = Vec::<i64>::try_from(&predicted).map_err(Error::torch("measuring arachne's patch"))?;
        right += predicted.iter().zip(labels_of_vec(&labels_of(ctx, chunk)?)?).filter(|(p, l)| **p == *l).count();
    }
    Ok(right)
}

fn accuracy(ctx: &Context, rows: &[i64]) -> Result<Option<f64>, Error> {
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(correct_count(ctx, rows)? as f64 / rows.len() as f64))
}

/// Writes `values` (flat, the initializer's layout) into the model's weight variable.
fn set_weight(weight: &Tensor, values: &[f32]) -> Result<(), Error> {
    let torch = Error::torch("writing arachne's patch into the model");
    let new = Tensor::f_from_slice(values).and_then(|t| t.f_reshape(weight.size())).and_then(|t| t.f_to_device(weight.device())).and_then(|t| t.f_to_kind(weight.kind())).map_err(&torch)?;
    let mut w = weight.shallow_clone();
    tch::no_grad(|| w.f_copy_(&new)).map_err(&torch)
}

fn std_of(values: &[f32]) -> f64 {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}
