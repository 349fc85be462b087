//! `archrepair-onnx eval`: top-1 accuracy of a model on a labelled split, computed by
//! onnxruntime and by the lowered libtorch graph side by side. The two must agree: this is the
//! everyday check that lowering is faithful on the user's own data.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Tensor};

use crate::data::{load_idx_split, LabeledImages};
use crate::graph::Dim;
use crate::model::LoadedModel;
use crate::validate::OrtModel;
use crate::Error;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Folder with IDX files (`<split>-images-idx3-ubyte[.gz]`, `<split>-labels-idx1-ubyte[.gz]`).
    pub data: PathBuf,
    pub split: String,
    pub limit: Option<usize>,
    pub batch: usize,
    /// Threads for both runtimes (0: their defaults).
    pub threads: usize,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub examples: usize,
    pub onnxruntime_accuracy: f64,
    pub lowered_accuracy: f64,
    /// Share of examples where both runtimes predict the same class.
    pub agreement: f64,
    pub max_abs_output_diff: f64,
}

pub fn evaluate(model_path: &Path, options: &EvalOptions) -> Result<EvalReport, Error> {
    let model = LoadedModel::open(model_path)?;
    let data = load_idx_split(&options.data, &options.split, options.limit)?;
    check_fits(&model, &data)?;
    if options.threads > 0 {
        tch::set_num_threads(options.threads as i32);
    }
    let lowered = model.lower(Device::cuda_if_available())?;
    let mut ort = OrtModel::from_file(model_path, options.threads)?;

    let bar = progress_bar(data.len(), options.progress);
    let mut counts = Counts::default();
    let batch = options.batch.max(1);
    for start in (0..data.len()).step_by(batch) {
        let end = (start + batch).min(data.len());
        let (shape, pixels) = data.batch(start, end);
        let (out_shape, ort_out) = ort.run(&shape, pixels.to_vec())?;
        let x = Tensor::f_from_slice(pixels).and_then(|t| t.f_reshape(shape)).map_err(torch_error)?;
        let ours = lowered.predict(&x).map_err(|source| Error::Lower { path: model.path.clone(), source })?;
        counts.add(&ours, &ort_out, &out_shape, &data.labels[start..end]).map_err(torch_error)?;
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let n = data.len().max(1) as f64;
    Ok(EvalReport {
        model: model_path.display().to_string(),
        examples: data.len(),
        onnxruntime_accuracy: counts.ort_correct as f64 / n,
        lowered_accuracy: counts.lowered_correct as f64 / n,
        agreement: counts.agree as f64 / n,
        max_abs_output_diff: counts.max_diff,
    })
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

fn torch_error(source: tch::TchError) -> Error {
    Error::Torch { context: "comparing the outputs of the two runtimes", source }
}

/// The data's C, H, W must match the model input where the model fixes them.
fn check_fits(model: &LoadedModel, data: &LabeledImages) -> Result<(), Error> {
    let Some(input) = model.graph.inputs.first() else { return Ok(()) };
    let Some(shape) = &input.shape else { return Ok(()) };
    let data_chw = &data.shape[1..];
    let model_chw: Vec<Option<i64>> = shape.iter().skip(1).map(|d| match d { Dim::Known(n) => Some(*n), _ => None }).collect();
    let fits = model_chw.len() == 3 && model_chw.iter().zip(data_chw).all(|(m, &d)| m.is_none_or(|m| m == d as i64));
    if fits {
        return Ok(());
    }
    Err(Error::Mismatch(format!(
        "model `{}` expects input `{}` of shape {:?} (N, C, H, W) but the data has images of {:?} (C, H, W); pick data of the model's size",
        model.path.display(),
        input.name,
        shape,
        data_chw
    )))
}

fn progress_bar(len: usize, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("evaluating");
    bar
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model     {}", self.model)?;
        writeln!(f, "examples  {}", self.examples)?;
        writeln!(f, "{:<26} {:>9}", "runtime", "top-1")?;
        writeln!(f, "{:<26} {:>8.2}%", "onnxruntime 1.32.0", 100.0 * self.onnxruntime_accuracy)?;
        writeln!(f, "{:<26} {:>8.2}%", "lowered graph (libtorch)", 100.0 * self.lowered_accuracy)?;
        writeln!(f, "same prediction on {:.2}% of the examples", 100.0 * self.agreement)?;
        write!(f, "max |output difference| = {:.3e}", self.max_abs_output_diff)
    }
}
