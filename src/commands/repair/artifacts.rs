//! The files of the main command's first two stages in the dump folder, and reading them back
//! so that a resumed run continues with exactly the block, cell and weights the stopped run had.

use std::path::{Path, PathBuf};

use tch::{nn, Tensor};

use crate::commands::search::{write_json, write_outputs, FILES as SEARCH_FILES};
use crate::data::DataError;
use crate::lower::{LoweredModel, Role};
use crate::search::cell::{Cell, CellShape};
use crate::search::genotype::Genotype;
use crate::baselines::{Method, MethodReport, WeightOutcome};
use crate::search::{Chosen, Outcome, SearchReport};
use crate::Error;

use super::stages::{read_json, DumpDir};
use super::Repaired;

/// The localize stage's file: the block and the ranking that chose it.
pub const LOCALIZE: &str = "localize.json";
/// D_fail (indices into the evaluation split): the failures the repair rate is measured on.
const FAILURES: &str = "failures.json";
/// A weight-only baseline's report.
const METHOD: &str = "method.json";
/// The model's trainable weights after a baseline or a whole-network fine-tune, by their place in the
/// lowered model (ONNX names may hold characters libtorch archives do not take as keys).
const BACKBONE: &str = "backbone.ot";

/// Writes the repair stage's files: ArchRepair's genotype.json, cell.ot and search.json, or a
/// baseline's method.json; failures.json; and backbone.ot when the model's own weights changed
/// (a baseline, or ArchRepair's whole-network fine-tune).
pub fn save_repair(dump: &DumpDir, repaired: &Repaired, lowered: &LoweredModel, fine_tuned: bool) -> Result<(), Error> {
    let weights_changed = match repaired {
        Repaired::Cell(outcome) => {
            let targets: Vec<PathBuf> = SEARCH_FILES.iter().map(|f| dump.path(f)).collect();
            write_outputs(outcome, dump.dir(), &targets)?;
            fine_tuned
        }
        Repaired::Weights(outcome) => {
            write_json(&outcome.report, &dump.path(METHOD))?;
            true
        }
    };
    write_json(&repaired.failures(), &dump.path(FAILURES))?;
    if weights_changed {
        let path = dump.path(BACKBONE);
        let named: Vec<(String, &Tensor)> = trainable(lowered).map(|(i, w)| (i.to_string(), w)).collect();
        let tmp = path.with_extension("ot.tmp");
        Tensor::save_multi(&named, &tmp).map_err(|e| DataError::format(&path, e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|source| DataError::Write { path: path.clone(), source })?;
    }
    Ok(())
}

/// The repair stage's outcome as `save_repair` wrote it; changed model weights are put back
/// into `lowered`.
pub fn load_repair(dump: &DumpDir, lowered: &LoweredModel, chosen: Option<Chosen>, method: Method) -> Result<Repaired, Error> {
    let failures: Vec<usize> = read_json(&dump.path(FAILURES))?;
    let backbone = dump.path(BACKBONE);
    if backbone.is_file() {
        restore_backbone(lowered, &backbone)?;
    }
    if method != Method::Archrepair {
        let report: MethodReport = read_json(&dump.path(METHOD))?;
        return Ok(Repaired::Weights(WeightOutcome { report, failures }));
    }
    let chosen = chosen.ok_or_else(|| unreadable(&dump.path(LOCALIZE), "no block was localized"))?;
    let report: SearchReport = read_json(&dump.path(SEARCH_FILES[2]))?;
    let genotype: Genotype = read_json(&dump.path(SEARCH_FILES[0]))?;
    let c = &report.cell;
    let shape = CellShape { in_channels: c.in_channels, out_channels: c.out_channels, stride: c.stride, channels: c.channels, nodes: c.nodes };
    let mut cell = nn::VarStore::new(lowered.device());
    let layers = Cell::derived(&(cell.root() / "cell"), shape, &genotype);
    let cell_path = dump.path(SEARCH_FILES[1]);
    cell.load(&cell_path).map_err(|e| unreadable(&cell_path, e))?;
    Ok(Repaired::Cell(Outcome { report, genotype, cell, layers, chosen, failures }))
}

fn trainable(lowered: &LoweredModel) -> impl Iterator<Item = (usize, &Tensor)> {
    lowered.weights().iter().enumerate().filter(|(_, w)| w.role == Role::Trainable).map(|(i, w)| (i, &w.tensor))
}

fn restore_backbone(lowered: &LoweredModel, path: &Path) -> Result<(), Error> {
    let saved = Tensor::load_multi_with_device(path, lowered.device()).map_err(|e| unreadable(path, e))?;
    let mut weights: Vec<(usize, &Tensor)> = trainable(lowered).collect();
    if saved.len() != weights.len() {
        return Err(unreadable(path, format!("{} tensors, the model has {} trainable weights", saved.len(), weights.len())));
    }
    tch::no_grad(|| {
        for (key, value) in &saved {
            let Some((_, weight)) = weights.iter_mut().find(|(i, _)| i.to_string() == *key) else {
                return Err(unreadable(path, format!("weight {key} is not a trainable weight of the model")));
            };
            if weight.size() != value.size() {
                return Err(unreadable(path, format!("weight {key} is {:?}, the model's {:?}", value.size(), weight.size())));
            }
            weight.shallow_clone().copy_(value);
        }
        Ok(())
    })
}

fn unreadable(path: &Path, reason: impl ToString) -> Error {
    DataError::format(path, format!("{}; start over with --force", reason.to_string())).into()
}
