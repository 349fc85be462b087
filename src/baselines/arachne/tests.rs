//! Arachne on a hand-checkable model: Flatten → Gemm (transB) → Softmax over four input
//! features and three classes. The right weights make class c respond to feature c (w[c][c] = 2,
//! everything else 0); the planted fault is w[0][3] = 6, so every input of class 1 or 2 that
//! also carries feature 3 scores higher for class 0 and is misclassified. Any w[0][3] in
//! (−2, 2) fixes them all without breaking anything else.

use tch::{Device, Tensor};

use super::*;
use crate::baselines::Context;
use crate::data::{Fit, InputPlan, Layout};
use crate::graph::tests_support::{int, model, node, with};
use crate::graph::Graph;
use crate::localize::classifier::Classifier;
use crate::localize::pixels::PixelInput;
use crate::lower::LoweredModel;
use crate::onnx::tensor::encode_f32;
use crate::search::data::RepairData;
use crate::spec::Spec;

const FAULTY: [f32; 12] = [
    2.0, 0.0, 0.0, 6.0, // class 0 (the planted 6.0 reads feature 3)
    0.0, 2.0, 0.0, 0.0, // class 1
    0.0, 0.0, 2.0, 0.0, // class 2
];

fn tiny_graph(weights: &[f32]) -> Graph {
    let nodes = vec![
        node("Flatten", "flatten", &["x"], &["f"]),
        with(node("Gemm", "fc", &["f", "W", "b"], &["z"]), vec![int("transB", 1)]),
        with(node("Softmax", "softmax", &["z"], &["y"]), vec![int("axis", 1)]),
    ];
    let mut m = model(13, nodes, &[("x", &[-1, 1, 1, 4])], &["y"]);
    let g = m.graph.as_mut().unwrap();
    g.initializer = vec![encode_f32("W", &[3, 4], weights), encode_f32("b", &[3], &[0.0, 0.0, 0.0])];
    let mut graph = Graph::from_model(&m).unwrap();
    graph.infer_shapes().unwrap();
    graph
}

fn plan() -> InputPlan {
    InputPlan {
        input: "x".into(),
        layout: Layout::Nchw,
        channels: 1,
        height: 1,
        width: 4,
        batch: None,
        scale: 1.0,
        mean: vec![0.0],
        std: vec![1.0],
        fit: Fit::Exact,
        grey_to_rgb: false,
        data: [1, 4, 1],
    }
}

/// Failures first (rows 0..10: class 1 or 2 with feature 3; rows 8 and 9 held out), then
/// training images (each class alone, and class 0 with feature 3), two of them held out.
fn tiny_data() -> RepairData {
    let mut rows: Vec<([f32; 4], i64)> = Vec::new();
    for i in 0..10 {
        let c = 1 + i % 2;
        let mut x = [0.0; 4];
        x[c] = 1.0 + 0.05 * i as f32;
        x[3] = 1.0 + 0.04 * i as f32;
        rows.push((x, c as i64));
    }
    for i in 0..12 {
        let c = i % 4;
        let mut x = [0.0; 4];
        if c == 3 {
            x[0] = 1.0 + 0.1 * i as f32;
            x[3] = 0.5;
        } else {
            x[c] = 0.5 + 0.1 * i as f32;
        }
        rows.push((x, if c == 3 { 0 } else { c as i64 }));
    }
    let pixels: Vec<f32> = rows.iter().flat_map(|(x, _)| *x).collect();
    let labels: Vec<i64> = rows.iter().map(|(_, l)| *l).collect();
    let n = rows.len() as i64;
    RepairData {
        pixels: Tensor::from_slice(&pixels).reshape([n, 1, 1, 4]),
        labels: Tensor::from_slice(&labels),
        failures: 10,
        half_a: vec![],
        half_b: vec![],
        // Failure rows repeated (as oversampling does): I_neg deduplicates them.
        training: (0..8).chain(0..8).chain(10..20).collect(),
        holdout: vec![8, 9, 20, 21],
        teacher: None,
    }
}

fn spec(seed: u64) -> Spec {
    let mut spec = Spec::default();
    spec.seed = seed;
    spec.arachne.generations = 30;
    spec.arachne.population = 20;
    spec
}

/// Runs Arachne on a fresh faulty model; returns the log and the weight values after.
fn run(spec: &Spec) -> (ArachneLog, Vec<f32>) {
    run_on(spec, tiny_data())
}

fn run_on(spec: &Spec, data: RepairData) -> (ArachneLog, Vec<f32>) {
    let graph = tiny_graph(&FAULTY);
    let lowered = LoweredModel::new(&graph, Device::Cpu).unwrap();
    let input = PixelInput::new(&plan(), Device::Cpu).unwrap();
    let classifier = Classifier::new(&graph, &lowered, &input);
    let ctx = Context { graph: &graph, model: &lowered, classifier: &classifier, data: &data, chosen: None, spec, progress: false, model_path: std::path::Path::new("test.onnx") };
    let log = repair(&ctx).unwrap();
    let weight = lowered.weights().iter().find(|w| w.onnx_name == "W").unwrap().tensor.reshape([-1]);
    (log, Vec::<f32>::try_from(&weight).unwrap())
}

#[test]
fn arachne_localizes_the_planted_weight_and_repairs_only_what_it_localized() {
    let (log, after) = run(&spec(7));
    assert!(log.generations >= 1, "the initial population alone must not solve it here: {log:?}");
    assert_eq!((log.layer.as_str(), log.op.as_str(), log.weight.as_str()), ("fc", "Gemm", "W"));
    assert_eq!(log.negatives, 8, "the 8 failure rows of the training rows, once each");
    assert_eq!(log.positives, 8, "as many passing inputs as failures");
    let localized: Vec<Vec<i64>> = log.localized.iter().map(|w| w.index.clone()).collect();
    assert!(localized.contains(&vec![0, 3]), "the planted weight W[0][3] (class 0, feature 3) is localized: {localized:?}");
    assert!(log.localized.iter().all(|w| w.front == 0), "min_weights 1: the first front only");
    assert_eq!(log.patched, log.negatives, "every failure repaired: {log:?}");
    assert_eq!(log.broken, 0, "no passing input broken: {log:?}");
    assert!(log.kept && log.holdout_after.unwrap() > log.holdout_before.unwrap(), "{log:?}");
    assert_eq!(log.holdout_after, Some(1.0));
    // Weights outside the localized set are bit-identical; the localized ones hold `after`.
    let flat = |index: &[i64]| (index[0] * 4 + index[1]) as usize;
    for (i, (&before, &now)) in FAULTY.iter().zip(&after).enumerate() {
        match log.localized.iter().find(|w| flat(&w.index) == i) {
            Some(w) => assert_eq!((w.before, w.after), (before, now), "weight {i}"),
            None => assert_eq!(before.to_bits(), now.to_bits(), "weight {i} was not localized but changed"),
        }
    }
    let planted = after[3];
    assert!(planted > -2.0 && planted < 2.0, "W[0][3] = {planted} does not fix the fault");
    // The fitness log: non-decreasing, and the last reaches every input right (8 + 8).
    assert!(log.best_fitness.windows(2).all(|w| w[1] >= w[0]), "{:?}", log.best_fitness);
    assert!((log.best_fitness.last().unwrap() - 16.0).abs() < 1e-9, "{:?}", log.best_fitness);
}

#[test]
fn the_same_seed_gives_the_same_patch() {
    // Four weights searched (the first fronts), so the search has room to differ.
    let mut spec = spec(11);
    spec.arachne.min_weights = 4;
    let (a, wa) = run(&spec);
    let (b, wb) = run(&spec);
    assert!(a.localized.len() >= 4 && a.generations >= 1, "{a:?}");
    assert_eq!(wa, wb);
    assert_eq!((a.localized, a.best_fitness, a.generations), (b.localized, b.best_fitness, b.generations));
}

#[test]
fn a_model_without_a_final_fully_connected_layer_is_refused_with_its_last_nodes() {
    let nodes = vec![
        with(node("Conv", "conv", &["x", "K"], &["c"]), vec![]),
        node("GlobalAveragePool", "gap", &["c"], &["g"]),
        node("Flatten", "flatten", &["g"], &["y"]),
    ];
    let mut m = model(13, nodes, &[("x", &[-1, 1, 4, 4])], &["y"]);
    m.graph.as_mut().unwrap().initializer = vec![encode_f32("K", &[3, 1, 1, 1], &[1.0, 2.0, 3.0])];
    let graph = Graph::from_model(&m).unwrap();
    let e = head::find(&graph).unwrap_err().to_string();
    assert!(e.starts_with("arachne repairs the last fully connected layer; `g` ends in"), "{e}");
    assert!(e.contains("Conv `conv` → GlobalAveragePool `gap` → Flatten `flatten`"), "{e}");
}

#[test]
fn matmul_then_add_is_a_head_too() {
    let nodes = vec![node("Flatten", "flatten", &["x"], &["f"]), node("MatMul", "mm", &["f", "W"], &["p"]), node("Add", "add", &["p", "b"], &["y"])];
    let mut m = model(13, nodes, &[("x", &[-1, 1, 1, 4])], &["y"]);
    m.graph.as_mut().unwrap().initializer = vec![encode_f32("W", &[4, 3], &[0.0; 12]), encode_f32("b", &[3], &[0.0; 3])];
    let head = head::find(&Graph::from_model(&m).unwrap()).unwrap();
    assert_eq!((head.node.as_str(), head.op, head.input.as_str(), head.output.as_str(), head.weight.as_str()), ("mm", "MatMul+Add", "f", "y", "W"));
    assert_eq!((head.bias.as_deref(), head.trans_b), (Some("b"), false));
}

/// Held-out rows that look like the failures but are labelled class 0: the subject gets them
/// right, every repair gets them wrong, so the held-out accuracy drops and the patch is undone.
#[test]
fn a_patch_that_lowers_the_held_out_accuracy_is_undone() {
    let mut data = tiny_data();
    let contradicting = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0, 0.0, 0.0, 1.2, 1.1, 0.0, 1.1, 0.0, 1.0]).reshape([3, 1, 1, 4]);
    data.pixels = Tensor::cat(&[data.pixels.shallow_clone(), contradicting], 0);
    data.labels = Tensor::cat(&[data.labels.shallow_clone(), Tensor::from_slice(&[0i64, 0, 0])], 0);
    data.holdout = vec![22, 23, 24];
    let (log, after) = run_on(&spec(7), data);
    assert_eq!(log.patched, log.negatives, "the search itself succeeded: {log:?}");
    assert_eq!((log.holdout_before, log.holdout_after, log.kept), (Some(1.0), Some(0.0), false), "{log:?}");
    assert!(after.iter().zip(&FAULTY).all(|(a, b)| a.to_bits() == b.to_bits()), "the subject's weights are back: {after:?}");
    assert!(log.localized.iter().all(|w| w.after == w.before), "{log:?}");
}
