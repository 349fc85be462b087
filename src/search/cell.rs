//! The cell that replaces a block: one input (the block's entry), an input adapter to C channels
//! at the block's output resolution, `nodes` intermediate nodes (node j sums one edge from the
//! adapter output and from every earlier node), and a projection of the nodes' concatenation to
//! the block's output channels.
//!
//! ```text
//!   entry ─► adapter ─► s0 ──┬──────────┬─────────┐
//!                            ▼          ▼         ▼
//!                           n0 ───────► n1 ──...► n3      ni = Σ_{j<=i} edge_ij(s_j)
//!                            └─────┬────┴─────────┘
//!                               concat ─► ReLU-Conv1x1-BN ─► cell output
//! ```
//!
//! During the search every edge is a mixed op, the softmax(α)-weighted sum of all candidates;
//! the derived cell has the genotype's edges, one op each. Both are this one type.

use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use super::genotype::Genotype;
use super::ops::{CandidateOp, OpKind};

/// What the cell must fit: the replaced tensor's channels and the block's stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellShape {
    pub in_channels: i64,
    pub out_channels: i64,
    pub stride: i64,
    /// Channels inside the cell (C).
    pub channels: i64,
    pub nodes: usize,
}

/// Input adapter: ReLU-Conv1x1-BN, or DARTS's factorized reduce at stride 2 (two 1x1 stride-2
/// convs, the second on the input shifted by one pixel, concatenated), so no pixel is dropped.
#[derive(Debug)]
pub enum Adapter {
    Conv { conv: nn::Conv2D, bn: nn::BatchNorm, stride: i64 },
    FactorizedReduce { even: nn::Conv2D, odd: nn::Conv2D, bn: nn::BatchNorm },
}

impl Adapter {
    fn new(path: &nn::Path, shape: &CellShape) -> Adapter {
        let (cin, c) = (shape.in_channels, shape.channels);
        let bn = batch_norm(&(path / "bn"), c);
        if shape.stride == 2 && c >= 2 {
            let cfg = nn::ConvConfig { stride: 2, bias: false, ..Default::default() };
            let half = c / 2;
            Adapter::FactorizedReduce { even: nn::conv2d(path / "even", cin, half, 1, cfg), odd: nn::conv2d(path / "odd", cin, c - half, 1, cfg), bn }
        } else {
            let cfg = nn::ConvConfig { stride: shape.stride, bias: false, ..Default::default() };
            Adapter::Conv { conv: nn::conv2d(path / "conv", cin, c, 1, cfg), bn, stride: shape.stride }
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.relu();
        match self {
            Adapter::Conv { conv, bn, .. } => bn.forward_t(&conv.forward(&x), train),
            Adapter::FactorizedReduce { even, odd, bn } => {
                let (h, w) = (x.size()[2], x.size()[3]);
                // Shift by one pixel, zero-padded back to H x W: both halves get ceil(H/2).
                let shifted = x.narrow(2, 1, h - 1).narrow(3, 1, w - 1).constant_pad_nd([0, 1, 0, 1]);
                bn.forward_t(&Tensor::cat(&[even.forward(&x), odd.forward(&shifted)], 1), train)
            }
        }
    }
}

/// One edge: its source state and its candidate operations (one, in a derived cell).
#[derive(Debug)]
pub struct Edge {
    pub node: usize,
    pub from: usize,
    pub ops: Vec<(OpKind, CandidateOp)>,
}

#[derive(Debug)]
pub struct Cell {
    pub shape: CellShape,
    pub adapter: Adapter,
    pub edges: Vec<Edge>,
    pub project: (nn::Conv2D, nn::BatchNorm),
}

impl Cell {
    /// The search cell: every edge from every earlier state, all of `ops` on each.
    pub fn search(root: &nn::Path, shape: CellShape, ops: &[OpKind]) -> Cell {
        let links: Vec<(usize, usize, Vec<OpKind>)> =
            (0..shape.nodes).flat_map(|node| (0..=node).map(move |from| (node, from))).map(|(n, f)| (n, f, ops.to_vec())).collect();
        Cell::build(root, shape, &links)
    }

    /// The derived cell of `genotype`.
    pub fn derived(root: &nn::Path, shape: CellShape, genotype: &Genotype) -> Cell {
        let links: Vec<(usize, usize, Vec<OpKind>)> = genotype
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(node, edges)| edges.iter().map(move |e| (node, e.from, vec![e.op])))
            .collect();
        Cell::build(root, shape, &links)
    }

    fn build(root: &nn::Path, shape: CellShape, links: &[(usize, usize, Vec<OpKind>)]) -> Cell {
        let adapter = Adapter::new(&(root / "adapter"), &shape);
        let edges = links
            .iter()
            .map(|(node, from, ops)| {
                let path = root / format!("n{node}_from{from}");
                let ops = ops.iter().map(|&op| (op, op.build(&(&path / op.name()), shape.channels))).collect();
                Edge { node: *node, from: *from, ops }
            })
            .collect();
        let cfg = nn::ConvConfig { bias: false, ..Default::default() };
        let project = (
            nn::conv2d(root / "project" / "conv", shape.channels * shape.nodes as i64, shape.out_channels, 1, cfg),
            batch_norm(&(root / "project" / "bn"), shape.out_channels),
        );
        Cell { shape, adapter, edges, project }
    }

    /// The cell's output. `weights` [edges, ops]: the mixing weights of a search cell
    /// (softmax(α)); None for a derived cell (one op per edge).
    pub fn forward_t(&self, x: &Tensor, weights: Option<&Tensor>, train: bool) -> Tensor {
        let mut states = vec![self.adapter.forward_t(x, train)];
        let mut sums: Vec<Option<Tensor>> = (0..self.shape.nodes).map(|_| None).collect();
        let mut next_edge = 0;
        for node in 0..self.shape.nodes {
            while next_edge < self.edges.len() && self.edges[next_edge].node == node {
                let edge = &self.edges[next_edge];
                let input = &states[edge.from];
                let mut out: Option<Tensor> = None;
                for (k, (kind, op)) in edge.ops.iter().enumerate() {
                    if *kind == OpKind::None {
                        continue; // contributes zero
                    }
                    let y = op.forward_t(input, train);
                    let y = match weights {
                        Some(w) => y * w.get(next_edge as i64).get(k as i64),
                        None => y,
                    };
                    out = Some(match out {
                        Some(o) => o + y,
                        None => y,
                    });
                }
                if let Some(out) = out {
                    sums[node] = Some(match sums[node].take() {
                        Some(s) => s + out,
                        None => out,
                    });
                }
                next_edge += 1;
            }
            // A node whose edges are all `none` is zero.
            let value = sums[node].take().unwrap_or_else(|| states[0].zeros_like());
            states.push(value);
        }
        let concat = Tensor::cat(&states[1..], 1);
        let (conv, bn) = &self.project;
        bn.forward_t(&conv.forward(&concat.relu()), train)
    }

    /// Number of candidate ops per edge (the second dimension of α).
    pub fn ops_per_edge(&self) -> usize {
        self.edges.first().map_or(0, |e| e.ops.len())
    }

    /// Shape of α for this cell: [edges, ops per edge].
    pub fn mixing_shape(&self) -> [i64; 2] {
        [self.edges.len() as i64, self.ops_per_edge() as i64]
    }
}

/// BatchNormalization's epsilon in every cell layer (export writes the same value).
pub const BN_EPS: f64 = 1e-5;

/// A cell BatchNormalization layer: affine, epsilon [`BN_EPS`].
pub fn batch_norm(path: &nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm2d(path, channels, nn::BatchNormConfig { eps: BN_EPS, ..Default::default() })
}

/// Softmax over each edge's candidates.
pub fn mixing_weights(alpha: &Tensor) -> Tensor {
    alpha.softmax(-1, Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn every_candidate_op_keeps_shape_and_stride() {
        let vs = nn::VarStore::new(Device::Cpu);
        for (h, w) in [(7, 7), (5, 9), (1, 1)] {
            let x = Tensor::randn([2, 6, h, w], (Kind::Float, Device::Cpu));
            for op in OpKind::ALL {
                let built = op.build(&(vs.root() / format!("{}_{h}_{w}", op.name())), 6);
                for train in [true, false] {
                    assert_eq!(built.forward_t(&x, train).size(), x.size(), "{op} on {h}x{w}");
                }
            }
        }
    }

    #[test]
    fn the_cell_fits_stride_and_channel_changes() {
        let ops = OpKind::ALL;
        for (cin, cout, stride, h, expect) in [(8, 8, 1, 9, 9), (8, 12, 2, 9, 5), (8, 12, 2, 8, 4), (3, 16, 2, 7, 4)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let shape = CellShape { in_channels: cin, out_channels: cout, stride, channels: 6, nodes: 3 };
            let cell = Cell::search(&vs.root(), shape, &ops);
            assert_eq!(cell.edges.len(), 6, "1 + 2 + 3 edges");
            let alpha = Tensor::zeros(cell.mixing_shape(), (Kind::Float, Device::Cpu));
            let y = cell.forward_t(&Tensor::randn([2, cin, h, h], (Kind::Float, Device::Cpu)), Some(&mixing_weights(&alpha)), true);
            assert_eq!(y.size(), vec![2, cout, expect, expect], "{cin}->{cout} stride {stride} on {h}x{h}");
        }
    }
}
