//! The two optimisers of the search, written out (PyTorch's update rules) rather than taken from
//! tch, so their state is plain tensors we can checkpoint and resume bit for bit, and so an
//! optimiser steps any list of tensors (cell weights, α) with gradients asked of autograd for
//! exactly those tensors: nothing accumulates in `.grad` of anything else.

use tch::Tensor;

/// SGD with momentum and L2 weight decay (torch.optim.SGD, dampening 0, not Nesterov).
pub struct Sgd {
    pub params: Vec<Tensor>,
    pub momentum: f64,
    pub weight_decay: f64,
    pub buffers: Vec<Tensor>,
}

impl Sgd {
    pub fn new(params: Vec<Tensor>, momentum: f64, weight_decay: f64) -> Sgd {
        let buffers = params.iter().map(|p| p.zeros_like()).collect();
        Sgd { params, momentum, weight_decay, buffers }
    }

    /// One update with `grads` (one per parameter); the first step starts the momentum at the
    /// gradient as PyTorch does (buffers start at zero, so `m·0 + g = g`).
    pub fn step(&mut self, grads: &[Tensor], lr: f64) {
        tch::no_grad(|| {
            for ((p, buf), g) in self.params.iter_mut().zip(&mut self.buffers).zip(grads) {
                if !g.defined() {
                    continue; // the loss does not depend on it (PyTorch skips a None grad)
                }
                let g = g + &*p * self.weight_decay;
                let _ = buf.g_mul_scalar_(self.momentum).g_add_(&g);
                let _ = p.g_sub_(&(&*buf * lr));
            }
        });
    }
}

/// Adam with L2 weight decay added to the gradient (torch.optim.Adam, not AdamW).
pub struct Adam {
    pub params: Vec<Tensor>,
    pub betas: [f64; 2],
    pub weight_decay: f64,
    pub eps: f64,
    pub first: Vec<Tensor>,
    pub second: Vec<Tensor>,
    pub steps: i64,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, betas: [f64; 2], weight_decay: f64) -> Adam {
        let first = params.iter().map(|p| p.zeros_like()).collect();
        let second = params.iter().map(|p| p.zeros_like()).collect();
        Adam { params, betas, weight_decay, eps: 1e-8, first, second, steps: 0 }
    }

    pub fn step(&mut self, grads: &[Tensor], lr: f64) {
        self.steps += 1;
        let [b1, b2] = self.betas;
        let correction1 = 1.0 - b1.powi(self.steps as i32);
        let correction2 = 1.0 - b2.powi(self.steps as i32);
        tch::no_grad(|| {
            for (((p, m), v), g) in self.params.iter_mut().zip(&mut self.first).zip(&mut self.second).zip(grads) {
                if !g.defined() {
                    continue;
                }
                let g = g + &*p * self.weight_decay;
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                let denominator = (&*v / correction2).sqrt() + self.eps;
                let _ = p.g_sub_(&(&*m / &denominator * (lr / correction1)));
            }
        });
    }
}

/// Gradients of `loss` with respect to `params` (without touching any `.grad`); undefined for
/// a parameter the loss does not depend on (e.g. weights of the replaced block).
pub fn gradients(loss: &Tensor, params: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
    Tensor::f_run_backward(&[loss], params, false, false)
}

/// Scales `grads` so their joint L2 norm is at most `max_norm` (torch.nn.utils.clip_grad_norm_);
/// returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> f64 {
    if grads.is_empty() {
        return 0.0;
    }
    let norm = tch::no_grad(|| {
        let squares: Vec<Tensor> = grads.iter().filter(|g| g.defined()).map(|g| g.pow_tensor_scalar(2).sum(tch::Kind::Float)).collect();
        if squares.is_empty() {
            return 0.0;
        }
        Tensor::stack(&squares, 0).sum(tch::Kind::Float).sqrt().double_value(&[])
    });
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for g in grads.iter_mut().filter(|g| g.defined()) {
            *g = &*g * scale;
        }
    }
    norm
}

/// Cosine annealing from `lr` to `lr_min` over `total` steps (torch's CosineAnnealingLR).
pub fn cosine(lr: f64, lr_min: f64, step: usize, total: usize) -> f64 {
    if total == 0 {
        return lr;
    }
    lr_min + 0.5 * (lr - lr_min) * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(p: &Tensor) -> Tensor {
        (p - 3.0).pow_tensor_scalar(2).sum(tch::Kind::Float)
    }

    #[test]
    fn sgd_and_adam_follow_pytorch_update_rules() {
        // Minimise (p - 3)^2 from p = 0. SGD lr 0.1, momentum 0.9: g = -6 → p = 0.6;
        // g = -4.8, buffer = 0.9·(-6) - 4.8 = -10.2 → p = 1.62.
        let p = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let mut sgd = Sgd::new(vec![p.shallow_clone()], 0.9, 0.0);
        for expected in [0.6f64, 1.62] {
            let g = gradients(&loss(&p), &sgd.params).unwrap();
            sgd.step(&g, 0.1);
            assert!((p.double_value(&[0]) - expected).abs() < 1e-5, "{}", p.double_value(&[0]));
        }
        // Adam's first step moves by lr in the gradient's opposite direction.
        let q = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let mut adam = Adam::new(vec![q.shallow_clone()], [0.9, 0.999], 0.0);
        let g = gradients(&loss(&q), &adam.params).unwrap();
        adam.step(&g, 0.01);
        assert!((q.double_value(&[0]) - 0.01).abs() < 1e-6);
        assert!(!p.grad().defined() && !q.grad().defined(), "nothing accumulates in .grad");
    }

    #[test]
    fn clipping_bounds_the_joint_norm() {
        let mut grads = vec![Tensor::from_slice(&[30.0f32, 40.0])];
        let before = clip_grad_norm(&mut grads, 5.0);
        assert!((before - 50.0).abs() < 1e-4);
        assert!((grads[0].double_value(&[0]) - 3.0).abs() < 1e-3 && (grads[0].double_value(&[1]) - 4.0).abs() < 1e-3);
        assert!((cosine(0.025, 0.001, 0, 10) - 0.025).abs() < 1e-12 && (cosine(0.025, 0.001, 10, 10) - 0.001).abs() < 1e-12);
    }
}
