//! The main command through the binary: `archrepair-onnx in.onnx out.onnx --spec`, its exit
//! codes (0 gate passed, 1 gate failed with out.onnx still written and marked, 2 errors), the
//! validated and fully checked out.onnx, the report files, and an interrupted run that leaves
//! nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use archrepair_onnx::export::{GATE_METADATA_KEY, METADATA_KEY};

use crate::support::{repo_root, venv_python};

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

fn subject() -> PathBuf {
    repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx")
}

/// A spec for a run of a few seconds; `extra` adds sections (e.g. a gate).
fn tiny_spec(dir: &Path, extra: &str) -> PathBuf {
    let spec = dir.join("tiny.yaml");
    std::fs::write(
        &spec,
        format!(
            "version: 1\ndata: {{path: {FASHION_MNIST}, split: test}}\ncollect: {{failures: 32}}\nsearch: {{block: 8, nodes: 2, epochs: 1, batch: 16, train_images: 64}}\ntrain: {{epochs: 1, batch: 16, train_images: 64}}\nvalidate: {{samples: 16, latency_images: 64}}\n{extra}"
        ),
    )
    .unwrap();
    spec
}

fn repair(spec: &Path, out: &Path, more: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .arg(subject())
        .arg(out)
        .args(["--spec", spec.to_str().unwrap(), "--limit", "300", "--threads", "2"])
        .args(more)
        .output()
        .unwrap()
}

pub fn metadata(path: &Path, key: &str) -> Option<String> {
    let model = archrepair_onnx::onnx::load_model(path).unwrap();
    model.metadata_props.iter().find(|e| e.key.as_deref() == Some(key)).and_then(|e| e.value.clone())
}

#[test]
fn a_passing_gate_exits_0_with_a_checked_model_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("repaired.onnx");
    let run = repair(&tiny_spec(dir.path(), "gate: {max_break_rate: 0.9, max_latency_ratio: 100}\n"), &out, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("Every check passed"));

    assert_eq!(metadata(&out, GATE_METADATA_KEY).as_deref(), Some("passed"));
    assert!(metadata(&out, METADATA_KEY).unwrap().contains("\"block\":8"));
    let check = Command::new(venv_python())
        .args(["-c", "import onnx, onnxruntime as ort, numpy as np, sys; onnx.checker.check_model(sys.argv[1], full_check=True); s = ort.InferenceSession(sys.argv[1]); print(s.run(None, {s.get_inputs()[0].name: np.zeros((2, 1, 28, 28), np.float32)})[0].shape)"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "(2, 10)");

    let report_dir = dir.path().join("repaired-report");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!((report["schema_version"].as_u64(), report["exit_code"].as_i64(), report["outcome"].as_str()), (Some(1), Some(0), Some("passed")));
    let v = &report["validation"];
    assert!(v["onnxruntime_max_abs_diff"].as_f64().unwrap() <= 1e-4 && v["tract_max_abs_diff"].as_f64().unwrap() <= 1e-4, "{v}");
    let m = &report["measured"]["evaluation"];
    assert_eq!(m["evaluated"].as_u64(), Some(300));
    assert!(m["accuracy_before"].as_f64().unwrap() > 0.5);
    for file in ["report.md", "report.html"] {
        assert!(report_dir.join(file).is_file(), "{file}");
    }
    assert!(dir.path().join("repaired-dump/genotype.json").is_file());

    // An existing output is not replaced without --force.
    let again = repair(&tiny_spec(dir.path(), ""), &out, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn a_failing_gate_exits_1_and_still_writes_the_marked_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("repaired.onnx");
    let run = repair(&tiny_spec(dir.path(), "gate: {min_accuracy_delta: 0.5}\n"), &out, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gate failed"), "{stderr}");
    assert_eq!(metadata(&out, GATE_METADATA_KEY).as_deref(), Some("failed"));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("repaired-report/report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"].as_str(), Some("gate_failed"));
    let check = &report["gate"]["checks"][0];
    assert_eq!((check["key"].as_str(), check["passed"].as_bool()), (Some("gate.min_accuracy_delta"), Some(false)));
}

#[test]
fn spec_and_usage_errors_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("repaired.onnx");
    let run = repair(&tiny_spec(dir.path(), "gate: {max_brake_rate: 0.1}\n"), &out, &[]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("max_brake_rate") && stderr.contains("max_break_rate"), "{stderr}");
    let no_spec = Command::new(env!("CARGO_BIN_EXE_archrepair-onnx")).arg(subject()).arg(&out).output().unwrap();
    assert_eq!(no_spec.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_spec.stderr).contains("--spec"));
    let same = repair(&tiny_spec(dir.path(), ""), &subject(), &["--force"]);
    assert_eq!(same.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&same.stderr).contains("is the input model"));
    assert!(!out.exists());
}

/// Starts the main command and sends `signal` once the search has written its first epoch's
/// checkpoint (waiting up to 5 minutes: CI machines may be loaded); returns the exit status and
/// stderr.
fn interrupt_mid_search(spec: &Path, out: &Path, signal: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .arg(subject())
        .arg(out)
        .args(["--spec", spec.to_str().unwrap(), "--limit", "300", "--threads", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dump = out.with_file_name(format!("{}-dump", out.file_stem().unwrap().to_string_lossy()));
    // The first epoch's checkpoint is whole once checkpoint.json is there (written last).
    for _ in 0..6000 {
        if dump.join("checkpoint/checkpoint.json").exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
    let output = child.wait_with_output().unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Every file under `dir` whose name marks a temporary (an interrupted write).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(temp_files(&path));
        } else if path.file_name().unwrap().to_string_lossy().contains(".tmp") {
            found.push(path);
        }
    }
    found
}

#[test]
fn an_interrupted_run_stops_cleanly_and_leaves_no_output_and_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("repaired.onnx");
    // Long enough to be interrupted mid-search.
    let spec = dir.path().join("long.yaml");
    std::fs::write(&spec, format!("version: 1\ndata: {{path: {FASHION_MNIST}, split: test}}\nsearch: {{block: 8, epochs: 50, train_images: 1000}}\n")).unwrap();
    let (status, stderr) = interrupt_mid_search(&spec, &out, "-INT");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("--resume"), "{stderr}");
    assert!(!out.exists());
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());
    assert_eq!(finished_stages(&dir.path().join("repaired-dump")), ["localize"]);
}

/// SIGTERM mid-search, then --resume: the search continues from its last epoch's checkpoint
/// and the run ends with the model an uninterrupted run writes.
#[test]
fn a_run_terminated_mid_search_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("six-epochs.yaml");
    std::fs::write(
        &spec,
        format!("version: 1\ndata: {{path: {FASHION_MNIST}, split: test}}\ncollect: {{failures: 32}}\nsearch: {{block: 8, nodes: 2, epochs: 6, batch: 16, train_images: 256}}\ntrain: {{epochs: 1, batch: 16, train_images: 64}}\nvalidate: {{samples: 16, latency_images: 64}}\ngate: {{max_latency_ratio: 100}}\n"),
    )
    .unwrap();
    let straight = dir.path().join("straight.onnx");
    let run = repair(&spec, &straight, &[]);
    assert!(run.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&run.stderr));

    let out = dir.path().join("resumed.onnx");
    let (status, stderr) = interrupt_mid_search(&spec, &out, "-TERM");
    assert_eq!(status.code(), Some(130), "{stderr}");
    let dump = dir.path().join("resumed-dump");
    assert_eq!(finished_stages(&dump), ["localize"], "not interrupted mid-search");
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());

    let resumed = repair(&spec, &out, &["--resume", dump.to_str().unwrap()]);
    assert_eq!(resumed.status.code(), run.status.code(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("resumed-report/report.json")).unwrap()).unwrap();
    assert!(report["repair"]["resumed_from_epoch"].as_u64().is_some(), "the search did not continue from its checkpoint");
    // Same seed, same threads: the same file, byte for byte (metadata included).
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&straight).unwrap(), "the resumed run wrote another out.onnx");
}

fn finished_stages(dump: &Path) -> Vec<String> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dump.join("stages.json")).unwrap()).unwrap();
    manifest["finished"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn graph_bytes(path: &Path) -> Vec<u8> {
    use prost::Message;
    archrepair_onnx::onnx::load_model(path).unwrap().graph.unwrap().encode_to_vec()
}

/// `spec` training the cell in one epoch of whole-network fine-tuning (no block-only epoch, so
/// the fine-tuned weights are the ones kept).
fn with_finetune(spec: PathBuf) -> PathBuf {
    let text = std::fs::read_to_string(&spec).unwrap().replace("train: {epochs: 1,", "train: {epochs: 0, finetune_epochs: 1, finetune_lr: 0.01,");
    std::fs::write(&spec, text).unwrap();
    spec
}

/// With a fine-tune, so that the resumed run must also restore the changed backbone weights.
#[test]
fn a_run_stopped_after_a_stage_resumes_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let passing = with_finetune(tiny_spec(dir.path(), "gate: {max_break_rate: 0.9, max_latency_ratio: 100}\n"));
    let straight = dir.path().join("straight.onnx");
    let run = repair(&passing, &straight, &[]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));

    let out = dir.path().join("staged.onnx");
    let dump = dir.path().join("staged-dump");
    let dump_arg = dump.to_str().unwrap();
    let first = repair(&passing, &out, &["--stop-after", "search"]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("--resume {dump_arg}")), "{stderr}");
    assert!(!out.exists());
    assert_eq!(finished_stages(&dump), ["localize", "search"]);
    assert!(dump.join("backbone.ot").is_file());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("staged-report/report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"].as_str(), Some("stopped_after_search"));
    assert!(report["repair"]["genotype_text"].is_string() && report["validation"].is_null());
    assert_eq!(report["repair"]["kept"]["phase"].as_str(), Some("finetune"));

    // The folder is not silently reused, nor continued by another run.
    let fresh = repair(&passing, &out, &[]);
    assert_eq!(fresh.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&fresh.stderr).contains("--resume"));
    let other_dir = tempfile::tempdir().unwrap();
    let other = with_finetune(tiny_spec(other_dir.path(), "seed: 7\n"));
    let refused = repair(&other, &out, &["--resume", dump_arg]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another run"), "{}", String::from_utf8_lossy(&refused.stderr));

    let second = repair(&passing, &out, &["--resume", dump_arg, "--stop-after", "validate"]);
    assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(finished_stages(&dump), ["localize", "search", "export", "validate"]);
    assert!(!out.exists());

    // The gate may change between a stop and a resume: this one fails.
    let gate_dir = tempfile::tempdir().unwrap();
    let failing = with_finetune(tiny_spec(gate_dir.path(), "gate: {min_accuracy_delta: 0.5}\n"));
    let last = repair(&failing, &out, &["--resume", dump_arg]);
    assert_eq!(last.status.code(), Some(1), "{}", String::from_utf8_lossy(&last.stderr));
    assert!(graph_bytes(&out) == graph_bytes(&straight), "the resumed run exported another graph");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("staged-report/report.json")).unwrap()).unwrap();
    let resumed: Vec<(&str, bool)> = report["stages"].as_array().unwrap().iter().map(|s| (s["stage"].as_str().unwrap(), s["resumed"].as_bool().unwrap())).collect();
    assert_eq!(
        resumed,
        [("load", false), ("localize", true), ("collect", true), ("search", true), ("train", true), ("evaluate", true), ("export", true), ("validate", true), ("measure", false)]
    );
}

#[test]
fn the_demo_runs_from_any_folder_on_the_embedded_subject_and_spec() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_archrepair-onnx")).current_dir(dir.path()).arg("demo").args(args).output().unwrap();
    let run = demo(&["--limit", "300", "--threads", "2", "--stop-after", "localize"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let out = dir.path().join("archrepair-demo");
    assert!(std::fs::read(out.join("fashion_mnist_resnet20.onnx")).unwrap() == std::fs::read(subject()).unwrap());
    assert!(String::from_utf8_lossy(&run.stdout).contains("most suspicious: block"));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("repaired-report/report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"].as_str(), Some("stopped_after_localize"));
    assert_eq!(report["spec"]["localize"]["method"].as_str(), Some("spectrum"), "the embedded demo spec was not used");
    assert!(report["ranking"].as_array().unwrap().len() > 3, "{}", report["ranking"]);

    let again = demo(&["--limit", "300"]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("--resume") && stderr.contains("--force"), "{stderr}");
    let no_data = demo(&["--data", "/nonexistent/fashion-mnist", "--out", "elsewhere"]);
    assert_eq!(no_data.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_data.stderr).contains("dataset-fashion-mnist"));
}

/// A learning rate that makes the loss infinite: the epoch is rolled back and run again at a
/// tenth of it, diverges again, and the run ends with an error naming the spec key, without
/// an out.onnx and without recording the search as finished.
#[test]
fn a_diverging_search_or_training_rolls_back_once_then_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let spec = tiny_spec(dir.path(), "");
    let text = std::fs::read_to_string(&spec).unwrap();
    for (section, key, changed) in [
        ("search", "search.lr", text.replace("epochs: 1, batch: 16, train_images: 64}\ntrain", "epochs: 1, batch: 16, train_images: 64, lr: 1.0e+30}\ntrain")),
        ("train", "train.lr", text.replace("train: {epochs: 1,", "train: {epochs: 1, lr: 1.0e+30,")),
    ] {
        assert_ne!(changed, text, "{section}: the spec was not changed");
        std::fs::write(&spec, changed).unwrap();
        let out = dir.path().join(format!("{section}.onnx"));
        let run = repair(&spec, &out, &[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("diverged") && stderr.contains("rolled back") && stderr.contains(key), "{section}: {stderr}");
        assert!(!out.exists());
        assert_eq!(finished_stages(&dir.path().join(format!("{section}-dump"))), ["localize"]);
    }
}

#[test]
fn a_model_with_a_nan_weight_is_refused_naming_the_initializer() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = archrepair_onnx::onnx::load_model(&subject()).unwrap();
    let weight = model.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name() == "conv1.weight").unwrap();
    let raw = weight.raw_data.as_mut().expect("the subject stores raw_data");
    raw[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let broken = dir.path().join("broken.onnx");
    archrepair_onnx::onnx::save_model(&model, &broken).unwrap();

    let out = dir.path().join("repaired.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_archrepair-onnx"))
        .arg(&broken)
        .arg(&out)
        .args(["--spec", tiny_spec(dir.path(), "").to_str().unwrap(), "--limit", "300"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`conv1.weight` holds NaN"), "{stderr}");
    assert!(!out.exists() && !dir.path().join("repaired-dump").exists());
}
