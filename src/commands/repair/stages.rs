//! The main command's stages and its dump folder, which lets a run stop after a stage
//! (`--stop-after`) and a later run continue after the last finished one (`--resume DIR`).
//!
//! A stage first writes its artifacts, then records itself in `stages.json`, each file
//! atomically: a stage listed there has all its files, whenever the run was killed. The record
//! holds a fingerprint of everything that decides the stages' results (the input model's bytes,
//! the data, the spec without `gate`, `report` and `threads`), so a folder is only continued by
//! the run that made it, while the gate and the report may change between a stop and a resume.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::DataError;
use crate::report::StageTime;
use crate::Error;

/// The stages a run can stop after, in pipeline order. The last step, the gate and out.onnx
/// with the report, always runs unless the run stops earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Which block: localize.json.
    Localize,
    /// D_fail, the architecture search and the training of the derived cell: genotype.json,
    /// cell.ot, search.json, failures.json (and backbone.ot after a whole-network fine-tune).
    Search,
    /// The repaired model before the gate marks it: repaired.onnx.
    Export,
    /// onnxruntime and tract against the tch model: validation.json.
    Validate,
    /// Before/after by onnxruntime: measured.json.
    Measure,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Localize, Stage::Search, Stage::Export, Stage::Validate, Stage::Measure];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Localize => "localize",
            Stage::Search => "search",
            Stage::Export => "export",
            Stage::Validate => "validate",
            Stage::Measure => "measure",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == s.to_ascii_lowercase()).ok_or_else(|| {
            format!("unknown stage `{s}`; expected one of {}", Stage::ALL.map(Stage::as_str).join(", "))
        })
    }
}

/// The file that lists the finished stages.
pub const MANIFEST: &str = "stages.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    fingerprint: String,
    /// The input model, as given (for the error that names another run's folder).
    input: String,
    finished: Vec<Stage>,
    /// Seconds of the finished stages' steps (search: collect, search, train).
    times: Vec<StageTime>,
}

/// The dump folder of one run, with the stages it has finished.
pub struct DumpDir {
    dir: PathBuf,
    manifest: Manifest,
    /// How many of `manifest.times` an earlier run measured.
    resumed_times: usize,
}

impl DumpDir {
    /// A fresh run's folder. A folder holding another run's stages is only reused with
    /// `force` (the check comes before any long work).
    pub fn start(dir: &Path, fingerprint: &str, input: &Path, force: bool) -> Result<DumpDir, Error> {
        Self::refuse_earlier_run(dir, force)?;
        std::fs::create_dir_all(dir).map_err(|source| DataError::Write { path: dir.to_path_buf(), source })?;
        let dump = DumpDir {
            dir: dir.to_path_buf(),
            manifest: Manifest { format: FORMAT_VERSION, fingerprint: fingerprint.into(), input: input.display().to_string(), finished: Vec::new(), times: Vec::new() },
            resumed_times: 0,
        };
        dump.save()?;
        Ok(dump)
    }

    /// The error for a folder holding another run's stages (unless `force`); reads only, so
    /// the main command checks it before its other checks and creates the folder after them.
    pub fn refuse_earlier_run(dir: &Path, force: bool) -> Result<(), Error> {
        let manifest_path = dir.join(MANIFEST);
        if manifest_path.exists() && !force {
            let finished = read_json::<Manifest>(&manifest_path).map(|m| m.finished.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
            return Err(Error::Mismatch(format!(
                "`{}` holds the stages of an earlier run (finished: {}); continue it with --resume, start over with --force, or use another dump folder",
                dir.display(),
                if finished.is_empty() { "none" } else { &finished },
            )));
        }
        Ok(())
    }

    /// An earlier run's folder, to continue after its last finished stage; refused when that
    /// run had another model, data or spec.
    pub fn resume(dir: &Path, fingerprint: &str) -> Result<DumpDir, Error> {
        let manifest_path = dir.join(MANIFEST);
        if !manifest_path.is_file() {
            return Err(Error::Mismatch(format!(
                "--resume {}: no {MANIFEST} there, so no earlier run to continue; run without --resume (the dump folder is --dump-dir, default <OUT stem>-dump)",
                dir.display()
            )));
        }
        let manifest = read_json::<Manifest>(&manifest_path)?;
        if manifest.format != FORMAT_VERSION {
            return Err(Error::Mismatch(format!("`{}` is format {}, this build reads {FORMAT_VERSION}; start over with --force", manifest_path.display(), manifest.format)));
        }
        if manifest.fingerprint != fingerprint {
            return Err(Error::Mismatch(format!(
                "--resume {}: that folder belongs to another run (input `{}`); its model file, data or spec (other than gate, report and threads) differ from this one's. Use the same ones, or start over with --force",
                dir.display(),
                manifest.input
            )));
        }
        let resumed_times = manifest.times.len();
        Ok(DumpDir { dir: dir.to_path_buf(), manifest, resumed_times })
    }

    pub fn finished(&self, stage: Stage) -> bool {
        self.manifest.finished.contains(&stage)
    }

    /// The last finished stage, if any.
    pub fn last_finished(&self) -> Option<Stage> {
        self.manifest.finished.iter().max().copied()
    }

    /// Records `stage` as finished (its artifacts are written) with the seconds of its steps.
    pub fn record(&mut self, stage: Stage, times: Vec<StageTime>) -> Result<(), Error> {
        self.manifest.finished.retain(|s| *s != stage);
        self.manifest.finished.push(stage);
        self.manifest.times.extend(times);
        self.save()
    }

    /// `file` inside the folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every finished step's seconds, those of an earlier run marked `resumed`.
    pub fn times(&self) -> Vec<StageTime> {
        self.manifest.times.iter().enumerate().map(|(i, t)| StageTime { resumed: i < self.resumed_times, ..t.clone() }).collect()
    }

    fn save(&self) -> Result<(), Error> {
        crate::commands::search::write_json(&self.manifest, &self.dir.join(MANIFEST))
    }
}

/// Reads a JSON artifact an earlier stage wrote.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|e| DataError::format(path, format!("{e}; start over with --force")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(stage: &str) -> StageTime {
        StageTime { stage: stage.into(), seconds: 1.5, resumed: false }
    }

    #[test]
    fn stages_parse_by_name_and_keep_pipeline_order() {
        assert_eq!("Export".parse::<Stage>(), Ok(Stage::Export));
        let err = "train".parse::<Stage>().unwrap_err();
        assert!(err.contains("localize, search, export, validate, measure"), "{err}");
        assert!(Stage::Localize < Stage::Search && Stage::Validate < Stage::Measure);
    }

    #[test]
    fn a_resumed_folder_keeps_finished_stages_and_marks_their_times() {
        let dir = tempfile::tempdir().unwrap();
        let input = Path::new("in.onnx");
        let mut dump = DumpDir::start(dir.path(), "abc", input, false).unwrap();
        dump.record(Stage::Localize, vec![time("localize")]).unwrap();

        let mut again = DumpDir::resume(dir.path(), "abc").unwrap();
        assert!(again.finished(Stage::Localize) && !again.finished(Stage::Search));
        assert_eq!(again.last_finished(), Some(Stage::Localize));
        again.record(Stage::Search, vec![time("collect"), time("search")]).unwrap();
        let resumed: Vec<bool> = again.times().iter().map(|t| t.resumed).collect();
        assert_eq!(resumed, [true, false, false]);
    }

    #[test]
    fn another_runs_folder_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        DumpDir::start(dir.path(), "abc", Path::new("in.onnx"), false).unwrap();
        let fresh = DumpDir::start(dir.path(), "abc", Path::new("in.onnx"), false).err().unwrap().to_string();
        assert!(fresh.contains("--resume") && fresh.contains("--force"), "{fresh}");
        let other = DumpDir::resume(dir.path(), "xyz").err().unwrap().to_string();
        assert!(other.contains("another run") && other.contains("in.onnx"), "{other}");
        assert!(DumpDir::start(dir.path(), "xyz", Path::new("in.onnx"), true).is_ok());
        let empty = tempfile::tempdir().unwrap();
        let none = DumpDir::resume(empty.path(), "abc").err().unwrap().to_string();
        assert!(none.contains("no stages.json"), "{none}");
    }
}
