//! Operator coverage: real torchvision CNN classifiers (ResNet, MobileNet v2/v3, RegNet X/Y,
//! DenseNet, ShuffleNet v2, EfficientNet, VGG), exported by both PyTorch exporters
//! (TorchScript-based at opset 17, dynamo at opset 18), are lowered and match onnxruntime, and
//! block detection finds the blocks their definitions have.
//!
//! The models are generated at test time by fixtures/coverage.py into a temporary folder (they
//! are too large to commit); the table of results goes to stdout and target/parity-coverage.md.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use archrepair_onnx::detect::detect;
use archrepair_onnx::graph::Dim;
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::validate::OrtModel;
use tch::{Device, Kind, Tensor};

use crate::support;

const TOLERANCE: f64 = 1e-4;
const BATCH: i64 = 8;

/// The classifiers of the coverage target, each exported by both exporters, plus VGG at 32x32
/// (CIFAR-sized), which only the dynamo exporter can export (see fixtures/coverage.py).
const MODELS: &[&str] = &[
    "resnet18", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "regnet_x_400mf",
    "regnet_y_400mf", "densenet121", "shufflenet_v2_x0_5", "efficientnet_b0", "vgg11_bn",
];
const DYNAMO_ONLY: &[&str] = &["vgg11_bn_32"];

/// Blocks `archrepair-onnx blocks` must find, from each architecture's definition: (model,
/// residual blocks, all blocks). torchvision's DenseNet concatenates all earlier features in every
/// layer and ShuffleNet v2 merges by Concat + channel shuffle: no residual block, and their
/// fallback blocks are not pinned.
const EXPECTED_BLOCKS: &[(&str, usize, Option<usize>)] = &[
    ("resnet18", 8, Some(8)),
    ("mobilenet_v2", 10, Some(17)),
    ("mobilenet_v3_small", 6, Some(11)),
    ("mobilenet_v3_large", 10, Some(15)),
    ("regnet_x_400mf", 22, Some(22)),
    ("regnet_y_400mf", 16, Some(16)),
    ("densenet121", 0, None),
    ("shufflenet_v2_x0_5", 0, None),
    ("efficientnet_b0", 9, Some(16)),
    ("vgg11_bn", 0, Some(5)),
    ("vgg11_bn_32", 0, Some(5)),
];

/// One generated file, as fixtures/coverage.py's manifest.json lists it.
struct Entry {
    file: String,
    model: String,
    exporter: String,
    opset: i64,
    histogram: Vec<(String, u64)>,
}

fn read_manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let entries: Vec<Entry> = json["models"]
        .as_array()
        .expect("manifest `models`")
        .iter()
        .map(|e| Entry {
            file: e["file"].as_str().unwrap().to_string(),
            model: e["model"].as_str().unwrap().to_string(),
            exporter: e["exporter"].as_str().unwrap().to_string(),
            opset: e["opset"].as_i64().unwrap(),
            histogram: e["op_histogram"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(op, n)| (op.clone(), n.as_u64().unwrap()))
                .collect(),
        })
        .collect();
    assert!(!entries.is_empty(), "the manifest lists no model");
    entries
}

/// Result of one model: worst |lowered - onnxruntime|, the largest |logit|, and how many node
/// outputs got an inferred shape.
struct Parity {
    worst: f64,
    scale: f64,
    shapes: (usize, usize),
}

/// Opens, lowers and runs one model on `BATCH` seeded random inputs in [0, 1) in both runtimes.
/// Errors are returned as their full text (an unsupported-op error lists every such op).
fn parity(path: &Path) -> Result<Parity, String> {
    let model = LoadedModel::open(path).map_err(|e| format!("opening (shape inference): {e}"))?;
    let outputs: Vec<&String> = model.graph.nodes.iter().flat_map(|n| &n.outputs).filter(|o| !o.is_empty()).collect();
    let shaped = outputs.iter().filter(|o| model.graph.shapes.contains_key(o.as_str())).count();
    let lowered = model.lower(Device::Cpu).map_err(|e| format!("lowering: {e}"))?;
    let shape = model.graph.inputs[0].shape.clone().ok_or("the input has no shape")?;
    let mut dims = vec![BATCH];
    for d in &shape[1..] {
        match d {
            Dim::Known(n) => dims.push(*n),
            Dim::Symbolic(s) => return Err(format!("symbolic non-batch input dimension {s}")),
        }
    }
    tch::manual_seed(11);
    let x = Tensor::rand(dims.as_slice(), (Kind::Float, Device::Cpu));
    let values: Vec<f32> = Vec::try_from(&x.flatten(0, -1)).map_err(|e: tch::TchError| e.to_string())?;
    let mut ort = OrtModel::from_file(path, 0).map_err(|e| format!("onnxruntime: {e}"))?;
    let (out_shape, expected) = ort.run(&dims, values).map_err(|e| format!("onnxruntime: {e}"))?;
    let ours = lowered.predict(&x).map_err(|e| format!("running the lowered graph: {e}"))?;
    if ours.size() != out_shape {
        return Err(format!("output shape {:?}, onnxruntime {:?}", ours.size(), out_shape));
    }
    let expected = Tensor::from_slice(&expected).reshape(out_shape.as_slice());
    Ok(Parity {
        worst: (&ours - &expected).abs().max().double_value(&[]),
        scale: expected.abs().max().double_value(&[]),
        shapes: (shaped, outputs.len()),
    })
}

#[test]
fn torchvision_classifiers_lower_and_match_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let script = support::repo_root().join("fixtures/coverage.py");
    let started = std::time::Instant::now();
    let out = Command::new(support::venv_python())
        .arg(&script)
        .arg(dir.path())
        .current_dir(support::repo_root())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh first", support::venv_python().display()));
    assert!(
        out.status.success(),
        "fixtures/coverage.py failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("fixtures/coverage.py: {:.1} s\n{}", started.elapsed().as_secs_f64(), String::from_utf8_lossy(&out.stderr));

    let mut table = format!(
        "| model | exporter | opset | nodes | ops | shapes inferred | max abs diff ({BATCH} inputs) | max abs logit | residual/all blocks |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    let entries = read_manifest(dir.path());
    let mut expected: Vec<String> = MODELS.iter().flat_map(|m| [format!("{m}_ts.onnx"), format!("{m}_dynamo.onnx")]).collect();
    expected.extend(DYNAMO_ONLY.iter().map(|m| format!("{m}_dynamo.onnx")));
    let mut listed: Vec<String> = entries.iter().map(|e| e.file.clone()).collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected, "fixtures/coverage.py must export every model of the coverage target");

    let mut failures = Vec::new();
    for entry in entries {
        let path = dir.path().join(&entry.file);
        let nodes: u64 = entry.histogram.iter().map(|(_, n)| n).sum();
        let ops: Vec<&str> = entry.histogram.iter().map(|(op, _)| op.as_str()).collect();
        let (diff, scale, shapes) = match parity(&path) {
            Ok(p) => {
                // Large logits: the bound scales with them.
                let bound = TOLERANCE * p.scale.max(1.0);
                if p.worst.is_nan() || p.worst > bound {
                    failures.push(format!("{}: max abs diff {:e} > {bound:e}", entry.file, p.worst));
                }
                (format!("{:.2e}", p.worst), format!("{:.2e}", p.scale), format!("{}/{}", p.shapes.0, p.shapes.1))
            }
            Err(e) => {
                failures.push(format!("{}: {e}", entry.file));
                ("FAILED".into(), "-".into(), "-".into())
            }
        };
        let blocks = match LoadedModel::open(&path).map(|m| detect(&m.graph)) {
            Ok(d) => {
                let found = (d.residual_count(), d.blocks.len());
                let expected = EXPECTED_BLOCKS.iter().find(|(m, ..)| *m == entry.model).expect("every model has expected blocks");
                if found.0 != expected.1 || expected.2.is_some_and(|n| n != found.1) {
                    let of = expected.2.map_or(String::new(), |n| format!(" of {n}"));
                    failures.push(format!("{}: {} residual of {} blocks, expected {}{of}", entry.file, found.0, found.1, expected.1));
                }
                format!("{}/{}", found.0, found.1)
            }
            Err(e) => {
                failures.push(format!("{}: {e}", entry.file));
                "FAILED".into()
            }
        };
        writeln!(
            table,
            "| {} | {} | {} | {nodes} | {} | {shapes} | {diff} | {scale} | {blocks} |",
            entry.model,
            entry.exporter,
            entry.opset,
            ops.join(", ")
        )
        .unwrap();
    }
    let _ = std::fs::write(support::repo_root().join("target/parity-coverage.md"), &table);
    println!("{table}");
    assert!(failures.is_empty(), "{} model(s) failed:\n{}\n\n{table}", failures.len(), failures.join("\n"));
}
