//! Building a [`Graph`] from a `ModelProto`.
//!
//! This is where the untrusted protobuf is checked structurally, once, so that later stages can
//! rely on it: every tensor has at most one producer, every input exists, the order is
//! topological, and node names are non-empty and unique (lowering and block detection report
//! and name things by node name, and many exporters leave names empty).

use std::collections::{HashMap, HashSet};

use super::topo::{self, TopoNode};
use super::{Attributes, Declared, Dim, Graph, GraphError, Index, Node, ValueInfo};
use crate::onnx::proto::{tensor_shape_proto::dimension, type_proto, ModelProto, NodeProto, ValueInfoProto};
use crate::onnx::tensor::decode;

impl Graph {
    /// Builds the graph of `model`: decodes initializers, names and sorts nodes, builds the
    /// producer/consumer maps and seeds `shapes` with what the model declares.
    ///
    /// Errors: no graph; an initializer that cannot be decoded; a node input nothing provides; a
    /// tensor with two producers (or a node overwriting an input/initializer); a cycle; a graph
    /// output nothing provides; ai.onnx nodes without an ai.onnx opset import.
    pub fn from_model(model: &ModelProto) -> Result<Graph, GraphError> {
        let g = model.graph.as_ref().ok_or(GraphError::NoGraph)?;

        let mut opsets = HashMap::new();
        for o in &model.opset_import {
            opsets.insert(normalize_domain(o.domain()), o.version());
        }

        let mut initializers = HashMap::with_capacity(g.initializer.len());
        for t in &g.initializer {
            let tensor = decode(t).map_err(|source| GraphError::Initializer { name: t.name().to_string(), source })?;
            initializers.entry(t.name().to_string()).or_insert(tensor);
        }

        // IR < 4 lists every initializer as an input too; only the others are fed at run time.
        let inputs: Vec<ValueInfo> =
            g.input.iter().filter(|v| !initializers.contains_key(v.name())).map(value_info).collect();
        let outputs: Vec<ValueInfo> = g.output.iter().map(value_info).collect();

        let names = node_names(&g.node);
        let nodes: Vec<Node> = g.node.iter().zip(names).map(|(n, name)| convert_node(n, name)).collect();

        if !opsets.contains_key("") {
            if let Some(n) = nodes.iter().find(|n| n.domain.is_empty()) {
                return Err(GraphError::NoOpset { node: n.name.clone(), op_type: n.op_type.clone() });
            }
        }

        let graph_inputs: HashSet<&str> = g.input.iter().map(|v| v.name()).collect();
        check_single_producer(&nodes, &graph_inputs, &initializers)?;

        let mut available: HashSet<&str> = graph_inputs.clone();
        available.extend(initializers.keys().map(String::as_str));
        let order = {
            let view: Vec<TopoNode> = nodes
                .iter()
                .map(|n| TopoNode { name: &n.name, op_type: &n.op_type, inputs: &n.inputs, outputs: &n.outputs })
                .collect();
            topo::sort(&view, &available)?
        };

        let produced: HashSet<&str> = nodes.iter().flat_map(|n| n.outputs.iter().map(String::as_str)).collect();
        if let Some(o) =
            outputs.iter().find(|o| !produced.contains(o.name.as_str()) && !available.contains(o.name.as_str()))
        {
            return Err(GraphError::MissingOutput { tensor: o.name.clone() });
        }

        let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        let nodes: Vec<Node> = order.into_iter().map(|i| slots[i].take().expect("each index once")).collect();

        let declared = declared(g);
        let mut graph = Graph {
            name: g.name().to_string(),
            nodes,
            initializers,
            inputs,
            outputs,
            opsets,
            shapes: HashMap::new(),
            index: Index::default(),
            declared,
        };
        graph.rebuild_index();
        graph.shapes = graph.seed_shapes();
        Ok(graph)
    }
}

/// "ai.onnx" and "" are the same domain.
fn normalize_domain(domain: &str) -> String {
    if domain == "ai.onnx" {
        String::new()
    } else {
        domain.to_string()
    }
}

/// Stable, unique, non-empty names: the model's name when it has one and no earlier node took
/// it, else `<op_type>_<index>` (suffixed further if even that is taken).
pub fn node_names(nodes: &[NodeProto]) -> Vec<String> {
    let explicit: HashSet<&str> = nodes.iter().map(|n| n.name()).filter(|n| !n.is_empty()).collect();
    let mut taken: HashSet<String> = HashSet::new();
    let mut names = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        if !n.name().is_empty() && taken.insert(n.name().to_string()) {
            names.push(n.name().to_string());
            continue;
        }
        let base = if n.name().is_empty() { format!("{}_{i}", n.op_type()) } else { format!("{}_{i}", n.name()) };
        let mut candidate = base.clone();
        let mut k = 1;
        while explicit.contains(candidate.as_str()) || taken.contains(&candidate) {
            candidate = format!("{base}_{k}");
            k += 1;
        }
        taken.insert(candidate.clone());
        names.push(candidate);
    }
    names
}

fn convert_node(n: &NodeProto, name: String) -> Node {
    Node {
        attributes: Attributes::new(n.attribute.clone(), &name, n.op_type()),
        name,
        op_type: n.op_type().to_string(),
        domain: normalize_domain(n.domain()),
        inputs: n.input.clone(),
        outputs: n.output.clone(),
    }
}

/// Every tensor has one producer: a node, or the graph (input or initializer).
fn check_single_producer(
    nodes: &[Node],
    graph_inputs: &HashSet<&str>,
    initializers: &HashMap<String, crate::onnx::Tensor>,
) -> Result<(), GraphError> {
    let mut producer: HashMap<&str, &Node> = HashMap::new();
    for node in nodes {
        for out in node.outputs.iter().filter(|o| !o.is_empty()) {
            let shadow = |what| GraphError::OutputShadows {
                node: node.name.clone(),
                op_type: node.op_type.clone(),
                tensor: out.clone(),
                what,
            };
            if initializers.contains_key(out) {
                return Err(shadow("initializer"));
            }
            if graph_inputs.contains(out.as_str()) {
                return Err(shadow("input"));
            }
            if let Some(first) = producer.insert(out, node) {
                return Err(GraphError::DuplicateOutput {
                    tensor: out.clone(),
                    first: first.name.clone(),
                    first_op: first.op_type.clone(),
                    second: node.name.clone(),
                    second_op: node.op_type.clone(),
                });
            }
        }
    }
    Ok(())
}

fn tensor_type(v: &ValueInfoProto) -> Option<&type_proto::Tensor> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some(t),
        _ => None,
    }
}

/// The declared dims; an anonymous (or negative) dimension is None.
fn declared_dims(v: &ValueInfoProto) -> Option<Vec<Option<Dim>>> {
    let shape = tensor_type(v)?.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(n)) if *n >= 0 => Some(Dim::Known(*n)),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => Some(Dim::Symbolic(p.clone())),
                _ => None,
            })
            .collect(),
    )
}

fn value_info(v: &ValueInfoProto) -> ValueInfo {
    let shape = declared_dims(v).map(|dims| {
        dims.into_iter()
            .enumerate()
            .map(|(axis, d)| d.unwrap_or_else(|| Dim::Symbolic(format!("{}_dim{axis}", v.name()))))
            .collect()
    });
    ValueInfo { name: v.name().to_string(), elem_type: tensor_type(v).map_or(0, |t| t.elem_type()), shape }
}

/// Declarations from value_info, outputs and inputs (later ones win: inputs are what the user
/// feeds, so they are the most authoritative).
fn declared(g: &crate::onnx::proto::GraphProto) -> Declared {
    let mut d = Declared::default();
    for v in g.value_info.iter().chain(&g.output).chain(&g.input) {
        if let Some(dims) = declared_dims(v) {
            d.shapes.insert(v.name().to_string(), dims);
        }
        if let Some(t) = tensor_type(v).filter(|t| t.elem_type() != 0) {
            d.elem_types.insert(v.name().to_string(), t.elem_type());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests_support::*;

    #[test]
    fn empty_names_are_filled_uniquely_and_initializer_inputs_are_not_inputs() {
        let mut m = model(
            13,
            vec![
                node("Relu", "", &["x"], &["a"]),
                node("Relu", "Relu_1", &["a"], &["b"]),
                node("Relu", "", &["b"], &["c"]),
                node("Add", "dup", &["c", "w"], &["d"]),
                node("Relu", "dup", &["d"], &["e"]),
            ],
            &[("x", &[1, 3]), ("w", &[1, 3])],
            &["e"],
        );
        m.graph.as_mut().unwrap().initializer.push(crate::onnx::tensor::encode_f32("w", &[1, 3], &[0.0; 3]));
        let g = Graph::from_model(&m).unwrap();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["Relu_0", "Relu_1", "Relu_2", "dup", "dup_4"]);
        assert_eq!(g.inputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["x"]);
        assert_eq!(g.producer("c"), Some(2));
        assert_eq!(g.consumers("c"), &[3]);
        assert_eq!(g.consumers("e"), &[] as &[usize]);
        assert_eq!(g.opset(), 13);
    }

    #[test]
    fn unsorted_nodes_are_sorted() {
        let m = model(
            13,
            vec![node("Relu", "b", &["a"], &["b"]), node("Relu", "a", &["x"], &["a"])],
            &[("x", &[1])],
            &["b"],
        );
        let g = Graph::from_model(&m).unwrap();
        assert_eq!(g.nodes[0].name, "a");
        assert_eq!(g.producer("b"), Some(1));
        assert_eq!(g.consumers("a"), &[1]);
    }

    #[test]
    fn duplicate_outputs_name_both_nodes() {
        let m = model(
            13,
            vec![node("Relu", "first", &["x"], &["y"]), node("Sigmoid", "second", &["x"], &["y"])],
            &[("x", &[1])],
            &["y"],
        );
        let e = Graph::from_model(&m).unwrap_err().to_string();
        assert!(e.contains("`first` (Relu)") && e.contains("`second` (Sigmoid)") && e.contains("`y`"), "{e}");
    }

    #[test]
    fn overwriting_an_input_is_an_error() {
        let m = model(13, vec![node("Relu", "r", &["x"], &["x"])], &[("x", &[1])], &["x"]);
        let e = Graph::from_model(&m).unwrap_err().to_string();
        assert!(e.contains("`r` (Relu) writes tensor `x`") && e.contains("graph input"), "{e}");
    }

    #[test]
    fn missing_input_cycle_and_missing_output_are_errors() {
        let m = model(13, vec![node("Relu", "r", &["nowhere"], &["y"])], &[("x", &[1])], &["y"]);
        let e = Graph::from_model(&m).unwrap_err().to_string();
        assert!(e.contains("node `r` (Relu) reads tensor `nowhere`"), "{e}");

        let m = model(
            13,
            vec![node("Add", "p", &["x", "q_out"], &["p_out"]), node("Relu", "q", &["p_out"], &["q_out"])],
            &[("x", &[1])],
            &["q_out"],
        );
        let e = Graph::from_model(&m).unwrap_err().to_string();
        assert!(e.contains("cycle") && e.contains("`p` (Add) waits for tensor `q_out`"), "{e}");

        let m = model(13, vec![node("Relu", "r", &["x"], &["y"])], &[("x", &[1])], &["z"]);
        let e = Graph::from_model(&m).unwrap_err().to_string();
        assert!(e.contains("graph output `z`"), "{e}");
    }

    #[test]
    fn omitted_optional_inputs_are_fine_and_domains_are_normalised() {
        let mut m = model(11, vec![node("Clip", "c", &["x", "", ""], &["y"])], &[("x", &[2])], &["y"]);
        m.opset_import[0].domain = Some("ai.onnx".into());
        let g = Graph::from_model(&m).unwrap();
        assert_eq!(g.opset(), 11);
        assert_eq!(g.consumers(""), &[] as &[usize]);
    }

    #[test]
    fn no_graph_and_no_opset_are_errors() {
        let e = Graph::from_model(&ModelProto::default()).unwrap_err().to_string();
        assert!(e.contains("no graph"), "{e}");
        let mut m = model(13, vec![node("Relu", "r", &["x"], &["y"])], &[("x", &[1])], &["y"]);
        m.opset_import.clear();
        let e = Graph::from_model(&m).unwrap_err().to_string();
        assert!(e.contains("`r` (Relu)") && e.contains("opset"), "{e}");
    }

    #[test]
    fn anonymous_input_dims_become_unique_symbols() {
        let mut m = model(13, vec![node("Relu", "r", &["x"], &["y"])], &[("x", &[1, 3])], &["y"]);
        let dims = &mut m.graph.as_mut().unwrap().input[0];
        if let Some(type_proto::Value::TensorType(t)) = dims.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            t.shape.as_mut().unwrap().dim[0].value = None;
        }
        let g = Graph::from_model(&m).unwrap();
        assert_eq!(g.inputs[0].shape, Some(vec![Dim::Symbolic("x_dim0".into()), Dim::Known(3)]));
    }
}
