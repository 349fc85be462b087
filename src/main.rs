//! The `archrepair-onnx` binary: parses arguments, calls one library function, prints.
//!
//! Exit codes: 0 success, 1 a check failed (gate), 2 usage, spec, model or data error.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use archrepair_onnx::commands::{bench, blocks, corrupt, demo, eval, inspect, localize, repair, search};

mod cli;
use cli::{Cli, Command, RepairArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = archrepair_onnx::interrupt::install() {
        eprintln!("warning: Ctrl-C and SIGTERM will end the run at once (cannot catch them: {e})");
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            // Several errors print their source inside their own message (`file: reason`);
            // a cause already shown in the line above is not repeated.
            let mut shown = e.to_string();
            for cause in e.chain().skip(1) {
                let line = cause.to_string();
                if !shown.contains(&line) {
                    eprintln!("  caused by: {line}");
                }
                shown = line;
            }
            let interrupted = e.chain().any(|c| matches!(c.downcast_ref::<archrepair_onnx::Error>(), Some(archrepair_onnx::Error::Interrupted)));
            ExitCode::from(if interrupted { archrepair_onnx::interrupt::EXIT_CODE } else { 2 })
        }
    }
}

/// Prints a report as text or JSON. A closed stdout (`| head`) ends the output quietly.
fn emit(report: &(impl std::fmt::Display + serde::Serialize), json: bool) -> anyhow::Result<()> {
    let text = if json { serde_json::to_string_pretty(report)? } else { report.to_string() };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Some(command) = cli.command else { return run_repair(cli.repair) };
    match command {
        Command::Inspect { model, json } => {
            let report = inspect::inspect(&model)?;
            emit(&report, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Blocks { model, json } => {
            let report = blocks::blocks(&model)?;
            emit(&report, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { model, data, limit, batch, threads, tolerance, corruptions, suite, json } => {
            archrepair_onnx::validate::ort_runner::init_onnxruntime()?;
            let (data, spec) = data.into_parts()?;
            let corruptions = corruptions.map(|list| suite.options(list));
            let progress = std::io::stderr().is_terminal();
            let options = eval::EvalOptions { data, input: spec.input, limit, batch, threads, progress, corruptions };
            let report = eval::evaluate(&model, &options).with_context(|| format!("evaluating `{}`", model.display()))?;
            emit(&report, json)?;
            if report.max_abs_output_diff > tolerance {
                eprintln!(
                    "check failed: onnxruntime and the lowered graph differ by {:.3e} > --tolerance {tolerance:e}",
                    report.max_abs_output_diff
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Corrupt { data, out, corruptions, suite, limit, force, json } => {
            let options = corrupt::CorruptOptions {
                data: data.source(None)?,
                out,
                suite: suite.options(corruptions),
                limit,
                force,
                progress: std::io::stderr().is_terminal(),
            };
            let report = corrupt::corrupt_dataset(&options).with_context(|| format!("corrupting `{}`", options.data.path.display()))?;
            emit(&report, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Localize { model, data, settings, limit, out, force, threads, json } => {
            let (data, spec) = data.into_parts()?;
            let options = localize::LocalizeOptions {
                data,
                spec: settings.apply(spec),
                limit,
                out: out.unwrap_or_else(|| localize::default_out(&model)),
                force,
                threads,
                progress: std::io::stderr().is_terminal(),
            };
            let ranking = localize::localize(&model, &options).with_context(|| format!("localizing in `{}`", model.display()))?;
            emit(&ranking, json)?;
            let files: Vec<String> = localize::FILES.iter().map(|f| options.out.join(f).display().to_string()).collect();
            eprintln!("wrote {}", files.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { out, data, limit, stop_after, resume, force, threads, json } => {
            archrepair_onnx::validate::ort_runner::init_onnxruntime()?;
            let options = demo::DemoOptions { dir: out, data, limit, stop_after, resume, force, threads, progress: std::io::stderr().is_terminal() };
            let (subject, options) = demo::prepare(&options).context("preparing the demo")?;
            finish_repair(&subject, &options, "--resume", json)
        }
        Command::Bench { spec, out, quick, force, threads, json } => {
            let exe = std::env::current_exe().context("finding this binary, which runs every cell")?;
            let out = out.unwrap_or_else(|| archrepair_onnx::commands::default_out(&spec, "bench"));
            let options = bench::BenchOptions { spec, out, quick, force, threads, exe };
            let report = bench::bench(&options).context("running the bench")?;
            emit(&report, json)?;
            if !report.failed.is_empty() {
                eprintln!("{} of {} cells produced no report: {}", report.failed.len(), report.rows.len(), report.failed.join(", "));
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Command::Search { model, data, settings, train_data, limit, out, force, resume, threads, json } => {
            let (data, spec) = data.into_parts()?;
            let train = train_data.map(|path| archrepair_onnx::data::DataSource { path, split: archrepair_onnx::data::Split::Train, ..archrepair_onnx::data::DataSource::new("") });
            let options = search::SearchOptions {
                data,
                train,
                spec: settings.apply(spec),
                limit,
                out: out.unwrap_or_else(|| search::default_out(&model)),
                force,
                resume,
                threads,
                progress: std::io::stderr().is_terminal(),
            };
            let report = search::search(&model, &options).with_context(|| format!("searching a repair of `{}`", model.display()))?;
            emit(&report, json)?;
            let files: Vec<String> = search::FILES.iter().map(|f| options.out.join(f).display().to_string()).collect();
            eprintln!("wrote {}", files.join(", "));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `archrepair-onnx in.onnx out.onnx --spec repair.yaml`.
fn run_repair(args: RepairArgs) -> anyhow::Result<ExitCode> {
    let (Some(input), Some(output)) = (args.input, args.output) else {
        anyhow::bail!("usage: archrepair-onnx <IN.onnx> <OUT.onnx> --spec <repair.yaml> (or a subcommand; see --help)");
    };
    if args.data.spec.is_none() {
        anyhow::bail!("no spec: pass --spec <repair.yaml> (docs/spec.md; fixtures/specs/ has examples)");
    }
    archrepair_onnx::validate::ort_runner::init_onnxruntime()?;
    let (data, spec) = args.data.into_parts()?;
    let mut spec = args.settings.apply(spec);
    spec.threads = args.threads.unwrap_or(spec.threads);
    spec.method = args.method.unwrap_or(spec.method);
    let train = args.train_data.map(|path| archrepair_onnx::data::DataSource { path, split: archrepair_onnx::data::Split::Train, ..archrepair_onnx::data::DataSource::new("") });
    let stem = output.file_stem().map_or("out".into(), |s| s.to_string_lossy().into_owned());
    let report_dir = args.report_dir.or_else(|| spec.report.dir.clone()).unwrap_or_else(|| repair::default_report_dir(&output));
    let dump_dir = match (args.resume.clone(), args.dump_dir) {
        (Some(resume), Some(dump)) if resume != dump => anyhow::bail!("--resume {} and --dump-dir {} name different folders; --resume DIR is the dump folder to continue", resume.display(), dump.display()),
        (resume, dump) => resume.or(dump).unwrap_or_else(|| output.with_file_name(format!("{stem}-dump"))),
    };
    let options = repair::RepairOptions {
        search: search::SearchOptions {
            data,
            train,
            threads: spec.threads,
            spec,
            limit: args.limit,
            out: dump_dir,
            force: args.force,
            resume: args.resume.is_some(),
            progress: std::io::stderr().is_terminal(),
        },
        output,
        report_dir,
        stop_after: args.stop_after,
    };
    let resume = format!("--resume {}", options.search.out.display());
    finish_repair(&input, &options, &resume, args.json)
}

/// Runs the main command and prints the summary (or report.json) and where the files went;
/// `resume`: the flag that continues a stopped run.
fn finish_repair(input: &std::path::Path, options: &repair::RepairOptions, resume: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (report, written) = repair::repair(input, options).with_context(|| format!("repairing `{}`", input.display()))?;
    emit(&report, json)?;
    let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    if report.output_model.is_none() {
        eprintln!(
            "{}: the stages' artifacts are in {}, the report in {}; continue with the same command and {resume} instead of --stop-after",
            report.outcome.replace('_', " "),
            options.search.out.display(),
            files.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("wrote {} and {}", options.output.display(), files.join(", "));
    if report.exit_code != 0 {
        eprintln!("gate failed: see the Gate section of the report; {} is written and marked `archrepair.gate: failed`", options.output.display());
    }
    Ok(ExitCode::from(report.exit_code as u8))
}
