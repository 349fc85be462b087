//! The main command's `--method`: the weight-only baselines run through the same export,
//! validation, measurement and report as ArchRepair, change only the weights their scope
//! allows, never BatchNormalization statistics, and resume to the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use archrepair_onnx::detect::detect;
use archrepair_onnx::export::METADATA_KEY;
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::onnx::load_model;
use serde_json::Value;

use crate::support::repo_root;

fn subject() -> PathBuf {
    repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx")
}

fn spec(dir: &Path) -> PathBuf {
    let spec = dir.join("methods.yaml");
    std::fs::write(
        &spec,
        "version: 1\ndata: {path: /usr/share/datasets/fashion-mnist, split: test}\ncollect: {failures: 24}\n\
         attack: {steps: 2}\nsearch: {train_images: 128}\ntrain: {epochs: 1, batch: 16, train_images: 128}\nvalidate: {samples: 8, latency_images: 16}\n",
    )
    .unwrap();
    spec
}

fn run(spec: &Path, out: &Path, method: &str, more: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .arg(subject())
        .arg(out)
        .args(["--spec", spec.to_str().unwrap(), "--limit", "200", "--threads", "2", "--method", method])
        .args(more)
        .output()
        .unwrap()
}

fn report(out: &Path) -> Value {
    let path = out.with_file_name(format!("{}-report/report.json", out.file_stem().unwrap().to_string_lossy()));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Initializer name → raw bytes of the tensor proto.
fn initializers(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let model = load_model(path).unwrap();
    model.graph.unwrap().initializer.iter().map(|t| (t.name().to_string(), prost::Message::encode_to_vec(t))).collect()
}

fn changed(out: &Path) -> BTreeSet<String> {
    let (before, after) = (initializers(&subject()), initializers(out));
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "a baseline keeps every initializer");
    before.iter().filter(|(name, bytes)| after[*name] != **bytes).map(|(name, _)| name.clone()).collect()
}

/// The initializers the named nodes read.
fn read_by(nodes: &[String]) -> BTreeSet<String> {
    let model = LoadedModel::open(&subject()).unwrap();
    model.graph.nodes.iter().filter(|n| nodes.contains(&n.name)).flat_map(|n| n.inputs.iter().cloned()).collect()
}

fn node_names(path: &Path) -> Vec<String> {
    load_model(path).unwrap().graph.unwrap().node.iter().map(|n| n.name().to_string()).collect()
}

/// BatchNormalization running means and variances of the subject.
fn bn_statistics() -> BTreeSet<String> {
    let model = LoadedModel::open(&subject()).unwrap();
    model.graph.nodes.iter().filter(|n| n.op_type == "BatchNormalization").flat_map(|n| n.inputs[3..].iter().cloned()).collect()
}

fn check_common(out: &Path, method: &str, output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{method}: {stderr}");
    let report = report(out);
    assert_eq!(report["baseline"]["method"], method);
    assert!(report["repair"].is_null(), "no ArchRepair search ran");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/report.schema.json")).unwrap()).unwrap();
    let problems = crate::json_schema::violations(&schema, &report);
    assert!(problems.is_empty(), "{method}: report.json does not match its schema: {problems:#?}");
    assert_eq!(node_names(out), node_names(&subject()), "{method}: the architecture is unchanged");
    assert!(report["validation"]["passed"].as_bool().unwrap());
    let provenance: Value = serde_json::from_str(&crate::repair::metadata(out, METADATA_KEY).unwrap()).unwrap();
    assert_eq!(provenance["method"], method);
    // Absent when nothing changed (a baseline that undid its patch).
    let listed: BTreeSet<String> = provenance["weights_changed"].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect()).unwrap_or_default();
    assert_eq!(listed, changed(out), "{method}: the metadata lists exactly the rewritten initializers");
    assert!(changed(out).is_disjoint(&bn_statistics()), "{method}: BatchNormalization statistics never move");
    report
}

#[test]
fn finetune_block_changes_only_the_localized_blocks_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("block.onnx");
    let output = run(&spec(dir.path()), &out, "finetune-block", &[]);
    let report = check_common(&out, "finetune-block", &output);
    let block = report["baseline"]["chosen"]["block"].as_u64().unwrap() as usize;
    assert_eq!(report["ranking"][0]["block"].as_u64().unwrap() as usize, block, "the top of the block ranking is fine-tuned");
    let detection = detect(&LoadedModel::open(&subject()).unwrap().graph);
    let nodes = &detection.blocks.iter().find(|b| b.id == block).unwrap().nodes;
    let changed = changed(&out);
    assert!(!changed.is_empty(), "the fine-tune moved some weight");
    assert!(changed.is_subset(&read_by(nodes)), "only block {block}'s weights change: {changed:?}");
}

#[test]
fn finetune_layer_changes_only_the_localized_layers_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("layer.onnx");
    let output = run(&spec(dir.path()), &out, "finetune-layer", &[]);
    let report = check_common(&out, "finetune-layer", &output);
    let layer = report["baseline"]["chosen"]["layer"].as_str().unwrap().to_string();
    assert_eq!(report["ranking"], Value::Array(Vec::new()), "a layer ranking is not drawn as blocks");
    let changed = changed(&out);
    assert!(!changed.is_empty() && changed.is_subset(&read_by(&[layer.clone()])), "only `{layer}` changes: {changed:?}");
}

#[test]
fn finetune_network_moves_weights_across_the_model_and_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path());
    let out = dir.path().join("network.onnx");
    let output = run(&spec, &out, "finetune-network", &[]);
    let report = check_common(&out, "finetune-network", &output);
    assert!(report["baseline"]["chosen"].is_null(), "network fine-tuning does not localize");
    assert!(!report["stages"].as_array().unwrap().iter().any(|s| s["stage"] == "localize"), "no localization time is charged");
    let detection = detect(&LoadedModel::open(&subject()).unwrap().graph);
    let changed = changed(&out);
    let blocks_touched = detection.blocks.iter().filter(|b| !read_by(&b.nodes).is_disjoint(&changed)).count();
    assert!(blocks_touched > 1, "network fine-tuning changes more than one block ({blocks_touched})");

    // Stopped after the repair stage and resumed: the weights come back from the dump folder.
    let resumed = dir.path().join("resumed.onnx");
    let dump = dir.path().join("resumed-dump");
    let stopped = run(&spec, &resumed, "finetune-network", &["--stop-after", "search"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", String::from_utf8_lossy(&stopped.stderr));
    assert!(!resumed.exists());
    let finished = run(&spec, &resumed, "finetune-network", &["--resume", dump.to_str().unwrap()]);
    assert_eq!(finished.status.code(), Some(0), "{}", String::from_utf8_lossy(&finished.stderr));
    assert!(std::fs::read(&resumed).unwrap() == std::fs::read(&out).unwrap(), "the resumed run writes the same bytes as the straight one");
}

#[test]
fn an_unknown_method_is_refused_naming_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&spec(dir.path()), &dir.path().join("x.onnx"), "retrain", &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("finetune-block") && stderr.contains("arachne"), "{stderr}");
}

#[test]
fn arachne_patches_only_the_last_gemm_and_apricot_leaves_bn_statistics_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path());
    let out = dir.path().join("arachne.onnx");
    let output = run(&spec, &out, "arachne", &[]);
    let report = check_common(&out, "arachne", &output);
    let model = LoadedModel::open(&subject()).unwrap();
    let last_gemm = model.graph.nodes.iter().rev().find(|n| n.op_type == "Gemm").unwrap().name.clone();
    let patched = changed(&out);
    assert!(patched.is_subset(&read_by(&[last_gemm.clone()])), "only `{last_gemm}` changes: {patched:?}");
    let kept = report["baseline"]["log"]["kept"].as_bool().unwrap();
    assert_eq!(kept, !patched.is_empty(), "a kept patch rewrites the weight, an undone one nothing");

    let out = dir.path().join("apricot.onnx");
    let output = run(&spec, &out, "apricot", &[]);
    let report = check_common(&out, "apricot", &output);
    assert!(report["baseline"]["chosen"].is_null(), "apricot does not localize");
    let kept = report["baseline"]["log"]["kept"].as_bool().unwrap();
    assert_eq!(kept, !changed(&out).is_empty());
}
