//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and their replay in CI
//! (`tests/it/fuzz_replay.rs`); see docs/fuzzing.md.
//!
//! Each takes untrusted bytes and runs what the tool does with such input before libtorch is
//! involved. Errors are the expected outcome for most inputs and are ignored; a panic, an abort,
//! a hang or a huge allocation is a bug. Nothing here touches libtorch, onnxruntime, tract or
//! the file system (a model with external data is an error: there is no base folder).

use std::path::Path;

use crate::detect::detect;
use crate::graph::Graph;
use crate::lower::ops;
use crate::lower::weight_roles;
use crate::onnx::{load_model_from_bytes, TensorData};
use crate::spec::Spec;

/// A model file's bytes through load → graph IR → shape inference → constant folding →
/// what `inspect` reads (operator parsing, weight roles) → block detection (`blocks`).
pub fn onnx_bytes(data: &[u8]) {
    let Ok(model) = load_model_from_bytes(data, Path::new("fuzz.onnx"), None) else { return };
    let Ok(mut graph) = Graph::from_model(&model) else { return };
    if graph.infer_shapes().is_err() || graph.fold_constants().is_err() {
        return;
    }
    let opset = graph.opset();
    for node in &graph.nodes {
        let _ = ops::parse(node, opset);
    }
    let roles = weight_roles(&graph, |name| graph.initializers.get(name).is_some_and(|t| matches!(t.data, TensorData::Float(_))));
    let _: usize = roles.keys().filter_map(|name| graph.initializers.get(name)).map(|t| t.len()).sum();
    let detection = detect(&graph);
    let _ = serde_json::to_string(&detection);
}

/// A spec file's bytes through [`Spec::from_yaml`] and back out as JSON (what a run records as
/// its resolved spec).
pub fn spec_bytes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(spec) = Spec::from_yaml(text) else { return };
    let _ = serde_json::to_value(&spec);
}

/// SplitMix64: a tiny seeded generator, so that the structure-aware mutations below need no
/// dependency and replay identically in CI.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Integers that break arithmetic on dimensions, indices and opset versions.
const NASTY_INTS: [i64; 16] =
    [0, 1, -1, 2, 3, 7, 13, 17, 1 << 20, 1 << 31, -(1 << 31), 1 << 40, i64::MAX, i64::MIN, i64::MAX / 2, -7];

fn nasty_int(rng: &mut Rng, old: i64) -> i64 {
    match rng.below(4) {
        0 => old.wrapping_add(rng.pick(&[-2, -1, 1, 2])),
        1 => old.wrapping_neg(),
        _ => rng.pick(&NASTY_INTS),
    }
}

/// One structure-aware mutation of a decoded model, as an ONNX-aware fuzzer would make it:
/// a dimension made huge, negative or zero; a node input or output renamed to another tensor
/// or to nothing; an attribute changed, dropped or retyped; a node duplicated, removed or
/// moved; the opset or IR version changed; an initializer's data truncated or retyped.
/// Returns false when the model has nothing the chosen mutation applies to.
pub fn mutate_model(model: &mut crate::onnx::proto::ModelProto, rng: &mut Rng) -> bool {
    use crate::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};

    let choice = rng.below(10);
    if choice == 0 {
        if model.opset_import.is_empty() {
            return false;
        }
        let i = rng.below(model.opset_import.len());
        let o = &mut model.opset_import[i];
        let old = o.version();
        o.version = Some(if rng.below(2) == 0 { rng.pick(&[0, 1, 6, 7, 9, 10, 11, 12, 13, 14, 17, 18, 21, 99]) } else { nasty_int(rng, old) });
        return true;
    }
    if choice == 1 {
        model.ir_version = Some(nasty_int(rng, model.ir_version()));
        return true;
    }
    let Some(g) = model.graph.as_mut() else { return false };
    let names: Vec<String> = g.node.iter().flat_map(|n| n.input.iter().chain(&n.output).cloned()).collect();
    match choice {
        2 => {
            // A dimension of a declared input, output or value_info, or of an initializer.
            let mut dims: Vec<&mut i64> = vec![];
            for v in g.input.iter_mut().chain(g.output.iter_mut()).chain(g.value_info.iter_mut()) {
                if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
                    for d in t.shape.iter_mut().flat_map(|s| s.dim.iter_mut()) {
                        if let Some(Value::DimValue(x)) = d.value.as_mut() {
                            dims.push(x);
                        }
                    }
                }
            }
            for t in &mut g.initializer {
                dims.extend(t.dims.iter_mut());
            }
            if dims.is_empty() {
                return false;
            }
            let i = rng.below(dims.len());
            *dims[i] = nasty_int(rng, *dims[i]);
        }
        3 => {
            // Rename a node input or output: to another tensor, to "", or to a fresh name.
            if g.node.is_empty() || names.is_empty() {
                return false;
            }
            let i = rng.below(g.node.len());
            let node = &mut g.node[i];
            let outputs = rng.below(2) == 0;
            let list = if outputs { &mut node.output } else { &mut node.input };
            let new = match rng.below(3) {
                0 => String::new(),
                1 => format!("fuzz_{}", rng.below(4)),
                _ => names[rng.below(names.len())].clone(),
            };
            if list.is_empty() || rng.below(4) == 0 {
                list.push(new);
            } else {
                let j = rng.below(list.len());
                list[j] = new;
            }
        }
        4 => {
            // Change, drop, retype or add an attribute.
            if g.node.is_empty() {
                return false;
            }
            let i = rng.below(g.node.len());
            let attrs = &mut g.node[i].attribute;
            if attrs.is_empty() || rng.below(5) == 0 {
                let name = rng.pick(&["kernel_shape", "strides", "pads", "dilations", "group", "axis", "perm", "auto_pad", "epsilon", "value", "alpha"]);
                attrs.push(crate::onnx::proto::AttributeProto { name: Some(name.into()), r#type: Some(7), ints: vec![rng.pick(&NASTY_INTS)], ..Default::default() });
                return true;
            }
            let j = rng.below(attrs.len());
            let a = &mut attrs[j];
            match rng.below(6) {
                0 => {
                    attrs.remove(j);
                }
                1 => a.r#type = Some(rng.below(15) as i32),
                2 => a.i = Some(nasty_int(rng, a.i())),
                3 => {
                    if a.ints.is_empty() || rng.below(3) == 0 {
                        let n = rng.below(6);
                        a.ints = (0..n).map(|_| rng.pick(&NASTY_INTS)).collect();
                    } else {
                        let k = rng.below(a.ints.len());
                        a.ints[k] = nasty_int(rng, a.ints[k]);
                    }
                }
                4 => a.f = Some(*[f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30].get(rng.below(5)).expect("in range")),
                _ => {
                    a.s = Some(rng.pick(&[&b""[..], b"SAME_UPPER", b"VALID", b"NOTSET", b"\xff"]).to_vec());
                }
            }
        }
        5 => {
            // Duplicate a node (same or renamed outputs) somewhere else.
            if g.node.is_empty() {
                return false;
            }
            let mut copy = g.node[rng.below(g.node.len())].clone();
            if rng.below(2) == 0 {
                for o in &mut copy.output {
                    o.push_str("_dup");
                }
                copy.name = copy.name.map(|n| n + "_dup");
            }
            let at = rng.below(g.node.len() + 1);
            g.node.insert(at, copy);
        }
        6 => {
            // Remove or move a node.
            if g.node.is_empty() {
                return false;
            }
            let n = g.node.remove(rng.below(g.node.len()));
            if rng.below(2) == 0 {
                let at = rng.below(g.node.len() + 1);
                g.node.insert(at, n);
            }
        }
        7 => {
            // Truncate or retype an initializer's data.
            if g.initializer.is_empty() {
                return false;
            }
            let i = rng.below(g.initializer.len());
            let t = &mut g.initializer[i];
            match rng.below(4) {
                0 => {
                    let raw = t.raw_data.get_or_insert_with(Vec::new);
                    let keep = rng.below(raw.len() + 1);
                    raw.truncate(keep);
                }
                1 => t.data_type = Some(rng.below(30) as i32),
                2 => {
                    let keep = rng.below(t.float_data.len() + 1);
                    t.float_data.truncate(keep);
                    t.int64_data.truncate(keep);
                }
                _ => t.dims.push(rng.pick(&NASTY_INTS)),
            }
        }
        8 => {
            // Change a node's operator to another one the tool knows.
            if g.node.is_empty() {
                return false;
            }
            let i = rng.below(g.node.len());
            let op = rng.pick(&[
                "Conv", "Add", "Sum", "Concat", "Relu", "Clip", "Mul", "BatchNormalization", "MaxPool", "AveragePool",
                "GlobalAveragePool", "Gemm", "MatMul", "Flatten", "Reshape", "Shape", "Gather", "Unsqueeze", "Slice",
                "Transpose", "Constant", "Identity", "HardSwish", "Sigmoid", "Pad", "Squeeze", "Cast", "Div",
            ]);
            g.node[i].op_type = Some(op.into());
        }
        _ => {
            // Graph inputs and outputs: drop one, or declare a tensor as another output.
            if rng.below(2) == 0 && !g.output.is_empty() {
                let i = rng.below(g.output.len());
                g.output.remove(i);
            } else if !names.is_empty() {
                let mut v = g.output.first().cloned().unwrap_or_default();
                v.name = Some(names[rng.below(names.len())].clone());
                g.output.push(v);
            } else {
                return false;
            }
        }
    }
    true
}
