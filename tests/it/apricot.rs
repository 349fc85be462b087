//! The Apricot baseline on a BatchNormalization → Gemm classifier of 2-D points: one adaptation
//! step checked against the paper's formulas with planted reduced models, a whole run that fixes
//! planted failures without moving BatchNormalization statistics, one that beats nothing and
//! puts the subject's weights back, and same seed, same result.

use std::path::{Path, PathBuf};

use archrepair_onnx::baselines::apricot::{self, ApricotLog, ReducedModels};
use archrepair_onnx::baselines::Context;
use archrepair_onnx::data::{Fit, InputPlan, Layout};
use archrepair_onnx::localize::classifier::Classifier;
use archrepair_onnx::localize::pixels::PixelInput;
use archrepair_onnx::lower::{LoweredModel, Role};
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::onnx::save_model;
use archrepair_onnx::onnx::tensor::encode_f32;
use archrepair_onnx::search::data::RepairData;
use archrepair_onnx::spec::Spec;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;
use tch::{Device, Tensor};

use crate::builders::{int, model, node};

/// x [N, 2, 1, 1] → BatchNormalization (statistics mu, var) → Flatten → Gemm (fw [3, 2], fb):
/// three classes of 2-D points.
fn tiny_model(dir: &Path, fw: [f32; 6], fb: [f32; 3]) -> PathBuf {
    let nodes = vec![
        node("BatchNormalization", "bn", &["x", "g", "beta", "mu", "var"], &["n"], vec![]),
        node("Flatten", "flat", &["n"], &["f"], vec![]),
        node("Gemm", "fc", &["f", "fw", "fb"], &["y"], vec![int("transB", 1)]),
    ];
    let init = vec![
        encode_f32("g", &[2], &[1.0, 1.0]),
        encode_f32("beta", &[2], &[0.0, 0.0]),
        encode_f32("mu", &[2], &[0.0, 0.0]),
        encode_f32("var", &[2], &[1.0, 1.0]),
        encode_f32("fw", &[3, 2], &fw),
        encode_f32("fb", &[3], &fb),
    ];
    let path = dir.join("tiny.onnx");
    save_model(&model(13, &[-1, 2, 1, 1], nodes, init), &path).unwrap();
    path
}

/// Feeds the points as they are (no scaling or normalisation).
fn plan() -> InputPlan {
    InputPlan { input: "x".into(), layout: Layout::Nchw, channels: 2, height: 1, width: 1, batch: None, scale: 1.0, mean: vec![0.0; 2], std: vec![1.0; 2], fit: Fit::Exact, grey_to_rgb: false, data: [1, 1, 2] }
}

/// Repair data of `points` [N, 2] with `labels`: the first `failures` rows are D_fail; the
/// rows `holdout` are held out, every other row is trained on.
fn repair_data(points: &Tensor, labels: &[i64], failures: usize, holdout: std::ops::Range<i64>) -> RepairData {
    let n = labels.len() as i64;
    RepairData {
        pixels: points.reshape([n, 2, 1, 1]),
        labels: Tensor::from_slice(labels),
        failures,
        half_a: Vec::new(),
        half_b: Vec::new(),
        training: (0..n).filter(|r| !holdout.contains(r)).collect(),
        holdout: holdout.collect(),
        teacher: None,
    }
}

fn spec(yaml: &str, seed: u64) -> Spec {
    let mut spec = Spec::from_yaml(&format!("version: 1\n{yaml}")).unwrap();
    spec.seed = seed;
    spec
}

/// Runs `f` with a Context of the model at `path` on `data`.
fn with_context<T>(path: &Path, data: &RepairData, spec: &Spec, f: impl FnOnce(&Context, &LoweredModel) -> T) -> T {
    let loaded = LoadedModel::open(path).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let input = PixelInput::new(&plan(), Device::Cpu).unwrap();
    let classifier = Classifier::new(&loaded.graph, &lowered, &input);
    let ctx = Context { graph: &loaded.graph, model: &lowered, classifier: &classifier, data, chosen: None, spec, progress: false, model_path: path };
    f(&ctx, &lowered)
}

fn copies(model: &LoweredModel, role: Role) -> Vec<(String, Tensor)> {
    model.weights().iter().filter(|w| w.role == role).map(|w| (w.onnx_name.clone(), w.tensor.detach().copy())).collect()
}

/// A model's trainable weights with `fw` and `fb` replaced (BatchNormalization's kept).
fn planted(model: &LoweredModel, fw: [f32; 6], fb: [f32; 3]) -> Vec<Tensor> {
    copies(model, Role::Trainable)
        .into_iter()
        .map(|(name, t)| match name.as_str() {
            "fw" => Tensor::from_slice(&fw).reshape([3, 2]),
            "fb" => Tensor::from_slice(&fb),
            _ => t,
        })
        .collect()
}

// Subject and four rDLMs, all values multiples of 1/4 so every formula below is exact in f32.
// Failure row 0 is x = (1, 0), label 0; failure row 1 is x = (0, 1), label 2. The logits of x =
// (1, 0) are column 0 of fw plus fb, those of (0, 1) column 1 plus fb.
const SUBJECT: ([f32; 6], [f32; 3]) = ([0.5, 0.0, 1.0, 1.0, 0.0, 0.5], [0.0, 0.25, 0.0]); // row 0 → 1, row 1 → 1
const RDLM_A: ([f32; 6], [f32; 3]) = ([2.0, 0.0, 0.5, 1.0, 0.0, 0.25], [0.25, 0.0, 0.0]); // row 0 → 0 (right), row 1 → 1
const RDLM_B: ([f32; 6], [f32; 3]) = ([1.5, 0.5, 1.0, 1.5, 0.5, 0.0], [0.0, 0.0, 0.25]); // row 0 → 0 (right), row 1 → 1
const RDLM_C: ([f32; 6], [f32; 3]) = ([0.0, 1.0, 1.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0]); // row 0 → 1, row 1 → 0
const RDLM_D: ([f32; 6], [f32; 3]) = ([0.5, 0.0, 0.5, 2.0, 1.0, 1.0], [0.0, 0.0, 0.25]); // row 0 → 2, row 1 → 1

#[test]
fn one_adaptation_step_follows_the_papers_formulas_with_planted_rdlms() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), SUBJECT.0, SUBJECT.1);
    let points = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).reshape([3, 2]);
    let data = repair_data(&points, &[0, 2, 0], 2, 2..3);

    // (strategy, batch, failure rows adapted on, expected w' from w and the rDLMs A..D).
    type Expected = fn(&Tensor, [&Tensor; 4]) -> Tensor;
    let lr = 0.25;
    let cases: [(u8, usize, &[i64], Expected); 6] = [
        // Strategy 1, some rDLM right (A, B): toward their mean.
        (1, 1, &[0], |w, [a, b, _, _]| w - (w - (a + b) / 2.0) * 0.25),
        // Strategy 1, none right: away from the mean of all (the wrong ones).
        (1, 1, &[1], |w, [a, b, c, d]| w + (w - (a + b + c + d) / 4.0) * 0.25),
        // Strategy 2, some wrong (C, D): away from their mean.
        (2, 1, &[0], |w, [_, _, c, d]| w + (w - (c + d) / 2.0) * 0.25),
        // Strategy 3: both moves.
        (3, 1, &[0], |w, [a, b, c, d]| w - (w - (a + b) / 2.0) * 0.25 + (w - (c + d) / 2.0) * 0.25),
        (3, 1, &[1], |w, [a, b, c, d]| w + (w - (a + b + c + d) / 4.0) * 0.25),
        // A batch of both failures: the mean of their two strategy-1 moves.
        (1, 2, &[0, 1], |w, [a, b, c, d]| w + ((w - (a + b + c + d) / 4.0) - (w - (a + b) / 2.0)) * (0.25 / 2.0)),
    ];
    for (strategy, batch, rows, expected) in cases {
        let spec = spec(&format!("apricot: {{strategy: {strategy}, batch: {batch}, lr: {lr}}}"), 0);
        with_context(&path, &data, &spec, |ctx, model| {
            let rdlm_weights: Vec<Vec<Tensor>> = [RDLM_A, RDLM_B, RDLM_C, RDLM_D].iter().map(|(fw, fb)| planted(model, *fw, *fb)).collect();
            let rdlms = ReducedModels::from_weights(ctx, rdlm_weights).unwrap();
            assert_eq!(rdlms.failure_rows, vec![0, 1]);
            assert_eq!(rdlms.right, vec![vec![true, false], vec![true, false], vec![false, false], vec![false, false]], "which rDLMs classify each failure right");
            let before = copies(model, Role::Trainable);
            assert!(before.iter().zip(apricot::trainable(model)).all(|((_, b), t)| b.equal(&t)), "scoring the rDLMs puts the subject's weights back");

            let (with_correct, updates) = apricot::adapt(ctx, &rdlms, rows).unwrap();
            assert_eq!(updates, rows.len().div_ceil(batch));
            assert_eq!(with_correct, rows.iter().filter(|&&r| r == 0).count());
            for (t, ((name, w), now)) in before.iter().zip(apricot::trainable(model)).enumerate() {
                let r = |j: usize| &rdlms.weights[j][t];
                let want = expected(w, [r(0), r(1), r(2), r(3)]);
                assert!(now.equal(&want), "strategy {strategy}, batch {batch}, rows {rows:?}: `{name}` is {now} instead of {want}");
            }
            // The planted rDLMs differ in fw, so every case moves it.
            let fw = |weights: &[(String, Tensor)]| weights.iter().find(|(n, _)| n == "fw").unwrap().1.shallow_clone();
            assert!(!fw(&before).equal(&fw(&copies(model, Role::Trainable))), "strategy {strategy}, rows {rows:?}: fw did not move");
        });
    }
}

/// 3 clusters of 2-D points (centres (2, 0), (0, 2), (-2, -2), spread 0.4), `n` per class.
/// Our own seeded generator: libtorch's global one is shared by the tests running in parallel.
fn clusters(n: i64, seed: u64) -> (Tensor, Vec<i64>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let centres = [[2.0f32, 0.0], [0.0, 2.0], [-2.0, -2.0]];
    let labels: Vec<i64> = (0..3 * n).map(|i| i % 3).collect();
    let points: Vec<f32> = labels.iter().flat_map(|&c| centres[c as usize]).map(|v| v + 0.4 * rng.sample::<f32, _>(StandardNormal)).collect();
    (Tensor::from_slice(&points).reshape([3 * n, 2]), labels)
}

/// The rows of `points` the model at `path` gets wrong.
fn misclassified(path: &Path, points: &Tensor, labels: &[i64]) -> Vec<i64> {
    let loaded = LoadedModel::open(path).unwrap();
    let lowered = loaded.lower(Device::Cpu).unwrap();
    let n = labels.len() as i64;
    let predicted = lowered.forward_t(&points.reshape([n, 2, 1, 1]), false).unwrap().argmax(-1, false);
    let predicted = Vec::<i64>::try_from(predicted).unwrap();
    (0..n).filter(|&i| predicted[i as usize] != labels[i as usize]).collect()
}

/// D_fail (the subject's mistakes among fresh points, or `planted` rows) first, then 300
/// training points, then 90 held-out points.
fn cluster_data(path: &Path, mislabel: bool) -> RepairData {
    let (pool, pool_labels) = clusters(100, 1);
    let (fail_rows, fail_labels): (Vec<i64>, Vec<i64>) = if mislabel {
        // Points of class 0 labelled 1: no model right on them and on the clusters.
        ((0..20).map(|i| 3 * i).collect(), vec![1; 20])
    } else {
        let wrong = misclassified(path, &pool, &pool_labels);
        let rows: Vec<i64> = wrong.into_iter().take(20).collect();
        let labels = rows.iter().map(|&r| pool_labels[r as usize]).collect();
        (rows, labels)
    };
    assert!(fail_rows.len() >= 10, "the subject gets enough of the pool wrong: {}", fail_rows.len());
    let failures = pool.index_select(0, &Tensor::from_slice(&fail_rows));
    let (train, train_labels) = clusters(100, 2);
    let (held, held_labels) = clusters(30, 3);
    let points = Tensor::cat(&[failures, train, held], 0);
    let labels: Vec<i64> = fail_labels.iter().chain(&train_labels).chain(&held_labels).copied().collect();
    let n = labels.len() as i64;
    repair_data(&points, &labels, fail_rows.len(), n - 90..n)
}

const RUN: &str = "train: {batch: 16}
apricot: {rdlms: 4, rdlm_fraction: 0.5, rdlm_epochs: 2, rdlm_lr: 0.05, lr: 0.1, batch: 4, iterations: 2, retrain_epochs: 2, retrain_lr: 0.05}";

/// Apricot on the model at `path`: its log, the BatchNormalization buffers and the trainable
/// weights before and after, and the held-out accuracy of the weights it leaves.
#[allow(clippy::type_complexity)]
fn run(path: &Path, data: &RepairData, seed: u64) -> (ApricotLog, [Vec<(String, Tensor)>; 4], usize) {
    let spec = spec(RUN, seed);
    with_context(path, data, &spec, |ctx, model| {
        let (buffers, weights) = (copies(model, Role::Buffer), copies(model, Role::Trainable));
        let log = apricot::repair(ctx).unwrap();
        let failures_right = (0..data.failures as i64).filter(|&r| {
            let (x, y) = data.batch(&[r]).unwrap();
            ctx.classifier.predict(&x).unwrap().equal(&y)
        });
        let right = failures_right.count();
        let holdout_right = data.holdout.iter().filter(|&&r| {
            let (x, y) = data.batch(&[r]).unwrap();
            ctx.classifier.predict(&x).unwrap().equal(&y)
        });
        let after_accuracy = holdout_right.count() as f64 / data.holdout.len() as f64;
        assert_eq!(after_accuracy, log.holdout_accuracy_after, "the log's accuracy after is that of the weights left in the model");
        for w in model.weights() {
            assert!(!w.tensor.grad().defined(), "`{}` has a .grad after Apricot", w.onnx_name);
        }
        (log, [buffers, weights, copies(model, Role::Buffer), copies(model, Role::Trainable)], right)
    })
}

fn same(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && x.equal(y))
}

#[test]
fn apricot_fixes_planted_failures_without_moving_bn_statistics_and_same_seed_same_result() {
    let dir = tempfile::tempdir().unwrap();
    // Class 0's weights too weak and class 1's bias too high: about a quarter of class 0 is
    // taken for class 1.
    let path = tiny_model(dir.path(), [0.5, 0.0, 0.0, 2.0, -2.0, -2.0], [0.0, 0.5, -4.0]);
    let data = cluster_data(&path, false);
    let (log, [buffers, weights, buffers_after, weights_after], right) = run(&path, &data, 7);

    assert!(log.holdout_accuracy_before < 1.0, "the subject leaves room on the held-out points: {log:?}");
    assert!(log.kept && log.holdout_accuracy_after > log.holdout_accuracy_before, "Apricot improves the held-out accuracy: {log:#?}");
    assert!(right > 0, "some planted failures are fixed: {log:#?}");
    assert_eq!(log.failures, data.failures);
    assert_eq!(log.rdlms.len(), 4);
    let rdlm_rows = (data.training.len() as f64 * 0.5).round() as usize;
    assert!(log.rdlms.iter().all(|r| r.rows == rdlm_rows && !r.diverged && r.holdout_accuracy > 0.0), "{:?}", log.rdlms);
    assert_eq!(log.iterations.len(), 2);
    assert_eq!(log.iterations[0].failing_before, data.failures, "every failure is wrong at the start");
    assert!(log.iterations[0].with_correct_rdlm <= log.iterations[0].failing_before);
    assert!(same(&buffers, &buffers_after) && buffers.len() == 2, "BatchNormalization statistics are bit-identical");
    assert!(!same(&weights, &weights_after), "the trainable weights moved");

    // Same seed, same result.
    let (again, [_, _, _, weights_again], _) = run(&path, &data, 7);
    let strip = |log: &ApricotLog| {
        let mut log = log.clone();
        log.seconds = 0.0;
        log.iterations.iter_mut().for_each(|i| i.seconds = 0.0);
        log
    };
    assert_eq!(strip(&log), strip(&again));
    assert!(same(&weights_after, &weights_again), "same seed, same weights");
}

#[test]
fn apricot_puts_the_subjects_weights_back_when_nothing_beats_it() {
    let dir = tempfile::tempdir().unwrap();
    // Nearest-centre weights: every clean point right; D_fail are class-0 points labelled 1.
    let path = tiny_model(dir.path(), [2.0, 0.0, 0.0, 2.0, -2.0, -2.0], [-2.0, -2.0, -4.0]);
    let data = cluster_data(&path, true);
    let (log, [buffers, weights, buffers_after, weights_after], _) = run(&path, &data, 3);
    assert_eq!(log.holdout_accuracy_before, 1.0, "the subject is perfect on the held-out points");
    assert!(!log.kept && log.best_iteration.is_none(), "{log:#?}");
    assert_eq!(log.iterations.len(), 2, "the iterations ran");
    assert!(log.iterations.iter().all(|i| i.updates > 0), "{log:#?}");
    assert_eq!(log.holdout_accuracy_after, 1.0);
    assert!(same(&weights, &weights_after), "the subject's weights are back, bit for bit");
    assert!(same(&buffers, &buffers_after));
}

#[test]
fn apricot_refuses_a_bad_spec_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), SUBJECT.0, SUBJECT.1);
    let points = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).reshape([3, 2]);
    let data = repair_data(&points, &[0, 2, 0], 2, 2..3);
    for (yaml, key) in [("apricot: {strategy: 4}", "apricot.strategy"), ("apricot: {rdlms: 0}", "apricot.rdlms"), ("apricot: {rdlm_fraction: 1.5}", "apricot.rdlm_fraction")] {
        let spec = spec(yaml, 0);
        let error = with_context(&path, &data, &spec, |ctx, _| apricot::repair(ctx).unwrap_err().to_string());
        assert!(error.contains(key), "{yaml}: {error}");
    }
    let empty_holdout = repair_data(&points, &[0, 2, 0], 2, 3..3);
    let error = with_context(&path, &empty_holdout, &spec("", 0), |ctx, _| apricot::repair(ctx).unwrap_err().to_string());
    assert!(error.contains("held-out"), "{error}");
}
