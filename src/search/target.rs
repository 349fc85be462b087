//! What the cell replaces in the chosen block: the residual branch (the block's own shortcut,
//! its Add and what follows stay), or the whole block from entry to exit.
//!
//! ```text
//!   keep_shortcut: entry ─┬─[ residual branch ]─► target ─► Add ─► (ReLU) ─► exit
//!                         └─[ identity | projection ]──────────┘
//!   otherwise:     entry ─[ whole block ]─► target = exit
//! ```
//!
//! The residual branch is the Add operand with more block nodes between it and the entry (a
//! projection shortcut is one Conv-BN, the residual branch at least two convs).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::detect::{Block, BlockKind, Shortcut};
use crate::graph::Graph;

use super::cell::CellShape;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub block: usize,
    pub entry: String,
    /// The tensor the cell computes.
    pub tensor: String,
    /// True when the cell replaces the residual branch only.
    pub keeps_shortcut: bool,
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
    pub stride: i64,
}

impl Target {
    pub fn new(graph: &Graph, block: &Block, keep_shortcut: bool) -> Result<Target, String> {
        let shape = |s: &Option<Vec<i64>>, what: &str| {
            s.clone().filter(|s| s.len() == 3).ok_or_else(|| {
                format!("block {}: its {what} shape is unknown or not C x H x W; the search needs NCHW image features with known shapes", block.id)
            })
        };
        let input_shape = shape(&block.input_shape, "input")?;
        let output_shape = shape(&block.output_shape, "output")?;
        let stride = block.stride.unwrap_or(1);
        let residual = keep_shortcut && block.shortcut != Shortcut::None && block.kind != BlockKind::DenseLayer;
        let tensor = if residual { residual_branch(graph, block)? } else { block.exit.clone() };
        Ok(Target { block: block.id, entry: block.entry.clone(), tensor, keeps_shortcut: residual, input_shape, output_shape, stride })
    }

    pub fn cell_shape(&self, channels: Option<usize>, nodes: usize) -> CellShape {
        let out = self.output_shape[0];
        CellShape { in_channels: self.input_shape[0], out_channels: out, stride: self.stride, channels: channels.map_or(out, |c| c as i64), nodes }
    }

    pub fn describe(&self) -> String {
        format!(
            "block {} {} ({}x{}x{} → {}x{}x{}, stride {})",
            self.block,
            if self.keeps_shortcut { "residual branch" } else { "whole block" },
            self.input_shape[0],
            self.input_shape[1],
            self.input_shape[2],
            self.output_shape[0],
            self.output_shape[1],
            self.output_shape[2],
            self.stride
        )
    }
}

/// The residual operand of the block's last Add/Sum.
fn residual_branch(graph: &Graph, block: &Block) -> Result<String, String> {
    let members: HashSet<&str> = block.nodes.iter().map(String::as_str).collect();
    let merge = graph
        .nodes
        .iter()
        .filter(|n| members.contains(n.name.as_str()) && matches!(n.op_type.as_str(), "Add" | "Sum"))
        .last()
        .ok_or_else(|| format!("block {}: no Add node merges its shortcut; set `search.keep_shortcut: false` to replace the whole block", block.id))?;
    let depth = |tensor: &str| {
        let mut seen = HashSet::new();
        let mut stack = vec![tensor.to_string()];
        while let Some(t) = stack.pop() {
            if t == block.entry {
                continue;
            }
            if let Some(p) = graph.producer(&t).filter(|&p| members.contains(graph.nodes[p].name.as_str())) {
                if seen.insert(p) {
                    stack.extend(graph.nodes[p].inputs.iter().filter(|i| !i.is_empty()).cloned());
                }
            }
        }
        seen.len()
    };
    merge
        .inputs
        .iter()
        .filter(|i| !i.is_empty())
        .max_by_key(|i| depth(i))
        .cloned()
        .ok_or_else(|| format!("block {}: its Add node `{}` has no inputs", block.id, merge.name))
}
