//! `archrepair-onnx bench --spec bench.yaml`: the comparison benchmark. Every cell of the grid
//! subjects × scenarios × methods × seeds runs the main command as a child process of this
//! binary, in its own folder `<out>/<subject>/<scenario>/<method>/seed<k>/` (spec.yaml, out.onnx,
//! report/, dump/, log.txt), so one cell's crash or memory cannot end the bench and its time is
//! its own. The results (results.csv, results.md, plots/*.svg) are written from the cells'
//! report.json files at the end, and also when the bench is interrupted.
//!
//! Resumable: a cell whose report says it finished (passed or gate failed) and whose spec.yaml
//! is byte-identical to the one the bench would write now is skipped; a cell with a dump
//! folder but no report is continued with `--resume`; `--force` reruns every cell.
//! See docs/bench.md.

mod corrupted;
pub mod plan;
pub mod plot;
pub mod results;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::data::{write_atomically, DataError};
use crate::interrupt;
use crate::Error;
use plan::{Cell, Plan, Scenario};
use results::{CellKey, Row};

pub struct BenchOptions {
    /// bench.yaml.
    pub spec: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Use `profiles.quick` instead of `profiles.full`.
    pub quick: bool,
    /// Rerun every cell, finished or not.
    pub force: bool,
    /// `--threads` for every cell.
    pub threads: Option<usize>,
    /// The binary whose main command runs each cell (normally this one).
    pub exe: PathBuf,
}

/// What a bench run did: its rows (one per cell) and the files written.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub bench: String,
    pub out: String,
    pub profile: String,
    pub rows: Vec<Row>,
    /// The cells without a report: `subject/scenario/method/seed<k>`.
    pub failed: Vec<String>,
    pub files: Vec<String>,
    /// Set when Ctrl-C or SIGTERM stopped the bench before every cell ran.
    pub interrupted: bool,
}

impl BenchReport {
    /// 0 when every cell produced a report (gate failures included), 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.failed.is_empty() {
            0
        } else {
            2
        }
    }
}

/// The files each cell writes, inside its folder.
const SPEC: &str = "spec.yaml";
const LOG: &str = "log.txt";
const REPORT: &str = "report";
const DUMP: &str = "dump";
const OUTPUT: &str = "out.onnx";
/// The cell's last run by the bench: exit code and wall seconds.
const RUN: &str = "run.json";

#[derive(Debug, Serialize, serde::Deserialize)]
struct RunRecord {
    exit_code: Option<i32>,
    seconds: f64,
}

/// Runs (or skips, or continues) every cell, then writes the results.
pub fn bench(options: &BenchOptions) -> Result<BenchReport, Error> {
    let plan = Plan::load(&options.spec, options.quick)?;
    let out = std::path::absolute(&options.out).map_err(|source| DataError::Write { path: options.out.clone(), source })?;
    std::fs::create_dir_all(&out).map_err(|source| DataError::Write { path: out.clone(), source })?;
    let corrupted = corrupted::prepare(&plan, &out)?;
    let cells = plan.cells();
    // Every cell's spec before the first one runs: an overlay that breaks one cell stops the
    // bench now, not hours in.
    let texts = cells
        .iter()
        .map(|cell| {
            let data = match &plan.scenarios[cell.scenario] {
                Scenario::Corruption { severity, .. } => corrupted.get(&(cell.subject, *severity)),
                Scenario::Clean { .. } => None,
            };
            plan.cell_spec_text(cell, data)
        })
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!("bench {}: {} cells, profile {}, into {}", plan.file.display(), cells.len(), plan.profile.name, out.display());
    let mut rows = Vec::new();
    let mut interrupted = false;
    for (i, (cell, text)) in cells.iter().zip(&texts).enumerate() {
        if interrupt::requested() {
            interrupted = true;
            break;
        }
        let prefix = format!("[{}/{}] {}", i + 1, cells.len(), plan.cell_name(cell));
        let (row, stop) = run_cell(&plan, cell, text, &out, options, &prefix)?;
        rows.push(row);
        if stop {
            interrupted = true;
            break;
        }
    }
    let files = write_results(&plan, &out, &rows)?;
    let failed = rows.iter().filter(|r| !r.finished()).map(|r| format!("{}/{}/{}/seed{}", r.subject, r.scenario, r.method, r.seed)).collect();
    let report = BenchReport { bench: plan.file.display().to_string(), out: out.display().to_string(), profile: plan.profile.name.into(), rows, failed, files, interrupted };
    if interrupted {
        eprintln!("interrupted: the results so far are in {}; run the same command again to continue", out.display());
        return Err(Error::Interrupted);
    }
    Ok(report)
}

/// How a cell runs this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Skip,
    Resume,
    Fresh,
}

/// The finished report of a cell folder, if any (`passed` or `gate_failed`).
fn finished_report(dir: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(dir.join(REPORT).join("report.json")).ok()?;
    let report: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    matches!(report["outcome"].as_str(), Some("passed" | "gate_failed")).then_some(report)
}

/// Skip a finished cell of the same spec, resume one with a dump folder and no report, run the rest.
fn mode(dir: &Path, text: &str, force: bool) -> Mode {
    let same_spec = std::fs::read(dir.join(SPEC)).is_ok_and(|b| b == text.as_bytes());
    if force || !same_spec {
        Mode::Fresh
    } else if finished_report(dir).is_some() {
        Mode::Skip
    } else if dir.join(DUMP).join("stages.json").is_file() {
        Mode::Resume
    } else {
        Mode::Fresh
    }
}

/// Runs one cell; returns its row and whether the bench must stop (interrupted).
fn run_cell(plan: &Plan, cell: &Cell, text: &str, out: &Path, options: &BenchOptions, prefix: &str) -> Result<(Row, bool), Error> {
    let dir = out.join(plan.cell_name(cell));
    let key = CellKey { subject: plan.subjects[cell.subject].name.clone(), scenario: plan.scenarios[cell.scenario].name().into(), method: plan.methods[cell.method].name.clone(), seed: cell.seed };
    let mut mode = mode(&dir, text, options.force);
    if mode == Mode::Skip {
        let report = finished_report(&dir).unwrap_or_default();
        let row = Row::from_report(&key, "skipped", f64::NAN, &report);
        eprintln!("{prefix} skipped (finished earlier, {}): {}", row.outcome, numbers(&row));
        return Ok((row, false));
    }
    if mode == Mode::Fresh {
        // A stale report must not stand for this run if it fails.
        for stale in [REPORT, RUN] {
            let path = dir.join(stale);
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
        std::fs::create_dir_all(&dir).map_err(|source| DataError::Write { path: dir.clone(), source })?;
        write_atomically(&dir.join(SPEC), text.as_bytes())?;
    }
    loop {
        eprintln!("{prefix} {}", if mode == Mode::Resume { "resuming from its dump folder" } else { "started" });
        let started = Instant::now();
        let code = run_child(plan, cell, &dir, options, mode == Mode::Resume)?;
        let seconds = started.elapsed().as_secs_f64();
        let record = serde_json::to_vec_pretty(&RunRecord { exit_code: code, seconds }).unwrap_or_default();
        write_atomically(&dir.join(RUN), &record)?;
        let status = if mode == Mode::Resume { "resumed" } else { "ran" };
        if code == Some(interrupt::EXIT_CODE as i32) || interrupt::requested() {
            eprintln!("{prefix} interrupted after {seconds:.0} s; it continues from its dump folder next time");
            return Ok((Row::failed(&key, status, seconds, "interrupted".into()), true));
        }
        match (code, finished_report(&dir)) {
            (Some(0 | 1), Some(report)) => {
                let row = Row::from_report(&key, status, seconds, &report);
                eprintln!("{prefix} {}: {} in {seconds:.0} s", row.outcome, numbers(&row));
                return Ok((row, false));
            }
            _ if mode == Mode::Resume => {
                // A dump folder the main command cannot continue: start the cell over once.
                eprintln!("{prefix} could not resume (exit {}), starting over: {}", code.map_or("by signal".into(), |c| c.to_string()), last_lines(&dir.join(LOG), 1));
                mode = Mode::Fresh;
            }
            _ => {
                let error = format!("exit {}: {}", code.map_or("by signal".into(), |c| c.to_string()), last_lines(&dir.join(LOG), 5));
                eprintln!("{prefix} FAILED in {seconds:.0} s ({error}); log: {}", dir.join(LOG).display());
                return Ok((Row::failed(&key, status, seconds, error), false));
            }
        }
    }
}

/// `97.12% → 97.80% (repair 31.2%, break 1.1%)`.
fn numbers(row: &Row) -> String {
    let p = |v: f64| if v.is_finite() { format!("{:.2}%", 100.0 * v) } else { "n/a".into() };
    let q = |v: f64| if v.is_finite() { format!("{:.1}%", 100.0 * v) } else { "n/a".into() };
    format!("{} → {} (repair {}, break {})", p(row.accuracy_before), p(row.accuracy_after), q(row.repair_rate), q(row.break_rate))
}

/// Runs the main command on one cell, its output in log.txt; the exit code (None: a signal).
/// A stop asked of the bench (SIGTERM) is passed on to the child, which stops between steps.
fn run_child(plan: &Plan, cell: &Cell, dir: &Path, options: &BenchOptions, resume: bool) -> Result<Option<i32>, Error> {
    let log_path = dir.join(LOG);
    let log = std::fs::File::create(&log_path).map_err(|source| DataError::Write { path: log_path.clone(), source })?;
    let log_err = log.try_clone().map_err(|source| DataError::Write { path: log_path.clone(), source })?;
    let dump = dir.join(DUMP);
    let mut command = Command::new(&options.exe);
    command.arg(&plan.subjects[cell.subject].model).arg(dir.join(OUTPUT)).arg("--spec").arg(dir.join(SPEC));
    command.arg("--dump-dir").arg(&dump).arg("--report-dir").arg(dir.join(REPORT)).arg("--force");
    if resume {
        command.arg("--resume").arg(&dump);
    }
    if let Some(threads) = options.threads {
        command.arg("--threads").arg(threads.to_string());
    }
    if let Some(limit) = plan.profile.limit {
        command.arg("--limit").arg(limit.to_string());
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| Error::Mismatch(format!("cannot start `{}` for cell {}: {e}", options.exe.display(), plan.cell_name(cell))))?;
    let mut passed_on = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) => {}
            Err(e) => return Err(Error::Mismatch(format!("waiting for cell {}: {e}", plan.cell_name(cell)))),
        }
        if interrupt::requested() && !passed_on {
            // Ctrl-C reaches the child through the process group already; SIGTERM sent to the
            // bench alone does not. A second SIGTERM is harmless: the child stops at once.
            // SAFETY: kill(2) on the pid of our own, not yet reaped child.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            passed_on = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` non-empty lines of a log, joined by ` | `.
fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return "no output".into();
    }
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// results.csv, results.md and plots/*.svg, each written atomically; returns their paths.
fn write_results(plan: &Plan, out: &Path, rows: &[Row]) -> Result<Vec<String>, Error> {
    let mut written = Vec::new();
    let mut write = |path: PathBuf, text: &str| -> Result<(), Error> {
        write_atomically(&path, text.as_bytes())?;
        written.push(path.display().to_string());
        Ok(())
    };
    write(out.join("results.csv"), &results::csv(rows))?;
    let title = format!("Bench {} (profile {})", plan.file.display(), plan.profile.name);
    write(out.join("results.md"), &results::markdown(rows, &title))?;
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|source| DataError::Write { path: plots.clone(), source })?;
    for ((subject, scenario), methods) in results::groups(rows) {
        let (accuracy, rates) = plot::charts(&subject, &scenario, &methods);
        write(plots.join(format!("{subject}-{scenario}-accuracy.svg")), &accuracy)?;
        write(plots.join(format!("{subject}-{scenario}-rates.svg")), &rates)?;
    }
    Ok(written)
}

impl fmt::Display for BenchReport {
    /// The summary: results.md's tables, then the failed cells and where the files are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let skipped = self.rows.iter().filter(|r| r.status == "skipped").count();
        write!(f, "{}", results::markdown(&self.rows, &format!("Bench {} (profile {})", self.bench, self.profile)))?;
        writeln!(f)?;
        writeln!(f, "{} cells: {} finished ({skipped} skipped as finished earlier), {} failed", self.rows.len(), self.rows.len() - self.failed.len(), self.failed.len())?;
        for cell in &self.failed {
            writeln!(f, "failed: {cell} (see its log.txt)")?;
        }
        write!(f, "results in {}", self.out)
    }
}
