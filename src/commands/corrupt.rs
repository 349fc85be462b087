//! `archrepair-onnx corrupt`: writes corrupted copies of a dataset in CIFAR-10-C's layout.
//!
//!     <out>/<corruption>.npy   uint8 (k·N, H, W, C): the k severities stacked in order
//!     <out>/labels.npy         int64 (k·N,): the labels repeated once per severity
//!     <out>/manifest.json      what was written, from what, with which table and seed
//!
//! Images are corrupted a chunk at a time on every core; each image's randomness depends only
//! on (seed, corruption, severity, image index), so the files do not depend on the chunk size
//! or the number of threads. Every file is written atomically (temporary file, then rename).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::commands::corruption_table::{for_each_corrupted_chunk, CorruptionOptions};
use crate::data::corrupt::{Corruption, ParamSet};
use crate::data::{self, write_npy, DataError, DataSource, Dataset, Image};
use crate::commands::progress::images_bar;
use crate::Error;

#[derive(Debug, Clone)]
pub struct CorruptOptions {
    pub data: DataSource,
    /// Output folder; created when missing, refused when it holds files unless `force`.
    pub out: PathBuf,
    /// Corruptions, severities, table (chosen from the image shape when `None`) and seed.
    pub suite: CorruptionOptions,
    /// Corrupt only the first `limit` images.
    pub limit: Option<usize>,
    pub force: bool,
    pub progress: bool,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptReport {
    pub out: String,
    pub source: String,
    /// Parameter table used (`cifar10-c`, `grey28` or `corrupt-tta`).
    pub params: String,
    pub seed: u64,
    pub severities: Vec<u8>,
    /// Images per severity.
    pub count: usize,
    /// Image shape (H, W, C).
    pub shape: [usize; 3],
    pub files: Vec<WrittenFile>,
    pub labels: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WrittenFile {
    pub corruption: String,
    pub file: String,
    pub shape: Vec<usize>,
    /// Mean |corrupted − clean| per severity, in pixel levels (0..255).
    pub mean_abs_change: Vec<f64>,
    pub seconds: f64,
}

/// The manifest written next to the arrays.
#[derive(Debug, Serialize)]
struct Manifest<'a> {
    tool: &'static str,
    version: &'static str,
    source: &'a str,
    split: String,
    params: &'a str,
    seed: u64,
    corruptions: Vec<&'a str>,
    severities: &'a [u8],
    count: usize,
    shape: [usize; 3],
    layout: &'static str,
    files: &'a [WrittenFile],
    labels: &'a str,
}

pub fn corrupt_dataset(options: &CorruptOptions) -> Result<CorruptReport, Error> {
    let started = Instant::now();
    let suite = &options.suite;
    if suite.corruptions.is_empty() || suite.severities.is_empty() {
        return Err(Error::Mismatch("nothing to write: no corruption or no severity selected".into()));
    }
    check_out_dir(&options.out, options.force)?;
    let mut data = data::open(&options.data)?;
    if let Some(limit) = options.limit {
        data.truncate(limit);
    }
    let params = suite.table_for(&data)?;
    let (n, k) = (data.len(), suite.severities.len());
    let shape = [data.height, data.width, data.channels];
    let clean: Vec<u8> = (0..n).flat_map(|i| data.image(i).to_u8()).collect();
    std::fs::create_dir_all(&options.out).map_err(|source| DataError::Write { path: options.out.clone(), source })?;

    let labels_path = options.out.join("labels.npy");
    let labels: Vec<i64> = suite.severities.iter().flat_map(|_| data.labels.iter().copied()).collect();
    write_npy(&labels_path, &[k * n], &labels)?;

    let bar = images_bar((suite.corruptions.len() * k * n) as u64, options.progress);
    let mut files = Vec::with_capacity(suite.corruptions.len());
    for &corruption in &suite.corruptions {
        let t0 = Instant::now();
        let (bytes, mean_abs_change) = corrupt_all(&data, &clean, corruption, &suite.severities, params, suite.seed, &bar)?;
        let file = format!("{}.npy", corruption.name());
        let file_shape = vec![k * n, shape[0], shape[1], shape[2]];
        write_npy(&options.out.join(&file), &file_shape, &bytes)?;
        let written = WrittenFile { corruption: corruption.name().to_string(), file, shape: file_shape, mean_abs_change, seconds: t0.elapsed().as_secs_f64() };
        bar.println(written.summary());
        files.push(written);
    }
    bar.finish_and_clear();

    let report = CorruptReport {
        out: options.out.display().to_string(),
        source: data.source.display().to_string(),
        params: params.name().to_string(),
        seed: suite.seed,
        severities: suite.severities.clone(),
        count: n,
        shape,
        files,
        labels: "labels.npy".to_string(),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_manifest(&options.out, &report, &options.data)?;
    Ok(report)
}

/// Every severity of one corruption as bytes, stacked, and the mean |change| per severity.
fn corrupt_all(
    data: &Dataset,
    clean: &[u8],
    corruption: Corruption,
    severities: &[u8],
    params: ParamSet,
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<(Vec<u8>, Vec<f64>), Error> {
    let mut bytes = Vec::with_capacity(severities.len() * clean.len());
    let mut changes = Vec::with_capacity(severities.len());
    for &severity in severities {
        bar.set_message(format!("{corruption} s{severity}"));
        let start_len = bytes.len();
        for_each_corrupted_chunk(data, corruption, severity, params, seed, |range, corrupted| {
            bytes.extend(corrupted.iter().flat_map(Image::to_u8));
            bar.inc(range.len() as u64);
            Ok(())
        })?;
        let total: u64 = bytes[start_len..].iter().zip(clean).map(|(&a, &b)| u64::from(a.abs_diff(b))).sum();
        changes.push(total as f64 / clean.len().max(1) as f64);
    }
    Ok((bytes, changes))
}

/// Accepts a missing or empty `out`; an existing non-empty folder (or a file) is refused
/// unless `force`.
fn check_out_dir(out: &Path, force: bool) -> Result<(), Error> {
    let refuse = |reason: &str| Error::Data(DataError::Format { path: out.to_path_buf(), reason: reason.to_string() });
    if out.exists() && !out.is_dir() {
        return Err(refuse("exists and is not a folder"));
    }
    if out.is_dir() && !force {
        let mut entries = std::fs::read_dir(out).map_err(|e| DataError::read(out, e))?;
        if entries.next().is_some() {
            return Err(refuse("the output folder exists and is not empty (pass --force to write into it)"));
        }
    }
    Ok(())
}

fn write_manifest(out: &Path, report: &CorruptReport, source: &DataSource) -> Result<(), Error> {
    let manifest = Manifest {
        tool: "archrepair-onnx",
        version: env!("CARGO_PKG_VERSION"),
        source: &report.source,
        split: source.split.to_string(),
        params: &report.params,
        seed: report.seed,
        corruptions: report.files.iter().map(|f| f.corruption.as_str()).collect(),
        severities: &report.severities,
        count: report.count,
        shape: report.shape,
        layout: "CIFAR-10-C: <corruption>.npy uint8 (severities*count, H, W, C), severities stacked in order; labels.npy int64",
        files: &report.files,
        labels: &report.labels,
    };
    let path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| DataError::format(&path, e.to_string()))?;
    Ok(data::write_atomically(&path, (text + "\n").as_bytes())?)
}

impl WrittenFile {
    /// `gaussian_noise.npy      (50000, 28, 28, 1)  change/255: 4.1 6.0 7.9 8.9 9.8  (2.1 s)`
    fn summary(&self) -> String {
        let shape = self.shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        let change = self.mean_abs_change.iter().map(|c| format!("{c:.1}")).collect::<Vec<_>>().join(" ");
        format!("{:<24} ({shape})  mean |change| per severity: {change}  ({:.1} s)", self.file, self.seconds)
    }
}

impl fmt::Display for CorruptReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [h, w, c] = self.shape;
        writeln!(f, "source      {} ({} images, {h}x{w}x{c})", self.source, self.count)?;
        writeln!(f, "params      {}  seed {}  severities {:?}", self.params, self.seed, self.severities)?;
        writeln!(f, "out         {}", self.out)?;
        for file in &self.files {
            writeln!(f, "  {}", file.summary())?;
        }
        writeln!(f, "  {:<24} ({},)", self.labels, self.count * self.severities.len())?;
        write!(f, "{} files in {:.1} s", self.files.len() + 2, self.seconds)
    }
}
