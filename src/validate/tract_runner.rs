//! tract, the second runtime: pure Rust, an ONNX implementation independent of onnxruntime's,
//! so an export mistake that one runtime happens to tolerate still shows up in the other.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::ort_runner::RuntimeError;

/// The tract-onnx version this build links.
pub const TRACT_VERSION: &str = "0.23.9";

/// A model optimised by tract for one input shape.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    label: String,
    shape: Vec<usize>,
}

impl TractModel {
    /// Loads a serialized model for inputs of exactly `shape` (tract plans per shape).
    pub fn from_bytes(bytes: &[u8], label: &str, shape: &[i64]) -> Result<Self, RuntimeError> {
        let fail = |e: TractError| RuntimeError::Tract { model: label.to_string(), reason: format!("{e:#}") };
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(fail)?
            .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape.clone()))
            .map_err(fail)?
            .into_optimized()
            .map_err(fail)?
            .into_runnable()
            .map_err(fail)?;
        Ok(TractModel { plan, label: label.to_string(), shape })
    }

    /// Runs one batch of the planned shape; returns the first output as (shape, values).
    pub fn run(&self, values: &[f32]) -> Result<(Vec<i64>, Vec<f32>), RuntimeError> {
        let fail = |e: TractError| RuntimeError::Tract { model: self.label.clone(), reason: format!("{e:#}") };
        let input = Tensor::from_shape(&self.shape, values).map_err(fail)?;
        let outputs = self.plan.run(tvec!(input.into())).map_err(fail)?;
        let first = outputs.first().ok_or_else(|| RuntimeError::Tract { model: self.label.clone(), reason: "the model has no output".into() })?;
        let view = first.to_plain_array_view::<f32>().map_err(fail)?;
        Ok((view.shape().iter().map(|&d| d as i64).collect(), view.iter().copied().collect()))
    }
}
