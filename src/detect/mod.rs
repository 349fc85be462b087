//! Block detection: the repairable units of a model nobody described to us.
//!
//! A **block** is a single-entry, single-exit region of the graph: one entry tensor, one exit
//! tensor, every path from the entry to the exit inside the region, and nothing outside the
//! region reading what it computes except through the exit. ArchRepair replaces one such region
//! by a searched cell, so these are the units it localizes and repairs.
//!
//! Detection is anchored on merges ([`merge`]): an Add/Sum whose operands meet again at a common
//! fork tensor is a residual block, a Concat of a tensor with features computed from it is a
//! dense layer. MobileNet-style inverted residuals without a skip are found as chains around
//! their depthwise convolution ([`chain`]). A network with none of these (VGG style) is cut into
//! **stages**: maximal convolution runs between spatial down-samplings. Every Conv and Gemm is also
//! listed as a **layer**, the unit of layer-level ablations.
//!
//! Ids are stable across runs: blocks (and layers) are numbered in the topological order of the
//! node producing their exit tensor, and the topological order is a function of the model file.

mod chain;
mod flow;
mod layers;
mod merge;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::graph::Graph;
use flow::Flow;
use layers::{example_shape, node_flops, parameters, ConvShape};
use crate::lower::{weight_roles, Role};
use crate::onnx::TensorData;

/// What a block is, by the shape of its main path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Two spatial convolutions on the main path (ResNet v1 basic block).
    Basic,
    /// 1x1 reduce, spatial convolution, 1x1 expand.
    Bottleneck,
    /// BatchNormalization (and activation) before the first convolution (ResNet v2).
    Preact,
    /// Optional 1x1 expand, depthwise convolution, 1x1 linear projection (MobileNet v2/v3).
    InvertedResidual,
    /// A residual merge whose main path fits none of the above.
    Residual,
    /// `Concat(x, f(x))` (DenseNet layer).
    DenseLayer,
    /// A maximal convolution run between spatial down-samplings (networks without skips).
    Stage,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Basic => "basic",
            BlockKind::Bottleneck => "bottleneck",
            BlockKind::Preact => "preact",
            BlockKind::InvertedResidual => "inverted_residual",
            BlockKind::Residual => "residual",
            BlockKind::DenseLayer => "dense_layer",
            BlockKind::Stage => "stage",
        }
    }
}

/// How the entry reaches the merge besides the main path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortcut {
    /// The entry tensor itself is added (or concatenated).
    Identity,
    /// The shortcut branch has its own convolution (1x1 conv + BN, usually strided).
    Projection,
    /// No skip connection (plain inverted residuals, stages).
    None,
}

impl Shortcut {
    pub fn as_str(self) -> &'static str {
        match self {
            Shortcut::Identity => "identity",
            Shortcut::Projection => "projection",
            Shortcut::None => "none",
        }
    }
}

/// One detected block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    pub id: usize,
    pub kind: BlockKind,
    pub shortcut: Shortcut,
    /// A squeeze-excitation gate (`x * sigmoid(fc(pool(x)))`) on the main path.
    pub squeeze_excitation: bool,
    pub entry: String,
    pub exit: String,
    /// Node names, in topological order.
    pub nodes: Vec<String>,
    /// Shape of one example (no batch axis); None where inference could not determine it.
    pub input_shape: Option<Vec<i64>>,
    pub output_shape: Option<Vec<i64>>,
    /// Input height / output height (1 for blocks that keep the resolution).
    pub stride: Option<i64>,
    /// Elements of the trainable weights the block's nodes read (BN running statistics excluded).
    pub params: usize,
    /// For one example; multiply-adds count 2. None where a shape is unknown.
    pub flops: Option<u64>,
}

impl Block {
    /// Whether the block has a skip connection (counted as a residual block).
    pub fn is_residual(&self) -> bool {
        self.shortcut != Shortcut::None && self.kind != BlockKind::DenseLayer
    }
}

/// One Conv or Gemm node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layer {
    pub id: usize,
    pub op_type: String,
    pub node: String,
    pub input: String,
    pub output: String,
    pub input_shape: Option<Vec<i64>>,
    pub output_shape: Option<Vec<i64>>,
    pub stride: i64,
    pub params: usize,
    pub flops: Option<u64>,
    /// The id of the block holding this layer, if any.
    pub block: Option<usize>,
}

/// Everything detection reports on a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub blocks: Vec<Block>,
    pub layers: Vec<Layer>,
}

impl Detection {
    pub fn residual_count(&self) -> usize {
        self.blocks.iter().filter(|b| b.is_residual()).count()
    }
}

/// A region found by one of the pattern passes, before costs and ids.
struct Found {
    kind: BlockKind,
    shortcut: Shortcut,
    squeeze_excitation: bool,
    entry: String,
    exit: String,
    /// Indices into `graph.nodes`, ascending.
    nodes: Vec<usize>,
}

/// Finds the blocks and layers of `graph` (shapes inferred, constants folded: see
/// [`crate::model::LoadedModel`]).
pub fn detect(graph: &Graph) -> Detection {
    let flow = Flow::new(graph);
    let mut found = merge::find(graph, &flow);
    let covered: HashSet<usize> = found.iter().flat_map(|f| f.nodes.iter().copied()).collect();
    found.extend(chain::plain_inverted_residuals(graph, &flow, &covered));
    if found.is_empty() {
        found = chain::stages(graph);
    }
    let exit_position = |f: &Found| graph.producer(&f.exit).unwrap_or(usize::MAX);
    found.sort_by_key(|f| (exit_position(f), f.nodes.first().copied()));
    found.dedup_by(|a, b| a.entry == b.entry && a.exit == b.exit);
    // Constants computed in the graph (the `light` models' ConstantOfShape weights) count too.
    let is_float_constant =
        |name: &str| flow.is_constant(name) && graph.initializers.get(name).is_none_or(|t| matches!(t.data, TensorData::Float(_)));
    let roles = weight_roles(graph, is_float_constant);
    let blocks: Vec<Block> = found.into_iter().enumerate().map(|(id, f)| block(graph, &roles, id, f)).collect();
    let layers = layers(graph, &roles, &blocks);
    Detection { blocks, layers }
}

fn block(graph: &Graph, roles: &HashMap<String, Role>, id: usize, f: Found) -> Block {
    let nodes: Vec<&crate::graph::Node> = f.nodes.iter().map(|&i| &graph.nodes[i]).collect();
    let mut seen = HashSet::new();
    let params = nodes.iter().flat_map(|n| parameters(graph, roles, n)).filter(|(name, _)| seen.insert(*name)).map(|(_, n)| n).sum();
    let flops = nodes.iter().try_fold(0u64, |acc, n| acc.checked_add(node_flops(graph, n)?));
    let (input_shape, output_shape) = (example_shape(graph, &f.entry), example_shape(graph, &f.exit));
    Block {
        id,
        kind: f.kind,
        shortcut: f.shortcut,
        squeeze_excitation: f.squeeze_excitation,
        stride: spatial_ratio(input_shape.as_deref(), output_shape.as_deref()),
        entry: f.entry,
        exit: f.exit,
        nodes: nodes.iter().map(|n| n.name.clone()).collect(),
        input_shape,
        output_shape,
        params,
        flops,
    }
}

/// Input height over output height of `[C, H, W...]` example shapes.
fn spatial_ratio(input: Option<&[i64]>, output: Option<&[i64]>) -> Option<i64> {
    let (&h_in, &h_out) = (input?.get(1)?, output?.get(1)?);
    (h_out > 0).then(|| h_in.checked_add(h_out - 1)).flatten().map(|sum| sum / h_out)
}

fn layers(graph: &Graph, roles: &HashMap<String, Role>, blocks: &[Block]) -> Vec<Layer> {
    let block_of = |name: &str| blocks.iter().find(|b| b.nodes.iter().any(|n| n == name)).map(|b| b.id);
    graph
        .nodes
        .iter()
        .filter(|n| n.domain.is_empty() && matches!(n.op_type.as_str(), "Conv" | "Gemm"))
        .enumerate()
        .map(|(id, n)| {
            let input = n.inputs.first().cloned().unwrap_or_default();
            let output = n.outputs.first().cloned().unwrap_or_default();
            let (input_shape, output_shape) = (example_shape(graph, &input), example_shape(graph, &output));
            let stride = ConvShape::of(graph, n)
                .and(n.attributes.ints("strides"))
                .map_or(1, |s| s.iter().copied().max().unwrap_or(1));
            Layer {
                id,
                op_type: n.op_type.clone(),
                node: n.name.clone(),
                params: parameters(graph, roles, n).map(|(_, count)| count).sum(),
                flops: node_flops(graph, n),
                block: block_of(&n.name),
                input,
                output,
                input_shape,
                output_shape,
                stride,
            }
        })
        .collect()
}

#[cfg(test)]
mod overflow_tests {
    //! Found by fuzzing (docs/fuzzing.md): costs of nodes whose dims come near i64::MAX.
    use super::*;
    use crate::graph::tests_support::*;

    #[test]
    fn flops_of_huge_shapes_are_unknown_not_wrapped() {
        let relu = node("Relu", "r", &["x"], &["y"]);
        let mut g = Graph::from_model(&model(13, vec![relu], &[("x", &[1, 1 << 32, 1 << 32])], &["y"])).unwrap();
        g.infer_shapes().unwrap();
        // 2^32 * 2^32 wrapped to 0.
        assert_eq!(node_flops(&g, &g.nodes[0]), None);
        assert_eq!(spatial_ratio(Some(&[1, i64::MAX]), Some(&[1, 2])), None);
        assert_eq!(spatial_ratio(Some(&[1, 8]), Some(&[1, 3])), Some(3));
    }

    #[test]
    fn conv_geometry_with_a_huge_group_is_unknown() {
        let conv = with(node("Conv", "c", &["x", "w"], &["y"]), vec![int("group", (1 << 62) + 1)]);
        let g = Graph::from_model(&model(13, vec![conv], &[("x", &[1, 4, 8, 8]), ("w", &[4, 4, 3, 3])], &["y"])).unwrap();
        assert_eq!(ConvShape::of(&g, &g.nodes[0]), None);
    }
}
