//! Catalogue sections "Command line", "Spec", "Output files" and "Data sets": each error
//! through the binary, refused before any long work, nothing written.

use super::{run_writing_nothing, s, spec, subject, FASHION_MNIST};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn cli_unknown_flag() {
    let d = tmp();
    run_writing_nothing(d.path(), &["inspect", s(&subject()), "--bogus"]).refused(&["unexpected argument '--bogus'", "Usage:"]);
}

#[test]
fn cli_missing_output() {
    let d = tmp();
    run_writing_nothing(d.path(), &[s(&subject())]).refused(&["usage: archrepair-onnx <IN.onnx> <OUT.onnx> --spec"]);
}

#[test]
fn cli_missing_spec() {
    let d = tmp();
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx"]).refused(&["no spec: pass --spec", "docs/spec.md"]);
}

#[test]
fn cli_unknown_stage() {
    let d = tmp();
    let spec = spec(d.path(), "");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec), "--stop-after", "train"])
        .refused(&["unknown stage `train`", "localize, search, export, validate, measure"]);
}

#[test]
fn cli_resume_and_dump_dir_differ() {
    let d = tmp();
    let spec = spec(d.path(), "");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec), "--resume", "a", "--dump-dir", "b"])
        .refused(&["--resume a and --dump-dir b name different folders"]);
}

#[test]
fn cli_missing_data() {
    let d = tmp();
    run_writing_nothing(d.path(), &["eval", s(&subject())]).refused(&["no data: pass --data", "data.path"]);
}

#[test]
fn cli_unknown_corruption() {
    let d = tmp();
    run_writing_nothing(d.path(), &["eval", s(&subject()), "--data", FASHION_MNIST, "--corruptions", "fogg"])
        .refused(&["unknown corruption `fogg`", "fog,"]);
}

#[test]
fn cli_missing_onnxruntime() {
    let d = tmp();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .args(["eval", s(&subject()), "--data", FASHION_MNIST, "--limit", "1"])
        .current_dir(d.path())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.32.0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in ["cannot load onnxruntime 1.32.0 from `/nonexistent/libonnxruntime.so.1.32.0`", "ORT_DYLIB_PATH"] {
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn spec_missing_file() {
    let d = tmp();
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", "nope.yaml"]).refused(&["cannot read spec `nope.yaml`"]);
}

#[test]
fn spec_unknown_key() {
    let d = tmp();
    let spec = spec(d.path(), "input: {layuot: nchw}\n");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)])
        .refused(&["repair.yaml`: input: unknown field `layuot`, expected one of `layout`", "line 3"]);
}

#[test]
fn spec_wrong_version() {
    let d = tmp();
    let path = d.path().join("repair.yaml");
    std::fs::write(&path, "version: 2\n").unwrap();
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&path)]).refused(&["version: 2 is not supported", "`version: 1`"]);
}

#[test]
fn spec_bad_value() {
    let d = tmp();
    let spec = spec(d.path(), "input: {fit: stretch}\n");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)]).refused(&["repair.yaml`: input.fit: unknown variant `stretch`, expected one of `exact`, `pad`, `resize` at line 3"]);
}

#[test]
fn spec_unknown_search_op() {
    let d = tmp();
    let spec = spec(d.path(), "search: {block: 0, ops: [skip_connect, conv_7x7]}\n");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)]).refused(&["search.ops:", "conv_7x7"]);
}

#[test]
fn spec_block_out_of_range() {
    let d = tmp();
    let spec = spec(d.path(), "search: {block: 99}\n");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)])
        .refused(&["search.block:", "has no block 99; it has 9 (ids 0-8)", "archrepair-onnx blocks"]);
}

#[test]
fn spec_layer_out_of_range() {
    let d = tmp();
    let spec = spec(d.path(), "search: {block: 99, granularity: layer}\n");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)])
        .refused(&["search.block:", "has no layer 99 (the ids number layers here); it has", "archrepair-onnx blocks"]);
}

#[test]
fn spec_layer_not_replaceable_by_a_cell() {
    // The subject's last layer is its Gemm head: ArchRepair's cell cannot replace it.
    let d = tmp();
    let last = archrepair_onnx::detect::detect(&archrepair_onnx::model::LoadedModel::open(&subject()).unwrap().graph).layers.len() - 1;
    let spec = spec(d.path(), &format!("search: {{block: {last}, granularity: layer}}\n"));
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)])
        .refused(&[&format!("layer {last} ("), "Gemm): the search cell replaces a 2-D convolution", "`search.granularity: block`"]);
}

#[test]
fn output_exists() {
    let d = tmp();
    let spec = spec(d.path(), "");
    std::fs::write(d.path().join("out.onnx"), b"keep").unwrap();
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)]).refused(&["`out.onnx` exists; pass --force"]);
    assert_eq!(std::fs::read(d.path().join("out.onnx")).unwrap(), b"keep");
}

#[test]
fn output_is_input() {
    let d = tmp();
    let spec = spec(d.path(), "");
    let model = d.path().join("m.onnx");
    std::fs::copy(subject(), &model).unwrap();
    run_writing_nothing(d.path(), &["m.onnx", "./m.onnx", "--spec", s(&spec), "--force"]).refused(&["the output `./m.onnx` is the input model"]);
}

#[test]
fn output_dump_of_earlier_run() {
    let d = tmp();
    let spec = spec(d.path(), "");
    std::fs::create_dir(d.path().join("out-dump")).unwrap();
    std::fs::write(d.path().join("out-dump/stages.json"), "{}").unwrap();
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)])
        .refused(&["`out-dump` holds the stages of an earlier run", "--resume", "--force"]);
}

#[test]
fn output_resume_without_run() {
    let d = tmp();
    let spec = spec(d.path(), "");
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec), "--resume", "nothing-here"])
        .refused(&["--resume nothing-here: no stages.json there"]);
}

#[test]
fn output_command_files_exist() {
    let d = tmp();
    std::fs::create_dir(d.path().join("o")).unwrap();
    std::fs::write(d.path().join("o/ranking.json"), "{}").unwrap();
    run_writing_nothing(d.path(), &["localize", s(&subject()), "--data", FASHION_MNIST, "--out", "o"])
        .refused(&["`o/ranking.json` exists; pass --force"]);
}

#[test]
fn data_missing_path() {
    let d = tmp();
    run_writing_nothing(d.path(), &["eval", s(&subject()), "--data", "/nonexistent/fm"]).refused(&["no dataset found in `/nonexistent/fm`: the path does not exist"]);
}

#[test]
fn data_unlabelled_images() {
    let d = tmp();
    std::fs::write(d.path().join("a.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    run_writing_nothing(d.path(), &["eval", s(&subject()), "--data", "."]).refused(&["no dataset found in `.`", "class sub-folders"]);
}

#[test]
fn data_does_not_fit_model() {
    let d = tmp();
    let model = crate::support::repo_root().join("fixtures/subjects/fashion_mnist_resnet18_32.onnx");
    run_writing_nothing(d.path(), &["eval", s(&model), "--data", FASHION_MNIST, "--limit", "10"])
        .refused(&["expects input `input` as [N, 1, 32, 32]", "set input.fit: pad"]);
}

#[test]
fn data_train_is_eval() {
    let d = tmp();
    let spec = spec(d.path(), &format!("train_data: {{path: {FASHION_MNIST}, split: test}}\n"));
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)]).refused(&["the training images and the evaluation split are both", "train_data"]);
}

#[test]
fn data_evaluate_rows_out_of_range() {
    let d = tmp();
    let spec = spec(d.path(), &format!("evaluate: [{{name: half, path: {FASHION_MNIST}, rows: [0, 20000]}}]\n"));
    run_writing_nothing(d.path(), &[s(&subject()), "out.onnx", "--spec", s(&spec)]).refused(&["evaluate `half`: rows [0, 20000) do not fit its 10000 examples"]);
}
