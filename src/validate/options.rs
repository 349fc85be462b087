//! The spec's `validate` section: how out.onnx is checked against the tch model and measured.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateSpec {
    /// Images of the evaluation split run through tch, onnxruntime and tract for the parity check.
    pub samples: usize,
    /// Largest accepted |output difference| between tch and either runtime (fp32).
    pub tolerance: f64,
    /// Images timed for the latency before/after.
    pub latency_images: usize,
    /// Batch size of onnxruntime's accuracy and latency runs.
    pub batch: usize,
}

impl Default for ValidateSpec {
    fn default() -> Self {
        ValidateSpec { samples: 64, tolerance: 1e-4, latency_images: 512, batch: 64 }
    }
}
