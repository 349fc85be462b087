//! The layer Arachne repairs: the model's last fully connected layer, found in the graph, and
//! its logits recomputed from captured input features, so that every fitness evaluation of the
//! search is one small matrix product instead of a forward pass through the whole network.
//!
//! The recomputation follows the ONNX node (Gemm's `alpha`, `beta`, `transB`; MatMul then Add)
//! and is checked against the model's own output on every captured batch, so a head that is not
//! the plain linear layer it looks like is refused instead of silently repaired wrongly.

use tch::{Kind, Tensor};

use crate::graph::Graph;
use crate::lower::ops::Op;
use crate::lower::{LowerError, Role};
use crate::Error;

use super::super::Context;

/// Ops between the head and the graph output that keep the class order and the argmax.
const PASS_THROUGH: [&str; 7] = ["Softmax", "LogSoftmax", "Flatten", "Reshape", "Identity", "Dropout", "Squeeze"];

/// Largest accepted difference between recomputed and model logits, relative to max(1, |logit|).
const TOLERANCE: f64 = 1e-4;

/// Where the head sits in the graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Head {
    /// The Gemm or MatMul node.
    pub node: String,
    /// `Gemm` or `MatMul+Add`.
    pub op: &'static str,
    /// The features (the node's input A).
    pub input: String,
    /// The logits: the Gemm's output, or the Add's.
    pub output: String,
    /// The initializer of the weight (input B).
    pub weight: String,
    pub bias: Option<String>,
    pub alpha: f64,
    pub beta: f64,
    /// The weight is stored [classes, features] (Gemm transB=1).
    pub trans_b: bool,
}

/// The last Gemm (or MatMul followed by Add) before the graph output, through ops that only
/// reshape or normalise the logits.
pub(crate) fn find(graph: &Graph) -> Result<Head, Error> {
    let mut walked: Vec<usize> = Vec::new();
    let mut tensor = graph.outputs.first().map(|o| o.name.clone()).unwrap_or_default();
    while let Some(p) = graph.producer(&tensor) {
        walked.push(p);
        let node = &graph.nodes[p];
        match node.op_type.as_str() {
            op if PASS_THROUGH.contains(&op) => tensor = node.inputs.first().cloned().unwrap_or_default(),
            "Gemm" => return gemm(graph, p),
            "Add" => {
                if let Some(head) = matmul_add(graph, p) {
                    return Ok(head);
                }
                break;
            }
            _ => break,
        }
    }
    Err(Error::Mismatch(format!(
        "arachne repairs the last fully connected layer; `{}` ends in {} (no Gemm, or MatMul followed by Add, before the output)",
        graph.name,
        last_nodes(graph, walked)
    )))
}

fn gemm(graph: &Graph, p: usize) -> Result<Head, Error> {
    let node = &graph.nodes[p];
    let Op::Gemm { alpha, beta, trans_a, trans_b } = parse(graph, p)? else {
        return Err(Error::Mismatch(format!("node `{}` is not a Gemm", node.name)));
    };
    if trans_a {
        return Err(Error::Mismatch(format!("arachne: the last Gemm `{}` transposes its input (transA=1); only transA=0 heads are supported", node.name)));
    }
    let input = |i: usize| node.inputs.get(i).filter(|n| !n.is_empty()).cloned();
    Ok(Head {
        node: node.name.clone(),
        op: "Gemm",
        input: input(0).unwrap_or_default(),
        output: node.outputs.first().cloned().unwrap_or_default(),
        weight: input(1).unwrap_or_default(),
        bias: input(2),
        alpha,
        beta,
        trans_b,
    })
}

/// An Add of a MatMul's output and a constant: the head as exporters write `x @ W + b`.
fn matmul_add(graph: &Graph, add: usize) -> Option<Head> {
    let node = &graph.nodes[add];
    let [a, b] = [node.inputs.first()?, node.inputs.get(1)?];
    let (product, bias) = [(a, b), (b, a)].into_iter().find(|(x, c)| {
        graph.producer(x).is_some_and(|m| graph.nodes[m].op_type == "MatMul") && graph.initializers.contains_key(*c)
    })?;
    let matmul = &graph.nodes[graph.producer(product)?];
    let weight = matmul.inputs.get(1)?;
    graph.initializers.contains_key(weight).then(|| Head {
        node: matmul.name.clone(),
        op: "MatMul+Add",
        input: matmul.inputs.first().cloned().unwrap_or_default(),
        output: node.outputs.first().cloned().unwrap_or_default(),
        weight: weight.clone(),
        bias: Some(bias.clone()),
        alpha: 1.0,
        beta: 1.0,
        trans_b: false,
    })
}

fn parse(graph: &Graph, p: usize) -> Result<Op, Error> {
    match crate::lower::ops::parse(&graph.nodes[p], graph.opset()) {
        Ok(crate::lower::ops::Parsed::Op(op)) => Ok(op),
        Ok(_) => Err(Error::Mismatch(format!("node `{}` cannot be lowered", graph.nodes[p].name))),
        Err(e) => Err(Error::Mismatch(e.to_string())),
    }
}

/// "Conv `c` → GlobalAveragePool `g` → Flatten `f`": the walked nodes and up to two producers
/// before them, in graph order.
fn last_nodes(graph: &Graph, mut walked: Vec<usize>) -> String {
    for _ in 0..2 {
        let Some(&first) = walked.last() else { break };
        match graph.nodes[first].inputs.first().and_then(|t| graph.producer(t)) {
            Some(p) => walked.push(p),
            None => break,
        }
    }
    if walked.is_empty() {
        return "no node (the output is an input or a constant)".into();
    }
    walked.iter().rev().map(|&i| format!("{} `{}`", graph.nodes[i].op_type, graph.nodes[i].name)).collect::<Vec<_>>().join(" → ")
}

/// The head as numbers: the model's weight tensor (changed in place when the patch is kept)
/// and what recomputes its logits.
pub(crate) struct Layer {
    pub head: Head,
    /// The model's own weight variable, in the initializer's layout.
    pub weight: Tensor,
    /// The weight as [features, classes] (a transposed view when transB=1).
    pub w_eff: Tensor,
    /// beta · bias as [1, classes] (zeros without bias).
    offset: Tensor,
}

impl Layer {
    pub fn new(ctx: &Context, head: Head) -> Result<Layer, Error> {
        let model_weight = |name: &str| ctx.model.weights().iter().find(|w| w.onnx_name == name && w.role == Role::Trainable);
        let weight = model_weight(&head.weight)
            .ok_or_else(|| Error::Mismatch(format!("arachne: the weight `{}` of `{}` is not a trainable constant of the model", head.weight, head.node)))?
            .tensor
            .shallow_clone();
        let torch = Error::torch("preparing the last layer for arachne");
        if weight.dim() != 2 {
            return Err(Error::Mismatch(format!("arachne: the weight `{}` of `{}` has shape {:?}; a fully connected layer's is 2-D", head.weight, head.node, weight.size())));
        }
        let w_eff = if head.trans_b { weight.f_tr().map_err(&torch)? } else { weight.shallow_clone() };
        let classes = w_eff.size()[1];
        let bias = match &head.bias {
            None => None,
            Some(name) => Some(match model_weight(name) {
                Some(w) => w.tensor.f_detach().map_err(&torch)?,
                None => {
                    let t = ctx.graph.initializers.get(name).ok_or_else(|| Error::Mismatch(format!("arachne: the bias `{name}` of `{}` is not a constant", head.node)))?;
                    Tensor::f_from_slice(&t.to_f32()).and_then(|b| b.f_to_device(ctx.model.device())).map_err(&torch)?
                }
            }),
        };
        let offset = match bias {
            None => Tensor::f_zeros([1, classes], (Kind::Float, ctx.model.device())).map_err(&torch)?,
            Some(b) if b.numel() as i64 == classes || b.numel() == 1 => {
                b.f_reshape([1, -1]).and_then(|b| b.f_to_kind(Kind::Float)).and_then(|b| b.f_mul_scalar(head.beta)).map_err(&torch)?
            }
            Some(b) => return Err(Error::Mismatch(format!("arachne: the bias of `{}` has shape {:?}; expected one value per class ({classes})", head.node, b.size()))),
        };
        Ok(Layer { head, weight, w_eff, offset })
    }

    pub fn features(&self) -> i64 {
        self.w_eff.size()[0]
    }

    pub fn classes(&self) -> i64 {
        self.w_eff.size()[1]
    }

    /// alpha · x · W + beta · C for features `x` [N, K] and a weight [K, C].
    pub fn logits_with(&self, x: &Tensor, w_eff: &Tensor) -> Result<Tensor, tch::TchError> {
        x.f_matmul(w_eff)?.f_mul_scalar(self.head.alpha)?.f_add(&self.offset)
    }

    pub fn logits(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        tch::no_grad(|| self.logits_with(x, &self.w_eff.f_detach()?))
    }

    /// Features [N, K] and recomputed logits [N, C] of `rows` of the repair data, in eval mode
    /// without gradients, in batches of 256 (or the model's fixed batch size). Each batch's
    /// recomputed logits are checked against the model's.
    pub fn capture(&self, ctx: &Context, rows: &[i64]) -> Result<(Tensor, Tensor), Error> {
        let torch = Error::torch("capturing the last layer's input for arachne");
        let names = [self.head.input.clone(), self.head.output.clone()];
        let mut features = Vec::new();
        for chunk in rows.chunks(ctx.classifier.input.batch_size(256)) {
            let (pixels, real) = padded_pixels(ctx, chunk)?;
            let x = ctx.classifier.input.normalise(&pixels).map_err(&torch)?;
            let (_, captured) = tch::no_grad(|| ctx.model.forward_capture(&x, false, &names)).map_err(lower("capturing the last layer's input for arachne"))?;
            let n = captured[0].size().first().copied().unwrap_or(0);
            if captured[0].dim() != 2 || n < real {
                return Err(Error::Mismatch(format!(
                    "arachne: the input `{}` of `{}` has shape {:?}; a fully connected head reads [batch, features]",
                    self.head.input,
                    self.head.node,
                    captured[0].size()
                )));
            }
            let x = captured[0].f_narrow(0, 0, real).and_then(|t| t.f_to_kind(Kind::Float)).map_err(&torch)?;
            let model = captured[1].f_narrow(0, 0, real).and_then(|t| t.f_reshape([real, -1])).map_err(&torch)?;
            let ours = self.logits(&x).map_err(&torch)?;
            self.check(&ours, &model)?;
            features.push(x);
        }
        if features.is_empty() {
            let empty = Tensor::f_zeros([0, self.features()], (Kind::Float, ctx.model.device())).map_err(&torch)?;
            let logits = self.logits(&empty).map_err(&torch)?;
            return Ok((empty, logits));
        }
        let x = Tensor::f_cat(&features, 0).map_err(&torch)?;
        let logits = self.logits(&x).map_err(&torch)?;
        Ok((x, logits))
    }

    /// Recomputed logits must equal the model's (same shape, within TOLERANCE).
    fn check(&self, ours: &Tensor, model: &Tensor) -> Result<(), Error> {
        let torch = Error::torch("checking the recomputed logits");
        if ours.size() != model.size() {
            return Err(Error::Mismatch(format!("arachne: `{}` outputs {:?}; recomputed from its input and weight: {:?}", self.head.node, model.size(), ours.size())));
        }
        if ours.numel() == 0 {
            return Ok(());
        }
        let diff = ours.f_sub(model).and_then(|d| d.f_abs()).and_then(|d| d.f_max()).map_err(&torch)?.double_value(&[]);
        let scale = model.f_abs().and_then(|m| m.f_max()).map_err(&torch)?.double_value(&[]).max(1.0);
        if !(diff <= TOLERANCE * scale) {
            return Err(Error::Mismatch(format!(
                "arachne: recomputing the logits of `{}` ({}) from its input and weight differs from the model's by {diff:.3e} (tolerance {:.1e}); the layer is not the plain fully connected layer it looks like",
                self.head.node,
                self.head.op,
                TOLERANCE * scale
            )));
        }
        Ok(())
    }

    /// Index of the effective weight [k, j] in the initializer's flat layout.
    pub fn flat_index(&self, k: i64, j: i64) -> i64 {
        if self.head.trans_b {
            j * self.features() + k
        } else {
            k * self.classes() + j
        }
    }

    /// The initializer's multi-index of the effective weight [k, j].
    pub fn index(&self, k: i64, j: i64) -> Vec<i64> {
        if self.head.trans_b {
            vec![j, k]
        } else {
            vec![k, j]
        }
    }
}

/// Pixels of `rows`, filled up with copies of the last row to the model's fixed batch size;
/// returns how many rows are real.
pub(crate) fn padded_pixels(ctx: &Context, rows: &[i64]) -> Result<(Tensor, i64), Error> {
    let mut padded = rows.to_vec();
    if let (Some(fixed), Some(&last)) = (ctx.classifier.input.fixed_batch(), rows.last()) {
        padded.resize(fixed.max(rows.len()), last);
    }
    let (pixels, _) = ctx.data.batch(&padded).map_err(Error::torch("reading repair data rows"))?;
    Ok((pixels, rows.len() as i64))
}

/// A lowered-model error of the step named by `context`: libtorch errors keep their source,
/// the others (graph problems) become messages.
pub(crate) fn lower(context: &'static str) -> impl Fn(LowerError) -> Error {
    move |e| match e {
        LowerError::Torch(source) => Error::Torch { context, source },
        other => Error::Mismatch(format!("{context}: {other}")),
    }
}
