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
//!
//! At `search.granularity: layer` the cell replaces one Conv node instead (its input → its
//! output; the BatchNormalization and activation after it stay, frozen).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::detect::{Block, BlockKind, Layer, Shortcut};
use crate::graph::Graph;

use super::cell::CellShape;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The block's id, or the layer's (as `archrepair-onnx blocks` lists them).
    pub block: usize,
    /// The Conv node the cell replaces, at layer granularity; None: a block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
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
        Ok(Target { block: block.id, layer: None, entry: block.entry.clone(), tensor, keeps_shortcut: residual, input_shape, output_shape, stride })
    }

    /// The cell in place of one Conv layer, from its input to its output.
    pub fn layer(layer: &Layer) -> Result<Target, String> {
        let image = |s: &Option<Vec<i64>>| s.clone().filter(|s| s.len() == 3);
        // The cell keeps "same" padding: each side becomes ceil(side / stride).
        let fits = |i: &[i64], o: &[i64]| layer.stride >= 1 && (1..3).all(|d| i[d].checked_add(layer.stride - 1).map(|v| v / layer.stride) == Some(o[d]));
        match (layer.op_type.as_str(), image(&layer.input_shape), image(&layer.output_shape)) {
            ("Conv", Some(input_shape), Some(output_shape)) if fits(&input_shape, &output_shape) => Ok(Target {
                block: layer.id,
                layer: Some(layer.node.clone()),
                entry: layer.input.clone(),
                tensor: layer.output.clone(),
                keeps_shortcut: false,
                input_shape,
                output_shape,
                stride: layer.stride,
            }),
            _ => Err(format!(
                "layer {} (`{}`, {}): the search cell replaces a 2-D convolution over C x H x W features with known shapes and \"same\" padding (output side = input side / stride); choose another layer (`search.block`, see `archrepair-onnx blocks`) or `search.granularity: block`",
                layer.id, layer.node, layer.op_type
            )),
        }
    }

    /// Whether the search can put a cell in place of `layer`.
    pub fn replaces_layer(layer: &Layer) -> bool {
        Target::layer(layer).is_ok()
    }
    pub fn cell_shape(&self, channels: Option<usize>, nodes: usize) -> CellShape {
        let out = self.output_shape[0];
        CellShape { in_channels: self.input_shape[0], out_channels: out, stride: self.stride, channels: channels.map_or(out, |c| c as i64), nodes }
    }

    pub fn describe(&self) -> String {
        let shape = |s: &[i64]| s.iter().map(i64::to_string).collect::<Vec<_>>().join("x");
        let unit = match &self.layer {
            Some(node) => format!("layer {} `{node}`", self.block),
            None => format!("block {} {}", self.block, if self.keeps_shortcut { "residual branch" } else { "whole block" }),
        };
        format!("{unit} ({} → {}, stride {})", shape(&self.input_shape), shape(&self.output_shape), self.stride)
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
