//! The subject with its block replaced by a cell: the frozen backbone runs as lowered (eval
//! mode, so its BatchNormalization statistics never move) and the cell runs in train or eval
//! mode as asked. The cell's weights live in their own VarStore and α in a tensor of their own,
//! so each optimiser steps exactly what it owns.

use tch::{nn, Device, Kind, Tensor};

use crate::localize::classifier::Classifier;
use crate::lower::{LowerError, Splice};

use super::cell::{mixing_weights, Cell, CellShape};
use super::genotype::Genotype;
use super::ops::OpKind;

/// The distillation term of a batch: the subject's log-probabilities, the rows it applies to
/// (1.0 / 0.0) and its weight.
#[derive(Clone, Copy)]
pub struct Distill<'t> {
    pub teacher: &'t Tensor,
    pub mask: &'t Tensor,
    pub weight: f64,
}

pub struct SplicedNet<'a> {
    pub classifier: &'a Classifier<'a>,
    pub splice: &'a Splice,
    pub vs: nn::VarStore,
    pub cell: Cell,
    /// [edges, ops]: present while searching.
    pub alpha: Option<Tensor>,
}

impl<'a> SplicedNet<'a> {
    /// The search supernet: every op on every edge, α ~ 1e-3·N(0, 1) as in DARTS.
    pub fn search(classifier: &'a Classifier<'a>, splice: &'a Splice, shape: CellShape, ops: &[OpKind]) -> SplicedNet<'a> {
        let device = classifier.model.device();
        let vs = nn::VarStore::new(device);
        let cell = Cell::search(&(vs.root() / "cell"), shape, ops);
        let alpha = (Tensor::randn(cell.mixing_shape(), (Kind::Float, device)) * 1e-3).set_requires_grad(true);
        SplicedNet { classifier, splice, vs, cell, alpha: Some(alpha) }
    }

    /// The derived cell of `genotype`, fresh weights.
    pub fn derived(classifier: &'a Classifier<'a>, splice: &'a Splice, shape: CellShape, genotype: &Genotype) -> SplicedNet<'a> {
        let vs = nn::VarStore::new(classifier.model.device());
        let cell = Cell::derived(&(vs.root() / "cell"), shape, genotype);
        SplicedNet { classifier, splice, vs, cell, alpha: None }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Model output on a pixel batch; the backbone always in eval mode.
    pub fn forward(&self, pixels: &Tensor, train_cell: bool) -> Result<Tensor, LowerError> {
        let x = self.classifier.input.normalise(pixels)?;
        let weights = self.alpha.as_ref().map(mixing_weights);
        self.classifier.model.forward_spliced(&x, false, self.splice, &mut |entry| Ok(self.cell.forward_t(entry, weights.as_ref(), train_cell)))
    }

    /// Mean cross-entropy and the number of correct predictions.
    pub fn loss(&self, pixels: &Tensor, labels: &Tensor, train_cell: bool) -> Result<(Tensor, i64), LowerError> {
        self.loss_distilled(pixels, labels, None, train_cell)
    }

    /// [`SplicedNet::loss`] plus, when `distill` is given, its weight times the mean KL
    /// divergence KL(subject ‖ net) over the rows its mask selects (training images, not
    /// failures): the repaired net is held to the subject where the subject is trusted.
    pub fn loss_distilled(&self, pixels: &Tensor, labels: &Tensor, distill: Option<Distill>, train_cell: bool) -> Result<(Tensor, i64), LowerError> {
        let output = self.forward(pixels, train_cell)?;
        distilled_loss(self.classifier, &output, labels, distill)
    }

    /// Predicted classes, cell in eval mode, no gradients.
    pub fn predict(&self, pixels: &Tensor) -> Result<Tensor, LowerError> {
        let output = tch::no_grad(|| self.forward(pixels, false))?;
        Ok(output.f_flatten(1, -1)?.f_argmax(-1, false)?)
    }

    /// The cell's trainable weights, in a stable (name) order.
    pub fn cell_weights(&self) -> Vec<Tensor> {
        self.cell_variables().into_iter().filter(Tensor::requires_grad).collect()
    }

    /// Every cell variable, BatchNormalization buffers included, in name order (for snapshots
    /// and checkpoints, which pair tensors by position).
    pub fn cell_variables(&self) -> Vec<Tensor> {
        let mut all: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, t)| t).collect()
    }

    /// The current mixing weights softmax(α) as rows of f64.
    pub fn mixing(&self) -> Vec<Vec<f64>> {
        let Some(alpha) = &self.alpha else { return Vec::new() };
        let w = tch::no_grad(|| mixing_weights(alpha).to_kind(Kind::Double).to_device(Device::Cpu));
        let rows = w.size()[0];
        (0..rows).map(|r| Vec::<f64>::try_from(&w.get(r)).unwrap_or_default()).collect()
    }

    /// Copies every variable of `from` whose name this net also has (weights inherited by the
    /// derived cell from the search cell); returns how many were copied.
    pub fn inherit(&mut self, from: &nn::VarStore) -> usize {
        let source = from.variables();
        let mut copied = 0;
        tch::no_grad(|| {
            for (name, mut t) in self.vs.variables() {
                if let Some(s) = source.get(&name).filter(|s| s.size() == t.size()) {
                    t.copy_(s);
                    copied += 1;
                }
            }
        });
        copied
    }
}

/// Mean cross-entropy of a model output plus, when `distill` is given, its weight times the
/// mean KL divergence KL(subject ‖ output) over the rows its mask selects; and the number of
/// correct predictions.
pub fn distilled_loss(classifier: &Classifier, output: &Tensor, labels: &Tensor, distill: Option<Distill>) -> Result<(Tensor, i64), LowerError> {
    let n = labels.size()[0].max(1) as f64;
    let mut loss = classifier.loss(output, labels)?.f_div_scalar(n)?;
    if let Some(d) = distill {
        let log_p = classifier.log_probabilities(output)?;
        let kl = d.teacher.f_exp()?.f_mul(&d.teacher.f_sub(&log_p)?)?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
        let rows = d.mask.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
        let kl = kl.f_mul(d.mask)?.f_sum(Kind::Float)?.f_div(&rows)?;
        loss = loss.f_add(&kl.f_mul_scalar(d.weight)?)?;
    }
    let correct = tch::no_grad(|| output.f_flatten(1, -1)?.f_argmax(-1, false)?.f_eq_tensor(labels)?.f_sum(Kind::Int64)?.f_int64_value(&[]))?;
    Ok((loss, correct))
}
