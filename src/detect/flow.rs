//! The dataflow facts block detection stands on: which tensors are constant, the dominator tree
//! of the others, and the region of nodes between an entry and an exit tensor.
//!
//! Why dominators: a block is a single-entry region, and the entry of the region that ends at a
//! tensor `t` is exactly `t`'s immediate dominator (the last tensor every path from the model
//! inputs to `t` passes through). Two branches that start at different model inputs are dominated
//! only by the virtual root, which is how FPN-style merges are told apart from residuals.

use std::collections::{HashMap, HashSet};

use crate::graph::Graph;

/// Index of the virtual root that feeds every model input.
const ROOT: usize = 0;

pub(super) struct Flow<'g> {
    graph: &'g Graph,
    /// Non-constant tensor → its index in `idom` / `depth` (index 0 is the virtual root).
    ids: HashMap<&'g str, usize>,
    names: Vec<&'g str>,
    idom: Vec<usize>,
    depth: Vec<usize>,
    constant: HashSet<&'g str>,
}

impl<'g> Flow<'g> {
    pub fn new(graph: &'g Graph) -> Self {
        let mut flow = Flow {
            graph,
            ids: HashMap::new(),
            names: vec![""],
            idom: vec![ROOT],
            depth: vec![0],
            constant: graph.initializers.keys().map(String::as_str).collect(),
        };
        for input in &graph.inputs {
            flow.add(&input.name, ROOT);
        }
        // Nodes are in topological order, so every operand is numbered before its readers.
        for node in &graph.nodes {
            let operands: Vec<usize> = node.inputs.iter().filter_map(|t| flow.ids.get(t.as_str()).copied()).collect();
            let outputs = node.outputs.iter().filter(|o| !o.is_empty());
            if operands.is_empty() && node.inputs.iter().all(|t| t.is_empty() || flow.constant.contains(t.as_str())) {
                flow.constant.extend(outputs.map(String::as_str));
                continue;
            }
            let dominator = operands.into_iter().reduce(|a, b| flow.common_dominator(a, b)).unwrap_or(ROOT);
            for output in outputs {
                flow.add(output, dominator);
            }
        }
        flow
    }

    fn add(&mut self, tensor: &'g str, dominator: usize) {
        self.ids.insert(tensor, self.names.len());
        self.names.push(tensor);
        self.depth.push(self.depth[dominator] + 1);
        self.idom.push(dominator);
    }

    /// The nearest tensor dominating both (the lowest common ancestor in the dominator tree).
    fn common_dominator(&self, mut a: usize, mut b: usize) -> usize {
        while a != b {
            if self.depth[a] >= self.depth[b] {
                a = self.idom[a];
            } else {
                b = self.idom[b];
            }
        }
        a
    }

    /// Constants: initializers, folded values and what is computed from them alone.
    pub fn is_constant(&self, tensor: &str) -> bool {
        self.constant.contains(tensor)
    }

    /// The immediate dominator of `tensor`: the last tensor every path from the model inputs to
    /// it passes through, where the region ending at `tensor` starts. None when only the virtual
    /// root dominates it (its operands hang off different model inputs).
    pub fn entry_of(&self, tensor: &str) -> Option<&'g str> {
        let dominator = self.idom[*self.ids.get(tensor)?];
        (dominator != ROOT).then(|| self.names[dominator])
    }

    /// The nodes on the paths from `entry` to `exit` (indices into `graph.nodes`, ascending):
    /// every node that computes `exit` from `entry` and constants. None when some path to `exit`
    /// bypasses `entry`.
    pub fn region(&self, entry: &str, exit: &str) -> Option<Vec<usize>> {
        let mut nodes = HashSet::new();
        let mut stack = vec![exit];
        let mut seen = HashSet::new();
        while let Some(tensor) = stack.pop() {
            if tensor == entry || self.is_constant(tensor) || !seen.insert(tensor) {
                continue;
            }
            let producer = self.graph.producer(tensor)?;
            nodes.insert(producer);
            stack.extend(self.graph.nodes[producer].inputs.iter().filter(|t| !t.is_empty()).map(String::as_str));
        }
        let mut nodes: Vec<usize> = nodes.into_iter().collect();
        nodes.sort_unstable();
        Some(nodes)
    }

    /// Whether nothing outside `nodes` reads a tensor they produce, except `exit`.
    pub fn is_single_exit(&self, nodes: &[usize], exit: &str) -> bool {
        let inside: HashSet<usize> = nodes.iter().copied().collect();
        nodes.iter().flat_map(|&i| &self.graph.nodes[i].outputs).filter(|o| !o.is_empty() && o.as_str() != exit).all(|o| {
            !self.graph.is_output(o) && self.graph.consumers(o).iter().all(|c| inside.contains(c))
        })
    }
}
