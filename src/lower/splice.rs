//! Splicing: run the lowered graph with one stretch of it replaced by a caller-supplied module,
//! for the search, which swaps a block (or its residual branch) for a candidate cell while every
//! other node runs as lowered.
//!
//! The replaced stretch is every step on a path from the `entry` tensor to the `target` tensor.
//! Steps of that stretch whose outputs something outside it still reads (e.g. the shared BN-ReLU
//! of a pre-activation block that also feeds the shortcut) keep running, so the rest of the graph
//! sees exactly the values it saw before.

use std::collections::HashSet;

use tch::Tensor;

use super::{LowerError, LoweredModel};

/// Which steps a spliced run skips and where it calls the replacement.
#[derive(Debug, Clone)]
pub struct Splice {
    entry: usize,
    target: usize,
    skip: Vec<bool>,
    /// Index of the first skipped step: the replacement runs just before it, while the entry
    /// value is certainly alive.
    at: usize,
}

/// A replacement for the spliced stretch: entry value → target value.
pub type Replacement<'a> = dyn FnMut(&Tensor) -> Result<Tensor, LowerError> + 'a;

impl LoweredModel {
    /// Plans a run in which the value of `target` is computed from `entry` by a replacement
    /// instead of by the steps between them (both are ONNX tensor names).
    pub fn splice(&self, entry: &str, target: &str) -> Result<Splice, LowerError> {
        let slot = |name: &str| {
            self.slot_of.get(name).copied().ok_or_else(|| LowerError::Tensor {
                tensor: name.to_string(),
                reason: "no value of this name is computed by the model".into(),
            })
        };
        let (entry, target) = (slot(entry)?, slot(target)?);
        // Forward: steps reached from the entry. Backward: steps the target depends on.
        let mut reached: HashSet<usize> = HashSet::from([entry]);
        let mut downstream = vec![false; self.steps.len()];
        for (i, step) in self.steps.iter().enumerate() {
            if step.inputs.iter().flatten().any(|s| reached.contains(s)) {
                downstream[i] = true;
                reached.extend(step.outputs.iter().copied());
            }
        }
        let mut needed: HashSet<usize> = HashSet::from([target]);
        let mut skip = vec![false; self.steps.len()];
        for (i, step) in self.steps.iter().enumerate().rev() {
            if step.outputs.iter().any(|s| needed.contains(s)) && downstream[i] {
                skip[i] = true;
                needed.extend(step.inputs.iter().flatten().copied());
            }
        }
        if !skip.iter().any(|&s| s) {
            return Err(LowerError::Tensor {
                tensor: self.name_of(target),
                reason: format!("is not computed from `{}`: there is nothing between them to replace", self.name_of(entry)),
            });
        }
        // Keep (un-skip) steps whose outputs a kept step reads, until nothing changes.
        loop {
            let read_by_kept: HashSet<usize> = self
                .steps
                .iter()
                .zip(&skip)
                .filter(|(_, s)| !**s)
                .flat_map(|(step, _)| step.inputs.iter().flatten().copied())
                .chain([self.output_slot])
                .collect();
            let mut changed = false;
            for (i, step) in self.steps.iter().enumerate() {
                if skip[i] && step.outputs.iter().any(|s| *s != target && read_by_kept.contains(s)) {
                    skip[i] = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let at = skip.iter().position(|&s| s).ok_or_else(|| LowerError::Tensor {
            tensor: self.name_of(target),
            reason: "every step before it is also needed elsewhere; nothing can be replaced".into(),
        })?;
        if !self.steps.iter().zip(&skip).any(|(step, s)| *s && step.outputs.contains(&target)) {
            return Err(LowerError::Tensor {
                tensor: self.name_of(target),
                reason: "its producer is needed by other nodes, so it cannot be replaced".into(),
            });
        }
        Ok(Splice { entry, target, skip, at })
    }

    /// Runs the graph with the spliced stretch replaced by `replacement`.
    pub fn forward_spliced(&self, x: &Tensor, train: bool, splice: &Splice, replacement: &mut Replacement) -> Result<Tensor, LowerError> {
        self.run_steps(x, train, Some((splice, replacement)), |_, _| {})
    }

    /// Number of steps the splice skips (for tests and messages).
    pub fn skipped_steps(&self, splice: &Splice) -> Vec<String> {
        self.steps.iter().zip(&splice.skip).filter(|(_, s)| **s).map(|(step, _)| step.node.clone()).collect()
    }

    pub(super) fn splice_step(splice: &Splice, index: usize) -> SpliceStep {
        if index == splice.at {
            SpliceStep::Replace { entry: splice.entry, target: splice.target }
        } else if splice.skip[index] {
            SpliceStep::Skip
        } else {
            SpliceStep::Run
        }
    }

    fn name_of(&self, slot: usize) -> String {
        self.slot_of.iter().find(|(_, s)| **s == slot).map_or_else(|| format!("#{slot}"), |(n, _)| n.clone())
    }
}

/// What a spliced run does at one step.
pub(super) enum SpliceStep {
    Run,
    Skip,
    /// Compute target from entry with the replacement, then skip this step.
    Replace { entry: usize, target: usize },
}
