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
    let (mut ort_correct, mut lowered_correct, mut agree) = (0usize, 0usize, 0usize);
    let mut max_diff = 0f64;
    let batch = options.batch.max(1);
    for start in (0..data.len()).step_by(batch) {
        let end = (start + batch).min(data.len());
        let (shape, pixels) = data.batch(start, end);
        let (out_shape, ort_out) = ort.run(&shape, pixels.to_vec())?;
        let ort_logits = Tensor::from_slice(&ort_out).reshape(out_shape.as_slice());
        let x = Tensor::from_slice(pixels).reshape(shape);
        let ours = lowered
            .predict(&x)
            .map_err(|source| Error::Lower { path: model.path.clone(), source })?
            .to_device(Device::Cpu)
            .reshape(out_shape.as_slice());
        max_diff = max_diff.max((&ours - &ort_logits).abs().max().double_value(&[]));
        let labels = Tensor::from_slice(&data.labels[start..end]);
        let ort_pred = ort_logits.argmax(-1, false);
        let our_pred = ours.argmax(-1, false);
        ort_correct += ort_pred.eq_tensor(&labels).sum(tch::Kind::Int64).int64_value(&[]) as usize;
        lowered_correct += our_pred.eq_tensor(&labels).sum(tch::Kind::Int64).int64_value(&[]) as usize;
        agree += our_pred.eq_tensor(&ort_pred).sum(tch::Kind::Int64).int64_value(&[]) as usize;
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let n = data.len().max(1) as f64;
    Ok(EvalReport {
        model: model_path.display().to_string(),
        examples: data.len(),
        onnxruntime_accuracy: ort_correct as f64 / n,
        lowered_accuracy: lowered_correct as f64 / n,
        agreement: agree as f64 / n,
        max_abs_output_diff: max_diff,
    })
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
