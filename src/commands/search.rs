//! `archrepair-onnx search`: replaces the chosen block by a searched cell, trains it, and writes
//! genotype.json, cell.ot (the derived cell's weights, libtorch archive), search.json (the
//! report: history, metrics, timings) and checkpoint/ into the output folder.

use std::fmt;
use std::path::{Path, PathBuf};

use tch::Device;

use crate::commands::eval::input_plan;
use crate::data::{self, DataError, DataSource, Format, Split};
use crate::model::LoadedModel;
use crate::search::{self, Request, SearchReport};
use crate::spec::Spec;
use crate::Error;

#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// The split D_fail comes from (and before/after is measured on).
    pub data: DataSource,
    /// The training images; absent: the spec's `train_data`, else the train split of `data`.
    pub train: Option<DataSource>,
    /// The resolved spec.
    pub spec: Spec,
    /// Use only the first N examples of the evaluation split.
    pub limit: Option<usize>,
    pub out: PathBuf,
    pub force: bool,
    /// Continue from out/checkpoint when it belongs to this run.
    pub resume: bool,
    pub threads: usize,
    pub progress: bool,
}

/// The files `search` writes, by name.
pub const FILES: [&str; 3] = ["genotype.json", "cell.ot", "search.json"];

/// The default output folder for `model`: `<model file stem>-search` in the working folder.
pub fn default_out(model: &Path) -> PathBuf {
    super::default_out(model, "search")
}

/// What a search reads, opened and checked against the model before any long work.
pub(crate) struct Prepared {
    pub model: LoadedModel,
    pub eval: data::Dataset,
    pub train: data::Dataset,
    pub extra: Vec<(String, data::Dataset)>,
    pub plan: crate::data::InputPlan,
}

/// Opens the model, the evaluation split, the training images and the `evaluate` sets.
pub(crate) fn prepare(model_path: &Path, options: &SearchOptions) -> Result<Prepared, Error> {
    let model = LoadedModel::open(model_path)?;
    let mut eval = data::open(&options.data)?;
    if let Some(limit) = options.limit {
        eval.truncate(limit);
    }
    let train_source = match options.train.clone().or_else(|| options.spec.train_data.as_ref().map(|d| d.source())) {
        Some(source) => source,
        None => train_split_of(&options.data)?,
    };
    if train_source.path == options.data.path && train_source.split == options.data.split && train_source.corruption_severity == options.data.corruption_severity {
        return Err(Error::Mismatch(format!(
            "the training images and the evaluation split are both `{}` ({}): the repair would train on what it is measured on; set `train_data` in the spec or pass --train-data",
            train_source.path.display(),
            train_source.split
        )));
    }
    let train = data::open(&train_source)?;
    let plan = input_plan(&model, &options.spec.input, &eval)?;
    input_plan(&model, &options.spec.input, &train)?;
    let extra = options
        .spec
        .evaluate
        .iter()
        .map(|e| {
            let mut set = data::open(&e.data.source())?;
            if let Some([first, end]) = e.rows {
                if first >= end || end > set.len() {
                    return Err(Error::Mismatch(format!(
                        "evaluate `{}`: rows [{first}, {end}) do not fit its {} examples",
                        e.name,
                        set.len()
                    )));
                }
                set = set.select(&(first..end).collect::<Vec<_>>())?;
            }
            input_plan(&model, &options.spec.input, &set)?;
            Ok((e.name.clone(), set))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    if options.threads > 0 {
        tch::set_num_threads(options.threads as i32);
    }
    Ok(Prepared { model, eval, train, extra, plan })
}

/// What the search reads, from prepared inputs; `chosen`: the block, when already chosen.
pub(crate) fn request<'a>(p: &'a Prepared, lowered: &'a crate::lower::LoweredModel, model_path: &'a Path, options: &'a SearchOptions, chosen: Option<&'a search::Chosen>) -> Request<'a> {
    Request {
        graph: &p.model.graph,
        model: lowered,
        plan: &p.plan,
        eval: &p.eval,
        train: &p.train,
        extra: &p.extra,
        spec: &options.spec,
        progress: options.progress,
        model_path,
        checkpoint: Some(options.out.join("checkpoint")),
        resume: options.resume,
        chosen,
    }
}

pub fn search(model_path: &Path, options: &SearchOptions) -> Result<SearchReport, Error> {
    let targets = super::output_files(&options.out, &FILES, options.force || options.resume, ", --resume to continue its search")?;
    let prepared = prepare(model_path, options)?;
    let lowered = prepared.model.lower(Device::cuda_if_available())?;
    let outcome = search::search(&request(&prepared, &lowered, model_path, options, None))?;
    write_outputs(&outcome, &options.out, &targets)?;
    Ok(outcome.report)
}

/// genotype.json, cell.ot and search.json into `out`.
pub(crate) fn write_outputs(outcome: &search::Outcome, out: &Path, targets: &[PathBuf]) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(|source| DataError::Write { path: out.to_path_buf(), source })?;
    write_json(&outcome.genotype, &targets[0])?;
    let tmp = targets[1].with_extension("ot.tmp");
    outcome.cell.save(&tmp).map_err(|e| DataError::format(&targets[1], e.to_string()))?;
    std::fs::rename(&tmp, &targets[1]).map_err(|source| DataError::Write { path: targets[1].clone(), source })?;
    write_json(&outcome.report, &targets[2])
}

/// The train split of the evaluation data's path, for formats that store splits (IDX, CIFAR-10
/// and image folders, NPZ); an error naming the fix for the others.
fn train_split_of(data: &DataSource) -> Result<DataSource, Error> {
    let format = match data.format {
        Some(f) => f,
        None => data::detect(&data.path, Split::Train)?,
    };
    let split_aware = match format {
        Format::Idx | Format::Folder | Format::Npz => true,
        Format::Cifar10 => data.path.is_dir(),
        Format::Npy => false,
    };
    if !split_aware {
        return Err(Error::Mismatch(format!(
            "`{}` holds one split only ({format} data), so it has no training images; set `train_data` in the spec or pass --train-data",
            data.path.display()
        )));
    }
    Ok(DataSource { split: Split::Train, corruption_severity: None, ..data.clone() })
}

pub(crate) fn write_json(value: &impl serde::Serialize, path: &Path) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| DataError::format(path, e.to_string()))?;
    Ok(data::write_atomically(path, (text + "\n").as_bytes())?)
}

impl fmt::Display for SearchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        writeln!(f, "{}: repaired {} (chosen by {})", self.model, self.target.describe(), self.chosen_by)?;
        writeln!(f, "genotype: {}", self.genotype_text)?;
        writeln!(
            f,
            "repair data: {} failures + {} training images (search halves {} / {}, training rows {}, held out {})",
            self.repair_data.failures,
            self.repair_data.training_images,
            self.repair_data.half_a,
            self.repair_data.half_b,
            self.repair_data.training_rows,
            self.repair_data.holdout
        )?;
        for e in &self.search {
            writeln!(
                f,
                "  search epoch {}: loss {:.3} acc {}{} ({:.0} s) {}",
                e.epoch + 1,
                e.train_loss,
                pct(e.train_accuracy),
                e.alpha_accuracy.map(|a| format!(", α-half acc {}", pct(a))).unwrap_or_default(),
                e.seconds,
                e.genotype
            )?;
        }
        for e in &self.train {
            writeln!(f, "  train {} epoch {}: loss {:.3} acc {}, held-out {} ({:.0} s)", e.phase, e.epoch + 1, e.train_loss, pct(e.train_accuracy), pct(e.holdout_accuracy), e.seconds)?;
        }
        writeln!(f, "kept: {} epoch {}, held-out accuracy {} (subject {})", self.kept.phase, self.kept.epoch + 1, pct(self.kept.holdout_accuracy), pct(self.kept.holdout_accuracy_before))?;
        let m = &self.metrics;
        writeln!(f, "evaluation ({} images, D_fail = {} excluded):", m.evaluated, m.failures)?;
        writeln!(f, "  accuracy           {} → {}", pct(m.accuracy_before), pct(m.accuracy_after))?;
        writeln!(f, "  repair rate        {} of D_fail", pct(m.repair_rate))?;
        writeln!(f, "  break rate         {} of {} previously correct", pct(m.break_rate), m.previously_correct)?;
        for e in &self.extra {
            writeln!(f, "  {:<18} {} → {} ({} images)", e.name, pct(e.before), pct(e.after), e.evaluated)?;
        }
        write!(
            f,
            "time: {:.0} s (localize {:.0}, collect {:.0}, search {:.0}, train {:.0}, evaluate {:.0})",
            self.seconds.total, self.seconds.localize, self.seconds.collect, self.seconds.search, self.seconds.train, self.seconds.evaluate
        )
    }
}
