//! `archrepair-onnx inspect`: what a model is made of and whether the tool can lower it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::graph::{Dim, ValueInfo};
use crate::lower::ops::{self, Parsed};
use crate::lower::{weight_roles, Role};
use crate::model::LoadedModel;
use crate::onnx::TensorData;
use crate::Error;

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub path: String,
    pub ir_version: i64,
    pub producer: String,
    /// domain ("" = ai.onnx) → version
    pub opsets: BTreeMap<String, i64>,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
    pub node_count: usize,
    /// op type → node count (after folding the exporter's shape arithmetic)
    pub op_histogram: BTreeMap<String, usize>,
    /// Elements of the trainable weights (what PyTorch counts as parameters).
    pub parameter_count: usize,
    /// Elements of BatchNormalization running statistics.
    pub buffer_count: usize,
    /// op type → nodes that cannot be lowered
    pub unsupported: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct Port {
    pub name: String,
    /// Dimensions; symbolic ones by name.
    pub shape: Vec<String>,
}

pub fn inspect(path: &Path) -> Result<Inspection, Error> {
    let model = LoadedModel::open(path)?;
    let graph = &model.graph;
    let mut op_histogram = BTreeMap::new();
    let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in &graph.nodes {
        *op_histogram.entry(node.op_type.clone()).or_insert(0) += 1;
        let parsed = ops::parse(node, graph.opset()).map_err(|source| Error::Lower { path: path.to_path_buf(), source })?;
        if let Parsed::Unsupported = parsed {
            unsupported.entry(node.op_type.clone()).or_default().push(node.name.clone());
        }
    }
    let roles = weight_roles(graph, |name| graph.initializers.get(name).is_some_and(|t| matches!(t.data, TensorData::Float(_))));
    let count = |role: Role| -> usize {
        roles.iter().filter(|(_, r)| **r == role).map(|(name, _)| graph.initializers[name].len()).sum()
    };
    Ok(Inspection {
        path: path.display().to_string(),
        ir_version: model.proto.ir_version(),
        producer: format!("{} {}", model.proto.producer_name(), model.proto.producer_version()).trim().to_string(),
        opsets: graph.opsets.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        inputs: graph.inputs.iter().map(port).collect(),
        outputs: graph.outputs.iter().map(port).collect(),
        node_count: graph.nodes.len(),
        op_histogram,
        parameter_count: count(Role::Trainable),
        buffer_count: count(Role::Buffer),
        unsupported,
    })
}

fn port(v: &ValueInfo) -> Port {
    let shape = v
        .shape
        .as_ref()
        .map(|s| s.iter().map(|d| match d { Dim::Known(n) => n.to_string(), Dim::Symbolic(s) => s.clone() }).collect())
        .unwrap_or_else(|| vec!["?".into()]);
    Port { name: v.name.clone(), shape }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model       {}", self.path)?;
        writeln!(f, "producer    {} (IR version {})", if self.producer.is_empty() { "unknown" } else { &self.producer }, self.ir_version)?;
        let opsets: Vec<String> = self.opsets.iter().map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d })).collect();
        writeln!(f, "opsets      {}", opsets.join(", "))?;
        for (label, ports) in [("input", &self.inputs), ("output", &self.outputs)] {
            for p in ports {
                writeln!(f, "{label:<11} {} [{}]", p.name, p.shape.join(", "))?;
            }
        }
        writeln!(f, "parameters  {} trainable, {} in BatchNormalization statistics", self.parameter_count, self.buffer_count)?;
        writeln!(f, "nodes       {}", self.node_count)?;
        for (op, count) in &self.op_histogram {
            writeln!(f, "  {op:<24} {count:>6}")?;
        }
        if self.unsupported.is_empty() {
            write!(f, "lowering    every operator is supported")
        } else {
            write!(f, "lowering    UNSUPPORTED operators:")?;
            for (op, nodes) in &self.unsupported {
                write!(f, "\n  {op}: {}", nodes.join(", "))?;
            }
            Ok(())
        }
    }
}
