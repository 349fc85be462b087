//! Catalogue sections "Model file" and "ONNX content": unreadable files and graphs that are not
//! what a classifier needs, through `inspect` and the main command.

use archrepair_onnx::onnx::proto::{ModelProto, OperatorSetIdProto};

use super::{run_writing_nothing, s, spec, write_model};
use crate::builders::{float_input, ints, model, node};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `inspect FILE` on `bytes`, refused with the file's name and `needles`.
fn inspect_refuses(name: &str, bytes: &[u8], needles: &[&str]) {
    let d = tmp();
    std::fs::write(d.path().join(name), bytes).unwrap();
    let mut all = vec![name];
    all.extend_from_slice(needles);
    run_writing_nothing(d.path(), &["inspect", name]).refused(&all).bounded(name);
}

/// A Relu model over a 1x1x28x28 input (Fashion-MNIST's shape) with `nodes` instead.
fn tiny(nodes: Vec<archrepair_onnx::onnx::proto::NodeProto>) -> ModelProto {
    model(17, &[1, 1, 28, 28], nodes, vec![])
}

fn relu() -> ModelProto {
    tiny(vec![node("Relu", "relu", &["x"], &["y"], vec![])])
}

#[test]
fn model_missing_file() {
    let d = tmp();
    run_writing_nothing(d.path(), &["inspect", "absent.onnx"]).refused(&["cannot read `absent.onnx`", "No such file"]);
}

#[test]
fn model_is_a_directory() {
    let d = tmp();
    std::fs::create_dir(d.path().join("dir.onnx")).unwrap();
    run_writing_nothing(d.path(), &["inspect", "dir.onnx"]).refused(&["`dir.onnx` is not an ONNX model: it is a directory"]);
}

#[test]
fn model_empty_file() {
    inspect_refuses("empty.onnx", b"", &["is not an ONNX model: the file is empty"]);
}

#[test]
fn model_random_bytes() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    inspect_refuses("random.onnx", &bytes, &["is not an ONNX model: protobuf decoding failed", "not truncated, not another format"]);
}

#[test]
fn model_truncated() {
    let bytes = std::fs::read(super::subject()).unwrap();
    inspect_refuses("truncated.onnx", &bytes[..bytes.len() / 2], &["is not an ONNX model: protobuf decoding failed", "buffer underflow"]);
}

#[test]
fn model_png() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x1c\0\0\0\x1c\x08\0\0\0\0W\xdd\x1b\x0c";
    inspect_refuses("image.png", png, &["is not an ONNX model"]);
}

#[test]
fn model_protobuf_not_a_model() {
    // Field 2 (producer_name) = "ab": valid protobuf, not a model.
    inspect_refuses("producer.onnx", &[0x12, 2, b'a', b'b'], &["the decoded message has no graph, no ir_version, no opset_import"]);
}

#[test]
fn model_no_default_opset() {
    let d = tmp();
    let mut m = relu();
    m.opset_import = vec![OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) }];
    write_model(d.path(), "m.onnx", &m);
    run_writing_nothing(d.path(), &["inspect", "m.onnx"]).refused(&["m.onnx", "imports no ai.onnx operator set", "node `relu` (Relu)", "opset_import"]);
}

#[test]
fn model_dangling_input() {
    let d = tmp();
    write_model(d.path(), "m.onnx", &tiny(vec![node("Add", "add", &["x", "ghost"], &["y"], vec![])]));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"]).refused(&["m.onnx", "node `add` (Add) reads tensor `ghost`", "add `ghost` as a graph input or initializer"]);
}

#[test]
fn model_cycle() {
    let d = tmp();
    let nodes = vec![node("Add", "a", &["x", "b_out"], &["a_out"], vec![]), node("Relu", "b", &["a_out"], &["b_out"], vec![]), node("Relu", "c", &["a_out"], &["y"], vec![])];
    write_model(d.path(), "m.onnx", &tiny(nodes));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"]).refused(&["m.onnx", "the graph has a cycle", "must be acyclic"]);
}

#[test]
fn model_two_producers() {
    let d = tmp();
    write_model(d.path(), "m.onnx", &tiny(vec![node("Relu", "r1", &["x"], &["y"], vec![]), node("Relu", "r2", &["x"], &["y"], vec![])]));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"]).refused(&["tensor `y` is produced by both node `r1` (Relu) and node `r2` (Relu)", "Rename one of the outputs"]);
}

#[test]
fn model_inconsistent_shapes() {
    let d = tmp();
    write_model(d.path(), "m.onnx", &tiny(vec![node("Transpose", "t", &["x"], &["y"], vec![ints("perm", &[0, 1, 1, 2])])]));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"]).refused(&["node `t` (Transpose)", "perm [0, 1, 1, 2] is not a permutation", "re-export it"]);
}

#[test]
fn model_declared_shape_differs() {
    let d = tmp();
    let mut m = relu();
    m.graph.as_mut().unwrap().value_info.push(float_input("y", &[1 << 20, 1 << 20, 1 << 20]));
    write_model(d.path(), "m.onnx", &m);
    let out = run_writing_nothing(d.path(), &["inspect", "m.onnx"]);
    out.refused(&["tensor `y`: node `relu` (Relu) produces shape [1, 1, 28, 28], but the model declares [1048576, 1048576, 1048576]", "Fix or remove the model's value_info"]);
    assert_eq!(out.stderr.matches("produces shape").count(), 1, "the cause is printed once:\n{}", out.stderr);
}

#[test]
fn model_unsupported_ops() {
    let d = tmp();
    let spec = spec(d.path(), "");
    let nodes = vec![node("Celu", "c1", &["x"], &["t"], vec![]), node("FancyDense", "f", &["t"], &["y"], vec![])];
    let mut m = tiny(nodes);
    m.graph.as_mut().unwrap().node[1].domain = Some("com.example".into());
    m.opset_import.push(OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) });
    write_model(d.path(), "m.onnx", &m);
    run_writing_nothing(d.path(), &["m.onnx", "out.onnx", "--spec", super::s(&spec)])
        .refused(&["m.onnx", "2 operator type(s) that archrepair-onnx cannot lower", "Celu: 1 node(s): c1", "com.example::FancyDense: 1 node(s): f"]);
}

#[test]
fn model_two_inputs() {
    let d = tmp();
    let spec = spec(d.path(), "");
    let mut m = tiny(vec![node("Add", "add", &["x", "x2"], &["y"], vec![])]);
    m.graph.as_mut().unwrap().input.push(float_input("x2", &[1, 1, 28, 28]));
    write_model(d.path(), "m.onnx", &m);
    run_writing_nothing(d.path(), &["m.onnx", "out.onnx", "--spec", s(&spec)]).refused(&["m.onnx", "the model has 2 inputs (x, x2)", "single-input"]);
}

#[test]
fn model_fixed_batch() {
    let d = tmp();
    let spec = spec(d.path(), "search: {block: 0}\n");
    let fixed = crate::support::with_fixed_batch(&super::subject(), d.path(), 1);
    run_writing_nothing(d.path(), &[s(&fixed), "out.onnx", "--spec", s(&spec)]).refused(&["batch1.onnx` fixes its batch size to 1", "dynamic batch axis"]);
}
