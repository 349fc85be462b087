//! The derived cell as standard ONNX nodes. Every layer of [`Cell`] has a plain ONNX form with
//! the exact semantics libtorch computed during the search:
//!
//! | cell part                      | ONNX                                                       |
//! |--------------------------------|------------------------------------------------------------|
//! | ReLU                           | Relu                                                       |
//! | conv (depthwise, dilated, 1x1) | Conv with group, dilations, strides and symmetric pads     |
//! | BatchNorm (eval mode)          | BatchNormalization (epsilon [`BN_EPS`])                    |
//! | max_pool_3x3                   | MaxPool 3x3, stride 1, pads 1 (padding never wins the max) |
//! | avg_pool_3x3                   | AveragePool 3x3, stride 1, pads 1, count_include_pad = 0   |
//! | skip_connect                   | no node: the edge reads its source tensor                  |
//! | none                           | no node: the edge is dropped                               |
//! | node sum / concatenation       | Add (in edge order) / Concat on channels                   |
//! | factorized reduce's shift      | Slice from (1, 1), Pad one zero row and column at the end  |
//! | a node whose edges are all none| ConstantOfShape(Shape(s0)) = zeros                         |
//!
//! Slice and Pad take their parameters as inputs, which needs opset 11 or later.

use tch::nn;
use tch::{Kind, Tensor};

use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};
use crate::onnx::tensor::{encode_f32, encode_i64};
use crate::search::cell::{Adapter, Cell, BN_EPS};
use crate::search::ops::{CandidateOp, DwPw};

/// The lowest opset whose Slice/Pad signatures the emitted nodes use.
pub const MIN_OPSET: i64 = 11;

/// Nodes (in topological order) and the initializers they read.
#[derive(Debug, Default)]
pub struct CellNodes {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
}

/// Emits `cell` reading tensor `entry` and writing tensor `output`; every other node, tensor
/// and initializer name starts with `prefix`.
pub fn emit(cell: &Cell, entry: &str, output: &str, prefix: &str) -> Result<CellNodes, String> {
    let mut e = Emitter { prefix: prefix.to_string(), out: CellNodes::default() };
    let s0 = e.adapter(&cell.adapter, entry)?;
    let mut states = vec![s0];
    let mut next_edge = 0;
    for node in 0..cell.shape.nodes {
        let mut sum: Option<String> = None;
        while next_edge < cell.edges.len() && cell.edges[next_edge].node == node {
            let edge = &cell.edges[next_edge];
            let [(kind, op)] = edge.ops.as_slice() else {
                return Err(format!("edge {next_edge} has {} candidate ops; only a derived cell (one op per edge) can be exported", edge.ops.len()));
            };
            let name = format!("n{node}_from{}.{}", edge.from, kind.name());
            if let Some(y) = e.op(op, &states[edge.from], &name)? {
                sum = Some(match sum {
                    Some(s) => e.node("Add", &format!("n{node}_sum{next_edge}"), &[&s, &y], vec![]),
                    None => y,
                });
            }
            next_edge += 1;
        }
        let value = match sum {
            Some(s) => s,
            None => {
                let shape = e.node("Shape", &format!("n{node}_shape"), &[&states[0]], vec![]);
                e.node("ConstantOfShape", &format!("n{node}_zeros"), &[&shape], vec![tensor_attr("value", encode_f32("", &[1], &[0.0]))])
            }
        };
        states.push(value);
    }
    let parts: Vec<&str> = states[1..].iter().map(String::as_str).collect();
    let concat = e.node("Concat", "concat", &parts, vec![int_attr("axis", 1)]);
    let relu = e.node("Relu", "project.relu", &[&concat], vec![]);
    let (conv, bn) = &cell.project;
    let projected = e.conv(conv, &relu, "project.conv", 1, 1, 0)?;
    e.batch_norm_to(bn, &projected, "project.bn", Some(output))?;
    Ok(e.out)
}

struct Emitter {
    prefix: String,
    out: CellNodes,
}

impl Emitter {
    /// Adds a node named `<prefix><name>` whose single output has the same name; returns it.
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = format!("{}{name}", self.prefix);
        self.node_to(op, name, inputs, attributes, &output)
    }

    fn node_to(&mut self, op: &str, name: &str, inputs: &[&str], attribute: Vec<AttributeProto>, output: &str) -> String {
        self.out.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{}{name}", self.prefix)),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
        output.to_string()
    }

    /// Adds `t` (any float tensor, any device) as initializer `<prefix><name>`.
    fn weight(&mut self, t: &Tensor, name: &str) -> Result<String, String> {
        let full = format!("{}{name}", self.prefix);
        let cpu = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let values = Vec::<f32>::try_from(&cpu.flatten(0, -1)).map_err(|e| format!("weight `{name}`: {e}"))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("weight `{name}` holds NaN or infinite values; the trained cell is unusable"));
        }
        self.out.initializers.push(encode_f32(&full, &cpu.size(), &values));
        Ok(full)
    }

    fn ints(&mut self, values: &[i64], name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        self.out.initializers.push(encode_i64(&full, &[values.len() as i64], values));
        full
    }

    fn conv(&mut self, conv: &nn::Conv2D, input: &str, name: &str, stride: i64, dilation: i64, groups_of: i64) -> Result<String, String> {
        let w = self.weight(&conv.ws, &format!("{name}.weight"))?;
        let size = conv.ws.size();
        let (kh, kw) = (size[2], size[3]);
        let groups = if groups_of > 0 { groups_of } else { 1 };
        let (ph, pw) = (dilation * (kh - 1) / 2, dilation * (kw - 1) / 2);
        let mut inputs = vec![input.to_string(), w];
        if let Some(b) = &conv.bs {
            inputs.push(self.weight(b, &format!("{name}.bias"))?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attributes = vec![
            ints_attr("kernel_shape", &[kh, kw]),
            ints_attr("strides", &[stride, stride]),
            ints_attr("pads", &[ph, pw, ph, pw]),
            ints_attr("dilations", &[dilation, dilation]),
            int_attr("group", groups),
        ];
        Ok(self.node("Conv", name, &inputs, attributes))
    }

    fn batch_norm_to(&mut self, bn: &nn::BatchNorm, input: &str, name: &str, output: Option<&str>) -> Result<String, String> {
        let (Some(scale), Some(bias)) = (&bn.ws, &bn.bs) else {
            return Err(format!("batch norm `{name}` has no affine weights"));
        };
        let scale = self.weight(scale, &format!("{name}.weight"))?;
        let bias = self.weight(bias, &format!("{name}.bias"))?;
        let mean = self.weight(&bn.running_mean, &format!("{name}.running_mean"))?;
        let var = self.weight(&bn.running_var, &format!("{name}.running_var"))?;
        let attributes = vec![float_attr("epsilon", BN_EPS as f32)];
        let inputs = [input, scale.as_str(), bias.as_str(), mean.as_str(), var.as_str()];
        let default_output = format!("{}{name}", self.prefix);
        Ok(self.node_to("BatchNormalization", name, &inputs, attributes, output.unwrap_or(&default_output)))
    }

    fn adapter(&mut self, adapter: &Adapter, entry: &str) -> Result<String, String> {
        let relu = self.node("Relu", "adapter.relu", &[entry], vec![]);
        match adapter {
            Adapter::Conv { conv, bn, stride } => {
                let c = self.conv(conv, &relu, "adapter.conv", *stride, 1, 1)?;
                self.batch_norm_to(bn, &c, "adapter.bn", None)
            }
            Adapter::FactorizedReduce { even, odd, bn } => {
                let a = self.conv(even, &relu, "adapter.even", 2, 1, 1)?;
                // odd reads the input shifted by one pixel, zero-padded back to H x W.
                let starts = self.ints(&[1, 1], "adapter.shift.starts");
                let ends = self.ints(&[i64::MAX, i64::MAX], "adapter.shift.ends");
                let axes = self.ints(&[2, 3], "adapter.shift.axes");
                let shifted = self.node("Slice", "adapter.shift", &[&relu, &starts, &ends, &axes], vec![]);
                let pads = self.ints(&[0, 0, 0, 0, 0, 0, 1, 1], "adapter.pad.pads");
                let padded = self.node("Pad", "adapter.pad", &[&shifted, &pads], vec![]);
                let b = self.conv(odd, &padded, "adapter.odd", 2, 1, 1)?;
                let cat = self.node("Concat", "adapter.concat", &[&a, &b], vec![int_attr("axis", 1)]);
                self.batch_norm_to(bn, &cat, "adapter.bn", None)
            }
        }
    }

    /// The edge's value, or None for `none` (the edge contributes nothing).
    fn op(&mut self, op: &CandidateOp, input: &str, name: &str) -> Result<Option<String>, String> {
        let window = || vec![ints_attr("kernel_shape", &[3, 3]), ints_attr("strides", &[1, 1]), ints_attr("pads", &[1, 1, 1, 1])];
        Ok(match op {
            CandidateOp::Zero => None,
            CandidateOp::Identity => Some(input.to_string()),
            CandidateOp::MaxPool => Some(self.node("MaxPool", name, &[input], window())),
            CandidateOp::AvgPool => {
                let mut attributes = window();
                attributes.push(int_attr("count_include_pad", 0));
                Some(self.node("AveragePool", name, &[input], attributes))
            }
            CandidateOp::Convs(stages) => {
                let mut x = input.to_string();
                for (stage, part) in stages.iter().zip(["a", "b"]) {
                    x = self.dw_pw(stage, &x, &format!("{name}.{part}"))?;
                }
                Some(x)
            }
        })
    }

    fn dw_pw(&mut self, s: &DwPw, input: &str, name: &str) -> Result<String, String> {
        let relu = self.node("Relu", &format!("{name}.relu"), &[input], vec![]);
        let channels = s.depthwise.ws.size()[0];
        let dw = self.conv(&s.depthwise, &relu, &format!("{name}.dw"), 1, s.dilation, channels)?;
        let pw = self.conv(&s.pointwise, &dw, &format!("{name}.pw"), 1, 1, 1)?;
        self.batch_norm_to(&s.bn, &pw, &format!("{name}.bn"), None)
    }
}

fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: values.to_vec(), ..Default::default() }
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(value), ..Default::default() }
}

fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(value), ..Default::default() }
}

fn tensor_attr(name: &str, value: TensorProto) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Tensor as i32), t: Some(value), ..Default::default() }
}
