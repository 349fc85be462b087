//! Shape rules through the whole pass: build a small model, infer, compare.

use crate::graph::tests_support::*;
use crate::graph::{Dim, Graph};
use crate::onnx::proto::{ModelProto, NodeProto, TensorProto};
use crate::onnx::tensor::{encode_f32, encode_i64};

fn n() -> Dim {
    Dim::Symbolic("N".into())
}
fn k(v: i64) -> Dim {
    Dim::Known(v)
}

/// Builds, infers, and returns the graph (panics with the error).
fn infer(opset: i64, nodes: Vec<NodeProto>, inputs: &[(&str, &[i64])], inits: Vec<TensorProto>) -> Graph {
    try_infer(opset, nodes, inputs, inits).unwrap_or_else(|e| panic!("{e}"))
}

fn try_infer(
    opset: i64,
    nodes: Vec<NodeProto>,
    inputs: &[(&str, &[i64])],
    inits: Vec<TensorProto>,
) -> Result<Graph, String> {
    let last = nodes.last().map(|n| n.output[0].clone()).unwrap();
    let mut m: ModelProto = model(opset, nodes, inputs, &[&last]);
    m.graph.as_mut().unwrap().initializer = inits;
    let mut g = Graph::from_model(&m).map_err(|e| e.to_string())?;
    g.infer_shapes().map_err(|e| e.to_string())?;
    Ok(g)
}

fn weight(name: &str, dims: &[i64]) -> TensorProto {
    let count = dims.iter().product::<i64>() as usize;
    encode_f32(name, dims, &vec![0.0; count])
}

fn conv(attrs: Vec<crate::onnx::proto::AttributeProto>, x: &[i64], w: &[i64]) -> Result<Vec<Dim>, String> {
    let g =
        try_infer(13, vec![with(node("Conv", "c", &["x", "w"], &["y"]), attrs)], &[("x", x)], vec![weight("w", w)])?;
    Ok(g.shapes.get("y").cloned().unwrap_or_default())
}

#[test]
fn conv_pads_strides_dilations_groups() {
    assert_eq!(
        conv(vec![ints("pads", &[1, 1, 1, 1])], &[-1, 3, 32, 32], &[16, 3, 3, 3]).unwrap(),
        [n(), k(16), k(32), k(32)]
    );
    assert_eq!(
        conv(vec![ints("pads", &[1, 1, 1, 1]), ints("strides", &[2, 2])], &[-1, 3, 32, 32], &[16, 3, 3, 3]).unwrap(),
        [n(), k(16), k(16), k(16)]
    );
    assert_eq!(
        conv(vec![ints("pads", &[2, 2, 2, 2]), ints("dilations", &[2, 2])], &[1, 3, 32, 31], &[4, 3, 3, 3]).unwrap(),
        [k(1), k(4), k(32), k(31)]
    );
    assert_eq!(
        conv(vec![int("group", 8), ints("kernel_shape", &[3, 3])], &[1, 8, 10, 10], &[8, 1, 3, 3]).unwrap(),
        [k(1), k(8), k(8), k(8)]
    );
    assert_eq!(
        conv(vec![ints("pads", &[0, 1, 0, 2])], &[1, 3, 7, 7], &[2, 3, 3, 3]).unwrap(),
        [k(1), k(2), k(5), k(8)]
    );
    assert_eq!(
        conv(vec![string("auto_pad", "SAME_UPPER"), ints("strides", &[2, 2])], &[1, 3, 7, 8], &[2, 3, 3, 3]).unwrap(),
        [k(1), k(2), k(4), k(4)]
    );
    assert_eq!(
        conv(vec![string("auto_pad", "VALID"), ints("strides", &[2, 2])], &[1, 3, 7, 8], &[2, 3, 3, 3]).unwrap(),
        [k(1), k(2), k(3), k(3)]
    );
    // A symbolic spatial size survives only an identity window.
    assert_eq!(
        conv(vec![ints("pads", &[1, 1, 1, 1])], &[1, 3, -1, 5], &[2, 3, 3, 3]).unwrap(),
        [k(1), k(2), n(), k(5)]
    );
    assert_eq!(conv(vec![], &[1, 3, -1, 5], &[2, 3, 3, 3]).unwrap(), Vec::<Dim>::new());
}

#[test]
fn conv_inconsistencies_name_the_node() {
    let e = conv(vec![], &[1, 4, 8, 8], &[2, 3, 3, 3]).unwrap_err();
    assert!(e.contains("node `c` (Conv)") && e.contains("4 channels"), "{e}");
    let e = conv(vec![int("group", 2)], &[1, 6, 8, 8], &[3, 3, 3, 3]).unwrap_err();
    assert!(e.contains("not divisible by group 2"), "{e}");
    let e = conv(vec![], &[1, 3, 2, 2], &[2, 3, 3, 3]).unwrap_err();
    assert!(e.contains("does not fit"), "{e}");
}

fn pool(op: &str, attrs: Vec<crate::onnx::proto::AttributeProto>, x: &[i64]) -> Vec<Dim> {
    infer(13, vec![with(node(op, "p", &["x"], &["y"]), attrs)], &[("x", x)], vec![]).shapes["y"].clone()
}

#[test]
fn pools_with_ceil_mode_and_pads() {
    let k3s2 = || vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2])];
    let mut a = k3s2();
    a.push(ints("pads", &[1, 1, 1, 1]));
    assert_eq!(pool("MaxPool", a, &[-1, 64, 112, 112]), [n(), k(64), k(56), k(56)]);
    assert_eq!(pool("MaxPool", k3s2(), &[1, 1, 6, 7]), [k(1), k(1), k(2), k(3)]);
    let mut a = k3s2();
    a.push(int("ceil_mode", 1));
    assert_eq!(pool("MaxPool", a, &[1, 1, 6, 7]), [k(1), k(1), k(3), k(3)]);
    // ceil_mode drops a last window that would start in the right padding (as onnxruntime
    // and PyTorch do): 3 padded by 1+1, kernel 2, stride 2 gives 2 windows, not 3.
    let a = vec![ints("kernel_shape", &[2]), ints("strides", &[2]), ints("pads", &[1, 1]), int("ceil_mode", 1)];
    assert_eq!(pool("AveragePool", a, &[1, 1, 3]), [k(1), k(1), k(2)]);
    let a = vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])];
    assert_eq!(pool("AveragePool", a, &[-1, 8, 16, 16]), [n(), k(8), k(8), k(8)]);
    assert_eq!(pool("GlobalAveragePool", vec![], &[-1, 8, 16, 16]), [n(), k(8), k(1), k(1)]);
    let g = try_infer(13, vec![node("MaxPool", "p", &["x"], &["y"])], &[("x", &[1, 1, 4, 4])], vec![]);
    assert!(g.unwrap_err().contains("`kernel_shape` is missing"));
}

#[test]
fn numpy_broadcasting() {
    let g = infer(13, vec![node("Add", "a", &["x", "b"], &["y"])], &[("x", &[-1, 3, 4]), ("b", &[4])], vec![]);
    assert_eq!(g.shapes["y"], [n(), k(3), k(4)]);
    let g =
        infer(13, vec![node("Mul", "m", &["x", "b"], &["y"])], &[("x", &[-1, 3, 1, 1]), ("b", &[1, 1, 5, 5])], vec![]);
    assert_eq!(g.shapes["y"], [n(), k(3), k(5), k(5)]);
    let g = infer(
        13,
        vec![node("Sum", "s", &["x", "b", "c"], &["y"])],
        &[("x", &[2, 1]), ("b", &[3]), ("c", &[1, 1, 1])],
        vec![],
    );
    assert_eq!(g.shapes["y"], [k(1), k(2), k(3)]);
    let e =
        try_infer(13, vec![node("Add", "a", &["x", "b"], &["y"])], &[("x", &[2, 3]), ("b", &[4])], vec![]).unwrap_err();
    assert!(e.contains("node `a` (Add)") && e.contains("3 and 4"), "{e}");
}

fn reshape(x: &[i64], target: &[i64], allowzero: bool) -> Result<Vec<Dim>, String> {
    let mut r = node("Reshape", "r", &["x", "t"], &["y"]);
    if allowzero {
        r.attribute.push(int("allowzero", 1));
    }
    let g = try_infer(14, vec![r], &[("x", x)], vec![encode_i64("t", &[target.len() as i64], target)])?;
    Ok(g.shapes.get("y").cloned().unwrap_or_default())
}

#[test]
fn reshape_zero_and_minus_one() {
    assert_eq!(reshape(&[-1, 64, 1, 1], &[0, -1], false).unwrap(), [n(), k(64)]);
    assert_eq!(reshape(&[-1, 64, 1, 1], &[-1, 64], false).unwrap(), [n(), k(64)]);
    assert_eq!(reshape(&[2, 3, 4], &[-1, 4], false).unwrap(), [k(6), k(4)]);
    assert_eq!(reshape(&[2, 3, 4], &[0, 0, 2, 2], false).unwrap(), [k(2), k(3), k(2), k(2)]);
    assert_eq!(reshape(&[0, 3], &[0, 3], true).unwrap(), [k(0), k(3)]);
    // N*64 elements into [-1, 32]: the -1 is 2N, not a single symbol: unknown, not a guess.
    assert_eq!(reshape(&[-1, 64], &[-1, 32], false).unwrap(), Vec::<Dim>::new());
    let e = reshape(&[2, 3], &[4, 2], false).unwrap_err();
    assert!(e.contains("node `r` (Reshape)") && e.contains("cannot be reshaped"), "{e}");
    let e = reshape(&[2, 3], &[-1, 4], false).unwrap_err();
    assert!(e.contains("cannot be reshaped"), "{e}");
    assert!(reshape(&[2, 3], &[-1, -1], false).unwrap_err().contains("more than one -1"));
}

#[test]
fn gemm_transposes_and_matmul() {
    let gemm = |attrs, a: &[i64], b: &[i64]| {
        try_infer(13, vec![with(node("Gemm", "fc", &["a", "b"], &["y"]), attrs)], &[("a", a), ("b", b)], vec![])
            .map(|g| g.shapes["y"].clone())
    };
    assert_eq!(gemm(vec![int("transB", 1)], &[-1, 64], &[10, 64]).unwrap(), [n(), k(10)]);
    assert_eq!(gemm(vec![int("transA", 1)], &[64, 5], &[64, 10]).unwrap(), [k(5), k(10)]);
    assert_eq!(gemm(vec![], &[5, 64], &[64, 10]).unwrap(), [k(5), k(10)]);
    let e = gemm(vec![], &[5, 64], &[10, 64]).unwrap_err();
    assert!(e.contains("node `fc` (Gemm)") && e.contains("inner dimensions"), "{e}");

    let mm = |a: &[i64], b: &[i64]| {
        try_infer(13, vec![node("MatMul", "mm", &["a", "b"], &["y"])], &[("a", a), ("b", b)], vec![])
            .map(|g| g.shapes["y"].clone())
    };
    assert_eq!(mm(&[-1, 5, 3], &[3, 4]).unwrap(), [n(), k(5), k(4)]);
    assert_eq!(mm(&[3], &[2, 3, 4]).unwrap(), [k(2), k(4)]);
    assert_eq!(mm(&[2, 5, 3], &[3]).unwrap(), [k(2), k(5)]);
    let e = mm(&[5, 3], &[4, 2]).unwrap_err();
    assert!(e.contains("node `mm` (MatMul)") && e.contains("inner dimensions"), "{e}");
}

#[test]
fn flatten_axis() {
    let flat = |axis: i64, x: &[i64]| {
        infer(13, vec![with(node("Flatten", "f", &["x"], &["y"]), vec![int("axis", axis)])], &[("x", x)], vec![])
            .shapes
            .get("y")
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(flat(1, &[-1, 64, 1, 1]), [n(), k(64)]);
    assert_eq!(flat(2, &[2, 3, 4, 5]), [k(6), k(20)]);
    assert_eq!(flat(0, &[2, 3, 4, 5]), [k(1), k(120)]);
    assert_eq!(flat(-1, &[2, 3, 4, 5]), [k(24), k(5)]);
    assert_eq!(flat(4, &[2, 3, 4, 5]), [k(120), k(1)]);
    assert_eq!(flat(2, &[-1, 3, 4, 5]), Vec::<Dim>::new(), "3N is no single dimension");
}

#[test]
fn reductions_by_attribute_and_input() {
    let r = with(node("ReduceMean", "m", &["x"], &["y"]), vec![ints("axes", &[-1, -2]), int("keepdims", 1)]);
    assert_eq!(infer(13, vec![r], &[("x", &[-1, 8, 4, 4])], vec![]).shapes["y"], [n(), k(8), k(1), k(1)]);
    let r = with(node("ReduceMean", "m", &["x", "axes"], &["y"]), vec![int("keepdims", 0)]);
    let g = infer(18, vec![r], &[("x", &[-1, 8, 4, 4])], vec![encode_i64("axes", &[2], &[2, 3])]);
    assert_eq!(g.shapes["y"], [n(), k(8)]);
    let r = node("ReduceSum", "s", &["x"], &["y"]);
    assert_eq!(infer(13, vec![r], &[("x", &[2, 3])], vec![]).shapes["y"], [k(1), k(1)]);
}

#[test]
fn shape_arithmetic_of_torchscript_keeps_the_batch_symbol() {
    // x.view(x.size(0), -1) as the TorchScript exporter writes it at opset 13.
    let nodes = vec![
        node("Shape", "shape", &["x"], &["s"]),
        node("Gather", "gather", &["s", "zero"], &["b"]),
        node("Unsqueeze", "unsq", &["b", "axes"], &["bu"]),
        with(node("Concat", "cat", &["bu", "minus_one"], &["target"]), vec![int("axis", 0)]),
        node("Reshape", "view", &["x", "target"], &["y"]),
    ];
    let inits =
        vec![encode_i64("zero", &[], &[0]), encode_i64("axes", &[1], &[0]), encode_i64("minus_one", &[1], &[-1])];
    let g = infer(13, nodes, &[("x", &[-1, 64, 1, 1])], inits);
    assert_eq!(g.shapes["s"], [k(4)]);
    assert_eq!(g.shapes["b"], Vec::<Dim>::new());
    assert_eq!(g.shapes["target"], [k(2)]);
    assert_eq!(g.shapes["y"], [n(), k(64)]);
}

#[test]
fn structural_ops() {
    let g = infer(
        13,
        vec![with(node("Transpose", "t", &["x"], &["y"]), vec![ints("perm", &[0, 2, 1])])],
        &[("x", &[-1, 3, 5])],
        vec![],
    );
    assert_eq!(g.shapes["y"], [n(), k(5), k(3)]);
    let g = infer(13, vec![node("Transpose", "t", &["x"], &["y"])], &[("x", &[2, 3, 5])], vec![]);
    assert_eq!(g.shapes["y"], [k(5), k(3), k(2)]);
    assert!(try_infer(
        13,
        vec![with(node("Transpose", "t", &["x"], &["y"]), vec![ints("perm", &[0, 0])])],
        &[("x", &[2, 3])],
        vec![]
    )
    .is_err());

    let cat = with(node("Concat", "c", &["a", "b"], &["y"]), vec![int("axis", 1)]);
    assert_eq!(
        infer(13, vec![cat.clone()], &[("a", &[-1, 3, 8]), ("b", &[-1, 5, 8])], vec![]).shapes["y"],
        [n(), k(8), k(8)]
    );
    let e = try_infer(13, vec![cat], &[("a", &[-1, 3, 8]), ("b", &[-1, 5, 7])], vec![]).unwrap_err();
    assert!(e.contains("node `c` (Concat)") && e.contains("8 differs from 7"), "{e}");

    let u = with(node("Unsqueeze", "u", &["x"], &["y"]), vec![ints("axes", &[1, 2])]);
    assert_eq!(infer(11, vec![u], &[("x", &[64])], vec![]).shapes["y"], [k(64), k(1), k(1)]);
    let u = node("Unsqueeze", "u", &["x", "axes"], &["y"]);
    assert_eq!(
        infer(13, vec![u], &[("x", &[-1, 4])], vec![encode_i64("axes", &[1], &[-1])]).shapes["y"],
        [n(), k(4), k(1)]
    );
    let s = with(node("Squeeze", "s", &["x"], &["y"]), vec![ints("axes", &[2, 3])]);
    assert_eq!(infer(11, vec![s], &[("x", &[-1, 4, 1, 1])], vec![]).shapes["y"], [n(), k(4)]);
    let s = node("Squeeze", "s", &["x"], &["y"]);
    assert_eq!(infer(13, vec![s], &[("x", &[1, 4, 1, 1])], vec![]).shapes["y"], [k(4)]);
    let s = node("Squeeze", "s", &["x", "axes"], &["y"]);
    let e = try_infer(13, vec![s], &[("x", &[1, 4])], vec![encode_i64("axes", &[1], &[1])]).unwrap_err();
    assert!(e.contains("not 1"), "{e}");

    let sl = node("Slice", "sl", &["x", "st", "en", "ax", "sp"], &["y"]);
    let inits = vec![
        encode_i64("st", &[2], &[1, -1]),
        encode_i64("en", &[2], &[i64::MAX, i64::MIN]),
        encode_i64("ax", &[2], &[1, 2]),
        encode_i64("sp", &[2], &[2, -1]),
    ];
    assert_eq!(infer(13, vec![sl], &[("x", &[-1, 7, 5])], inits).shapes["y"], [n(), k(3), k(5)]);
    let sl =
        with(node("Slice", "sl", &["x"], &["y"]), vec![ints("starts", &[0]), ints("ends", &[2]), ints("axes", &[1])]);
    assert_eq!(infer(9, vec![sl], &[("x", &[4, 7])], vec![]).shapes["y"], [k(4), k(2)]);

    let sp = with(node("Split", "sp", &["x"], &["a", "b"]), vec![int("axis", 1), ints("split", &[2, 6])]);
    let mut m = model(11, vec![sp], &[("x", &[-1, 8])], &["a", "b"]);
    m.graph.as_mut().unwrap().initializer.clear();
    let mut g = Graph::from_model(&m).unwrap();
    g.infer_shapes().unwrap();
    assert_eq!((g.shapes["a"].clone(), g.shapes["b"].clone()), (vec![n(), k(2)], vec![n(), k(6)]));

    let p = node("Pad", "p", &["x", "pads"], &["y"]);
    let g = infer(13, vec![p], &[("x", &[-1, 3, 4, 4])], vec![encode_i64("pads", &[8], &[0, 0, 1, 2, 0, 0, 1, 2])]);
    assert_eq!(g.shapes["y"], [n(), k(3), k(6), k(8)]);
    let p = with(node("Pad", "p", &["x"], &["y"]), vec![ints("pads", &[0, 0, 1, 1, 0, 0, 1, 1])]);
    assert_eq!(infer(9, vec![p], &[("x", &[1, 3, 4, 4])], vec![]).shapes["y"], [k(1), k(3), k(6), k(6)]);

    let c = node("ConstantOfShape", "c", &["s"], &["y"]);
    assert_eq!(infer(13, vec![c], &[], vec![encode_i64("s", &[2], &[3, 5])]).shapes["y"], [k(3), k(5)]);
    let r = node("Range", "r", &["a", "b", "c"], &["y"]);
    let inits = vec![encode_i64("a", &[], &[2]), encode_i64("b", &[], &[11]), encode_i64("c", &[], &[3])];
    assert_eq!(infer(13, vec![r], &[], inits).shapes["y"], [k(3)]);
    let sh = with(node("Shape", "s", &["x"], &["y"]), vec![int("start", 1), int("end", -1)]);
    assert_eq!(infer(15, vec![sh], &[("x", &[-1, 3, 4, 5])], vec![]).shapes["y"], [k(2)]);
    let g = node("Gather", "g", &["x", "i"], &["y"]);
    assert_eq!(
        infer(13, vec![g], &[("x", &[10, 4])], vec![encode_i64("i", &[2, 3], &[0; 6])]).shapes["y"],
        [k(2), k(3), k(4)]
    );
    let c = with(node("Constant", "c", &[], &["y"]), vec![tensor("value", encode_f32("", &[2, 2], &[0.0; 4]))]);
    assert_eq!(infer(13, vec![c], &[], vec![]).shapes["y"], [k(2), k(2)]);
    let bn = node("BatchNormalization", "bn", &["x", "s", "b", "m", "v"], &["y"]);
    let inits = ["s", "b", "m", "v"].iter().map(|n| weight(n, &[3])).collect();
    assert_eq!(infer(13, vec![bn], &[("x", &[-1, 3, 4, 4])], inits).shapes["y"], [n(), k(3), k(4), k(4)]);
}

#[test]
fn unknown_ops_are_skipped_and_declared_conflicts_are_errors() {
    let nodes = vec![node("FancyOp", "f", &["x"], &["a"]), node("Relu", "r", &["a"], &["y"])];
    let g = infer(13, nodes, &[("x", &[1, 2])], vec![]);
    assert!(!g.shapes.contains_key("a") && !g.shapes.contains_key("y"));

    let mut m = model(13, vec![node("Relu", "r", &["x"], &["y"])], &[("x", &[1, 2])], &["y"]);
    m.graph.as_mut().unwrap().output[0] = vi("y", &[1, 3]);
    let mut g = Graph::from_model(&m).unwrap();
    let e = g.infer_shapes().unwrap_err().to_string();
    assert!(
        e.contains("tensor `y`") && e.contains("`r` (Relu)") && e.contains("[1, 2]") && e.contains("[1, 3]"),
        "{e}"
    );

    // A declared number fills in what inference leaves symbolic, and a declared name wins.
    let mut m = model(13, vec![node("Relu", "r", &["x"], &["y"])], &[("x", &[-1, 2])], &["y"]);
    m.graph.as_mut().unwrap().output[0] = vi("y", &[4, 2]);
    let mut g = Graph::from_model(&m).unwrap();
    g.infer_shapes().unwrap();
    assert_eq!(g.shapes["y"], [k(4), k(2)]);
}

/// Found by fuzzing (docs/fuzzing.md): attribute and dim values near i64::MAX.
#[test]
fn hostile_values_do_not_overflow() {
    // Symbolic spatial axes with pads and dilations whose sums wrapped to equal values: the
    // "same" padding check must not call this an identity window.
    let huge = vec![ints("pads", &[i64::MAX, 1, i64::MAX, 1]), ints("dilations", &[1 << 62, 1 << 62])];
    let y = conv(huge, &[-1, 3, -1, -1], &[16, 3, 3, 3]).unwrap_or_default();
    assert_ne!(y, [n(), k(16), n(), n()]);
    // Split into equal parts (opset 18) of an axis of i64::MAX: the part size overflowed and a
    // negative chunk made `clamp` panic.
    let sp = node("Split", "sp", &["x"], &["a", "b"]);
    let g = infer(18, vec![sp], &[("x", &[i64::MAX])], vec![]);
    assert_eq!(g.shapes["a"], [k(i64::MAX / 2 + 1)]);
    assert_eq!(g.shapes["b"], [k(i64::MAX / 2)]);
}
