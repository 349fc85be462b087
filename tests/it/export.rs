//! Export of the derived cell: onnxruntime and tract run the exported model and agree with the
//! tch model it came from (≤ 1e-4) for every candidate op alone and for a genotype mixing all of
//! them, at opsets 13 and 17, in a stride-1 residual branch and a stride-2 whole block; and
//! everything outside the replaced stretch is byte-identical in the exported model.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use archrepair_onnx::detect::detect;
use archrepair_onnx::export::{export, Provenance, METADATA_KEY};
use archrepair_onnx::graph::from_model::node_names;
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::onnx::proto::ModelProto;
use archrepair_onnx::search::cell::Cell;
use archrepair_onnx::search::genotype::{Genotype, GenotypeEdge};
use archrepair_onnx::search::ops::OpKind;
use archrepair_onnx::search::target::Target;
use archrepair_onnx::validate::ort_runner::OrtModel;
use archrepair_onnx::validate::tract_runner::TractModel;
use prost::Message;
use tch::{nn, Device, Kind, Tensor};

use crate::support::{repo_root, venv_python};

fn resnet20(opset: u32) -> PathBuf {
    repo_root().join(format!("fixtures/models/resnet20_28_ts_op{opset}_bn.onnx"))
}

/// A genotype of `nodes` nodes whose every edge is `op` (node 0 reads the input, node i reads
/// the input and node i-1).
fn uniform(op: OpKind) -> Genotype {
    let edge = |from| GenotypeEdge { op, from };
    Genotype { nodes: vec![vec![edge(0)], vec![edge(0), edge(1)]] }
}

/// Four nodes using all eight candidates, `none` and skip_connect included.
fn mixed() -> Genotype {
    use OpKind::*;
    let e = |op, from| GenotypeEdge { op, from };
    Genotype {
        nodes: vec![
            vec![e(SepConv3x3, 0), e(DilConv3x3, 0)],
            vec![e(SepConv5x5, 0), e(AvgPool3x3, 1)],
            vec![e(DilConv5x5, 1), e(MaxPool3x3, 2)],
            vec![e(SkipConnect, 3), e(None, 1)],
        ],
    }
}

/// Random weights everywhere, BatchNormalization statistics included, so that no layer of the
/// export is an identity by accident.
fn randomise(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let value = if name.ends_with("running_var") {
                Tensor::rand(t.size().as_slice(), (Kind::Float, Device::Cpu)) + 0.5
            } else {
                Tensor::randn(t.size().as_slice(), (Kind::Float, Device::Cpu)) * 0.3
            };
            t.copy_(&value);
        }
    });
}

struct Exported {
    original: ModelProto,
    repaired: ModelProto,
    removed: Vec<String>,
    max_diff_ort: f64,
    max_diff_tract: f64,
}

/// Exports `genotype` in place of block `block_index`'s residual branch (or whole block) and
/// compares the three runtimes on one random batch.
fn export_and_compare(opset: u32, block_index: usize, keep_shortcut: bool, genotype: &Genotype) -> Exported {
    let path = resnet20(opset);
    let model = LoadedModel::open(&path).unwrap();
    let lowered = model.lower(Device::Cpu).unwrap();
    let blocks = detect(&model.graph).blocks;
    let block = &blocks[block_index];
    let target = Target::new(&model.graph, block, keep_shortcut).unwrap();
    let splice = lowered.splice(&target.entry, &target.tensor).unwrap();
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let cell = Cell::derived(&(vs.root() / "cell"), target.cell_shape(Some(6), genotype.nodes.len()), genotype);
    randomise(&vs);

    let x = Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    let reference = tch::no_grad(|| lowered.forward_spliced(&x, false, &splice, &mut |entry| Ok(cell.forward_t(entry, None, false)))).unwrap();
    let reference: Vec<f32> = Vec::try_from(&reference.flatten(0, -1)).unwrap();

    let removed = lowered.skipped_steps(&splice);
    let provenance = Provenance {
        tool: "archrepair-onnx".into(),
        version: "test".into(),
        method: "archrepair".into(),
        block: Some(block.id),
        tensor: Some(target.tensor.clone()),
        genotype: Some(genotype.to_string()),
        weights_changed: Vec::new(),
        spec_hash: "0".into(),
    };
    let repaired = export(&model.proto, &removed, &target, &cell, &provenance).unwrap();
    let bytes = repaired.encode_to_vec();
    let input: Vec<f32> = Vec::try_from(&x.flatten(0, -1)).unwrap();
    let what = format!("opset {opset}, block {block_index}, {genotype}");
    let mut ort = OrtModel::from_bytes(&bytes, &what, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (_, by_ort) = ort.run(&[3, 1, 28, 28], input.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let tract = TractModel::from_bytes(&bytes, &what, &[3, 1, 28, 28]).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (_, by_tract) = tract.run(&input).unwrap_or_else(|e| panic!("{what}: {e}"));
    let max_diff = |other: &[f32]| {
        assert_eq!(other.len(), reference.len(), "{what}: output size");
        reference.iter().zip(other).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max)
    };
    Exported { max_diff_ort: max_diff(&by_ort), max_diff_tract: max_diff(&by_tract), original: model.proto, repaired, removed }
}

/// A stride-1 block (its residual branch) and a stride-2 block (whole, factorized reduce).
fn test_blocks() -> [(usize, bool); 2] {
    let model = LoadedModel::open(&resnet20(13)).unwrap();
    let blocks = detect(&model.graph).blocks;
    let stride1 = blocks.iter().position(|b| b.stride == Some(1) && b.is_residual()).unwrap();
    let stride2 = blocks.iter().position(|b| b.stride == Some(2) && b.is_residual()).unwrap();
    [(stride1, true), (stride2, false)]
}

#[test]
fn every_candidate_op_and_a_mix_of_all_match_tch_in_onnxruntime_and_tract_at_opsets_13_and_17() {
    archrepair_onnx::validate::init_onnxruntime().unwrap();
    let mut genotypes: Vec<Genotype> = OpKind::ALL.iter().map(|&op| uniform(op)).collect();
    genotypes.push(mixed());
    let mut checked = 0;
    for opset in [13, 17] {
        for (block, keep_shortcut) in test_blocks() {
            for genotype in &genotypes {
                let e = export_and_compare(opset, block, keep_shortcut, genotype);
                assert!(
                    e.max_diff_ort <= 1e-4 && e.max_diff_tract <= 1e-4,
                    "opset {opset}, block {block}, {genotype}: |ort - tch| = {:.2e}, |tract - tch| = {:.2e}",
                    e.max_diff_ort,
                    e.max_diff_tract
                );
                let opsets: Vec<i64> = e.repaired.opset_import.iter().filter_map(|o| o.version).collect();
                assert_eq!(opsets, vec![opset as i64], "the opset stays as it was");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 2 * 9);
}

#[test]
fn everything_outside_the_block_is_byte_identical_and_the_model_passes_the_full_onnx_check() {
    archrepair_onnx::validate::init_onnxruntime().unwrap();
    let (block, keep_shortcut) = test_blocks()[1];
    let e = export_and_compare(13, block, keep_shortcut, &mixed());
    assert!(e.max_diff_ort <= 1e-4, "{}", e.max_diff_ort);
    let (before, after) = (e.original.graph.as_ref().unwrap(), e.repaired.graph.as_ref().unwrap());

    // Nodes: every node the export did not remove is in the output, byte for byte, in order.
    let removed: HashSet<&str> = e.removed.iter().map(String::as_str).collect();
    let after_nodes: Vec<Vec<u8>> = after.node.iter().map(|n| n.encode_to_vec()).collect();
    let kept: Vec<Vec<u8>> = node_names(&before.node)
        .iter()
        .zip(&before.node)
        .filter(|(name, _)| !removed.contains(name.as_str()))
        .map(|(_, n)| n.encode_to_vec())
        .collect();
    assert!(kept.len() > 40 && !removed.is_empty());
    let mut position = 0;
    for node in &kept {
        position += after_nodes[position..].iter().position(|n| n == node).expect("a kept node is missing or changed") + 1;
    }
    // Initializers: every one still read is identical; only the removed nodes' weights left.
    let read: HashSet<&str> = after.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let after_inits: HashSet<Vec<u8>> = after.initializer.iter().map(|t| t.encode_to_vec()).collect();
    for t in before.initializer.iter().filter(|t| read.contains(t.name())) {
        assert!(after_inits.contains(&t.encode_to_vec()), "initializer `{}` changed", t.name());
    }
    let new_inits = after.initializer.iter().filter(|t| !before.initializer.iter().any(|b| b.name() == t.name()));
    assert!(new_inits.clone().all(|t| t.name().starts_with("archrepair/")), "new initializers carry the repair prefix");
    // Inputs, outputs, opset, IR version, producer and the old metadata are untouched.
    assert_eq!(before.input, after.input);
    assert_eq!(before.output, after.output);
    assert_eq!((&e.original.opset_import, e.original.ir_version, &e.original.producer_name), (&e.repaired.opset_import, e.repaired.ir_version, &e.repaired.producer_name));
    assert_eq!(&e.repaired.metadata_props[..e.original.metadata_props.len()], &e.original.metadata_props[..]);
    let entry = e.repaired.metadata_props.last().unwrap();
    assert_eq!(entry.key.as_deref(), Some(METADATA_KEY));
    assert!(entry.value.as_deref().unwrap().contains("sep_conv_3x3"));

    // The full ONNX check (type and shape inference included), by the onnx package.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("repaired.onnx");
    archrepair_onnx::onnx::save_model(&e.repaired, &file).unwrap();
    let check = Command::new(venv_python())
        .args(["-c", "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True); print('ok')"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "onnx.checker: {}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn fine_tuned_backbone_weights_go_back_to_their_own_initializers_and_only_those_change() {
    use archrepair_onnx::export::write_back_weights;
    use archrepair_onnx::lower::Role;
    archrepair_onnx::validate::init_onnxruntime().unwrap();
    let model = LoadedModel::open(&resnet20(13)).unwrap();
    let lowered = model.lower(Device::Cpu).unwrap();
    // A "fine-tune" that moved one convolution's weights.
    let moved = lowered.weights().iter().find(|w| w.role == Role::Trainable && w.tensor.dim() == 4).unwrap();
    tch::no_grad(|| {
        let _ = moved.tensor.shallow_clone().g_add_scalar_(0.05);
    });
    let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    let reference: Vec<f32> = Vec::try_from(&lowered.forward_t(&x, false).unwrap().flatten(0, -1)).unwrap();

    let mut proto = model.proto.clone();
    let rewritten = write_back_weights(&mut proto, lowered.weights()).unwrap();
    assert_eq!(rewritten, vec![moved.onnx_name.clone()]);
    let (before, after) = (model.proto.graph.as_ref().unwrap(), proto.graph.as_ref().unwrap());
    for (b, a) in before.initializer.iter().zip(&after.initializer) {
        assert_eq!(b.name(), a.name(), "order and names stay");
        assert_eq!(b.encode_to_vec() == a.encode_to_vec(), b.name() != moved.onnx_name, "`{}`", b.name());
    }
    let input: Vec<f32> = Vec::try_from(&x.flatten(0, -1)).unwrap();
    let mut ort = OrtModel::from_bytes(&proto.encode_to_vec(), "fine-tuned", 1).unwrap();
    let (_, by_ort) = ort.run(&[2, 1, 28, 28], input).unwrap();
    let diff = reference.iter().zip(&by_ort).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "{diff}");
    let original_out: Vec<f32> = {
        let mut ort = OrtModel::from_bytes(&model.proto.encode_to_vec(), "original", 1).unwrap();
        ort.run(&[2, 1, 28, 28], Vec::try_from(&x.flatten(0, -1)).unwrap()).unwrap().1
    };
    assert!(original_out.iter().zip(&by_ort).any(|(a, b)| (a - b).abs() > 1e-3), "the moved weight changes the output");
}
