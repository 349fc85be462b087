//! Localizers in the spectrum's interface that read weight gradients directly (one score per
//! unit, higher = more suspicious), and `random`, the floor every localizer must beat.
//!
//! - `gradient`, the paper's empirical study: mean |∂L/∂W| of each unit's Conv/Gemm weights on
//!   random failures.
//! - `agreement` (ours): the cosine between the gradient of the failing inputs' summed loss and
//!   that of the passing inputs', per unit. Where a fault sits, both sides' losses fall in the
//!   same direction (undoing the fault helps the inputs that still pass too), while elsewhere a
//!   change that fixes failures works against the passing inputs. Scale-free, so unlike
//!   `gradient` it does not favour early blocks, whose gradients are simply larger.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use tch::{Kind, Tensor};

use crate::graph::Graph;
use crate::lower::Role;

use super::classifier::Classifier;
use super::units::Probes;
use super::{Failure, Inputs};

/// The trainable weights (and biases) of every probed layer, each tagged with its layer.
pub(crate) struct LayerWeights<'a> {
    weights: Vec<(usize, &'a Tensor)>,
    layers: usize,
}

impl<'a> LayerWeights<'a> {
    pub(crate) fn new(classifier: &Classifier<'a>, graph: &Graph, probes: &Probes) -> Self {
        let model_weights = classifier.model.weights();
        let weights = probes
            .layers
            .iter()
            .enumerate()
            .flat_map(|(l, layer)| {
                let inputs = graph.node_by_name(&layer.node).map(|n| n.inputs.clone()).unwrap_or_default();
                model_weights
                    .iter()
                    .filter(move |w| w.role == Role::Trainable && inputs.iter().skip(1).any(|i| *i == w.onnx_name))
                    .map(move |w| (l, &w.tensor))
            })
            .collect();
        LayerWeights { weights, layers: probes.layers.len() }
    }

    /// The gradient of the summed loss over `inputs` w.r.t. every weight (None: no input).
    fn summed_gradients(&self, classifier: &Classifier, inputs: &Inputs) -> Result<Vec<Option<Tensor>>, Failure> {
        let tensors: Vec<&Tensor> = self.weights.iter().map(|(_, t)| *t).collect();
        let mut sums: Vec<Option<Tensor>> = tensors.iter().map(|_| None).collect();
        for batch in inputs.batches() {
            let (pixels, labels, real) = batch?;
            let output = classifier.forward(&pixels)?.f_narrow(0, 0, real as i64)?;
            let loss = classifier.loss(&output, &labels.f_narrow(0, 0, real as i64)?)?;
            for (sum, g) in sums.iter_mut().zip(Tensor::f_run_backward(&[&loss], &tensors, false, false)?) {
                *sum = Some(match sum.take() {
                    Some(s) => s.f_add(&g)?,
                    None => g,
                });
            }
        }
        Ok(sums)
    }

    /// Per layer, Σ f(weight's summed gradient(s)) and the number of weight elements.
    fn per_layer(&self, sums: &[Option<Tensor>], f: impl Fn(usize) -> Result<f64, tch::TchError>) -> Result<Vec<(f64, usize)>, tch::TchError> {
        let mut out = vec![(0.0, 0usize); self.layers];
        for (i, ((l, t), sum)) in self.weights.iter().zip(sums).enumerate() {
            if sum.is_some() {
                out[*l].0 += f(i)?;
            }
            out[*l].1 += t.numel();
        }
        Ok(out)
    }
}

/// Sums over each unit's layers.
fn per_unit(probes: &Probes, per_layer: &[(f64, usize)]) -> Vec<(f64, usize)> {
    probes.units.iter().map(|u| u.layers.iter().fold((0.0, 0), |(s, c), &l| (s + per_layer[l].0, c + per_layer[l].1))).collect()
}

/// `gradient`: mean |∂L/∂W| per unit, L the mean cross-entropy over `failures`.
pub(crate) fn gradient_scores(classifier: &Classifier, weights: &LayerWeights, probes: &Probes, failures: &Inputs) -> Result<Vec<f64>, Failure> {
    let sums = weights.summed_gradients(classifier, failures)?;
    let abs_sum = |i: usize| -> Result<f64, tch::TchError> { sums[i].as_ref().map_or(Ok(0.0), |g| g.f_abs()?.f_sum(Kind::Double)?.f_double_value(&[])) };
    let n = failures.indices.len();
    let units = per_unit(probes, &weights.per_layer(&sums, abs_sum)?);
    Ok(units.into_iter().map(|(sum, count)| if count > 0 && n > 0 { sum / count as f64 / n as f64 } else { 0.0 }).collect())
}

/// `agreement`: per unit, cos(∇_W Σ_failing L, ∇_W Σ_passing L) over the unit's weights.
pub(crate) fn agreement_scores(classifier: &Classifier, weights: &LayerWeights, probes: &Probes, failing: &Inputs, passing: &Inputs) -> Result<Vec<f64>, Failure> {
    let (f, p) = (weights.summed_gradients(classifier, failing)?, weights.summed_gradients(classifier, passing)?);
    let dot = |a: &[Option<Tensor>], b: &[Option<Tensor>]| {
        weights.per_layer(a, |i| match (&a[i], &b[i]) {
            (Some(x), Some(y)) => x.f_mul(y)?.f_sum(Kind::Double)?.f_double_value(&[]),
            _ => Ok(0.0),
        })
    };
    let (fp, ff, pp) = (per_unit(probes, &dot(&f, &p)?), per_unit(probes, &dot(&f, &f)?), per_unit(probes, &dot(&p, &p)?));
    Ok(fp.iter().zip(&ff).zip(&pp).map(|((fp, ff), pp)| if ff.0 > 0.0 && pp.0 > 0.0 { fp.0 / (ff.0 * pp.0).sqrt() } else { 0.0 }).collect())
}

/// `random`: a seeded random score per unit.
pub fn random_scores(units: usize, seed: u64) -> Vec<f64> {
    let mut rng = Pcg64::seed_from_u64(seed ^ 0x5eed_0f_7a2d_0c11);
    (0..units).map(|_| rng.random::<f64>()).collect()
}
