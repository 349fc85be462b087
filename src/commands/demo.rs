//! `archrepair-onnx demo`: the embedded default. The Fashion-MNIST subject and the demo spec
//! (fixtures/specs/demo.yaml) are compiled into the binary, so the demo runs from any folder of
//! any machine with the Fashion-MNIST dataset installed, not only from a checkout.

use std::path::{Path, PathBuf};

use super::repair::stages::Stage;
use super::repair::{default_report_dir, RepairOptions};
use super::search::SearchOptions;
use crate::data::DataError;
use crate::spec::Spec;
use crate::Error;

/// The subject: a ResNet-20 trained to 89% on Fashion-MNIST (fixtures/subjects/manifest.json).
const SUBJECT: &[u8] = include_bytes!("../../fixtures/subjects/fashion_mnist_resnet20.onnx");
const SUBJECT_NAME: &str = "fashion_mnist_resnet20.onnx";
const SPEC: &str = include_str!("../../fixtures/specs/demo.yaml");

/// The folder the demo writes into when none is given.
pub const DEFAULT_DIR: &str = "archrepair-demo";

pub struct DemoOptions {
    /// Where the subject, out.onnx, the report and the dump folder go.
    pub dir: PathBuf,
    /// Fashion-MNIST's IDX folder; default: the spec's (Debian's dataset-fashion-mnist).
    pub data: Option<PathBuf>,
    pub limit: Option<usize>,
    pub stop_after: Option<Stage>,
    /// Continue the demo's earlier run in `dir`.
    pub resume: bool,
    pub force: bool,
    pub threads: Option<usize>,
    pub progress: bool,
}

/// Writes the embedded subject into `dir` and returns it with the main command's options.
pub fn prepare(options: &DemoOptions) -> Result<(PathBuf, RepairOptions), Error> {
    let mut spec = Spec::from_yaml(SPEC).map_err(|e| Error::Mismatch(format!("the embedded demo spec: {e}")))?;
    if let Some(path) = &options.data {
        for data in [spec.data.as_mut(), spec.train_data.as_mut()].into_iter().flatten() {
            data.path = path.clone();
        }
    }
    let data = spec.data.as_ref().map(|d| d.source()).ok_or_else(|| Error::Mismatch("the embedded demo spec names no data".into()))?;
    if !data.path.is_dir() {
        return Err(Error::Mismatch(format!(
            "the demo reads Fashion-MNIST from `{}`, which does not exist; install Debian's dataset-fashion-mnist (scripts/setup.sh does), or pass --data DIR with its IDX files",
            data.path.display()
        )));
    }
    std::fs::create_dir_all(&options.dir).map_err(|source| DataError::Write { path: options.dir.clone(), source })?;
    let subject = options.dir.join(SUBJECT_NAME);
    write_subject(&subject, options.force)?;
    let output = options.dir.join("repaired.onnx");
    spec.threads = options.threads.unwrap_or(spec.threads);
    let repair = RepairOptions {
        search: SearchOptions {
            data,
            train: None, // the spec's train_data
            threads: spec.threads,
            spec,
            limit: options.limit,
            out: options.dir.join("repaired-dump"),
            force: options.force,
            resume: options.resume,
            progress: options.progress,
        },
        report_dir: default_report_dir(&output),
        output,
        stop_after: options.stop_after,
    };
    Ok((subject, repair))
}

/// The subject file; an existing one is kept when it holds the same bytes (a rerun), and
/// replaced only with `force` otherwise.
fn write_subject(path: &Path, force: bool) -> Result<(), Error> {
    match std::fs::read(path) {
        Ok(bytes) if bytes == SUBJECT => Ok(()),
        Ok(_) if !force => Err(Error::Mismatch(format!("`{}` exists and is not the demo's subject; pass --force to replace it, or choose another --out", path.display()))),
        _ => Ok(crate::data::write_atomically(path, SUBJECT)?),
    }
}
