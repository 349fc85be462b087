//! The run report of the main command: report.json (machine-readable, `schema_version`),
//! report.md (for humans, e.g. a CI summary) and report.html (self-contained, with charts).
//!
//! Every accuracy in [`OrtMeasures`] comes from onnxruntime running the input and output ONNX
//! files, not from our own interpreter: the report states what the shipped file does.

use serde::{Deserialize, Serialize};

use crate::search::metrics::{RepairMetrics, SetAccuracy};
use crate::search::SearchReport;

pub mod gate;

/// The version of report.json's layout (schemas/report.schema.json).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub versions: Versions,
    pub input_model: String,
    /// The repaired model; absent when the run stopped before export.
    pub output_model: Option<String>,
    pub seed: u64,
    /// The spec as the run used it: file values, defaults and command-line overrides.
    pub spec: serde_json::Value,
    /// Wall-clock seconds per finished stage, in pipeline order.
    pub stages: Vec<StageTime>,
    /// Every block `detect` found.
    pub blocks: Vec<BlockSummary>,
    /// Block suspiciousness, most suspicious first; empty when the spec names the block.
    pub ranking: Vec<BlockScore>,
    /// The search and training: target, genotype, curves, libtorch-measured metrics.
    pub repair: Option<SearchReport>,
    pub validation: Option<Validation>,
    pub measured: Option<OrtMeasures>,
    pub gate: Option<GateOutcome>,
    /// `passed`, `gate_failed`, or `stopped_after_<stage>`.
    pub outcome: String,
    /// The process exit code this outcome maps to (0 passed, 1 gate failed).
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versions {
    pub archrepair_onnx: String,
    pub onnxruntime: String,
    pub tract: String,
    pub libtorch: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockSummary {
    pub id: usize,
    pub kind: String,
    pub nodes: usize,
    pub input_shape: Option<Vec<i64>>,
    pub output_shape: Option<Vec<i64>>,
    pub params: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockScore {
    pub block: usize,
    pub rank: usize,
    pub score: f64,
}

/// out.onnx against the tch model it was exported from, on the same inputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    pub samples: usize,
    pub tolerance: f64,
    pub onnxruntime_max_abs_diff: f64,
    pub tract_max_abs_diff: f64,
    /// Whether onnx.checker-level structural checks (our graph IR rebuild) passed.
    pub passed: bool,
}

/// Before (in.onnx) and after (out.onnx), both run by onnxruntime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrtMeasures {
    /// On the evaluation split (accuracy on split minus D_fail, repair and break rates).
    pub evaluation: RepairMetrics,
    /// The spec's `evaluate` sets (e.g. corruptions).
    pub sets: Vec<SetAccuracy>,
    pub latency: Latency,
}

/// Mean milliseconds per image, batch of `batch`, onnxruntime, same threads for both.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub batch: usize,
    pub images: usize,
    pub before_ms: f64,
    pub after_ms: f64,
    /// after / before.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateOutcome {
    pub passed: bool,
    pub checks: Vec<GateCheck>,
}

/// One threshold of the spec's `gate` section and the measured value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateCheck {
    /// The spec key, e.g. `gate.max_break_rate`.
    pub key: String,
    /// `>=` or `<=`.
    pub comparison: String,
    pub threshold: f64,
    pub value: f64,
    pub passed: bool,
}

/// The spec's `report` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSpec {
    /// Folder of report.json / report.md / report.html; relative to the spec file. Default:
    /// `<out.onnx stem>-report` beside out.onnx.
    pub dir: Option<std::path::PathBuf>,
    /// Which files: any of `json`, `markdown`, `html` (report.json is always written).
    pub formats: Vec<ReportFormat>,
}

impl Default for ReportSpec {
    fn default() -> Self {
        ReportSpec { dir: None, formats: vec![ReportFormat::Json, ReportFormat::Markdown, ReportFormat::Html] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    Json,
    Markdown,
    Html,
}
