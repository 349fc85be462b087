//! `eval --corruptions`: accuracy of a model under each corruption and severity of the
//! ImageNet-C / CIFAR-10-C suite, measured by onnxruntime, plus the mean over the table
//! (the "mean corruption accuracy" that robustness papers report).
//!
//! Images are corrupted on the fly, a chunk at a time, so memory stays at one chunk of corrupted
//! images whatever the size of the split; each image's randomness depends only on
//! (seed, corruption, severity, image index), so the table does not depend on the chunk size or
//! the number of threads.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::commands::eval::Runtimes;
use crate::data::corrupt::{check_shape, corrupt_batch, Corruption, ParamSet};
use crate::data::{Dataset, Image, InputPlan};
use crate::commands::progress::images_bar;
use crate::Error;

/// Images corrupted at a time: large enough to keep every core busy, small enough to bound memory.
const CHUNK: usize = 1024;

/// Which part of the suite to run.
#[derive(Debug, Clone)]
pub struct CorruptionOptions {
    pub corruptions: Vec<Corruption>,
    /// Severities 1..=5, in the order the table shows them.
    pub severities: Vec<u8>,
    /// Parameter table; chosen from the image shape when absent (`ParamSet::default_for`).
    pub params: Option<ParamSet>,
    pub seed: u64,
}

/// The accuracy table.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptionTable {
    /// Parameter table used (`cifar10-c`, `grey28` or `corrupt-tta`).
    pub params: String,
    pub seed: u64,
    pub severities: Vec<u8>,
    /// Images per cell (the evaluated split).
    pub examples: usize,
    pub rows: Vec<CorruptionRow>,
    /// Mean of every cell of the table.
    pub mean_corruption_accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CorruptionRow {
    pub corruption: String,
    /// Accuracy per severity, in the order of `CorruptionTable::severities`.
    pub accuracy: Vec<f64>,
    pub mean: f64,
}

impl CorruptionOptions {
    /// The parameter table for `data`'s images (the chosen one, else the default for their
    /// shape), after checking that they can be corrupted at all.
    pub fn table_for(&self, data: &Dataset) -> Result<ParamSet, Error> {
        check_shape(data.height, data.width, data.channels).map_err(|reason| {
            Error::Mismatch(format!("cannot corrupt the images of `{}`: {reason}", data.source.display()))
        })?;
        Ok(self.params.unwrap_or_else(|| ParamSet::default_for(data.height, data.width, data.channels)))
    }
}

/// Calls `each` with consecutive ranges of `data` and their images corrupted by `corruption` at
/// `severity`, in order. Image `i` is corrupted as image `i` of the set (`corrupt_batch`'s
/// `first_index`), so the result does not depend on the chunk size.
pub fn for_each_corrupted_chunk(
    data: &Dataset,
    corruption: Corruption,
    severity: u8,
    params: ParamSet,
    seed: u64,
    mut each: impl FnMut(Range<usize>, Vec<Image>) -> Result<(), Error>,
) -> Result<(), Error> {
    for start in (0..data.len()).step_by(CHUNK) {
        let range = start..(start + CHUNK).min(data.len());
        let corrupted = corrupt_batch(&data.images(range.clone()), corruption, severity, params, seed, start as u64);
        each(range, corrupted)?;
    }
    Ok(())
}

/// Accuracy of `runtimes`' onnxruntime session on `data` corrupted by every (corruption, severity)
/// of `options`, fed through `plan`.
pub fn corruption_table(
    runtimes: &mut Runtimes,
    data: &Dataset,
    plan: &InputPlan,
    options: &CorruptionOptions,
    batch: usize,
    progress: bool,
) -> Result<CorruptionTable, Error> {
    let params = options.table_for(data)?;
    let cells = options.corruptions.len() * options.severities.len();
    let bar = images_bar((cells * data.len()) as u64, progress);
    let mut rows = Vec::with_capacity(options.corruptions.len());
    for &corruption in &options.corruptions {
        let mut accuracy = Vec::with_capacity(options.severities.len());
        for &severity in &options.severities {
            bar.set_message(format!("{corruption} s{severity}"));
            let mut correct = 0;
            for_each_corrupted_chunk(data, corruption, severity, params, options.seed, |range, corrupted| {
                correct += runtimes.ort_correct(&corrupted, &data.labels[range.clone()], plan, batch)?;
                bar.inc(range.len() as u64);
                Ok(())
            })?;
            accuracy.push(correct as f64 / data.len().max(1) as f64);
        }
        rows.push(CorruptionRow { corruption: corruption.name().to_string(), mean: mean(&accuracy), accuracy });
    }
    bar.finish_and_clear();
    let all: Vec<f64> = rows.iter().flat_map(|r| r.accuracy.iter().copied()).collect();
    Ok(CorruptionTable {
        params: params.name().to_string(),
        seed: options.seed,
        severities: options.severities.clone(),
        examples: data.len(),
        mean_corruption_accuracy: mean(&all),
        rows,
    })
}

/// Corruptions named on the command line (`all` or `a,b`), in the suite's order.
#[derive(Debug, Clone)]
pub struct CorruptionList(pub Vec<Corruption>);

/// Severities named on the command line (`1..5` or `1,3`), ascending, without repeats.
#[derive(Debug, Clone)]
pub struct SeverityList(pub Vec<u8>);

pub fn parse_corruptions(text: &str) -> Result<CorruptionList, String> {
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok(CorruptionList(Corruption::ALL.to_vec()));
    }
    let mut list = text.split(',').map(|name| name.parse::<Corruption>().map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
    list.sort();
    list.dedup();
    Ok(CorruptionList(list))
}

pub fn parse_severities(text: &str) -> Result<SeverityList, String> {
    let number = |s: &str| -> Result<u8, String> {
        match s.trim().parse::<u8>() {
            Ok(n @ 1..=5) => Ok(n),
            _ => Err(format!("severity `{}` is not one of 1, 2, 3, 4, 5", s.trim())),
        }
    };
    let mut list = match text.split_once("..") {
        Some((low, high)) => (number(low)?..=number(high)?).collect::<Vec<_>>(),
        None => text.split(',').map(number).collect::<Result<Vec<_>, _>>()?,
    };
    list.sort_unstable();
    list.dedup();
    if list.is_empty() {
        return Err(format!("`{text}` names no severity (write e.g. 1..5 or 1,3)"));
    }
    Ok(SeverityList(list))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

impl fmt::Display for CorruptionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "accuracy under corruption (onnxruntime; {} images per cell, params {}, seed {})", self.examples, self.params, self.seed)?;
        write!(f, "{:<18}", "corruption")?;
        for s in &self.severities {
            write!(f, " {:>7}", format!("s{s}"))?;
        }
        writeln!(f, " {:>7}", "mean")?;
        for row in &self.rows {
            write!(f, "{:<18}", row.corruption)?;
            for a in &row.accuracy {
                write!(f, " {:>6.2}%", 100.0 * a)?;
            }
            writeln!(f, " {:>6.2}%", 100.0 * row.mean)?;
        }
        write!(f, "mean corruption accuracy {:.2}%", 100.0 * self.mean_corruption_accuracy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_and_severity_lists_parse_and_bad_ones_are_explained() {
        assert_eq!(parse_corruptions("all").unwrap().0.len(), 15);
        assert_eq!(parse_corruptions("fog,gaussian_noise,fog").unwrap().0, vec![Corruption::GaussianNoise, Corruption::Fog]);
        assert!(parse_corruptions("fgo").unwrap_err().contains("gaussian_noise"));
        assert_eq!(parse_severities("2..4").unwrap().0, vec![2, 3, 4]);
        assert_eq!(parse_severities("5,1,5").unwrap().0, vec![1, 5]);
        assert!(parse_severities("0..5").unwrap_err().contains("severity `0`"));
        assert!(parse_severities("4..2").unwrap_err().contains("names no severity"));
    }

    #[test]
    fn means_are_taken_over_every_cell() {
        assert_eq!(mean(&[0.5, 1.0, 0.0]), 0.5);
        assert_eq!(mean(&[]), 0.0);
    }
}
