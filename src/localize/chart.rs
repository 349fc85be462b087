//! The ranking as an SVG bar chart (ranking.svg): one bar per unit in model order, so the eye
//! finds where in the network suspicion concentrates; the top-ranked unit is highlighted.

use std::fmt::Write;

use super::ranking::Ranking;

const BAR_HEIGHT: usize = 18;
const LABEL_WIDTH: usize = 230;
const BAR_WIDTH: usize = 420;

pub fn svg(ranking: &Ranking) -> String {
    let mut units: Vec<_> = ranking.units.iter().collect();
    units.sort_by_key(|u| u.unit.id);
    let finite = units.iter().map(|u| u.score).filter(|s| s.is_finite());
    let (low, high) = finite.fold((0.0f64, f64::MIN_POSITIVE), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let top = ranking.top().map(|u| u.unit.id);
    let height = 60 + BAR_HEIGHT * units.len();
    let width = LABEL_WIDTH + BAR_WIDTH + 110;
    let title = match ranking.formula {
        Some(f) => format!("{} ({f}), {} granularity", ranking.method, ranking.granularity),
        None => format!("{}, {} granularity", ranking.method, ranking.granularity),
    };
    let mut out = String::new();
    let _ = writeln!(out, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="10" y="20" font-size="14" font-weight="bold">Suspiciousness: {}</text>"#, escape(&title));
    let _ = writeln!(out, r##"<text x="10" y="38" fill="#555">{}</text>"##, escape(&ranking.model));
    for (row, unit) in units.iter().enumerate() {
        let y = 50 + row * BAR_HEIGHT;
        let fraction = if unit.score.is_finite() { ((unit.score - low) / (high - low).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) } else { 0.0 };
        let length = (fraction * BAR_WIDTH as f64).round() as usize;
        let colour = if Some(unit.unit.id) == top { "#d9480f" } else { "#4c6ef5" };
        let label = format!("{} {} ({})", unit.unit.id, unit.unit.name, unit.unit.kind);
        let _ = writeln!(out, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LABEL_WIDTH - 6, y + 13, escape(&label));
        let _ = writeln!(out, r#"<rect x="{LABEL_WIDTH}" y="{}" width="{length}" height="{}" fill="{colour}"><title>rank {}</title></rect>"#, y + 2, BAR_HEIGHT - 4, unit.rank);
        let _ = writeln!(out, r#"<text x="{}" y="{}">{:.4} (#{})</text>"#, LABEL_WIDTH + length + 6, y + 13, unit.score, unit.rank);
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
