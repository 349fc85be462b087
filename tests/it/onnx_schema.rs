//! Our `schemas/onnx.proto` must describe the same wire format as the ONNX specification: the
//! `onnx-ml.proto` shipped by the pinned onnx package in the venv. Both files are compiled with
//! protox and reduced to a set of facts (every message, nested ones included, every field with
//! number, name, type, label, type name, default and options, every oneof with its members,
//! every enum value, reserved ranges and names); the two sets must be equal. Comments may differ.

use std::collections::BTreeSet;
use std::path::Path;

use protox::prost_reflect::prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

use crate::support;

/// Compiles `file` (found in `include`) to descriptors.
fn compile(include: &Path, file: &str) -> FileDescriptorSet {
    protox::compile([file], [include]).unwrap_or_else(|e| panic!("{}/{file} does not compile: {e}", include.display()))
}

/// Every fact the wire format depends on, one line each, named by the full message path.
fn facts(set: &FileDescriptorSet) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    assert_eq!(set.file.len(), 1, "the schema must be one file without imports");
    let file = &set.file[0];
    out.insert(format!("syntax {:?} package {:?}", file.syntax, file.package));
    let package = file.package().to_string();
    for m in &file.message_type {
        message(&format!(".{package}"), m, &mut out);
    }
    for e in &file.enum_type {
        enumeration(&format!(".{package}"), e, &mut out);
    }
    out
}

fn message(parent: &str, m: &DescriptorProto, out: &mut BTreeSet<String>) {
    let name = format!("{parent}.{}", m.name());
    out.insert(format!("message {name} options {:?}", m.options));
    for f in &m.field {
        let oneof = f.oneof_index.map(|i| m.oneof_decl[i as usize].name().to_string());
        out.insert(format!(
            "message {name} field {} `{}`: {:?} {:?} type_name={:?} default={:?} oneof={oneof:?} proto3_optional={:?} extendee={:?} options={:?}",
            f.number(),
            f.name(),
            f.label(),
            f.r#type(),
            f.type_name,
            f.default_value,
            f.proto3_optional,
            f.extendee,
            f.options,
        ));
    }
    for (i, o) in m.oneof_decl.iter().enumerate() {
        let mut members: Vec<&str> =
            m.field.iter().filter(|f| f.oneof_index == Some(i as i32)).map(|f| f.name()).collect();
        members.sort();
        out.insert(format!("message {name} oneof `{}` = {members:?}", o.name()));
    }
    for r in &m.reserved_range {
        out.insert(format!("message {name} reserved numbers {:?}..{:?}", r.start, r.end));
    }
    for r in &m.reserved_name {
        out.insert(format!("message {name} reserved name `{r}`"));
    }
    if !m.extension.is_empty() || !m.extension_range.is_empty() {
        out.insert(format!("message {name} extensions {:?} {:?}", m.extension, m.extension_range));
    }
    for nested in &m.nested_type {
        message(&name, nested, out);
    }
    for e in &m.enum_type {
        enumeration(&name, e, out);
    }
}

fn enumeration(parent: &str, e: &EnumDescriptorProto, out: &mut BTreeSet<String>) {
    let name = format!("{parent}.{}", e.name());
    out.insert(format!("enum {name} options {:?}", e.options));
    for v in &e.value {
        out.insert(format!("enum {name} value `{}` = {} options {:?}", v.name(), v.number(), v.options));
    }
    for r in &e.reserved_range {
        out.insert(format!("enum {name} reserved numbers {:?}..={:?}", r.start, r.end));
    }
    for r in &e.reserved_name {
        out.insert(format!("enum {name} reserved name `{r}`"));
    }
}

/// The facts present in only one of the two sets, as a readable report (empty when equal).
fn differences(ours: &BTreeSet<String>, spec: &BTreeSet<String>) -> String {
    let mut report = String::new();
    for f in ours.difference(spec) {
        report += &format!("  only in schemas/onnx.proto: {f}\n");
    }
    for f in spec.difference(ours) {
        report += &format!("  only in onnx-ml.proto:      {f}\n");
    }
    report
}

/// The spec's facts. File options (the spec asks for protobuf-lite C++ code) are not collected:
/// they do not change the wire format.
fn spec_facts() -> BTreeSet<String> {
    facts(&compile(&support::onnx_package_dir(), "onnx-ml.proto"))
}

fn our_facts(schema_text: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("onnx.proto"), schema_text).unwrap();
    facts(&compile(dir.path(), "onnx.proto"))
}

fn our_schema_text() -> String {
    std::fs::read_to_string(support::repo_root().join("schemas/onnx.proto")).unwrap()
}

#[test]
fn our_onnx_proto_matches_the_onnx_ml_spec() {
    let ours = facts(&compile(&support::repo_root().join("schemas"), "onnx.proto"));
    let spec = spec_facts();
    assert!(ours.len() > 200, "suspiciously few facts ({}): is the schema complete?", ours.len());
    let report = differences(&ours, &spec);
    assert!(report.is_empty(), "schemas/onnx.proto differs from the ONNX spec:\n{report}");
}

/// The comparison above is only worth something if it sees a change: break the schema in a few
/// ways (in a copy) and check that each is reported.
#[test]
fn the_schema_comparison_catches_changes() {
    let text = our_schema_text();
    let spec = spec_facts();
    assert!(differences(&our_facts(&text), &spec).is_empty());
    let mutations = [
        ("optional int64 ir_version = 1;", "optional int64 ir_version = 30;", "ir_version"),
        ("optional int64 model_version = 5;", "optional int32 model_version = 5;", "model_version"),
        ("repeated float float_data = 4 [packed = true];", "repeated float float_data = 4;", "float_data"),
        ("optional string doc_string = 12;", "optional string docstring = 12;", "doc"),
        ("    FLOAT8E8M0 = 24;", "    FLOAT8E8M0 = 29;", "FLOAT8E8M0"),
        (
            "      string dim_param = 2;\n    }\n    optional string denotation",
            "    }\n    optional string dim_param = 2;\n    optional string denotation",
            "dim_param",
        ),
    ];
    for (from, to, needle) in mutations {
        assert_eq!(text.matches(from).count(), 1, "mutation anchor `{from}` must occur once in schemas/onnx.proto");
        let report = differences(&our_facts(&text.replacen(from, to, 1)), &spec);
        assert!(report.contains(needle), "changing `{from}` into `{to}` went unnoticed:\n{report}");
    }
}
