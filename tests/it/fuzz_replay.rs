//! The fuzz smoke of CI (docs/fuzzing.md): no cargo-fuzz, no nightly. Every committed corpus
//! file and crash regression input of the cargo-fuzz targets (fuzz/) goes through the same entry
//! points (`archrepair_onnx::fuzzing`), then a fixed-seed batch of structure-aware and byte
//! mutations of the fixtures and specs; any panic fails the test and names its input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use archrepair_onnx::fuzzing::{mutate_model, onnx_bytes, spec_bytes, Rng};
use archrepair_onnx::onnx::proto::ModelProto;
use prost::Message;

use crate::support::repo_root;

/// The files of `dir` (none when it does not exist), sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs `f` on `data`; a panic becomes a failure line naming `what`.
fn check(failures: &mut Vec<String>, what: impl FnOnce() -> String, f: fn(&[u8]), data: &[u8]) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(data))) {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        failures.push(format!("{}: panicked: {}", what(), msg.unwrap_or_default()));
    }
}

fn assert_no_failures(failures: Vec<String>, runs: usize) {
    assert!(failures.is_empty(), "{} of {runs} inputs panicked:\n{}", failures.len(), failures.join("\n"));
}

/// Every input of a target: its committed corpus, its crash regressions and its seeds.
fn target_inputs(target: &str, seeds: &[PathBuf]) -> Vec<PathBuf> {
    let fuzz = repo_root().join("fuzz");
    let mut files = files_in(&fuzz.join("corpus").join(target));
    assert!(!files.is_empty(), "no committed corpus in fuzz/corpus/{target}");
    files.extend(files_in(&fuzz.join("regressions").join(target)));
    files.extend(seeds.iter().cloned());
    files
}

fn replay(target: &str, seeds: &[PathBuf], f: fn(&[u8])) {
    let files = target_inputs(target, seeds);
    let mut failures = vec![];
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&mut failures, || path.display().to_string(), f, &data);
    }
    assert_no_failures(failures, files.len());
}

#[test]
fn fuzz_corpus_and_regressions_of_onnx_load_replay_without_panic() {
    replay("onnx_load", &crate::support::fixture_models(), onnx_bytes);
}

#[test]
fn fuzz_corpus_and_regressions_of_spec_parse_replay_without_panic() {
    replay("spec_parse", &files_in(&repo_root().join("fixtures/specs")), spec_bytes);
}

/// Byte-level mutations as libFuzzer makes them: flip, overwrite with a nasty byte, insert,
/// erase a range, truncate, duplicate a range.
fn mutate_bytes(data: &mut Vec<u8>, rng: &mut Rng) {
    let len = data.len();
    match rng.below(6) {
        0 if len > 0 => data[rng.below(len)] ^= 1 << rng.below(8),
        1 if len > 0 => data[rng.below(len)] = [0, 0xff, 0x7f, 0x80, b'\n', b':', b'-', b'['][rng.below(8)],
        2 => data.insert(rng.below(len + 1), rng.next_u64() as u8),
        3 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(16)).min(len);
            data.drain(start..end);
        }
        4 => data.truncate(rng.below(len + 1)),
        _ if len > 0 => {
            let start = rng.below(len);
            let piece: Vec<u8> = data[start..(start + 1 + rng.below(32)).min(len)].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, piece);
        }
        _ => data.push(b'x'),
    }
}

/// The small ONNX seeds: the committed corpus files under 64 KB.
fn small_onnx_seeds() -> Vec<(PathBuf, Vec<u8>)> {
    let seeds: Vec<(PathBuf, Vec<u8>)> = target_inputs("onnx_load", &[])
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .filter(|(_, d)| d.len() < 64 << 10 && ModelProto::decode(&d[..]).is_ok_and(|m| m.graph.is_some_and(|g| !g.node.is_empty())))
        .collect();
    assert!(seeds.len() >= 4, "fewer than 4 small models with nodes in fuzz/corpus/onnx_load");
    seeds
}

#[test]
fn seeded_mutations_of_models_and_specs_do_not_panic() {
    let mut rng = Rng::new(0x0a2c_4e9a);
    let mut failures = vec![];
    let mut runs = 0;

    // Structure-aware: decode, 1-4 field mutations, re-encode; a few on a real fixture too.
    let mut models = small_onnx_seeds();
    let fixture = repo_root().join("fixtures/models/resnet20_ts_op13_bn.onnx");
    models.push((fixture.clone(), std::fs::read(&fixture).unwrap()));
    for round in 0..3000u64 {
        let (path, data) = &models[if round % 100 == 99 { models.len() - 1 } else { rng.below(models.len() - 1) }];
        let mut model = ModelProto::decode(&data[..]).unwrap();
        for _ in 0..1 + rng.below(4) {
            mutate_model(&mut model, &mut rng);
        }
        let bytes = model.encode_to_vec();
        runs += 1;
        check(&mut failures, || format!("structure mutation {round} of {}", path.display()), onnx_bytes, &bytes);
    }

    // Bytes: up to 8 byte mutations of a small model.
    for round in 0..2000u64 {
        let (path, data) = &models[rng.below(models.len() - 1)];
        let mut bytes = data.clone();
        for _ in 0..1 + rng.below(8) {
            mutate_bytes(&mut bytes, &mut rng);
        }
        runs += 1;
        check(&mut failures, || format!("byte mutation {round} of {}", path.display()), onnx_bytes, &bytes);
    }

    // Specs: byte mutations of every committed spec input.
    let specs: Vec<(PathBuf, Vec<u8>)> = target_inputs("spec_parse", &files_in(&repo_root().join("fixtures/specs")))
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    for round in 0..3000u64 {
        let (path, data) = &specs[rng.below(specs.len())];
        let mut bytes = data.clone();
        for _ in 0..1 + rng.below(4) {
            mutate_bytes(&mut bytes, &mut rng);
        }
        runs += 1;
        check(&mut failures, || format!("spec mutation {round} of {}", path.display()), spec_bytes, &bytes);
    }
    assert_no_failures(failures, runs);
}
