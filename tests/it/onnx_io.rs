//! Loading and saving ONNX files for real: round trips of every fixture and onnx `light` model,
//! external data read back by onnx and onnxruntime (Python, from the venv), and hostile files.

use std::path::{Path, PathBuf};
use std::process::Command;

use archrepair_onnx::onnx::proto::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, SparseTensorProto, TensorProto, TrainingInfoProto,
};
use archrepair_onnx::onnx::tensor::{encode_f32, encode_i64};
use archrepair_onnx::onnx::{load_model, load_model_from_bytes, save_model, save_model_with, SaveOptions};
use prost::Message;

use crate::builders::{float_input, int, ints, node, opset, str_entry, tensor_attr};
use crate::support;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Checks with the venv's onnx and onnxruntime, in one Python process: every `check` path passes
/// `onnx.checker.check_model` and `onnx.load` (which reads external data), and for every
/// `compare` pair onnxruntime gives identical outputs on the same random inputs.
const PY_VERIFY: &str = r#"
import json, sys
import numpy as np, onnx, onnxruntime as ort
jobs = json.loads(sys.argv[1])
failures = []
for p in jobs["check"]:
    try:
        onnx.checker.check_model(p)
        onnx.load(p)
    except Exception as e:
        failures.append(f"{p}: onnx rejects it: {e}")
def feeds(sess):
    rng = np.random.default_rng(0)
    out = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        if i.type == "tensor(float)":
            out[i.name] = rng.standard_normal(shape).astype(np.float32)
        elif i.type == "tensor(int64)":
            out[i.name] = np.zeros(shape, np.int64)
        else:
            raise ValueError(f"input {i.name} of type {i.type} is not handled by this test")
    return out
for a, b in jobs["compare"]:
    try:
        sa = ort.InferenceSession(a, providers=["CPUExecutionProvider"])
        sb = ort.InferenceSession(b, providers=["CPUExecutionProvider"])
        f = feeds(sa)
        for k, (x, y) in enumerate(zip(sa.run(None, f), sb.run(None, f))):
            if not np.array_equal(x, y, equal_nan=True):
                failures.append(f"{b}: output {k} differs from {a}")
    except Exception as e:
        failures.append(f"{a} vs {b}: onnxruntime failed: {e}")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"#;

fn python_verify(check: &[PathBuf], compare: &[(PathBuf, PathBuf)]) {
    let jobs = serde_json::json!({ "check": check, "compare": compare });
    let out = Command::new(support::venv_python())
        .arg("-c")
        .arg(PY_VERIFY)
        .arg(jobs.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/setup.sh", support::venv_python().display()));
    assert!(
        out.status.success(),
        "onnx/onnxruntime verification failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// load → save (inline) → load must give the same model; returns the saved path.
fn round_trip(model_path: &Path, out_dir: &Path) -> PathBuf {
    let model = load_model(model_path).unwrap_or_else(|e| panic!("{e}"));
    let saved = out_dir.join(model_path.file_name().unwrap());
    let summary = save_model(&model, &saved).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.external_tensors, 0, "{}", saved.display());
    assert_eq!(summary.model_bytes, std::fs::metadata(&saved).unwrap().len());
    let again = load_model(&saved).unwrap_or_else(|e| panic!("{e}"));
    assert!(again == model, "{}: load → save → load changed the model", model_path.display());
    saved
}

fn assert_round_trips(models: &[PathBuf]) {
    let dir = tempfile::tempdir().unwrap();
    let saved: Vec<PathBuf> = models.iter().map(|m| round_trip(m, dir.path())).collect();
    let pairs: Vec<(PathBuf, PathBuf)> = models.iter().cloned().zip(saved.iter().cloned()).collect();
    python_verify(&saved, &pairs);
}

/// Deterministic pseudo-random values in [-0.5, 0.5).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}








/// A small runnable classifier, Conv → Relu → Flatten → Gemm → Mul(Constant), whose Gemm weight
/// (1.1 MiB) is over the page-alignment size and whose Constant lives in a node attribute.
fn small_net() -> ModelProto {
    let conv = node("Conv", "conv", &["x", "conv.weight", "conv.bias"], &["c"], vec![ints("pads", &[1, 1, 1, 1])]);
    let relu = node("Relu", "relu", &["c"], &["r"], vec![]);
    let flatten = node("Flatten", "flatten", &["r"], &["f"], vec![int("axis", 1)]);
    let gemm = node("Gemm", "fc", &["f", "fc.weight", "fc.bias"], &["g"], vec![int("transB", 1)]);
    let scale = node("Constant", "scale", &[], &["s"], vec![tensor_attr("value", encode_f32("", &[1], &[0.5]))]);
    let mul = node("Mul", "mul", &["g", "s"], &["y"], vec![]);
    ModelProto {
        ir_version: Some(8),
        opset_import: opset(17),
        producer_name: Some("archrepair-onnx tests".into()),
        doc_string: Some("a small net".into()),
        metadata_props: vec![str_entry("origin", "tests/it/onnx_io.rs")],
        graph: Some(GraphProto {
            name: Some("small_net".into()),
            node: vec![conv, relu, flatten, gemm, scale, mul],
            initializer: vec![
                encode_f32("conv.weight", &[4, 3, 3, 3], &values(108, 1)),
                encode_f32("conv.bias", &[4], &values(4, 2)),
                encode_f32("fc.weight", &[1100, 256], &values(1100 * 256, 3)),
                encode_f32("fc.bias", &[1100], &values(1100, 4)),
            ],
            input: vec![float_input("x", &[1, 3, 8, 8])],
            output: vec![float_input("y", &[1, 1100])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Saves `small_net` with every initializer external into `dir/m.onnx`.
fn external_small_net(dir: &Path) -> PathBuf {
    let path = dir.join("m.onnx");
    let options = SaveOptions { external: true, external_threshold: 0, ..Default::default() };
    save_model_with(&small_net(), &path, &options).unwrap();
    path
}

/// Rewrites the stored model's `conv.weight` tensor without resolving its external data.
fn tamper(model_path: &Path, edit: impl FnOnce(&mut TensorProto)) {
    let mut m = ModelProto::decode(std::fs::read(model_path).unwrap().as_slice()).unwrap();
    let t = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name() == "conv.weight").unwrap();
    edit(t);
    std::fs::write(model_path, m.encode_to_vec()).unwrap();
}

fn set_entry(t: &mut TensorProto, key: &str, value: &str) {
    match t.external_data.iter_mut().find(|e| e.key() == key) {
        Some(e) => e.value = Some(value.into()),
        None => t.external_data.push(str_entry(key, value)),
    }
}

/// Loads `path`, expecting an error that names each of `needles`.
fn load_error(path: &Path, needles: &[&str]) -> String {
    let e = load_model(path).expect_err("hostile model loaded").to_string();
    for n in needles {
        assert!(e.contains(n), "error does not name `{n}`: {e}");
    }
    e
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn light_models_round_trip_losslessly_and_pass_onnx_checks() {
    assert_round_trips(&support::light_models());
}

#[test]
fn fixture_models_round_trip_losslessly_and_pass_onnx_checks() {
    assert_round_trips(&support::fixture_models());
}

#[test]
fn saving_leaves_the_input_model_untouched() {
    let model = small_net();
    let copy = model.clone();
    let dir = tempfile::tempdir().unwrap();
    let options = SaveOptions { external: true, external_threshold: 0, ..Default::default() };
    save_model_with(&model, &dir.path().join("m.onnx"), &options).unwrap();
    assert!(model == copy);
}

// ---------------------------------------------------------------------------------------------
// External data

#[test]
fn external_data_is_read_by_onnx_and_onnxruntime_and_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_net();
    let inline = dir.path().join("inline.onnx");
    save_model(&net, &inline).unwrap();
    let external = dir.path().join("external.onnx");
    let options = SaveOptions { external: true, external_threshold: 1024, ..Default::default() };
    let summary = save_model_with(&net, &external, &options).unwrap();
    // fc.weight and fc.bias are ≥ 1024 bytes; conv.weight (432 B), conv.bias and the Constant stay inline.
    assert_eq!(summary.external_tensors, 2);
    let data = dir.path().join("external.onnx.data");
    assert_eq!(summary.data_path.as_deref(), Some(data.as_path()));
    assert_eq!(summary.data_bytes, std::fs::metadata(&data).unwrap().len());
    assert!(!summary.spilled_for_size);

    let raw = ModelProto::decode(std::fs::read(&external).unwrap().as_slice()).unwrap();
    for t in &raw.graph.as_ref().unwrap().initializer {
        let entry = |k: &str| t.external_data.iter().find(|e| e.key() == k).map(|e| e.value().to_string());
        if t.name().starts_with("fc.") {
            assert_eq!(entry("location").as_deref(), Some("external.onnx.data"), "location must be relative");
            let (offset, length): (u64, u64) =
                (entry("offset").unwrap().parse().unwrap(), entry("length").unwrap().parse().unwrap());
            let align = if length >= 1 << 20 { 4096 } else { 64 };
            assert_eq!(offset % align, 0, "{}: offset {offset} not aligned to {align}", t.name());
            assert!(t.raw_data.is_none());
        } else {
            assert!(t.external_data.is_empty() && t.raw_data.is_some(), "{}", t.name());
        }
    }
    assert_eq!(load_model(&external).unwrap(), net);

    // A light model (opset 9, IR 3) with its raw initializers moved out, too.
    let light = support::light_models().into_iter().find(|p| p.ends_with("light_squeezenet.onnx")).unwrap();
    let light_model = load_model(&light).unwrap();
    let light_external = dir.path().join("squeezenet.onnx");
    let options = SaveOptions { external: true, external_threshold: 64, ..Default::default() };
    assert!(save_model_with(&light_model, &light_external, &options).unwrap().external_tensors > 0);
    assert_eq!(load_model(&light_external).unwrap(), light_model);

    python_verify(&[external.clone(), light_external.clone()], &[(inline, external), (light, light_external)]);
}

/// Every place a tensor can sit, moved to the data file (size limit 0) and read back.
#[test]
fn every_tensor_site_survives_external_data() {
    let constant = |name: &str, v: f32| {
        node("Constant", name, &[], &[name], vec![tensor_attr("value", encode_f32("", &[1], &[v]))])
    };
    let branch = |name: &str, extra: Vec<TensorProto>| GraphProto {
        name: Some(name.into()),
        node: vec![constant(&format!("{name}_c"), 1.0)],
        initializer: extra,
        output: vec![float_input(&format!("{name}_c"), &[1])],
        ..Default::default()
    };
    let if_node = node(
        "If",
        "if",
        &["cond"],
        &["z"],
        vec![
            AttributeProto {
                name: Some("then_branch".into()),
                g: Some(branch("then", vec![encode_f32("then_w", &[2], &[1.0, 2.0])])),
                ..Default::default()
            },
            AttributeProto { name: Some("else_branch".into()), g: Some(branch("else", vec![])), ..Default::default() },
        ],
    );
    let sparse = SparseTensorProto {
        values: Some(encode_f32("sparse_w", &[2], &[3.0, 4.0])),
        indices: Some(encode_i64("", &[2], &[1, 5])),
        dims: vec![8],
    };
    let function = FunctionProto {
        name: Some("MyFn".into()),
        domain: Some("custom".into()),
        input: vec!["a".into()],
        output: vec!["b".into()],
        attribute_proto: vec![tensor_attr("alpha", encode_f32("", &[1], &[2.0]))],
        node: vec![constant("fn_c", 5.0)],
        opset_import: opset(17),
        ..Default::default()
    };
    let training = TrainingInfoProto {
        initialization: Some(GraphProto {
            name: Some("init".into()),
            initializer: vec![encode_f32("seed", &[1], &[7.0])],
            ..Default::default()
        }),
        update_binding: vec![str_entry("w", "seed")],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(10),
        opset_import: opset(21),
        graph: Some(GraphProto {
            name: Some("sites".into()),
            node: vec![constant("top_c", 9.0), if_node, node("MyFn", "fn_call", &["z"], &["out"], vec![])],
            initializer: vec![encode_f32("w", &[3], &[1.0, 2.0, 3.0])],
            sparse_initializer: vec![sparse],
            ..Default::default()
        }),
        functions: vec![function],
        training_info: vec![training],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sites.onnx");
    let summary = save_model_with(&model, &path, &SaveOptions { size_limit: 0, ..Default::default() }).unwrap();
    assert!(summary.spilled_for_size);
    assert_eq!(summary.external_tensors, 10, "every tensor should have been moved");
    let stored = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    assert!(stored.functions[0].node[0].attribute[0].t.as_ref().unwrap().raw_data.is_none());
    assert_eq!(load_model(&path).unwrap(), model);
    // The same bytes without a folder cannot find their data: an error, not a silent success.
    let e = load_model_from_bytes(&std::fs::read(&path).unwrap(), &path, None).unwrap_err().to_string();
    assert!(e.contains("sites.onnx") && e.contains("sites.onnx.data"), "{e}");
}

#[test]
fn saving_is_atomic_and_replaces_or_removes_the_old_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let external = SaveOptions { external: true, external_threshold: 0, ..Default::default() };
    let mut net = small_net();
    save_model_with(&net, &path, &external).unwrap();
    net.graph.as_mut().unwrap().initializer.pop(); // fc.bias
    net.graph.as_mut().unwrap().node[3].input.pop();
    let s = save_model_with(&net, &path, &external).unwrap();
    assert_eq!(s.external_tensors, 3);
    assert_eq!(std::fs::metadata(dir.path().join("m.onnx.data")).unwrap().len(), s.data_bytes);
    assert_eq!(load_model(&path).unwrap(), net);
    assert_eq!(files_in(dir.path()), ["m.onnx", "m.onnx.data"], "no temporary file may remain");

    let s = save_model(&net, &path).unwrap();
    assert!(s.removed_stale_data && s.data_path.is_none());
    assert_eq!(files_in(dir.path()), ["m.onnx"]);
    assert_eq!(load_model(&path).unwrap(), net);

    // A failed save names the path and leaves nothing behind.
    let e = save_model(&net, &dir.path().join("no/such/folder/m.onnx")).unwrap_err().to_string();
    assert!(e.contains("no/such/folder/m.onnx"), "{e}");
    let e = save_model(&net, dir.path()).unwrap_err().to_string();
    assert!(e.contains(&*dir.path().to_string_lossy()), "{e}");
    assert_eq!(files_in(dir.path()), ["m.onnx"]);
}

#[test]
fn saving_a_tensor_that_still_points_to_external_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = external_small_net(dir.path());
    let raw = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    let e = save_model(&raw, &dir.path().join("copy.onnx")).unwrap_err().to_string();
    assert!(e.contains("copy.onnx") && e.contains("conv.weight") && e.contains("load_model"), "{e}");
    assert!(!dir.path().join("copy.onnx").exists());
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs: an error naming the file (and tensor, location), never a panic.

#[test]
fn truncated_random_and_empty_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let light = &support::light_models()[0];
    let bytes = std::fs::read(light).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    load_error(&truncated, &["truncated.onnx", "not an ONNX model"]);

    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..64 {
        let random: Vec<u8> = (0..4096 + round)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let path = dir.path().join("random.onnx");
        std::fs::write(&path, &random).unwrap();
        load_error(&path, &["random.onnx", "not an ONNX model"]);
    }

    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    load_error(&empty, &["empty.onnx", "empty"]);

    let folder = dir.path().join("folder.onnx");
    std::fs::create_dir(&folder).unwrap();
    load_error(&folder, &["folder.onnx", "directory"]);

    load_error(&dir.path().join("missing.onnx"), &["missing.onnx"]);
}

#[test]
fn external_locations_outside_the_model_folder_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let path = external_small_net(&dir);
    let model = path.to_string_lossy().into_owned();
    let data = dir.join("m.onnx.data");
    std::fs::copy(&data, root.path().join("outside.data")).unwrap();

    tamper(&path, |t| set_entry(t, "location", "/etc/passwd"));
    load_error(&path, &[&model, "conv.weight", "/etc/passwd", "absolute"]);

    tamper(&path, |t| set_entry(t, "location", "../outside.data"));
    load_error(&path, &[&model, "conv.weight", "../outside.data", ".."]);

    std::os::unix::fs::symlink(root.path().join("outside.data"), dir.join("link.data")).unwrap();
    tamper(&path, |t| set_entry(t, "location", "link.data"));
    load_error(&path, &[&model, "conv.weight", "link.data", "outside the model's folder"]);

    // Folders and FIFOs are not data files (opening a FIFO would hang the loader).
    tamper(&path, |t| set_entry(t, "location", "."));
    load_error(&path, &[&model, "conv.weight", "not a regular file"]);
    let fifo = dir.join("pipe.data");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    tamper(&path, |t| set_entry(t, "location", "pipe.data"));
    load_error(&path, &[&model, "conv.weight", "pipe.data", "not a regular file"]);

    // A symlink that stays inside the folder is fine.
    std::os::unix::fs::symlink(&data, dir.join("inside.data")).unwrap();
    tamper(&path, |t| set_entry(t, "location", "inside.data"));
    assert_eq!(load_model(&path).unwrap(), small_net());
}

#[test]
fn external_ranges_beyond_the_data_file_and_missing_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = external_small_net(dir.path());
    let model = path.to_string_lossy().into_owned();
    let size = std::fs::metadata(dir.path().join("m.onnx.data")).unwrap().len();

    tamper(&path, |t| set_entry(t, "offset", &(size - 2).to_string()));
    load_error(&path, &[&model, "conv.weight", "m.onnx.data", "beyond the end"]);

    tamper(&path, |t| {
        t.external_data.retain(|e| e.key() != "length");
        set_entry(t, "offset", &(size + 10).to_string());
    });
    load_error(&path, &[&model, "conv.weight", "m.onnx.data", "beyond the end"]);

    tamper(&path, |t| set_entry(t, "offset", "twelve"));
    load_error(&path, &[&model, "conv.weight", "offset"]);

    tamper(&path, |t| {
        set_entry(t, "offset", "0");
        set_entry(t, "length", "432");
    });
    assert!(load_model(&path).is_ok());
    std::fs::remove_file(dir.path().join("m.onnx.data")).unwrap();
    load_error(&path, &[&model, "conv.weight", "m.onnx.data", "cannot open"]);
}
