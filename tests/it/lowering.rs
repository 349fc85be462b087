//! The lowered libtorch graph computes what onnxruntime computes (eval mode), on every fixture
//! and every onnx `light` model, and trains like PyTorch (one SGD step on ResNet-20).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use archrepair_onnx::graph::Dim;
use archrepair_onnx::lower::Role;
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::onnx::{load_tensor, Tensor as OnnxTensor};
use archrepair_onnx::validate::OrtModel;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::support;

const TOLERANCE: f64 = 1e-4;
const INPUTS: i64 = 64;

/// Worst |lowered - onnxruntime| over `inputs` seeded random inputs in [0, 1), and the largest
/// |output| (the scale the difference is to be read against).
pub(crate) fn parity(path: &Path, inputs: i64) -> (f64, f64) {
    let model = LoadedModel::open(path).unwrap_or_else(|e| panic!("{e}"));
    let lowered = model.lower(Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ort = OrtModel::from_file(path, 0).unwrap_or_else(|e| panic!("{e}"));
    let shape = model.graph.inputs[0].shape.clone().unwrap_or_else(|| panic!("{}: input has no shape", path.display()));
    // A fixed batch dimension (the light models have 1) is run as many batches.
    let batch = match shape[0] {
        Dim::Known(n) => n,
        Dim::Symbolic(_) => 16,
    };
    let mut dims: Vec<i64> = vec![batch];
    for d in &shape[1..] {
        match d {
            Dim::Known(n) => dims.push(*n),
            Dim::Symbolic(s) => panic!("{}: symbolic non-batch dimension {s}", path.display()),
        }
    }
    tch::manual_seed(7);
    let (mut worst, mut scale) = (0f64, 0f64);
    for _ in 0..(inputs / batch).max(1) {
        let x = Tensor::rand(dims.as_slice(), (Kind::Float, Device::Cpu));
        let values: Vec<f32> = Vec::try_from(&x.flatten(0, -1)).unwrap();
        let (out_shape, expected) = ort.run(&dims, values).unwrap_or_else(|e| panic!("{e}"));
        let ours = lowered.predict(&x).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(ours.size(), out_shape, "{}: output shape", path.display());
        let expected = Tensor::from_slice(&expected).reshape(out_shape.as_slice());
        worst = worst.max((&ours - &expected).abs().max().double_value(&[]));
        scale = scale.max(expected.abs().max().double_value(&[]));
    }
    (worst, scale)
}

/// Checks every model: max abs diff ≤ TOLERANCE, or ≤ TOLERANCE × max |output| when `relative`.
fn check_parity(models: &[PathBuf], table_name: &str, inputs: i64, relative: bool) {
    let mut table = format!("| model | max abs diff vs onnxruntime ({inputs} inputs) | max abs output |\n|---|---|---|\n");
    let mut failures = Vec::new();
    for path in models {
        let (worst, scale) = parity(path, inputs);
        let name = path.file_name().unwrap().to_string_lossy();
        writeln!(table, "| {name} | {worst:.2e} | {scale:.2e} |").unwrap();
        let bound = if relative { TOLERANCE * scale.max(1.0) } else { TOLERANCE };
        if !(worst <= bound) {
            failures.push(format!("{name}: {worst:e}"));
        }
    }
    // Kept for the benchmark notes: target/parity-<set>.md.
    let _ = std::fs::write(support::repo_root().join(format!("target/parity-{table_name}.md")), &table);
    println!("{table}");
    assert!(failures.is_empty(), "max abs diff above the bound ({TOLERANCE}{}): {failures:?}\n{table}", if relative { " x max abs output" } else { "" });
}

#[test]
fn lowered_fixtures_match_onnxruntime() {
    check_parity(&support::fixture_models(), "fixtures", INPUTS, false);
}

#[test]
fn lowered_light_models_match_onnxruntime() {
    check_parity(&support::light_models(), "light", INPUTS, false);
}

/// The golden outputs were computed by PyTorch when the fixtures were exported.
#[test]
fn lowered_fixtures_reproduce_pytorch_golden_outputs() {
    for path in support::fixture_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let golden = support::repo_root().join("fixtures/golden").join(&stem);
        let input = torch(&load_tensor(&golden.join("input_0.pb")).unwrap());
        let expected = torch(&load_tensor(&golden.join("output_0.pb")).unwrap());
        let model = LoadedModel::open(&path).unwrap();
        let ours = model.lower(Device::Cpu).unwrap().predict(&input).unwrap();
        let diff = (&ours - &expected).abs().max().double_value(&[]);
        assert!(diff <= TOLERANCE, "{stem}: {diff:e} from PyTorch's output");
    }
}

/// The light models' weights are all 0.02 (ConstantOfShape), so their softmax outputs are nearly
/// uniform and hide most errors. Here their graphs (made by others, opset 9) get random weights
/// and lose the final Softmax, so that logits are compared.
#[test]
fn light_model_graphs_with_random_weights_match_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<PathBuf> = support::light_models().iter().map(|p| randomized_light_model(p, dir.path())).collect();
    check_parity(&models, "light-random", 8, true);
}

/// Replaces every ConstantOfShape weight by a random initializer (He-scaled for kernels,
/// in [0.5, 1.5) for vectors, so BatchNormalization variances stay positive) and drops the final
/// Softmax.
fn randomized_light_model(path: &Path, dir: &Path) -> PathBuf {
    use archrepair_onnx::onnx::{load_model, save_model, tensor::encode_f32};
    let mut model = load_model(path).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let shapes: std::collections::HashMap<String, Vec<i64>> =
        graph.initializer.iter().map(|t| (t.name().to_string(), load_shape(t))).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let mut weights = Vec::new();
    graph.node.retain(|n| {
        let Some(dims) = (n.op_type() == "ConstantOfShape").then(|| shapes.get(&n.input[0])).flatten() else { return true };
        let count: i64 = dims.iter().product();
        let fan_in: i64 = dims.iter().skip(1).product();
        let values: Vec<f32> = if dims.len() > 1 {
            let scale = (6.0 / fan_in.max(1) as f32).sqrt();
            (0..count).map(|_| (2.0 * uniform() - 1.0) * scale).collect()
        } else {
            (0..count).map(|_| 0.5 + uniform()).collect()
        };
        weights.push(encode_f32(&n.output[0], dims, &values));
        false
    });
    graph.initializer.extend(weights);
    let last = graph.node.last().unwrap().clone();
    if last.op_type() == "Softmax" {
        graph.node.pop();
        graph.output[0].name = Some(last.input[0].clone());
    }
    let out = dir.join(path.file_name().unwrap());
    save_model(&model, &out).unwrap();
    out
}

fn load_shape(t: &archrepair_onnx::onnx::proto::TensorProto) -> Vec<i64> {
    archrepair_onnx::onnx::tensor::decode(t).map(|d| d.to_i64()).unwrap_or_default()
}

/// onnx's own test runner feeds the light models arange(n)/n (generate_dummy_data with
/// random=False) and expects the `<model>_output_0.pb` shipped beside them.
#[test]
fn lowered_light_models_reproduce_their_shipped_outputs() {
    for path in support::light_models() {
        let model = LoadedModel::open(&path).unwrap();
        let dims: Vec<i64> = model.graph.inputs[0]
            .shape
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| match d { Dim::Known(n) => *n, Dim::Symbolic(_) => 1 })
            .collect();
        let n: i64 = dims.iter().product();
        let input = (Tensor::arange(n, (Kind::Double, Device::Cpu)) / n as f64).to_kind(Kind::Float).reshape(dims.as_slice());
        let shipped = path.with_file_name(format!("{}_output_0.pb", path.file_stem().unwrap().to_string_lossy()));
        let expected = torch(&load_tensor(&shipped).unwrap());
        let lowered = model.lower(Device::Cpu).unwrap();
        // Their weights come from ConstantOfShape nodes: still weights, still trainable.
        let trainable = lowered.weights().iter().filter(|w| w.role == Role::Trainable).count();
        assert!(trainable > 0, "{}: no trainable weight", path.display());
        let ours = lowered.predict(&input).unwrap();
        let diff = (&ours - &expected).abs().max().double_value(&[]);
        assert!(diff <= TOLERANCE, "{}: {diff:e} from the shipped output", path.display());
    }
}

fn torch(t: &OnnxTensor) -> Tensor {
    Tensor::from_slice(&t.to_f32()).reshape(t.dims.as_slice())
}

/// One SGD step (lr 0.1, batch 16, cross-entropy) on the lowered ResNet-20 gives the weights
/// and BatchNormalization statistics that the same step gives in PyTorch.
#[test]
fn one_sgd_step_matches_pytorch() {
    let dir = support::repo_root().join("fixtures/train_step");
    let model = LoadedModel::open(&support::repo_root().join("fixtures/models/resnet20_ts_op17_bn.onnx")).unwrap();
    let lowered = model.lower(Device::Cpu).unwrap();
    let input = torch(&load_tensor(&dir.join("input.pb")).unwrap());
    let labels = Tensor::from_slice(&load_tensor(&dir.join("labels.pb")).unwrap().to_i64());
    let expected_loss = load_tensor(&dir.join("loss.pb")).unwrap().to_f32()[0] as f64;

    let mut sgd = nn::Sgd::default().build(lowered.var_store(), 0.1).unwrap();
    let logits = lowered.forward_t(&input, true).unwrap();
    let loss = logits.cross_entropy_for_logits(&labels);
    let loss_value = loss.double_value(&[]);
    assert!((loss_value - expected_loss).abs() <= 1e-5 * expected_loss.abs(), "loss {loss_value} vs PyTorch {expected_loss}");
    sgd.backward_step(&loss);

    let mut expected_files: Vec<PathBuf> = std::fs::read_dir(dir.join("expected")).unwrap().flatten().map(|e| e.path()).collect();
    expected_files.sort();
    let mut checked = 0;
    let mut worst = 0f64;
    for file in expected_files {
        let proto = archrepair_onnx::onnx::load_tensor_proto(&file).unwrap();
        let name = proto.name().to_string();
        let expected = torch(&archrepair_onnx::onnx::tensor::decode(&proto).unwrap());
        let ours = &lowered.weights().iter().find(|w| w.onnx_name == name).unwrap_or_else(|| panic!("no weight `{name}`")).tensor;
        let scale = expected.abs().max().double_value(&[]).max(1e-12);
        let relative = (ours - &expected).abs().max().double_value(&[]) / scale;
        worst = worst.max(relative);
        assert!(relative <= 1e-5, "`{name}`: relative difference {relative:e} after one step");
        checked += 1;
    }
    assert_eq!(checked, lowered.weights().len(), "every weight and buffer is compared");
    println!("one SGD step: {checked} tensors, worst relative difference {worst:.2e}");
}
