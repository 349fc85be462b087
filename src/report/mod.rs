//! The run report of the main command: report.json (machine-readable, `schema_version`),
//! report.md (for humans, e.g. a CI summary) and report.html (self-contained, with charts).
//!
//! Every accuracy in [`OrtMeasures`] comes from onnxruntime running the input and output ONNX
//! files, not from our own interpreter: the report states what the shipped file does.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{write_atomically, DataError};
use crate::search::metrics::{RepairMetrics, SetAccuracy};
pub use crate::search::BlockScore;
use crate::search::SearchReport;

mod charts;
pub mod gate;
pub mod html;
pub mod markdown;
mod summary;
pub(crate) mod svg;

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
    /// A weight-only baseline's repair (spec `method` other than `archrepair`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::baselines::MethodReport>,
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
    /// Measured by an earlier run whose dump folder this one resumed (`--resume`).
    #[serde(default)]
    pub resumed: bool,
}

impl StageTime {
    /// `stage` took the time since `started`, in this run.
    pub fn since(stage: &str, started: std::time::Instant) -> StageTime {
        StageTime { stage: stage.into(), seconds: started.elapsed().as_secs_f64(), resumed: false }
    }
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    Json,
    Markdown,
    Html,
}

impl ReportFormat {
    /// The file this format is written to inside the report folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ReportFormat::Json => "report.json",
            ReportFormat::Markdown => "report.md",
            ReportFormat::Html => "report.html",
        }
    }
}

/// Writes report.json (always: tools and the gate's consumers read it) and, as `formats` asks,
/// report.md and report.html into `dir`, creating it. Each file is replaced atomically, so a
/// reader never sees half a report. Returns the paths written, report.json first.
pub fn write(report: &Report, dir: &Path, formats: &[ReportFormat]) -> Result<Vec<PathBuf>, DataError> {
    std::fs::create_dir_all(dir).map_err(|source| DataError::Write { path: dir.to_path_buf(), source })?;
    let mut written = Vec::new();
    for format in [ReportFormat::Json, ReportFormat::Markdown, ReportFormat::Html] {
        if format != ReportFormat::Json && !formats.contains(&format) {
            continue;
        }
        let path = dir.join(format.file_name());
        let text = match format {
            ReportFormat::Json => serde_json::to_string_pretty(report).map_err(|e| DataError::format(&path, e.to_string()))? + "\n",
            ReportFormat::Markdown => markdown::markdown(report),
            ReportFormat::Html => html::html(report),
        };
        write_atomically(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// The sample report of fixtures/report (a realistic gate-failed run), for the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Report;

    pub fn sample_report() -> Report {
        serde_json::from_str(include_str!("../../fixtures/report/sample-report.json")).expect("fixtures/report/sample-report.json is a Report")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testing::sample_report;

    #[test]
    fn write_puts_json_always_and_the_asked_formats() {
        let dir = tempfile::tempdir().expect("temp dir");
        let nested = dir.path().join("a/b");
        let report = sample_report();
        let paths = write(&report, &nested, &[ReportFormat::Html]).expect("written");
        assert_eq!(paths, vec![nested.join("report.json"), nested.join("report.html")]);
        let json = std::fs::read_to_string(&paths[0]).expect("report.json");
        assert!(json.ends_with("}\n") && json.contains("\n  \"schema_version\": 1,"), "{json}");
        let back: Report = serde_json::from_str(&json).expect("report.json reads back");
        assert_eq!(back.ranking.len(), report.ranking.len());
        assert!(!nested.join("report.md").exists());

        let all = write(&report, &nested, &[ReportFormat::Markdown, ReportFormat::Html, ReportFormat::Json]).expect("written");
        assert_eq!(all.len(), 3);
        assert!(std::fs::read_to_string(nested.join("report.md")).is_ok_and(|md| md.contains("GATE FAILED")));
        let leftovers = std::fs::read_dir(&nested).map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).count());
        assert_eq!(leftovers.ok(), Some(0), "no temporary files left");
    }

    #[test]
    fn write_reports_an_unwritable_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("file");
        let error = write(&sample_report(), &file, &[]).expect_err("a file is no folder");
        assert!(error.to_string().contains("not-a-dir"), "{error}");
    }
}

impl std::fmt::Display for Report {
    /// The Markdown summary (what report.md holds).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&markdown::markdown(self))
    }
}
