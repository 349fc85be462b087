//! Merge-anchored blocks: residual additions and dense concatenations.
//!
//! ```text
//!  basic / projection                    bottleneck               preact
//!
//!      entry ─────────┐                entry ──────┐            entry ────────────┐
//!        │            │                  │         │              │               │
//!   Conv 3x3 (s)  [Conv 1x1 (s)]      Conv 1x1     │             BN, Relu          │
//!     BN, Relu     [BN]              BN, Relu      │           Conv 3x3           │
//!   Conv 3x3          │               Conv 3x3     │            BN, Relu          │
//!      BN             │               BN, Relu     │           Conv 3x3           │
//!        └──── Add ───┘               Conv 1x1     │               └───── Add ────┘
//!              │                        BN         │                       │
//!           [Relu]                        └── Add ─┘                      exit
//!              │                              │
//!             exit                       [Relu] → exit
//!
//!  inverted_residual                      dense_layer
//!
//!      entry ──────────────┐               entry ───────────────┐
//!        │                 │                 │                  │
//!   [Conv 1x1, BN, act]    │           BN, Relu, Conv 1x1       │
//!   Conv kxk depthwise     │           BN, Relu, Conv 3x3       │
//!     BN, act              │                 │                  │
//!   [SE: x * gate(x)]      │                 └──── Concat ──────┘
//!   Conv 1x1, BN           │                         │
//!        └───── Add ───────┘                        exit
//!               │
//!              exit
//! ```
//!
//! The entry is the merge output's immediate dominator, so operand order never matters and Sum
//! (opset ≤ 7 exports) counts like Add. Not blocks: merges of branches from different model inputs
//! (only the virtual root dominates them), an Add with a constant operand (a bias), regions with a
//! tensor read from outside, and regions holding an operator the lowering cannot train.

use super::flow::Flow;
use super::layers::{is_activation, ConvShape};
use super::{BlockKind, Found, Shortcut};
use crate::graph::{Graph, Node};
use crate::lower::ops::SUPPORTED_OPS;

pub(super) fn find(graph: &Graph, flow: &Flow) -> Vec<Found> {
    graph.nodes.iter().filter_map(|node| merge_block(graph, flow, node)).collect()
}

fn merge_block(graph: &Graph, flow: &Flow, merge: &Node) -> Option<Found> {
    let concat = match (merge.domain.as_str(), merge.op_type.as_str()) {
        ("", "Add" | "Sum") => false,
        ("", "Concat") => true,
        _ => return None,
    };
    let mut operands: Vec<&str> =
        merge.inputs.iter().map(String::as_str).filter(|t| !t.is_empty() && !flow.is_constant(t)).collect();
    operands.dedup();
    if operands.len() < 2 {
        return None;
    }
    let merged = merge.outputs.first()?.as_str();
    let entry = flow.entry_of(merged)?;
    if concat && !operands.contains(&entry) {
        return None;
    }
    let exit = if concat { merged } else { post_merge_activation(graph, merged).unwrap_or(merged) };
    let nodes = flow.region(entry, exit)?;
    let lowerable = nodes.iter().all(|&i| {
        let n = &graph.nodes[i];
        n.domain.is_empty() && SUPPORTED_OPS.contains(&n.op_type.as_str())
    });
    if !lowerable || !flow.is_single_exit(&nodes, exit) {
        return None;
    }
    let (kind, shortcut, squeeze_excitation) = if concat {
        (BlockKind::DenseLayer, Shortcut::Identity, has_gate(graph, flow, &nodes))
    } else {
        classify_residual(graph, flow, entry, &operands)?
    };
    Some(Found { kind, shortcut, squeeze_excitation, entry: entry.to_string(), exit: exit.to_string(), nodes })
}

/// The output of the activation applied to `merged`, when that activation is its only reader.
fn post_merge_activation<'g>(graph: &'g Graph, merged: &str) -> Option<&'g str> {
    let [reader] = graph.consumers(merged) else { return None };
    let node = &graph.nodes[*reader];
    (is_activation(node) && !graph.is_output(merged)).then(|| node.outputs.first().map(String::as_str))?
}

/// Kind, shortcut and SE flag of a residual merge of `operands`, all dominated by `entry`.
fn classify_residual(graph: &Graph, flow: &Flow, entry: &str, operands: &[&str]) -> Option<(BlockKind, Shortcut, bool)> {
    let mut branches: Vec<Vec<usize>> = operands.iter().map(|o| flow.region(entry, o)).collect::<Option<_>>()?;
    // The shortest branch is the shortcut; the others form the main path.
    branches.sort_by_key(Vec::len);
    let shortcut_nodes = branches.remove(0);
    let mut main: Vec<usize> = branches.concat();
    main.sort_unstable();
    main.dedup();
    let convs: Vec<ConvShape> = main.iter().filter_map(|&i| ConvShape::of(graph, &graph.nodes[i])).collect();
    if convs.is_empty() {
        return None;
    }
    let shortcut = if shortcut_nodes.iter().any(|&i| graph.nodes[i].op_type == "Conv") {
        Shortcut::Projection
    } else {
        Shortcut::Identity
    };
    let first_conv = main.iter().position(|&i| graph.nodes[i].op_type == "Conv").unwrap_or(0);
    let normalised_first = main[..first_conv].iter().any(|&i| graph.nodes[i].op_type == "BatchNormalization");
    let kind = if convs.iter().any(ConvShape::is_depthwise) {
        BlockKind::InvertedResidual
    } else if normalised_first {
        BlockKind::Preact
    } else if convs.len() == 3 && convs[0].is_pointwise() && convs[1].is_spatial() && convs[2].is_pointwise() {
        BlockKind::Bottleneck
    } else if convs.len() == 2 && convs.iter().all(ConvShape::is_spatial) {
        BlockKind::Basic
    } else {
        BlockKind::Residual
    };
    Some((kind, shortcut, has_gate(graph, flow, &main)))
}

/// Whether `nodes` hold a squeeze-excitation gate: a Mul of a tensor by a sigmoid-like function
/// of a global pooling of that same tensor.
pub(super) fn has_gate(graph: &Graph, flow: &Flow, nodes: &[usize]) -> bool {
    nodes.iter().map(|&i| &graph.nodes[i]).filter(|n| n.op_type == "Mul").any(|mul| {
        let Some(out) = mul.outputs.first() else { return false };
        let Some(x) = flow.entry_of(out) else { return false };
        flow.region(x, out).is_some_and(|gate| {
            gate.iter().any(|&i| matches!(graph.nodes[i].op_type.as_str(), "GlobalAveragePool" | "ReduceMean"))
        })
    })
}
