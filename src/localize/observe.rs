//! One forward and one backward pass over a batch: the activation status of every neuron
//! (spatial mean of its output above the threshold) and the magnitude of the per-example
//! gradient of the weights that produce it, as [N, neurons] matrices for the spectrum.

use std::collections::HashMap;
use std::ops::Range;

use tch::{Kind, Tensor};

use crate::lower::LowerError;

use super::classifier::Classifier;
use super::units::Probes;

pub struct Observer<'a> {
    classifier: &'a Classifier<'a>,
    probes: &'a Probes,
    captured: Vec<String>,
    position: HashMap<String, usize>,
    threshold: f64,
    /// Per-neuron level subtracted before the threshold (`reference: passing_mean`).
    reference: Option<Tensor>,
}

/// Statuses and weights of one batch's real rows, and the columns of each unit.
pub struct Observation {
    /// [N, neurons], 1 where activated.
    pub active: Tensor,
    /// [N, neurons], ||∂L_i/∂W_n||.
    pub weights: Tensor,
    /// Columns of each unit, in the order of [`Probes::units`].
    pub columns: Vec<Range<usize>>,
}

impl<'a> Observer<'a> {
    pub fn new(classifier: &'a Classifier<'a>, probes: &'a Probes, threshold: f32) -> Self {
        let captured = probes.captured_tensors();
        let position = captured.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();
        Observer { classifier, probes, captured, position, threshold: threshold as f64, reference: None }
    }

    /// From now on a neuron is activated when its level exceeds `reference` (one value per
    /// neuron) plus the threshold.
    pub fn set_reference(&mut self, reference: Tensor) {
        self.reference = Some(reference);
    }

    /// The level of every neuron (spatial mean of its output) on the batch's real rows,
    /// [N, neurons]: forward only.
    pub fn levels(&self, pixels: &Tensor, real: usize) -> Result<Tensor, LowerError> {
        let x = self.classifier.input.normalise(pixels)?;
        let (_, values) = tch::no_grad(|| self.classifier.model.forward_capture(&x, false, &self.captured))?;
        let (levels, _, _) = self.columns(&values, None, real)?;
        Ok(levels)
    }

    pub fn observe(&self, pixels: &Tensor, labels: &Tensor, real: usize) -> Result<Observation, LowerError> {
        let model = self.classifier.model;
        let x = self.classifier.input.normalise(pixels)?;
        let (output, values) = model.forward_capture(&x, false, &self.captured)?;
        let value = |name: &str| &values[self.position[name]];
        let loss = self.classifier.loss(&output, labels)?;
        let layer_outputs: Vec<&Tensor> = self.probes.layers.iter().map(|l| value(&l.output)).collect();
        let deltas = Tensor::f_run_backward(&[&loss], &layer_outputs, false, false)?;
        let mut norms = Vec::with_capacity(deltas.len());
        for (layer, delta) in self.probes.layers.iter().zip(&deltas) {
            norms.push(tch::no_grad(|| model.weight_grad_norms(&layer.node, value(&layer.input), delta))?.f_narrow(0, 0, real as i64)?);
        }
        let (levels, weights, columns) = self.columns(&values, Some(&norms), real)?;
        let levels = match &self.reference {
            Some(reference) => levels.f_sub(reference)?,
            None => levels,
        };
        let active = levels.f_gt(self.threshold)?.f_to_kind(Kind::Float)?;
        Ok(Observation { active, weights, columns })
    }

    /// Levels [N, neurons], with `norms` (per probe layer, [N, channels]) also the neurons'
    /// weights, and the columns of each unit.
    fn columns(&self, values: &[Tensor], norms: Option<&[Tensor]>, real: usize) -> Result<(Tensor, Tensor, Vec<Range<usize>>), tch::TchError> {
        let value = |name: &str| &values[self.position[name]];
        let level = |t: &Tensor| -> Result<Tensor, tch::TchError> {
            let t = t.f_detach()?.f_narrow(0, 0, real as i64)?;
            if t.dim() > 2 {
                t.f_flatten(2, -1)?.f_mean_dim([2i64].as_slice(), false, Kind::Float)
            } else {
                t.f_flatten(1, -1)
            }
        };
        let (mut levels, mut weights, mut columns) = (Vec::new(), Vec::new(), Vec::new());
        let mut width = 0;
        for unit in &self.probes.units {
            let start = width;
            for &l in &unit.layers {
                let s = level(value(&self.probes.layers[l].neurons))?;
                width += s.size()[1] as usize;
                if let Some(norms) = norms {
                    weights.push(norms[l].shallow_clone());
                }
                levels.push(s);
            }
            if let Some(exit) = &unit.exit {
                let s = level(value(&exit.tensor))?;
                let channels = s.size()[1];
                if let Some(norms) = norms {
                    let producers: Vec<&Tensor> = exit.producers.iter().map(|&p| &norms[p]).filter(|n| n.size()[1] == channels).collect();
                    weights.push(match producers.split_first() {
                        None => s.f_ones_like()?,
                        Some((first, rest)) => {
                            let mut squares = first.f_square()?;
                            for p in rest {
                                squares = squares.f_add(&p.f_square()?)?;
                            }
                            squares.f_sqrt()?
                        }
                    });
                }
                width += channels as usize;
                levels.push(s);
            }
            columns.push(start..width);
        }
        let device = values.first().map_or(tch::Device::Cpu, |v| v.device());
        let cat = |parts: &[Tensor]| -> Result<Tensor, tch::TchError> {
            if parts.is_empty() {
                Tensor::f_zeros([real as i64, 0], (Kind::Float, device))
            } else {
                Tensor::f_cat(parts, 1)
            }
        };
        Ok((cat(&levels)?, cat(&weights)?.f_detach()?, columns))
    }
}
