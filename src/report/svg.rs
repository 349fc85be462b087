//! A small writer of SVG elements for the report's charts, in the house style of
//! localize/chart.rs (`writeln!` into a String, sans-serif 12 px, white background). Every
//! caller-supplied text goes through [`escape`], since model paths and set names are free text.

use std::fmt::Write;

/// The palette, shared with the HTML's CSS so that legends and tables agree.
pub const BLUE: &str = "#4c6ef5";
pub const ORANGE: &str = "#e8590c";
pub const GREY: &str = "#adb5bd";
pub const TEAL: &str = "#15aabf";
pub const GREEN: &str = "#2b8a3e";
pub const TEXT_MUTED: &str = "#555555";
pub const GRID: &str = "#e9ecef";

/// Escapes text for HTML and SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Shortens `s` to at most `max` characters, marking the cut, so a label fits its slot.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// How a text is anchored at its x coordinate.
#[derive(Clone, Copy)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// An SVG document being written; `finish` closes it.
pub struct Svg {
    out: String,
}

impl Svg {
    /// Opens a `width`×`height` drawing with a white background and an accessible title.
    pub fn new(width: f64, height: f64, title: &str) -> Svg {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12" role="img" aria-label="{}">"#,
            escape(title)
        );
        let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
        Svg { out }
    }

    /// A text; `extra` holds further attributes (font-size, fill, transform), written verbatim.
    pub fn text(&mut self, x: f64, y: f64, anchor: Anchor, extra: &str, text: &str) {
        let _ = writeln!(self.out, r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{}" {extra}>{}</text>"#, anchor.name(), escape(text));
    }

    /// A filled rectangle with a tooltip (`title`, empty for none).
    pub fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, fill: &str, title: &str) {
        let body = if title.is_empty() { String::new() } else { format!("<title>{}</title>", escape(title)) };
        let _ = writeln!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}">{body}</rect>"#,
            width.max(0.0),
            height.max(0.0)
        );
    }

    /// A filled rectangle with further attributes (`extra`, written verbatim, e.g. a class)
    /// and a tooltip (`title`, empty for none).
    pub fn rect_with(&mut self, (x, y, width, height): (f64, f64, f64, f64), fill: &str, extra: &str, title: &str) {
        let body = if title.is_empty() { String::new() } else { format!("<title>{}</title>", escape(title)) };
        let _ = writeln!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" {extra}>{body}</rect>"#,
            width.max(0.0),
            height.max(0.0)
        );
    }

    /// A straight line; `extra` e.g. `stroke-dasharray="4 3"`.
    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, extra: &str) {
        let _ = writeln!(self.out, r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" {extra}/>"#);
    }

    /// An open line through `points` (nothing for fewer than two).
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, extra: &str) {
        if points.len() < 2 {
            return;
        }
        let coordinates: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            self.out,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="2" {extra}/>"#,
            coordinates.join(" ")
        );
    }

    /// A dot marking one value, with the value as tooltip.
    pub fn dot(&mut self, (x, y): (f64, f64), fill: &str, title: &str) {
        let _ = writeln!(self.out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{fill}"><title>{}</title></circle>"#, escape(title));
    }

    /// Legend entries in one row from (`x`, `y`): a colour swatch then the label.
    pub fn legend(&mut self, x: f64, y: f64, entries: &[(&str, &str)]) {
        let mut at = x;
        for (colour, label) in entries {
            self.rect(at, y - 10.0, 12.0, 12.0, colour, "");
            self.text(at + 17.0, y, Anchor::Start, "", label);
            at += 17.0 + text_width(label, 12.0) + 22.0;
        }
    }

    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// A generous estimate of a sans-serif text's width, to lay out legends without a font engine.
pub fn text_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * font_size * 0.62
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_markup_inert() {
        assert_eq!(escape(r#"models/<odd>&"name'.onnx"#), "models/&lt;odd&gt;&amp;&quot;name&#39;.onnx");
    }

    #[test]
    fn truncate_keeps_short_text_and_marks_cuts() {
        assert_eq!(truncate("fog-2", 8), "fog-2");
        assert_eq!(truncate("gaussian_noise-3", 8), "gaussia…");
    }

    #[test]
    fn svg_escapes_text_and_closes() {
        let mut svg = Svg::new(100.0, 50.0, "a<b");
        svg.text(1.0, 2.0, Anchor::Middle, "", "x&y");
        svg.polyline(&[(0.0, 0.0)], BLUE, "");
        let out = svg.finish();
        assert!(out.contains("a&lt;b") && out.contains("x&amp;y") && out.ends_with("</svg>\n"), "{out}");
        assert!(!out.contains("<polyline"), "one point draws no line");
    }
}
