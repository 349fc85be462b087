//! Limits that keep a hostile model file from costing unbounded time or memory.
//!
//! Protobuf is compact: a 35 MB file can hold a million nodes, which the graph IR, shape
//! inference and detection would turn into gigabytes and minutes of work. [`count_nodes`] counts
//! the nodes on the wire, before anything is decoded, so such a file is refused at the cost of
//! one pass over its bytes (initializers are skipped, not read). Nesting deeper than protobuf's
//! recursion limit is refused by the decoder itself; [`describe_decode_error`] keeps that
//! message (and any other decoding error) to one readable line.

/// The most nodes (all graphs and subgraphs and functions together) a model may have. Image
/// classifiers exported by PyTorch or TensorFlow have a few hundred to a few thousand nodes
/// (torchvision's largest CNNs stay under 10,000), so this only refuses files that are not such
/// a model, before they cost gigabytes of memory.
pub const MAX_NODES: usize = 100_000;

/// Nesting depth followed when counting; deeper messages are left to the decoder, whose
/// recursion limit (100) refuses them.
const MAX_DEPTH: usize = 100;

/// Message types whose fields lead to nodes.
#[derive(Clone, Copy)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Function,
    TrainingInfo,
}

impl Kind {
    /// The kind of message that field `number` of this kind holds, when it can lead to nodes
    /// (field numbers of schemas/onnx.proto).
    fn child(self, number: u64) -> Option<Kind> {
        match (self, number) {
            (Kind::Model, 7) | (Kind::Attribute, 6 | 11) | (Kind::TrainingInfo, 1 | 2) => Some(Kind::Graph),
            (Kind::Model, 20) => Some(Kind::TrainingInfo),
            (Kind::Model, 25) => Some(Kind::Function),
            (Kind::Graph, 1) | (Kind::Function, 7) => Some(Kind::Node),
            (Kind::Node, 5) | (Kind::Function, 11) => Some(Kind::Attribute),
            _ => None,
        }
    }
}

/// The number of `NodeProto`s in a serialized `ModelProto`, counted without decoding it.
/// Counting stops once it passes `MAX_NODES`, and at bytes that are not valid protobuf (the
/// decoder then says what is wrong with them).
pub fn count_nodes(bytes: &[u8]) -> usize {
    let mut count = 0;
    scan(bytes, Kind::Model, 0, &mut count);
    count
}

fn scan(mut bytes: &[u8], kind: Kind, depth: usize, count: &mut usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    while !bytes.is_empty() && *count <= MAX_NODES {
        let key = varint(&mut bytes)?;
        match key & 7 {
            0 => {
                varint(&mut bytes)?;
            }
            1 => bytes = bytes.get(8..)?,
            5 => bytes = bytes.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (payload, rest) = (bytes.get(..len)?, bytes.get(len..)?);
                if let Some(child) = kind.child(key >> 3) {
                    if matches!(child, Kind::Node) {
                        *count += 1;
                    }
                    scan(payload, child, depth + 1, count)?;
                }
                bytes = rest;
            }
            _ => return None,
        }
    }
    Some(())
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// prost's decoding error in one line: prost names every enclosing field, which for a message
/// nested thousands of levels deep is kilobytes of `GraphProto.node: AttributeProto.g: ...`;
/// keep the outermost and innermost fields and the reason.
pub fn describe_decode_error(e: &prost::DecodeError) -> String {
    let text = e.to_string();
    let body = text.strip_prefix("failed to decode Protobuf message: ").unwrap_or(&text);
    let parts: Vec<&str> = body.split(": ").collect();
    let mut line = if parts.len() > 6 {
        let (head, tail) = (&parts[..2], &parts[parts.len() - 3..]);
        format!("{}: ... ({} more fields) ...: {}", head.join(": "), parts.len() - 5, tail.join(": "))
    } else {
        body.to_string()
    };
    if line.contains("recursion limit reached") {
        line.push_str(" (messages nested more than 100 levels deep, e.g. If/Loop subgraphs inside each other; no exporter writes that)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto};
    use prost::Message;

    fn nodes(n: usize) -> Vec<NodeProto> {
        (0..n).map(|i| NodeProto { name: Some(format!("n{i}")), ..Default::default() }).collect()
    }

    #[test]
    fn counts_nodes_of_the_graph_and_its_subgraphs_without_decoding() {
        let sub = GraphProto { node: nodes(3), ..Default::default() };
        let mut top = nodes(2);
        top[0].attribute.push(AttributeProto { g: Some(sub.clone()), graphs: vec![sub], ..Default::default() });
        let model = ModelProto { graph: Some(GraphProto { node: top, ..Default::default() }), ..Default::default() };
        assert_eq!(count_nodes(&model.encode_to_vec()), 8);
        assert_eq!(count_nodes(&[0xff; 5]), 0);
    }

    #[test]
    fn stops_counting_past_the_limit() {
        let model = ModelProto { graph: Some(GraphProto { node: nodes(MAX_NODES + 10), ..Default::default() }), ..Default::default() };
        assert_eq!(count_nodes(&model.encode_to_vec()), MAX_NODES + 1);
    }
}
