//! The main command, `archrepair-onnx in.onnx out.onnx --spec repair.yaml`: choose the block
//! (localize), search and train its replacement, export it as ONNX, validate it in onnxruntime
//! and tract against the tch model, measure before/after with onnxruntime, apply the gate, and
//! write out.onnx and the report.
//!
//! Each stage leaves its artifacts in the dump folder (stages.rs), so a run can stop after one
//! (`--stop-after`) and a later one continue from there (`--resume DIR`). out.onnx is written
//! once, at the end, atomically (temp file + rename): an interrupted or failed run leaves no
//! out.onnx and no temp file. The input file is only read.

mod artifacts;
mod measure;
pub mod stages;

use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message;

use super::search::{prepare, request, write_json, SearchOptions};
use crate::data::DataError;
use crate::detect::detect;
use crate::export::{self, Provenance, GATE_METADATA_KEY, METADATA_KEY};
use crate::interrupt;
use crate::onnx::{load_model, save_model};
use crate::report::{self, BlockSummary, OrtMeasures, Report, StageTime, Validation, Versions};
use crate::baselines::{self, Method, WeightOutcome};
use crate::search::{self, Chosen, Outcome};
use crate::validate::ort_runner::ONNXRUNTIME_VERSION;
use crate::validate::tract_runner::TRACT_VERSION;
use crate::Error;

use stages::{read_json, DumpDir, Stage};

pub struct RepairOptions {
    /// Data, spec (resolved), limit, force, threads, progress; `out` = the dump folder,
    /// `resume` = continue the run recorded there.
    pub search: SearchOptions,
    pub output: PathBuf,
    /// Folder of report.json/md/html.
    pub report_dir: PathBuf,
    /// Stop once this stage's artifacts are in the dump folder (no out.onnx, no gate).
    pub stop_after: Option<Stage>,
}

/// Where the report goes by default: `<out stem>-report` beside out.onnx.
pub fn default_report_dir(output: &Path) -> PathBuf {
    let stem = output.file_stem().map_or("out".into(), |s| s.to_string_lossy().into_owned());
    output.with_file_name(format!("{stem}-report"))
}

/// The dump folder's files of the stages after search.
const REPAIRED: &str = "repaired.onnx";
const VALIDATION: &str = "validation.json";
const MEASURED: &str = "measured.json";

/// Runs the pipeline (or its rest, when resuming) and writes the report; the report says
/// whether the gate passed (`exit_code`) or where the run stopped (`outcome`).
pub fn repair(input: &Path, options: &RepairOptions) -> Result<(Report, Vec<PathBuf>), Error> {
    let spec = &options.search.spec;
    check_paths(input, options)?;
    let spec_json = serde_json::to_value(spec).unwrap_or_default();
    let fingerprint = run_fingerprint(input, &spec_json, &options.search)?;
    // Every check that can refuse the run comes before the dump folder is created, so a
    // refused run writes nothing.
    let resumed = if options.search.resume {
        Some(DumpDir::resume(&options.search.out, &fingerprint)?)
    } else {
        DumpDir::refuse_earlier_run(&options.search.out, options.search.force)?;
        None
    };
    if let (Some(stop), Some(done)) = (options.stop_after, resumed.as_ref().and_then(DumpDir::last_finished)) {
        if stop < done {
            return Err(Error::Mismatch(format!("--stop-after {stop}: `{}` has already finished {done}; stop after a later stage, or drop --stop-after", options.search.out.display())));
        }
    }

    let started = Instant::now();
    let prepared = prepare(input, &options.search)?;
    let device = spec.device.device().map_err(Error::Mismatch)?;
    let lowered = prepared.model.lower(device)?;
    search::check_early(&prepared.model.graph, &lowered, &prepared.plan, spec, input)?;
    let mut dump = match resumed {
        Some(dump) => dump,
        None => DumpDir::start(&options.search.out, &fingerprint, input, options.search.force)?,
    };
    let load_time = StageTime::since("load", started);
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        versions: Versions { archrepair_onnx: env!("CARGO_PKG_VERSION").into(), onnxruntime: ONNXRUNTIME_VERSION.into(), tract: TRACT_VERSION.into(), libtorch: "2.13.0".into() },
        input_model: input.display().to_string(),
        output_model: None,
        seed: spec.seed,
        spec: spec_json.clone(),
        stages: Vec::new(),
        blocks: block_summaries(&prepared.model.graph),
        ranking: Vec::new(),
        repair: None,
        baseline: None,
        validation: None,
        measured: None,
        gate: None,
        outcome: String::new(),
        exit_code: 0,
    };
    // The report of a run that stops after `stage` (copied only when it does stop).
    let stop_here = |stage: Stage, report: &Report, dump: &DumpDir| -> Option<Result<(Report, Vec<PathBuf>), Error>> {
        (options.stop_after == Some(stage)).then(|| {
            let mut report = report.clone();
            report.stages = std::iter::once(load_time.clone()).chain(dump.times()).collect();
            report.outcome = format!("stopped_after_{stage}");
            let written = report::write(&report, &options.report_dir, &spec.report.formats)?;
            Ok((report, written))
        })
    };

    // Localize: which block (or layer); the methods that do not localize skip it.
    interrupt::check()?;
    let method = spec.method;
    let chosen: Option<Chosen> = if dump.finished(Stage::Localize) {
        read_json(&dump.path(artifacts::LOCALIZE))?
    } else {
        let started = Instant::now();
        let localize_request = request(&prepared, &lowered, input, &options.search, None);
        let chosen = match search::choice::unit_kind(spec) {
            Some((granularity, for_cell)) => Some(search::choose(&localize_request, granularity, for_cell)?),
            None => None,
        };
        write_json(&chosen, &dump.path(artifacts::LOCALIZE))?;
        let times = if chosen.is_some() { vec![StageTime::since("localize", started)] } else { Vec::new() };
        dump.record(Stage::Localize, times)?;
        chosen
    };
    // A layer ranking numbers layers, not the blocks the report draws.
    report.ranking = chosen.as_ref().filter(|c| c.layer.is_none()).map(|c| c.ranking.clone()).unwrap_or_default();
    if let Some(done) = stop_here(Stage::Localize, &report, &dump) {
        return done;
    }

    // Search (ArchRepair: D_fail, the architecture search, the training of the derived cell),
    // or a weight-only baseline's repair.
    interrupt::check()?;
    let repaired_by = if dump.finished(Stage::Search) {
        artifacts::load_repair(&dump, &lowered, chosen.clone(), method)?
    } else {
        let search_request = request(&prepared, &lowered, input, &options.search, chosen.as_ref());
        // `search_request` carries the localized block, so neither localizes again.
        let repaired_by = match method {
            Method::Archrepair => Repaired::Cell(search::search(&search_request)?),
            _ => Repaired::Weights(baselines::run(&search_request, method)?),
        };
        artifacts::save_repair(&dump, &repaired_by, &lowered, spec.train.finetune_epochs > 0)?;
        dump.record(Stage::Search, repaired_by.times())?;
        repaired_by
    };
    match &repaired_by {
        Repaired::Cell(outcome) => report.repair = Some(outcome.report.clone()),
        Repaired::Weights(outcome) => report.baseline = Some(outcome.report.clone()),
    }
    if let Some(done) = stop_here(Stage::Search, &report, &dump) {
        return done;
    }

    // Export: the cell as ONNX nodes in place of the block, changed weights written back.
    interrupt::check()?;
    let splice = match &repaired_by {
        Repaired::Cell(outcome) => Some(lowered.splice(&outcome.report.target.entry, &outcome.report.target.tensor).map_err(|source| Error::Lower { path: input.to_path_buf(), source })?),
        Repaired::Weights(_) => None,
    };
    let mut repaired = if dump.finished(Stage::Export) {
        load_model(&dump.path(REPAIRED))?
    } else {
        let started = Instant::now();
        let mut provenance = Provenance {
            tool: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            method: method.to_string(),
            block: chosen.as_ref().filter(|c| c.layer.is_none()).map(|c| c.block),
            tensor: None,
            genotype: None,
            weights_changed: Vec::new(),
            spec_hash: export::fnv1a(spec_json.to_string()),
        };
        let exported = match (&repaired_by, &splice) {
            (Repaired::Cell(outcome), Some(splice)) => {
                let target = &outcome.report.target;
                provenance.tensor = Some(target.tensor.clone());
                provenance.genotype = Some(outcome.report.genotype_text.clone());
                export::export(&prepared.model.proto, &lowered.skipped_steps(splice), target, &outcome.layers, &provenance).and_then(|mut model| export::write_back_weights(&mut model, lowered.weights()).map(|_| model))
            }
            _ => {
                let mut model = prepared.model.proto.clone();
                export::write_back_weights(&mut model, lowered.weights()).map(|changed| {
                    provenance.weights_changed = changed;
                    export::set_metadata(&mut model, METADATA_KEY, &serde_json::to_string(&provenance).unwrap_or_default());
                    model
                })
            }
        }
        .map_err(|e| Error::Mismatch(format!("exporting the repair of `{}`: {e}", input.display())))?;
        save_model(&exported, &dump.path(REPAIRED))?;
        dump.record(Stage::Export, vec![StageTime::since("export", started)])?;
        exported
    };
    if let Some(done) = stop_here(Stage::Export, &report, &dump) {
        return done;
    }
    let bytes = repaired.encode_to_vec();

    // Validate: onnxruntime and tract against the tch model.
    interrupt::check()?;
    let validation: Validation = if dump.finished(Stage::Validate) {
        read_json(&dump.path(VALIDATION))?
    } else {
        let started = Instant::now();
        let reference = |x: &tch::Tensor| match (&repaired_by, &splice) {
            (Repaired::Cell(outcome), Some(splice)) => lowered.forward_spliced(x, false, splice, &mut |entry| Ok(outcome.layers.forward_t(entry, None, false))),
            _ => lowered.forward_t(x, false),
        };
        let validation = measure::validate(&bytes, &lowered, &reference, &prepared.eval, &prepared.plan, options)?;
        if !validation.passed {
            return Err(Error::Mismatch(format!(
                "validation failed: the exported model differs from the tch model by {:.3e} (onnxruntime) / {:.3e} (tract), more than validate.tolerance {:e}; out.onnx was not written",
                validation.onnxruntime_max_abs_diff, validation.tract_max_abs_diff, validation.tolerance
            )));
        }
        write_json(&validation, &dump.path(VALIDATION))?;
        dump.record(Stage::Validate, vec![StageTime::since("validate", started)])?;
        validation
    };
    report.validation = Some(validation);
    if let Some(done) = stop_here(Stage::Validate, &report, &dump) {
        return done;
    }

    // Measure: before/after by onnxruntime.
    interrupt::check()?;
    let measured: OrtMeasures = if dump.finished(Stage::Measure) {
        read_json(&dump.path(MEASURED))?
    } else {
        let started = Instant::now();
        let measured = measure::measure(input, &bytes, &prepared.eval, &prepared.extra, &prepared.plan, repaired_by.failures(), options)?;
        write_json(&measured, &dump.path(MEASURED))?;
        dump.record(Stage::Measure, vec![StageTime::since("measure", started)])?;
        measured
    };
    let gate = spec.gate.check(&measured);
    report.measured = Some(measured);
    if let Some(done) = stop_here(Stage::Measure, &report, &dump) {
        return done;
    }

    // Gate, out.onnx, report.
    interrupt::check()?;
    export::set_metadata(&mut repaired, GATE_METADATA_KEY, if gate.passed { "passed" } else { "failed" });
    save_model(&repaired, &options.output)?;
    report.stages = std::iter::once(load_time).chain(dump.times()).collect();
    report.output_model = Some(options.output.display().to_string());
    report.outcome = if gate.passed { "passed" } else { "gate_failed" }.into();
    report.exit_code = if gate.passed { 0 } else { 1 };
    report.gate = Some(gate);
    let written = report::write(&report, &options.report_dir, &spec.report.formats)?;
    Ok((report, written))
}

/// The output must not be the input, nor replace a file without --force.
fn check_paths(input: &Path, options: &RepairOptions) -> Result<(), Error> {
    let same = match (input.canonicalize(), options.output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::Mismatch(format!("the output `{}` is the input model; write the repaired model to another file", options.output.display())));
    }
    if options.output.exists() && !options.search.force && options.stop_after.is_none() {
        return Err(Error::Mismatch(format!("`{}` exists; pass --force to replace it, or choose another output path", options.output.display())));
    }
    Ok(())
}

/// What decides the stages' results: the input model's bytes, the data, the spec without the
/// sections that only the last step reads (`gate`, `report`) and `threads`.
fn run_fingerprint(input: &Path, spec: &serde_json::Value, options: &SearchOptions) -> Result<String, Error> {
    let model = std::fs::read(input).map_err(|source| DataError::Read { path: input.to_path_buf(), source })?;
    let mut spec = spec.clone();
    if let Some(sections) = spec.as_object_mut() {
        for key in ["gate", "report", "threads"] {
            sections.remove(key);
        }
    }
    Ok(export::fnv1a(format!("{}|{spec}|{:?}|{:?}|{:?}", export::fnv1a(&model), options.data, options.train, options.limit)))
}

fn block_summaries(graph: &crate::graph::Graph) -> Vec<BlockSummary> {
    detect(graph)
        .blocks
        .iter()
        .map(|b| BlockSummary { id: b.id, kind: b.kind.as_str().to_string(), nodes: b.nodes.len(), input_shape: b.input_shape.clone(), output_shape: b.output_shape.clone(), params: b.params })
        .collect()
}

/// What the repair stage produced: ArchRepair's trained cell, or a baseline's changed weights
/// (already in the lowered model).
pub(crate) enum Repaired {
    Cell(Outcome),
    Weights(WeightOutcome),
}

impl Repaired {
    fn failures(&self) -> &[usize] {
        match self {
            Repaired::Cell(outcome) => &outcome.failures,
            Repaired::Weights(outcome) => &outcome.failures,
        }
    }

    /// Seconds of the repair stage's steps.
    fn times(&self) -> Vec<StageTime> {
        let steps: Vec<(&str, f64)> = match self {
            Repaired::Cell(outcome) => {
                let s = &outcome.report.seconds;
                vec![("collect", s.collect), ("search", s.search), ("train", s.train), ("evaluate", s.evaluate)]
            }
            Repaired::Weights(outcome) => vec![("collect", outcome.report.collect_seconds), ("repair", outcome.report.repair_seconds)],
        };
        steps.into_iter().map(|(stage, seconds)| StageTime { stage: stage.into(), seconds, resumed: false }).collect()
    }
}
