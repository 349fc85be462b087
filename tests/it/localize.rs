//! Localization: per-example gradients against one backward pass per example, spectra of a
//! hand-set model against hand-computed counts, attacks against the PyTorch reference and their
//! strength on the Fashion-MNIST subject, stability and read-only-ness of a whole run.

use std::path::{Path, PathBuf};
use std::process::Command;

use archrepair_onnx::commands::eval::input_plan;
use archrepair_onnx::data::{self, Dataset, DataSource, Image, InputSpec};
use archrepair_onnx::localize::attack::Attack;
use archrepair_onnx::localize::classifier::Classifier;
use archrepair_onnx::localize::options::{AttackMethod, AttackSpec, CollectSpec, Formula, Granularity, LocalizeSpec, Method};
use archrepair_onnx::localize::pixels::PixelInput;
use archrepair_onnx::localize::ranking::Ranking;
use archrepair_onnx::localize::{localize, Request};
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::onnx::save_model;
use archrepair_onnx::onnx::tensor::encode_f32;
use tch::{Device, Kind, Tensor};

use crate::builders::{float, int, ints, model, node};
use crate::support::{repo_root, venv_python, with_fixed_batch};

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

fn subject() -> PathBuf {
    repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx")
}

fn fashion_mnist(limit: usize) -> Dataset {
    let mut data = data::open(&DataSource::new(FASHION_MNIST)).expect("Fashion-MNIST is installed by scripts/setup.sh");
    data.truncate(limit);
    data
}

/// Conv (groups 2, stride 2, asymmetric pads, bias) → BN → Relu → pool → Gemm, saved to `dir`.
fn grouped_conv_model(dir: &Path) -> PathBuf {
    let values = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| (((i * 37 + seed * 11) % 23) as f32 - 11.0) / 10.0).collect() };
    let nodes = vec![
        node("Conv", "conv", &["x", "w", "b"], &["c"], vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), ints("pads", &[0, 1, 1, 0]), int("group", 2)]),
        node("BatchNormalization", "bn", &["c", "g", "beta", "mu", "var"], &["n"], vec![]),
        node("Relu", "relu", &["n"], &["r"], vec![]),
        node("GlobalAveragePool", "pool", &["r"], &["p"], vec![]),
        node("Flatten", "flat", &["p"], &["f"], vec![]),
        node("Gemm", "fc", &["f", "fw", "fb"], &["y"], vec![int("transB", 1)]),
    ];
    let init = vec![
        encode_f32("w", &[4, 1, 3, 3], &values(36, 1)),
        encode_f32("b", &[4], &values(4, 2)),
        encode_f32("g", &[4], &[1.0, 0.5, 2.0, 1.5]),
        encode_f32("beta", &[4], &[0.1, -0.2, 0.0, 0.3]),
        encode_f32("mu", &[4], &[0.0, 0.1, -0.1, 0.2]),
        encode_f32("var", &[4], &[1.0, 2.0, 0.5, 1.0]),
        encode_f32("fw", &[3, 4], &values(12, 3)),
        encode_f32("fb", &[3], &values(3, 4)),
    ];
    let path = dir.join("grouped.onnx");
    save_model(&model(13, &[5, 2, 7, 6], nodes, init), &path).unwrap();
    path
}

#[test]
fn per_example_weight_gradient_norms_equal_one_backward_pass_per_example() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = LoadedModel::open(&grouped_conv_model(dir.path())).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let x = Tensor::randn([5, 2, 7, 6], (Kind::Float, Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 2, 1, 1, 0]);
    let nll = |out: &Tensor, y: &Tensor| out.log_softmax(-1, Kind::Float).f_nll_loss(y, None::<Tensor>, tch::Reduction::Sum, -100).unwrap();

    let names = ["x", "c", "f", "y"].map(String::from);
    let (out, captured) = lowered.forward_capture(&x, false, &names).unwrap();
    let loss = nll(&out, &labels);
    let deltas = Tensor::run_backward(&[&loss], &[&captured[1], &captured[3]], false, false);
    let conv = lowered.weight_grad_norms("conv", &captured[0], &deltas[0]).unwrap();
    let fc = lowered.weight_grad_norms("fc", &captured[2], &deltas[1]).unwrap();
    assert_eq!((conv.size(), fc.size()), (vec![5, 4], vec![5, 3]));

    let var = |onnx: &str| lowered.weights().iter().find(|w| w.onnx_name == onnx).unwrap().tensor.shallow_clone();
    let (w, b, fw, fb) = (var("w"), var("b"), var("fw"), var("fb"));
    for i in 0..5 {
        let out = lowered.forward_t(&x.narrow(0, i, 1), false).unwrap();
        let grads = Tensor::run_backward(&[nll(&out, &labels.narrow(0, i, 1))], &[&w, &b, &fw, &fb], false, false);
        // Per output unit: the weight slice that produces it, and its bias.
        let expected_conv = (grads[0].square().sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float) + grads[1].square()).sqrt();
        let expected_fc = (grads[2].square().sum_dim_intlist([1i64].as_slice(), false, Kind::Float) + grads[3].square()).sqrt();
        let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(diff(&conv.get(i), &expected_conv) < 1e-5, "example {i}: {conv} vs {expected_conv}");
        assert!(diff(&fc.get(i), &expected_fc) < 1e-5, "example {i}");
    }
}

/// x [N, 3, 1, 1] → conv_a (1x1, identity) → Relu → Add(x) → Relu → Flatten → fc (identity).
/// One residual block whose six neurons (conv_a's three channels, the exit's three) are active
/// exactly when their input channel is positive; the class is argmax(2x).
fn hand_set_model(dir: &Path) -> PathBuf {
    let nodes = vec![
        node("Conv", "block/conv_a", &["x", "wa"], &["a"], vec![ints("kernel_shape", &[1, 1])]),
        node("Relu", "block/relu_a", &["a"], &["ra"], vec![]),
        node("Add", "block/add", &["ra", "x"], &["s"], vec![]),
        node("Relu", "block/relu_out", &["s"], &["out"], vec![]),
        node("Flatten", "flat", &["out"], &["f"], vec![]),
        node("Gemm", "fc", &["f", "fw"], &["y"], vec![int("transB", 1)]),
    ];
    let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let init = vec![encode_f32("wa", &[3, 3, 1, 1], &identity), encode_f32("fw", &[3, 3], &identity)];
    let path = dir.join("hand_set.onnx");
    save_model(&model(13, &[-1, 3, 1, 1], nodes, init), &path).unwrap();
    path
}

fn run(model_path: &Path, data: &Dataset, collect: &CollectSpec, attack: &AttackSpec, localize_spec: &LocalizeSpec, seed: u64) -> Ranking {
    let loaded = LoadedModel::open(model_path).unwrap();
    let plan = input_plan(&loaded, &InputSpec::default(), data).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let request = Request {
        graph: &loaded.graph,
        model: &lowered,
        plan: &plan,
        data,
        collect,
        attack,
        localize: localize_spec,
        seed,
        progress: false,
        model_path,
    };
    localize(&request).unwrap()
}

#[test]
fn spectrum_counts_and_formulas_match_a_hand_computed_spectrum() {
    let dir = tempfile::tempdir().unwrap();
    let path = hand_set_model(dir.path());
    // (x0, x1, label), x2 = 0: failures are examples 1 and 3, the other three pass.
    let rows = [(1.0, 0.0, 0), (0.5, 0.0, 1), (0.0, 1.0, 1), (0.2, 0.6, 0), (0.9, 0.1, 0)];
    let rows_of = |r: usize| -> (f32, f32, i64) { rows[r] };
    let images: Vec<Image> = rows.iter().map(|&(a, b, _)| Image::new(1, 1, 3, vec![a, b, 0.0])).collect();
    let data = Dataset::from_images(Path::new("hand-set"), &images, rows.iter().map(|r| r.2).collect()).unwrap();
    let collect = CollectSpec { failures: 10, passing: Some(10) };
    let no_attack = AttackSpec { method: AttackMethod::None, ..AttackSpec::default() };
    // Channel 0 neurons: failing on {1, 3} both active; passing {0, 2, 4}: active on 0 and 4.
    // Channel 1 neurons: failing active on 3 only; passing active on 2 and 4.
    // Channel 2 neurons: never active, so every formula gives them 0.
    let (c0, c1) = ((2.0, 0.0, 2.0, 1.0), (1.0, 1.0, 2.0, 1.0));
    let expected = |f: fn(f64, f64, f64, f64) -> f64| (2.0 * f(c0.0, c0.1, c0.2, c0.3) + 2.0 * f(c1.0, c1.1, c1.2, c1.3)) / 6.0;
    let formulas: [(Formula, fn(f64, f64, f64, f64) -> f64); 4] = [
        (Formula::Ochiai, |af, nf, ap, _| af / ((af + nf) * (af + ap)).sqrt()),
        (Formula::Tarantula, |af, nf, ap, np| (af / (af + nf)) / (af / (af + nf) + ap / (ap + np))),
        (Formula::Dstar2, |af, nf, ap, _| af * af / (ap + nf)),
        (Formula::Dstar3, |af, nf, ap, _| af.powi(3) / (ap + nf)),
    ];
    for (formula, f) in formulas {
        let spec = LocalizeSpec { method: Method::Activation, formula, ..LocalizeSpec::default() };
        let ranking = run(&path, &data, &collect, &no_attack, &spec, 0);
        assert_eq!((ranking.failing_inputs, ranking.passing_inputs), (2, 3));
        let [block] = ranking.units.as_slice() else { panic!("one block expected: {:?}", ranking.units) };
        let evidence = block.evidence.as_ref().unwrap();
        assert_eq!(evidence.neurons, 6);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let means = [(evidence.af, 1.0), (evidence.nf, 1.0), (evidence.ap, 4.0 / 3.0), (evidence.np, 5.0 / 3.0)];
        assert!(means.iter().all(|&(a, b)| close(a, b)), "{evidence:?}");
        assert!((block.score - expected(f)).abs() < 1e-12, "{formula:?}: {} vs {}", block.score, expected(f));
    }
    // Agreement: the cosine of conv_a's weight gradients on the failing and the passing inputs.
    let loaded = LoadedModel::open(&path).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let wa = lowered.weights().iter().find(|w| w.onnx_name == "wa").unwrap().tensor.shallow_clone();
    let gradient = |rows: &[usize]| {
        let x: Vec<f32> = rows.iter().flat_map(|&r| [rows_of(r).0, rows_of(r).1, 0.0]).collect();
        let labels: Vec<i64> = rows.iter().map(|&r| rows_of(r).2).collect();
        let out = lowered.forward_t(&Tensor::from_slice(&x).reshape([rows.len() as i64, 3, 1, 1]), false).unwrap();
        let loss = out.log_softmax(-1, Kind::Float).f_nll_loss(&Tensor::from_slice(&labels), None::<Tensor>, tch::Reduction::Sum, -100).unwrap();
        Tensor::run_backward(&[loss], &[&wa], false, false).remove(0)
    };
    let (f, p) = (gradient(&[1, 3]), gradient(&[0, 2, 4]));
    let cosine = ((&f * &p).sum(Kind::Double) / (f.norm() * p.norm())).double_value(&[]);
    let spec = LocalizeSpec { method: Method::Agreement, ..LocalizeSpec::default() };
    let ranking = run(&path, &data, &collect, &no_attack, &spec, 0);
    assert!((ranking.units[0].score - cosine).abs() < 1e-5, "{} vs {cosine}", ranking.units[0].score);

    // Layer granularity ranks the conv and the Gemm; the Gemm's neurons are its logits.
    let spec = LocalizeSpec { method: Method::Activation, granularity: Granularity::Layer, ..LocalizeSpec::default() };
    let ranking = run(&path, &data, &collect, &no_attack, &spec, 0);
    let names: Vec<&str> = ranking.units.iter().map(|u| u.unit.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"block/conv_a") && names.contains(&"fc"), "{names:?}");
}

/// x [N, 3, 1, 1] → conv1 (1x1, keeps channels 0 and 1) → bn1 (ε 0.001) → Relu → conv2 (1x1 identity) → bn2
/// → Relu → Flatten → fc (always class 0), with the running statistics given as (mean, var) per
/// channel. γ = 1, β = 0.
fn two_norm_model(dir: &Path, bn1: [(f32, f32); 2], bn2: [(f32, f32); 2]) -> PathBuf {
    let nodes = vec![
        node("Conv", "conv1", &["x", "w1"], &["c1"], vec![ints("kernel_shape", &[1, 1])]),
        node("BatchNormalization", "bn1", &["c1", "g", "b", "m1", "v1"], &["n1"], vec![float("epsilon", 0.001)]),
        node("Relu", "relu1", &["n1"], &["r1"], vec![]),
        node("Conv", "conv2", &["r1", "w2"], &["c2"], vec![ints("kernel_shape", &[1, 1])]),
        node("BatchNormalization", "bn2", &["c2", "g", "b", "m2", "v2"], &["n2"], vec![]),
        node("Relu", "relu2", &["n2"], &["r2"], vec![]),
        node("Flatten", "flat", &["r2"], &["f"], vec![]),
        node("Gemm", "fc", &["f", "fw", "fb"], &["y"], vec![int("transB", 1)]),
    ];
    let identity = [1.0, 0.0, 0.0, 1.0];
    let init = vec![
        encode_f32("w1", &[2, 3, 1, 1], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        encode_f32("w2", &[2, 2, 1, 1], &identity),
        encode_f32("g", &[2], &[1.0, 1.0]),
        encode_f32("b", &[2], &[0.0, 0.0]),
        encode_f32("m1", &[2], &[bn1[0].0, bn1[1].0]),
        encode_f32("v1", &[2], &[bn1[0].1, bn1[1].1]),
        encode_f32("m2", &[2], &[bn2[0].0, bn2[1].0]),
        encode_f32("v2", &[2], &[bn2[0].1, bn2[1].1]),
        encode_f32("fw", &[2, 2], &[0.0; 4]),
        encode_f32("fb", &[2], &[1.0, 0.0]),
    ];
    let path = dir.join("two_norms.onnx");
    save_model(&model(13, &[-1, 3, 1, 1], nodes, init), &path).unwrap();
    path
}

#[test]
fn drift_scores_match_hand_computed_shifts_and_point_at_the_planted_statistics() {
    let dir = tempfile::tempdir().unwrap();
    // Channel means over the four inputs: 0.4 and 0.3 (and 0 in the ignored channel 2). Labels 0, 1, 0, 1 against a constant
    // prediction of 0: two failures, two passing inputs, all four measured.
    let pixels = [[0.2, 0.6], [0.6, 0.2], [0.4, 0.4], [0.4, 0.0]];
    let images: Vec<Image> = pixels.iter().map(|p| Image::new(1, 1, 3, vec![p[0], p[1], 0.0])).collect();
    let data = Dataset::from_images(Path::new("hand-set"), &images, vec![0, 1, 0, 1]).unwrap();
    let collect = CollectSpec { failures: 10, passing: Some(10) };
    let no_attack = AttackSpec { method: AttackMethod::None, ..AttackSpec::default() };
    let spec = LocalizeSpec { method: Method::Drift, granularity: Granularity::Layer, ..LocalizeSpec::default() };
    let means = |values: &[[f64; 2]]| [0, 1].map(|c| values.iter().map(|v| v[c]).sum::<f64>() / values.len() as f64);
    let shift = |mu: [f64; 2], stats: [(f32, f32); 2], eps: f64| {
        (0..2).map(|c| (mu[c] - stats[c].0 as f64).powi(2) / (stats[c].1 as f64 + eps)).sum::<f64>() / 2.0
    };
    let inputs: Vec<[f64; 2]> = pixels.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    // bn2 sees relu(bn1(x)).
    let after_bn1 = |stats: [(f32, f32); 2]| -> Vec<[f64; 2]> {
        inputs.iter().map(|x| [0, 1].map(|c| ((x[c] - stats[c].0 as f64) / (stats[c].1 as f64 + 0.001).sqrt()).max(0.0))).collect()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0);

    // (a) bn1's statistics are off (channel 0's mean by 0.1), bn2's fit what it sees.
    let bn1 = [(0.3, 0.01), (0.3, 0.04)];
    let fitted = means(&after_bn1(bn1));
    let bn2 = [(fitted[0] as f32, 1.0), (fitted[1] as f32, 1.0)];
    let ranking = run(&two_norm_model(dir.path(), bn1, bn2), &data, &collect, &no_attack, &spec, 0);
    let expected_bn1 = shift(means(&inputs), bn1, 0.001);
    assert!(close(expected_bn1, 0.5 * 0.01 / 0.011), "the hand computation itself: {expected_bn1}");
    let names: Vec<&str> = ranking.units.iter().map(|u| u.unit.name.as_str()).collect();
    assert_eq!(names, ["conv1", "conv2", "fc"], "the planted bn1 first; fc has no BatchNormalization (NaN, last)");
    let first = &ranking.units[0].drift.as_ref().unwrap()[0];
    assert_eq!(first.node, "bn1");
    assert!(close(first.shift, expected_bn1) && first.upstream_shift == 0.0, "{first:?}");
    assert!(close(ranking.units[0].score, expected_bn1 / 1e-4), "no upstream: the floor 1e-4 divides");
    let second = &ranking.units[1].drift.as_ref().unwrap()[0];
    assert!(second.shift < 1e-10 && close(second.upstream_shift, expected_bn1), "{second:?}");
    assert!(ranking.units[2].score.is_nan() && ranking.units[2].drift.as_ref().is_some_and(|d| d.is_empty()));

    // (b) bn1 fits its input exactly, bn2's channel-1 mean is off by 0.5: conv2 comes first.
    let bn1 = [(0.4, 0.01), (0.3, 0.04)];
    let fitted = means(&after_bn1(bn1));
    let bn2 = [(fitted[0] as f32, 2.0), (fitted[1] as f32 + 0.5, 0.5)];
    let ranking = run(&two_norm_model(dir.path(), bn1, bn2), &data, &collect, &no_attack, &spec, 0);
    assert_eq!(ranking.units[0].unit.name, "conv2");
    let drift = &ranking.units[0].drift.as_ref().unwrap()[0];
    let expected_bn2 = shift(fitted, bn2, 1e-5);
    assert!(close(drift.shift, expected_bn2) && close(expected_bn2, 0.25 / (0.5 + 1e-5) / 2.0), "{drift:?}");
    assert!(drift.upstream_shift < 1e-10 && close(drift.ratio, expected_bn2 / 1e-4), "{drift:?}");

    // A model without BatchNormalization: `drift` says so and names the alternative.
    let plain = hand_set_model(dir.path());
    let loaded = LoadedModel::open(&plain).unwrap();
    let plan = input_plan(&loaded, &InputSpec::default(), &data).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let request = Request { graph: &loaded.graph, model: &lowered, plan: &plan, data: &data, collect: &collect, attack: &no_attack, localize: &spec, seed: 0, progress: false, model_path: &plain };
    let message = localize(&request).unwrap_err().to_string();
    assert!(message.contains("hand_set.onnx") && message.contains("no BatchNormalization") && message.contains("method: spectrum"), "{message}");
    // In a comparison it is left out instead.
    let compare = LocalizeSpec { compare: true, ..LocalizeSpec::default() };
    let ranking = run(&plain, &data, &collect, &no_attack, &compare, 0);
    assert!(ranking.comparison.iter().all(|m| m.method != Method::Drift) && !ranking.comparison.is_empty());
}

/// Runs `check` with the Fashion-MNIST subject as a classifier and its first `count` test
/// images as a pixel batch with labels.
fn with_subject(count: usize, check: impl FnOnce(&Classifier, &Tensor, &Tensor)) {
    let data = fashion_mnist(count);
    let loaded = LoadedModel::open(&subject()).unwrap();
    let plan = input_plan(&loaded, &InputSpec::default(), &data).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let input = PixelInput::new(&plan, Device::Cpu).unwrap();
    let classifier = Classifier::new(&loaded.graph, &lowered, &input);
    let pixels = input.pixels(&data.images(0..data.len())).unwrap().pixels;
    check(&classifier, &pixels, &Tensor::from_slice(&data.labels));
}

/// Every weight and buffer of the lowered model, copied, with its `requires_grad` flag.
fn snapshot(model: &archrepair_onnx::lower::LoweredModel) -> Vec<(Tensor, bool)> {
    model.weights().iter().map(|w| (w.tensor.detach().copy(), w.tensor.requires_grad())).collect()
}

/// Every weight and buffer bit-identical to `before`, flags as they were, no gradient left.
fn assert_unchanged(model: &archrepair_onnx::lower::LoweredModel, before: &[(Tensor, bool)]) {
    for ((was, flag), w) in before.iter().zip(model.weights()) {
        assert!(was.equal(&w.tensor.detach()), "`{}` changed", w.onnx_name);
        assert_eq!(w.tensor.requires_grad(), *flag, "`{}`'s requires_grad", w.onnx_name);
        assert!(!w.tensor.grad().defined(), "`{}` accumulated a gradient", w.onnx_name);
    }
}

/// The Fashion-MNIST subject and its first `count` test images.
fn subject_and_data(count: usize) -> (PathBuf, LoadedModel, Dataset) {
    let path = subject();
    let loaded = LoadedModel::open(&path).unwrap();
    (path, loaded, fashion_mnist(count))
}

#[test]
fn localization_is_stable_for_a_seed_and_leaves_the_model_unchanged() {
    let (path, loaded, data) = subject_and_data(400);
    let plan = input_plan(&loaded, &InputSpec::default(), &data).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let before = snapshot(&lowered);
    let collect = CollectSpec { failures: 24, passing: Some(24) };
    let attack = AttackSpec { steps: 2, ..AttackSpec::default() };
    let spec = LocalizeSpec { compare: true, batch: 16, ..LocalizeSpec::default() };
    let request = |seed| Request {
        graph: &loaded.graph,
        model: &lowered,
        plan: &plan,
        data: &data,
        collect: &collect,
        attack: &attack,
        localize: &spec,
        seed,
        progress: false,
        model_path: &path,
    };
    let first = localize(&request(7)).unwrap();
    let again = localize(&request(7)).unwrap();
    let scores = |r: &Ranking| r.units.iter().map(|u| (u.unit.id, u.score)).collect::<Vec<_>>();
    assert_eq!(scores(&first), scores(&again));
    assert_eq!(first.comparison.len(), 12, "spectrum and activation × 4 formulas, agreement, gradient, drift, random");
    assert_eq!(first.units.len(), 9, "ResNet-20 has 9 blocks");
    assert!(first.attack.as_ref().is_some_and(|a| a.attacked == 24 && a.succeeded > 0));
    let other = localize(&request(8)).unwrap();
    assert_ne!(scores(&first), scores(&other), "another seed samples other passing inputs");

    assert_unchanged(&lowered, &before);
}

#[test]
fn probe_fine_tunes_each_block_alone_then_puts_every_weight_back() {
    let (path, loaded, data) = subject_and_data(400);
    let plan = input_plan(&loaded, &InputSpec::default(), &data).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let before = snapshot(&lowered);
    let collect = CollectSpec { failures: 24, passing: Some(24) };
    let attack = AttackSpec::default();
    let probe = |steps, lr, seed| {
        let spec = LocalizeSpec { method: Method::Probe, probe_steps: steps, probe_lr: lr, batch: 16, ..LocalizeSpec::default() };
        let request = Request { graph: &loaded.graph, model: &lowered, plan: &plan, data: &data, collect: &collect, attack: &attack, localize: &spec, seed, progress: false, model_path: &path };
        localize(&request).unwrap()
    };
    let scores = |r: &Ranking| r.units.iter().map(|u| (u.unit.id, u.score)).collect::<Vec<_>>();

    // A rate too small to move a float32 weight: nothing changes, so every block scores the
    // check half's accuracy before repair: its 12 failures wrong, its 12 passing inputs right.
    let still = probe(2, 1e-30, 7);
    assert_eq!(still.units.len(), 9);
    for u in &still.units {
        let p = u.probe.as_ref().unwrap();
        assert_eq!((u.score, p.repaired, p.broken), (0.5, 0.0, 0.0), "{}", u.unit.name);
    }

    // Real steps: the score is the check half's accuracy, repaired failures and kept passing
    // inputs alike (12 of each), and some block repairs some failures.
    let first = probe(6, 0.01, 7);
    for u in &first.units {
        let p = u.probe.as_ref().unwrap();
        assert!(p.params > 0, "{}", u.unit.name);
        assert!((u.score - (12.0 * p.repaired + 12.0 * (1.0 - p.broken)) / 24.0).abs() < 1e-12, "{}: {} vs {p:?}", u.unit.name, u.score);
    }
    assert!(first.units[0].probe.as_ref().unwrap().repaired > 0.0, "{first}");
    assert!(first.seconds.probe > 0.0);
    assert_eq!(scores(&first), scores(&probe(6, 0.01, 7)), "same seed, same halves and batches, same ranking");

    assert_unchanged(&lowered, &before);
}

#[test]
fn pgd_drives_the_fashion_mnist_subject_under_ten_percent_within_eps() {
    with_subject(300, |classifier, pixels, labels| {
        let attack = Attack::resolve(&AttackSpec::default(), [28, 28, 1]).unwrap();
        assert_eq!((attack.method, attack.eps, attack.steps), (AttackMethod::Pgd, 0.1, 10));
        let accuracy = |p: &Tensor| classifier.predict(p).unwrap().eq_tensor(labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        let rows: Vec<usize> = (0..pixels.size()[0] as usize).collect();
        let adversarial = attack.run(classifier, pixels, labels, 0, &rows).unwrap();
        let (clean, attacked) = (accuracy(pixels), accuracy(&adversarial));
        assert!(clean > 0.8, "clean accuracy {clean}");
        assert!(attacked < 0.10, "PGD eps 0.1 leaves {attacked} accuracy");
        let distance = (&adversarial - pixels).abs().max().double_value(&[]);
        assert!(distance <= 0.1 + 1e-6, "moved {distance}");
        assert!(adversarial.min().double_value(&[]) >= 0.0 && adversarial.max().double_value(&[]) <= 1.0);
    });
}

#[test]
fn fgsm_and_pgd_match_the_pytorch_reference() {
    with_subject(64, |classifier, pixels, labels| {
        let labels_vec = Vec::<i64>::try_from(labels).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let save = |name: &str, t: &Tensor| {
            let values = Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap();
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            data::npy::write_npy(&dir.path().join(name), &shape, &values).unwrap();
        };
        save("x.npy", pixels);
        data::npy::write_npy(&dir.path().join("y.npy"), &[labels_vec.len()], &labels_vec).unwrap();
        let status = Command::new(venv_python())
            .arg(repo_root().join("fixtures/attack_reference.py"))
            .args(["--model", subject().to_str().unwrap(), "--eps", "0.1", "--steps", "5", "--step-size", "0.025"])
            .arg("--images")
            .arg(dir.path().join("x.npy"))
            .arg("--labels")
            .arg(dir.path().join("y.npy"))
            .arg("--out")
            .arg(dir.path())
            .status()
            .expect("the venv's python runs (scripts/setup.sh)");
        assert!(status.success());
        let reference = |name: &str| {
            let values = data::npy::NpyArray::read(&dir.path().join(name)).unwrap().into_values().unwrap();
            let values: Vec<f32> = match values {
                data::npy::Values::F32(v) => v,
                other => panic!("{name}: float32 expected, got {other:?}"),
            };
            Tensor::from_slice(&values).reshape(pixels.size())
        };
        let fgsm = Attack { method: AttackMethod::Fgsm, eps: 0.1, step_size: 0.1, steps: 1, random_start: false };
        let pgd = Attack { method: AttackMethod::Pgd, eps: 0.1, step_size: 0.025, steps: 5, random_start: false };
        for (attack, file, tolerance) in [(fgsm, "fgsm.npy", 1e-5), (pgd, "pgd.npy", 1e-5)] {
            let ours = attack.run(classifier, pixels, labels, 0, &[]).unwrap();
            let diff = (&ours - reference(file)).abs();
            let (max, differing) = (diff.max().double_value(&[]), diff.gt(tolerance).sum(Kind::Int64).int64_value(&[]));
            assert!(max <= tolerance, "{file}: max |ours - PyTorch| = {max:e} on {differing} of {} pixels", pixels.numel());
        }
    });
}

#[test]
fn localize_command_writes_the_ranking_and_never_overwrites_it_silently() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loc");
    let bin = env!("CARGO_BIN_EXE_archrepair-onnx");
    let args = |extra: &[&str]| {
        let mut c = Command::new(bin);
        // The data come from the embedded default's spec.
        c.arg("localize").arg(subject()).arg("--spec").arg(repo_root().join("fixtures/specs/fashion_mnist_resnet20.yaml"));
        c.args(["--limit", "300", "--failures", "20", "--attack", "fgsm", "--compare"]);
        c.arg("--out").arg(&out).args(extra);
        c.output().unwrap()
    };
    let first = args(&["--json"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("ranking.json")).unwrap()).unwrap();
    assert_eq!(printed, written);
    assert_eq!(written["format"], 1);
    assert_eq!(written["units"].as_array().unwrap().len(), 9);
    assert_eq!(written["collect"]["failures"], 20);
    assert_eq!(written["attack"]["method"], "fgsm");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/ranking.schema.json")).unwrap()).unwrap();
    let problems = crate::json_schema::violations(&schema, &written);
    assert!(problems.is_empty(), "ranking.json does not match its schema: {problems:#?}");
    let svg = std::fs::read_to_string(out.join("ranking.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<rect").count() >= 10, "one bar per block");

    // `drift` adds each unit's BatchNormalization evidence, in the same schema.
    let drift_out = dir.path().join("drift");
    let drift = Command::new(bin)
        .arg("localize")
        .arg(subject())
        .arg("--spec")
        .arg(repo_root().join("fixtures/specs/fashion_mnist_resnet20.yaml"))
        .args(["--limit", "300", "--failures", "20", "--method", "drift", "--json", "--out"])
        .arg(&drift_out)
        .output()
        .unwrap();
    assert!(drift.status.success(), "{}", String::from_utf8_lossy(&drift.stderr));
    let drift: serde_json::Value = serde_json::from_slice(&drift.stdout).unwrap();
    for unit in drift["units"].as_array().unwrap() {
        let norms = unit["drift"].as_array().unwrap();
        assert!((2..=3).contains(&norms.len()), "a basic block has two BatchNormalizations (three with a projection): {unit}");
        assert!(norms.iter().all(|n| n["node"].as_str().unwrap().ends_with("BatchNormalization")), "{unit}");
    }
    let problems = crate::json_schema::violations(&schema, &drift);
    assert!(problems.is_empty(), "the drift ranking does not match the schema: {problems:#?}");

    // `probe` adds each unit's fine-tune outcome, in the same schema.
    let probe = Command::new(bin)
        .arg("localize")
        .arg(subject())
        .arg("--spec")
        .arg(repo_root().join("fixtures/specs/fashion_mnist_resnet20.yaml"))
        .args(["--limit", "300", "--failures", "20", "--method", "probe", "--json", "--out"])
        .arg(dir.path().join("probe"))
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    let probe: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert!(probe["units"].as_array().unwrap().iter().all(|u| u["probe"]["params"].as_i64().unwrap() > 0), "{probe}");
    assert!(probe["seconds"]["probe"].as_f64().unwrap() > 0.0);
    let problems = crate::json_schema::violations(&schema, &probe);
    assert!(problems.is_empty(), "the probe ranking does not match the schema: {problems:#?}");

    let again = args(&[]);
    assert_eq!(again.status.code(), Some(2));
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(message.contains("ranking.json") && message.contains("--force"), "{message}");
    assert!(args(&["--force"]).status.success());

    // No data anywhere: the error says where to put it.
    let none = Command::new(bin).arg("localize").arg(subject()).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--data"));
}

#[test]
fn a_model_with_a_fixed_batch_size_gets_filled_batches_and_the_same_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = with_fixed_batch(&subject(), dir.path(), 4);
    let data = fashion_mnist(200);
    // 10 failures and 10 passing inputs: batches of 4, 4 and 2 filled up to 4.
    let collect = CollectSpec { failures: 10, passing: Some(10) };
    // PGD with its random start: each example's start depends on its index, not its batch.
    let attack = AttackSpec { steps: 2, ..AttackSpec::default() };
    let spec = LocalizeSpec { batch: 64, ..LocalizeSpec::default() };
    let (ours, free) = (run(&fixed, &data, &collect, &attack, &spec, 1), run(&subject(), &data, &collect, &attack, &spec, 1));
    assert_eq!((ours.failing_inputs, ours.passing_inputs), (free.failing_inputs, free.passing_inputs));
    assert!(ours.input.contains("[4, 1, 28, 28]"), "{}", ours.input);
    for (a, b) in ours.units.iter().zip(&free.units) {
        assert_eq!(a.unit.id, b.unit.id);
        assert!((a.score - b.score).abs() < 1e-6, "block {}: {} vs {}", a.unit.id, a.score, b.score);
    }
}
