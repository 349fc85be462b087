//! The genotype: the derived cell as plain data (JSON), never code. Derivation follows DARTS:
//! each node keeps its two incoming edges whose strongest non-`none` candidate weighs most, with
//! that candidate as the edge's op; then the skip_connect cap (a collapse guard) replaces the
//! weakest surplus skip edges by their best other candidate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ops::OpKind;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GenotypeEdge {
    pub op: OpKind,
    /// 0 = the adapter output, i = intermediate node i-1.
    pub from: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Genotype {
    /// Incoming edges of each intermediate node.
    pub nodes: Vec<Vec<GenotypeEdge>>,
}

/// Edges kept per node (DARTS: 2).
pub const EDGES_PER_NODE: usize = 2;

impl Genotype {
    /// Derives the genotype from the mixing weights `weights[edge][op]` of a search cell whose
    /// edges are node-major (node j has j+1 edges, from states 0..=j) and whose candidates are
    /// `ops`. At most `max_skip` edges end up as skip_connect.
    pub fn derive(weights: &[Vec<f64>], ops: &[OpKind], nodes: usize, max_skip: usize) -> Genotype {
        // (node, from, best op index, its weight, runner-up non-skip op index)
        let mut chosen: Vec<Vec<(usize, usize, f64)>> = Vec::with_capacity(nodes);
        let mut edge = 0;
        for node in 0..nodes {
            let mut candidates: Vec<(usize, usize, f64)> = (0..=node)
                .map(|from| {
                    let w = &weights[edge + from];
                    let (best, weight) = strongest(w, ops, |_| true);
                    (from, best, weight)
                })
                .collect();
            edge += node + 1;
            candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
            candidates.truncate(EDGES_PER_NODE);
            candidates.sort_by_key(|c| c.0);
            chosen.push(candidates);
        }
        // The skip cap: demote the weakest skip edges first.
        let mut skips: Vec<(f64, usize, usize)> = Vec::new();
        for (node, edges) in chosen.iter().enumerate() {
            for (k, &(_, op, weight)) in edges.iter().enumerate() {
                if ops[op] == OpKind::SkipConnect {
                    skips.push((weight, node, k));
                }
            }
        }
        skips.sort_by(|a, b| a.0.total_cmp(&b.0));
        let surplus = skips.len().saturating_sub(max_skip);
        for &(_, node, k) in skips.iter().take(surplus) {
            let from = chosen[node][k].0;
            let w = &weights[node * (node + 1) / 2 + from];
            let (best, weight) = strongest(w, ops, |op| op != OpKind::SkipConnect);
            chosen[node][k] = (from, best, weight);
        }
        Genotype {
            nodes: chosen.into_iter().map(|edges| edges.into_iter().map(|(from, op, _)| GenotypeEdge { op: ops[op], from }).collect()).collect(),
        }
    }

    /// How many edges use each op.
    pub fn histogram(&self) -> BTreeMap<OpKind, usize> {
        let mut counts = BTreeMap::new();
        for edge in self.nodes.iter().flatten() {
            *counts.entry(edge.op).or_insert(0) += 1;
        }
        counts
    }
}

/// Index and weight of the heaviest candidate other than `none` that `allowed` accepts; `none`
/// itself only when nothing else is allowed.
fn strongest(weights: &[f64], ops: &[OpKind], allowed: impl Fn(OpKind) -> bool) -> (usize, f64) {
    let pick = |filter: &dyn Fn(OpKind) -> bool| {
        weights.iter().enumerate().filter(|(i, _)| filter(ops[*i])).max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, w)| (i, *w))
    };
    pick(&|op| op != OpKind::None && allowed(op)).or_else(|| pick(&|_| true)).unwrap_or((0, 0.0))
}

impl fmt::Display for Genotype {
    /// `n0 = sep_conv_3x3(s0) | n1 = skip_connect(s0) + dil_conv_3x3(n0) | ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = |from: usize| if from == 0 { "in".to_string() } else { format!("n{}", from - 1) };
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, edges)| {
                let terms: Vec<String> = edges.iter().map(|e| format!("{}({})", e.op, source(e.from))).collect();
                format!("n{i}={}", terms.join("+"))
            })
            .collect();
        f.write_str(&nodes.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OpKind::*;

    const OPS: [OpKind; 4] = [None, SkipConnect, SepConv3x3, MaxPool3x3];

    #[test]
    fn keeps_the_two_strongest_edges_ignoring_none() {
        // node 0: one edge; node 1: edges from s0 and n0; node 2: from s0, n0, n1.
        let w = vec![
            vec![0.9, 0.05, 0.03, 0.02],  // n0 <- s0: none dominates; the best other is skip 0.05
            vec![0.1, 0.1, 0.7, 0.1],     // n1 <- s0: sep 0.7
            vec![0.1, 0.6, 0.2, 0.1],     // n1 <- n0: skip 0.6
            vec![0.1, 0.1, 0.1, 0.7],     // n2 <- s0: max 0.7
            vec![0.7, 0.1, 0.1, 0.1],     // n2 <- n0: only none is strong: 0.1
            vec![0.1, 0.2, 0.6, 0.1],     // n2 <- n1: sep 0.6
        ];
        let g = Genotype::derive(&w, &OPS, 3, 8);
        assert_eq!(g.nodes[0], vec![GenotypeEdge { op: SkipConnect, from: 0 }]);
        assert_eq!(g.nodes[1], vec![GenotypeEdge { op: SepConv3x3, from: 0 }, GenotypeEdge { op: SkipConnect, from: 1 }]);
        assert_eq!(g.nodes[2], vec![GenotypeEdge { op: MaxPool3x3, from: 0 }, GenotypeEdge { op: SepConv3x3, from: 2 }]);
        assert_eq!(g.to_string(), "n0=skip_connect(in) | n1=sep_conv_3x3(in)+skip_connect(n0) | n2=max_pool_3x3(in)+sep_conv_3x3(n1)");
    }

    #[test]
    fn the_skip_cap_demotes_the_weakest_skips() {
        let w = vec![
            vec![0.0, 0.8, 0.15, 0.05], // n0 <- s0: skip 0.8 (strongest skip, kept)
            vec![0.0, 0.6, 0.1, 0.3],   // n1 <- s0: skip 0.6 → demoted to max_pool
            vec![0.0, 0.7, 0.2, 0.1],   // n1 <- n0: skip 0.7 (kept with cap 2)
        ];
        let g = Genotype::derive(&w, &OPS, 2, 2);
        assert_eq!(g.histogram().get(&SkipConnect), Some(&2));
        assert_eq!(g.nodes[1][0], GenotypeEdge { op: MaxPool3x3, from: 0 });
        let g = Genotype::derive(&w, &OPS, 2, 0);
        assert_eq!(g.histogram().get(&SkipConnect), Option::None);
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Genotype>(&json).unwrap(), g);
    }
}
