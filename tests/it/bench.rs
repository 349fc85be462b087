//! `archrepair-onnx bench` through the binary: the CI bench (fixtures/bench/quick.yaml, quick
//! profile) end to end, a second run that skips every finished cell, a changed profile that
//! reruns its cells, and bench files that are refused before any cell runs.

use std::path::Path;
use std::process::{Command, Output};

use archrepair_onnx::baselines::Method;

use crate::support::repo_root;

fn bench(spec: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .args(["bench", "--quick", "--threads", "2", "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// The `[i/n] cell ...` progress lines of a run's stderr.
fn progress_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr).lines().filter(|l| l.starts_with('[')).map(String::from).collect()
}

/// Whether a progress line reports a time (`in 12 s`), as a cell that ran does.
fn has_timing(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.windows(3).any(|w| w[0] == "in" && w[1].parse::<f64>().is_ok() && w[2] == "s")
}

#[test]
fn the_quick_bench_runs_every_cell_then_skips_them_and_reruns_a_cell_whose_profile_changed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let quick = repo_root().join("fixtures/bench/quick.yaml");
    let first = bench(&quick, &out);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{stderr}");

    // results.csv: one row per cell (1 subject × 2 scenarios × 6 methods × 2 seeds), finished,
    // with numeric accuracies.
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let methods = Method::ALL.map(Method::as_str);
    assert_eq!(rows.len(), 2 * methods.len() * 2, "{csv}");
    let mut cells: Vec<String> = rows.iter().map(|r| format!("{}/{}/{}", r[column("scenario")], r[column("method")], r[column("seed")])).collect();
    cells.sort();
    let mut expected: Vec<String> = ["clean", "gaussian_noise-3"].iter().flat_map(|s| methods.iter().flat_map(move |m| [1, 2].map(|seed| format!("{s}/{m}/{seed}")))).collect();
    expected.sort();
    assert_eq!(cells, expected);
    for row in &rows {
        assert_eq!(row.len(), header.len());
        assert!(["passed", "gate_failed"].contains(&row[column("outcome")]), "{row:?}");
        for key in ["accuracy_before", "accuracy_after", "repair_rate", "break_rate", "total_s"] {
            let v: f64 = row[column(key)].parse().unwrap_or_else(|_| panic!("{key} = `{}` is not a number", row[column(key)]));
            assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
        }
        // What each method changed: ArchRepair and finetune-block a localized block,
        // finetune-layer a layer; the others localize nothing.
        let expected = match row[column("method")] {
            "archrepair" | "finetune-block" => "block ",
            "finetune-layer" => "layer ",
            _ => "",
        };
        let repaired = row[column("repaired")];
        assert!(if expected.is_empty() { repaired.is_empty() } else { repaired.starts_with(expected) && repaired[expected.len()..].parse::<usize>().is_ok() }, "repaired `{repaired}` in {row:?}");
        if row[column("scenario")] == "gaussian_noise-3" {
            for key in ["clean_accuracy_after", "corruption_accuracy_after", "contrast_after"] {
                assert!(row[column(key)].parse::<f64>().is_ok(), "{key} missing in {row:?}");
            }
        }
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("## fashion_mnist_resnet20 / gaussian_noise-3"), "{md}");
    for method in methods {
        assert!(md.contains(&format!("| {method} | 2/2 |")), "{method}: {md}");
    }
    for scenario in ["clean", "gaussian_noise-3"] {
        let svg = std::fs::read_to_string(out.join(format!("plots/fashion_mnist_resnet20-{scenario}-accuracy.svg"))).unwrap();
        assert_eq!(svg.matches(r#"class="bar""#).count(), methods.len(), "one bar per method: {svg}");
        assert!(out.join(format!("plots/fashion_mnist_resnet20-{scenario}-rates.svg")).is_file());
    }
    let cell = out.join("fashion_mnist_resnet20/gaussian_noise-3/archrepair/seed2");
    for file in ["spec.yaml", "out.onnx", "report/report.json", "log.txt", "dump/stages.json"] {
        assert!(cell.join(file).exists(), "{file}");
    }
    assert!(out.join("corrupted/fashion-mnist/s3/contrast.npy").is_file());

    // Second run: every cell is skipped, none is run or timed.
    let second = bench(&quick, &out);
    assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stderr));
    let lines = progress_lines(&second);
    assert_eq!(lines.len(), rows.len(), "{lines:?}");
    for line in &lines {
        assert!(line.contains("skipped") && !has_timing(line), "{line}");
    }
    assert!(String::from_utf8_lossy(&second.stderr).contains("reusing"), "the corrupted data is made once");

    // The same bench elsewhere, clean scenario and seed 1 only, with a changed quick overlay:
    // that cell runs again with the new spec.
    let text = std::fs::read_to_string(&quick).unwrap();
    let fixtures = repo_root().join("fixtures");
    let changed = text
        .replace("../subjects/", &format!("{}/subjects/", fixtures.display()))
        .replace("spec: tiny_spec.yaml", &format!("spec: {}/bench/tiny_spec.yaml", fixtures.display()))
        .replace("  - {name: gaussian_noise-3, kind: corruption, corruption: gaussian_noise, severity: 3}\n", "")
        .replace("seeds: [1, 2]", "seeds: [1]")
        .replace("    train: {epochs: 1, train_images: 64}\n", "    train: {epochs: 1, train_images: 32}\n");
    assert_eq!(changed.matches("train_images: 32").count(), 1, "the fixture changed; update this test");
    let copy = dir.path().join("changed.yaml");
    std::fs::write(&copy, changed).unwrap();
    let spec_before = std::fs::read(out.join("fashion_mnist_resnet20/clean/archrepair/seed1/spec.yaml")).unwrap();
    let third = bench(&copy, &out);
    assert_eq!(third.status.code(), Some(0), "{}", String::from_utf8_lossy(&third.stderr));
    let lines = progress_lines(&third);
    assert!(lines.iter().any(|l| l.contains("clean/archrepair/seed1 started")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("clean/archrepair/seed1 passed") || l.contains("clean/archrepair/seed1 gate_failed")) && lines.iter().all(|l| !l.contains("skipped")), "{lines:?}");
    let spec_after = std::fs::read_to_string(out.join("fashion_mnist_resnet20/clean/archrepair/seed1/spec.yaml")).unwrap();
    assert!(spec_after.as_bytes() != spec_before.as_slice() && spec_after.contains("train_images: 32"), "{spec_after}");
}

#[test]
fn bad_bench_files_exit_2_naming_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = repo_root().join("fixtures");
    let good = format!(
        "version: 1\nsubjects:\n  - {{name: fm, model: {}/subjects/fashion_mnist_resnet20.onnx, spec: {}/bench/tiny_spec.yaml}}\nscenarios: [{{name: clean, kind: clean}}]\nmethods: [archrepair]\nseeds: [1]\nprofiles: {{quick: {{limit: 10}}}}\n",
        fixtures.display(),
        fixtures.display()
    );
    let cases = [
        (good.replace("seeds: [1]", "seeds: [1]\nsedes: [2]"), vec!["sedes", "seeds"]),
        (good.replace("fashion_mnist_resnet20.onnx", "missing.onnx"), vec!["subjects[0].model", "missing.onnx", "relative to the bench file"]),
        (good.replace("methods: [archrepair]", "methods: [archrepair, fine-tune]"), vec!["fine-tune", "finetune-network"]),
        (good.replace("kind: clean", "kind: corruption, corruption: fgo, severity: 3"), vec!["scenarios[0].corruption", "fgo", "fog"]),
        (good.replace("{limit: 10}", "{limit: 10, search: {epoch: 1}}"), vec!["profiles.quick", "epoch", "epochs"]),
    ];
    for (i, (text, wanted)) in cases.iter().enumerate() {
        let spec = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&spec, text).unwrap();
        let out = dir.path().join(format!("out{i}"));
        let run = bench(&spec, &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "case {i}: {stderr}");
        for word in wanted {
            assert!(stderr.contains(word), "case {i}: `{word}` not in: {stderr}");
        }
        assert!(!out.join("results.csv").exists(), "case {i} ran cells");
    }
}
