//! Graph surgery on the ONNX protobuf: remove a set of nodes, put new nodes (and their
//! initializers) in their place, and drop what the removal left unused.
//!
//! Export splices the repaired block into the model this way, and block detection checks every
//! block by splicing an identical copy of it ([`Patch::copy_of`]): a model whose outputs change
//! under that identity edit would mean the cut was not single-entry, single-exit. Working on the
//! protobuf rather than on the IR keeps everything the patch does not touch byte-for-byte as it
//! was (metadata, doc strings, functions, unknown operators).

use std::collections::{HashMap, HashSet};

use super::from_model::node_names;
use super::{Graph, GraphError};
use crate::onnx::proto::{ModelProto, NodeProto, TensorProto};
use crate::onnx::tensor::encode;

/// Nodes out, nodes in.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// Names of the nodes to remove, as the graph IR names them ([`Graph::from_model`]).
    pub remove: Vec<String>,
    /// Replacement nodes in topological order; they go where the last removed node was.
    pub nodes: Vec<NodeProto>,
    /// Initializers the replacement nodes read.
    pub initializers: Vec<TensorProto>,
}

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the model has no graph")]
    NoGraph,

    #[error("the patch removes node `{0}`, which the model does not have")]
    UnknownNode(String),

    #[error("the patch adds {what} `{name}`, a name the model already uses; give it another name")]
    NameTaken { what: &'static str, name: String },

    #[error("constant `{0}` read by the copied nodes has an element type the copy cannot write")]
    Uncopyable(String),

    #[error("the patched model is not a valid graph: {0}")]
    Invalid(#[from] GraphError),
}

impl Patch {
    /// A patch replacing the graph nodes `names` by renamed copies of themselves (node names and
    /// every tensor they produce get `prefix`, except `exit`, which keeps its name so downstream
    /// readers are untouched). Constants they read are copied as new initializers, folded shape
    /// values included, so the copy does not depend on the nodes the cut leaves unused.
    pub fn copy_of(model: &ModelProto, graph: &Graph, names: &[String], exit: &str, prefix: &str) -> Result<Patch, PatchError> {
        let g = model.graph.as_ref().ok_or(PatchError::NoGraph)?;
        let by_name: HashMap<String, &NodeProto> = node_names(&g.node).into_iter().zip(&g.node).collect();
        let proto_initializers: HashMap<&str, &TensorProto> = g.initializer.iter().map(|t| (t.name(), t)).collect();
        let mut renamed: HashMap<String, String> = HashMap::new();
        let mut patch = Patch { remove: names.to_vec(), ..Patch::default() };
        for name in names {
            let original = *by_name.get(name).ok_or_else(|| PatchError::UnknownNode(name.clone()))?;
            let mut node = original.clone();
            node.name = Some(format!("{prefix}{name}"));
            for input in node.input.iter_mut() {
                if input.is_empty() {
                    continue;
                }
                if let Some(new) = renamed.get(input.as_str()) {
                    *input = new.clone();
                    continue;
                }
                let copy = if let Some(t) = proto_initializers.get(input.as_str()) {
                    TensorProto { name: Some(format!("{prefix}{input}")), ..(*t).clone() }
                } else if let Some(t) = graph.initializers.get(input.as_str()) {
                    encode(&format!("{prefix}{input}"), t).ok_or_else(|| PatchError::Uncopyable(input.clone()))?
                } else {
                    continue; // the entry, or another tensor computed outside the block
                };
                renamed.insert(input.clone(), copy.name().to_string());
                *input = copy.name().to_string();
                patch.initializers.push(copy);
            }
            for output in node.output.iter_mut().filter(|o| !o.is_empty() && o.as_str() != exit) {
                let new = format!("{prefix}{output}");
                renamed.insert(std::mem::replace(output, new.clone()), new);
            }
            patch.nodes.push(node);
        }
        Ok(patch)
    }

    /// The patched model; `model` is left as it was. Nodes and initializers that only the
    /// removed nodes needed (folded shape arithmetic, old weights) are dropped, and so are
    /// value_info entries of tensors that no longer exist. The result is checked by building its
    /// graph IR.
    pub fn apply(&self, model: &ModelProto) -> Result<ModelProto, PatchError> {
        let mut out = model.clone();
        let g = out.graph.as_mut().ok_or(PatchError::NoGraph)?;
        let names = node_names(&g.node);
        let position: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let mut removed = HashSet::new();
        for name in &self.remove {
            removed.insert(*position.get(name.as_str()).ok_or_else(|| PatchError::UnknownNode(name.clone()))?);
        }
        let originally_read: HashSet<String> = g.node.iter().flat_map(|n| n.input.iter().cloned()).collect();

        // Names the additions must not reuse: what the kept part of the model defines.
        let kept = |i: &usize| !removed.contains(i);
        let mut defined: HashSet<&str> = g.input.iter().map(|v| v.name()).chain(g.initializer.iter().map(|t| t.name())).collect();
        defined.extend((0..g.node.len()).filter(kept).flat_map(|i| g.node[i].output.iter().map(String::as_str)));
        let kept_names: HashSet<&str> = (0..g.node.len()).filter(kept).map(|i| names[i].as_str()).collect();
        for t in &self.initializers {
            if defined.contains(t.name()) {
                return Err(PatchError::NameTaken { what: "initializer", name: t.name().to_string() });
            }
        }
        for node in &self.nodes {
            if kept_names.contains(node.name()) {
                return Err(PatchError::NameTaken { what: "node", name: node.name().to_string() });
            }
            if let Some(o) = node.output.iter().find(|o| !o.is_empty() && defined.contains(o.as_str())) {
                return Err(PatchError::NameTaken { what: "tensor", name: o.clone() });
            }
        }

        // New nodes go where the last removed node was: after everything the block read, before
        // everything that reads its exit.
        let insert_at = removed.iter().max().map_or(g.node.len(), |&last| last + 1);
        let at = (0..insert_at).filter(kept).count();
        let mut nodes: Vec<NodeProto> =
            std::mem::take(&mut g.node).into_iter().enumerate().filter(|(i, _)| kept(i)).map(|(_, n)| n).collect();
        nodes.splice(at..at, self.nodes.iter().cloned());
        g.node = nodes;
        g.initializer.extend(self.initializers.iter().cloned());
        drop_orphans(g, &originally_read);
        Graph::from_model(&out)?;
        Ok(out)
    }
}

/// Removes nodes and initializers that lost every reader to the patch (iteratively: a removed
/// node's inputs may lose their last reader too), then stale value_info entries. What was already
/// unused before the patch stays: the patch only cleans up after itself.
fn drop_orphans(g: &mut crate::onnx::proto::GraphProto, originally_read: &HashSet<String>) {
    let outputs: HashSet<String> = g.output.iter().map(|v| v.name().to_string()).collect();
    let orphan = |t: &String, read: &HashSet<String>| originally_read.contains(t) && !read.contains(t) && !outputs.contains(t);
    loop {
        let read: HashSet<String> = g.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
        let dead = |n: &NodeProto| {
            let mut produced = n.output.iter().filter(|o| !o.is_empty()).peekable();
            produced.peek().is_some() && produced.all(|o| orphan(o, &read))
        };
        let before = g.node.len();
        g.node.retain(|n| !dead(n));
        if g.node.len() == before {
            let dropped: HashSet<String> =
                g.initializer.iter().map(|t| t.name().to_string()).filter(|t| orphan(t, &read)).collect();
            g.initializer.retain(|t| !dropped.contains(t.name()));
            g.input.retain(|v| !dropped.contains(v.name()));
            break;
        }
    }
    let existing: HashSet<String> = g.node.iter().flat_map(|n| n.output.iter().cloned()).collect();
    g.value_info.retain(|v| existing.contains(v.name()));
}
