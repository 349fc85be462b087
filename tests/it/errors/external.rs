//! Catalogue section "External data": a model's `location` may only name a regular file inside
//! the model's folder, and `offset`/`length` must lie inside that file. Each refusal names the
//! tensor and the location, through `inspect`.

use std::path::Path;

use archrepair_onnx::onnx::proto::{tensor_proto::{DataLocation, DataType}, TensorProto};

use super::{run_writing_nothing, write_model};
use crate::builders::{model, node, str_entry};

/// `root/model/m.onnx` whose initializer `w` (28 floats) lives at `entries` (key, value), and
/// `root/model/w.bin` holding 112 bytes (exactly `w`) and `root/outside/secret.bin`.
fn setup(root: &Path, entries: &[(&str, &str)]) {
    std::fs::create_dir_all(root.join("model")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(root.join("model/w.bin"), vec![0u8; 112]).unwrap();
    std::fs::write(root.join("outside/secret.bin"), vec![0u8; 112]).unwrap();
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![28],
        data_type: Some(DataType::Float as i32),
        data_location: Some(DataLocation::External as i32),
        external_data: entries.iter().map(|(k, v)| str_entry(k, v)).collect(),
        ..Default::default()
    };
    let m = model(17, &[1, 1, 28, 28], vec![node("Add", "add", &["x", "w"], &["y"], vec![])], vec![w]);
    write_model(&root.join("model"), "m.onnx", &m);
}

/// `inspect model/m.onnx` is refused naming the model, the tensor, the location and `needles`.
fn refused(entries: &[(&str, &str)], needles: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), entries);
    let location = entries.iter().find(|(k, _)| *k == "location").map_or(String::new(), |(_, v)| format!("location `{v}`"));
    let mut all = vec!["external data of tensor `w` in `model/m.onnx`", location.as_str()];
    all.extend_from_slice(needles);
    run_writing_nothing(d.path(), &["inspect", "model/m.onnx"]).refused(&all).bounded("external data");
}

#[test]
fn external_valid_data_loads() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &[("location", "w.bin"), ("offset", "0"), ("length", "112")]);
    let out = run_writing_nothing(d.path(), &["inspect", "model/m.onnx"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn external_absolute_path() {
    let d = tempfile::tempdir().unwrap();
    let absolute = d.path().join("outside/secret.bin");
    refused(&[("location", absolute.to_str().unwrap())], &["absolute paths are refused", "relative path inside the model's folder"]);
}

#[test]
fn external_parent_dir() {
    refused(&[("location", "../outside/secret.bin")], &["paths with `..` are refused"]);
}

#[test]
fn external_symlink_out_of_folder() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &[("location", "link.bin")]);
    std::os::unix::fs::symlink(d.path().join("outside/secret.bin"), d.path().join("model/link.bin")).unwrap();
    run_writing_nothing(d.path(), &["inspect", "model/m.onnx"])
        .refused(&["tensor `w`", "location `link.bin`", "outside the model's folder", "(a symlink?)"])
        .bounded("external data symlink");
}

#[test]
fn external_range_past_end() {
    refused(&[("location", "w.bin"), ("offset", "64"), ("length", "112")], &["offset 64 + length 112 is beyond the end of", "w.bin` (112 bytes)", "truncated"]);
}

#[test]
fn external_offset_past_end() {
    refused(&[("location", "w.bin"), ("offset", "4096")], &["offset 4096 is beyond the end of"]);
}

#[test]
fn external_length_2gib() {
    // Refused from the file's size, before 2 GiB are allocated.
    refused(&[("location", "w.bin"), ("length", "2147483648")], &["length 2147483648 is beyond the end"]);
}

#[test]
fn external_missing_file() {
    refused(&[("location", "weights.bin")], &["cannot open", "weights.bin", "Keep the data file next to the model"]);
}

#[test]
fn external_not_a_regular_file() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), &[("location", "sub")]);
    std::fs::create_dir(d.path().join("model/sub")).unwrap();
    run_writing_nothing(d.path(), &["inspect", "model/m.onnx"]).refused(&["tensor `w`", "location `sub`", "is not a regular file"]);
}

#[test]
fn external_bad_offset() {
    refused(&[("location", "w.bin"), ("offset", "-3")], &["`offset` = `-3` is not a non-negative integer"]);
}

#[test]
fn external_no_location() {
    refused(&[("offset", "0")], &["marked EXTERNAL but has no `location` entry"]);
}
