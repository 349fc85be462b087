//! Blocks without a merge: inverted residuals that have no skip, and stages of plain networks.
//!
//! ```text
//!  inverted_residual, no skip                  stage (VGG style)
//!
//!      entry                                  entry (model input or pool output)
//!        │                                      │
//!   [Conv 1x1, BN, act]   expand              Conv [BN] act
//!   Conv kxk depthwise, BN, act               Conv [BN] act    (a strided Conv starts
//!   [SE: x * gate(x)]                          ...              the next stage)
//!   Conv 1x1, BN          linear projection     │
//!        │                                     exit (read by a pool, Flatten, ...)
//!       exit
//! ```

use std::collections::HashSet;

use super::flow::Flow;
use super::layers::{is_activation, ConvShape};
use super::merge::has_gate;
use super::{BlockKind, Found, Shortcut};
use crate::graph::{Graph, Node};

/// Inverted residuals without a skip, around every depthwise Conv not already in a block.
pub(super) fn plain_inverted_residuals(graph: &Graph, flow: &Flow, covered: &HashSet<usize>) -> Vec<Found> {
    let mut found = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if covered.contains(&i) || !ConvShape::of(graph, node).is_some_and(|c| c.is_depthwise()) {
            continue;
        }
        if let Some(block) = inverted_residual_around(graph, flow, i) {
            found.push(block);
        }
    }
    found
}

fn inverted_residual_around(graph: &Graph, flow: &Flow, depthwise: usize) -> Option<Found> {
    let input = graph.nodes[depthwise].inputs.first()?.as_str();
    // Depthwise → [BN] → activation → [SE gate] → Conv 1x1 → [BN]; the projection is linear.
    let mut t = graph.nodes[depthwise].outputs.first()?.as_str();
    t = step_if(graph, t, |n| n.op_type == "BatchNormalization").unwrap_or(t);
    t = activation_step(graph, flow, t)?;
    t = gate_step(graph, flow, t).unwrap_or(t);
    t = step_if(graph, t, |n| ConvShape::of(graph, n).is_some_and(|c| c.is_pointwise()))?;
    t = step_if(graph, t, |n| n.op_type == "BatchNormalization").unwrap_or(t);
    if graph.consumers(t).iter().any(|&c| is_activation(&graph.nodes[c])) {
        return None;
    }
    // With the expansion when it forms a single-exit region, else from the depthwise input.
    let (entry, nodes) = [expand_input(graph, input), Some(input)]
        .into_iter()
        .flatten()
        .find_map(|entry| flow.region(entry, t).filter(|nodes| flow.is_single_exit(nodes, t)).map(|nodes| (entry, nodes)))?;
    Some(Found {
        kind: BlockKind::InvertedResidual,
        shortcut: Shortcut::None,
        squeeze_excitation: has_gate(graph, flow, &nodes),
        entry: entry.to_string(),
        exit: t.to_string(),
        nodes,
    })
}

/// The input of the 1x1 expansion (Conv 1x1 → [BN] → activation) that produced `t`, if any.
fn expand_input<'g>(graph: &'g Graph, t: &str) -> Option<&'g str> {
    // SiLU reads its input twice, so no single-reader tests here: the caller's single-exit check
    // of the whole region decides.
    let producer = |t: &str| graph.producer(t).map(|i| &graph.nodes[i]);
    let activated = activation_input(graph, t)?;
    let conv_output = producer(activated)
        .filter(|n| n.op_type == "BatchNormalization")
        .and_then(|bn| bn.inputs.first())
        .map_or(activated, String::as_str);
    let conv = producer(conv_output)?;
    ConvShape::of(graph, conv).filter(ConvShape::is_pointwise)?;
    conv.inputs.first().map(String::as_str)
}

/// `u` when `t` is an activation of `u` read only on the way to `t`: a unary activation, or
/// `u * sigmoid(u)` (SiLU, as exporters write it).
fn activation_input<'g>(graph: &'g Graph, t: &str) -> Option<&'g str> {
    if let Some(node) = producer_if(graph, t, is_activation) {
        return node.inputs.first().map(String::as_str);
    }
    let mul = producer_if(graph, t, |n| n.op_type == "Mul" && n.inputs.len() == 2)?;
    let (a, b) = (mul.inputs[0].as_str(), mul.inputs[1].as_str());
    [(a, b), (b, a)].into_iter().find_map(|(u, gate)| {
        let sigmoid = producer_if(graph, gate, |n| n.op_type == "Sigmoid")?;
        let both_readers = graph.consumers(u).len() == 2 && !graph.is_output(u);
        (sigmoid.inputs.first().map(String::as_str) == Some(u) && both_readers).then_some(graph.nodes[graph.producer(gate)?].inputs[0].as_str())
    })
}

/// The node producing `t` when it matches and `t` has no other reader.
fn producer_if<'g>(graph: &'g Graph, t: &str, matches: impl Fn(&Node) -> bool) -> Option<&'g Node> {
    let node = &graph.nodes[graph.producer(t)?];
    (matches(node) && graph.consumers(t).len() == 1 && !graph.is_output(t)).then_some(node)
}

/// The output of `t`'s only reader, when it matches.
fn step_if<'g>(graph: &'g Graph, t: &str, matches: impl Fn(&Node) -> bool) -> Option<&'g str> {
    let [reader] = graph.consumers(t) else { return None };
    let node = &graph.nodes[*reader];
    if graph.is_output(t) || !matches(node) || node.inputs.first().map(String::as_str) != Some(t) {
        return None;
    }
    node.outputs.first().map(String::as_str)
}

/// An activation applied to `t`: a unary one, or `t * sigmoid(t)` (SiLU / Swish).
fn activation_step<'g>(graph: &'g Graph, flow: &Flow, t: &str) -> Option<&'g str> {
    step_if(graph, t, is_activation).or_else(|| gate_step(graph, flow, t))
}

/// `t * g(t)`: the output of a Mul that multiplies `t` by something computed from `t` alone
/// (SiLU's sigmoid, a squeeze-excitation gate).
fn gate_step<'g>(graph: &'g Graph, flow: &Flow, t: &str) -> Option<&'g str> {
    graph.consumers(t).iter().map(|&c| &graph.nodes[c]).find_map(|n| {
        let out = n.outputs.first()?.as_str();
        let gated = n.op_type == "Mul" && n.inputs.iter().any(|i| i == t) && flow.entry_of(out) == Some(t);
        let nodes = flow.region(t, out)?;
        (gated && flow.is_single_exit(&nodes, out)).then_some(out)
    })
}

/// Stages of a network without merges: maximal runs of Conv, BatchNormalization and activation
/// nodes along a chain, cut at anything else (pools, Flatten) and before a strided Conv.
pub(super) fn stages(graph: &Graph) -> Vec<Found> {
    let mut stages = Vec::new();
    let mut current: Option<Found> = None;
    for (i, node) in graph.nodes.iter().enumerate() {
        let (Some(input), Some(output)) = (node.inputs.first(), node.outputs.first()) else {
            close(&mut current, &mut stages, graph);
            continue;
        };
        let conv = ConvShape::of(graph, node);
        let member = node.domain.is_empty() && (conv.is_some() || node.op_type == "BatchNormalization" || is_activation(node));
        let extends = member && !conv.as_ref().is_some_and(|c| c.strided) && graph.consumers(input) == [i] && !graph.is_output(input);
        if let Some(stage) = current.as_mut().filter(|s| extends && &s.exit == input) {
            stage.nodes.push(i);
            stage.exit = output.clone();
            continue;
        }
        close(&mut current, &mut stages, graph);
        if conv.is_some() {
            current = Some(Found {
                kind: BlockKind::Stage,
                shortcut: Shortcut::None,
                squeeze_excitation: false,
                entry: input.clone(),
                exit: output.clone(),
                nodes: vec![i],
            });
        }
    }
    close(&mut current, &mut stages, graph);
    stages
}

fn close(current: &mut Option<Found>, stages: &mut Vec<Found>, graph: &Graph) {
    if let Some(stage) = current.take() {
        if stage.nodes.iter().any(|&i| graph.nodes[i].op_type == "Conv") {
            stages.push(stage);
        }
    }
}
