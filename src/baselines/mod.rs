//! The repair methods ArchRepair is compared with (issue 8). All of them keep the model's
//! architecture and change weights only, so their repaired model is the input model with some
//! initializers rewritten (`export::write_back_weights`), validated and measured exactly as
//! ArchRepair's.
//!
//! A method gets a [`Context`]: the lowered model, whose trainable weights it changes in place
//! (the tensors in `model.weights()` are the ones the forward pass reads), the repair data
//! (D_fail ∪ training images, with the held-out slice that chooses the kept model), and the
//! localized block. It returns its own log for the report as JSON.

pub mod apricot;
pub mod arachne;
pub mod finetune;

use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::graph::Graph;
use crate::localize::classifier::Classifier;
use crate::localize::options::Granularity;
use crate::localize::{self, Failure};
use crate::lower::{LoweredModel, Role, Weight};
use crate::search::data::RepairData;
use crate::search::{self, train, Chosen, RepairDataSummary};
use crate::spec::Spec;
use crate::Error;

/// The spec's `method` (and `--method`): how the model is repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Block-level architecture search and weight training (the paper's method).
    #[default]
    Archrepair,
    /// Fine-tunes every trainable weight on the repair data.
    FinetuneNetwork,
    /// Fine-tunes the weights of the most suspicious Conv/Gemm layer only.
    FinetuneLayer,
    /// Fine-tunes the localized block's weights only, architecture unchanged (the paper's
    /// empirical study).
    FinetuneBlock,
    /// Arachne (Sohn et al.): differential evolution on the last layer's most suspicious weights.
    Arachne,
    /// Apricot (Zhang & Chan): weights adapted toward reduced models that classify each failure
    /// right, then retrained.
    Apricot,
}

impl Method {
    pub const ALL: [Method; 6] = [Method::Archrepair, Method::FinetuneNetwork, Method::FinetuneLayer, Method::FinetuneBlock, Method::Arachne, Method::Apricot];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Archrepair => "archrepair",
            Method::FinetuneNetwork => "finetune-network",
            Method::FinetuneLayer => "finetune-layer",
            Method::FinetuneBlock => "finetune-block",
            Method::Arachne => "arachne",
            Method::Apricot => "apricot",
        }
    }

    /// The kind of unit the method changes, and whether a search cell replaces it: ArchRepair
    /// works at `search_granularity`; None for the methods that do not localize.
    pub fn unit(self, search_granularity: Granularity) -> Option<(Granularity, bool)> {
        match self {
            Method::Archrepair => Some((search_granularity, true)),
            Method::FinetuneLayer => Some((Granularity::Layer, false)),
            Method::FinetuneBlock => Some((Granularity::Block, false)),
            Method::FinetuneNetwork | Method::Arachne | Method::Apricot => None,
        }
    }

    /// Whether the method needs the localization ranking (the block or layer it works on).
    pub fn localizes(self) -> bool {
        self.unit(Granularity::Block).is_some()
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| format!("unknown method `{s}`; expected one of {}", Method::ALL.map(Method::as_str).join(", ")))
    }
}

/// Everything a weight-only method reads. The model's trainable weights are changed in place;
/// BatchNormalization statistics never move (every forward pass runs in eval mode).
pub struct Context<'a> {
    pub graph: &'a Graph,
    pub model: &'a LoweredModel,
    /// The model as a classifier of pixel batches (normalisation inside, eval mode).
    pub classifier: &'a Classifier<'a>,
    /// D_fail (the first `data.failures` rows) then training images; `data.training` are the
    /// rows to train on, `data.holdout` the rows that choose the kept weights (never the test
    /// split).
    pub data: &'a RepairData,
    /// The localized block or layer, for the methods that localize ([`Method::localizes`]).
    pub chosen: Option<&'a Chosen>,
    /// `seed`, `train` (shared optimiser settings), and each method's own section.
    pub spec: &'a Spec,
    pub progress: bool,
    /// The model file, for messages.
    pub model_path: &'a std::path::Path,
}

/// What a weight-only method did, for the report (`report.json`'s `baseline`) and the dump
/// folder (`method.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodReport {
    pub method: Method,
    /// The localized block or layer the method worked on, when it localizes.
    pub chosen: Option<Chosen>,
    pub repair_data: RepairDataSummary,
    /// Accuracy on the held-out slice of the repair data, subject and repaired (libtorch).
    pub holdout_accuracy_before: f64,
    pub holdout_accuracy_after: f64,
    /// The method's own log: trained weights and epochs (fine-tuning), localized weights and
    /// the evolution (Arachne), reduced models and adaptation passes (Apricot).
    pub log: serde_json::Value,
    /// Seconds collecting D_fail and the repair data, and repairing.
    pub collect_seconds: f64,
    pub repair_seconds: f64,
}

/// A weight-only repair: the model's weights were changed in place.
pub struct WeightOutcome {
    pub report: MethodReport,
    /// D_fail: indices into the evaluation split.
    pub failures: Vec<usize>,
}

/// Runs a weight-only `method` on the request's model: collects D_fail as ArchRepair does,
/// builds the same repair data (same seed, same held-out slice), and changes the lowered
/// model's weights in place.
pub fn run(request: &search::Request, method: Method) -> Result<WeightOutcome, Error> {
    let spec = request.spec;
    let named = |e: Failure| e.in_model(request.model_path);
    let input = search::pixel_input(request.plan, request.model, request.model_path)?;
    let classifier = Classifier::new(request.graph, request.model, &input);
    let collect_started = Instant::now();
    let collected = localize::collect_failures(&classifier, request.eval, &spec.collect, spec.seed, request.progress).map_err(named)?;
    let mut data = RepairData::build(&input, request.eval, &collected.failures, request.train, &spec.search, spec.train.train_images, spec.seed)?;
    if spec.train.distill > 0.0 {
        data.add_teacher(&classifier).map_err(named)?;
    }
    let collect_seconds = collect_started.elapsed().as_secs_f64();

    let repair_started = Instant::now();
    let holdout_accuracy_before = train::accuracy(&|p| classifier.predict(p), &data, &data.holdout).map_err(named)?;
    let chosen = request.chosen.filter(|_| method.localizes());
    let ctx = Context { graph: request.graph, model: request.model, classifier: &classifier, data: &data, chosen, spec, progress: request.progress, model_path: request.model_path };
    let needs = |what: &str| Error::Mismatch(format!("method {method} needs the localized {what}; its localize stage chose none"));
    let log = match method {
        Method::Archrepair => return Err(Error::Mismatch("method archrepair is not a weight-only method".into())),
        Method::FinetuneNetwork => to_json(finetune::repair(&ctx, finetune::Scope::Network)?),
        Method::FinetuneBlock => to_json(finetune::repair(&ctx, finetune::Scope::Block(chosen.ok_or_else(|| needs("block"))?.block))?),
        Method::FinetuneLayer => {
            let layer = chosen.and_then(|c| c.layer.clone()).ok_or_else(|| needs("layer"))?;
            to_json(finetune::repair(&ctx, finetune::Scope::Layer(layer))?)
        }
        Method::Apricot => to_json(apricot::repair(&ctx)?),
        Method::Arachne => to_json(arachne::repair(&ctx)?),
    };
    let holdout_accuracy_after = train::accuracy(&|p| classifier.predict(p), &data, &data.holdout).map_err(named)?;
    let report = MethodReport {
        method,
        chosen: chosen.cloned(),
        repair_data: RepairDataSummary::of(&data),
        holdout_accuracy_before,
        holdout_accuracy_after,
        log,
        collect_seconds,
        repair_seconds: repair_started.elapsed().as_secs_f64(),
    };
    Ok(WeightOutcome { report, failures: collected.failures })
}

fn to_json(log: impl Serialize) -> serde_json::Value {
    serde_json::to_value(log).unwrap_or_default()
}

/// The model's trainable weights (Role::Trainable, in model order) that `nodes` read, or all of
/// them for None: what a block-, layer- or network-level fine-tune changes.
pub(crate) fn trainable_read_by<'a>(graph: &Graph, model: &'a LoweredModel, nodes: Option<&[String]>) -> Vec<&'a Weight> {
    let read: Option<Vec<&str>> = nodes.map(|nodes| graph.nodes.iter().filter(|n| nodes.contains(&n.name)).flat_map(|n| n.inputs.iter().map(String::as_str)).collect());
    model.weights().iter().filter(|w| w.role == Role::Trainable && read.as_ref().is_none_or(|read| read.contains(&w.onnx_name.as_str()))).collect()
}

/// Detached copies of `params`, to put back with [`restore`].
pub(crate) fn snapshot(params: &[Tensor]) -> Vec<Tensor> {
    params.iter().map(|t| t.detach().copy()).collect()
}

/// Writes `saved` (from [`snapshot`]) back into `params` in place.
pub(crate) fn restore(params: &[Tensor], saved: &[Tensor]) {
    tch::no_grad(|| {
        for (t, s) in params.iter().zip(saved) {
            let _ = t.shallow_clone().copy_(s);
        }
    });
}

/// While alive: autograd differentiates `train` (the search may have frozen them) and not
/// `freeze` (so the backward pass skips their gradients); on drop, error or not, every flag is
/// put back as it was.
pub(crate) struct GradGuard {
    was: Vec<(Tensor, bool)>,
}

impl GradGuard {
    pub(crate) fn new(train: &[Tensor], freeze: &[Tensor]) -> GradGuard {
        let was = freeze.iter().chain(train).map(|t| (t.shallow_clone(), t.requires_grad())).collect();
        for t in freeze {
            let _ = t.set_requires_grad(false);
        }
        for t in train {
            let _ = t.set_requires_grad(true);
        }
        GradGuard { was }
    }
}

impl Drop for GradGuard {
    fn drop(&mut self) {
        for (t, was) in self.was.iter().rev() {
            let _ = t.set_requires_grad(*was);
        }
    }
}
