//! Architecture-oriented search repair, the second half of ArchRepair: the chosen block (or its
//! residual branch) becomes a DARTS-style cell whose architecture α and weights are optimised
//! jointly on the repair data (D_fail ∪ training images) with everything else frozen; the
//! derived discrete cell is then trained and the best epoch on a held-out slice kept.
//!
//! Stages: choose the block (`--block`, or the top of the localization ranking) → splice a
//! search cell in its place → bi-level search (bilevel.rs) → derive the genotype → train the
//! derived cell (train.rs) → measure before/after (metrics.rs).

pub mod bilevel;
pub mod cell;
pub mod checkpoint;
pub mod choice;
pub mod data;
pub mod genotype;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod optim;
pub mod options;
pub mod second_order;
pub mod target;
pub mod train;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::data::{Dataset, InputPlan};
use crate::detect::detect;
use crate::graph::Graph;
use crate::localize::classifier::Classifier;
use crate::localize::pixels::PixelInput;
use crate::localize::{self, Failure};
use crate::lower::{LoweredModel, Role};
use crate::spec::Spec;
use crate::Error;

pub use choice::{choose, localize_top};

use bilevel::{EpochLog, SearchLoop};
use data::RepairData;
use genotype::Genotype;
use metrics::{predictions, RepairMetrics, SetAccuracy};
use net::SplicedNet;
use options::BlockChoice;
use target::Target;
use train::{TrainEpoch, Trainer};

/// Everything the search reads.
pub struct Request<'a> {
    pub graph: &'a Graph,
    pub model: &'a LoweredModel,
    pub plan: &'a InputPlan,
    /// The split D_fail comes from, and on which before/after is measured.
    pub eval: &'a Dataset,
    /// The training images of the repair data.
    pub train: &'a Dataset,
    /// More labelled sets to measure before/after on (name, data).
    pub extra: &'a [(String, Dataset)],
    /// `seed`, `collect`, `attack`, `localize` (for `--block auto`), `search`, `train`.
    pub spec: &'a Spec,
    pub progress: bool,
    pub model_path: &'a Path,
    /// Folder of the per-epoch search checkpoint.
    pub checkpoint: Option<PathBuf>,
    pub resume: bool,
    /// The block, when already chosen (a resumed run's localize stage); None: choose it here.
    pub chosen: Option<&'a Chosen>,
}

/// Which block is repaired and why: given in the spec, or the top of the localization ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub block: usize,
    /// `given`, or `localize (<method>)`.
    pub chosen_by: String,
    /// Every block's suspiciousness, most suspicious first; empty when the block was given.
    pub ranking: Vec<BlockScore>,
    /// Layer-level localization (`finetune-layer`): the most suspicious Conv/Gemm node; then
    /// `block` and `ranking` number the model's layers (as `blocks` lists them), not its blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// One block's place in the localization ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockScore {
    pub block: usize,
    /// 1 = most suspicious.
    pub rank: usize,
    pub score: f64,
}

/// What the search produced; the derived cell's weights are in `cell`.
pub struct Outcome {
    pub report: SearchReport,
    pub genotype: Genotype,
    /// The derived cell's variables; `layers` reads them.
    pub cell: nn::VarStore,
    pub layers: cell::Cell,
    /// The block and the ranking that chose it.
    pub chosen: Chosen,
    /// D_fail: indices into the evaluation split.
    pub failures: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchReport {
    pub format: u32,
    pub version: String,
    pub model: String,
    pub seed: u64,
    /// How the block was chosen: `given` or the localization method.
    pub chosen_by: String,
    pub target: Target,
    pub cell: CellSummary,
    pub genotype: Genotype,
    pub genotype_text: String,
    pub repair_data: RepairDataSummary,
    pub search: Vec<EpochLog>,
    /// softmax(α) at the end of the search, [edge][op], ops in `cell.ops` order.
    pub mixing: Vec<Vec<f64>>,
    /// Largest change of any α entry during the search (0: the architecture never moved).
    pub alpha_max_change: f64,
    pub search_stopped_by_budget: bool,
    pub resumed_from_epoch: Option<usize>,
    pub train: Vec<TrainEpoch>,
    pub train_stopped_by_budget: bool,
    pub kept: KeptModel,
    pub metrics: RepairMetrics,
    pub extra: Vec<SetAccuracy>,
    pub seconds: StageSeconds,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSummary {
    pub in_channels: i64,
    pub out_channels: i64,
    pub channels: i64,
    pub stride: i64,
    pub nodes: usize,
    pub ops: Vec<String>,
    /// Elements of the derived cell's weights, and of the block part it replaces.
    pub params: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairDataSummary {
    pub failures: usize,
    pub training_images: usize,
    pub half_a: usize,
    pub half_b: usize,
    /// Rows the derived cell trains on (failures repeated `oversample_failures` times).
    pub training_rows: usize,
    pub holdout: usize,
}

impl RepairDataSummary {
    pub fn of(data: &RepairData) -> RepairDataSummary {
        RepairDataSummary {
            failures: data.failures,
            training_images: data.pixels.size()[0] as usize - data.failures,
            half_a: data.half_a.len(),
            half_b: data.half_b.len(),
            training_rows: data.training.len(),
            holdout: data.holdout.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptModel {
    pub phase: String,
    pub epoch: usize,
    pub holdout_accuracy: f64,
    /// The subject's accuracy on the same held-out slice.
    pub holdout_accuracy_before: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSeconds {
    pub localize: f64,
    pub collect: f64,
    pub search: f64,
    pub train: f64,
    pub evaluate: f64,
    pub total: f64,
}

/// The format of search.json.
pub const FORMAT_VERSION: u32 = 1;

/// The checks of [`search`] that need no long work (the spec's ops, a given block id, a
/// dynamic batch axis, finite weights), so that the main command refuses before it writes anything.
pub fn check_early(graph: &Graph, model: &LoweredModel, plan: &InputPlan, spec: &Spec, model_path: &Path) -> Result<(), Error> {
    parse_ops(spec)?;
    pixel_input(plan, model, model_path)?;
    if let (BlockChoice::Id(id), Some((granularity, for_cell))) = (spec.search.block, choice::unit_kind(spec)) {
        choice::given(graph, &detect(graph), spec, granularity, for_cell, id, model_path)?;
    }
    finite_weights(model, model_path)
}

/// A weight or BatchNormalization statistic holding NaN or infinity makes every gradient NaN:
/// refused up front, naming the initializer (constants may hold -inf masks and are not checked).
fn finite_weights(model: &LoweredModel, model_path: &Path) -> Result<(), Error> {
    for w in model.weights().iter().filter(|w| w.role != Role::Constant && w.tensor.is_floating_point()) {
        let finite = w.tensor.f_isfinite().and_then(|t| t.f_all()).and_then(|t| t.f_int64_value(&[])).map_err(Error::torch("checking the weights for NaN"))?;
        if finite == 0 {
            return Err(Error::Mismatch(format!(
                "`{}`: initializer `{}` holds NaN or infinite values, so the model cannot be trained or repaired; re-export it from a healthy checkpoint",
                model_path.display(),
                w.onnx_name
            )));
        }
    }
    Ok(())
}

fn parse_ops(spec: &Spec) -> Result<Vec<ops::OpKind>, Error> {
    ops::parse_ops(&spec.search.ops).map_err(|e| Error::Mismatch(format!("search.ops: {e}")))
}

/// The model's pixel input; a model whose batch size is fixed cannot be trained on.
pub(crate) fn pixel_input(plan: &InputPlan, model: &LoweredModel, model_path: &Path) -> Result<PixelInput, Error> {
    let input = PixelInput::new(plan, model.device())?;
    if let Some(fixed) = input.fixed_batch() {
        return Err(Error::Mismatch(format!(
            "`{}` fixes its batch size to {fixed}; the search trains on batches of other sizes, so re-export the model with a dynamic batch axis (e.g. torch.onnx.export(..., dynamic_axes={{'input': {{0: 'batch'}}}}))",
            model_path.display()
        )));
    }
    Ok(input)
}

pub fn search(request: &Request) -> Result<Outcome, Error> {
    let started = Instant::now();
    let spec = request.spec;
    let (s, t) = (&spec.search, &spec.train);
    let ops = parse_ops(spec)?;
    let named = |e: Failure| e.in_model(request.model_path);
    let input = pixel_input(request.plan, request.model, request.model_path)?;
    finite_weights(request.model, request.model_path)?;

    // Which block (or layer).
    let chosen = match request.chosen {
        Some(chosen) => chosen.clone(),
        None => choice::choose(request, s.granularity, true)?,
    };
    let localize_seconds = started.elapsed().as_secs_f64();
    let target = choice::target(request.graph, &chosen, s.keep_shortcut, request.model_path)?;
    let splice = request.model.splice(&target.entry, &target.tensor).map_err(|source| Error::Lower { path: request.model_path.to_path_buf(), source })?;
    let shape = target.cell_shape(s.channels, s.nodes.max(1));

    // Freeze the backbone: no gradient flows into its weights unless the fine-tune asks.
    let backbone: Vec<Tensor> = request.model.weights().iter().filter(|w| w.role == Role::Trainable).map(|w| w.tensor.shallow_clone()).collect();
    for w in &backbone {
        let _ = w.set_requires_grad(false);
    }

    let classifier = Classifier::new(request.graph, request.model, &input);
    let collect_started = Instant::now();
    let collected = localize::collect_failures(&classifier, request.eval, &spec.collect, spec.seed, request.progress).map_err(named)?;
    let mut data = RepairData::build(&input, request.eval, &collected.failures, request.train, s, t.train_images, spec.seed)?;
    if t.distill > 0.0 {
        data.add_teacher(&classifier).map_err(named)?;
    }
    let collect_seconds = collect_started.elapsed().as_secs_f64();

    // Search.
    let search_started = Instant::now();
    tch::manual_seed(spec.seed as i64);
    let supernet = SplicedNet::search(&classifier, &splice, shape, &ops);
    check_cell_shape(&supernet, &target)?;
    let fingerprint = fingerprint(request, &target);
    let searched = SearchLoop {
        spec: s,
        ops: &ops,
        data: &data,
        seed: spec.seed,
        progress: request.progress,
        checkpoint: request.checkpoint.clone(),
        resume: request.resume,
        fingerprint,
    }
    .run(&supernet)
    .map_err(named)?;
    let search_seconds = search_started.elapsed().as_secs_f64();

    // The subject's predictions, taken before the training: the whole-network fine-tune
    // (`train.finetune_epochs`) changes the backbone's weights in place, and `classifier` reads
    // those same tensors.
    let subject_started = Instant::now();
    let subject_on = |data: &Dataset, name: &str| predictions(&|p: &Tensor| classifier.predict(p), &input, data, &format!("{name}: subject"), request.progress);
    let before = subject_on(request.eval, "evaluate").map_err(named)?;
    let extra_before = request.extra.iter().map(|(name, set)| subject_on(set, name)).collect::<Result<Vec<_>, _>>().map_err(named)?;
    let subject_seconds = subject_started.elapsed().as_secs_f64();

    // Train the derived cell.
    let train_started = Instant::now();
    tch::manual_seed(spec.seed as i64 ^ 0x7472);
    let mut derived = SplicedNet::derived(&classifier, &splice, shape, &searched.genotype);
    if t.inherit_weights {
        derived.inherit(&supernet.vs);
    }
    drop(supernet);
    let before_holdout = train::accuracy(&|p| classifier.predict(p), &data, &data.holdout).map_err(named)?;
    let trained = Trainer { spec: t, data: &data, seed: spec.seed, progress: request.progress, backbone }.run(&derived).map_err(named)?;
    let train_seconds = train_started.elapsed().as_secs_f64();

    // After.
    let evaluate_started = Instant::now();
    let repaired_on = |data: &Dataset, name: &str| predictions(&|p: &Tensor| derived.predict(p), &input, data, &format!("{name}: repaired"), request.progress);
    let after = repaired_on(request.eval, "evaluate").map_err(named)?;
    let metrics = RepairMetrics::new(&before, &after, &request.eval.labels, &collected.failures);
    let mut extra = Vec::new();
    for ((name, set), b) in request.extra.iter().zip(&extra_before) {
        let a = repaired_on(set, name).map_err(named)?;
        extra.push(SetAccuracy { name: name.clone(), evaluated: set.len(), before: metrics::accuracy(b, &set.labels), after: metrics::accuracy(&a, &set.labels) });
    }
    let evaluate_seconds = subject_seconds + evaluate_started.elapsed().as_secs_f64();

    let params = derived.vs.trainable_variables().iter().map(|v| v.numel() as i64).sum();
    let SplicedNet { vs: cell_vs, cell: layers, .. } = derived;
    let report = SearchReport {
        format: FORMAT_VERSION,
        version: env!("CARGO_PKG_VERSION").to_string(),
        model: request.model_path.display().to_string(),
        seed: spec.seed,
        chosen_by: chosen.chosen_by.clone(),
        target,
        cell: CellSummary {
            in_channels: shape.in_channels,
            out_channels: shape.out_channels,
            channels: shape.channels,
            stride: shape.stride,
            nodes: shape.nodes,
            ops: ops.iter().map(|o| o.to_string()).collect(),
            params,
        },
        genotype_text: searched.genotype.to_string(),
        genotype: searched.genotype.clone(),
        repair_data: RepairDataSummary::of(&data),
        search: searched.history,
        mixing: searched.mixing,
        alpha_max_change: searched.alpha_max_change,
        search_stopped_by_budget: searched.stopped_by_budget,
        resumed_from_epoch: searched.resumed_from_epoch,
        train: trained.history,
        train_stopped_by_budget: trained.stopped_by_budget,
        kept: KeptModel { phase: trained.best.0, epoch: trained.best.1, holdout_accuracy: trained.holdout_accuracy, holdout_accuracy_before: before_holdout },
        metrics,
        extra,
        seconds: StageSeconds {
            localize: localize_seconds,
            collect: collect_seconds,
            search: search_seconds,
            train: train_seconds,
            evaluate: evaluate_seconds,
            total: started.elapsed().as_secs_f64(),
        },
    };
    Ok(Outcome { report, genotype: searched.genotype, cell: cell_vs, layers, chosen, failures: collected.failures })
}

/// The cell must produce exactly the replaced tensor's shape; checked once on a dummy batch
/// (libtorch shape errors surface as panics in tch's module API, turned into an error here).
fn check_cell_shape(net: &SplicedNet, target: &Target) -> Result<(), Error> {
    let mut shape = vec![2i64];
    shape.extend(&target.input_shape);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tch::no_grad(|| {
            let x = Tensor::zeros(shape.as_slice(), (tch::Kind::Float, net.device()));
            let weights = net.alpha.as_ref().map(cell::mixing_weights);
            net.cell.forward_t(&x, weights.as_ref(), false).size()
        })
    }));
    match result {
        Ok(size) if size[1..] == target.output_shape[..] => Ok(()),
        Ok(size) => Err(Error::Mismatch(format!(
            "the cell for {} produces {:?} per example, but the replaced tensor `{}` is {:?}; this block's stride or shape is not supported by the search cell",
            target.describe(),
            &size[1..],
            target.tensor,
            target.output_shape
        ))),
        Err(_) => Err(Error::Mismatch(format!("the search cell cannot run on {}'s input {:?}", target.describe(), target.input_shape))),
    }
}

/// FNV-1a of everything that decides the search, except how long it runs (`epochs`, the
/// budget): a checkpoint is only resumed by its own run, which may run longer.
fn fingerprint(request: &Request, target: &Target) -> String {
    let search = options::SearchSpec { epochs: 0, budget_minutes: None, ..request.spec.search.clone() };
    let text = format!(
        "{}|{}|{:?}|{:?}|{}|{}|{}",
        request.model_path.display(),
        request.spec.seed,
        search,
        request.spec.collect,
        target.tensor,
        request.eval.len(),
        request.train.len()
    );
    crate::export::fnv1a(&text)
}
