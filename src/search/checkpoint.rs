//! The search checkpoint, written after every epoch: cell weights, α and both optimisers' state
//! (one libtorch archive) plus the epoch count and history (JSON). A checkpoint is only resumed
//! by the run it belongs to: its fingerprint (spec, model, block, seed) must match.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::{write_atomically, DataError};
use crate::Error;

use super::bilevel::EpochLog;
use super::net::SplicedNet;
use super::optim::{Adam, Sgd};

#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    pub fingerprint: String,
    pub epochs_done: usize,
    pub adam_steps: i64,
    pub history: Vec<EpochLog>,
}

pub struct Checkpoint {
    pub state: State,
    tensors: Vec<(String, Tensor)>,
}

fn files(folder: &Path) -> (PathBuf, PathBuf) {
    (folder.join("checkpoint.json"), folder.join("checkpoint.ot"))
}

/// Everything a checkpoint holds, by name (shallow: the live tensors). Archive names are
/// positional: libtorch archives treat '.' in a name as nesting.
fn named(net: &SplicedNet, sgd: &Sgd, adam: &Adam) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = net.cell_variables().into_iter().enumerate().map(|(i, t)| (format!("var_{i}"), t)).collect();
    if let Some(alpha) = &net.alpha {
        named.push(("alpha".into(), alpha.shallow_clone()));
    }
    named.extend(sgd.buffers.iter().enumerate().map(|(i, t)| (format!("sgd_{i}"), t.shallow_clone())));
    named.extend(adam.first.iter().enumerate().map(|(i, t)| (format!("adam1_{i}"), t.shallow_clone())));
    named.extend(adam.second.iter().enumerate().map(|(i, t)| (format!("adam2_{i}"), t.shallow_clone())));
    named
}

impl Checkpoint {
    /// The state after `epochs_done` epochs, copied: the point an epoch that diverges rolls
    /// back to.
    pub fn capture(fingerprint: &str, epochs_done: usize, history: &[EpochLog], net: &SplicedNet, sgd: &Sgd, adam: &Adam) -> Checkpoint {
        let tensors = named(net, sgd, adam).into_iter().map(|(name, t)| (name, t.detach().copy())).collect();
        Checkpoint { state: State { fingerprint: fingerprint.to_string(), epochs_done, adam_steps: adam.steps, history: history.to_vec() }, tensors }
    }

    pub fn save(folder: &Path, fingerprint: &str, epochs_done: usize, history: &[EpochLog], net: &SplicedNet, sgd: &Sgd, adam: &Adam) -> Result<(), Error> {
        let (json, archive) = files(folder);
        std::fs::create_dir_all(folder).map_err(|source| DataError::Write { path: folder.to_path_buf(), source })?;
        let tmp = archive.with_extension("ot.tmp");
        Tensor::save_multi(&named(net, sgd, adam), &tmp).map_err(|e| DataError::format(&archive, e.to_string()))?;
        std::fs::rename(&tmp, &archive).map_err(|source| DataError::Write { path: archive.clone(), source })?;
        let state = State { fingerprint: fingerprint.to_string(), epochs_done, adam_steps: adam.steps, history: history.to_vec() };
        let text = serde_json::to_string_pretty(&state).map_err(|e| DataError::format(&json, e.to_string()))?;
        write_atomically(&json, text.as_bytes())?;
        Ok(())
    }

    /// The checkpoint in `folder`, if there is one; an error if it belongs to another run.
    pub fn load(folder: &Path, fingerprint: &str) -> Result<Option<Checkpoint>, Error> {
        let (json, archive) = files(folder);
        if !json.exists() || !archive.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&json).map_err(|source| DataError::Read { path: json.clone(), source })?;
        let state: State = serde_json::from_str(&text).map_err(|e| DataError::format(&json, e.to_string()))?;
        if state.fingerprint != fingerprint {
            return Err(Error::Mismatch(format!(
                "`{}` belongs to another search (different spec, model, block or seed); remove the folder or run without --resume",
                json.display()
            )));
        }
        let tensors = Tensor::load_multi(&archive).map_err(|e| DataError::format(&archive, e.to_string()))?;
        Ok(Some(Checkpoint { state, tensors }))
    }

    /// Puts the saved values back into the net and the optimisers.
    pub fn restore(&self, net: &SplicedNet, sgd: &mut Sgd, adam: &mut Adam) -> Result<(), Error> {
        let find = |name: &str| {
            self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| Error::Mismatch(format!("the checkpoint lacks `{name}`")))
        };
        let copy = |dst: &Tensor, name: &str| -> Result<(), Error> {
            let src = find(name)?;
            tch::no_grad(|| dst.shallow_clone().f_copy_(src)).map_err(Error::torch("restoring the checkpoint"))
        };
        for (i, t) in net.cell_variables().iter().enumerate() {
            copy(t, &format!("var_{i}"))?;
        }
        if let Some(alpha) = &net.alpha {
            copy(alpha, "alpha")?;
        }
        for (i, t) in sgd.buffers.iter().enumerate() {
            copy(t, &format!("sgd_{i}"))?;
        }
        for (i, t) in adam.first.iter().enumerate() {
            copy(t, &format!("adam1_{i}"))?;
        }
        for (i, t) in adam.second.iter().enumerate() {
            copy(t, &format!("adam2_{i}"))?;
        }
        adam.steps = self.state.adam_steps;
        Ok(())
    }
}
