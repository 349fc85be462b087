//! Checking the exported model: onnxruntime and tract against the tch model it came from, and
//! before/after accuracy, repair and break rates and latency measured by onnxruntime (not by
//! our own code).

use std::path::Path;
use std::time::Instant;

use tch::Tensor;

use crate::data::{Dataset, InputPlan};
use crate::lower::{LowerError, LoweredModel};
use crate::report::{Latency, OrtMeasures, Validation};
use crate::search::metrics::{self, RepairMetrics, SetAccuracy};
use crate::validate::tract_runner::TractModel;
use crate::validate::OrtModel;
use crate::Error;

use super::RepairOptions;

/// out.onnx in onnxruntime and tract against the tch model it was exported from (`reference`:
/// backbone + trained cell, or the model with its changed weights) on the first
/// `validate.samples` images of the evaluation split.
pub fn validate(bytes: &[u8], lowered: &LoweredModel, reference: &dyn Fn(&Tensor) -> Result<Tensor, LowerError>, eval: &Dataset, plan: &InputPlan, options: &RepairOptions) -> Result<Validation, Error> {
    let v = &options.search.spec.validate;
    let n = v.samples.clamp(1, eval.len().max(1)).min(eval.len());
    let (shape, values) = plan.batch(&eval.images(0..n))?;
    let x = Tensor::from_slice(&values).reshape(shape.as_slice()).to_device(lowered.device());
    let reference = tch::no_grad(|| reference(&x))
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
pub fn measure(input: &Path, bytes: &[u8], eval: &Dataset, extra: &[(String, Dataset)], plan: &InputPlan, failures: &[usize], options: &RepairOptions) -> Result<OrtMeasures, Error> {
    let v = &options.search.spec.validate;
    let threads = options.search.threads;
    let mut before = OrtModel::from_file(input, threads)?;
    let mut after = OrtModel::from_bytes(bytes, &options.output.display().to_string(), threads)?;
    let (b, a) = (predict(&mut before, eval, plan, v.batch)?, predict(&mut after, eval, plan, v.batch)?);
    let evaluation = RepairMetrics::new(&b, &a, &eval.labels, failures);
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
        crate::interrupt::check()?;
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
