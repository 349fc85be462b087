//! The bench's results: one [`Row`] per cell read from its report.json (onnxruntime's
//! before/after, stage timings, latency), written as results.csv (every number, one row per
//! cell) and results.md (mean ± std over seeds, methods side by side, a table per subject ×
//! scenario).
//!
//! report.json is read as untyped JSON: a cell of another method may carry sections this
//! build does not know, and a NaN share is `null`; every missing number becomes NaN, which the
//! CSV writes as an empty field and the Markdown as `n/a`.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

/// One cell's numbers. Fractions for accuracies and rates, seconds for times.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub subject: String,
    pub scenario: String,
    pub method: String,
    pub seed: u64,
    /// `passed`, `gate_failed`, or `failed` (no report).
    pub outcome: String,
    /// `ran`, `resumed` or `skipped` (finished by an earlier bench run).
    pub status: String,
    /// What the method changed, when it localizes: `block <id>` or `layer <id>` (ids as
    /// `archrepair-onnx blocks` lists them); empty otherwise.
    pub repaired: String,
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    pub repair_rate: f64,
    pub break_rate: f64,
    /// Mean over the `evaluate` sets other than `clean` (scenario 2: the other corruptions).
    pub corruption_accuracy_before: f64,
    pub corruption_accuracy_after: f64,
    /// The `clean` set (scenario 2).
    pub clean_accuracy_before: f64,
    pub clean_accuracy_after: f64,
    /// Every `evaluate` set: name, before, after.
    pub sets: Vec<(String, f64, f64)>,
    pub seconds: Seconds,
    /// Wall-clock seconds of the cell's process in this bench run (NaN when skipped).
    pub wall_seconds: f64,
    pub latency_before_ms: f64,
    pub latency_after_ms: f64,
    /// The last lines of a failed cell's log.
    pub error: Option<String>,
}

/// Seconds per stage; `search` also counts a weight-only baseline's `repair` stage (its whole
/// fit); `total` is every stage's sum.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Seconds {
    pub localize: f64,
    pub collect: f64,
    pub search: f64,
    pub train: f64,
    pub export: f64,
    pub validate: f64,
    pub measure: f64,
    pub total: f64,
}

/// Where a row belongs in the grid.
#[derive(Debug, Clone)]
pub struct CellKey {
    pub subject: String,
    pub scenario: String,
    pub method: String,
    pub seed: u64,
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

impl Row {
    /// A row without numbers: the cell produced no report.
    pub fn failed(key: &CellKey, status: &str, wall_seconds: f64, error: String) -> Row {
        let mut row = Row::from_report(key, status, wall_seconds, &Value::Null);
        row.outcome = "failed".into();
        row.error = Some(error);
        row
    }

    /// The row of a cell from its report.json.
    pub fn from_report(key: &CellKey, status: &str, wall_seconds: f64, report: &Value) -> Row {
        let measured = &report["measured"];
        let e = &measured["evaluation"];
        let sets: Vec<(String, f64, f64)> = measured["sets"]
            .as_array()
            .map(|sets| sets.iter().map(|s| (s["name"].as_str().unwrap_or("?").to_string(), number(&s["before"]), number(&s["after"]))).collect())
            .unwrap_or_default();
        let corrupted: Vec<&(String, f64, f64)> = sets.iter().filter(|s| s.0 != "clean").collect();
        let mean_of = |pick: fn(&(String, f64, f64)) -> f64| if corrupted.is_empty() { f64::NAN } else { corrupted.iter().map(|s| pick(s)).sum::<f64>() / corrupted.len() as f64 };
        let clean = sets.iter().find(|s| s.0 == "clean");
        // ArchRepair's target, or the unit a weight-only baseline localized.
        let unit = [&report["repair"]["target"], &report["baseline"]["chosen"]].into_iter().find(|u| u["block"].is_u64());
        let repaired = unit.map_or(String::new(), |u| format!("{} {}", if u["layer"].is_string() { "layer" } else { "block" }, u["block"]));
        let mut seconds = Seconds::default();
        for stage in report["stages"].as_array().into_iter().flatten() {
            let t = stage["seconds"].as_f64().unwrap_or(0.0);
            seconds.total += t;
            match stage["stage"].as_str().unwrap_or("") {
                "localize" => seconds.localize += t,
                "collect" => seconds.collect += t,
                "search" | "repair" => seconds.search += t,
                "train" => seconds.train += t,
                "export" => seconds.export += t,
                "validate" => seconds.validate += t,
                "measure" => seconds.measure += t,
                _ => {}
            }
        }
        Row {
            subject: key.subject.clone(),
            scenario: key.scenario.clone(),
            method: key.method.clone(),
            seed: key.seed,
            outcome: report["outcome"].as_str().unwrap_or("failed").to_string(),
            status: status.to_string(),
            repaired,
            accuracy_before: number(&e["accuracy_before"]),
            accuracy_after: number(&e["accuracy_after"]),
            repair_rate: number(&e["repair_rate"]),
            break_rate: number(&e["break_rate"]),
            corruption_accuracy_before: mean_of(|s| s.1),
            corruption_accuracy_after: mean_of(|s| s.2),
            clean_accuracy_before: clean.map_or(f64::NAN, |s| s.1),
            clean_accuracy_after: clean.map_or(f64::NAN, |s| s.2),
            sets,
            seconds,
            wall_seconds,
            latency_before_ms: number(&measured["latency"]["before_ms"]),
            latency_after_ms: number(&measured["latency"]["after_ms"]),
            error: None,
        }
    }

    /// Whether the cell produced a report (passed or gate failed).
    pub fn finished(&self) -> bool {
        self.outcome != "failed"
    }
}

/// Mean and sample standard deviation (n − 1) of the finite values; `std` is `None` for fewer
/// than two values, `mean` is NaN for none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

pub fn stat(values: impl IntoIterator<Item = f64>) -> Stat {
    let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    let n = values.len();
    if n == 0 {
        return Stat { mean: f64::NAN, std: None, n };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    Stat { mean, std, n }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote, line break or edge space;
/// quotes doubled.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A number for the CSV: empty when NaN.
fn csv_number(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        String::new()
    }
}

/// The `evaluate` set names of all rows, in first-seen order (the per-set columns).
fn set_names(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        for (name, _, _) in &row.sets {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// results.csv: a header, then one line per row.
pub fn csv(rows: &[Row]) -> String {
    let sets = set_names(rows);
    let mut header: Vec<String> = [
        "subject", "scenario", "method", "seed", "outcome", "status", "repaired", "accuracy_before", "accuracy_after", "repair_rate", "break_rate",
        "corruption_accuracy_before", "corruption_accuracy_after", "clean_accuracy_before", "clean_accuracy_after",
    ]
    .map(String::from)
    .to_vec();
    for name in &sets {
        header.push(format!("{name}_before"));
        header.push(format!("{name}_after"));
    }
    header.extend(["localize_s", "collect_s", "search_s", "train_s", "export_s", "validate_s", "measure_s", "total_s", "wall_s", "latency_before_ms", "latency_after_ms", "error"].map(String::from));
    let mut out = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        let mut fields: Vec<String> = vec![r.subject.clone(), r.scenario.clone(), r.method.clone(), r.seed.to_string(), r.outcome.clone(), r.status.clone(), r.repaired.clone()];
        for v in [r.accuracy_before, r.accuracy_after, r.repair_rate, r.break_rate, r.corruption_accuracy_before, r.corruption_accuracy_after, r.clean_accuracy_before, r.clean_accuracy_after] {
            fields.push(csv_number(v, 6));
        }
        for name in &sets {
            let set = r.sets.iter().find(|s| &s.0 == name);
            fields.push(csv_number(set.map_or(f64::NAN, |s| s.1), 6));
            fields.push(csv_number(set.map_or(f64::NAN, |s| s.2), 6));
        }
        let s = &r.seconds;
        for v in [s.localize, s.collect, s.search, s.train, s.export, s.validate, s.measure, s.total, r.wall_seconds] {
            fields.push(csv_number(v, 3));
        }
        fields.push(csv_number(r.latency_before_ms, 4));
        fields.push(csv_number(r.latency_after_ms, 4));
        fields.push(r.error.clone().unwrap_or_default());
        out += &(fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",") + "\n");
    }
    out
}

/// A fraction as `mean ± std` in percent (two decimals); `n/a` without values.
pub fn percent(s: &Stat) -> String {
    match (s.n, s.std) {
        (0, _) => "n/a".into(),
        (_, Some(std)) => format!("{:.2} ± {:.2}%", 100.0 * s.mean, 100.0 * std),
        (_, None) => format!("{:.2}%", 100.0 * s.mean),
    }
}

fn md_text(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The rows of one subject × scenario, grouped by method in first-seen order.
pub fn groups(rows: &[Row]) -> Vec<((String, String), Vec<(String, Vec<&Row>)>)> {
    let mut out: Vec<((String, String), Vec<(String, Vec<&Row>)>)> = Vec::new();
    for row in rows {
        let key = (row.subject.clone(), row.scenario.clone());
        let at = match out.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                out.push((key, Vec::new()));
                out.len() - 1
            }
        };
        let methods = &mut out[at].1;
        match methods.iter_mut().find(|(m, _)| *m == row.method) {
            Some((_, list)) => list.push(row),
            None => methods.push((row.method.clone(), vec![row])),
        }
    }
    out
}

/// results.md: per subject × scenario, one row per method with mean ± std over its seeds.
pub fn markdown(rows: &[Row], title: &str) -> String {
    let mut out = format!("# {}\n\nMean ± standard deviation over seeds (sample std, n − 1); accuracies by onnxruntime on the evaluation split minus D_fail. `seeds` counts the cells that finished.\n", md_text(title));
    for ((subject, scenario), methods) in groups(rows) {
        let corruption = methods.iter().flat_map(|(_, r)| r.iter()).any(|r| r.clean_accuracy_after.is_finite() || r.corruption_accuracy_after.is_finite());
        let _ = write!(out, "\n## {} / {}\n\n| method | seeds | repaired | accuracy before | accuracy after | repair rate | break rate |", md_text(&subject), md_text(&scenario));
        if corruption {
            out += " other corruptions after | clean after |";
        }
        out += " total s |\n|---|---|---|---|---|---|---|";
        if corruption {
            out += "---|---|";
        }
        out += "---|\n";
        for (method, cells) in &methods {
            let done: Vec<&&Row> = cells.iter().filter(|r| r.finished()).collect();
            let col = |f: fn(&Row) -> f64| percent(&stat(done.iter().map(|r| f(r))));
            // The units repaired over the seeds, each once, in seed order.
            let mut units: Vec<&str> = Vec::new();
            for r in done.iter().filter(|r| !r.repaired.is_empty()) {
                if !units.contains(&r.repaired.as_str()) {
                    units.push(&r.repaired);
                }
            }
            let units = if units.is_empty() { "-".to_string() } else { units.join(", ") };
            let _ = write!(out, "| {} | {}/{} | {} | {} | {} | {} | {} |", md_text(method), done.len(), cells.len(), units, col(|r| r.accuracy_before), col(|r| r.accuracy_after), col(|r| r.repair_rate), col(|r| r.break_rate));
            if corruption {
                let _ = write!(out, " {} | {} |", col(|r| r.corruption_accuracy_after), col(|r| r.clean_accuracy_after));
            }
            let t = stat(done.iter().map(|r| r.seconds.total));
            let _ = writeln!(out, " {} |", if t.n == 0 { "n/a".into() } else { format!("{:.0}", t.mean) });
        }
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.finished()).collect();
    if !failed.is_empty() {
        out += "\n## Failed cells\n\n";
        for r in failed {
            let _ = writeln!(out, "- {}/{}/{}/seed{}: {}", md_text(&r.subject), md_text(&r.scenario), md_text(&r.method), r.seed, md_text(r.error.as_deref().unwrap_or("no report")).replace('\n', " ⏎ "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std_skip_nan_and_need_two_values_for_a_std() {
        let s = stat([0.2, 0.4, 0.6, f64::NAN]);
        assert_eq!(s.n, 3);
        assert!((s.mean - 0.4).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.2).abs() < 1e-12, "{s:?}");
        assert_eq!(stat([0.5]).std, None);
        assert!(stat([]).mean.is_nan());
        assert_eq!(percent(&stat([0.2, 0.4, 0.6])), "40.00 ± 20.00%");
        assert_eq!(percent(&stat([f64::NAN])), "n/a");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain_name-1"), "plain_name-1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" edge"), "\" edge\"");
    }

    fn key(seed: u64) -> CellKey {
        CellKey { subject: "fm".into(), scenario: "fog3".into(), method: "archrepair".into(), seed }
    }

    #[test]
    fn a_report_becomes_a_row_and_the_csv_has_its_numbers() {
        let report = serde_json::json!({
            "outcome": "gate_failed",
            "repair": {"target": {"block": 5, "entry": "x"}},
            "stages": [{"stage": "load", "seconds": 1.0}, {"stage": "search", "seconds": 2.0}, {"stage": "repair", "seconds": 3.0}, {"stage": "measure", "seconds": 0.5}],
            "measured": {
                "evaluation": {"accuracy_before": 0.9, "accuracy_after": 0.95, "repair_rate": 0.3, "break_rate": null},
                "sets": [{"name": "clean", "before": 0.8, "after": 0.85}, {"name": "fog", "before": 0.4, "after": 0.5}, {"name": "contrast", "before": 0.2, "after": 0.3}],
                "latency": {"before_ms": 1.5, "after_ms": 2.0}
            }
        });
        let row = Row::from_report(&key(1), "ran", 9.0, &report);
        assert_eq!((row.outcome.as_str(), row.accuracy_after, row.clean_accuracy_after), ("gate_failed", 0.95, 0.85));
        assert!((row.corruption_accuracy_after - 0.4).abs() < 1e-12 && row.break_rate.is_nan());
        assert_eq!((row.seconds.search, row.seconds.total), (5.0, 6.5));
        assert_eq!(row.repaired, "block 5");
        let layer = serde_json::json!({"outcome": "passed", "baseline": {"chosen": {"block": 12, "layer": "conv7"}}});
        assert_eq!(Row::from_report(&key(1), "ran", 1.0, &layer).repaired, "layer 12");
        assert_eq!(Row::from_report(&key(1), "ran", 1.0, &serde_json::json!({"outcome": "passed", "baseline": {"chosen": null}})).repaired, "");
        let failed = Row::failed(&key(2), "ran", 1.0, "error: boom, \"badly\"".into());
        let text = csv(&[row, failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("clean_before,clean_after,fog_before,fog_after,contrast_before"), "{}", lines[0]);
        assert!(lines[1].starts_with("fm,fog3,archrepair,1,gate_failed,ran,block 5,0.900000,0.950000,0.300000,,"), "{}", lines[1]);
        assert!(lines[2].ends_with(",\"error: boom, \"\"badly\"\"\""), "{}", lines[2]);
        assert_eq!(lines[1].split(',').count(), lines[0].split(',').count());
    }
}
