//! report.md: the summary as GitHub-flavoured markdown, short enough for a CI job summary
//! (e.g. appended to `$GITHUB_STEP_SUMMARY`). The content comes from summary.rs, shared with
//! report.html.

use super::summary::{self, Cell, Inline, Section, Table};
use super::Report;

/// The whole report.md.
pub fn markdown(report: &Report) -> String {
    let mut out = format!("# ArchRepair: {}\n\n", summary::headline(report));
    for line in summary::overview(report) {
        out.push_str(&inlines(&line));
        out.push_str("  \n");
    }
    for section in summary::sections(report) {
        out.push('\n');
        out.push_str(&render_section(&section));
    }
    out
}

fn render_section(section: &Section) -> String {
    let mut out = format!("## {}\n\n", section.title);
    for line in &section.lines {
        out.push_str(&inlines(line));
        out.push_str("\n\n");
    }
    if let Some(table) = &section.table {
        out.push_str(&render_table(table));
    }
    out
}

fn render_table(table: &Table) -> String {
    let mut out = format!("| {} |\n", table.head.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(table.head.len())));
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(cell).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn cell(c: &Cell) -> String {
    match c {
        Cell::Text(s) => escape(s),
        // GFM splits table cells at `|` even inside code spans.
        Cell::Code(s) => code(s).replace('|', "\\|"),
        Cell::Verdict(true) => "✅ pass".into(),
        Cell::Verdict(false) => "❌ **FAIL**".into(),
    }
}

fn inlines(line: &[Inline]) -> String {
    line.iter()
        .map(|i| match i {
            Inline::Text(s) => escape(s),
            Inline::Code(s) => code(s),
            Inline::Strong(s) => format!("**{}**", escape(s)),
        })
        .collect()
}

/// A code span that holds any text: the fence is one backtick longer than the longest run
/// inside, padded with spaces when the text touches a backtick (CommonMark's rule).
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    if longest > 0 {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// Backslash-escapes the characters markdown (and the HTML GitHub lets through) would
/// interpret, so a set name like `a_b*c` or a path with `<` shows as written.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        // `<` opens HTML only before a letter, `/`, `!` or `?`: `<=` stays as written.
        let opens_tag = c == '<' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'));
        if opens_tag || matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '&' | '|' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::sample_report;

    #[test]
    fn sample_markdown_states_outcome_numbers_and_the_failing_check() {
        let md = markdown(&sample_report());
        assert!(md.starts_with("# ArchRepair: GATE FAILED\n"), "{md}");
        for expected in [
            "`models/fashion_mnist_resnet14.onnx` → `out/fashion_mnist_resnet14.repaired.onnx`",
            "**Block 3** (chosen by spectrum localization)",
            "`n0 = sep_conv_3x3(in) + skip_connect(in) | n1 = dil_conv_3x3(n0) + sep_conv_3x3(in)`",
            "| Evaluation split minus D\\_fail (9000 images) | 91.32% | 91.86% | +0.54 pp |",
            "| Whole evaluation split (10000 images, D\\_fail included) | 82.19% | 90.12% | +7.93 pp |",
            "77.10%",
            "1.37%",
            "| contrast-3 (10000 images) | 70.18% | 68.53% | -1.65 pp |",
            "| Latency, ms/image (batch 64, 2048 images) | 0.412 | 0.497 | 1.21× |",
            "| onnxruntime | 3.80e-6 | 1.00e-4 | ✅ pass |",
            "| `gate.min_set_delta (contrast-3)` | >= | -1.00 pp | -1.65 pp | ❌ **FAIL** |",
            "| `gate.max_latency_ratio` | <= | 1.50× | 1.21× | ✅ pass |",
            "**1 of 6 checks failed.**",
            "| search | 96.25 |",
            "| total | 273.33 |",
            "| tract | 0.23.9 |",
            "Seed 7.",
        ] {
            assert!(md.contains(expected), "missing {expected:?} in\n{md}");
        }
    }

    #[test]
    fn a_run_stopped_early_renders_what_it_has() {
        let mut report = sample_report();
        report.repair = None;
        report.validation = None;
        report.measured = None;
        report.gate = None;
        report.output_model = None;
        report.stages.truncate(1);
        report.outcome = "stopped_after_localize".into();
        let md = markdown(&report);
        assert!(md.starts_with("# ArchRepair: stopped after localize\n"), "{md}");
        for expected in ["no output model", "No repair", "most suspicious: block", "Not measured", "Not validated", "No gate", "| load | 0.41 |"] {
            assert!(md.contains(expected), "missing {expected:?} in\n{md}");
        }
    }

    #[test]
    fn nan_accuracies_show_as_not_available() {
        let mut report = sample_report();
        if let Some(m) = report.measured.as_mut() {
            m.evaluation.repair_rate = f64::NAN;
            m.sets[0].after = f64::NAN;
        }
        let md = markdown(&report);
        assert!(md.contains("| gaussian\\_noise-3 (10000 images) | 62.41% | n/a | n/a |"), "{md}");
    }

    #[test]
    fn odd_text_is_escaped() {
        let mut report = sample_report();
        report.input_model = "models/<odd>&name.onnx".into();
        if let Some(m) = report.measured.as_mut() {
            m.sets[0].name = "a|b*c".into();
        }
        let md = markdown(&report);
        assert!(md.contains("`models/<odd>&name.onnx`"), "{md}");
        assert!(md.contains("| a\\|b\\*c (10000 images) |"), "{md}");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(escape("<b> <= 3"), "\\<b> <= 3");
    }
}
