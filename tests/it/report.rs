//! The run report: report.json follows schemas/report.schema.json, and report.html renders in a
//! real browser (headless Chromium) to a page with visible charts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use archrepair_onnx::report::{self, Report, ReportFormat};
use serde_json::Value;

use crate::support::repo_root;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The bar colours of src/report/svg.rs: BLUE (other blocks, "after" bars) and ORANGE (the
/// repaired block).
const BLUE: [u8; 3] = [0x4c, 0x6e, 0xf5];
const ORANGE: [u8; 3] = [0xe8, 0x59, 0x0c];

/// fixtures/report/sample-report.json: a realistic run whose gate failed on one check.
fn sample_report() -> Report {
    let path = repo_root().join("fixtures/report/sample-report.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> Value {
    let path = repo_root().join("schemas/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// report.json as `report::write` puts it on disk.
fn written_json(report: &Report) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let paths = report::write(report, dir.path(), &[ReportFormat::Json]).unwrap();
    assert_eq!(paths, vec![dir.path().join("report.json")]);
    serde_json::from_str(&std::fs::read_to_string(&paths[0]).unwrap()).unwrap()
}

#[test]
fn report_json_follows_the_published_schema() {
    let schema = schema();
    let doc = written_json(&sample_report());
    let problems = crate::json_schema::violations(&schema, &doc);
    assert!(problems.is_empty(), "report.json does not match its schema: {problems:#?}");

    // The schema requires exactly the fields Report writes.
    let mut required: Vec<&str> = schema["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let mut fields: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
    required.sort_unstable();
    fields.sort_unstable();
    assert_eq!(required, fields);

    // The validator is not vacuous: a mistyped exit code and a missing gate field are caught.
    let mut broken = doc.clone();
    broken["exit_code"] = "1".into();
    broken["gate"]["checks"][0].as_object_mut().unwrap().remove("threshold");
    assert_eq!(crate::json_schema::violations(&schema, &broken).len(), 2);
}

#[test]
fn report_json_of_a_stopped_run_follows_the_schema() {
    let mut stopped = sample_report();
    stopped.output_model = None;
    stopped.repair = None;
    stopped.validation = None;
    stopped.measured = None;
    stopped.gate = None;
    stopped.outcome = "stopped_after_localize".into();
    // A share of an empty set is NaN, which JSON writes as null.
    stopped.ranking[0].score = f64::NAN;
    let problems = crate::json_schema::violations(&schema(), &written_json(&stopped));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Runs headless Chromium on `html` and returns the screenshot's path; kills it after 60 s.
fn screenshot(html: &Path, dir: &Path) -> PathBuf {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the report's rendering test needs it (apt-get install chromium)"
    );
    let png = dir.join("report.png");
    let profile = dir.join("profile");
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--hide-scrollbars", "--window-size=1200,2400"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{CHROMIUM} did not finish the screenshot within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    assert!(
        png.is_file(),
        "no screenshot from {CHROMIUM} ({status}): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    png
}

/// Pixels within a small distance of `colour` (anti-aliasing blurs edges, not bar interiors).
fn count_near(image: &image::RgbImage, colour: [u8; 3]) -> usize {
    image.pixels().filter(|p| p.0.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 8)).count()
}

#[test]
fn report_html_renders_in_chromium_with_visible_charts() {
    let dir = tempfile::tempdir().unwrap();
    let mut sample = sample_report();
    sample.input_model = "models/<odd>&name.onnx".into();
    let paths = report::write(&sample, dir.path(), &[ReportFormat::Html]).unwrap();
    let html = dir.path().join("report.html");
    assert!(paths.contains(&html));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("models/&lt;odd&gt;&amp;name.onnx"));

    let png = screenshot(&html, dir.path());
    let keep = repo_root().join("target/report-screenshot.png");
    std::fs::copy(&png, &keep).unwrap_or_else(|e| panic!("{}: {e}", keep.display()));
    let image = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8();
    assert_eq!(image.dimensions(), (1200, 2400));
    let ink = image.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
    assert!(ink > 20_000, "the page looks blank: {ink} dark pixels (see {})", keep.display());
    // Bars: five blue ranking bars and four "after" bars; one orange repaired-block bar.
    let (blue, orange) = (count_near(&image, BLUE), count_near(&image, ORANGE));
    assert!(blue > 5_000, "too few blue bar pixels ({blue}); see {}", keep.display());
    assert!(orange > 1_000, "too few orange bar pixels ({orange}); see {}", keep.display());
}
