//! `drift` (ours): where do the activations first stop looking like the training data?
//!
//! Every BatchNormalization carries the per-channel mean and variance its input had on the
//! training data (its running statistics). A fault in a block (damaged weights, a fine-tune on
//! wrong labels) moves the mean of the activations the block produces away from what the
//! following BatchNormalization was fitted to, and that shift then propagates to every later
//! BatchNormalization. So the fault sits where the shift *starts*: at the BatchNormalization
//! whose shift is large compared with the largest shift upstream of it.
//!
//! On the failing and passing inputs (forward passes only), per BatchNormalization b:
//!   shift_b = mean over channels c of (μ_c − running_mean_c)² / (running_var_c + ε_b),
//!   μ_c the mean of b's input channel c over the inputs and spatial positions;
//!   ratio_b = shift_b / max(largest shift_a over the BatchNormalizations a upstream of b, 1e-4).
//! A unit scores the largest ratio among its BatchNormalizations (for a layer: the one that
//! reads its output); a unit without one scores NaN (ranked last).

use std::collections::HashSet;

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::graph::Graph;
use crate::Error;

use super::classifier::Classifier;
use super::units::Probes;
use super::{Failure, Inputs};

/// The upstream shift below which a ratio's denominator is clamped: without it, a shift right
/// after near-zero upstream shifts would score as an unbounded jump.
pub const SHIFT_FLOOR: f64 = 1e-4;

/// One BatchNormalization whose running statistics are initializers of the model.
struct Normalization {
    node: String,
    /// Its activation input (input 0), whose channel means are measured.
    input: String,
    running_mean: Tensor,
    running_var: Tensor,
    epsilon: f64,
    /// Indices (into the list of normalizations) of those upstream of this one.
    upstream: Vec<usize>,
}

/// What `drift` measured at one BatchNormalization (ranking.json `units[].drift`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NormalizationDrift {
    pub node: String,
    /// Mean over channels of (μ_c − running_mean_c)² / (running_var_c + ε).
    pub shift: f64,
    /// The largest shift upstream of it (0 when none).
    pub upstream_shift: f64,
    /// shift / max(upstream_shift, 1e-4): the unit's score is its largest ratio.
    pub ratio: f64,
}

/// A unit's score and the drift at each of its BatchNormalizations.
pub(crate) type UnitDrift = (f64, Vec<NormalizationDrift>);

/// The BatchNormalizations of a model and the units they belong to.
pub(crate) struct Drift {
    normalizations: Vec<Normalization>,
    /// Per unit (in the order of [`Probes::units`]), its normalizations.
    members: Vec<Vec<usize>>,
}

impl Drift {
    /// Every BatchNormalization of `graph` whose running mean and variance are weights of the
    /// lowered model; None when there is none (the method cannot run on this model).
    pub(crate) fn new(graph: &Graph, classifier: &Classifier, probes: &Probes) -> Option<Drift> {
        let weights = classifier.model.weights();
        let weight = |name: Option<&String>| weights.iter().find(|w| Some(&w.onnx_name) == name).map(|w| w.tensor.to_kind(Kind::Double));
        // Per node index, the normalizations upstream of it or at it.
        let mut reaching: Vec<HashSet<usize>> = vec![HashSet::new(); graph.nodes.len()];
        let mut normalizations = Vec::new();
        for (index, node) in graph.nodes.iter().enumerate() {
            let mut here: HashSet<usize> = HashSet::new();
            for producer in node.inputs.iter().filter_map(|i| graph.producer(i)) {
                here.extend(reaching[producer].iter().copied());
            }
            if node.op_type == "BatchNormalization" {
                if let (Some(input), Some(running_mean), Some(running_var)) = (node.inputs.first(), weight(node.inputs.get(3)), weight(node.inputs.get(4))) {
                    let mut upstream: Vec<usize> = here.iter().copied().collect();
                    upstream.sort_unstable();
                    here.insert(normalizations.len());
                    normalizations.push(Normalization {
                        node: node.name.clone(),
                        input: input.clone(),
                        running_mean,
                        running_var,
                        epsilon: node.attributes.float("epsilon").unwrap_or(1e-5) as f64,
                        upstream,
                    });
                }
            }
            reaching[index] = here;
        }
        if normalizations.is_empty() {
            return None;
        }
        let members = probes
            .units
            .iter()
            .map(|unit| {
                let nodes: HashSet<&str> = unit.info.nodes.iter().map(String::as_str).collect();
                let outputs: HashSet<&str> = unit.layers.iter().map(|&l| probes.layers[l].output.as_str()).collect();
                (0..normalizations.len()).filter(|&b| nodes.contains(normalizations[b].node.as_str()) || outputs.contains(normalizations[b].input.as_str())).collect()
            })
            .collect();
        Some(Drift { normalizations, members })
    }

    /// Per unit, its score and the drift of each of its BatchNormalizations, measured on
    /// `inputs` (each a set of examples; forward passes only, batch by batch).
    pub(crate) fn measure(&self, classifier: &Classifier, inputs: &[&Inputs]) -> Result<Vec<UnitDrift>, Failure> {
        let captured: Vec<String> = self.normalizations.iter().map(|n| n.input.clone()).collect();
        let mut sums: Vec<Option<Tensor>> = captured.iter().map(|_| None).collect();
        let mut counts = vec![0f64; captured.len()];
        for batches in inputs {
            for batch in batches.batches() {
                let (pixels, _, real) = batch?;
                let x = classifier.input.normalise(&pixels)?;
                let (_, values) = tch::no_grad(|| classifier.model.forward_capture(&x, false, &captured))?;
                for ((value, sum), count) in values.iter().zip(&mut sums).zip(&mut counts) {
                    let rows = value.f_narrow(0, 0, real as i64)?;
                    let size = rows.size();
                    if size.len() < 2 {
                        return Err(Failure::Other(Error::Mismatch(format!("a BatchNormalization input has shape {size:?}; expected [N, C, ...]"))));
                    }
                    // [C, N × spatial] → per-channel sums.
                    let per_channel = rows.f_transpose(0, 1)?.f_reshape([size[1], -1])?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Double)?;
                    *count += (size.iter().product::<i64>() / size[1]) as f64;
                    *sum = Some(match sum.take() {
                        Some(s) => s.f_add(&per_channel)?,
                        None => per_channel,
                    });
                }
                crate::interrupt::check()?;
            }
        }
        let mut shifts = Vec::with_capacity(self.normalizations.len());
        for ((n, sum), count) in self.normalizations.iter().zip(&sums).zip(&counts) {
            let Some(sum) = sum else { return Err(Failure::Other(Error::Mismatch("no inputs to measure the BatchNormalization statistics on".into()))) };
            let mean = sum.f_div_scalar(*count)?.f_to_device(n.running_mean.device())?;
            let shift = mean.f_sub(&n.running_mean)?.f_square()?.f_div(&n.running_var.f_add_scalar(n.epsilon)?)?.f_mean(Kind::Double)?.f_double_value(&[])?;
            shifts.push(shift);
        }
        let drift_at = |b: usize| {
            let upstream_shift = self.normalizations[b].upstream.iter().map(|&a| shifts[a]).fold(0.0, f64::max);
            NormalizationDrift { node: self.normalizations[b].node.clone(), shift: shifts[b], upstream_shift, ratio: shifts[b] / upstream_shift.max(SHIFT_FLOOR) }
        };
        Ok(self
            .members
            .iter()
            .map(|members| {
                let drifts: Vec<NormalizationDrift> = members.iter().map(|&b| drift_at(b)).collect();
                let score = drifts.iter().map(|d| d.ratio).fold(f64::NAN, f64::max);
                (score, drifts)
            })
            .collect())
    }
}
