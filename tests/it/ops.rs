//! One-op models for the semantics the exported fixtures never reach: asymmetric and automatic
//! padding, ceil_mode, count_include_pad, negative slice steps, legacy Softmax, pad modes, Gemm
//! flags. Each is built here, saved, and lowered vs onnxruntime on random inputs.

use archrepair_onnx::onnx::proto::{ModelProto, NodeProto, TensorProto};
use archrepair_onnx::onnx::save_model;
use archrepair_onnx::onnx::tensor::{encode_f32, encode_i64};

use crate::builders::{float, int, ints, model, node, string};
use crate::lowering::parity;

/// Deterministic weights in [-1, 1).
fn weights(name: &str, dims: &[i64], seed: u32) -> TensorProto {
    let n: i64 = dims.iter().product();
    let values: Vec<f32> =
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97) % 2000) as f32 / 1000.0 - 1.0).collect();
    encode_f32(name, dims, &values)
}

/// `x - 0.5` as `c`, so activations see negative inputs too (the random inputs are in [0, 1)).
fn centred() -> (NodeProto, TensorProto) {
    (node("Sub", "centre", &["x", "half"], &["c"], vec![]), encode_f32("half", &[], &[0.5]))
}

/// A model that centres `x` and then applies `nodes` (reading `c`, writing `y`).
fn centred_model(opset: i64, dims: &[i64], nodes: Vec<NodeProto>, mut init: Vec<TensorProto>) -> ModelProto {
    let (sub, half) = centred();
    init.push(half);
    model(opset, dims, std::iter::once(sub).chain(nodes).collect(), init)
}

fn cases() -> Vec<(&'static str, ModelProto)> {
    let x4 = [2, 3, 9, 11];
    let pool = |op: &str, attrs| model(17, &x4, vec![node(op, "p", &["x"], &["y"], attrs)], vec![]);
    let conv = |attrs| {
        model(17, &x4, vec![node("Conv", "conv", &["x", "w", "b"], &["y"], attrs)], vec![
            weights("w", &[4, 3, 4, 3], 1),
            weights("b", &[4], 2),
        ])
    };
    let pad = |mode: &str| {
        model(13, &x4, vec![node("Pad", "pad", &["x", "pads"], &["y"], vec![string("mode", mode)])], vec![encode_i64(
            "pads",
            &[8],
            &[0, 0, 2, 1, 0, 0, 1, 3],
        )])
    };
    let unary = |op: &str, opset, attrs| centred_model(opset, &x4, vec![node(op, "op", &["c"], &["y"], attrs)], vec![]);
    vec![
        (
            "AveragePool asymmetric pads, ceil_mode, count_include_pad=0",
            pool("AveragePool", vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), ints("pads", &[0, 1, 1, 0]), int("ceil_mode", 1)]),
        ),
        (
            "AveragePool asymmetric pads, count_include_pad=1",
            pool("AveragePool", vec![
                ints("kernel_shape", &[3, 2]),
                ints("strides", &[2, 1]),
                ints("pads", &[1, 0, 0, 1]),
                int("count_include_pad", 1),
            ]),
        ),
        (
            "AveragePool SAME_UPPER",
            pool("AveragePool", vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), string("auto_pad", "SAME_UPPER")]),
        ),
        (
            "MaxPool SAME_LOWER",
            pool("MaxPool", vec![ints("kernel_shape", &[3, 2]), ints("strides", &[2, 2]), string("auto_pad", "SAME_LOWER")]),
        ),
        (
            "MaxPool explicit pads with dilations",
            pool("MaxPool", vec![ints("kernel_shape", &[3, 2]), ints("strides", &[2, 1]), ints("dilations", &[2, 2]), ints("pads", &[2, 1, 1, 0])]),
        ),
        (
            "MaxPool ceil_mode, asymmetric pads",
            pool("MaxPool", vec![ints("kernel_shape", &[2, 3]), ints("strides", &[3, 2]), ints("pads", &[1, 0, 0, 1]), int("ceil_mode", 1)]),
        ),
        ("GlobalMaxPool", pool("GlobalMaxPool", vec![])),
        ("Conv SAME_LOWER, even kernel", conv(vec![string("auto_pad", "SAME_LOWER")])),
        ("Conv asymmetric pads, stride, dilation", conv(vec![ints("pads", &[1, 0, 2, 1]), ints("strides", &[2, 1]), ints("dilations", &[1, 2])])),
        (
            "Conv grouped (depthwise multiplier 2)",
            model(17, &x4, vec![node("Conv", "conv", &["x", "w"], &["y"], vec![int("group", 3), ints("pads", &[1, 1, 1, 1])])], vec![
                weights("w", &[6, 1, 3, 3], 3),
            ]),
        ),
        ("Pad constant", pad("constant")),
        ("Pad reflect", pad("reflect")),
        ("Pad edge", pad("edge")),
        (
            "Slice negative and positive steps",
            model(13, &x4, vec![node("Slice", "slice", &["x", "starts", "ends", "axes", "steps"], &["y"], vec![])], vec![
                encode_i64("starts", &[2], &[-1, 1]),
                encode_i64("ends", &[2], &[-1000, 100]),
                encode_i64("axes", &[2], &[3, 2]),
                encode_i64("steps", &[2], &[-2, 3]),
            ]),
        ),
        ("Softmax opset 11 (flattens from axis)", unary("Softmax", 11, vec![int("axis", 1)])),
        ("Softmax opset 13 axis -2", unary("Softmax", 13, vec![int("axis", -2)])),
        ("LeakyRelu alpha 0.3", unary("LeakyRelu", 17, vec![float("alpha", 0.3)])),
        ("HardSigmoid alpha 0.3 beta 0.4", unary("HardSigmoid", 17, vec![float("alpha", 0.3), float("beta", 0.4)])),
        ("HardSwish", unary("HardSwish", 17, vec![])),
        (
            // Not centred: onnxruntime has no Sub before opset 7.
            "Clip opset 6 attributes",
            model(6, &x4, vec![node("Clip", "clip", &["x"], &["y"], vec![float("min", 0.2), float("max", 0.7)])], vec![]),
        ),
        (
            "Clip opset 13 min only",
            centred_model(13, &x4, vec![node("Clip", "clip", &["c", "lo"], &["y"], vec![])], vec![encode_f32("lo", &[], &[-0.1])]),
        ),
        ("Flatten axis 2", unary("Flatten", 13, vec![int("axis", 2)])),
        ("Transpose", unary("Transpose", 13, vec![ints("perm", &[0, 3, 1, 2])])),
        ("ReduceMean opset 13 keepdims=0", unary("ReduceMean", 13, vec![ints("axes", &[1, -1]), int("keepdims", 0)])),
        (
            "ReduceMean opset 18 axes input",
            centred_model(18, &x4, vec![node("ReduceMean", "mean", &["c", "axes"], &["y"], vec![])], vec![encode_i64("axes", &[2], &[2, 3])]),
        ),
        ("LRN", unary("LRN", 13, vec![int("size", 3), float("alpha", 0.01), float("beta", 0.75), float("bias", 2.0)])),
        (
            "Split opset 13 sizes input, Concat reversed",
            model(13, &x4, vec![
                node("Split", "split", &["x", "sizes"], &["a", "b"], vec![int("axis", 1)]),
                node("Concat", "cat", &["b", "a"], &["y"], vec![int("axis", 1)]),
            ], vec![encode_i64("sizes", &[2], &[1, 2])]),
        ),
        (
            "Split opset 11 attribute, three outputs summed",
            model(11, &x4, vec![
                node("Split", "split", &["x"], &["a", "b", "c"], vec![int("axis", 3), ints("split", &[3, 3, 5])]),
                node("Slice", "cut", &["c", "s", "e", "ax"], &["c3"], vec![]),
                node("Sum", "sum", &["a", "b", "c3"], &["y"], vec![]),
            ], vec![encode_i64("s", &[1], &[0]), encode_i64("e", &[1], &[3]), encode_i64("ax", &[1], &[3])]),
        ),
        (
            "Range added with broadcasting",
            model(13, &x4, vec![
                node("Range", "range", &["start", "limit", "delta"], &["r"], vec![]),
                node("Add", "add", &["x", "r"], &["y"], vec![]),
            ], vec![encode_f32("start", &[], &[0.0]), encode_f32("limit", &[], &[5.5]), encode_f32("delta", &[], &[0.5])]),
        ),
        (
            "BatchNormalization (eval)",
            model(15, &x4, vec![node("BatchNormalization", "bn", &["x", "g", "b", "m", "v"], &["y"], vec![float("epsilon", 1e-3)])], vec![
                weights("g", &[3], 4),
                weights("b", &[3], 5),
                weights("m", &[3], 6),
                encode_f32("v", &[3], &[0.5, 1.5, 2.0]),
            ]),
        ),
        (
            "Gemm transA, alpha, beta, broadcast C",
            model(13, &[6, 2], vec![node("Gemm", "gemm", &["x", "w", "c"], &["y"], vec![
                int("transA", 1),
                int("transB", 1),
                float("alpha", 0.5),
                float("beta", 2.0),
            ])], vec![weights("w", &[4, 6], 7), weights("c", &[4], 8)]),
        ),
        (
            "MatMul batched with broadcasting",
            model(13, &x4, vec![node("MatMul", "mm", &["x", "w"], &["y"], vec![])], vec![weights("w", &[3, 11, 5], 9)]),
        ),
        (
            "Div and Mul broadcasting over channels",
            model(13, &x4, vec![
                node("Div", "div", &["x", "d"], &["q"], vec![]),
                node("Mul", "mul", &["q", "m"], &["y"], vec![]),
            ], vec![encode_f32("d", &[3, 1, 1], &[2.0, 4.0, 0.5]), weights("m", &[11], 10)]),
        ),
    ]
}

#[test]
fn single_op_models_match_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (name, model)) in cases().into_iter().enumerate() {
        let path = dir.path().join(format!("op{i}.onnx"));
        save_model(&model, &path).unwrap();
        let (worst, scale) = parity(&path, 4);
        println!("{name}: max abs diff {worst:.2e} (max |output| {scale:.2e})");
        if !(worst <= 1e-5 * scale.max(1.0)) {
            failures.push(format!("{name}: {worst:e}"));
        }
    }
    assert!(failures.is_empty(), "lowered graph differs from onnxruntime: {failures:#?}");
}

/// auto_pad SAME with dilations: onnxruntime refuses it for Conv and sizes pooling from the
/// undilated kernel (microsoft/onnxruntime#10083), so there is nothing to compare with. We follow
/// the ONNX spec: output = ceil(input / stride), padding from the dilated kernel.
#[test]
fn dilated_same_pooling_follows_the_onnx_spec() {
    use archrepair_onnx::model::LoadedModel;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.onnx");
    let attrs = vec![ints("kernel_shape", &[3, 2]), ints("strides", &[2, 2]), ints("dilations", &[2, 1]), string("auto_pad", "SAME_UPPER")];
    save_model(&model(17, &[1, 1, 9, 11], vec![node("MaxPool", "p", &["x"], &["y"], attrs)], vec![]), &path).unwrap();
    let lowered = LoadedModel::open(&path).unwrap().lower(tch::Device::Cpu).unwrap();
    // Row r holds the value r everywhere: each output row is the largest row its window reaches.
    let x = tch::Tensor::arange(9, (tch::Kind::Float, tch::Device::Cpu)).view([1, 1, 9, 1]).expand([1, 1, 9, 11], false);
    let y = lowered.predict(&x).unwrap();
    assert_eq!(y.size(), [1, 1, 5, 6]);
    // Dilated kernel 5, stride 2, 5 outputs: 4 rows of padding, 2 before and 2 after. Output row i
    // covers input rows 2i-2, 2i, 2i+2 (those inside 0..9).
    let rows: Vec<f32> = Vec::try_from(y.select(3, 0).flatten(0, -1)).unwrap();
    assert_eq!(rows, [2.0, 4.0, 6.0, 8.0, 8.0]);
}
