//! DARTS's second-order α gradient. The architecture gradient of the unrolled objective
//! L_val(w', α) with w' = w − ξ·(∇_w L_train(w, α) + λw) is
//!
//!   ∇_α L_val(w', α) − ξ · ∇²_{α,w} L_train(w, α) · ∇_{w'} L_val(w', α)
//!
//! and the Hessian-vector product is approximated by a central finite difference:
//! (∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / 2ε with w± = w ± ε·∇_{w'} L_val and
//! ε = 0.01 / ‖∇_{w'} L_val‖ (Liu et al. 2019, eq. 7-8). The weights are moved in place and
//! restored bit for bit afterwards.

use tch::{TchError, Tensor};

use super::optim::gradients;

/// The unrolled α gradient. `train_loss` and `val_loss` compute their loss from the current
/// values of `weights` and `alpha` (which this function moves and then restores).
pub fn unrolled_alpha_gradient(
    weights: &[Tensor],
    alpha: &[Tensor],
    xi: f64,
    weight_decay: f64,
    train_loss: &mut dyn FnMut() -> Result<Tensor, TchError>,
    val_loss: &mut dyn FnMut() -> Result<Tensor, TchError>,
) -> Result<Vec<Tensor>, TchError> {
    let saved: Vec<Tensor> = weights.iter().map(|w| w.detach().copy()).collect();
    let restore = || {
        tch::no_grad(|| {
            for (w, s) in weights.iter().zip(&saved) {
                let _ = w.shallow_clone().copy_(s);
            }
        })
    };
    // Virtual step w' = w − ξ(∇w L_train + λw).
    let g_train = gradients(&train_loss()?, weights)?;
    tch::no_grad(|| {
        for ((w, g), s) in weights.iter().zip(&g_train).zip(&saved) {
            let _ = w.shallow_clone().copy_(&(s - (g + s * weight_decay) * xi));
        }
    });
    let both: Vec<Tensor> = alpha.iter().chain(weights).map(|t| t.shallow_clone()).collect();
    let g_val = gradients(&val_loss()?, &both);
    restore();
    let g_val = g_val?;
    let (d_alpha, d_weights) = g_val.split_at(alpha.len());

    let norm = tch::no_grad(|| d_weights.iter().map(|g| g.square().sum(tch::Kind::Double).double_value(&[])).sum::<f64>().sqrt());
    if norm == 0.0 {
        return Ok(d_alpha.iter().map(Tensor::shallow_clone).collect());
    }
    let eps = 0.01 / norm;
    let mut at = |sign: f64| -> Result<Vec<Tensor>, TchError> {
        tch::no_grad(|| {
            for ((w, d), s) in weights.iter().zip(d_weights).zip(&saved) {
                let _ = w.shallow_clone().copy_(&(s + d * (sign * eps)));
            }
        });
        gradients(&train_loss()?, alpha)
    };
    let plus = at(1.0);
    let minus = at(-1.0);
    restore();
    let (plus, minus) = (plus?, minus?);
    Ok(d_alpha
        .iter()
        .zip(plus.iter().zip(&minus))
        .map(|(d, (p, m))| d - (p - m) * (xi / (2.0 * eps)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Reduction};

    /// A tiny mixed op: logits = Σ_k softmax(α)_k · tanh(x W_k), two candidates.
    fn logits(x: &Tensor, w: &[Tensor], alpha: &Tensor) -> Tensor {
        let mix = alpha.softmax(-1, Kind::Double);
        x.matmul(&w[0]).tanh() * mix.get(0) + x.matmul(&w[1]).tanh() * mix.get(1)
    }

    fn loss(x: &Tensor, y: &Tensor, w: &[Tensor], alpha: &Tensor) -> Tensor {
        logits(x, w, alpha).log_softmax(-1, Kind::Double).g_nll_loss(y, None::<Tensor>, Reduction::Mean, -100)
    }

    #[test]
    fn matches_double_backward_on_a_tiny_net() {
        tch::manual_seed(7);
        let opts = (Kind::Double, tch::Device::Cpu);
        let (xt, yt) = (Tensor::randn([16, 5], opts), Tensor::randint(3, [16], (Kind::Int64, tch::Device::Cpu)));
        let (xv, yv) = (Tensor::randn([16, 5], opts), Tensor::randint(3, [16], (Kind::Int64, tch::Device::Cpu)));
        let w: Vec<Tensor> = (0..2).map(|_| Tensor::randn([5, 3], opts).set_requires_grad(true)).collect();
        let alpha = (Tensor::randn([2], opts) * 0.5).set_requires_grad(true);
        let (xi, wd) = (0.1, 3e-4);

        // Exact: differentiate through the virtual step with create_graph (double backward).
        let g = Tensor::run_backward(&[loss(&xt, &yt, &w, &alpha)], &w, true, true);
        let unrolled: Vec<Tensor> = w.iter().zip(&g).map(|(w, g)| w - (g + w * wd) * xi).collect();
        let exact = Tensor::run_backward(&[loss(&xv, &yv, &unrolled, &alpha)], &[&alpha], false, false).remove(0);

        let before: Vec<Tensor> = w.iter().map(|t| t.detach().copy()).collect();
        let approx = unrolled_alpha_gradient(
            &w,
            &[alpha.shallow_clone()],
            xi,
            wd,
            &mut || Ok(loss(&xt, &yt, &w, &alpha)),
            &mut || Ok(loss(&xv, &yv, &w, &alpha)),
        )
        .unwrap()
        .remove(0);
        let first_order = Tensor::run_backward(&[loss(&xv, &yv, &w, &alpha)], &[&alpha], false, false).remove(0);

        let diff = (&approx - &exact).abs().max().double_value(&[]);
        let scale = exact.abs().max().double_value(&[]);
        assert!(diff < 1e-4 * scale.max(1e-3), "finite difference {approx:?} vs double backward {exact:?}");
        // The second-order term is not negligible here, so the check has teeth.
        let first_gap = (&first_order - &exact).abs().max().double_value(&[]);
        assert!(first_gap > 100.0 * diff, "first-order gap {first_gap} vs approximation error {diff}");
        for (w, b) in w.iter().zip(&before) {
            assert!(w.detach().equal(b), "weights restored bit for bit");
        }
    }
}
