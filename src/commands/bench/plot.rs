//! The bench's charts (plots/*.svg), with the report's small SVG writer (report/svg.rs): per
//! subject × scenario, the accuracy after repair per method, and the repair and break rates
//! per method, each bar the mean over seeds with an error bar of ± one standard deviation, so
//! the spread between seeds is seen next to the differences between methods.
//!
//! The accuracy axis starts at a round value below the lowest whisker (written on the chart)
//! rather than at 0: methods typically differ by a point or two of accuracy, which a 0–100 %
//! axis would flatten. Rates use an axis from 0.

use super::results::{stat, Row, Stat};
use crate::report::svg::{self, Anchor, Svg, BLUE, GREY, GRID, ORANGE, TEXT_MUTED};

const LEFT: f64 = 60.0;
const TOP: f64 = 70.0;
const PLOT_HEIGHT: f64 = 220.0;
const GROUP: f64 = 110.0;
const TITLE: &str = r#"font-size="14" font-weight="bold""#;
const MUTED: &str = r##"fill="#555555""##;

/// The vertical scale: values `lo..hi` drawn from `top + height` up to `top`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub top: f64,
    pub height: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Scale {
    /// The y coordinate of `value`, clamped to the axis.
    pub fn y(&self, value: f64) -> f64 {
        let span = (self.hi - self.lo).max(f64::MIN_POSITIVE);
        self.top + self.height - ((value - self.lo) / span).clamp(0.0, 1.0) * self.height
    }
}

/// Where one bar goes: its top and height, and the whisker's top and bottom (± std).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarShape {
    pub y: f64,
    pub height: f64,
    pub whisker: Option<(f64, f64)>,
}

/// The bar of `s` on `scale` (none when it has no value).
pub fn bar_shape(scale: &Scale, s: &Stat) -> Option<BarShape> {
    if s.n == 0 || !s.mean.is_finite() {
        return None;
    }
    let base = scale.y(scale.lo);
    let y = scale.y(s.mean);
    let whisker = s.std.filter(|d| *d > 0.0).map(|d| (scale.y(s.mean + d), scale.y(s.mean - d)));
    Some(BarShape { y, height: base - y, whisker })
}

/// An axis range of round tenths covering every mean ± std: `from_zero` keeps 0 as its start.
pub fn axis_range(stats: &[Stat], from_zero: bool) -> (f64, f64) {
    let finite: Vec<&Stat> = stats.iter().filter(|s| s.n > 0 && s.mean.is_finite()).collect();
    let low = finite.iter().map(|s| s.mean - s.std.unwrap_or(0.0)).fold(f64::INFINITY, f64::min);
    let high = finite.iter().map(|s| s.mean + s.std.unwrap_or(0.0)).fold(f64::NEG_INFINITY, f64::max);
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    let lo = if from_zero { 0.0 } else { ((low * 10.0).floor() / 10.0).clamp(0.0, 0.9) };
    let hi = ((high * 10.0).ceil() / 10.0).clamp(lo + 0.1, 1.0_f64.max(lo + 0.1));
    (lo, hi)
}

/// One bar series: its legend label, colour and one value per group.
struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    stats: Vec<Stat>,
}

/// Grouped bars with error bars; `reference`: a dashed line across the plot (value, label).
fn bar_chart(title: &str, subtitle: &str, groups: &[String], series: &[Series], from_zero: bool, reference: Option<(f64, String)>) -> String {
    let all: Vec<Stat> = series.iter().flat_map(|s| s.stats.iter().copied()).chain(reference.iter().map(|(v, _)| Stat { mean: *v, std: None, n: 1 })).collect();
    let (lo, hi) = axis_range(&all, from_zero);
    let scale = Scale { top: TOP, height: PLOT_HEIGHT, lo, hi };
    let plot_width = (groups.len() as f64 * GROUP).max(360.0);
    let group_width = plot_width / groups.len().max(1) as f64;
    // Wide enough for the title and subtitle too: text is never shrunk or cut.
    let width = (LEFT + plot_width + 24.0).max(svg::text_width(title, 14.0) + 20.0).max(svg::text_width(subtitle, 12.0) + 20.0);
    let mut out = Svg::new(width, TOP + PLOT_HEIGHT + 48.0, title);
    out.text(10.0, 20.0, Anchor::Start, TITLE, title);
    out.text(10.0, 38.0, Anchor::Start, MUTED, subtitle);
    let legend: Vec<(&str, &str)> = series.iter().map(|s| (s.colour, s.label)).collect();
    out.legend(10.0, 58.0, &legend);
    for step in 0..=5 {
        let value = lo + (hi - lo) * step as f64 / 5.0;
        let y = scale.y(value);
        out.line((LEFT, y), (LEFT + plot_width, y), GRID, "");
        out.text(LEFT - 6.0, y + 4.0, Anchor::End, MUTED, &format!("{:.0}%", 100.0 * value));
    }
    out.line((LEFT, TOP), (LEFT, TOP + PLOT_HEIGHT), TEXT_MUTED, "");
    out.line((LEFT, TOP + PLOT_HEIGHT), (LEFT + plot_width, TOP + PLOT_HEIGHT), TEXT_MUTED, "");
    let bar = ((group_width * 0.7) / series.len().max(1) as f64).min(44.0);
    for (g, label) in groups.iter().enumerate() {
        let centre = LEFT + (g as f64 + 0.5) * group_width;
        let first = centre - bar * series.len() as f64 / 2.0;
        for (k, s) in series.iter().enumerate() {
            let x = first + k as f64 * bar;
            let Some(stat) = s.stats.get(g) else { continue };
            let Some(shape) = bar_shape(&scale, stat) else { continue };
            let spread = stat.std.map_or(String::new(), |d| format!(" ± {:.2}", 100.0 * d));
            let tip = format!("{label}, {}: {:.2}{spread}% over {} seed(s)", s.label, 100.0 * stat.mean, stat.n);
            out.rect_with((x + 2.0, shape.y, bar - 4.0, shape.height), s.colour, r#"class="bar""#, &tip);
            if let Some((top, bottom)) = shape.whisker {
                let mid = x + bar / 2.0;
                out.line((mid, top), (mid, bottom), "#212529", r#"class="whisker" stroke-width="1.5""#);
                out.line((mid - 5.0, top), (mid + 5.0, top), "#212529", r#"stroke-width="1.5""#);
                out.line((mid - 5.0, bottom), (mid + 5.0, bottom), "#212529", r#"stroke-width="1.5""#);
            }
        }
        let chars = ((group_width - 8.0) / 7.0).max(4.0) as usize;
        out.text(centre, TOP + PLOT_HEIGHT + 18.0, Anchor::Middle, "", &svg::truncate(label, chars));
    }
    if let Some((value, label)) = reference {
        let y = scale.y(value);
        out.line((LEFT, y), (LEFT + plot_width, y), GREY, r#"stroke-dasharray="5 4" stroke-width="1.5""#);
        out.text(LEFT + plot_width, y - 4.0, Anchor::End, MUTED, &label);
    }
    out.finish()
}

/// The two charts of one subject × scenario: (accuracy after, repair/break rates).
pub fn charts(subject: &str, scenario: &str, methods: &[(String, Vec<&Row>)]) -> (String, String) {
    let labels: Vec<String> = methods.iter().map(|(m, _)| m.clone()).collect();
    let finished = |rows: &[&Row]| -> Vec<Row> { rows.iter().filter(|r| r.finished()).map(|r| (*r).clone()).collect() };
    let per = |f: fn(&Row) -> f64| -> Vec<Stat> { methods.iter().map(|(_, rows)| stat(finished(rows).iter().map(f))).collect() };
    let before = stat(methods.iter().flat_map(|(_, rows)| finished(rows)).map(|r| r.accuracy_before));
    let reference = before.mean.is_finite().then(|| (before.mean, format!("before repair {:.2}%", 100.0 * before.mean)));
    let accuracy = bar_chart(
        &format!("Accuracy after repair: {subject} / {scenario}"),
        "onnxruntime, evaluation split minus D_fail; mean ± std over seeds; axis not from 0",
        &labels,
        &[Series { label: "accuracy after", colour: BLUE, stats: per(|r| r.accuracy_after) }],
        false,
        reference,
    );
    let rates = bar_chart(
        &format!("Repair and break rates: {subject} / {scenario}"),
        "repair: share of D_fail now right; break: share of right images now wrong; mean ± std over seeds",
        &labels,
        &[Series { label: "repair rate", colour: BLUE, stats: per(|r| r.repair_rate) }, Series { label: "break rate", colour: ORANGE, stats: per(|r| r.break_rate) }],
        true,
        None,
    );
    (accuracy, rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_whiskers_have_the_heights_of_their_numbers() {
        let scale = Scale { top: 10.0, height: 200.0, lo: 0.0, hi: 1.0 };
        let shape = bar_shape(&scale, &Stat { mean: 0.5, std: Some(0.1), n: 3 }).unwrap();
        assert!((shape.height - 100.0).abs() < 1e-9 && (shape.y - 110.0).abs() < 1e-9, "{shape:?}");
        let (top, bottom) = shape.whisker.unwrap();
        assert!((top - 90.0).abs() < 1e-9 && (bottom - 130.0).abs() < 1e-9, "{shape:?}");
        // A zoomed axis: 0.8..1.0 over 200 px, 0.9 ± 0.02 is half the height, whiskers 40 px long.
        let zoomed = Scale { top: 0.0, height: 200.0, lo: 0.8, hi: 1.0 };
        let shape = bar_shape(&zoomed, &Stat { mean: 0.9, std: Some(0.02), n: 2 }).unwrap();
        let (top, bottom) = shape.whisker.unwrap();
        assert!((shape.height - 100.0).abs() < 1e-9 && (bottom - top - 40.0).abs() < 1e-9, "{shape:?}");
        assert_eq!(bar_shape(&scale, &Stat { mean: 0.3, std: None, n: 1 }).unwrap().whisker, None);
        assert_eq!(bar_shape(&scale, &Stat { mean: f64::NAN, std: None, n: 0 }), None);
    }

    #[test]
    fn axis_ranges_are_round_and_cover_the_whiskers() {
        let s = |mean, std| Stat { mean, std: Some(std), n: 2 };
        assert_eq!(axis_range(&[s(0.89, 0.01), s(0.93, 0.02)], false), (0.8, 1.0));
        assert_eq!(axis_range(&[s(0.05, 0.01), s(0.31, 0.02)], true), (0.0, 0.4));
    }

    #[test]
    fn the_accuracy_chart_has_one_bar_per_method_and_a_whisker_where_seeds_differ() {
        let report = |acc: f64| serde_json::json!({"outcome": "passed", "measured": {"evaluation": {"accuracy_before": 0.9, "accuracy_after": acc, "repair_rate": 0.2, "break_rate": 0.01}}});
        let key = |m: &str, seed| super::super::results::CellKey { subject: "s".into(), scenario: "c".into(), method: m.into(), seed };
        let rows = [Row::from_report(&key("a", 1), "ran", 0.0, &report(0.91)), Row::from_report(&key("a", 2), "ran", 0.0, &report(0.93)), Row::from_report(&key("b<x>", 1), "ran", 0.0, &report(0.92))];
        let methods = vec![("a".to_string(), vec![&rows[0], &rows[1]]), ("b<x>".to_string(), vec![&rows[2]])];
        let (accuracy, rates) = charts("s", "c", &methods);
        assert_eq!(accuracy.matches(r#"class="bar""#).count(), 2, "{accuracy}");
        assert_eq!(accuracy.matches(r#"class="whisker""#).count(), 1, "one method has two seeds");
        assert_eq!(rates.matches(r#"class="bar""#).count(), 4);
        assert!(accuracy.contains("b&lt;x&gt;") && accuracy.contains("before repair 90.00%"), "{accuracy}");
    }
}
