//! Topological ordering of nodes (Kahn's algorithm).
//!
//! ONNX requires nodes in topological order, but exporters and hand edits get it wrong, and every
//! later stage (lowering runs nodes in order; block detection walks forward) relies on it. The
//! sort is stable, always taking the ready node that comes first in the model, so a model that is
//! already ordered keeps its order exactly and node indices stay meaningful to the user.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::GraphError;

/// The parts of a node the sort needs.
pub(crate) struct TopoNode<'a> {
    pub name: &'a str,
    pub op_type: &'a str,
    pub inputs: &'a [String],
    pub outputs: &'a [String],
}

/// Returns the model indices of `nodes` in a topological order. `available` holds the tensors
/// that exist before any node runs (graph inputs, initializers). Output names must already be
/// unique (checked by the caller, which can name both producers).
pub(crate) fn sort(nodes: &[TopoNode], available: &HashSet<&str>) -> Result<Vec<usize>, GraphError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for out in node.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(out.as_str(), i);
        }
    }

    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut indegree = vec![0usize; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        let mut deps: Vec<usize> = Vec::new();
        for input in node.inputs.iter().filter(|t| !t.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&p) => deps.push(p),
                None if available.contains(input.as_str()) => {}
                None => {
                    return Err(GraphError::MissingInput {
                        node: node.name.to_string(),
                        op_type: node.op_type.to_string(),
                        tensor: input.clone(),
                    })
                }
            }
        }
        deps.sort_unstable();
        deps.dedup();
        indegree[i] = deps.len();
        for p in deps {
            dependents[p].push(i);
        }
    }

    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len()).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() == nodes.len() {
        return Ok(order);
    }
    Err(cycle_error(nodes, &producer, &indegree, &dependents))
}

/// Describes the cycle: the first stuck node in model order, an input it waits for, and the nodes
/// that lie on cycles (stuck nodes that are also upstream of a stuck node).
fn cycle_error(
    nodes: &[TopoNode],
    producer: &HashMap<&str, usize>,
    indegree: &[usize],
    dependents: &[Vec<usize>],
) -> GraphError {
    let stuck: HashSet<usize> = (0..nodes.len()).filter(|&i| indegree[i] > 0).collect();
    // Peel stuck nodes that feed no other stuck node: they are merely downstream of a cycle.
    let mut on_cycle = stuck.clone();
    loop {
        let leaves: Vec<usize> =
            on_cycle.iter().copied().filter(|&i| !dependents[i].iter().any(|d| on_cycle.contains(d))).collect();
        if leaves.is_empty() {
            break;
        }
        for l in leaves {
            on_cycle.remove(&l);
        }
    }
    let mut members: Vec<usize> =
        if on_cycle.is_empty() { stuck.iter().copied().collect() } else { on_cycle.into_iter().collect() };
    members.sort_unstable();
    let first = members[0];
    let node = &nodes[first];
    let tensor = node
        .inputs
        .iter()
        .find(|t| producer.get(t.as_str()).is_some_and(|p| members.binary_search(p).is_ok()))
        .or_else(|| node.inputs.iter().find(|t| producer.get(t.as_str()).is_some_and(|p| stuck.contains(p))))
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = members.iter().take(10).map(|&i| format!("`{}`", nodes[i].name)).collect();
    if members.len() > 10 {
        names.push(format!("and {} more", members.len() - 10));
    }
    GraphError::Cycle {
        node: node.name.to_string(),
        op_type: node.op_type.to_string(),
        tensor,
        members: names.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run(spec: &[(&str, &[&str], &[&str])], avail: &[&str]) -> Result<Vec<usize>, GraphError> {
        let owned: Vec<(String, Vec<String>, Vec<String>)> =
            spec.iter().map(|(n, i, o)| (n.to_string(), strings(i), strings(o))).collect();
        let nodes: Vec<TopoNode> =
            owned.iter().map(|(n, i, o)| TopoNode { name: n, op_type: "Relu", inputs: i, outputs: o }).collect();
        sort(&nodes, &avail.iter().copied().collect())
    }

    #[test]
    fn ordered_models_keep_their_order_and_unordered_ones_are_fixed() {
        let ordered = run(&[("a", &["x"], &["a"]), ("b", &["a"], &["b"]), ("c", &["x", ""], &["c"])], &["x"]).unwrap();
        assert_eq!(ordered, vec![0, 1, 2]);
        let shuffled =
            run(&[("c", &["b"], &["c"]), ("b", &["a"], &["b"]), ("a", &["x"], &["a"]), ("d", &["x"], &["d"])], &["x"])
                .unwrap();
        assert_eq!(shuffled, vec![2, 1, 0, 3]);
    }

    #[test]
    fn a_cycle_names_a_node_and_the_tensor_it_waits_for() {
        let e = run(
            &[("a", &["x", "c"], &["a"]), ("b", &["a"], &["b"]), ("c", &["b"], &["c"]), ("d", &["c"], &["d"])],
            &["x"],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cycle") && e.contains("node `a` (Relu) waits for tensor `c`"), "{e}");
        assert!(e.contains("`a`, `b`, `c`") && !e.contains("`d`"), "{e}");
    }

    #[test]
    fn a_self_loop_is_a_cycle() {
        let e = run(&[("a", &["a"], &["a"])], &[]).unwrap_err().to_string();
        assert!(e.contains("node `a` (Relu) waits for tensor `a`"), "{e}");
    }

    #[test]
    fn a_missing_input_names_node_and_tensor() {
        let e = run(&[("a", &["x"], &["a"]), ("b", &["a", "ghost"], &["b"])], &["x"]).unwrap_err().to_string();
        assert!(e.contains("node `b` (Relu) reads tensor `ghost`"), "{e}");
    }
}
