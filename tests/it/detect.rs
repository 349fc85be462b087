//! Block detection: exact counts on every fixture and the onnx `light_resnet50`, negative cases,
//! operand order, and the splice-identity check (cut each block out, splice an identical copy
//! back through the patch mechanism export uses: onnxruntime outputs stay bit-identical).

use std::collections::BTreeMap;
use std::path::Path;

use archrepair_onnx::detect::{detect, BlockKind, Detection, Shortcut};
use archrepair_onnx::graph::patch::{Patch, PatchError};
use archrepair_onnx::graph::Graph;
use archrepair_onnx::model::LoadedModel;
use archrepair_onnx::onnx::proto::{ModelProto, NodeProto, TensorProto};
use archrepair_onnx::onnx::tensor::encode_f32;
use archrepair_onnx::validate::OrtModel;
use prost::Message;

use crate::builders::{float_input, int, ints, model, node};
use crate::support;

fn detection_of(path: &Path) -> Detection {
    let model = LoadedModel::open(path).unwrap_or_else(|e| panic!("{e}"));
    detect(&model.graph)
}

fn detection_of_proto(proto: &ModelProto) -> Detection {
    let mut graph = Graph::from_model(proto).unwrap();
    graph.infer_shapes().unwrap();
    graph.fold_constants().unwrap();
    detect(&graph)
}

/// (kind, shortcut) → count.
fn census(d: &Detection) -> BTreeMap<(&'static str, &'static str), usize> {
    let mut counts = BTreeMap::new();
    for b in &d.blocks {
        *counts.entry((b.kind.as_str(), b.shortcut.as_str())).or_insert(0) += 1;
    }
    counts
}

fn fixtures_of(arch: &str) -> Vec<std::path::PathBuf> {
    let models: Vec<_> = support::fixture_models()
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().strip_prefix(arch).is_some_and(|rest| rest.starts_with("_ts") || rest.starts_with("_dynamo")))
        .collect();
    assert_eq!(models.len(), 8, "{arch}: both exporters x opsets 13/17 x bn/folded");
    models
}

/// Every variant of `arch` has exactly `expected` blocks by (kind, shortcut), and `layers` layers.
fn expect_census(arch: &str, expected: &[((&str, &str), usize)], layers: usize) {
    for path in fixtures_of(arch) {
        let d = detection_of(&path);
        let got: Vec<((&str, &str), usize)> = census(&d).into_iter().collect();
        assert_eq!(got, expected, "{}", path.display());
        assert_eq!(d.layers.len(), layers, "{}: layers", path.display());
        let ids: Vec<usize> = d.blocks.iter().map(|b| b.id).collect();
        assert_eq!(ids, (0..d.blocks.len()).collect::<Vec<_>>(), "{}: ids in order", path.display());
    }
}

#[test]
fn cifar_resnet20_has_9_basic_blocks_2_with_projection() {
    // Option-B shortcuts: the stem already has 16 channels, so only the two stride-2 stages project.
    for arch in ["resnet20", "resnet20_28"] {
        expect_census(arch, &[(("basic", "identity"), 7), (("basic", "projection"), 2)], 22);
    }
}

#[test]
fn torchvision_resnet18_has_8_basic_blocks_3_with_projection() {
    expect_census("resnet18", &[(("basic", "identity"), 5), (("basic", "projection"), 3)], 21);
}

#[test]
fn bottleneck_resnet_has_every_bottleneck() {
    // Stages [2, 1, 1, 1]: the first block of every stage projects (width x4 or stride 2).
    expect_census("bottleneck", &[(("bottleneck", "identity"), 1), (("bottleneck", "projection"), 4)], 21);
}

#[test]
fn mobilenetv2_blocks_with_and_without_skip() {
    expect_census("mobilenetv2", &[(("inverted_residual", "identity"), 3), (("inverted_residual", "none"), 4)], 23);
    for path in fixtures_of("mobilenetv2") {
        let d = detection_of(&path);
        // The first block has no expansion: depthwise, [BN], ReLU6, project, [BN].
        let folded = path.to_string_lossy().contains("folded");
        assert_eq!(d.blocks[0].nodes.len(), if folded { 3 } else { 5 }, "{}: {:?}", path.display(), d.blocks[0].nodes);
        assert_eq!(d.residual_count(), 3);
    }
}

#[test]
fn densenet_has_every_dense_layer() {
    expect_census("densenet", &[(("dense_layer", "identity"), 8)], 19);
    let d = detection_of(&fixtures_of("densenet")[0]);
    assert_eq!(d.residual_count(), 0);
    // Each layer adds growth-rate 8 channels.
    for b in &d.blocks {
        let (i, o) = (b.input_shape.as_ref().unwrap(), b.output_shape.as_ref().unwrap());
        assert_eq!(o[0] - i[0], 8, "block {}", b.id);
    }
}

#[test]
fn vgg_has_no_residual_block_and_lists_its_stages_and_layers() {
    expect_census("vgg", &[(("stage", "none"), 4)], 8);
    for path in fixtures_of("vgg") {
        let d = detection_of(&path);
        assert_eq!(d.residual_count(), 0);
        let convs: Vec<usize> = d.blocks.iter().map(|b| d.layers.iter().filter(|l| l.block == Some(b.id)).count()).collect();
        assert_eq!(convs, [1, 1, 2, 2], "{}: convolutions per stage", path.display());
        let ops: Vec<&str> = d.layers.iter().map(|l| l.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "Conv", "Conv", "Conv", "Conv", "Conv", "Gemm", "Gemm"]);
    }
}

#[test]
fn light_resnet50_has_16_sum_based_bottlenecks_4_with_projection() {
    let path = support::light_models().into_iter().find(|p| p.ends_with("light_resnet50.onnx")).unwrap();
    let model = LoadedModel::open(&path).unwrap();
    let d = detect(&model.graph);
    assert_eq!(census(&d).into_iter().collect::<Vec<_>>(), [(("bottleneck", "identity"), 12), (("bottleneck", "projection"), 4)]);
    for b in &d.blocks {
        assert!(b.nodes.iter().any(|n| model.graph.node_by_name(n).unwrap().op_type == "Sum"), "block {} merges with Sum", b.id);
    }
    let strides: Vec<i64> = d.blocks.iter().filter(|b| b.shortcut == Shortcut::Projection).map(|b| b.stride.unwrap()).collect();
    assert_eq!(strides, [1, 2, 2, 2]);
    // 1x1 (256→64) + 3x3 (64→64) + 1x1 (64→256) + three BN scale/bias pairs.
    assert_eq!(d.blocks[1].params, 256 * 64 + 64 * 64 * 9 + 64 * 256 + 2 * (64 + 64 + 256));
}

// ---------------------------------------------------------------------------------------------
// Synthetic graphs

fn weight(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    encode_f32(name, dims, &(0..n).map(|i| ((i * 7919) % 23) as f32 / 23.0 - 0.5).collect::<Vec<_>>())
}

fn conv(name: &str, input: &str, output: &str, channels: i64, init: &mut Vec<TensorProto>) -> NodeProto {
    init.push(weight(&format!("{name}.w"), &[channels, channels, 3, 3]));
    node("Conv", name, &[input, &format!("{name}.w")], &[output], vec![ints("pads", &[1, 1, 1, 1])])
}

/// `blocks` basic residual blocks on a [1, 4, 8, 8] input; `merge(i, a, b, out)` writes block i's merge.
fn residual_chain(blocks: usize, merge: impl Fn(usize, &str, &str, &str) -> NodeProto) -> ModelProto {
    let (mut nodes, mut init) = (Vec::new(), Vec::new());
    let mut t = "x".to_string();
    for i in 0..blocks {
        let p = format!("b{i}");
        nodes.push(conv(&format!("{p}.conv1"), &t, &format!("{p}.c1"), 4, &mut init));
        nodes.push(node("Relu", &format!("{p}.relu1"), &[&format!("{p}.c1")], &[&format!("{p}.r1")], vec![]));
        nodes.push(conv(&format!("{p}.conv2"), &format!("{p}.r1"), &format!("{p}.c2"), 4, &mut init));
        nodes.push(merge(i, &t, &format!("{p}.c2"), &format!("{p}.sum")));
        let out = if i + 1 == blocks { "y".to_string() } else { format!("{p}.out") };
        nodes.push(node("Relu", &format!("{p}.relu2"), &[&format!("{p}.sum")], &[&out], vec![]));
        t = out;
    }
    model(13, &[1, 4, 8, 8], nodes, init)
}

#[test]
fn operand_order_and_sum_do_not_matter() {
    let shapes = |m: &ModelProto| {
        let d = detection_of_proto(m);
        d.blocks.iter().map(|b| (b.kind, b.shortcut, b.entry.clone(), b.exit.clone(), b.nodes.len())).collect::<Vec<_>>()
    };
    let add = shapes(&residual_chain(3, |i, a, b, out| node("Add", &format!("m{i}"), &[a, b], &[out], vec![])));
    let swapped = shapes(&residual_chain(3, |i, a, b, out| node("Add", &format!("m{i}"), &[b, a], &[out], vec![])));
    let sum = shapes(&residual_chain(3, |i, a, b, out| node("Sum", &format!("m{i}"), &[b, a], &[out], vec![])));
    assert_eq!(add.len(), 3);
    assert!(add.iter().all(|b| b.0 == BlockKind::Basic && b.1 == Shortcut::Identity && b.4 == 5), "{add:?}");
    assert_eq!(add[1].2, "b0.out");
    assert_eq!(add[1].3, "b1.out", "the post-merge Relu belongs to the block");
    assert_eq!(add, swapped);
    assert_eq!(add, sum);
}

#[test]
fn a_100_block_chain_gives_100_blocks() {
    let chain = residual_chain(100, |i, a, b, out| node("Add", &format!("m{i}"), &[a, b], &[out], vec![]));
    let d = detection_of_proto(&chain);
    assert_eq!(d.residual_count(), 100);
    assert_eq!(d.layers.len(), 200);
    assert!(d.layers.iter().enumerate().all(|(i, l)| l.block == Some(i / 2)));
}

#[test]
fn a_silu_expansion_with_batch_norm_belongs_to_its_inverted_residual() {
    // x (4 ch) → Conv 1x1 (8) → BN → SiLU → depthwise 3x3 → BN → Relu → Conv 1x1 (4) → BN → y
    let bn = |name: &str, input: &str, output: &str, c: i64, init: &mut Vec<TensorProto>| {
        let names = ["scale", "bias", "mean", "var"].map(|p| format!("{name}.{p}"));
        init.push(encode_f32(&names[0], &[c], &vec![1.0; c as usize]));
        init.push(encode_f32(&names[1], &[c], &vec![0.0; c as usize]));
        init.push(encode_f32(&names[2], &[c], &vec![0.0; c as usize]));
        init.push(encode_f32(&names[3], &[c], &vec![1.0; c as usize]));
        let inputs: Vec<&str> = std::iter::once(input).chain(names.iter().map(String::as_str)).collect();
        node("BatchNormalization", name, &inputs, &[output], vec![])
    };
    let mut init = vec![weight("expand.w", &[8, 4, 1, 1]), weight("dw.w", &[8, 1, 3, 3]), weight("project.w", &[4, 8, 1, 1])];
    let nodes = vec![
        node("Conv", "expand", &["x", "expand.w"], &["e"], vec![]),
        bn("bn1", "e", "e_bn", 8, &mut init),
        node("Sigmoid", "silu_gate", &["e_bn"], &["g"], vec![]),
        node("Mul", "silu", &["e_bn", "g"], &["s"], vec![]),
        node("Conv", "dw", &["s", "dw.w"], &["d"], vec![int("group", 8), ints("pads", &[1, 1, 1, 1])]),
        bn("bn2", "d", "d_bn", 8, &mut init),
        node("Relu", "relu", &["d_bn"], &["r"], vec![]),
        node("Conv", "project", &["r", "project.w"], &["p"], vec![]),
        bn("bn3", "p", "y", 4, &mut init),
    ];
    let d = detection_of_proto(&model(13, &[1, 4, 8, 8], nodes, init));
    assert_eq!(d.blocks.len(), 1, "{:?}", d.blocks);
    let b = &d.blocks[0];
    assert_eq!((b.kind, b.shortcut, b.entry.as_str(), b.exit.as_str(), b.nodes.len()), (BlockKind::InvertedResidual, Shortcut::None, "x", "y", 9));
}

/// A model with two float inputs `x1`, `x2` of [1, 4, 8, 8].
fn two_inputs(mut m: ModelProto) -> ModelProto {
    m.graph.as_mut().unwrap().input.push(float_input("x2", &[1, 4, 8, 8]));
    m
}

#[test]
fn branches_from_different_inputs_are_not_a_block() {
    let mut init = Vec::new();
    let nodes = vec![
        conv("left", "x", "l", 4, &mut init),
        conv("right", "x2", "r", 4, &mut init),
        node("Add", "fpn_merge", &["l", "r"], &["y"], vec![]),
    ];
    let d = detection_of_proto(&two_inputs(model(13, &[1, 4, 8, 8], nodes, init)));
    assert_eq!(d.residual_count(), 0, "{:?}", d.blocks);
}

#[test]
fn a_branch_with_an_op_we_cannot_lower_is_not_a_block() {
    let mut init = Vec::new();
    let nodes = vec![
        conv("c1", "x", "a", 4, &mut init),
        node("Celu", "unsupported", &["a"], &["b"], vec![]),
        conv("c2", "b", "c", 4, &mut init),
        node("Add", "merge", &["x", "c"], &["y"], vec![]),
    ];
    let m = model(13, &[1, 4, 8, 8], nodes, init);
    assert_eq!(detection_of_proto(&m).residual_count(), 0);
    // The same with Relu is a block: the refusal is about the operator.
    let mut ok = m.clone();
    ok.graph.as_mut().unwrap().node[1].op_type = Some("Relu".into());
    assert_eq!(detection_of_proto(&ok).residual_count(), 1);
}

#[test]
fn a_bias_add_after_matmul_is_not_a_block() {
    let nodes = vec![
        node("Flatten", "flat", &["x"], &["f"], vec![int("axis", 1)]),
        node("MatMul", "mm", &["f", "w"], &["m"], vec![]),
        node("Add", "bias", &["m", "b"], &["y"], vec![]),
    ];
    let d = detection_of_proto(&model(13, &[1, 4, 8, 8], nodes, vec![weight("w", &[256, 10]), weight("b", &[10])]));
    assert!(d.blocks.is_empty(), "{:?}", d.blocks);
}

#[test]
fn a_region_read_from_outside_is_not_a_block() {
    // The first conv's output also feeds the model's second output: not single-exit.
    let mut init = Vec::new();
    let nodes = vec![
        conv("c1", "x", "a", 4, &mut init),
        node("Relu", "r", &["a"], &["b"], vec![]),
        conv("c2", "b", "c", 4, &mut init),
        node("Add", "merge", &["x", "c"], &["y"], vec![]),
        node("Relu", "tap", &["a"], &["y2"], vec![]),
    ];
    let mut m = model(13, &[1, 4, 8, 8], nodes, init);
    let mut extra = m.graph.as_ref().unwrap().output[0].clone();
    extra.name = Some("y2".into());
    m.graph.as_mut().unwrap().output.push(extra);
    assert_eq!(detection_of_proto(&m).residual_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Patches

#[test]
fn patch_errors_name_the_node_or_tensor() {
    let m = residual_chain(2, |i, a, b, out| node("Add", &format!("m{i}"), &[a, b], &[out], vec![]));
    let unknown = Patch { remove: vec!["nope".into()], ..Patch::default() };
    assert!(matches!(unknown.apply(&m), Err(PatchError::UnknownNode(n)) if n == "nope"));
    let clash = Patch { nodes: vec![node("Relu", "extra", &["x"], &["b0.c1"], vec![])], ..Patch::default() };
    let err = clash.apply(&m).unwrap_err();
    assert!(err.to_string().contains("`b0.c1`"), "{err}");
    // Removing a block without a replacement leaves its exit unproduced: refused.
    let cut = Patch { remove: ["b0.conv1", "b0.relu1", "b0.conv2", "m0", "b0.relu2"].map(String::from).to_vec(), ..Patch::default() };
    let err = cut.apply(&m).unwrap_err();
    assert!(err.to_string().contains("b0.out"), "{err}");
}

#[test]
fn a_patch_drops_the_weights_only_the_removed_nodes_read() {
    let m = residual_chain(2, |i, a, b, out| node("Add", &format!("m{i}"), &[a, b], &[out], vec![]));
    let d = detection_of_proto(&m);
    let graph = Graph::from_model(&m).unwrap();
    let block = &d.blocks[0];
    let patch = Patch::copy_of(&m, &graph, &block.nodes, &block.exit, "copy/").unwrap();
    let patched = patch.apply(&m).unwrap();
    let g = patched.graph.unwrap();
    let mut names: Vec<&str> = g.initializer.iter().map(|t| t.name()).collect();
    names.sort_unstable();
    assert_eq!(names, ["b1.conv1.w", "b1.conv2.w", "copy/b0.conv1.w", "copy/b0.conv2.w"]);
    assert_eq!(g.node.len(), 10);
    assert_eq!(m.graph.as_ref().unwrap().node.len(), 10, "the input model is not modified");
}

/// onnxruntime output of `bytes` on a fixed input.
fn ort_output(bytes: &[u8], label: &str, input: &[f32], dims: &[i64]) -> Vec<f32> {
    let mut ort = OrtModel::from_bytes(bytes, label, 1).unwrap_or_else(|e| panic!("{label}: {e}"));
    ort.run(dims, input.to_vec()).unwrap_or_else(|e| panic!("{label}: {e}")).1
}

#[test]
fn splicing_an_identical_copy_of_every_block_keeps_outputs_bit_identical() {
    // Fixtures only: the `light` models' constant weights give near-constant outputs, which
    // would hide a wrong splice.
    let models = support::fixture_models();
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in &models {
        let model = LoadedModel::open(path).unwrap();
        let d = detect(&model.graph);
        let dims: Vec<i64> = model.graph.inputs[0]
            .shape
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| match d {
                archrepair_onnx::graph::Dim::Known(n) => *n,
                archrepair_onnx::graph::Dim::Symbolic(_) => 2,
            })
            .collect();
        let n: i64 = dims.iter().product();
        let input: Vec<f32> = (0..n).map(|i| ((i * 2654435761) % 1000) as f32 / 1000.0).collect();
        let label = path.display().to_string();
        let expected = ort_output(&model.proto.encode_to_vec(), &label, &input, &dims);
        for block in &d.blocks {
            let mut patch = Patch::copy_of(&model.proto, &model.graph, &block.nodes, &block.exit, "archrepair/copy/")
                .unwrap_or_else(|e| panic!("{label}: block {}: {e}", block.id));
            let spliced = patch.apply(&model.proto).unwrap_or_else(|e| panic!("{label}: block {}: {e}", block.id));
            let got = ort_output(&spliced.encode_to_vec(), &format!("{label} block {}", block.id), &input, &dims);
            if got != expected {
                failures.push(format!("{label}: block {}", block.id));
            }
            checked += 1;
            // Control: the comparison sees a copy that is off by one weight.
            if block.id == 0 && !patch.initializers.is_empty() {
                let raw = patch.initializers[0].raw_data.as_mut().unwrap();
                raw[3] ^= 0x01;
                let perturbed = patch.apply(&model.proto).unwrap();
                let got = ort_output(&perturbed.encode_to_vec(), &format!("{label} perturbed"), &input, &dims);
                assert!(got != expected, "{label}: a perturbed copy went unnoticed");
            }
        }
    }
    println!("{checked} blocks spliced in {} models", models.len());
    assert!(checked > 300, "only {checked} blocks checked");
    assert!(failures.is_empty(), "outputs changed: {failures:#?}");
}
