//! The three charts of report.html as inline SVG: block suspiciousness (where the repair
//! went), accuracy before/after per data set (what it bought), and the search/training curves
//! (whether it converged). Fixed pixel sizes: the page scrolls a wide chart rather than
//! shrinking its text.

use super::svg::{self, Anchor, Svg, BLUE, GREEN, GREY, GRID, ORANGE, TEAL, TEXT_MUTED};
use super::{OrtMeasures, Report};
use crate::search::SearchReport;

const MUTED: &str = r##"fill="#555555""##;
const SMALL: &str = r#"font-size="11""#;
const TITLE: &str = r#"font-size="14" font-weight="bold""#;

/// Horizontal bars of the localization scores, blocks in model order, the repaired block in
/// orange; `None` when there is no ranking (the spec named the block).
pub fn suspiciousness(report: &Report) -> Option<String> {
    const LABEL: f64 = 150.0;
    const BAR: f64 = 440.0;
    const ROW: f64 = 22.0;
    const TOP: f64 = 56.0;
    if report.ranking.is_empty() {
        return None;
    }
    let mut scores: Vec<_> = report.ranking.iter().collect();
    scores.sort_by_key(|s| s.block);
    let finite = scores.iter().map(|s| s.score).filter(|s| s.is_finite());
    let (low, high) = finite.fold((0.0f64, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let span = (high - low).max(f64::MIN_POSITIVE);
    let repaired = report.repair.as_ref().map(|r| r.target.block);
    let height = TOP + ROW * scores.len() as f64 + 12.0;
    let mut out = Svg::new(LABEL + BAR + 130.0, height, "Block suspiciousness");
    out.text(10.0, 20.0, Anchor::Start, TITLE, "Block suspiciousness (localization score, model order)");
    out.legend(10.0, 42.0, &[(ORANGE, "repaired block"), (BLUE, "other blocks")]);
    for (row, score) in scores.iter().enumerate() {
        let y = TOP + row as f64 * ROW;
        let fraction = if score.score.is_finite() { ((score.score - low) / span).clamp(0.0, 1.0) } else { 0.0 };
        let length = fraction * BAR;
        let colour = if Some(score.block) == repaired { ORANGE } else { BLUE };
        let kind = report.blocks.iter().find(|b| b.id == score.block).map(|b| format!(" ({})", b.kind)).unwrap_or_default();
        out.text(LABEL - 8.0, y + 15.0, Anchor::End, "", &svg::truncate(&format!("block {}{kind}", score.block), 22));
        out.rect(LABEL, y + 3.0, length, ROW - 6.0, colour, &format!("block {}: rank {}", score.block, score.rank));
        let value = format!("{} (#{})", super::summary::number(score.score, 4), score.rank);
        out.text(LABEL + length + 6.0, y + 15.0, Anchor::Start, "", &value);
    }
    Some(out.finish())
}

/// One group of the accuracy chart: a label and the accuracies before and after (fractions).
struct Group {
    label: String,
    before: f64,
    after: f64,
}

/// Grouped bars before/after for the evaluation split minus D_fail and each `evaluate` set,
/// on a 0–100 % axis with the values written above the bars.
pub fn accuracy(measured: &OrtMeasures) -> String {
    const LEFT: f64 = 56.0;
    const TOP: f64 = 64.0;
    const PLOT_HEIGHT: f64 = 200.0;
    const GROUP: f64 = 120.0;
    let e = &measured.evaluation;
    let mut groups = vec![Group { label: "evaluation − D_fail".into(), before: e.accuracy_before, after: e.accuracy_after }];
    groups.extend(measured.sets.iter().map(|s| Group { label: s.name.clone(), before: s.before, after: s.after }));
    let plot_width = (groups.len() as f64 * GROUP).max(600.0);
    let group_width = plot_width / groups.len() as f64;
    let mut out = Svg::new(LEFT + plot_width + 20.0, TOP + PLOT_HEIGHT + 44.0, "Accuracy before and after repair");
    out.text(10.0, 20.0, Anchor::Start, TITLE, "Accuracy before and after repair (onnxruntime)");
    out.legend(10.0, 44.0, &[(GREY, "before (input model)"), (BLUE, "after (repaired model)")]);
    percent_axis(&mut out, LEFT, TOP, plot_width, PLOT_HEIGHT);
    let bar = (group_width * 0.34).min(48.0);
    for (i, group) in groups.iter().enumerate() {
        let centre = LEFT + (i as f64 + 0.5) * group_width;
        for (value, x, colour, when) in [(group.before, centre - bar - 2.0, GREY, "before"), (group.after, centre + 2.0, BLUE, "after")] {
            value_bar(&mut out, (x, bar), (TOP, PLOT_HEIGHT), value, colour, &format!("{}, {when}", group.label));
        }
        let chars = ((group_width - 8.0) / 7.0).max(4.0) as usize;
        out.text(centre, TOP + PLOT_HEIGHT + 18.0, Anchor::Middle, "", &svg::truncate(&group.label, chars));
    }
    out.finish()
}

/// A vertical bar of `value` (a fraction) in a 0–100 % plot, labelled with the percentage.
fn value_bar(out: &mut Svg, (x, width): (f64, f64), (top, height): (f64, f64), value: f64, colour: &str, what: &str) {
    let label = if value.is_finite() { format!("{:.2}", value * 100.0) } else { "n/a".into() };
    let length = if value.is_finite() { value.clamp(0.0, 1.0) * height } else { 0.0 };
    out.rect(x, top + height - length, width, length, colour, &format!("{what}: {label} %"));
    out.text(x + width / 2.0, top + height - length - 4.0, Anchor::Middle, SMALL, &label);
}

/// The y axis 0–100 % with grid lines every 20 %, and the x axis line.
fn percent_axis(out: &mut Svg, left: f64, top: f64, width: f64, height: f64) {
    for step in 0..=5 {
        let y = top + height - step as f64 * height / 5.0;
        out.line((left, y), (left + width, y), GRID, "");
        out.text(left - 6.0, y + 4.0, Anchor::End, MUTED, &format!("{}%", step * 20));
    }
    out.line((left, top), (left, top + height), TEXT_MUTED, "");
    out.line((left, top + height), (left + width, top + height), TEXT_MUTED, "");
}

/// One line of the curves chart: a legend label, a colour and a value (or none) per x index.
struct Series {
    label: &'static str,
    colour: &'static str,
    dashed: bool,
    values: Vec<Option<f64>>,
}

/// Accuracy per epoch, the search epochs then the training epochs on one x axis (epoch index
/// across phases, phases separated and named); `None` when no epoch was logged.
pub fn curves(repair: &SearchReport) -> Option<String> {
    const LEFT: f64 = 56.0;
    const TOP: f64 = 84.0;
    const PLOT_WIDTH: f64 = 660.0;
    const PLOT_HEIGHT: f64 = 200.0;
    let series = curve_series(repair);
    let count = series.first().map_or(0, |s| s.values.len());
    if count == 0 {
        return None;
    }
    let x = |i: f64| LEFT + (i + 0.5) / count as f64 * PLOT_WIDTH;
    let y = |v: f64| TOP + PLOT_HEIGHT - v.clamp(0.0, 1.0) * PLOT_HEIGHT;
    let mut out = Svg::new(LEFT + PLOT_WIDTH + 24.0, TOP + PLOT_HEIGHT + 44.0, "Search and training curves");
    out.text(10.0, 20.0, Anchor::Start, TITLE, "Search and training accuracy per epoch");
    let legend: Vec<(&str, &str)> = series.iter().map(|s| (s.colour, s.label)).collect();
    let (first, second) = legend.split_at(legend.len().min(2));
    out.legend(10.0, 42.0, first);
    out.legend(10.0, 60.0, second);
    percent_axis(&mut out, LEFT, TOP, PLOT_WIDTH, PLOT_HEIGHT);
    phase_bands(&mut out, &phases(repair), (TOP, PLOT_HEIGHT), &x);
    let step = count.div_ceil(12).max(1);
    for i in (0..count).step_by(step) {
        let at = x(i as f64);
        out.line((at, TOP + PLOT_HEIGHT), (at, TOP + PLOT_HEIGHT + 4.0), TEXT_MUTED, "");
        out.text(at, TOP + PLOT_HEIGHT + 17.0, Anchor::Middle, MUTED, &i.to_string());
    }
    out.text(LEFT + PLOT_WIDTH / 2.0, TOP + PLOT_HEIGHT + 34.0, Anchor::Middle, MUTED, "epoch (search, then training phases)");
    for s in &series {
        draw_series(&mut out, s, &x, &y);
    }
    Some(out.finish())
}

/// The four curves over the common x index: search epochs first, training epochs after.
fn curve_series(r: &SearchReport) -> Vec<Series> {
    let (s, t) = (r.search.len(), r.train.len());
    let search = |f: &dyn Fn(usize) -> Option<f64>| (0..s).map(f).chain(std::iter::repeat_n(None, t)).collect();
    let train = |f: &dyn Fn(usize) -> Option<f64>| std::iter::repeat_n(None, s).chain((0..t).map(f)).collect();
    vec![
        Series { label: "search: weight-step accuracy (half A)", colour: BLUE, dashed: true, values: search(&|i| Some(r.search[i].train_accuracy)) },
        Series { label: "search: α-step accuracy (half B)", colour: TEAL, dashed: false, values: search(&|i| r.search[i].alpha_accuracy) },
        Series { label: "training: train accuracy", colour: ORANGE, dashed: true, values: train(&|i| Some(r.train[i].train_accuracy)) },
        Series { label: "training: held-out accuracy", colour: GREEN, dashed: false, values: train(&|i| Some(r.train[i].holdout_accuracy)) },
    ]
}

/// Consecutive runs of equal phase: (name, first index, end index).
fn phases(r: &SearchReport) -> Vec<(String, usize, usize)> {
    let names = r.search.iter().map(|_| "search".to_string()).chain(r.train.iter().map(|t| t.phase.clone()));
    let mut runs: Vec<(String, usize, usize)> = Vec::new();
    for (i, name) in names.enumerate() {
        match runs.last_mut() {
            Some(run) if run.0 == name => run.2 = i + 1,
            _ => runs.push((name, i, i + 1)),
        }
    }
    runs
}

/// Names each phase above the plot and separates phases with a dashed line.
fn phase_bands(out: &mut Svg, runs: &[(String, usize, usize)], (top, height): (f64, f64), x: &dyn Fn(f64) -> f64) {
    for (n, (name, first, end)) in runs.iter().enumerate() {
        let (from, to) = (x(*first as f64 - 0.5), x(*end as f64 - 0.5));
        if n > 0 {
            out.line((from, top - 14.0), (from, top + height), TEXT_MUTED, r#"stroke-dasharray="4 3""#);
        }
        let chars = ((to - from) / 7.0).max(3.0) as usize;
        out.text((from + to) / 2.0, top - 6.0, Anchor::Middle, MUTED, &svg::truncate(name, chars));
    }
}

/// The series as lines through its consecutive known values, with a dot per value.
fn draw_series(out: &mut Svg, s: &Series, x: &dyn Fn(f64) -> f64, y: &dyn Fn(f64) -> f64) {
    let dash = if s.dashed { r#"stroke-dasharray="6 4""# } else { "" };
    let mut run: Vec<(f64, f64)> = Vec::new();
    for (i, value) in s.values.iter().enumerate() {
        match value.filter(|v| v.is_finite()) {
            Some(v) => {
                let point = (x(i as f64), y(v));
                out.dot(point, s.colour, &format!("{}, epoch index {i}: {:.2} %", s.label, v * 100.0));
                run.push(point);
            }
            None => out.polyline(&std::mem::take(&mut run), s.colour, dash),
        }
    }
    out.polyline(&run, s.colour, dash);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::sample_report;

    #[test]
    fn suspiciousness_has_a_bar_per_block_and_highlights_the_repaired_one() {
        let report = sample_report();
        let svg = suspiciousness(&report).unwrap_or_default();
        assert_eq!(svg.matches("<title>block ").count(), 6, "{svg}");
        assert_eq!(svg.matches(&format!(r#"fill="{ORANGE}"><title>"#)).count(), 1, "one highlighted bar");
        assert!(svg.find("block 0 (basic)") < svg.find("block 5 (basic)"), "model order");
        assert!(suspiciousness(&Report { ranking: Vec::new(), ..report }).is_none());
    }

    #[test]
    fn accuracy_draws_two_bars_per_group_with_labels() {
        let report = sample_report();
        let Some(m) = report.measured.as_ref() else { panic!("sample is measured") };
        let svg = accuracy(m);
        assert_eq!(svg.matches(", before: ").count(), 4, "{svg}");
        assert_eq!(svg.matches(", after: ").count(), 4, "{svg}");
        assert!(svg.contains(">91.32<") && svg.contains(">68.53<") && svg.contains(">gaussian_noise-3<"), "{svg}");
    }

    #[test]
    fn curves_cover_search_and_training_epochs() {
        let report = sample_report();
        let Some(r) = report.repair.as_ref() else { panic!("sample has a repair") };
        let svg = curves(r).unwrap_or_default();
        // 2 search weight-step points, 1 α point (warm-up epoch has none), 3 + 3 training points.
        assert_eq!(svg.matches("<circle").count(), 9, "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 3, "the single α point draws no line");
        for phase in [">search<", ">block<", ">finetune<"] {
            assert!(svg.contains(phase), "{phase} in {svg}");
        }
        let empty = SearchReport { search: Vec::new(), train: Vec::new(), ..r.clone() };
        assert!(curves(&empty).is_none());
    }

    #[test]
    fn charts_survive_nan_and_single_epochs() {
        let mut report = sample_report();
        report.ranking[0].score = f64::NAN;
        assert!(suspiciousness(&report).is_some_and(|s| s.contains("n/a (#1)")));
        let Some(r) = report.repair.as_mut() else { panic!("sample has a repair") };
        r.search.truncate(1);
        r.train.clear();
        r.search[0].train_accuracy = f64::NAN;
        assert!(curves(r).is_some_and(|s| !s.contains("NaN")));
        let Some(m) = report.measured.as_mut() else { panic!("sample is measured") };
        m.evaluation.accuracy_after = f64::NAN;
        m.sets.clear();
        let svg = accuracy(m);
        assert!(svg.contains(">n/a<") && !svg.contains("NaN"), "{svg}");
    }
}
