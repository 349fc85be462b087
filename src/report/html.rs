//! report.html: one self-contained file (inline CSS and SVG, no script, no external URL) so
//! it can be archived as a CI artifact and opened anywhere, offline. The text is summary.rs's,
//! as in report.md; the charts (charts.rs) sit beside the section they illustrate.

use std::fmt::Write;

use super::charts;
use super::summary::{self, Cell, Inline, Section, SectionId, Table};
use super::svg::{escape, GREEN, ORANGE};
use super::Report;

/// The page's style; colours match the charts' palette.
fn style() -> String {
    format!(
        "body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#212529;max-width:1080px;margin:24px auto;padding:0 16px;line-height:1.45}}\
h1{{font-size:1.6em;margin:0 0 8px}}h2{{font-size:1.25em;border-bottom:1px solid #dee2e6;padding-bottom:4px;margin:24px 0 8px}}\
p{{margin:6px 0}}.columns{{display:flex;flex-wrap:wrap;column-gap:56px}}.columns section{{max-width:480px}}\
.badge{{display:inline-block;padding:2px 10px;border-radius:4px;color:white;font-size:.8em;vertical-align:middle}}\
.passed{{background:{GREEN}}}.gate_failed{{background:#c92a2a}}.stopped{{background:{ORANGE}}}\
code{{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;background:#f1f3f5;padding:1px 4px;border-radius:3px;overflow-wrap:anywhere}}\
table{{border-collapse:collapse;margin:8px 0}}th,td{{border:1px solid #dee2e6;padding:3px 10px;text-align:left}}\
th{{background:#f8f9fa;white-space:nowrap}}td.num{{text-align:right;font-variant-numeric:tabular-nums}}\
.pass,.fail{{font-weight:bold;white-space:nowrap}}.pass{{color:{GREEN}}}.fail{{color:#c92a2a}}\
.chart{{overflow-x:auto;margin:12px 0}}.chart svg{{display:block}}.note{{color:#555}}"
    )
}

/// The whole report.html.
pub fn html(report: &Report) -> String {
    let headline = summary::headline(report);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ArchRepair: {}</title>\n<style>{}</style>\n</head>\n<body>\n",
        escape(&headline),
        style()
    );
    let _ = writeln!(out, "<h1>ArchRepair report <span class=\"badge {}\">{}</span></h1>", badge_class(&report.outcome), escape(&headline));
    for line in summary::overview(report) {
        let _ = writeln!(out, "<p>{}</p>", inlines(&line));
    }
    let mut short = String::new();
    for section in summary::sections(report) {
        let body = render_section(&section) + &charts_for(section.id, report);
        if matches!(section.id, SectionId::Validation | SectionId::Stages | SectionId::Versions) {
            let _ = writeln!(short, "<section>\n{body}</section>");
        } else {
            let _ = writeln!(out, "<section>\n{body}</section>");
        }
    }
    // The short tables side by side: the whole page fits one tall screen.
    let _ = writeln!(out, "<div class=\"columns\">\n{short}</div>");
    out.push_str("</body>\n</html>\n");
    out
}

/// The CSS class of the outcome badge.
fn badge_class(outcome: &str) -> &'static str {
    match outcome {
        "passed" => "passed",
        "gate_failed" => "gate_failed",
        _ => "stopped",
    }
}

/// The charts that follow a section: suspiciousness and curves after Repair, the accuracy
/// bars after Accuracy. A missing chart is explained, not silently dropped.
fn charts_for(id: SectionId, report: &Report) -> String {
    match id {
        SectionId::Repair => {
            let ranking = charts::suspiciousness(report).map(chart).unwrap_or_else(|| {
                let why = match &report.repair {
                    Some(r) if r.chosen_by == "given" => format!("No localization ranking: {} was given in the spec.", r.target.describe()),
                    Some(r) if r.chosen_by == "last" || r.chosen_by.starts_with("random") => format!("No localization ranking: {} was chosen by `search.block` ({}).", r.target.describe(), r.chosen_by),
                    Some(r) if r.target.layer.is_some() => format!("The chart draws blocks; the layer ranking that chose {} is in the dump folder's localize.json.", r.target.describe()),
                    _ => "No localization ranking.".to_string(),
                };
                note(&why)
            });
            let curves = report.repair.as_ref().and_then(charts::curves).map(chart).unwrap_or_else(|| note("No search or training epochs to plot."));
            ranking + &curves
        }
        SectionId::Accuracy => report.measured.as_ref().map(|m| chart(charts::accuracy(m))).unwrap_or_default(),
        _ => String::new(),
    }
}

fn chart(svg: String) -> String {
    format!("<div class=\"chart\">\n{svg}</div>\n")
}

fn note(text: &str) -> String {
    format!("<p class=\"note\">{}</p>\n", escape(text))
}

fn render_section(section: &Section) -> String {
    let mut out = format!("<h2>{}</h2>\n", escape(section.title));
    for line in &section.lines {
        let _ = writeln!(out, "<p>{}</p>", inlines(line));
    }
    if let Some(table) = &section.table {
        out.push_str(&render_table(table));
    }
    out
}

fn render_table(table: &Table) -> String {
    let mut out = String::from("<table>\n<tr>");
    for head in &table.head {
        let _ = write!(out, "<th>{}</th>", escape(head));
    }
    out.push_str("</tr>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for (column, c) in row.iter().enumerate() {
            out.push_str(&cell(c, column));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// A table cell; columns after the first hold numbers and are right-aligned.
fn cell(c: &Cell, column: usize) -> String {
    let class = if column > 0 { " class=\"num\"" } else { "" };
    match c {
        Cell::Text(s) => format!("<td{class}>{}</td>", escape(s)),
        Cell::Code(s) => format!("<td><code>{}</code></td>", escape(s)),
        Cell::Verdict(true) => "<td class=\"pass\">✔ pass</td>".into(),
        Cell::Verdict(false) => "<td class=\"fail\">✘ FAIL</td>".into(),
    }
}

fn inlines(line: &[Inline]) -> String {
    line.iter()
        .map(|i| match i {
            Inline::Text(s) => escape(s),
            Inline::Code(s) => format!("<code>{}</code>", escape(s)),
            Inline::Strong(s) => format!("<strong>{}</strong>", escape(s)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::sample_report;

    const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

    #[test]
    fn sample_page_is_self_contained_with_three_charts() {
        let page = html(&sample_report());
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        assert_eq!(page.matches("<svg").count(), 3, "{page}");
        let without_namespace = page.replace(SVG_NAMESPACE, "");
        assert!(!without_namespace.contains("http://") && !without_namespace.contains("https://"), "{page}");
        for banned in ["<script", "<link", "<img", "<iframe", "url(", "@import"] {
            assert!(!page.to_lowercase().contains(banned), "{banned} in {page}");
        }
        for expected in ["GATE FAILED", "gate.min_set_delta (contrast-3)", "✘ FAIL", "91.86%", "+0.54 pp", "1.21×", "sep_conv_3x3(in)", "Seed 7."] {
            assert!(page.contains(expected), "missing {expected:?} in {page}");
        }
    }

    #[test]
    fn text_is_escaped() {
        let mut report = sample_report();
        report.input_model = "models/<odd>&name.onnx".into();
        if let Some(m) = report.measured.as_mut() {
            m.sets[0].name = "<b>bold</b>".into();
        }
        let page = html(&report);
        assert!(page.contains("models/&lt;odd&gt;&amp;name.onnx"), "{page}");
        assert!(!page.contains("<odd>") && !page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;b&gt;bold&lt;/b&gt;"), "{page}");
    }

    #[test]
    fn a_run_stopped_early_renders_without_charts_it_cannot_draw() {
        let mut report = sample_report();
        report.repair = None;
        report.validation = None;
        report.measured = None;
        report.gate = None;
        report.output_model = None;
        report.outcome = "stopped_after_localize".into();
        let page = html(&report);
        assert_eq!(page.matches("<svg").count(), 1, "only the ranking");
        assert!(page.contains("stopped after localize") && page.contains("No search or training epochs"), "{page}");
        report.ranking.clear();
        report.stages.clear();
        let page = html(&report);
        assert_eq!(page.matches("<svg").count(), 0);
        assert!(page.contains("No localization ranking."), "{page}");
    }

    #[test]
    fn a_given_block_is_explained_instead_of_the_ranking_chart() {
        let mut report = sample_report();
        report.ranking.clear();
        let repair = report.repair.as_mut().unwrap();
        repair.chosen_by = "given".into();
        let page = html(&report);
        assert!(page.contains("No localization ranking: block 3 residual branch (") && page.contains(") was given in the spec"), "{page}");
        assert_eq!(page.matches("<svg").count(), 2);
        // The ablation's choices, and a layer chosen by a layer ranking, say so too.
        report.repair.as_mut().unwrap().chosen_by = "random (seed 4)".into();
        assert!(html(&report).contains("was chosen by `search.block` (random (seed 4))"));
        let repair = report.repair.as_mut().unwrap();
        (repair.chosen_by, repair.target.layer) = ("localize (spectrum)".into(), Some("conv7".into()));
        let page = html(&report);
        assert!(page.contains("the layer ranking that chose layer 3 `conv7`") && page.contains("Layer 3 `conv7`"), "{page}");
    }
}
