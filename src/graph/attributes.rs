//! Typed access to a node's `AttributeProto` list.
//!
//! ONNX attributes are a loosely typed list; every consumer (shape inference, lowering, export)
//! needs the same lookups with the same leniency, so they live here once. The getters return
//! `None` for an absent attribute and for one of another type, so a caller applies the operator's
//! default; older exporters leave `type` unset, so the value fields are trusted when it is.

use super::GraphError;
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto};
use crate::onnx::tensor::{decode, Tensor};

/// The attributes of one node, with the node's name and op type kept for error messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    list: Vec<AttributeProto>,
    node: String,
    op_type: String,
}

impl Attributes {
    /// Wraps `list`, the attributes of node `node` (`op_type`).
    pub fn new(list: Vec<AttributeProto>, node: &str, op_type: &str) -> Self {
        Attributes { list, node: node.to_string(), op_type: op_type.to_string() }
    }

    /// The raw attribute protos, in the model's order.
    pub fn protos(&self) -> &[AttributeProto] {
        &self.list
    }

    fn get(&self, name: &str, wanted: AttributeType) -> Option<&AttributeProto> {
        self.list.iter().find(|a| {
            a.name() == name && (a.r#type.is_none() || a.r#type() == wanted || a.r#type() == AttributeType::Undefined)
        })
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name, AttributeType::Int).and_then(|a| a.i)
    }

    /// The INTS attribute `name`; an attribute present with an empty list gives `Some(&[])`.
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        let a = self.get(name, AttributeType::Ints)?;
        // Without a declared type, an empty list is indistinguishable from another kind.
        (a.r#type.is_some() || !a.ints.is_empty()).then_some(a.ints.as_slice())
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.get(name, AttributeType::Float).and_then(|a| a.f)
    }

    pub fn floats(&self, name: &str) -> Option<&[f32]> {
        let a = self.get(name, AttributeType::Floats)?;
        (a.r#type.is_some() || !a.floats.is_empty()).then_some(a.floats.as_slice())
    }

    /// The STRING attribute `name`, decoded as lossy UTF-8 (ONNX strings are bytes).
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name, AttributeType::String)
            .and_then(|a| a.s.as_deref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }

    /// The TENSOR attribute `name`, decoded; a tensor that cannot be decoded is an error naming
    /// the node, because silently ignoring it would change what the model computes.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, GraphError> {
        let Some(t) = self.get(name, AttributeType::Tensor).and_then(|a| a.t.as_ref()) else { return Ok(None) };
        decode(t).map(Some).map_err(|e| GraphError::Attribute {
            node: self.node.clone(),
            op_type: self.op_type.clone(),
            attribute: name.to_string(),
            reason: e.to_string(),
        })
    }

    /// Names of all attributes, in the model's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|a| a.name())
    }

    /// Whether an attribute called `name` exists, of any type.
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|a| a.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::tensor::encode_i64;

    fn attr(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto { name: Some(name.into()), r#type: Some(ty as i32), ..Default::default() }
    }

    #[test]
    fn typed_lookups_and_defaults() {
        let a = Attributes::new(
            vec![
                AttributeProto { i: Some(2), ..attr("group", AttributeType::Int) },
                AttributeProto { ints: vec![1, 1], ..attr("strides", AttributeType::Ints) },
                attr("pads", AttributeType::Ints),
                AttributeProto { f: Some(0.5), ..attr("alpha", AttributeType::Float) },
                AttributeProto { s: Some(b"SAME_UPPER".to_vec()), ..attr("auto_pad", AttributeType::String) },
                AttributeProto { t: Some(encode_i64("", &[2], &[3, 4])), ..attr("value", AttributeType::Tensor) },
            ],
            "n",
            "Conv",
        );
        assert_eq!(a.int("group"), Some(2));
        assert_eq!(a.int("strides"), None, "wrong type reads as absent");
        assert_eq!(a.ints("strides"), Some(&[1, 1][..]));
        assert_eq!(a.ints("pads"), Some(&[][..]));
        assert_eq!(a.ints("dilations"), None);
        assert_eq!(a.float("alpha"), Some(0.5));
        assert_eq!(a.string("auto_pad").as_deref(), Some("SAME_UPPER"));
        assert_eq!(a.tensor("value").unwrap().unwrap().to_i64(), vec![3, 4]);
        assert!(a.tensor("missing").unwrap().is_none());
        assert_eq!(a.names().collect::<Vec<_>>(), ["group", "strides", "pads", "alpha", "auto_pad", "value"]);
    }

    #[test]
    fn untyped_attributes_of_old_exporters_are_read() {
        let a = Attributes::new(
            vec![AttributeProto { name: Some("axis".into()), i: Some(1), ..Default::default() }],
            "n",
            "Flatten",
        );
        assert_eq!(a.int("axis"), Some(1));
        assert_eq!(a.ints("axis"), None);
    }

    #[test]
    fn undecodable_tensor_names_the_node() {
        let mut t = encode_i64("", &[3], &[1, 2, 3]);
        t.dims = vec![4];
        let a = Attributes::new(
            vec![AttributeProto { t: Some(t), ..attr("value", AttributeType::Tensor) }],
            "c0",
            "Constant",
        );
        let e = a.tensor("value").unwrap_err().to_string();
        assert!(e.contains("`c0` (Constant)") && e.contains("`value`"), "{e}");
    }
}
