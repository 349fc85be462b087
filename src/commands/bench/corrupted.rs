//! The corrupted test splits the corruption scenarios read, made once per subject dataset and
//! severity under `<out>/corrupted/<dataset>/s<severity>/` by the `corrupt` command's code (in
//! this process), and reused by later runs: a `bench-corrupted.json` beside the files records
//! what was asked for and written, so a changed request (another corruption, another limit)
//! remakes them and an unchanged one costs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::{CorruptedData, Plan, Scenario};
use crate::commands::corrupt::{corrupt_dataset, CorruptOptions};
use crate::commands::corruption_table::CorruptionOptions;
use crate::data::corrupt::Corruption;
use crate::data::{write_atomically, DataSource, DataError};
use crate::Error;

const RECORD: &str = "bench-corrupted.json";

/// What a folder of corrupted files was made from, and how many images each file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    source: String,
    split: String,
    format: Option<String>,
    corruptions: Vec<String>,
    severity: u8,
    limit: Option<usize>,
    seed: u64,
    count: usize,
}

/// The corrupted data of every (subject dataset, severity) the plan's corruption scenarios
/// need, keyed by (subject index, severity); made or reused.
pub fn prepare(plan: &Plan, out: &Path) -> Result<BTreeMap<(usize, u8), CorruptedData>, Error> {
    let severities: BTreeSet<u8> = plan.scenarios.iter().filter_map(|s| if let Scenario::Corruption { severity, .. } = s { Some(*severity) } else { None }).collect();
    // DataSource is not Ord: a few subjects, so linear look-ups.
    let mut made: Vec<((DataSource, u8), CorruptedData)> = Vec::new();
    let mut folders: Vec<(DataSource, String)> = Vec::new();
    let mut result = BTreeMap::new();
    for (i, subject) in plan.subjects.iter().enumerate() {
        let source = subject.data().source();
        let folder = match folders.iter().find(|(s, _)| *s == source) {
            Some((_, name)) => name.clone(),
            None => {
                let taken: BTreeSet<String> = folders.iter().map(|(_, n)| n.clone()).collect();
                let name = dataset_folder(&source.path, &taken);
                folders.push((source.clone(), name.clone()));
                name
            }
        };
        for &severity in &severities {
            let corruptions: BTreeSet<Corruption> = plan
                .scenarios
                .iter()
                .filter_map(|s| match s {
                    Scenario::Corruption { corruption, severity: s, .. } if *s == severity => Some(*corruption),
                    _ => None,
                })
                .chain(plan.evaluate_corruptions.iter().copied())
                .collect();
            let key = (source.clone(), severity);
            let data = match made.iter().find(|(k, _)| *k == key) {
                Some((_, data)) => data.clone(),
                None => {
                    let dir = out.join("corrupted").join(&folder).join(format!("s{severity}"));
                    let data = ensure(&dir, &source, &corruptions.into_iter().collect::<Vec<_>>(), severity, plan.profile.limit)?;
                    made.push((key, data.clone()));
                    data
                }
            };
            result.insert((i, severity), data);
        }
    }
    Ok(result)
}

/// A folder name for a dataset: its file or folder name, made unique among `taken`.
fn dataset_folder(path: &Path, taken: &BTreeSet<String>) -> String {
    let stem: String = path
        .file_stem()
        .map_or("data".into(), |s| s.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect());
    let mut name = stem.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{stem}-{n}");
        n += 1;
    }
    name
}

/// Makes the corrupted files in `dir` unless its record says they were made from the same request.
fn ensure(dir: &Path, source: &DataSource, corruptions: &[Corruption], severity: u8, limit: Option<usize>) -> Result<CorruptedData, Error> {
    let mut wanted = Record {
        source: source.path.display().to_string(),
        split: source.split.to_string(),
        format: source.format.map(|f| f.to_string()),
        corruptions: corruptions.iter().map(|c| c.name().to_string()).collect(),
        severity,
        limit,
        seed: 0,
        count: 0,
    };
    let record_path = dir.join(RECORD);
    if let Ok(bytes) = std::fs::read(&record_path) {
        if let Ok(found) = serde_json::from_slice::<Record>(&bytes) {
            let files_there = corruptions.iter().all(|c| dir.join(format!("{}.npy", c.name())).is_file());
            if files_there && (Record { count: 0, ..found.clone() }) == wanted {
                eprintln!("corrupted data: reusing {} ({} images per corruption)", dir.display(), found.count);
                return Ok(CorruptedData { dir: dir.to_path_buf(), count: found.count });
            }
        }
    }
    eprintln!("corrupted data: writing {} ({}, severity {severity}, {})", dir.display(), wanted.corruptions.join(", "), limit.map_or("every test image".into(), |l| format!("the first {l} test images")));
    let options = CorruptOptions {
        data: source.clone(),
        out: dir.to_path_buf(),
        suite: CorruptionOptions { corruptions: corruptions.to_vec(), severities: vec![severity], params: None, seed: 0 },
        limit,
        force: true,
        progress: false,
    };
    let report = corrupt_dataset(&options).map_err(|e| Error::Mismatch(format!("corrupting `{}` into `{}`: {e}", source.path.display(), dir.display())))?;
    wanted.count = report.count;
    let bytes = serde_json::to_vec_pretty(&wanted).map_err(|e| DataError::format(&record_path, e.to_string()))?;
    write_atomically(&record_path, &bytes)?;
    Ok(CorruptedData { dir: PathBuf::from(dir), count: report.count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_folders_are_named_after_the_data_and_kept_apart() {
        let taken = BTreeSet::from(["mnist".to_string()]);
        assert_eq!(dataset_folder(Path::new("/usr/share/datasets/fashion-mnist"), &taken), "fashion-mnist");
        assert_eq!(dataset_folder(Path::new("/elsewhere/mnist"), &taken), "mnist-2");
    }
}
