//! The main command, `archrepair-onnx in.onnx out.onnx --spec repair.yaml`: search a repair
//! (localize, search, train), export it as ONNX, validate it in onnxruntime and tract against
//! the tch model, measure before/after with onnxruntime, apply the gate, write the report.
//!
//! out.onnx is written once, at the end, atomically (temp file + rename): an interrupted or
//! failed run leaves no out.onnx and no temp file. The input file is only read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message;
use tch::Tensor;

use super::search::{prepare, run_search, write_outputs, SearchOptions, FILES as SEARCH_FILES};
use crate::data::{Dataset, InputPlan};
use crate::detect::detect;
use crate::export::{self, Provenance, GATE_METADATA_KEY};
use crate::lower::LoweredModel;
use crate::report::{self, BlockScore, BlockSummary, Latency, OrtMeasures, Report, StageTime, Validation, Versions};
use crate::search::metrics::{self, RepairMetrics, SetAccuracy};
use crate::search::Outcome;
use crate::validate::ort_runner::ONNXRUNTIME_VERSION;
use crate::validate::tract_runner::{TractModel, TRACT_VERSION};
use crate::validate::OrtModel;
use crate::Error;

pub struct RepairOptions {
    /// Data, spec (resolved), limit, force, threads, progress; `out` = the dump folder.
    pub search: SearchOptions,
    pub output: PathBuf,
    /// Folder of report.json/md/html.
    pub report_dir: PathBuf,
}

/// Where the report goes by default: `<out stem>-report` beside out.onnx.
pub fn default_report_dir(output: &Path) -> PathBuf {
    let stem = output.file_stem().map_or("out".into(), |s| s.to_string_lossy().into_owned());
    output.with_file_name(format!("{stem}-report"))
}

/// Runs the whole pipeline; the report says whether the gate passed (`exit_code`).
pub fn repair(input: &Path, options: &RepairOptions) -> Result<(Report, Vec<PathBuf>), Error> {
    let spec = &options.search.spec;
    check_paths(input, options)?;
    let dump_targets = super::output_files(&options.search.out, &SEARCH_FILES, true, "")?;
    let mut stages = Vec::new();
    let mut timed = |stage: &str, started: Instant| stages.push(StageTime { stage: stage.into(), seconds: started.elapsed().as_secs_f64() });

    let started = Instant::now();
    let prepared = prepare(input, &options.search)?;
    let device = spec.device.device().map_err(Error::Mismatch)?;
    let lowered = prepared.model.lower(device)?;
    timed("load", started);

    let started = Instant::now();
    let outcome = run_search(&prepared, &lowered, input, &options.search)?;
    write_outputs(&outcome, &options.search.out, &dump_targets)?;
    let seconds = &outcome.report.seconds;
    stages.extend([("localize", seconds.localize), ("collect", seconds.collect), ("search", seconds.search), ("train", seconds.train)].map(|(s, t)| StageTime { stage: s.into(), seconds: t }));
    let _ = started;

    let started = Instant::now();
    let spec_json = serde_json::to_value(spec).unwrap_or_default();
    let splice = lowered.splice(&outcome.report.target.entry, &outcome.report.target.tensor).map_err(|source| Error::Lower { path: input.to_path_buf(), source })?;
    let provenance = Provenance {
        tool: env!("CARGO_PKG_NAME").into(),
        version: env!("CARGO_PKG_VERSION").into(),
        block: outcome.report.target.block,
        tensor: outcome.report.target.tensor.clone(),
        genotype: outcome.report.genotype_text.clone(),
        spec_hash: export::fnv1a(&spec_json.to_string()),
    };
    let mut repaired = export::export(&prepared.model.proto, &lowered.skipped_steps(&splice), &outcome.report.target, &outcome.layers, &provenance)
        .map_err(|e| Error::Mismatch(format!("exporting the repair of `{}`: {e}", input.display())))?;
    export::write_back_weights(&mut repaired, lowered.weights()).map_err(|e| Error::Mismatch(format!("exporting the repair of `{}`: {e}", input.display())))?;
    let bytes = repaired.encode_to_vec();
    let mut stages_after = vec![StageTime { stage: "export".into(), seconds: started.elapsed().as_secs_f64() }];

    let started = Instant::now();
    let validation = validate(&bytes, &lowered, &splice, &outcome, &prepared.eval, &prepared.plan, options)?;
    stages_after.push(StageTime { stage: "validate".into(), seconds: started.elapsed().as_secs_f64() });
    if !validation.passed {
        return Err(Error::Mismatch(format!(
            "validation failed: the exported model differs from the tch model by {:.3e} (onnxruntime) / {:.3e} (tract), more than validate.tolerance {:e}; out.onnx was not written",
            validation.onnxruntime_max_abs_diff, validation.tract_max_abs_diff, validation.tolerance
        )));
    }

    let started = Instant::now();
    let measured = measure(input, &bytes, &prepared.eval, &prepared.extra, &prepared.plan, &outcome, options)?;
    stages_after.push(StageTime { stage: "measure".into(), seconds: started.elapsed().as_secs_f64() });

    let gate = spec.gate.check(&measured);
    export::set_metadata(&mut repaired, GATE_METADATA_KEY, if gate.passed { "passed" } else { "failed" });
    crate::onnx::save_model(&repaired, &options.output)?;

    stages.extend(stages_after);
    let blocks = detect(&prepared.model.graph)
        .blocks
        .iter()
        .map(|b| BlockSummary { id: b.id, kind: b.kind.as_str().to_string(), nodes: b.nodes.len(), input_shape: b.input_shape.clone(), output_shape: b.output_shape.clone(), params: b.params })
        .collect();
    let ranking = outcome.ranking.as_ref().map_or_else(Vec::new, |r| r.units.iter().map(|u| BlockScore { block: u.unit.id, rank: u.rank, score: u.score }).collect());
    let exit_code = if gate.passed { 0 } else { 1 };
    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        versions: Versions {
            archrepair_onnx: env!("CARGO_PKG_VERSION").into(),
            onnxruntime: ONNXRUNTIME_VERSION.into(),
            tract: TRACT_VERSION.into(),
            libtorch: "2.13.0".into(),
        },
        input_model: input.display().to_string(),
        output_model: Some(options.output.display().to_string()),
        seed: spec.seed,
        spec: spec_json,
        stages,
        blocks,
        ranking,
        repair: Some(outcome.report),
        validation: Some(validation),
        measured: Some(measured),
        outcome: if gate.passed { "passed" } else { "gate_failed" }.into(),
        gate: Some(gate),
        exit_code,
    };
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
    if options.output.exists() && !options.search.force {
        return Err(Error::Mismatch(format!("`{}` exists; pass --force to replace it, or choose another output path", options.output.display())));
    }
    Ok(())
}

/// out.onnx in onnxruntime and tract against the tch model (backbone + trained cell) on the
/// first `validate.samples` images of the evaluation split.
fn validate(bytes: &[u8], lowered: &LoweredModel, splice: &crate::lower::Splice, outcome: &Outcome, eval: &Dataset, plan: &InputPlan, options: &RepairOptions) -> Result<Validation, Error> {
    let v = &options.search.spec.validate;
    let n = v.samples.clamp(1, eval.len().max(1)).min(eval.len());
    let (shape, values) = plan.batch(&eval.images(0..n))?;
    let x = Tensor::from_slice(&values).reshape(shape.as_slice()).to_device(lowered.device());
    let reference = tch::no_grad(|| lowered.forward_spliced(&x, false, splice, &mut |entry| Ok(outcome.layers.forward_t(entry, None, false))))
        .map_err(|source| Error::Lower { path: options.output.clone(), source })?;
    let reference: Vec<f32> = Vec::try_from(&reference.to_device(tch::Device::Cpu).flatten(0, -1)).map_err(Error::torch("reading the tch output"))?;
    let label = options.output.display().to_string();
    let mut ort = OrtModel::from_bytes(bytes, &label, options.search.threads)?;
    let (_, by_ort) = ort.run(&shape, values.clone())?;
    let (_, by_tract) = TractModel::from_bytes(bytes, &label, &shape)?.run(&values)?;
    let diff = |other: &[f32]| {
        if other.len() != reference.len() {
            return f64::INFINITY;
        }
        reference.iter().zip(other).map(|(a, b)| (a - b).abs() as f64).fold(0.0, |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) })
    };
    let (ort_diff, tract_diff) = (diff(&by_ort), diff(&by_tract));
    Ok(Validation { samples: n, tolerance: v.tolerance, onnxruntime_max_abs_diff: ort_diff, tract_max_abs_diff: tract_diff, passed: ort_diff <= v.tolerance && tract_diff <= v.tolerance })
}

/// Accuracy, repair and break rates and latency of in.onnx and out.onnx, by onnxruntime.
#[allow(clippy::too_many_arguments)]
fn measure(input: &Path, bytes: &[u8], eval: &Dataset, extra: &[(String, Dataset)], plan: &InputPlan, outcome: &Outcome, options: &RepairOptions) -> Result<OrtMeasures, Error> {
    let v = &options.search.spec.validate;
    let threads = options.search.threads;
    let mut before = OrtModel::from_file(input, threads)?;
    let mut after = OrtModel::from_bytes(bytes, &options.output.display().to_string(), threads)?;
    let (b, a) = (predict(&mut before, eval, plan, v.batch)?, predict(&mut after, eval, plan, v.batch)?);
    let evaluation = RepairMetrics::new(&b, &a, &eval.labels, &outcome.failures);
    let mut sets = Vec::new();
    for (name, set) in extra {
        let (b, a) = (predict(&mut before, set, plan, v.batch)?, predict(&mut after, set, plan, v.batch)?);
        sets.push(SetAccuracy { name: name.clone(), evaluated: set.len(), before: metrics::accuracy(&b, &set.labels), after: metrics::accuracy(&a, &set.labels) });
    }
    let images = v.latency_images.min(eval.len()).max(1);
    let (before_ms, after_ms) = (latency(&mut before, eval, plan, v.batch, images)?, latency(&mut after, eval, plan, v.batch, images)?);
    let latency = Latency { batch: v.batch, images, before_ms, after_ms, ratio: after_ms / before_ms.max(f64::MIN_POSITIVE) };
    Ok(OrtMeasures { evaluation, sets, latency })
}

fn predict(model: &mut OrtModel, data: &Dataset, plan: &InputPlan, batch: usize) -> Result<Vec<i64>, Error> {
    let mut out = Vec::with_capacity(data.len());
    let batch = batch.max(1);
    for start in (0..data.len()).step_by(batch) {
        let (shape, values) = plan.batch(&data.images(start..(start + batch).min(data.len())))?;
        let (out_shape, logits) = model.run(&shape, values)?;
        let classes = out_shape.last().copied().unwrap_or(1).max(1) as usize;
        out.extend(logits.chunks(classes).map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0 as i64));
    }
    Ok(out)
}

/// Mean milliseconds per image over the first `images` images (one warm-up batch first).
fn latency(model: &mut OrtModel, data: &Dataset, plan: &InputPlan, batch: usize, images: usize) -> Result<f64, Error> {
    let batch = batch.max(1);
    let batches: Vec<(Vec<i64>, Vec<f32>)> = (0..images).step_by(batch).map(|s| plan.batch(&data.images(s..(s + batch).min(images)))).collect::<Result<_, _>>()?;
    if let Some((shape, values)) = batches.first() {
        model.run(shape, values.clone())?;
    }
    let started = Instant::now();
    for (shape, values) in batches {
        model.run(&shape, values)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / images as f64)
}
