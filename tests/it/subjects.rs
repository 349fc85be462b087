//! The committed subject models (fixtures/subjects, made by fixtures/subjects/generate.py): the
//! files are the ones the manifest describes, and what the manifest claims about them holds when
//! measured again here, by onnxruntime through `eval`, on the installed test splits.

use std::path::PathBuf;

use archrepair_onnx::commands::eval::{evaluate, EvalOptions};
use archrepair_onnx::data::{DataSource, Fit, InputSpec};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::repo_root;

fn manifest() -> serde_json::Map<String, Value> {
    let path = repo_root().join("fixtures/subjects/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_str(&text).unwrap() {
        Value::Object(map) => map,
        other => panic!("manifest is not an object: {other}"),
    }
}

#[test]
fn subject_files_match_the_manifest_and_keep_their_accuracy_and_failures() {
    let _ = archrepair_onnx::validate::ort_runner::init_onnxruntime();
    let subjects = manifest();
    assert_eq!(subjects.len(), 3, "three subjects: {:?}", subjects.keys());
    for (name, entry) in &subjects {
        let file = repo_root().join("fixtures/subjects").join(entry["file"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, entry["sha256"].as_str().unwrap(), "{name}: file differs from the manifest");

        let dataset = entry["dataset"].as_str().unwrap();
        let data = if dataset.starts_with('/') { PathBuf::from(dataset) } else { repo_root().join(dataset) };
        assert!(data.is_dir(), "{}: missing; run scripts/setup.sh", data.display());
        let padded = entry["padding"].as_u64().unwrap() > 0;
        let input = InputSpec { fit: padded.then_some(Fit::Pad), ..InputSpec::default() };
        let options = EvalOptions { data: DataSource::new(data), input, limit: None, batch: 500, threads: 0, progress: false, corruptions: None };
        let report = evaluate(&file, &options).unwrap_or_else(|e| panic!("{name}: {e}"));

        let images = entry["test_images"].as_u64().unwrap() as usize;
        let failures = entry["test_failures"].as_u64().unwrap() as usize;
        assert_eq!(report.examples, images, "{name}");
        let measured_failures = images - (report.onnxruntime_accuracy * images as f64).round() as usize;
        assert_eq!(measured_failures, failures, "{name}: the manifest's failure count does not reproduce");
        assert!(failures >= 1000, "{name}: only {failures} test failures; a subject must leave at least 1,000");
        assert!(report.max_abs_output_diff < 1e-4, "{name}: lowered graph differs by {}", report.max_abs_output_diff);
    }
}
