//! The lowered model seen as a classifier of pixel batches: normalisation inside, eval mode
//! always (BatchNormalization uses and never updates its running statistics, so neither
//! attacks nor spectra change the model), and the cross-entropy loss they differentiate.

use tch::{Reduction, Tensor};

use crate::graph::Graph;
use crate::lower::LoweredModel;

use super::pixels::PixelInput;

pub struct Classifier<'a> {
    pub model: &'a LoweredModel,
    pub input: &'a PixelInput,
    /// The model ends in Softmax: its output is probabilities, not logits.
    probabilities: bool,
}

impl<'a> Classifier<'a> {
    pub fn new(graph: &Graph, model: &'a LoweredModel, input: &'a PixelInput) -> Self {
        let last = graph.outputs.first().and_then(|o| graph.producer(&o.name)).map(|i| graph.nodes[i].op_type.as_str());
        Classifier { model, input, probabilities: last == Some("Softmax") }
    }

    /// Model output (logits or probabilities) on a pixel batch, in eval mode.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, crate::lower::LowerError> {
        self.model.forward_t(&self.input.normalise(pixels)?, false)
    }

    /// Cross-entropy of `output` against `labels`, summed over the batch: the gradient of the
    /// sum w.r.t. example i's values is example i's own gradient.
    pub fn loss(&self, output: &Tensor, labels: &Tensor) -> Result<Tensor, tch::TchError> {
        self.log_probabilities(output)?.f_nll_loss(&labels.f_to_device(output.device())?, None::<Tensor>, Reduction::Sum, -100)
    }

    /// Log-probabilities [batch, classes] of a model output (logits or probabilities).
    pub fn log_probabilities(&self, output: &Tensor) -> Result<Tensor, tch::TchError> {
        let output = output.f_flatten(1, -1)?;
        if self.probabilities {
            output.f_clamp_min(1e-12)?.f_log()
        } else {
            output.f_log_softmax(-1, tch::Kind::Float)
        }
    }

    /// Predicted classes of a pixel batch.
    pub fn predict(&self, pixels: &Tensor) -> Result<Tensor, crate::lower::LowerError> {
        let output = tch::no_grad(|| self.forward(pixels))?;
        Ok(output.f_flatten(1, -1)?.f_argmax(-1, false)?)
    }
}
