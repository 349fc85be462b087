//! The catalogue of user-facing errors (docs/errors.md), entry by entry, through the binary:
//! each test triggers one error and checks the exit code, that the message names the file,
//! node, tensor or key and the fix, that nothing was written, and (for hostile models) the
//! child's peak RSS.

mod bombs;
mod cli;
mod external;
mod late;
mod model;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use prost::Message;

use archrepair_onnx::onnx::proto::ModelProto;

pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The peak RSS every refusal must stay under. The binary maps libtorch and onnxruntime at
/// start-up (about 0.5 GiB before reading anything), so this leaves 0.5 GiB for the input.
pub const RSS_BOUND_KB: u64 = 1 << 20;

/// What one run of the binary did.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size of the child, in KiB (wait4's `ru_maxrss`).
    pub peak_rss_kb: u64,
}

/// GNU time, when installed: it forks the binary from its own small process, so the peak RSS
/// it reports is the binary's alone.
const GNU_TIME: &str = "/usr/bin/time";

/// Runs the binary in `dir` (its working folder). The peak RSS comes from GNU time when it is
/// installed; otherwise from wait4(2) on the child, which Linux makes at least the test
/// process's own RSS when the child was spawned (an exec keeps the larger `maxrss`), so
/// that number is an upper bound. RUSAGE_CHILDREN would mix in other tests' children.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which Child::wait cannot replace
pub fn run_in(dir: &Path, args: &[&str]) -> Outcome {
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path, rss_path) = (logs.path().join("stdout"), logs.path().join("stderr"), logs.path().join("rss"));
    let binary = env!("CARGO_BIN_EXE_archrepair-onnx");
    let timed = Path::new(GNU_TIME).is_file();
    let mut command = if timed {
        let mut c = Command::new(GNU_TIME);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_path).arg(binary);
        c
    } else {
        Command::new(binary)
    };
    let child = command
        .args(args)
        .current_dir(dir)
        .env_remove("ORT_DYLIB_PATH")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("the binary starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let timed_rss = timed.then(|| read(&rss_path).lines().last().and_then(|l| l.trim().parse::<u64>().ok())).flatten();
    Outcome { code, stdout: read(&out_path), stderr: read(&err_path), peak_rss_kb: timed_rss.unwrap_or(usage.ru_maxrss as u64) }
}

impl Outcome {
    /// Exit code 2, one `error:` paragraph holding every needle, no panic; returns self.
    pub fn refused(&self, needles: &[&str]) -> &Self {
        self.refused_with(2, needles)
    }

    pub fn refused_with(&self, code: i32, needles: &[&str]) -> &Self {
        let e = &self.stderr;
        assert_eq!(self.code, Some(code), "exit code; stderr:\n{e}");
        assert!(e.starts_with("error: "), "{e}");
        assert!(!e.contains("panicked") && !e.contains("RUST_BACKTRACE"), "{e}");
        for needle in needles {
            assert!(e.contains(needle), "`{needle}` missing from:\n{e}");
        }
        self
    }

    /// Asserts the peak RSS bound and prints the number (docs/errors.md quotes it; run the
    /// tests with --nocapture to see it).
    pub fn bounded(&self, name: &str) -> &Self {
        eprintln!("peak RSS {name}: {} MiB", self.peak_rss_kb / 1024);
        assert!(self.peak_rss_kb < RSS_BOUND_KB, "{name}: peak RSS {} KiB over {RSS_BOUND_KB} KiB", self.peak_rss_kb);
        self
    }
}

/// Every file and folder under `dir`, relative to it.
pub fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            found.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

/// Runs the binary in `dir` and asserts that the run added, removed nothing there.
pub fn run_writing_nothing(dir: &Path, args: &[&str]) -> Outcome {
    let before = tree(dir);
    let outcome = run_in(dir, args);
    assert_eq!(tree(dir), before, "the run changed {}; stderr:\n{}", dir.display(), outcome.stderr);
    outcome
}

/// Writes `model` as is (no checks, unlike save_model) and returns its path.
pub fn write_model(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

/// A spec with the Fashion-MNIST data and `extra` YAML lines.
pub fn spec(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("repair.yaml");
    std::fs::write(&path, format!("version: 1\ndata: {{path: {FASHION_MNIST}}}\n{extra}")).unwrap();
    path
}

pub fn subject() -> PathBuf {
    crate::support::repo_root().join("fixtures/subjects/fashion_mnist_resnet20.onnx")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
