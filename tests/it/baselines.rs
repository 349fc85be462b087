//! The Arachne baseline on the Fashion-MNIST ResNet-20 subject (its head: GlobalAveragePool →
//! Flatten → Gemm): the head is found, the logits recomputed from the captured features match
//! the model's (repair checks every batch and errors otherwise), and the only weights that move
//! are localized weights of that Gemm, kept only when the held-out accuracy does not drop.

use archrepair_onnx::baselines::{arachne, Context};
use archrepair_onnx::commands::eval::input_plan;
use archrepair_onnx::data::{self, DataSource, Dataset, Split};
use archrepair_onnx::localize::classifier::Classifier;
use archrepair_onnx::localize::pixels::PixelInput;
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::search::data::RepairData;
use archrepair_onnx::spec::Spec;
use tch::Device;

use crate::support::repo_root;

fn fashion_mnist(split: Split, limit: usize) -> Dataset {
    let mut data = data::open(&DataSource { split, ..DataSource::new("/usr/share/datasets/fashion-mnist") }).expect("Fashion-MNIST is installed by scripts/setup.sh");
    data.truncate(limit);
    data
}

#[test]
fn arachne_on_the_subject_moves_only_localized_weights_of_its_last_gemm() {
    let model = LoadedModel::open(&repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx")).unwrap();
    let lowered = model.lower(Device::Cpu).unwrap();
    let spec = Spec::from_yaml("version: 1\nseed: 5\nsearch: {holdout: 0.2}\narachne: {population: 20, generations: 15, max_positives: 64, min_weights: 8}\n").unwrap();
    let eval = fashion_mnist(Split::Test, 300);
    let train = fashion_mnist(Split::Train, 200);
    let plan = input_plan(&model, &spec.input, &eval).unwrap();
    let input = PixelInput::new(&plan, Device::Cpu).unwrap();
    let classifier = Classifier::new(&model.graph, &lowered, &input);
    // Every evaluation image as a "failure" row: Arachne keeps those the model gets wrong.
    let candidates: Vec<usize> = (0..eval.len()).collect();
    let data = RepairData::build(&input, &eval, &candidates, &train, &spec.search, None, spec.seed).unwrap();
    let before: Vec<(String, Vec<f32>)> = lowered.weights().iter().map(|w| (w.onnx_name.clone(), Vec::<f32>::try_from(&w.tensor.detach().reshape([-1])).unwrap())).collect();

    let ctx = Context { graph: &model.graph, model: &lowered, classifier: &classifier, data: &data, chosen: None, spec: &spec, progress: false, model_path: std::path::Path::new("test.onnx") };
    let log = arachne::repair(&ctx).unwrap();

    assert_eq!(log.op, "Gemm");
    let gemm = model.graph.nodes.iter().rev().find(|n| n.op_type == "Gemm").unwrap();
    assert_eq!((log.layer.as_str(), log.weight.as_str()), (gemm.name.as_str(), gemm.inputs[1].as_str()));
    assert!(log.negatives > 0 && log.negatives < 240, "the subject gets some but not all of the 240 training rows wrong: {}", log.negatives);
    assert!(log.localized.len() >= 8 && log.localized.len() <= 100, "{}", log.localized.len());
    assert!(log.best_fitness.windows(2).all(|w| w[1] >= w[0]), "{:?}", log.best_fitness);
    assert!(log.generations >= 1 && log.generations <= 15);

    let shape = lowered.weights().iter().find(|w| w.onnx_name == log.weight).unwrap().tensor.size();
    let flat = |index: &[i64]| (index[0] * shape[1] + index[1]) as usize;
    for (w, (name, old)) in lowered.weights().iter().zip(&before) {
        let new = Vec::<f32>::try_from(&w.tensor.detach().reshape([-1])).unwrap();
        for (i, (a, b)) in old.iter().zip(&new).enumerate() {
            let localized = *name == log.weight && log.localized.iter().any(|l| flat(&l.index) == i);
            if !(localized && log.kept) {
                assert_eq!(a.to_bits(), b.to_bits(), "`{name}`[{i}] changed (kept: {})", log.kept);
            }
        }
    }
    for l in &log.localized {
        assert_eq!(before.iter().find(|(n, _)| *n == log.weight).unwrap().1[flat(&l.index)], l.before, "{:?}", l.index);
    }
    if log.kept {
        assert!(log.holdout_after.unwrap() >= log.holdout_before.unwrap(), "{log:?}");
    }
}

/// A run without held-out rows, so the patch is always kept: the moved weights are exactly
/// where the log says.
#[test]
fn arachne_writes_its_patch_exactly_where_it_localized() {
    let (log, changes) = run_on_subject("version: 1\nseed: 5\nsearch: {holdout: 0.0}\narachne: {population: 20, generations: 10, max_positives: 64, min_weights: 8}\n");
    assert!(log.kept && log.holdout_before.is_none(), "{log:?}");
    assert!(!changes.is_empty(), "the search moved no weight: {log:?}");
    for (name, index, before, after) in &changes {
        assert_eq!(*name, log.weight, "a weight of another tensor moved");
        let l = log.localized.iter().find(|l| &l.index == index).unwrap_or_else(|| panic!("{index:?} moved but is not localized"));
        assert_eq!((l.before, l.after), (*before, *after), "{index:?}");
    }
}

/// Runs Arachne on the subject; returns its log and every weight value that changed (tensor,
/// index in its layout, before, after).
fn run_on_subject(yaml: &str) -> (arachne::ArachneLog, Vec<(String, Vec<i64>, f32, f32)>) {
    let model = LoadedModel::open(&repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx")).unwrap();
    let lowered = model.lower(Device::Cpu).unwrap();
    let spec = Spec::from_yaml(yaml).unwrap();
    let eval = fashion_mnist(Split::Test, 300);
    let train = fashion_mnist(Split::Train, 200);
    let plan = input_plan(&model, &spec.input, &eval).unwrap();
    let input = PixelInput::new(&plan, Device::Cpu).unwrap();
    let classifier = Classifier::new(&model.graph, &lowered, &input);
    let candidates: Vec<usize> = (0..eval.len()).collect();
    let data = RepairData::build(&input, &eval, &candidates, &train, &spec.search, None, spec.seed).unwrap();
    let values = |t: &tch::Tensor| Vec::<f32>::try_from(&t.detach().reshape([-1])).unwrap();
    let before: Vec<Vec<f32>> = lowered.weights().iter().map(|w| values(&w.tensor)).collect();
    let ctx = Context { graph: &model.graph, model: &lowered, classifier: &classifier, data: &data, chosen: None, spec: &spec, progress: false, model_path: std::path::Path::new("test.onnx") };
    let log = arachne::repair(&ctx).unwrap();
    let mut changes = Vec::new();
    for (w, old) in lowered.weights().iter().zip(&before) {
        let size = w.tensor.size();
        for (i, (a, b)) in old.iter().zip(values(&w.tensor)).enumerate() {
            if a.to_bits() != b.to_bits() {
                let cols = *size.last().unwrap_or(&1) as usize;
                changes.push((w.onnx_name.clone(), vec![(i / cols) as i64, (i % cols) as i64], *a, b));
            }
        }
    }
    (log, changes)
}
