//! The repair search: the cell spliced into every block kind of the fixtures, a splice that
//! reproduces the original exactly, a tiny search on the Fashion-MNIST subject (backbone
//! untouched, α moving, seeded, resumable), and the command through the binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use archrepair_onnx::commands::eval::input_plan;
use archrepair_onnx::data::{self, Dataset, DataSource, Split};
use archrepair_onnx::detect::detect;
use archrepair_onnx::lower::Role;
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::search::net::SplicedNet;
use archrepair_onnx::search::ops::OpKind;
use archrepair_onnx::search::options::BlockChoice;
use archrepair_onnx::search::target::Target;
use archrepair_onnx::localize::options::Granularity;
use archrepair_onnx::search::metrics::predictions;
use archrepair_onnx::search::{choose, search, Outcome, Request};
use archrepair_onnx::localize::classifier::Classifier;
use archrepair_onnx::localize::pixels::PixelInput;
use archrepair_onnx::spec::Spec;
use tch::{Device, Kind, Tensor};

use crate::support::{fixture_models, repo_root, with_fixed_batch};

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

fn subject() -> PathBuf {
    repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx")
}

fn fashion_mnist(split: Split, limit: usize) -> Dataset {
    let mut data = data::open(&DataSource { split, ..DataSource::new(FASHION_MNIST) }).expect("Fashion-MNIST is installed by scripts/setup.sh");
    data.truncate(limit);
    data
}

/// One fixture model per architecture (TorchScript export, opset 13, BN kept).
fn one_model_per_architecture() -> Vec<PathBuf> {
    let models: Vec<PathBuf> = fixture_models().into_iter().filter(|p| p.to_string_lossy().ends_with("_ts_op13_bn.onnx")).collect();
    assert!(models.len() >= 7, "fixtures/models holds the seven architectures");
    models
}

#[test]
fn the_cell_drops_into_each_block_kind_of_the_fixtures() {
    let mut kinds_seen = BTreeSet::new();
    for path in one_model_per_architecture() {
        let model = LoadedModel::open(&path).unwrap();
        let lowered = model.lower(Device::Cpu).unwrap();
        let shape = model.graph.inputs[0].shape.as_ref().unwrap();
        let dims: Vec<i64> = std::iter::once(2).chain(shape.iter().skip(1).map(|d| d.known().unwrap_or(1))).collect();
        let x = Tensor::randn(dims.as_slice(), (Kind::Float, Device::Cpu));
        let reference = lowered.predict(&x).unwrap();
        let detection = detect(&model.graph);
        // The first block of each (kind, shortcut) in this model.
        let mut seen_here = BTreeSet::new();
        for block in detection.blocks.iter().filter(|b| seen_here.insert((b.kind.as_str(), b.shortcut.as_str()))) {
            for keep_shortcut in [true, false] {
                let what = format!("{} block {} ({:?}, {:?}, keep_shortcut {keep_shortcut})", path.display(), block.id, block.kind, block.shortcut);
                let target = Target::new(&model.graph, block, keep_shortcut).unwrap_or_else(|e| panic!("{what}: {e}"));
                let splice = lowered.splice(&target.entry, &target.tensor).unwrap_or_else(|e| panic!("{what}: {e}"));

                // Splicing in what the original computes gives the original output exactly.
                let (_, captured) = lowered.forward_capture(&x, false, &[target.tensor.clone()]).unwrap();
                let same = lowered.forward_spliced(&x, false, &splice, &mut |_| Ok(captured[0].shallow_clone())).unwrap();
                assert!(same.equal(&reference), "{what}: a splice of the original value changes the output");

                // The search cell fits the replaced tensor's shape and stride, and α get gradients.
                let plan_input = PixelInput::new(&identity_plan(&dims), Device::Cpu).unwrap();
                let classifier = Classifier::new(&model.graph, &lowered, &plan_input);
                let net = SplicedNet::search(&classifier, &splice, target.cell_shape(None, 2), &[OpKind::SkipConnect, OpKind::SepConv3x3, OpKind::AvgPool3x3]);
                let mut cell_out = None;
                let weights = net.alpha.as_ref().unwrap().softmax(-1, Kind::Float);
                let y = lowered
                    .forward_spliced(&x, false, &splice, &mut |entry| {
                        let out = net.cell.forward_t(entry, Some(&weights), true);
                        cell_out = Some(out.size());
                        Ok(out)
                    })
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(y.size(), reference.size(), "{what}");
                assert_eq!(cell_out.unwrap()[1..], captured[0].size()[1..], "{what}: the cell's output shape");
                let grad = Tensor::run_backward(&[y.square().sum(Kind::Float)], &[net.alpha.as_ref().unwrap()], false, false).remove(0);
                assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{what}: α get no gradient");
                kinds_seen.insert(format!("{:?}/{:?}/{}", block.kind, block.shortcut, target.keeps_shortcut));
            }
        }
    }
    // Basic and bottleneck with both shortcuts, inverted residual, dense, plain stage.
    assert!(kinds_seen.len() >= 8, "block kinds covered: {kinds_seen:?}");
}

/// An input plan that feeds the tensor as is (these tests call the lowered model directly).
fn identity_plan(dims: &[i64]) -> archrepair_onnx::data::InputPlan {
    archrepair_onnx::data::InputPlan {
        input: "x".into(),
        layout: archrepair_onnx::data::Layout::Nchw,
        channels: dims[1] as usize,
        height: dims[2] as usize,
        width: dims[3] as usize,
        batch: None,
        scale: 1.0,
        mean: vec![0.0; dims[1] as usize],
        std: vec![1.0; dims[1] as usize],
        fit: archrepair_onnx::data::Fit::Exact,
        grey_to_rgb: false,
        data: [dims[2] as usize, dims[3] as usize, dims[1] as usize],
    }
}

/// A search small enough for a test: block 7 of the subject (64x7x7), a few steps.
fn tiny_spec(seed: u64) -> Spec {
    let mut spec = Spec::from_yaml(
        "version: 1
collect: {failures: 48}
search:
  block: 7
  nodes: 2
  ops: [none, skip_connect, avg_pool_3x3, sep_conv_3x3]
  epochs: 2
  batch: 16
  alpha_lr: 0.03
  train_images: 96
  holdout: 0.1
train: {epochs: 1, batch: 16}
",
    )
    .unwrap();
    spec.seed = seed;
    spec
}

struct Fixture {
    model: LoadedModel,
    eval: Dataset,
    train: Dataset,
}

fn fixture() -> Fixture {
    Fixture { model: LoadedModel::open(&subject()).unwrap(), eval: fashion_mnist(Split::Test, 400), train: fashion_mnist(Split::Train, 400) }
}

/// The search request of the fixture, without a checkpoint.
fn request<'a>(f: &'a Fixture, lowered: &'a archrepair_onnx::lower::LoweredModel, plan: &'a archrepair_onnx::data::InputPlan, spec: &'a Spec, model_path: &'a Path) -> Request<'a> {
    Request {
        graph: &f.model.graph,
        model: lowered,
        plan,
        eval: &f.eval,
        train: &f.train,
        extra: &[],
        spec,
        progress: false,
        model_path,
        checkpoint: None,
        resume: false,
        chosen: None,
    }
}

fn run_search(f: &Fixture, spec: &Spec, checkpoint: Option<&Path>, resume: bool) -> (Outcome, Vec<(String, Tensor)>, Vec<(String, Tensor)>) {
    let lowered = f.model.lower(Device::Cpu).unwrap();
    let plan = input_plan(&f.model, &spec.input, &f.eval).unwrap();
    let state = |lowered: &archrepair_onnx::lower::LoweredModel| -> Vec<(String, Tensor)> {
        lowered.weights().iter().map(|w| (w.onnx_name.clone(), w.tensor.detach().copy())).collect()
    };
    let before = state(&lowered);
    let model_path = subject();
    let outcome = search(&Request { checkpoint: checkpoint.map(Path::to_path_buf), resume, ..request(f, &lowered, &plan, spec, &model_path) }).unwrap();
    for w in lowered.weights() {
        assert!(!w.tensor.grad().defined(), "`{}` has a .grad after the search", w.onnx_name);
    }
    (outcome, before, state(&lowered))
}

#[test]
fn search_block_takes_random_last_and_layer_ids_and_a_layer_cell_replaces_one_conv() {
    let f = fixture();
    let detection = detect(&f.model.graph);
    let lowered = f.model.lower(Device::Cpu).unwrap();
    let chosen = |block: BlockChoice, granularity: Granularity, seed: u64, for_cell: bool| {
        let mut spec = tiny_spec(seed);
        spec.search.block = block;
        let plan = input_plan(&f.model, &spec.input, &f.eval).unwrap();
        choose(&request(&f, &lowered, &plan, &spec, &subject()), granularity, for_cell)
    };
    // `last`: the last detected block; at layer granularity the last Conv, since the Gemm head
    // is not a C x H x W convolution, unless any layer will do (the weight-only baselines).
    let last_block = chosen(BlockChoice::Last, Granularity::Block, 0, true).unwrap();
    assert_eq!((last_block.block, last_block.layer.as_deref(), last_block.chosen_by.as_str()), (detection.blocks.last().unwrap().id, None, "last"));
    let gemm = detection.layers.last().unwrap();
    let last_conv = detection.layers.iter().rfind(|l| l.op_type == "Conv").unwrap();
    assert_eq!(gemm.op_type, "Gemm");
    assert_eq!(chosen(BlockChoice::Last, Granularity::Layer, 0, true).unwrap().layer.as_deref(), Some(last_conv.node.as_str()));
    assert_eq!(chosen(BlockChoice::Last, Granularity::Layer, 0, false).unwrap().layer.as_deref(), Some(gemm.node.as_str()));
    assert!(Target::layer(gemm).unwrap_err().contains("granularity: block"));
    // `random`: seeded (same seed, same unit), not constant across seeds, never the Gemm.
    let picks: Vec<usize> = (0..8).map(|seed| chosen(BlockChoice::Random, Granularity::Layer, seed, true).unwrap().block).collect();
    assert_eq!(picks[3], chosen(BlockChoice::Random, Granularity::Layer, 3, true).unwrap().block);
    assert!(picks.iter().collect::<BTreeSet<_>>().len() >= 3, "{picks:?}");
    assert!(picks.iter().all(|&id| detection.layers[id].op_type == "Conv"), "{picks:?}");
    // A layer id names that layer; one past the end is refused with the count.
    let given = chosen(BlockChoice::Id(3), Granularity::Layer, 0, true).unwrap();
    assert_eq!((given.layer.as_deref(), given.chosen_by.as_str()), (Some(detection.layers[3].node.as_str()), "given"));
    let missing = chosen(BlockChoice::Id(detection.layers.len()), Granularity::Layer, 0, true).unwrap_err().to_string();
    assert!(missing.contains("has no layer") && missing.contains(&format!("ids 0-{}", detection.layers.len() - 1)), "{missing}");

    // The search at layer granularity: the cell computes the last conv's output from its input,
    // and the backbone stays bit-identical.
    let mut spec = tiny_spec(0);
    (spec.search.block, spec.search.granularity) = (BlockChoice::Last, Granularity::Layer);
    let (outcome, before, after) = run_search(&f, &spec, None, false);
    let target = &outcome.report.target;
    assert_eq!((target.layer.as_deref(), target.entry.as_str(), target.tensor.as_str()), (Some(last_conv.node.as_str()), last_conv.input.as_str(), last_conv.output.as_str()));
    assert_eq!((target.block, target.keeps_shortcut, target.output_shape.clone()), (last_conv.id, false, last_conv.output_shape.clone().unwrap()));
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(b.equal(a), "backbone tensor `{name}` changed");
    }
    assert!(outcome.report.metrics.evaluated == 400 && outcome.report.alpha_max_change > 0.0);
}

#[test]
fn the_search_leaves_the_backbone_bit_identical_and_moves_alpha() {
    let f = fixture();
    let (outcome, before, after) = run_search(&f, &tiny_spec(0), None, false);
    assert!(before.iter().any(|(_, t)| t.numel() > 0));
    let buffers = f.model.lower(Device::Cpu).unwrap().weights().iter().filter(|w| w.role == Role::Buffer).count();
    assert!(buffers > 0, "the subject has BN running statistics to check");
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(b.equal(a), "backbone tensor `{name}` changed");
    }
    let report = &outcome.report;
    assert!(report.alpha_max_change > 0.01, "α moved by {}", report.alpha_max_change);
    assert_eq!(report.search.len(), 2);
    assert!(report.search.iter().all(|e| e.alpha_loss.is_some()));
    assert_eq!(report.repair_data.failures, report.metrics.failures);
    assert!(report.metrics.failures > 0 && report.metrics.evaluated == 400);

    // With every epoch a warm-up epoch, α stay where they started: the check above has teeth.
    let mut warm = tiny_spec(0);
    warm.search.warmup_epochs = 2;
    let (outcome, _, _) = run_search(&f, &warm, None, false);
    assert_eq!(outcome.report.alpha_max_change, 0.0);
    assert!(outcome.report.search.iter().all(|e| e.alpha_loss.is_none()));
}

#[test]
fn same_seed_gives_the_same_genotype_and_a_resumed_search_the_same_result() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _) = run_search(&f, &tiny_spec(3), None, false);
    let (b, _, _) = run_search(&f, &tiny_spec(3), None, false);
    assert_eq!(a.genotype, b.genotype);
    assert_eq!(a.report.mixing, b.report.mixing, "same seed, same α");
    let (c, _, _) = run_search(&f, &tiny_spec(4), None, false);
    assert_ne!(a.report.mixing, c.report.mixing, "another seed, other α");

    // Stop after one epoch, then resume to two: the same α as the straight run.
    let mut one = tiny_spec(3);
    one.search.epochs = 1;
    run_search(&f, &one, Some(dir.path()), false);
    let (resumed, _, _) = run_search(&f, &tiny_spec(3), Some(dir.path()), true);
    assert_eq!(resumed.report.resumed_from_epoch, Some(1));
    assert_eq!(resumed.report.mixing, a.report.mixing, "resumed search differs from the straight one");
    assert_eq!(resumed.genotype, a.genotype);
}

#[test]
fn second_order_search_runs_and_moves_alpha() {
    let f = fixture();
    let mut spec = tiny_spec(1);
    spec.search.order = archrepair_onnx::search::options::Order::Second;
    spec.search.epochs = 1;
    let (outcome, before, after) = run_search(&f, &spec, None, false);
    assert!(outcome.report.alpha_max_change > 0.01);
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(b.equal(a), "backbone tensor `{name}` changed by the second-order step");
    }
    assert_eq!(spec.search.block, BlockChoice::Id(7));
}

#[test]
fn the_whole_network_fine_tune_moves_weights_but_never_bn_statistics() {
    let f = fixture();
    let spec = fine_tune_spec(1);
    let (outcome, before, after) = run_search(&f, &spec, None, false);
    let roles: std::collections::HashMap<String, Role> = f.model.lower(Device::Cpu).unwrap().weights().iter().map(|w| (w.onnx_name.clone(), w.role)).collect();
    let moved: Vec<&String> = before.iter().zip(&after).filter(|((_, b), (_, a))| !b.equal(a)).map(|((n, _), _)| n).collect();
    let kept_finetune = outcome.report.kept.phase == "finetune";
    assert!(moved.iter().all(|n| roles[*n] == Role::Trainable), "BN statistics moved: {moved:?}");
    // The fine-tuned weights stay only when the fine-tune epoch won on the held-out slice.
    assert_eq!(!moved.is_empty(), kept_finetune, "moved {} tensors, kept {:?}", moved.len(), outcome.report.kept);
    assert_eq!(outcome.report.train.iter().filter(|e| e.phase == "finetune").count(), 1);
}

#[test]
fn before_is_the_subject_even_after_a_whole_network_fine_tune() {
    let f = fixture();
    // No block epochs: the fine-tune epoch is the only one scored, so its weights are kept.
    let spec = fine_tune_spec(0);
    let lowered = f.model.lower(Device::Cpu).unwrap();
    let subject = predictions_of(&f, &lowered, &spec);
    let (outcome, _, after) = run_search(&f, &spec, None, false);
    assert_eq!(outcome.report.kept.phase, "finetune");
    // The fine-tuned backbone around the original block predicts otherwise on some images, so
    // a "before" taken after the training would differ from the subject's.
    for w in lowered.weights() {
        let (_, tuned) = after.iter().find(|(name, _)| *name == w.onnx_name).unwrap();
        tch::no_grad(|| w.tensor.shallow_clone().copy_(tuned));
    }
    assert_ne!(predictions_of(&f, &lowered, &spec), subject);
    let right = subject.iter().zip(&f.eval.labels).filter(|(p, l)| p == l).count();
    let m = &outcome.report.metrics;
    assert_eq!(m.full_accuracy_before, right as f64 / f.eval.len() as f64, "{m:?}");
    // D_fail holds only failures, so every image the subject got right counts as previously correct.
    assert_eq!(m.previously_correct, right, "{m:?}");
}

/// The tiny spec with one search epoch, `block_epochs` epochs of the cell, then one epoch of the
/// whole network.
fn fine_tune_spec(block_epochs: usize) -> Spec {
    let mut spec = tiny_spec(2);
    spec.search.epochs = 1;
    spec.train.epochs = block_epochs;
    spec.train.finetune_epochs = 1;
    spec.train.finetune_lr = 0.01;
    spec
}

/// The predicted class of every evaluation image of the fixture under `lowered`'s weights.
fn predictions_of(f: &Fixture, lowered: &archrepair_onnx::lower::LoweredModel, spec: &Spec) -> Vec<i64> {
    let plan = input_plan(&f.model, &spec.input, &f.eval).unwrap();
    let input = PixelInput::new(&plan, Device::Cpu).unwrap();
    let classifier = Classifier::new(&f.model.graph, lowered, &input);
    match predictions(&|p: &Tensor| classifier.predict(p), &input, &f.eval, "", false) {
        Ok(predicted) => predicted,
        Err(_) => panic!("predicting the fixture's evaluation images failed"),
    }
}

#[test]
fn a_model_with_a_fixed_batch_size_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = with_fixed_batch(&subject(), dir.path(), 4);
    let output = Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .args(["search", fixed.to_str().unwrap(), "--data", FASHION_MNIST, "--limit", "100", "--out", dir.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fixes its batch size to 4") && stderr.contains("dynamic batch axis"), "{stderr}");
}

#[test]
fn the_search_command_writes_its_files_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tiny.yaml");
    std::fs::write(
        &spec,
        format!(
            "version: 1\ndata: {{path: {FASHION_MNIST}, split: test}}\ncollect: {{failures: 32}}\nsearch: {{block: 8, nodes: 1, ops: [skip_connect, sep_conv_3x3], epochs: 1, batch: 16, train_images: 64}}\ntrain: {{epochs: 1, batch: 16, train_images: 64}}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
            .args(["search", subject().to_str().unwrap(), "--spec", spec.to_str().unwrap(), "--limit", "300", "--out", out.to_str().unwrap(), "--threads", "2"])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("genotype: n0=") && stdout.contains("repair rate"), "{stdout}");
    for file in ["genotype.json", "cell.ot", "search.json", "checkpoint/checkpoint.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("search.json")).unwrap()).unwrap();
    assert_eq!(report["target"]["block"], 8);
    assert_eq!(report["target"]["keeps_shortcut"], true);
    let genotype: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("genotype.json")).unwrap()).unwrap();
    assert_eq!(genotype["nodes"].as_array().unwrap().len(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty());

    let second = run();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("--force"));

    // Training on the evaluation split itself is refused, with the key that fixes it.
    let same = dir.path().join("same.yaml");
    std::fs::write(&same, format!("version: 1\ndata: {{path: {FASHION_MNIST}}}\ntrain_data: {{path: {FASHION_MNIST}, split: test}}\n")).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .args(["search", subject().to_str().unwrap(), "--spec", same.to_str().unwrap(), "--out", dir.path().join("o2").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("train_data"), "{}", String::from_utf8_lossy(&refused.stderr));
}
