//! The units a localizer ranks (detected blocks, or every Conv/Gemm layer) and the neurons the
//! spectrum watches in each: every output channel of each of the unit's Conv/Gemm layers, read
//! after the per-channel operators that follow it (BatchNormalization, activation), and for a
//! block also the channels of its exit tensor.

use std::collections::HashSet;

use serde::Serialize;

use crate::detect::Detection;
use crate::graph::Graph;

use super::options::Granularity;

/// A Conv/Gemm/MatMul layer whose output channels are neurons.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeLayer {
    pub node: String,
    /// The layer's activation input and output (for per-example weight gradients).
    pub input: String,
    pub output: String,
    /// Where its neurons are read: the output after the per-channel operators that follow it.
    pub neurons: String,
}

/// The exit tensor of a block, whose channels are neurons too.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitProbe {
    pub tensor: String,
    /// Indices (into [`Probes::layers`]) of the layers whose channels reach the exit through
    /// element-wise operators only: their weights produce the exit's channels and weight its
    /// counts. Empty (e.g. a dense layer's Concat): the exit's counts are unweighted.
    pub producers: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitInfo {
    pub id: usize,
    /// `basic`, `bottleneck`, ... for blocks; the op type (`Conv`, `Gemm`) for layers.
    pub kind: String,
    /// A readable name: the common scope of the block's node names, or the layer's node name.
    pub name: String,
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub info: UnitInfo,
    /// Indices into [`Probes::layers`].
    pub layers: Vec<usize>,
    pub exit: Option<ExitProbe>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probes {
    pub layers: Vec<ProbeLayer>,
    pub units: Vec<Unit>,
}

/// Operators that keep a tensor's channels one to one (neurons are read after them).
const PER_CHANNEL: &[&str] = &["BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Identity", "Dropout"];
/// Operators through which a layer's channels reach a block's exit unchanged in number.
const ELEMENT_WISE: &[&str] =
    &["BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Identity", "Dropout", "Add", "Sum", "Mul"];
const LAYER_OPS: &[&str] = &["Conv", "Gemm", "MatMul"];

impl Probes {
    pub fn new(graph: &Graph, detection: &Detection, granularity: Granularity) -> Probes {
        let mut probes = Probes { layers: Vec::new(), units: Vec::new() };
        match granularity {
            Granularity::Block => {
                for block in &detection.blocks {
                    let inside: HashSet<&str> = block.nodes.iter().map(String::as_str).collect();
                    let layers: Vec<usize> = block
                        .nodes
                        .iter()
                        .filter_map(|n| graph.node_by_name(n))
                        .filter(|n| LAYER_OPS.contains(&n.op_type.as_str()))
                        .filter_map(|n| probes.add_layer(graph, &n.name, Some(&inside)))
                        .collect();
                    let producers =
                        layers.iter().copied().filter(|&l| reaches(graph, &probes.layers[l].neurons, &block.exit, &inside)).collect();
                    let mut kind = block.kind.as_str().to_string();
                    if block.squeeze_excitation {
                        kind.push_str("+se");
                    }
                    probes.units.push(Unit {
                        info: UnitInfo { id: block.id, kind, name: scope_name(&block.nodes), nodes: block.nodes.clone() },
                        layers,
                        exit: Some(ExitProbe { tensor: block.exit.clone(), producers }),
                    });
                }
            }
            Granularity::Layer => {
                for layer in &detection.layers {
                    let Some(index) = probes.add_layer(graph, &layer.node, None) else { continue };
                    probes.units.push(Unit {
                        info: UnitInfo { id: layer.id, kind: layer.op_type.clone(), name: layer.node.clone(), nodes: vec![layer.node.clone()] },
                        layers: vec![index],
                        exit: None,
                    });
                }
            }
        }
        probes
    }

    /// Adds the layer `node` (its activation input is input 0), reading its neurons after the
    /// per-channel operators that follow it (inside `region` when given).
    fn add_layer(&mut self, graph: &Graph, node: &str, region: Option<&HashSet<&str>>) -> Option<usize> {
        let n = graph.node_by_name(node)?;
        let (input, output) = (n.inputs.first()?.clone(), n.outputs.first()?.clone());
        let mut neurons = output.clone();
        loop {
            let [next] = graph.consumers(&neurons) else { break };
            let next = &graph.nodes[*next];
            let allowed = region.is_none_or(|r| r.contains(next.name.as_str()));
            if !allowed || !PER_CHANNEL.contains(&next.op_type.as_str()) || graph.is_output(&neurons) {
                break;
            }
            match next.outputs.first() {
                Some(out) => neurons = out.clone(),
                None => break,
            }
        }
        self.layers.push(ProbeLayer { node: node.to_string(), input, output, neurons });
        Some(self.layers.len() - 1)
    }

    /// Every tensor a spectrum pass captures, each once.
    pub fn captured_tensors(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let layer_tensors = self.layers.iter().flat_map(|l| [&l.input, &l.output, &l.neurons]);
        let exits = self.units.iter().filter_map(|u| u.exit.as_ref().map(|e| &e.tensor));
        layer_tensors.chain(exits).filter(|t| seen.insert(t.as_str())).cloned().collect()
    }
}

/// Whether `from` flows into `to` through element-wise operators inside `region` only.
fn reaches(graph: &Graph, from: &str, to: &str, region: &HashSet<&str>) -> bool {
    let mut frontier = vec![from.to_string()];
    let mut seen = HashSet::new();
    while let Some(tensor) = frontier.pop() {
        if tensor == to {
            return true;
        }
        if !seen.insert(tensor.clone()) {
            continue;
        }
        for &c in graph.consumers(&tensor) {
            let node = &graph.nodes[c];
            if region.contains(node.name.as_str()) && ELEMENT_WISE.contains(&node.op_type.as_str()) {
                frontier.extend(node.outputs.iter().cloned());
            }
        }
    }
    false
}

/// The deepest scope shared by all node names (`/layer1/layer1.0/conv1/Conv`, ... →
/// `layer1.0`), or the first node's name when they share none.
fn scope_name(nodes: &[String]) -> String {
    let split: Vec<Vec<&str>> = nodes.iter().map(|n| n.split('/').filter(|s| !s.is_empty()).collect()).collect();
    let Some(first) = split.first() else { return String::new() };
    let shared = (0..first.len()).take_while(|&i| split.iter().all(|parts| parts.len() > i + 1 && parts[i] == first[i])).count();
    match shared {
        0 => nodes[0].clone(),
        n => first[n - 1].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::scope_name;

    #[test]
    fn scope_names_come_from_the_shared_node_scope() {
        let nodes = ["/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/Relu", "/layer1/layer1.0/Add"].map(String::from);
        assert_eq!(scope_name(&nodes), "layer1.0");
        assert_eq!(scope_name(&["conv_a".to_string(), "relu_a".to_string()]), "conv_a");
        assert_eq!(scope_name(&["/stem/Conv".to_string()]), "stem");
    }
}
