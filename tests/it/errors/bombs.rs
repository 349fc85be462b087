//! Resource bombs: small files that declare huge things. Each is refused early (or handled,
//! where it is a valid model) with a clear error, and the child's peak RSS stays under
//! [`super::RSS_BOUND_KB`]. The files are built here, never committed.

use archrepair_onnx::onnx::proto::{tensor_proto::DataType, TensorProto};

use super::{run_in, run_writing_nothing, s, spec, write_model};
use crate::builders::{float_input, model, node, tensor_attr};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// An Add of the input and a FLOAT initializer `w` declaring `dims`, holding `raw` bytes.
fn with_initializer(dims: &[i64], raw: Option<Vec<u8>>) -> archrepair_onnx::onnx::proto::ModelProto {
    let w = TensorProto { name: Some("w".into()), dims: dims.to_vec(), data_type: Some(DataType::Float as i32), raw_data: raw, ..Default::default() };
    model(17, &[1, 1, 28, 28], vec![node("Add", "add", &["x", "w"], &["y"], vec![])], vec![w])
}

#[test]
fn bomb_initializer_2gib_without_data() {
    let d = tmp();
    write_model(d.path(), "m.onnx", &with_initializer(&[1 << 29], None));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"])
        .refused(&["m.onnx", "initializer `w` cannot be decoded", "dims [536870912] describe 536870912 elements but the data holds 0", "re-export it"])
        .bounded("initializer 2 GiB, no data (inspect)");
    let spec = spec(d.path(), "");
    run_writing_nothing(d.path(), &["m.onnx", "out.onnx", "--spec", s(&spec)]).refused(&["initializer `w` cannot be decoded"]).bounded("initializer 2 GiB, no data (main)");
}

#[test]
fn bomb_initializer_2gib_short_data() {
    let d = tmp();
    write_model(d.path(), "m.onnx", &with_initializer(&[1 << 29], Some(vec![0; 16])));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"])
        .refused(&["initializer `w` cannot be decoded", "raw_data holds 16 bytes, 536870912 elements of FLOAT need 2147483648"])
        .bounded("initializer 2 GiB, 16 bytes of data");
}

#[test]
fn bomb_initializer_2_pow_40_elements() {
    let d = tmp();
    write_model(d.path(), "m.onnx", &with_initializer(&[1 << 20, 1 << 20], None));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"]).refused(&["dims [1048576, 1048576] describe 1099511627776 elements"]).bounded("initializer 2^40 elements");
}

#[test]
fn bomb_initializer_dims_overflow() {
    // 2^62 FLOATs: 2^64 bytes, which wraps to 0 in unchecked arithmetic and would match empty raw_data.
    let d = tmp();
    write_model(d.path(), "m.onnx", &with_initializer(&[1 << 62], Some(Vec::new())));
    run_writing_nothing(d.path(), &["inspect", "m.onnx"]).refused(&["initializer `w` cannot be decoded", "more bytes than memory can hold"]).bounded("initializer 2^62 elements");
}

#[test]
fn bomb_constant_of_shape_2_pow_40() {
    // A computed tensor: ConstantOfShape of a constant shape [2^20, 2^20] is folded at load time.
    let d = tmp();
    let shape = archrepair_onnx::onnx::tensor::encode_i64("shape", &[2], &[1 << 20, 1 << 20]);
    let nodes = vec![node("Constant", "shape_c", &[], &["shape"], vec![tensor_attr("value", shape)]), node("ConstantOfShape", "big", &["shape"], &["big_out"], vec![]), node("Add", "add", &["x", "big_out"], &["y"], vec![])];
    write_model(d.path(), "m.onnx", &model(17, &[1, 1, 28, 28], nodes, vec![]));
    let out = run_in(d.path(), &["inspect", "m.onnx"]);
    out.bounded("ConstantOfShape 2^40 elements");
    // Valid ONNX (if absurd): folding is skipped, the model is inspected, the broadcast fails.
    assert!(out.code == Some(0) || out.code == Some(2), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn bomb_input_2_pow_40_elements() {
    // The declared input is valid ONNX: inspect prints it; the main command refuses the data.
    let d = tmp();
    let mut m = model(17, &[1, 1, 28, 28], vec![node("Relu", "relu", &["x"], &["y"], vec![])], vec![]);
    m.graph.as_mut().unwrap().input[0] = float_input("x", &[1 << 20, 1, 1 << 20, 1]);
    write_model(d.path(), "m.onnx", &m);
    let out = run_writing_nothing(d.path(), &["inspect", "m.onnx"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("1048576"), "{}", out.stdout);
    out.bounded("input 2^40 elements (inspect)");
    let spec = spec(d.path(), "");
    run_writing_nothing(d.path(), &["m.onnx", "out.onnx", "--spec", s(&spec)]).refused(&["the model expects input `x`", "1048576"]).bounded("input 2^40 elements (main)");
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited protobuf field.
fn field(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    varint(number << 3 | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A ModelProto (ir_version 8, ai.onnx opset 17) around serialized GraphProto fields.
fn model_bytes(graph: &[u8]) -> Vec<u8> {
    let mut model = vec![0x08, 8];
    model.extend(field(7, graph));
    model.extend(field(8, &[0x10, 17]));
    model
}

/// The bytes of a model whose graph nests `depth` If nodes, each in the previous one's
/// `then_branch`, written directly (a recursive builder would overflow the test's stack).
fn nested_if(depth: usize) -> Vec<u8> {
    let mut graph = Vec::new();
    for _ in 0..depth {
        let attribute = [field(1, b"then_branch"), field(6, &graph)].concat(); // name, g
        let node = [field(4, b"If"), field(5, &attribute)].concat(); // op_type, attribute
        graph = field(1, &node); // GraphProto.node
    }
    model_bytes(&graph)
}

#[test]
fn bomb_nested_subgraphs_10000_deep() {
    let d = tmp();
    std::fs::write(d.path().join("nested.onnx"), nested_if(10_000)).unwrap();
    let out = run_writing_nothing(d.path(), &["inspect", "nested.onnx"]);
    out.refused(&["nested.onnx", "recursion limit reached", "nested more than 100 levels deep"]).bounded("If nested 10,000 deep");
    assert!(out.stderr.len() < 1000, "one readable paragraph, not every enclosing field:\n{}", out.stderr);
}

#[test]
fn bomb_nested_subgraphs_within_limit() {
    // 20 levels decode; our own recursion (tensor visitor, graph building) copes with them.
    let d = tmp();
    std::fs::write(d.path().join("nested.onnx"), nested_if(20)).unwrap();
    let out = run_writing_nothing(d.path(), &["inspect", "nested.onnx"]);
    assert!(matches!(out.code, Some(0) | Some(2)) && !out.stderr.contains("panicked"), "{}", out.stderr);
    out.bounded("If nested 20 deep");
}

/// A chain of `n` Relu nodes from `x` to `y`, serialized directly (a million NodeProto values
/// would cost the test process more memory than the binary is allowed).
fn relu_chain(n: usize) -> Vec<u8> {
    let name = |i: usize| if i == 0 { "x".to_string() } else if i == n { "y".to_string() } else { format!("t{i}") };
    let mut graph = Vec::new();
    for i in 0..n {
        let node = [field(1, name(i).as_bytes()), field(2, name(i + 1).as_bytes()), field(3, format!("n{i}").as_bytes()), field(4, b"Relu")].concat();
        graph.extend(field(1, &node));
    }
    graph.extend(field(11, &prost::Message::encode_to_vec(&float_input("x", &[1, 1, 28, 28]))));
    graph.extend(field(12, &prost::Message::encode_to_vec(&float_input("y", &[1, 1, 28, 28]))));
    model_bytes(&graph)
}

#[test]
fn bomb_million_nodes() {
    let d = tmp();
    std::fs::write(d.path().join("million.onnx"), relu_chain(1_000_000)).unwrap();
    let started = std::time::Instant::now();
    let out = run_writing_nothing(d.path(), &["inspect", "million.onnx"]);
    out.refused(&["`million.onnx` has more than 100000 nodes", "refused before decoding"]).bounded("1,000,000 nodes (inspect)");
    eprintln!("1,000,000 nodes refused in {:.1} s", started.elapsed().as_secs_f64());
    let spec = spec(d.path(), "");
    run_writing_nothing(d.path(), &["million.onnx", "out.onnx", "--spec", s(&spec)]).refused(&["has more than 100000 nodes"]).bounded("1,000,000 nodes (main)");
}

#[test]
fn bomb_nodes_at_the_limit_load() {
    let d = tmp();
    std::fs::write(d.path().join("chain.onnx"), relu_chain(20_000)).unwrap();
    let out = run_writing_nothing(d.path(), &["inspect", "chain.onnx"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("20000"), "{}", out.stdout);
    out.bounded("20,000 nodes (accepted)");
}
