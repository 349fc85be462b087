//! Arachne's search: differential evolution (DE/rand/1/bin) over the values of the localized
//! weights, each candidate scored by the authors' fitness on the failing and passing inputs.
//!
//! A candidate only moves a few weights of the last layer, so its logits are the subject's plus
//! a rank-few correction: logits(p) = logits(v0) + Σ_m alpha · x[:, k_m] · (p_m − v0_m) added to
//! class j_m. The whole population is scored in a few tensor operations.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64;
use tch::{Kind, Tensor};

use crate::Error;

/// Elements of the [P, N, C] logits scored at once (bounds memory for wide heads).
const CHUNK_ELEMENTS: i64 = 1 << 24;

/// The search problem: everything a candidate's fitness needs.
pub(crate) struct Problem {
    /// alpha · x[:, k_m] for each localized weight m: [N, M].
    columns: Tensor,
    /// The class j_m each localized weight feeds: [M].
    classes: Tensor,
    /// Logits with the original weights: [N, C].
    base: Tensor,
    labels: Tensor,
    /// Per-input weight of the fitness: `patch_weight` for I_neg, 1 for I_pos: [N].
    input_weights: Tensor,
    pub original: Vec<f64>,
}

impl Problem {
    /// `x` [N, K] and `base` [N, C] hold I_neg's rows first (`negatives` of them), then I_pos's;
    /// `localized`: (k, j) of each searched weight of the [K, C] matrix, `original` its value.
    pub fn new(x: &Tensor, base: &Tensor, labels: &Tensor, negatives: i64, alpha: f64, patch_weight: f64, localized: &[(i64, i64)], original: Vec<f64>) -> Result<Problem, tch::TchError> {
        let device = x.device();
        let ks: Vec<i64> = localized.iter().map(|&(k, _)| k).collect();
        let js: Vec<i64> = localized.iter().map(|&(_, j)| j).collect();
        let columns = x.f_index_select(1, &Tensor::f_from_slice(&ks)?.f_to_device(device)?)?.f_mul_scalar(alpha)?.f_to_kind(Kind::Float)?;
        let n = x.size()[0];
        let input_weights: Vec<f32> = (0..n).map(|i| if i < negatives { patch_weight as f32 } else { 1.0 }).collect();
        Ok(Problem {
            columns,
            classes: Tensor::f_from_slice(&js)?.f_to_device(device)?,
            base: base.f_to_kind(Kind::Float)?,
            labels: labels.f_to_device(device)?,
            input_weights: Tensor::f_from_slice(&input_weights)?.f_to_device(device)?,
            original,
        })
    }

    /// The largest fitness: every input classified right.
    pub fn max_fitness(&self) -> Result<f64, tch::TchError> {
        Ok(self.input_weights.f_sum(Kind::Double)?.double_value(&[]))
    }

    /// Logits [P, N, C] of candidate weight values `population` (P vectors of M values).
    pub fn logits(&self, population: &[Vec<f64>]) -> Result<Tensor, tch::TchError> {
        let p = population.len() as i64;
        let m = self.original.len() as i64;
        let deltas: Vec<f32> = population.iter().flat_map(|v| v.iter().zip(&self.original).map(|(a, b)| (a - b) as f32)).collect();
        let deltas = Tensor::f_from_slice(&deltas)?.f_reshape([p, 1, m])?.f_to_device(self.base.device())?;
        let contributions = self.columns.f_unsqueeze(0)?.f_mul(&deltas)?;
        let base = self.base.f_unsqueeze(0)?.f_repeat([p, 1, 1])?;
        base.f_index_add(2, &self.classes, &contributions)
    }

    /// Fitness of every candidate.
    pub fn fitness(&self, population: &[Vec<f64>]) -> Result<Vec<f64>, tch::TchError> {
        let per = (CHUNK_ELEMENTS / self.base.numel().max(1) as i64).max(1) as usize;
        let mut out = Vec::with_capacity(population.len());
        for chunk in population.chunks(per) {
            out.extend(fitness(&self.logits(chunk)?, &self.labels, &self.input_weights)?);
        }
        Ok(out)
    }
}

/// The authors' fitness of each candidate's logits [P, N, C] (their released code,
/// search/searcher_vk.py and de_vk.py): Σ_i w_i · t_i with t_i = 1 when input i is classified
/// right and 1 / (1 + CE_i) otherwise, CE_i the cross-entropy loss of input i; w_i is
/// `patch_weight` for I_neg and 1 for I_pos. So fitness = N_intact + Σ_{I_pos wrong} 1/(1+L) +
/// patch_weight · (N_patched + Σ_{I_neg wrong} 1/(1+L)).
pub(crate) fn fitness(logits: &Tensor, labels: &Tensor, input_weights: &Tensor) -> Result<Vec<f64>, tch::TchError> {
    tch::no_grad(|| {
        let (p, n) = (logits.size()[0], logits.size()[1]);
        let labels = labels.f_reshape([1, n, 1])?.f_expand([p, n, 1], false)?;
        let loss = logits.f_to_kind(Kind::Double)?.f_log_softmax(-1, Kind::Double)?.f_gather(2, &labels, false)?.f_neg()?.f_squeeze_dim(2)?;
        let right = logits.f_argmax(-1, false)?.f_eq_tensor(&labels.f_squeeze_dim(2)?)?;
        let term = loss.f_add_scalar(1.0)?.f_reciprocal()?.f_where_scalarother(&right.f_logical_not()?, 1.0)?;
        let total = term.f_mul(&input_weights.f_to_kind(Kind::Double)?.f_unsqueeze(0)?)?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Double)?;
        Vec::<f64>::try_from(&total)
    })
}

/// DE settings (from the spec, plus the perturbation scale and bounds from the layer).
pub(crate) struct Settings {
    pub population: usize,
    pub generations: usize,
    pub patience: usize,
    pub mutation: f64,
    pub crossover: f64,
    pub budget: Option<Duration>,
    pub seed: u64,
    /// Std of the initial perturbation: the layer's weight std.
    pub sigma: f64,
    /// Every value is clipped into these (the authors' bounds from the layer's min and max).
    pub bounds: (f64, f64),
}

/// What the search found.
pub(crate) struct Evolution {
    pub best: Vec<f64>,
    /// Best fitness after each generation; [0] is the initial population's.
    pub best_fitness: Vec<f64>,
    pub generations: usize,
    /// Why it stopped.
    pub stopped: String,
}

/// DE/rand/1/bin, generation-synchronous: every member i gets a trial a + F (b − c) (a, b, c
/// distinct, ≠ i), crossed with i (rate CR, one position always from the mutant), clipped into
/// the bounds; the trial replaces i when its fitness is ≥ i's. Member 0 of the initial
/// population is the subject's values, the others those plus N(0, sigma) noise. Stops after
/// `generations`, after `patience` generations without a better best, when every input is
/// classified right, or when the budget is spent. `on_generation(g, best)` runs after each
/// generation (progress, interrupt).
pub(crate) fn evolve(problem: &Problem, s: &Settings, mut on_generation: impl FnMut(usize, f64) -> Result<(), Error>) -> Result<Evolution, Error> {
    let torch = Error::torch("scoring arachne's candidates");
    let started = Instant::now();
    let mut rng = Pcg64::seed_from_u64(s.seed ^ 0x6172_6163_686e_65);
    let m = problem.original.len();
    let sigma = if s.sigma.is_finite() && s.sigma > 0.0 { s.sigma } else { 0.01 };
    let noise = Normal::new(0.0, sigma).map_err(|e| Error::Mismatch(format!("arachne: initial perturbation: {e}")))?;
    let clip = |v: f64| v.clamp(s.bounds.0.min(s.bounds.1), s.bounds.1.max(s.bounds.0));
    let mut population: Vec<Vec<f64>> = (0..s.population)
        .map(|i| problem.original.iter().map(|&v| if i == 0 { v } else { clip(v + noise.sample(&mut rng)) }).collect())
        .collect();
    let mut fitness = problem.fitness(&population).map_err(&torch)?;
    let best_of = |f: &[f64]| f.iter().enumerate().fold(0, |b, (i, v)| if *v > f[b] { i } else { b });
    let max_fitness = problem.max_fitness().map_err(&torch)?;
    let mut best_fitness = vec![fitness[best_of(&fitness)]];
    let mut since_better = 0;
    let mut stopped = format!("{} generations", s.generations);
    let mut generations = 0;
    for g in 0..s.generations {
        if fitness[best_of(&fitness)] >= max_fitness - 1e-9 {
            stopped = "every input classified right".into();
            break;
        }
        if s.budget.is_some_and(|b| started.elapsed() >= b) {
            stopped = "budget spent".into();
            break;
        }
        let trials: Vec<Vec<f64>> = (0..s.population)
            .map(|i| {
                let [a, b, c] = distinct_others(&mut rng, s.population, i);
                let forced = rng.random_range(0..m.max(1));
                (0..m)
                    .map(|d| {
                        if d == forced || rng.random::<f64>() < s.crossover {
                            clip(population[a][d] + s.mutation * (population[b][d] - population[c][d]))
                        } else {
                            population[i][d]
                        }
                    })
                    .collect()
            })
            .collect();
        let trial_fitness = problem.fitness(&trials).map_err(&torch)?;
        for (i, (trial, f)) in trials.into_iter().zip(trial_fitness).enumerate() {
            if f >= fitness[i] {
                population[i] = trial;
                fitness[i] = f;
            }
        }
        generations = g + 1;
        let best = fitness[best_of(&fitness)];
        since_better = if best > *best_fitness.last().unwrap_or(&f64::NEG_INFINITY) { 0 } else { since_better + 1 };
        best_fitness.push(best);
        on_generation(generations, best)?;
        if since_better >= s.patience {
            stopped = format!("no better candidate for {} generations", s.patience);
            break;
        }
    }
    let best = population[best_of(&fitness)].clone();
    Ok(Evolution { best, best_fitness, generations, stopped })
}

/// Three distinct member indices other than `i` (needs `population` ≥ 4).
fn distinct_others(rng: &mut Pcg64, population: usize, i: usize) -> [usize; 3] {
    let mut picked = [usize::MAX; 3];
    let mut n = 0;
    while n < 3 {
        let r = rng.random_range(0..population);
        if r != i && !picked[..n].contains(&r) {
            picked[n] = r;
            n += 1;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three inputs by hand: two classes, logits (2, 0), (0, 1), (1, 1) with labels 0, 0, 1.
    /// Input 0 is right (term 1). Input 1 is wrong: CE = log(1 + e) ≈ 1.313262, term
    /// 1/(1 + CE) ≈ 0.432290. Input 2 ties; argmax takes the first class, so it is wrong:
    /// CE = log 2, term 1/(1 + log 2) ≈ 0.590616. Inputs 0 and 1 are I_neg (weight 2), input 2
    /// I_pos: fitness = 2 · (1 + 0.432290) + 0.590616.
    #[test]
    fn fitness_matches_hand_computed_values_on_three_inputs() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).reshape([1, 3, 2]);
        let labels = Tensor::from_slice(&[0i64, 0, 1]);
        let weights = Tensor::from_slice(&[2.0f32, 2.0, 1.0]);
        let got = fitness(&logits, &labels, &weights).unwrap();
        let ce1 = (1.0f64 + 1f64.exp()).ln();
        let ce2 = 2f64.ln();
        let want = 2.0 * (1.0 + 1.0 / (1.0 + ce1)) + 1.0 / (1.0 + ce2);
        assert_eq!(got.len(), 1);
        assert!((got[0] - want).abs() < 1e-6, "fitness {} vs hand-computed {want}", got[0]);
        assert!((want - 3.455196).abs() < 1e-5, "the hand computation itself: {want}");

        // Two candidates at once: the second classifies everything right, fitness = 2 + 2 + 1.
        let both = Tensor::cat(&[logits.shallow_clone(), Tensor::from_slice(&[2.0f32, 0.0, 3.0, 1.0, 0.0, 1.0]).reshape([1, 3, 2])], 0);
        let got = fitness(&both, &labels, &weights).unwrap();
        assert!((got[0] - want).abs() < 1e-6 && (got[1] - 5.0).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn candidate_logits_add_the_changed_weights_contributions() {
        // x [2, 2], base logits [2, 2]; weight (k=1, j=0) moves from 0.5 to 1.5 with alpha 2:
        // class 0's logit grows by 2 · x[:, 1] · 1.
        let x = Tensor::from_slice(&[1.0f32, 3.0, 2.0, -1.0]).reshape([2, 2]);
        let base = Tensor::from_slice(&[0.0f32, 1.0, 1.0, 0.0]).reshape([2, 2]);
        let labels = Tensor::from_slice(&[0i64, 1]);
        let problem = Problem::new(&x, &base, &labels, 1, 2.0, 1.0, &[(1, 0)], vec![0.5]).unwrap();
        let logits = problem.logits(&[vec![1.5], vec![0.5]]).unwrap();
        let got: Vec<f32> = Vec::try_from(&logits.reshape([-1])).unwrap();
        assert_eq!(got, vec![6.0, 1.0, -1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    }
}
