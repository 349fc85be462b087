//! The graph IR on real models: every fixture and every onnx `light` model builds, its shapes
//! agree with onnx's own shape inference on every tensor where both know the shape, and
//! constant folding removes the static shape arithmetic of TorchScript exports with the values
//! onnxruntime computes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use archrepair_onnx::graph::{shape_string, Dim, Graph};
use archrepair_onnx::onnx::{load_model, TensorData};
use serde_json::Value;

use crate::support;

/// Run once for all models in one Python process:
/// 1. exports small TorchScript models whose `x.view(x.size(0), -1)` and
///    `x.reshape(n, c // 2, 2)` become Shape/Gather/Div/Cast/Unsqueeze/Concat chains (static
///    batch without folding; symbolic batch with and without the exporter's own folding);
/// 2. per model: onnx.shape_inference.infer_shapes → {tensor: dims} (int, symbol name or null);
/// 3. per model with integer intermediates: their values, computed by onnxruntime on zeros
///    (symbolic dims fed as 3), to check what our folding produced.
const PY_REFERENCE: &str = r#"
import json, os, sys, io, warnings
warnings.filterwarnings("ignore")
import numpy as np, onnx, onnxruntime as ort
from onnx import shape_inference, TensorProto
out_dir, paths = sys.argv[1], sys.argv[2:]

import torch
class ViewNet(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        s.fc = torch.nn.Linear(128, 10)
    def forward(s, x):
        y = torch.nn.functional.adaptive_avg_pool2d(torch.relu(s.conv(x)), 4)
        y = y.view(y.size(0), -1)
        z = y.reshape(y.shape[0], y.shape[1] // 2, 2).mean(-1)
        return s.fc(torch.cat([z, z], 1))
torch.manual_seed(0)
net = ViewNet().eval()
generated = []
for name, dynamic, fold in [("view_static_nofold", False, False), ("view_dynamic_nofold", True, False), ("view_dynamic_fold", True, True)]:
    p = os.path.join(out_dir, name + ".onnx")
    torch.onnx.export(net, (torch.zeros(2, 3, 8, 8),), p, dynamo=False, opset_version=13,
        input_names=["input"], output_names=["logits"], do_constant_folding=fold,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None)
    generated.append(p)

INT_TYPES = {TensorProto.INT64, TensorProto.INT32}
result = {"generated": generated, "models": {}}
for p in paths + generated:
    entry = {}
    m = onnx.load(p)
    try:
        inferred = shape_inference.infer_shapes(m)
    except Exception as e:
        entry["error"] = str(e)
        result["models"][p] = entry
        continue
    g = inferred.graph
    shapes, ints = {}, []
    produced = {o for n in g.node for o in n.output}
    for v in list(g.value_info) + list(g.output) + list(g.input):
        t = v.type.tensor_type
        if t.elem_type in INT_TYPES and v.name in produced and v.name not in {x.name for x in ints}:
            ints.append(v)
        if not t.HasField("shape"):
            continue
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) if d.HasField("dim_param") else None for d in t.shape.dim]
    entry["shapes"] = shapes
    values = {}
    if ints:
        m2 = onnx.ModelProto(); m2.CopyFrom(m)
        known_outputs = {o.name for o in m2.graph.output}
        m2.graph.output.extend([v for v in ints if v.name not in known_outputs])
        sess = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sess.get_inputs():
            feeds[i.name] = np.zeros([d if isinstance(d, int) else 3 for d in i.shape], np.float32)
        for o, val in zip(sess.get_outputs(), sess.run(None, feeds)):
            if o.name in {v.name for v in ints}:
                values[o.name] = {"dims": list(val.shape), "data": val.reshape(-1).tolist()}
    entry["values"] = values
    result["models"][p] = entry
json.dump(result, sys.stdout)
"#;

struct Reference {
    generated: Vec<PathBuf>,
    models: serde_json::Map<String, Value>,
}

/// The Python reference, computed once per test binary.
fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("graph_it");
        std::fs::create_dir_all(&out_dir).unwrap();
        let mut cmd = Command::new(support::venv_python());
        cmd.arg("-c").arg(PY_REFERENCE).arg(&out_dir);
        cmd.args(support::fixture_models()).args(support::light_models());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/setup.sh", support::venv_python().display()));
        assert!(out.status.success(), "reference script failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("reference JSON");
        Reference {
            generated: v["generated"].as_array().unwrap().iter().map(|p| PathBuf::from(p.as_str().unwrap())).collect(),
            models: v["models"].as_object().unwrap().clone(),
        }
    })
}

fn all_models() -> Vec<PathBuf> {
    let mut models = support::fixture_models();
    models.extend(support::light_models());
    models.extend(reference().generated.iter().cloned());
    models
}

fn build(path: &Path, strip_value_info: bool) -> Graph {
    let mut proto = load_model(path).unwrap_or_else(|e| panic!("{e}"));
    if strip_value_info {
        proto.graph.as_mut().unwrap().value_info.clear();
    }
    let mut g = Graph::from_model(&proto).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    g.infer_shapes().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    g
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Differences between our dims and onnx's. Skipped: null (unknown to onnx) and `unk__<n>`,
/// the placeholder names the TorchScript exporter writes for dimensions it does not know.
fn disagreement(ours: &[Dim], theirs: &[Value]) -> Option<String> {
    if ours.len() != theirs.len() {
        return Some("rank".into());
    }
    let differs = ours.iter().zip(theirs).any(|(o, t)| match (o, t) {
        (_, Value::Null) => false,
        (_, Value::String(s)) if s.starts_with("unk__") => false,
        (Dim::Known(a), Value::Number(b)) => Some(*a) != b.as_i64(),
        (Dim::Symbolic(a), Value::String(b)) => a != b,
        _ => true,
    });
    differs.then(|| "dims".into())
}

#[test]
fn shapes_agree_with_onnx_shape_inference_on_every_tensor() {
    let reference = reference();
    let mut report = String::new();
    let mut compared = 0usize;
    let mut ops_without_shape: BTreeMap<String, usize> = BTreeMap::new();
    for path in all_models() {
        let entry = &reference.models[path.to_str().unwrap()];
        if let Some(e) = entry.get("error") {
            panic!("{}: onnx shape inference failed: {e}", path.display());
        }
        let theirs = entry["shapes"].as_object().unwrap();
        // Without the model's value_info, so that every intermediate shape is our own.
        for strip in [true, false] {
            let g = build(&path, strip);
            for (tensor, dims) in theirs {
                let dims = dims.as_array().unwrap();
                match g.shapes.get(tensor) {
                    Some(ours) => {
                        compared += 1;
                        if let Some(what) = disagreement(ours, dims) {
                            report += &format!(
                                "{}: `{tensor}` ({what}): ours {} onnx {dims:?}\n",
                                name(&path),
                                shape_string(ours)
                            );
                        }
                    }
                    // Everything onnx determines completely, we determine too (value_info may
                    // also describe tensors the graph no longer has: those are not ours).
                    None if dims.iter().all(|d| !d.is_null()) && g.producer(tensor).is_some() => {
                        let op = g.producer(tensor).map_or("?".to_string(), |i| g.nodes[i].op_type.clone());
                        *ops_without_shape.entry(op.clone()).or_default() += 1;
                        report += &format!("{}: `{tensor}` (from {op}) has no shape; onnx: {dims:?}\n", name(&path));
                    }
                    None => {}
                }
            }
        }
    }
    assert!(report.is_empty(), "{compared} shapes compared; ops without shapes {ops_without_shape:?}\n{report}");
    assert!(compared > 10_000, "only {compared} shapes compared");
}

#[test]
fn every_model_builds_and_its_output_shape_is_the_declared_one() {
    for path in all_models() {
        let g = build(&path, false);
        assert!(!g.nodes.is_empty(), "{}", path.display());
        let names: HashSet<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), g.nodes.len(), "{}: node names are not unique", path.display());
        assert!(g.nodes.iter().all(|n| !n.name.is_empty()));
        assert_eq!(
            g.inputs.len(),
            1,
            "{}: true inputs {:?}",
            path.display(),
            g.inputs.iter().map(|i| &i.name).collect::<Vec<_>>()
        );
        for (i, node) in g.nodes.iter().enumerate() {
            for input in node.inputs.iter().filter(|t| !t.is_empty()) {
                if let Some(p) = g.producer(input) {
                    assert!(p < i, "{}: `{}` runs before its input's producer", path.display(), node.name);
                }
                assert!(g.consumers(input).contains(&i));
            }
        }
        for out in &g.outputs {
            let declared =
                out.shape.as_ref().unwrap_or_else(|| panic!("{}: output has no declared shape", path.display()));
            // The same, whether inferred from scratch or with the model's value_info.
            for strip in [false, true] {
                let g = build(&path, strip);
                let inferred = g
                    .shapes
                    .get(&out.name)
                    .unwrap_or_else(|| panic!("{}: no shape for output {}", path.display(), out.name));
                assert_eq!(
                    inferred,
                    declared,
                    "{}: output `{}` (value_info stripped: {strip})",
                    path.display(),
                    out.name
                );
            }
        }
        let input = &g.inputs[0];
        assert_eq!(g.shapes.get(&input.name), input.shape.as_ref());
    }
}

/// Fold-list ops whose inputs are all constants (or a Shape of a fully known input, or a Gather
/// of static entries of such a Shape) must not survive folding.
fn leftover_static_shape_arithmetic(g: &Graph) -> Vec<String> {
    const SHAPE_OPS: &[&str] = &[
        "Shape",
        "Gather",
        "Unsqueeze",
        "Squeeze",
        "Concat",
        "Reshape",
        "Cast",
        "Slice",
        "ConstantOfShape",
        "Range",
        "Identity",
    ];
    let is_int_const = |t: &str| g.initializers.get(t).is_some_and(|t| matches!(t.data, TensorData::Int(_)));
    let fully_known = |t: &str| g.shapes.get(t).is_some_and(|s| s.iter().all(|d| matches!(d, Dim::Known(_))));
    let mut found = Vec::new();
    for node in &g.nodes {
        let inputs: Vec<&str> = node.inputs.iter().map(String::as_str).filter(|t| !t.is_empty()).collect();
        let is_output = node.outputs.iter().any(|o| g.outputs.iter().any(|v| &v.name == o));
        let stale = match node.op_type.as_str() {
            "Constant" => !is_output,
            "Shape" => fully_known(inputs[0]),
            "Gather" => {
                // Gather(Shape(x), static index) where x's indexed dim is a number.
                let from_shape = g.producer(inputs[0]).map(|p| &g.nodes[p]).filter(|p| p.op_type == "Shape");
                match (from_shape, g.initializers.get(inputs[1])) {
                    (Some(shape), Some(idx)) => {
                        let s = g.shapes.get(&shape.inputs[0]);
                        idx.to_i64().iter().all(|&i| {
                            s.is_some_and(|s| {
                                let i = if i < 0 { i + s.len() as i64 } else { i } as usize;
                                matches!(s.get(i), Some(Dim::Known(_)))
                            })
                        })
                    }
                    _ => inputs.iter().all(|t| is_int_const(t)),
                }
            }
            op if SHAPE_OPS.contains(&op) => inputs.iter().all(|t| is_int_const(t)),
            "Add" | "Sub" | "Mul" | "Div" => inputs.iter().all(|t| is_int_const(t)),
            _ => false,
        };
        if stale && !is_output {
            found.push(format!("{} ({})", node.name, node.op_type));
        }
    }
    found
}

#[test]
fn folding_removes_static_shape_chains_with_the_values_onnxruntime_computes() {
    let reference = reference();
    let mut models: Vec<PathBuf> = support::fixture_models()
        .into_iter()
        .filter(|p| {
            let n = name(p);
            n.contains("_ts_") || n.contains("_dynamo_")
        })
        .collect();
    models.extend(reference.generated.iter().cloned());
    let mut folded_values = 0;
    for path in &models {
        let mut g = build(path, false);
        let before: HashMap<String, String> =
            g.nodes.iter().flat_map(|n| n.outputs.iter().map(move |o| (o.clone(), n.op_type.clone()))).collect();
        let removed = g.fold_constants().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let left = leftover_static_shape_arithmetic(&g);
        assert!(left.is_empty(), "{}: static shape arithmetic left after folding: {left:?}", path.display());
        // Folding keeps the graph well-formed and the shapes.
        for (i, node) in g.nodes.iter().enumerate() {
            for input in node.inputs.iter().filter(|t| !t.is_empty()) {
                let ok = g.producer(input).is_some_and(|p| p < i)
                    || g.initializers.contains_key(input)
                    || g.inputs.iter().any(|v| &v.name == input);
                assert!(
                    ok,
                    "{}: `{}` reads `{input}`, which nothing provides after folding",
                    path.display(),
                    node.name
                );
            }
        }
        assert_eq!(g.shapes.get("logits"), g.outputs[0].shape.as_ref(), "{}", path.display());
        // Folded results equal what onnxruntime computes for those tensors.
        let values = reference.models[path.to_str().unwrap()]["values"].as_object().unwrap();
        for (tensor, op) in &before {
            if op == "Constant" || g.producer(tensor).is_some() {
                continue;
            }
            let Some(t) = g.initializers.get(tensor) else { continue };
            let Some(expected) = values.get(tensor) else { continue };
            let dims: Vec<i64> = expected["dims"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
            let data: Vec<i64> = expected["data"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
            assert_eq!((&t.dims, &t.to_i64()), (&dims, &data), "{}: folded `{tensor}` ({op})", path.display());
            folded_values += 1;
        }
        if name(path) == "view_static_nofold" {
            assert!(removed >= 15, "{}: only {removed} nodes removed", path.display());
            assert!(!g
                .nodes
                .iter()
                .any(|n| matches!(n.op_type.as_str(), "Shape" | "Gather" | "Unsqueeze" | "Constant")));
        }
        if name(path).starts_with("view_dynamic") {
            // The batch entry stays a run-time Shape→Gather→Unsqueeze→Concat; the channel
            // arithmetic (Shape→Gather(1)→Div→Cast→Cast→Unsqueeze) is gone.
            let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
            assert!(
                !ops.contains(&"Div") && !ops.contains(&"Cast") && !ops.contains(&"Constant"),
                "{}: {ops:?}",
                path.display()
            );
            assert_eq!(ops.iter().filter(|o| **o == "Shape").count(), 2, "{}: {ops:?}", path.display());
            let mut fresh = g.clone();
            fresh.infer_shapes().unwrap();
            assert_eq!(fresh.shapes, g.shapes, "{}: shapes change when inferred again after folding", path.display());
        }
    }
    assert!(folded_values >= 6, "only {folded_values} folded values were checked against onnxruntime");
}

/// Corrupted models (attributes, wiring, op types, initializer dims changed at random) give
/// results or errors, never panics.
#[test]
fn corrupted_models_never_panic() {
    use archrepair_onnx::onnx::proto::ModelProto;
    let mut picks: Vec<PathBuf> = support::light_models()
        .into_iter()
        .filter(|p| ["light_shufflenet", "light_inception_v2", "light_squeezenet"].contains(&name(p).as_str()))
        .collect();
    picks.extend(
        support::fixture_models()
            .into_iter()
            .filter(|p| name(p) == "mobilenetv2_dynamo_op13_bn" || name(p) == "resnet20_ts_op17_bn"),
    );
    picks.extend(reference().generated.iter().cloned());
    const OPS: &[&str] = &[
        "Conv",
        "MaxPool",
        "AveragePool",
        "Reshape",
        "Flatten",
        "Gemm",
        "MatMul",
        "Concat",
        "Slice",
        "Split",
        "Gather",
        "Unsqueeze",
        "Squeeze",
        "Transpose",
        "Pad",
        "ReduceMean",
        "Range",
        "ConstantOfShape",
        "Shape",
        "Add",
        "Div",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let mut outcomes = [0usize; 2];
    for path in &picks {
        let original: ModelProto = load_model(path).unwrap();
        for _ in 0..150 {
            let mut m = original.clone();
            let g = m.graph.as_mut().unwrap();
            let names: Vec<String> = g.node.iter().flat_map(|n| n.output.clone()).collect();
            for _ in 0..1 + rand(3) {
                let i = rand(g.node.len());
                let node = &mut g.node[i];
                match rand(5) {
                    0 if !node.attribute.is_empty() => {
                        let a = rand(node.attribute.len());
                        let attr = &mut node.attribute[a];
                        attr.ints = (0..rand(6)).map(|_| rand(80) as i64 - 10).collect();
                        attr.i = Some(rand(60) as i64 - 30);
                    }
                    1 => node.op_type = Some(OPS[rand(OPS.len())].to_string()),
                    2 if !node.input.is_empty() => {
                        let k = rand(node.input.len());
                        node.input[k] = names[rand(names.len())].clone();
                    }
                    3 => node.attribute.clear(),
                    _ if !g.initializer.is_empty() => {
                        let t = rand(g.initializer.len());
                        let dims = &mut g.initializer[t].dims;
                        if !dims.is_empty() {
                            let d = rand(dims.len());
                            dims[d] = rand(9) as i64 - 1;
                        }
                    }
                    _ => {}
                }
            }
            let result = Graph::from_model(&m).and_then(|mut g| {
                g.infer_shapes()?;
                g.fold_constants()?;
                g.infer_shapes()
            });
            outcomes[result.is_ok() as usize] += 1;
        }
    }
    // Both kinds of outcome occur, so the mutations reach the inference code.
    assert!(outcomes[0] > 50 && outcomes[1] > 50, "errors/ok: {outcomes:?}");
}
