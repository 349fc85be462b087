//! Baseline localizers in the spectrum's interface (one score per unit, higher = more
//! suspicious): `gradient`, the paper's empirical study (mean |∂L/∂W| of each unit's Conv/Gemm
//! weights on random failures), and `random`, the floor every localizer must beat.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use tch::{Kind, Tensor};

use crate::graph::Graph;
use crate::lower::{LowerError, Role};

use super::classifier::Classifier;
use super::units::Probes;

/// Mean |∂L/∂W| per unit, L the mean cross-entropy over `batches` (pixels, labels, real rows).
pub fn gradient_scores(classifier: &Classifier, graph: &Graph, probes: &Probes, batches: &[(Tensor, Tensor, usize)]) -> Result<Vec<f64>, LowerError> {
    // The trainable weights (and biases) of every probed layer, tagged with the layer.
    let weights: Vec<(usize, &Tensor)> = probes
        .layers
        .iter()
        .enumerate()
        .flat_map(|(l, layer)| {
            let inputs = graph.node_by_name(&layer.node).map(|n| n.inputs.clone()).unwrap_or_default();
            let model_weights = classifier.model.weights().iter();
            model_weights.filter(move |w| w.role == Role::Trainable && inputs.iter().skip(1).any(|i| *i == w.onnx_name)).map(move |w| (l, &w.tensor))
        })
        .collect();
    let tensors: Vec<&Tensor> = weights.iter().map(|(_, t)| *t).collect();
    let mut sums: Vec<Option<Tensor>> = tensors.iter().map(|_| None).collect();
    let mut examples = 0;
    for (pixels, labels, real) in batches {
        let output = classifier.forward(pixels)?.f_narrow(0, 0, *real as i64)?;
        let loss = classifier.loss(&output, &labels.f_narrow(0, 0, *real as i64)?)?;
        for (sum, g) in sums.iter_mut().zip(Tensor::f_run_backward(&[&loss], &tensors, false, false)?) {
            *sum = Some(match sum.take() {
                Some(s) => s.f_add(&g)?,
                None => g,
            });
        }
        examples += real;
    }
    // Per layer: (sum of |gradient of the summed loss|, number of weights).
    let mut per_layer = vec![(0.0, 0usize); probes.layers.len()];
    for ((l, t), sum) in weights.iter().zip(&sums) {
        if let Some(g) = sum {
            per_layer[*l].0 += g.f_abs()?.f_sum(Kind::Double)?.f_double_value(&[])?;
        }
        per_layer[*l].1 += t.numel();
    }
    Ok(probes
        .units
        .iter()
        .map(|unit| {
            let (sum, count) = unit.layers.iter().fold((0.0, 0), |(s, c), &l| (s + per_layer[l].0, c + per_layer[l].1));
            if count > 0 && examples > 0 { sum / count as f64 / examples as f64 } else { 0.0 }
        })
        .collect())
}

/// A seeded random score per unit.
pub fn random_scores(units: usize, seed: u64) -> Vec<f64> {
    let mut rng = Pcg64::seed_from_u64(seed ^ 0x5eed_0f_7a2d_0c11);
    (0..units).map(|_| rng.random::<f64>()).collect()
}
