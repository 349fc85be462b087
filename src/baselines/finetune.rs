//! The fine-tuning baselines: the model's own weights trained on the repair data, at three
//! scopes (every trainable weight, the localized block's, the localized layer's), with the
//! same recipe as ArchRepair's block training (`train`: epochs, batch, SGD cosine schedule,
//! distillation, best epoch on the held-out slice), so that the comparison isolates what the
//! architecture search adds. BatchNormalization statistics stay frozen, as in ArchRepair.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::detect::detect;
use crate::localize::classifier::Classifier;
use crate::lower::{LowerError, Role};
use crate::search::net::{distilled_loss, Distill};
use crate::search::options::TrainSpec;
use crate::search::train::{Trainee, Trainer, TrainEpoch};
use crate::Error;

use super::{trainable_read_by, Context, GradGuard};

/// Which weights are fine-tuned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Network,
    /// A block id from `blocks`.
    Block(usize),
    /// A Conv/Gemm node name.
    Layer(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneLog {
    pub scope: Scope,
    /// The ONNX initializers trained.
    pub weights: Vec<String>,
    /// Their elements.
    pub params: i64,
    pub epochs: Vec<TrainEpoch>,
    /// The epoch whose weights were kept (None: no epoch ran).
    pub kept_epoch: Option<usize>,
    pub stopped_by_budget: bool,
}

/// Fine-tunes the weights of `scope` in place; the best epoch on the held-out slice is kept.
pub fn repair(ctx: &Context, scope: Scope) -> Result<FinetuneLog, Error> {
    let names = scope_weights(ctx, &scope)?;
    let weights: Vec<Tensor> = ctx.model.weights().iter().filter(|w| names.contains(&w.onnx_name)).map(|w| w.tensor.shallow_clone()).collect();
    let trainee = ModelWeights { classifier: ctx.classifier, weights };
    // Only the scope's weights take gradients while it trains (the rest stay frozen, and the
    // backward pass skips their gradients).
    let frozen: Vec<Tensor> = ctx.model.weights().iter().filter(|w| w.role == Role::Trainable).map(|w| w.tensor.shallow_clone()).collect();
    let grad = GradGuard::new(&trainee.weights, &frozen);
    // One phase: the block-training settings of `train`, no second whole-network phase.
    let spec = TrainSpec { finetune_epochs: 0, ..ctx.spec.train.clone() };
    let trained = Trainer { spec: &spec, data: ctx.data, seed: ctx.spec.seed, progress: ctx.progress, backbone: Vec::new() }.run(&trainee);
    drop(grad);
    let trained = trained.map_err(|e| e.in_model(ctx.model_path))?;
    Ok(FinetuneLog {
        scope,
        params: trainee.weights.iter().map(|t| t.numel() as i64).sum(),
        weights: names,
        kept_epoch: (trained.best.0 != "none").then_some(trained.best.1),
        epochs: trained.history,
        stopped_by_budget: trained.stopped_by_budget,
    })
}

/// The trainable initializers of `scope`, in model order; an error when there are none.
fn scope_weights(ctx: &Context, scope: &Scope) -> Result<Vec<String>, Error> {
    let nodes: Option<Vec<String>> = match scope {
        Scope::Network => None,
        Scope::Block(id) => {
            let detection = detect(ctx.graph);
            let block = detection.blocks.iter().find(|b| b.id == *id).ok_or_else(|| Error::Mismatch(format!("finetune-block: `{}` has no block {id}", ctx.model_path.display())))?;
            Some(block.nodes.clone())
        }
        Scope::Layer(node) => Some(vec![node.clone()]),
    };
    let names: Vec<String> = trainable_read_by(ctx.graph, ctx.model, nodes.as_deref()).iter().map(|w| w.onnx_name.clone()).collect();
    if names.is_empty() {
        return Err(Error::Mismatch(format!("{scope:?} of `{}` has no trainable weight (Conv, Gemm or BatchNormalization initializer) to fine-tune", ctx.model_path.display())));
    }
    Ok(names)
}

/// A set of the model's own weights as a [`Trainee`]: the whole model runs in eval mode.
struct ModelWeights<'a> {
    classifier: &'a Classifier<'a>,
    weights: Vec<Tensor>,
}

impl Trainee for ModelWeights<'_> {
    fn phase(&self) -> &'static str {
        "weights"
    }
    fn loss_distilled(&self, pixels: &Tensor, labels: &Tensor, distill: Option<Distill>, _train: bool) -> Result<(Tensor, i64), LowerError> {
        let output = self.classifier.forward(pixels)?;
        distilled_loss(self.classifier, &output, labels, distill)
    }
    fn predict(&self, pixels: &Tensor) -> Result<Tensor, LowerError> {
        self.classifier.predict(pixels)
    }
    fn trainable(&self) -> Vec<Tensor> {
        self.weights.iter().map(Tensor::shallow_clone).collect()
    }
    fn variables(&self) -> Vec<Tensor> {
        self.trainable()
    }
}
