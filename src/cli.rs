//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use archrepair_onnx::commands::corruption_table::{parse_corruptions, parse_severities, CorruptionList, CorruptionOptions, SeverityList};
use archrepair_onnx::data::corrupt::ParamSet;
use archrepair_onnx::localize::options::{AttackMethod, Formula, Granularity, Method, Reference};
use archrepair_onnx::search::options::{BlockChoice, Order};
use archrepair_onnx::commands::repair::stages::Stage;
use archrepair_onnx::spec::Spec;
use archrepair_onnx::data::{DataSource, Fit, Format, InputSpec, Layout, Split};

/// Repairs deployed ONNX image classifiers (ArchRepair: block-level architecture search).
#[derive(Debug, Parser)]
///
/// Main use: `archrepair-onnx in.onnx out.onnx --spec repair.yaml` (docs/user-guide.md). Exit
/// codes: 0 repaired and gate passed, 1 ran but the gate failed (out.onnx still written, marked
/// in its metadata), 2 usage, spec, model or data error, 130 interrupted (Ctrl-C, SIGTERM).
#[command(name = "archrepair-onnx", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub repair: RepairArgs,
}

/// The main command's arguments.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The model to repair (only read).
    pub input: Option<PathBuf>,
    /// Where the repaired model goes (written once, atomically, at the end).
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub settings: SearchArgs,
    /// Training images of the repair data (default: the spec's `train_data`, else the train
    /// split of the data).
    #[arg(long)]
    pub train_data: Option<PathBuf>,
    /// Use only the first N examples of the evaluation split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Folder of the stages' artifacts and stages.json (what is finished); default:
    /// <output stem>-dump beside the output.
    #[arg(long)]
    pub dump_dir: Option<PathBuf>,
    /// Stop once this stage's artifacts are in the dump folder: localize, search, export,
    /// validate or measure (writes the report so far, no out.onnx).
    #[arg(long, value_name = "STAGE")]
    pub stop_after: Option<Stage>,
    /// Folder of report.json / report.md / report.html (default: the spec's `report.dir`, else
    /// <output stem>-report beside the output).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Continue the run whose dump folder is DIR after its last finished stage (mid-search:
    /// from its last search epoch). Same model, data and spec only; gate and report may differ.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Threads for libtorch and onnxruntime (default: the spec's `threads`, 0 = theirs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Repair method (spec `method`): archrepair, or a baseline to compare with:
    /// finetune-network, finetune-layer, finetune-block, arachne, apricot (docs/baselines.md).
    #[arg(long)]
    pub method: Option<archrepair_onnx::baselines::Method>,
    /// Print report.json instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Opset, inputs/outputs with shapes, op histogram, parameter count and unsupported ops.
    Inspect {
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The repairable blocks (residual, dense, inverted residual, stages) and the Conv/Gemm layers.
    Blocks {
        model: PathBuf,
        /// Print JSON (schemas/blocks.schema.json) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Top-1 accuracy computed by onnxruntime and by the lowered libtorch graph, side by side.
    /// Exits with 1 when their outputs differ by more than --tolerance.
    Eval {
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Use at most this many examples.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Threads for both runtimes (0: their defaults).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Largest accepted |output difference| between the two runtimes.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        /// Also report accuracy (onnxruntime) per corruption and severity: `all` or a
        /// comma-separated list of names (docs/corruptions.md).
        #[arg(long, value_parser = parse_corruptions)]
        corruptions: Option<CorruptionList>,
        #[command(flatten)]
        suite: SuiteArgs,
        #[arg(long)]
        json: bool,
    },
    /// Writes corrupted copies of a dataset in CIFAR-10-C's layout: <out>/<corruption>.npy
    /// (uint8, severities × images stacked in order, H, W, C), <out>/labels.npy (int64) and
    /// <out>/manifest.json. See docs/corruptions.md.
    Corrupt {
        #[command(flatten)]
        data: SourceArgs,
        /// Output folder; refused when it exists and is not empty, unless --force.
        #[arg(long)]
        out: PathBuf,
        /// `all` or a comma-separated list of corruption names (docs/corruptions.md).
        #[arg(long, default_value = "all", value_parser = parse_corruptions)]
        corruptions: CorruptionList,
        #[command(flatten)]
        suite: SuiteArgs,
        /// Corrupt only the first N images.
        #[arg(long)]
        limit: Option<usize>,
        /// Write into an existing, non-empty output folder (files of the same name are replaced).
        #[arg(long)]
        force: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ranks the model's blocks by suspiciousness (adversarial-aware spectrum analysis): prints
    /// the ranking with its evidence and writes ranking.json and ranking.svg (docs/localize.md).
    Localize {
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        settings: LocalizeArgs,
        /// Use only the first N examples of the split.
        #[arg(long)]
        limit: Option<usize>,
        /// Folder for ranking.json and ranking.svg (default: <model stem>-localize).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace ranking.json and ranking.svg when they exist.
        #[arg(long)]
        force: bool,
        /// Threads for libtorch (0: its default).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print the ranking as JSON (the content of ranking.json).
        #[arg(long)]
        json: bool,
    },
    /// The embedded default: repairs the built-in Fashion-MNIST subject with the built-in demo
    /// spec (fixtures/specs/demo.yaml) on the installed dataset, a few minutes on 2 cores, and
    /// prints where the report is. Writes into --out: the subject, repaired.onnx, the report and
    /// the dump folder.
    Demo {
        /// The folder to write into.
        #[arg(long, default_value = archrepair_onnx::commands::demo::DEFAULT_DIR)]
        out: PathBuf,
        /// Fashion-MNIST's IDX folder (default: /usr/share/datasets/fashion-mnist).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Use only the first N test images.
        #[arg(long)]
        limit: Option<usize>,
        /// Stop once this stage's artifacts are written (localize, search, export, validate, measure).
        #[arg(long, value_name = "STAGE")]
        stop_after: Option<Stage>,
        /// Continue the earlier demo run in --out after its last finished stage.
        #[arg(long)]
        resume: bool,
        /// Start over, replacing an earlier run's files in --out.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        threads: Option<usize>,
        /// Print report.json instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// The comparison benchmark: runs the main command on every cell of bench.yaml's grid
    /// (subjects × scenarios × methods × seeds), each as a child process in its own folder, and
    /// writes results.csv, results.md and plots/*.svg (docs/bench.md). Finished cells are
    /// skipped on a rerun. Exit 0 when every cell produced a report, 2 otherwise.
    Bench {
        /// The bench file (`version: 1`; docs/bench.md).
        #[arg(long)]
        spec: PathBuf,
        /// Output folder (default: <bench file stem>-bench).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use the bench file's `profiles.quick` overlay instead of `profiles.full`.
        #[arg(long)]
        quick: bool,
        /// Rerun every cell, including those finished by an earlier run.
        #[arg(long)]
        force: bool,
        /// Threads for libtorch and onnxruntime in every cell.
        #[arg(long)]
        threads: Option<usize>,
        /// Print the results as JSON instead of the summary tables.
        #[arg(long)]
        json: bool,
    },
    /// Replaces a block by a DARTS-style cell whose architecture and weights are searched
    /// jointly on D_fail ∪ training images, trains the derived cell and reports before/after;
    /// writes genotype.json, cell.ot and search.json (docs/search.md).
    Search {
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        settings: SearchArgs,
        /// Training images of the repair data (default: the spec's `train_data`, else the train
        /// split of --data).
        #[arg(long)]
        train_data: Option<PathBuf>,
        /// Use only the first N examples of the evaluation split.
        #[arg(long)]
        limit: Option<usize>,
        /// Output folder (default: <model stem>-search).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace existing outputs.
        #[arg(long)]
        force: bool,
        /// Continue the search from <out>/checkpoint (same spec, model, block and seed only).
        #[arg(long)]
        resume: bool,
        /// Threads for libtorch (0: its default).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print search.json instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

/// Flags overriding the spec's `seed`, `search` and `train` keys.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Block to replace: an id from `blocks`, `auto` (the top of the localization ranking),
    /// `random` (seeded) or `last` (search.block).
    #[arg(long)]
    pub block: Option<BlockChoice>,
    /// What the cell replaces: `block`, or one Conv `layer` (search.granularity; `--block`
    /// ids then number the layers).
    #[arg(long)]
    pub granularity: Option<Granularity>,
    /// Search epochs (search.epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Epochs of the derived cell's training (train.epochs).
    #[arg(long)]
    pub train_epochs: Option<usize>,
    /// Training images the search uses (search.train_images); the derived cell trains on
    /// train.train_images (default: all).
    #[arg(long)]
    pub train_images: Option<usize>,
    /// α gradient: first or second order (search.order).
    #[arg(long)]
    pub order: Option<Order>,
    /// Replace the whole block instead of its residual branch (search.keep_shortcut: false).
    #[arg(long)]
    pub replace_shortcut: bool,
    /// Failures kept as D_fail (collect.failures).
    #[arg(long)]
    pub failures: Option<usize>,
    /// Seed of every random choice (seed).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SearchArgs {
    pub fn apply(self, mut spec: Spec) -> Spec {
        spec.search.block = self.block.unwrap_or(spec.search.block);
        spec.search.granularity = self.granularity.unwrap_or(spec.search.granularity);
        spec.search.epochs = self.epochs.unwrap_or(spec.search.epochs);
        spec.train.epochs = self.train_epochs.unwrap_or(spec.train.epochs);
        spec.search.train_images = self.train_images.or(spec.search.train_images);
        spec.search.order = self.order.unwrap_or(spec.search.order);
        spec.search.keep_shortcut &= !self.replace_shortcut;
        spec.collect.failures = self.failures.unwrap_or(spec.collect.failures);
        spec.seed = self.seed.unwrap_or(spec.seed);
        spec
    }
}

/// Flags overriding the spec's `seed`, `collect`, `attack` and `localize` keys.
#[derive(Debug, Args)]
pub struct LocalizeArgs {
    /// Localizer: spectrum, agreement, gradient, activation, drift, probe or random (localize.method).
    #[arg(long)]
    pub method: Option<Method>,
    /// Suspiciousness formula: ochiai, tarantula, dstar2 or dstar3 (localize.formula).
    #[arg(long)]
    pub formula: Option<Formula>,
    /// Units ranked: block or layer (localize.granularity).
    #[arg(long)]
    pub granularity: Option<Granularity>,
    /// Neuron reference level: zero or passing_mean (localize.reference).
    #[arg(long)]
    pub reference: Option<Reference>,
    /// Activation threshold above the reference level (localize.threshold).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f32>,
    /// Also rank with every other method and formula but probe (localize.compare).
    #[arg(long)]
    pub compare: bool,
    /// Misclassified examples kept as D_fail (collect.failures).
    #[arg(long)]
    pub failures: Option<usize>,
    /// Passing examples sampled (collect.passing; default: as many as D_fail).
    #[arg(long)]
    pub passing: Option<usize>,
    /// Adversarial inputs: fgsm, pgd or none (attack.method).
    #[arg(long)]
    pub attack: Option<AttackMethod>,
    /// Attack radius in pixel space [0, 1] (attack.eps).
    #[arg(long)]
    pub eps: Option<f32>,
    /// Seed of every random choice (seed).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl LocalizeArgs {
    /// `spec` with these flags applied.
    pub fn apply(self, mut spec: Spec) -> Spec {
        let l = &mut spec.localize;
        l.method = self.method.unwrap_or(l.method);
        l.formula = self.formula.unwrap_or(l.formula);
        l.granularity = self.granularity.unwrap_or(l.granularity);
        l.reference = self.reference.unwrap_or(l.reference);
        l.threshold = self.threshold.unwrap_or(l.threshold);
        l.compare |= self.compare;
        spec.collect.failures = self.failures.unwrap_or(spec.collect.failures);
        spec.collect.passing = self.passing.or(spec.collect.passing);
        spec.attack.method = self.attack.unwrap_or(spec.attack.method);
        spec.attack.eps = self.eps.or(spec.attack.eps);
        spec.seed = self.seed.unwrap_or(spec.seed);
        spec
    }
}

/// Where the labelled images are (any format `data::open` reads; docs/data.md).
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Labelled images: a folder of IDX files, of CIFAR-10 batches (.bin), of images.npy +
    /// labels.npy, of class sub-folders of PNG/JPEG, or an .npz / .npy / .bin file. Commands
    /// that take --spec read the spec's `data` section when this is absent.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data format (idx, cifar10, npy, npz, folder); detected from --data when absent.
    #[arg(long)]
    pub format: Option<Format>,
    /// Which split: test (also t10k) or train.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Severity 1-5 of a CIFAR-10-C corruption file (all 5 stacked severities when absent).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub severity: Option<u8>,
    /// Layout of NPY/NPZ image arrays whose shape is ambiguous, e.g. (N, 3, 32, 3): nchw or nhwc.
    #[arg(long)]
    pub data_layout: Option<Layout>,
}

impl SourceArgs {
    /// The data source; `fallback` (the spec's `data` section) when --data is absent.
    pub fn source(self, fallback: Option<DataSource>) -> anyhow::Result<DataSource> {
        let Some(path) = self.data else {
            return fallback.ok_or_else(|| anyhow::anyhow!("no data: pass --data <PATH> (or set `data.path` in the spec given with --spec)"));
        };
        Ok(DataSource { path, format: self.format, split: self.split, corruption_severity: self.severity, layout: self.data_layout })
    }
}

/// The labelled images and how they become model input (the spec's `input` section as flags;
/// docs/data.md describes both).
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Model input layout (nchw or nhwc); read from the model's input shape when absent.
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Multiplier applied to pixel values in [0, 1] (255 for models trained on 0..255).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Mean subtracted after scaling: one value or one per channel, comma-separated.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub mean: Option<Vec<f32>>,
    /// Standard deviation divided by after the mean: one value or one per channel.
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// How images of another size fit the model: exact, pad (centre on black) or resize (bilinear).
    #[arg(long)]
    pub fit: Option<Fit>,
    /// Replicate grey images to 3 channels for an RGB model.
    #[arg(long)]
    pub grey_to_rgb: bool,
    /// YAML spec (`version: 1`) whose `input` section describes the model input; the flags
    /// above override it.
    #[arg(long)]
    pub spec: Option<PathBuf>,
}

impl DataArgs {
    /// The data source and the spec (the file's, or the defaults), its input section
    /// overridden by the flags.
    pub fn into_parts(self) -> anyhow::Result<(DataSource, Spec)> {
        let mut spec = match &self.spec {
            Some(path) => Spec::load(path)?,
            None => Spec { version: archrepair_onnx::spec::SPEC_VERSION, ..Spec::default() },
        };
        let source = self.source.source(spec.data.as_ref().map(|d| d.source()))?;
        let flags = InputSpec {
            layout: self.layout,
            scale: self.scale,
            mean: self.mean,
            std: self.std,
            fit: self.fit,
            grey_to_rgb: self.grey_to_rgb.then_some(true),
            ..InputSpec::default()
        };
        spec.input = spec.input.overridden_by(flags);
        Ok((source, spec))
    }
}

/// Severities, parameter table and seed of the corruption suite (eval --corruptions, corrupt).
#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Severities: a range `1..5` (inclusive) or a list `1,3,5`.
    #[arg(long, default_value = "1..5", value_parser = parse_severities)]
    pub severities: SeverityList,
    /// Parameter table: cifar10-c, grey28, corrupt-tta, or auto (grey28 for 1-channel images
    /// of at most 28x28, cifar10-c otherwise).
    #[arg(long, default_value = "auto")]
    pub params: ParamChoice,
    /// Seed of the random corruptions (the same seed gives the same images).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SuiteArgs {
    pub fn options(self, corruptions: CorruptionList) -> CorruptionOptions {
        CorruptionOptions { corruptions: corruptions.0, severities: self.severities.0, params: self.params.0, seed: self.seed }
    }
}

/// `--params`: a table, or `auto` (`None`: chosen from the image shape).
#[derive(Debug, Clone, Copy)]
pub struct ParamChoice(pub Option<ParamSet>);

impl std::str::FromStr for ParamChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(ParamChoice(None));
        }
        s.parse::<ParamSet>().map(|p| ParamChoice(Some(p))).map_err(|e| format!("{e}, or auto"))
    }
}
