//! Looking inside a run, for localization: intermediate tensors captured by their ONNX names,
//! and per-example weight-gradient norms of the Conv/Gemm/MatMul layers that produce neurons.

use tch::Tensor;

use super::exec::ExecError;
use super::ops::Op;
use super::window::conv_weight_grad_norms;
use super::{LowerError, LoweredModel};

impl LoweredModel {
    /// Runs like [`LoweredModel::forward_t`] and also returns the values of the tensors named in
    /// `names` (ONNX names; the graph input included), in that order. Captured values stay in
    /// the autograd graph, so gradients can be asked for with respect to them.
    pub fn forward_capture(&self, x: &Tensor, train: bool, names: &[String]) -> Result<(Tensor, Vec<Tensor>), LowerError> {
        let slots: Vec<usize> = names
            .iter()
            .map(|name| {
                self.slot_of.get(name).copied().ok_or_else(|| LowerError::Tensor {
                    tensor: name.clone(),
                    reason: "no value of this name is computed by the model".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut captured: Vec<Option<Tensor>> = names.iter().map(|_| None).collect();
        let output = self.run(x, train, |slot, value| {
            for (i, _) in slots.iter().enumerate().filter(|(_, s)| **s == slot) {
                captured[i] = Some(value.shallow_clone());
            }
        })?;
        let captured = captured
            .into_iter()
            .zip(names)
            .map(|(value, name)| {
                value.ok_or_else(|| LowerError::Tensor { tensor: name.clone(), reason: "is a constant, not computed from the input".into() })
            })
            .collect::<Result<_, _>>()?;
        Ok((output, captured))
    }

    /// For the Conv, Gemm or MatMul node `node`: ||∂L_i/∂W[c]|| for every example i and output
    /// unit c (the kernel slice, or weight column, that produces channel c, with its bias), from
    /// the node's captured `input` and `delta`, the gradient of the summed loss w.r.t. its output.
    /// Exact in eval mode, where examples do not interact. Returns [N, C_out].
    pub fn weight_grad_norms(&self, node: &str, input: &Tensor, delta: &Tensor) -> Result<Tensor, LowerError> {
        let step = self.steps.iter().find(|s| s.node == node).ok_or_else(|| LowerError::Node {
            node: node.into(),
            op_type: "?".into(),
            reason: "no such node in the lowered graph".into(),
        })?;
        let constant = |i: usize| step.inputs.get(i).copied().flatten().and_then(|slot| self.bound.iter().find(|(s, _)| *s == slot)).map(|(_, t)| t);
        let fail = |reason: String| LowerError::Node { node: node.into(), op_type: step.op_type.clone(), reason };
        let weight = constant(1).ok_or_else(|| fail("the weight (input 1) is not a constant of the model".into()))?;
        let torch = |source: tch::TchError| LowerError::Run { node: node.into(), op_type: step.op_type.clone(), source };
        match &step.op {
            Op::Conv { window, group } => conv_weight_grad_norms(input, delta, &weight.size(), window, *group, constant(2).is_some()).map_err(|e| match e {
                ExecError::Torch(source) => torch(source),
                ExecError::Invalid(reason) => fail(reason),
            }),
            Op::Gemm { trans_a: false, alpha, beta, .. } => {
                let bias = constant(2).filter(|c| c.dim() == 1).map(|_| *beta);
                linear_grad_norms(input, delta, *alpha, bias).map_err(torch)
            }
            Op::MatMul => linear_grad_norms(input, delta, 1.0, None).map_err(torch),
            _ => Err(fail("per-example weight gradients are computed for Conv, Gemm (without transA) and MatMul nodes".into())),
        }
    }
}

/// Per-example, per-output-unit gradient norm of `y = alpha · x W (+ beta · b)`: x [N, ..., K],
/// delta [N, ..., C] (positions summed, as a 1x1 convolution would).
fn linear_grad_norms(x: &Tensor, delta: &Tensor, alpha: f64, bias_scale: Option<f64>) -> Result<Tensor, tch::TchError> {
    let n = x.size()[0];
    let x = x.f_reshape([n, -1, *x.size().last().unwrap_or(&1)])?;
    let units = *delta.size().last().unwrap_or(&1);
    let delta = delta.f_reshape([n, -1, units])?;
    let grads = delta.f_transpose(1, 2)?.f_matmul(&x)?.f_mul_scalar(alpha)?;
    let mut squares = grads.f_square()?.f_sum_dim_intlist([2i64].as_slice(), false, None)?;
    if let Some(beta) = bias_scale {
        squares = squares.f_add(&delta.f_sum_dim_intlist([1i64].as_slice(), false, None)?.f_mul_scalar(beta)?.f_square()?)?;
    }
    squares.f_sqrt()
}
