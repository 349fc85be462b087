//! `archrepair-onnx eval`: top-1 accuracy of a model on a labelled split, computed by
//! onnxruntime and by the lowered libtorch graph side by side. The two must agree: this is the
//! everyday check that lowering is faithful on the user's own data.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Tensor};

use crate::commands::corruption_table::{corruption_table, CorruptionOptions, CorruptionTable};
use crate::data::{self, DataSource, Dataset, Image, InputPlan, InputSpec, ModelInput};
use crate::graph::Dim;
use crate::lower::LoweredModel;
use crate::model::LoadedModel;
use crate::validate::OrtModel;
use crate::commands::progress::images_bar;
use crate::Error;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The labelled images (any format `data::open` reads).
    pub data: DataSource,
    /// How images become model input; what it leaves out comes from the model's input shape.
    pub input: InputSpec,
    pub limit: Option<usize>,
    /// Images per batch (the model's own batch size when its input fixes one).
    pub batch: usize,
    /// Threads for both runtimes (0: their defaults).
    pub threads: usize,
    pub progress: bool,
    /// Also measure accuracy under these corruptions (onnxruntime only).
    pub corruptions: Option<CorruptionOptions>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    /// The file or folder the images came from.
    pub data: String,
    /// How the images were fed to the model (`InputPlan::describe`).
    pub input: String,
    pub examples: usize,
    pub onnxruntime_accuracy: f64,
    pub lowered_accuracy: f64,
    /// Share of examples where both runtimes predict the same class.
    pub agreement: f64,
    pub max_abs_output_diff: f64,
    /// Accuracy per corruption and severity, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corruptions: Option<CorruptionTable>,
}

pub fn evaluate(model_path: &Path, options: &EvalOptions) -> Result<EvalReport, Error> {
    let model = LoadedModel::open(model_path)?;
    let mut data = data::open(&options.data)?;
    if let Some(limit) = options.limit {
        data.truncate(limit);
    }
    // Model and data must fit together before anything expensive starts.
    let plan = input_plan(&model, &options.input, &data)?;
    if options.threads > 0 {
        tch::set_num_threads(options.threads as i32);
    }
    let mut runtimes = Runtimes::new(&model, options.threads)?;
    let scores = runtimes.score(&data, &plan, options.batch, options.progress)?;
    let corruptions = match &options.corruptions {
        Some(suite) => Some(corruption_table(&mut runtimes, &data, &plan, suite, options.batch, options.progress)?),
        None => None,
    };
    Ok(EvalReport {
        model: model_path.display().to_string(),
        data: data.source.display().to_string(),
        input: plan.describe(),
        examples: scores.examples,
        onnxruntime_accuracy: scores.onnxruntime_accuracy,
        lowered_accuracy: scores.lowered_accuracy,
        agreement: scores.agreement,
        max_abs_output_diff: scores.max_abs_output_diff,
        corruptions,
    })
}

/// The input plan of `model`'s first input for `data`, from `spec` and the declared input shape.
pub fn input_plan(model: &LoadedModel, spec: &InputSpec, data: &Dataset) -> Result<InputPlan, Error> {
    let input = model.graph.inputs.first();
    let name = input.map_or("input", |i| i.name.as_str());
    let shape: Option<Vec<Option<i64>>> = input.and_then(|i| i.shape.as_ref()).map(|s| {
        s.iter()
            .map(|d| match d {
                Dim::Known(n) if *n > 0 => Some(*n),
                _ => None,
            })
            .collect()
    });
    Ok(InputPlan::resolve(spec, ModelInput { name, shape: shape.as_deref() }, data)?)
}

/// Accuracy of both runtimes on one dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub examples: usize,
    pub onnxruntime_accuracy: f64,
    pub lowered_accuracy: f64,
    pub agreement: f64,
    pub max_abs_output_diff: f64,
}

/// The model in onnxruntime and as the lowered libtorch graph, ready to score datasets (one
/// call of `score` per dataset, e.g. once per corruption).
pub struct Runtimes {
    path: PathBuf,
    lowered: LoweredModel,
    ort: OrtModel,
}

impl Runtimes {
    pub fn new(model: &LoadedModel, threads: usize) -> Result<Self, Error> {
        let lowered = model.lower(Device::cuda_if_available())?;
        let ort = OrtModel::from_file(&model.path, threads)?;
        Ok(Runtimes { path: model.path.clone(), lowered, ort })
    }

    /// Top-1 accuracy of both runtimes on `data`, fed through `plan`, `batch` images at a time.
    pub fn score(&mut self, data: &Dataset, plan: &InputPlan, batch: usize, progress: bool) -> Result<Scores, Error> {
        let batch = plan.batch.unwrap_or(batch).max(1);
        let bar = images_bar(data.len() as u64, progress);
        bar.set_message("evaluating");
        let mut counts = Counts::default();
        for start in (0..data.len()).step_by(batch) {
            let end = (start + batch).min(data.len());
            self.add_batch(&data.images(start..end), &data.labels[start..end], plan, &mut counts)?;
            bar.inc((end - start) as u64);
        }
        bar.finish_and_clear();
        let n = data.len().max(1) as f64;
        Ok(Scores {
            examples: data.len(),
            onnxruntime_accuracy: counts.ort_correct as f64 / n,
            lowered_accuracy: counts.lowered_correct as f64 / n,
            agreement: counts.agree as f64 / n,
            max_abs_output_diff: counts.max_diff,
        })
    }

    /// How many of `images` onnxruntime alone classifies as `labels` (the corruption table is
    /// measured by the runtime users deploy, and the lowered graph would double its cost).
    pub fn ort_correct(&mut self, images: &[Image], labels: &[i64], plan: &InputPlan, batch: usize) -> Result<usize, Error> {
        let batch = plan.batch.unwrap_or(batch).max(1);
        let mut correct = 0;
        for (chunk, chunk_labels) in images.chunks(batch).zip(labels.chunks(batch)) {
            let padded = fill_fixed_batch(chunk, plan);
            let (shape, values) = plan.batch(&padded)?;
            let (out_shape, out) = self.ort.run(&shape, values)?;
            let classes = out_shape.last().copied().unwrap_or(1).max(1) as usize;
            correct += out
                .chunks(classes)
                .zip(chunk_labels)
                .filter(|(row, &label)| argmax(row) == label as usize)
                .count();
        }
        Ok(correct)
    }

    /// Runs one batch through both runtimes. A model with a fixed batch size gets its last,
    /// shorter batch filled up with copies of the last image, whose outputs are dropped.
    fn add_batch(&mut self, images: &[Image], labels: &[i64], plan: &InputPlan, counts: &mut Counts) -> Result<(), Error> {
        let real = images.len();
        let images = fill_fixed_batch(images, plan);
        let (shape, values) = plan.batch(&images)?;
        let x = Tensor::f_from_slice(&values).and_then(|t| t.f_reshape(&shape)).map_err(Error::torch(COMPARING))?;
        let (mut out_shape, mut ort_out) = self.ort.run(&shape, values)?;
        let mut ours = self.lowered.predict(&x).map_err(|source| Error::Lower { path: self.path.clone(), source })?;
        if images.len() > real {
            let per_row = ort_out.len() / images.len();
            ort_out.truncate(real * per_row);
            if let Some(rows) = out_shape.first_mut() {
                *rows = real as i64;
            }
            ours = ours.f_narrow(0, 0, real as i64).map_err(Error::torch(COMPARING))?;
        }
        counts.add(&ours, &ort_out, &out_shape, labels).map_err(Error::torch(COMPARING))
    }
}

/// `images`, filled up to the model's fixed batch size (when its input fixes one) with copies of
/// the last image; the caller drops the outputs of the copies.
fn fill_fixed_batch(images: &[Image], plan: &InputPlan) -> Vec<Image> {
    let mut images = images.to_vec();
    if let (Some(fixed), Some(last)) = (plan.batch, images.last().cloned()) {
        images.resize(fixed.max(images.len()), last);
    }
    images
}

/// Index of the largest value (the first one on ties, as numpy and torch do).
fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// Running tallies of an evaluation.
#[derive(Default)]
struct Counts {
    ort_correct: usize,
    lowered_correct: usize,
    agree: usize,
    max_diff: f64,
}

impl Counts {
    /// Adds one batch: our outputs, onnxruntime's (flat, with its shape) and the labels.
    fn add(&mut self, ours: &Tensor, ort_out: &[f32], ort_shape: &[i64], labels: &[i64]) -> Result<(), tch::TchError> {
        let theirs = Tensor::f_from_slice(ort_out)?.f_reshape(ort_shape)?;
        let ours = ours.f_to_device(Device::Cpu)?.f_reshape(ort_shape)?;
        let diff = ours.f_sub(&theirs)?.f_abs()?.f_max()?.f_double_value(&[])?;
        self.max_diff = self.max_diff.max(diff);
        let labels = Tensor::f_from_slice(labels)?;
        let (ort_pred, our_pred) = (theirs.f_argmax(-1, false)?, ours.f_argmax(-1, false)?);
        let hits = |a: &Tensor, b: &Tensor| -> Result<usize, tch::TchError> {
            Ok(a.f_eq_tensor(b)?.f_sum(tch::Kind::Int64)?.f_int64_value(&[])? as usize)
        };
        self.ort_correct += hits(&ort_pred, &labels)?;
        self.lowered_correct += hits(&our_pred, &labels)?;
        self.agree += hits(&our_pred, &ort_pred)?;
        Ok(())
    }
}

const COMPARING: &str = "comparing the outputs of the two runtimes";

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model     {}", self.model)?;
        writeln!(f, "examples  {}", self.examples)?;
        writeln!(f, "{:<26} {:>9}", "runtime", "top-1")?;
        writeln!(f, "{:<26} {:>8.2}%", "onnxruntime 1.32.0", 100.0 * self.onnxruntime_accuracy)?;
        writeln!(f, "{:<26} {:>8.2}%", "lowered graph (libtorch)", 100.0 * self.lowered_accuracy)?;
        writeln!(f, "same prediction on {:.2}% of the examples", 100.0 * self.agreement)?;
        write!(f, "max |output difference| = {:.3e}", self.max_abs_output_diff)?;
        if let Some(table) = &self.corruptions {
            write!(f, "\n\n{table}")?;
        }
        Ok(())
    }
}
