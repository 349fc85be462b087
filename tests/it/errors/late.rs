//! Errors that arise after the run has started (the dump folder exists): no out.onnx is
//! written, the finished stages stay in the dump folder, the message names the cause and fix.

use archrepair_onnx::onnx::save_model;
use archrepair_onnx::onnx::tensor::encode_f32;

use super::{run_in, s, subject, FASHION_MNIST};
use crate::builders::{int, ints, model, node};
use crate::support::repo_root;

/// The CI bench's base spec (block 8 given, a repair of a few seconds) with `from` replaced
/// by `to`.
fn tiny_spec(dir: &std::path::Path, from: &str, to: &str) -> String {
    let base = std::fs::read_to_string(repo_root().join("fixtures/bench/tiny_spec.yaml")).unwrap();
    let changed = base.replace(from, to);
    assert!(from.is_empty() || changed != base, "tiny_spec.yaml has no `{from}`; update this test");
    let path = dir.join("late.yaml");
    std::fs::write(&path, changed).unwrap();
    path.display().to_string()
}

fn finished_stages(dump: &std::path::Path) -> Vec<String> {
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dump.join("stages.json")).unwrap()).unwrap();
    manifest["finished"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn late_no_failures_on_the_split() {
    let d = tempfile::tempdir().unwrap();
    // The subject gets the first 5 test images right: nothing to repair.
    let spec = tiny_spec(d.path(), "", "");
    run_in(d.path(), &[s(&subject()), "out.onnx", "--spec", &spec, "--limit", "5"]).refused(&["classifies all 5 examples of", FASHION_MNIST, "no failures", "corrupted one"]);
    assert!(!d.path().join("out.onnx").exists());
}

#[test]
fn late_validation_over_tolerance() {
    let d = tempfile::tempdir().unwrap();
    // onnxruntime and tract never agree with libtorch to the last bit on this model, so a
    // tolerance of 0 fails the validation stage after export.
    let spec = tiny_spec(d.path(), "validate: {", "validate: {tolerance: 0.0, ");
    run_in(d.path(), &[s(&subject()), "out.onnx", "--spec", &spec, "--limit", "300", "--threads", "2"])
        .refused(&["validation failed", "more than validate.tolerance", "out.onnx was not written"]);
    assert!(!d.path().join("out.onnx").exists());
    assert_eq!(finished_stages(&d.path().join("out-dump")), ["localize", "search", "export"], "validate is not recorded");
}

#[test]
fn late_device_cuda_without_a_gpu() {
    let d = tempfile::tempdir().unwrap();
    let spec = tiny_spec(d.path(), "version: 1\n", "version: 1\ndevice: cuda\n");
    let run = run_in(d.path(), &[s(&subject()), "out.onnx", "--spec", &spec, "--limit", "300", "--stop-after", "localize"]);
    if tch::Cuda::is_available() {
        // On a machine with a GPU the same spec runs there.
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    } else {
        run.refused(&["device: cuda, but libtorch sees no CUDA device", "device: auto"]);
        assert!(!d.path().join("out-dump").exists(), "refused before the dump folder is made");
    }
}

#[test]
fn late_drift_without_batch_normalization() {
    let d = tempfile::tempdir().unwrap();
    // Conv → Relu → GlobalAveragePool → Flatten → Gemm on Fashion-MNIST: no BatchNormalization.
    let nodes = vec![
        node("Conv", "conv", &["x", "w"], &["c"], vec![ints("kernel_shape", &[3, 3])]),
        node("Relu", "relu", &["c"], &["r"], vec![]),
        node("GlobalAveragePool", "pool", &["r"], &["p"], vec![]),
        node("Flatten", "flat", &["p"], &["f"], vec![]),
        node("Gemm", "fc", &["f", "fw"], &["y"], vec![int("transB", 1)]),
    ];
    let init = vec![encode_f32("w", &[2, 1, 3, 3], &[0.1; 18]), encode_f32("fw", &[10, 2], &(0..20).map(|i| i as f32 / 10.0).collect::<Vec<_>>())];
    let path = d.path().join("no_bn.onnx");
    save_model(&model(13, &[-1, 1, 28, 28], nodes, init), &path).unwrap();
    run_in(d.path(), &["localize", s(&path), "--data", FASHION_MNIST, "--limit", "50", "--method", "drift", "--granularity", "layer"])
        .refused(&["no_bn.onnx", "has no BatchNormalization with running statistics", "method: spectrum"]);
    assert!(!d.path().join("no_bn-localize").exists(), "nothing written");
}


#[test]
fn late_probe_without_steps_or_failures_to_check() {
    let d = tempfile::tempdir().unwrap();
    let spec = d.path().join("probe.yaml");
    std::fs::write(&spec, format!("version: 1\ndata: {{path: {FASHION_MNIST}}}\nlocalize: {{method: probe, probe_steps: 0}}\n")).unwrap();
    run_in(d.path(), &["localize", s(&subject()), "--spec", s(&spec), "--limit", "50"]).refused(&["localize.probe_steps is 0", "at least one step", "defaults: 24 and 0.001"]);
    // One failure cannot be split into a half to fit on and a half to check on.
    std::fs::write(&spec, format!("version: 1\ndata: {{path: {FASHION_MNIST}}}\ncollect: {{failures: 1}}\nlocalize: {{method: probe}}\n")).unwrap();
    run_in(d.path(), &["localize", s(&subject()), "--spec", s(&spec), "--limit", "50"]).refused(&["probe needs at least 2 failures", "D_fail has 1", "collect.failures"]);
    assert!(!d.path().join("subject-localize").exists() && std::fs::read_dir(d.path()).unwrap().count() == 1, "nothing written but the spec");
}
