//! The binary as users call it: exit codes, output, and one-paragraph errors (never a panic) for
//! broken models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use archrepair_onnx::onnx::{load_model, save_model};

use crate::support;

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
}

fn run(args: &[&str]) -> Output {
    binary().args(args).env_remove("ORT_DYLIB_PATH").output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code 2, an error naming `needles`, and no panic.
fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` missing from:\n{stderr}");
    }
}

fn fixture(name: &str) -> PathBuf {
    support::repo_root().join("fixtures/models").join(name)
}

#[test]
fn inspect_prints_shapes_histogram_and_parameters() {
    let out = run(&["inspect", fixture("resnet20_ts_op17_bn.onnx").to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for needle in ["ai.onnx=17", "input       input [batch, 3, 32, 32]", "Conv", "21", "parameters  272474", "every operator is supported"] {
        assert!(stdout.contains(needle), "`{needle}` missing from:\n{stdout}");
    }
}

#[test]
fn inspect_json_is_machine_readable() {
    let out = run(&["inspect", "--json", fixture("mobilenetv2_dynamo_op13_folded.onnx").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["opsets"][""], 13);
    assert!(json["op_histogram"]["Clip"].as_u64().unwrap() > 0);
    assert_eq!(json["unsupported"].as_object().unwrap().len(), 0);
}

#[test]
fn eval_reports_both_runtimes_and_they_agree() {
    let out = run(&[
        "eval",
        fixture("resnet20_28_dynamo_op17_bn.onnx").to_str().unwrap(),
        "--data",
        FASHION_MNIST,
        "--limit",
        "300",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["examples"], 300);
    assert_eq!(report["onnxruntime_accuracy"], report["lowered_accuracy"]);
    assert!(report["max_abs_output_diff"].as_f64().unwrap() <= 1e-4);
}

#[test]
fn eval_refuses_data_of_another_size() {
    let out = run(&["eval", fixture("resnet20_ts_op17_bn.onnx").to_str().unwrap(), "--data", FASHION_MNIST, "--limit", "10"]);
    assert_clean_failure(&out, &["resnet20_ts_op17_bn.onnx", "expects input `input`", "[1, 28, 28]"]);
}

#[test]
fn truncated_and_random_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("resnet20_ts_op17_bn.onnx")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_failure(&run(&["inspect", truncated.to_str().unwrap()]), &["truncated.onnx", "not an ONNX model"]);
    let random = dir.path().join("random.onnx");
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&random, noise).unwrap();
    assert_clean_failure(&run(&["inspect", random.to_str().unwrap()]), &["random.onnx"]);
}

/// Saves a copy of a fixture after `edit`.
fn edited(name: &str, dir: &Path, edit: impl FnOnce(&mut archrepair_onnx::onnx::proto::ModelProto)) -> PathBuf {
    let mut model = load_model(&fixture(name)).unwrap();
    edit(&mut model);
    let path = dir.join(format!("edited_{name}"));
    save_model(&model, &path).unwrap();
    path
}

#[test]
fn a_missing_initializer_names_the_node_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited("resnet20_ts_op17_bn.onnx", dir.path(), |m| {
        m.graph.as_mut().unwrap().initializer.retain(|t| t.name() != "layer2.0.conv1.weight");
    });
    let out = run(&["inspect", path.to_str().unwrap()]);
    assert_clean_failure(&out, &["edited_resnet20_ts_op17_bn.onnx", "layer2.0.conv1.weight", "/layer2/layer2.0/conv1/Conv"]);
}

#[test]
fn unsupported_ops_are_listed_together_with_their_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited("resnet20_28_ts_op17_folded.onnx", dir.path(), |m| {
        for node in &mut m.graph.as_mut().unwrap().node {
            match node.op_type() {
                "Relu" => node.op_type = Some("Celu".into()),
                "Gemm" => {
                    node.op_type = Some("FancyDense".into());
                    node.domain = Some("com.example".into());
                }
                _ => {}
            }
        }
    });
    let inspected = run(&["inspect", path.to_str().unwrap()]);
    assert!(inspected.status.success(), "{}", text(&inspected.stderr));
    assert!(text(&inspected.stdout).contains("UNSUPPORTED operators"));
    // eval needs the lowered graph: one error lists every unsupported op with its nodes.
    let out = run(&["eval", path.to_str().unwrap(), "--data", FASHION_MNIST, "--limit", "1"]);
    assert_clean_failure(
        &out,
        &[
            "edited_resnet20_28_ts_op17_folded.onnx",
            "opset 17",
            "2 operator type(s)",
            "Celu: 19 node(s): /Relu, /layer1/layer1.0/Relu",
            "and 14 more",
            "com.example::FancyDense: 1 node(s): /fc/Gemm",
        ],
    );
}

#[test]
fn a_missing_onnxruntime_library_is_named_with_the_fix() {
    let out = binary()
        .args(["eval", fixture("resnet20_28_ts_op17_bn.onnx").to_str().unwrap(), "--data", FASHION_MNIST])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.32.0")
        .output()
        .unwrap();
    assert_clean_failure(&out, &["/nonexistent/libonnxruntime.so.1.32.0", "onnxruntime 1.32.0", "scripts/setup.sh", "ORT_DYLIB_PATH"]);
}

#[test]
fn blocks_prints_a_table_and_json_that_follows_the_published_schema() {
    let path = fixture("resnet18_ts_op13_bn.onnx");
    let out = run(&["blocks", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("8 blocks (8 residual), 21 layers"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains(" basic ") && l.contains("projection")).count(), 3, "{table}");

    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(support::repo_root().join("schemas/blocks.schema.json")).unwrap()).unwrap();
    for name in ["resnet18_ts_op13_bn.onnx", "mobilenetv2_dynamo_op17_folded.onnx", "vgg_ts_op17_bn.onnx", "densenet_dynamo_op13_bn.onnx"] {
        let out = run(&["blocks", "--json", fixture(name).to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let problems = crate::json_schema::violations(&schema, &doc);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
    // The validator is not vacuous: a wrong kind and a missing field are caught.
    let mut doc: serde_json::Value = serde_json::from_slice(&run(&["blocks", "--json", path.to_str().unwrap()]).stdout).unwrap();
    doc["blocks"][0]["kind"] = "wide".into();
    doc["layers"][0].as_object_mut().unwrap().remove("flops");
    assert_eq!(crate::json_schema::violations(&schema, &doc).len(), 2);
}

#[test]
fn blocks_of_a_broken_model_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, b"definitely not protobuf").unwrap();
    let out = run(&["blocks", path.to_str().unwrap()]);
    assert_clean_failure(&out, &["broken.onnx"]);
}

#[test]
fn eval_with_corruptions_reports_a_seeded_table_measured_by_onnxruntime() {
    let subject = support::repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx");
    let args = [
        "eval",
        subject.to_str().unwrap(),
        "--data",
        FASHION_MNIST,
        "--limit",
        "200",
        "--corruptions",
        "fog,gaussian_noise",
        "--severities",
        "5,1",
        "--json",
    ];
    let first = run(&args);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let table = &report["corruptions"];
    assert_eq!((table["params"].as_str(), table["examples"].as_u64()), (Some("grey28"), Some(200)));
    assert_eq!(table["severities"], serde_json::json!([1, 5]));
    let rows = table["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["corruption"].as_str().unwrap()).collect();
    assert_eq!(names, ["gaussian_noise", "fog"], "suite order");
    let clean = report["onnxruntime_accuracy"].as_f64().unwrap();
    for row in rows {
        let accuracy: Vec<f64> = row["accuracy"].as_array().unwrap().iter().map(|a| a.as_f64().unwrap()).collect();
        assert_eq!(accuracy.len(), 2);
        assert!(accuracy[1] < clean, "{}: severity 5 at {} is not below clean {clean}", names[0], accuracy[1]);
        assert!((row["mean"].as_f64().unwrap() - (accuracy[0] + accuracy[1]) / 2.0).abs() < 1e-12);
    }
    let again = run(&args);
    assert_eq!(first.stdout, again.stdout, "same seed, same table");

    let typo = run(&["eval", subject.to_str().unwrap(), "--data", FASHION_MNIST, "--corruptions", "fgo"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(text(&typo.stderr).contains("gaussian_noise"), "{}", text(&typo.stderr));
}
