//! schemas/spec.schema.json: the committed file is what the spec types generate, every spec the
//! repository ships (fixtures, docs) is valid under it, and the schema and the parser
//! (`Spec::from_yaml`) agree on specs that must be refused.

use std::path::{Path, PathBuf};

use archrepair_onnx::spec::{spec_schema, Spec};
use serde_json::Value;

use crate::support::repo_root;

const SCHEMA_FILE: &str = "schemas/spec.schema.json";
const REGENERATE: &str = "UPDATE_SCHEMAS=1 cargo test --release --test it spec_schema";

fn generated_text() -> String {
    serde_json::to_string_pretty(&spec_schema()).unwrap() + "\n"
}

/// With UPDATE_SCHEMAS=1 this test rewrites the file instead of comparing (and still passes).
#[test]
fn spec_schema_file_is_what_the_spec_types_generate() {
    let path = repo_root().join(SCHEMA_FILE);
    let generated = generated_text();
    if std::env::var("UPDATE_SCHEMAS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; create it with `{REGENERATE}`", path.display()));
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "{SCHEMA_FILE} differs from the schema the spec types in src/ generate (first at line {}); \
             regenerate it with `{REGENERATE}` and commit it",
            line + 1
        );
    }
}

fn validator() -> jsonschema::Validator {
    // The schema as generated; the test above proves it is the committed file.
    jsonschema::draft202012::new(&spec_schema()).expect("the spec schema is a valid draft 2020-12 schema")
}

/// What the schema says of `yaml`: `Ok` or the violations, each with its JSON path.
fn schema_verdict(validator: &jsonschema::Validator, yaml: &str) -> Result<(), Vec<String>> {
    let doc: Value = serde_norway::from_str(yaml).map_err(|e| vec![format!("not YAML: {e}")])?;
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Both the schema and the parser accept `yaml`; `origin` names it in the failure.
fn assert_accepted(validator: &jsonschema::Validator, origin: &str, yaml: &str) {
    if let Err(errors) = schema_verdict(validator, yaml) {
        panic!("{origin}: refused by {SCHEMA_FILE}: {errors:#?}\n{yaml}");
    }
    if let Err(e) = Spec::from_yaml(yaml) {
        panic!("{origin}: refused by Spec::from_yaml: {e}\n{yaml}");
    }
}

/// Every .yaml/.yml file in the repository outside hidden folders, target/, out/ and fuzz/
/// (the fuzz corpus holds spec fragments and broken specs on purpose); all of them are specs.
fn committed_yaml(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || (dir == repo_root() && (name == "target" || name == "out" || name == "fuzz")) {
            continue;
        }
        if path.is_dir() {
            committed_yaml(&path, found);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            found.push(path);
        }
    }
}

#[test]
fn spec_schema_accepts_every_committed_spec() {
    let validator = validator();
    let mut files = Vec::new();
    committed_yaml(repo_root(), &mut files);
    let fixtures = files.iter().filter(|f| f.starts_with(repo_root().join("fixtures/specs"))).count();
    assert!(fixtures >= 2, "expected fixtures/specs/demo.yaml and fashion_mnist_resnet20.yaml, found {files:?}");
    let mut benches = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if is_bench_file(&text) {
            benches += 1;
            continue;
        }
        assert_accepted(&validator, &file.display().to_string(), &text);
    }
    assert!(benches >= 2, "expected bench/bench.yaml and fixtures/bench/quick.yaml");
}

/// Bench files (`archrepair-onnx bench --spec`, docs/bench.md) are the only other YAML files:
/// a top-level `subjects` key marks them; they must parse as bench files instead.
fn is_bench_file(text: &str) -> bool {
    if !text.lines().any(|l| l.starts_with("subjects:")) {
        return false;
    }
    if let Err(e) = archrepair_onnx::commands::bench::plan::BenchFile::from_yaml(text) {
        panic!("a bench file that does not parse: {e}\n{text}");
    }
    true
}

/// The ```yaml blocks of a Markdown file.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The YAML examples of the docs: a block with `version` is a whole spec; any other block is a
/// list of spec fragments separated by blank lines (docs/data.md's `input` examples), each
/// checked as a spec of its own.
#[test]
fn spec_schema_accepts_the_examples_in_the_docs() {
    let validator = validator();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("docs")).unwrap().flatten().map(|e| e.path()).collect();
    docs.push(repo_root().join("README.md"));
    docs.sort();
    let (mut whole, mut fragments) = (0, 0);
    for doc in docs.iter().filter(|d| d.extension().is_some_and(|e| e == "md")) {
        for (i, block) in yaml_blocks(&std::fs::read_to_string(doc).unwrap()).iter().enumerate() {
            let origin = format!("{} (yaml block {})", doc.display(), i + 1);
            if is_bench_file(block) {
                continue;
            }
            if block.lines().any(|l| l.starts_with("version:")) {
                assert_accepted(&validator, &origin, block);
                whole += 1;
            } else {
                for part in block.split("\n\n").filter(|p| p.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))) {
                    assert_accepted(&validator, &origin, &format!("version: 1\n{part}"));
                    fragments += 1;
                }
            }
        }
    }
    assert!(whole >= 2 && fragments >= 3, "expected the specs of docs/localize.md and docs/search.md and docs/data.md's input examples; checked {whole} whole specs and {fragments} fragments");
}

/// Specs that must be refused: the schema and the parser both refuse each.
#[test]
fn spec_schema_and_parser_refuse_the_same_mistakes() {
    let validator = validator();
    let refused = [
        ("a misspelled top-level key", "version: 1\nserach: {epochs: 1}\n"),
        ("a misspelled nested key", "version: 1\ngate: {max_brake_rate: 0.05}\n"),
        ("a misspelled key in an evaluate entry", "version: 1\nevaluate: [{name: fog, path: f.npy, severty: 3}]\n"),
        ("a string for a number", "version: 1\nsearch: {epochs: two}\n"),
        ("a negative count", "version: 1\ncollect: {failures: -5}\n"),
        ("a list for a section", "version: 1\nvalidate: [samples, 64]\n"),
        ("an unknown name", "version: 1\nlocalize: {formula: ochai}\n"),
        ("an unknown data format", "version: 1\ndata: {path: x, format: zip}\n"),
        ("a block that is neither auto nor an id", "version: 1\nsearch: {block: first}\n"),
        ("another version", "version: 2\n"),
        ("no version", "seed: 3\n"),
        ("rows with three numbers", "version: 1\nevaluate: [{name: a, path: p, rows: [1, 2, 3]}]\n"),
    ];
    for (what, yaml) in refused {
        assert!(schema_verdict(&validator, yaml).is_err(), "the schema accepts {what}:\n{yaml}");
        assert!(Spec::from_yaml(yaml).is_err(), "Spec::from_yaml accepts {what}:\n{yaml}");
    }
    // And both accept what the hand-written deserializers read: any case of a data name, a
    // block id as a number or a string, null for an optional key.
    let accepted = "version: 1\ndata: {path: x, format: CIFAR-10, split: t10k, layout: NHWC, severity: null}\nsearch: {block: '7'}\nevaluate: [{name: b, path: q, rows: [0, 5]}]\n";
    assert_accepted(&validator, "the accepted example", accepted);
    assert_accepted(&validator, "a numeric block", "version: 1\nsearch: {block: 3, ops: [skip_connect, sep_conv_3x3]}\n");
}

/// docs/spec.md's table of top-level keys lists exactly the schema's properties.
#[test]
fn spec_schema_keys_are_the_ones_docs_spec_md_lists() {
    let text = std::fs::read_to_string(repo_root().join("docs/spec.md")).unwrap();
    let table = text.split("| Key | Default | Meaning | Reference |").nth(1).expect("docs/spec.md has the table of top-level keys");
    let mut documented: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    documented.sort();
    let schema = spec_schema();
    let mut keys: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(documented, keys, "docs/spec.md's key table and {SCHEMA_FILE} list different keys");
}
