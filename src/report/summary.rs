//! The report's human content as format-neutral sections (lines and tables), so that report.md
//! and report.html say the same thing: markdown.rs and html.rs only render these.
//!
//! Every `Option` of [`Report`] may be `None` (a run stopped early) and every number may be NaN
//! (an accuracy over an empty set): each section then says what is missing instead of failing.

use super::{GateCheck, GateOutcome, Latency, OrtMeasures, Report, StageTime, Validation};
use crate::baselines::MethodReport;
use crate::search::SearchReport;

/// A piece of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Inline {
    Text(String),
    /// A path, tensor name or genotype: shown verbatim in monospace.
    Code(String),
    Strong(String),
}

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Code(String),
    /// A pass/fail verdict, rendered with a mark so a failure stands out.
    Verdict(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// Where a section sits, so html.rs can place its charts beside the matching text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionId {
    Repair,
    Accuracy,
    Validation,
    Gate,
    Stages,
    Versions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub id: SectionId,
    pub title: &'static str,
    pub lines: Vec<Vec<Inline>>,
    pub table: Option<Table>,
}

/// The headline: `PASSED`, `GATE FAILED` or `stopped after <stage>`.
pub fn headline(report: &Report) -> String {
    match report.outcome.as_str() {
        "passed" => "PASSED".to_string(),
        "gate_failed" => "GATE FAILED".to_string(),
        other => match other.strip_prefix("stopped_after_") {
            Some(stage) => format!("stopped after {}", stage.replace('_', " ")),
            None => other.replace('_', " "),
        },
    }
}

/// The lines under the title: input → output model and the exit code.
pub fn overview(report: &Report) -> Vec<Vec<Inline>> {
    let output = match &report.output_model {
        Some(path) => Inline::Code(path.clone()),
        None => Inline::Text("no output model (the run stopped before export)".into()),
    };
    vec![
        vec![Inline::Code(report.input_model.clone()), Inline::Text(" → ".into()), output],
        vec![Inline::Text(format!("Exit code {}, outcome ", report.exit_code)), Inline::Code(report.outcome.clone())],
    ]
}

/// Every section, in reading order.
pub fn sections(report: &Report) -> Vec<Section> {
    vec![
        repair(report),
        accuracy(report.measured.as_ref()),
        gate(report.gate.as_ref()),
        validation(report.validation.as_ref()),
        stages(&report.stages),
        versions(report),
    ]
}

/// `91.32%`; `n/a` for NaN (a share of an empty set).
pub fn percent(fraction: f64) -> String {
    if fraction.is_finite() {
        format!("{:.2}%", fraction * 100.0)
    } else {
        "n/a".into()
    }
}

/// A change of a share in percentage points, signed: `+0.54 pp`.
pub fn points(delta: f64) -> String {
    if delta.is_finite() {
        format!("{:+.2} pp", delta * 100.0)
    } else {
        "n/a".into()
    }
}

/// Any other number with `decimals` places; `n/a` when not finite.
pub fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".into()
    }
}

/// A gate threshold or value in the unit of its key: the latency ratio as `1.21×`, accuracy
/// changes in percentage points, every other key (accuracies, rates) in percent.
pub fn gate_value(check: &GateCheck, value: f64) -> String {
    if check.key.contains("latency") {
        format!("{}×", number(value, 2))
    } else if check.key.contains("delta") {
        points(value)
    } else {
        percent(value)
    }
}

fn text(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}

fn cells(texts: &[String]) -> Vec<Cell> {
    texts.iter().cloned().map(Cell::Text).collect()
}

fn repair(report: &Report) -> Section {
    let mut lines = match (&report.repair, &report.baseline) {
        (Some(r), _) => repair_lines(r),
        (None, Some(b)) => baseline_lines(b),
        (None, None) => vec![vec![text("No repair: the run stopped before the search.")]],
    };
    if let Some(top) = report.ranking.iter().min_by_key(|s| s.rank) {
        lines.push(vec![text(format!(
            "Localization ranked {} blocks; most suspicious: block {} (score {}).",
            report.ranking.len(),
            top.block,
            number(top.score, 4)
        ))]);
    }
    Section { id: SectionId::Repair, title: "Repair", lines, table: None }
}

fn repair_lines(r: &SearchReport) -> Vec<Vec<Inline>> {
    let t = &r.target;
    let how = chosen_how(&r.chosen_by);
    let (unit, part) = match (&t.layer, t.keeps_shortcut) {
        (Some(node), _) => (format!("Layer {} `{node}`", t.block), "the layer"),
        (None, true) => (format!("Block {}", t.block), "its residual branch (shortcut kept)"),
        (None, false) => (format!("Block {}", t.block), "the whole block"),
    };
    vec![
        vec![Inline::Strong(unit), text(format!(" ({how}): the cell replaces {part}, computing ")), Inline::Code(t.tensor.clone())],
        vec![text("Genotype: "), Inline::Code(r.genotype_text.clone())],
        vec![text(format!(
            "Repair data: {} failures (D_fail), {} training images; {} search epochs, {} training epochs.",
            r.repair_data.failures,
            r.repair_data.training_images,
            r.search.len(),
            r.train.len()
        ))],
        vec![text(format!(
            "Kept: {} epoch {}, held-out accuracy {} (subject: {}).",
            r.kept.phase,
            r.kept.epoch,
            percent(r.kept.holdout_accuracy),
            percent(r.kept.holdout_accuracy_before)
        ))],
    ]
}

/// `given in the spec`, or `chosen by <method> localization`.
fn chosen_how(chosen_by: &str) -> String {
    match chosen_by {
        "given" => "given in the spec".to_string(),
        "last" => "the last one, by `search.block: last`".to_string(),
        random if random.starts_with("random") => format!("drawn at {random} by `search.block: random`"),
        other => {
            let method = other.strip_prefix("localize (").and_then(|m| m.strip_suffix(')')).unwrap_or(other);
            format!("chosen by {method} localization")
        }
    }
}

fn baseline_lines(b: &MethodReport) -> Vec<Vec<Inline>> {
    let mut lines = vec![vec![Inline::Strong(format!("Method {}", b.method)), text(": a weight-only baseline; the architecture is unchanged (the rewritten initializers are listed in out.onnx's `archrepair.repair` metadata).")]];
    match &b.chosen {
        Some(c) => match &c.layer {
            Some(layer) => lines.push(vec![text("Layer "), Inline::Code(layer.clone()), text(format!(" ({}).", chosen_how(&c.chosen_by)))]),
            None => lines.push(vec![Inline::Strong(format!("Block {}", c.block)), text(format!(" ({}).", chosen_how(&c.chosen_by)))]),
        },
        None => {}
    }
    lines.push(vec![text(format!("Repair data: {} failures (D_fail), {} training images.", b.repair_data.failures, b.repair_data.training_images))]);
    lines.push(vec![text(format!("Held-out accuracy {} (subject: {}).", percent(b.holdout_accuracy_after), percent(b.holdout_accuracy_before)))]);
    lines
}

fn accuracy(measured: Option<&OrtMeasures>) -> Section {
    let Some(m) = measured else {
        let lines = vec![vec![text("Not measured: the run stopped before onnxruntime ran the repaired model.")]];
        return Section { id: SectionId::Accuracy, title: "Accuracy (onnxruntime)", lines, table: None };
    };
    let e = &m.evaluation;
    let rest = e.evaluated.saturating_sub(e.failures);
    let share = |label: String, before: f64, after: f64| cells(&[label, percent(before), percent(after), points(after - before)]);
    let mut rows = vec![
        share(format!("Evaluation split minus D_fail ({rest} images)"), e.accuracy_before, e.accuracy_after),
        share(format!("Whole evaluation split ({} images, D_fail included)", e.evaluated), e.full_accuracy_before, e.full_accuracy_after),
        cells(&[format!("Repair rate (D_fail now right, of {})", e.failures), "—".into(), percent(e.repair_rate), "—".into()]),
        cells(&[format!("Break rate (newly wrong, of {} right before)", e.previously_correct), "—".into(), percent(e.break_rate), "—".into()]),
    ];
    rows.extend(m.sets.iter().map(|s| share(format!("{} ({} images)", s.name, s.evaluated), s.before, s.after)));
    rows.push(latency_row(&m.latency));
    let lines = vec![vec![text("Both models run by onnxruntime on the same images; the change is after − before.")]];
    let table = Table { head: vec!["Measure", "Before", "After", "Change"], rows };
    Section { id: SectionId::Accuracy, title: "Accuracy (onnxruntime)", lines, table: Some(table) }
}

fn latency_row(l: &Latency) -> Vec<Cell> {
    cells(&[
        format!("Latency, ms/image (batch {}, {} images)", l.batch, l.images),
        number(l.before_ms, 3),
        number(l.after_ms, 3),
        format!("{}×", number(l.ratio, 2)),
    ])
}

fn validation(v: Option<&Validation>) -> Section {
    let Some(v) = v else {
        let lines = vec![vec![text("Not validated: the run stopped before export.")]];
        return Section { id: SectionId::Validation, title: "Validation", lines, table: None };
    };
    let runtime = |name: &str, diff: f64| {
        vec![Cell::Text(name.into()), Cell::Text(format!("{diff:.2e}")), Cell::Text(format!("{:.2e}", v.tolerance)), Cell::Verdict(diff <= v.tolerance)]
    };
    let lines = vec![
        vec![text(format!("The exported model against the model it was exported from, on {} samples: largest absolute difference of the outputs.", v.samples))],
        vec![text(format!("Structural checks: {}.", if v.passed { "passed" } else { "FAILED" }))],
    ];
    let table = Table {
        head: vec!["Runtime", "Max abs diff", "Tolerance", "Result"],
        rows: vec![runtime("onnxruntime", v.onnxruntime_max_abs_diff), runtime("tract", v.tract_max_abs_diff)],
    };
    Section { id: SectionId::Validation, title: "Validation", lines, table: Some(table) }
}

fn gate(g: Option<&GateOutcome>) -> Section {
    let title = "Gate";
    let Some(g) = g else {
        let lines = vec![vec![text("No gate: the run stopped before measuring.")]];
        return Section { id: SectionId::Gate, title, lines, table: None };
    };
    if g.checks.is_empty() {
        let lines = vec![vec![text("The spec sets no gate thresholds: nothing to check.")]];
        return Section { id: SectionId::Gate, title, lines, table: None };
    }
    let failed = g.checks.iter().filter(|c| !c.passed).count();
    let verdict = if g.passed { "Every check passed.".to_string() } else { format!("{failed} of {} checks failed.", g.checks.len()) };
    let rows = g
        .checks
        .iter()
        .map(|c| {
            vec![
                Cell::Code(c.key.clone()),
                Cell::Text(c.comparison.clone()),
                Cell::Text(gate_value(c, c.threshold)),
                Cell::Text(gate_value(c, c.value)),
                Cell::Verdict(c.passed),
            ]
        })
        .collect();
    let table = Table { head: vec!["Key", "Comparison", "Threshold", "Value", "Result"], rows };
    Section { id: SectionId::Gate, title, lines: vec![vec![Inline::Strong(verdict)]], table: Some(table) }
}

fn stages(stages: &[StageTime]) -> Section {
    let title = "Stage timings";
    if stages.is_empty() {
        return Section { id: SectionId::Stages, title, lines: vec![vec![text("No stage finished.")]], table: None };
    }
    let mut rows: Vec<Vec<Cell>> = stages.iter().map(|s| cells(&[s.stage.clone(), number(s.seconds, 2)])).collect();
    let total: f64 = stages.iter().map(|s| s.seconds).filter(|s| s.is_finite()).sum();
    rows.push(cells(&["total".into(), number(total, 2)]));
    Section { id: SectionId::Stages, title, lines: Vec::new(), table: Some(Table { head: vec!["Stage", "Seconds"], rows }) }
}

fn versions(report: &Report) -> Section {
    let v = &report.versions;
    let rows = [("archrepair-onnx", &v.archrepair_onnx), ("onnxruntime", &v.onnxruntime), ("tract", &v.tract), ("libtorch", &v.libtorch)]
        .iter()
        .map(|(name, version)| cells(&[name.to_string(), version.to_string()]))
        .collect();
    let lines = vec![vec![text(format!("Seed {}.", report.seed))]];
    Section { id: SectionId::Versions, title: "Versions", lines, table: Some(Table { head: vec!["Component", "Version"], rows }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_with_two_decimals_and_survive_nan() {
        assert_eq!(percent(0.91325), "91.33%");
        assert_eq!(percent(f64::NAN), "n/a");
        assert_eq!(points(-0.0165), "-1.65 pp");
        assert_eq!(points(0.0054), "+0.54 pp");
        assert_eq!(number(f64::INFINITY, 2), "n/a");
    }

    #[test]
    fn headline_names_each_outcome() {
        let mut report = crate::report::testing::sample_report();
        assert_eq!(headline(&report), "GATE FAILED");
        report.outcome = "passed".into();
        assert_eq!(headline(&report), "PASSED");
        report.outcome = "stopped_after_localize".into();
        assert_eq!(headline(&report), "stopped after localize");
    }
}
