//! Arachne's bidirectional localization on the last layer: each weight w[k, j] (feature k →
//! class j) is scored backwards by its gradient loss and forwards by its forward impact, on the
//! failing inputs relative to the passing ones, and the weights on the Pareto front of the two
//! scores are the ones the search changes.
//!
//! Our exact formulas (the paper's, specialised to the last layer; see docs/baselines.md):
//!
//! - GL(w[k, j], I) = |alpha · (1/|I|) Σ_i x_ik · (softmax(z_i) − onehot(y_i))_j|: the absolute
//!   value of the mean gradient of the cross-entropy loss w.r.t. the weight (closed form, so no
//!   autograd pass).
//! - FI(w[k, j], I) = front(k, j) · behind(j), with
//!   front(k, j) = (1/|I|) Σ_i |x_ik w[k, j]| / Σ_k' |x_ik' w[k', j]| (the weight's share of
//!   neuron j's input, the authors' l1 normalisation) and
//!   behind(j) = (1/|I|) Σ_i |g_ij| / Σ_j' |g_ij'|, g_i = ∂ p_i[ŷ_i] / ∂ z_i (how much logit j
//!   moves the probability of the predicted class; for the last layer the authors' "gradient of
//!   the output w.r.t. the neuron" needs a choice of output, this is ours).
//! - Costs: GL = GL(I_neg) / (1 + GL(I_pos)), FI = FI(I_neg) / (1 + FI(I_pos)) (the authors'
//!   bidirectional ratio); the localized weights are the first Pareto front (both maximised),
//!   extended by the next fronts up to `min_weights`, cut at `max_weights`.

use tch::{Kind, Tensor};

/// One input set's data for the scores: features [N, K], logits [N, C], labels [N].
pub(crate) struct Inputs<'a> {
    pub x: &'a Tensor,
    pub logits: &'a Tensor,
    pub labels: &'a Tensor,
}

/// GL and FI of every weight of the effective [K, C] matrix, row-major (k · C + j).
pub(crate) struct Scores {
    pub gradient_loss: Vec<f64>,
    pub forward_impact: Vec<f64>,
}

/// The bidirectional scores of the [K, C] weight `w` (alpha: the Gemm's).
pub(crate) fn scores(w: &Tensor, alpha: f64, neg: &Inputs, pos: &Inputs) -> Result<Scores, tch::TchError> {
    tch::no_grad(|| {
        let w = w.f_detach()?.f_to_kind(Kind::Double)?;
        let gl = gradient_loss(neg, alpha)?.f_div(&gradient_loss(pos, alpha)?.f_add_scalar(1.0)?)?;
        let fi = forward_impact(neg, &w)?.f_div(&forward_impact(pos, &w)?.f_add_scalar(1.0)?)?;
        Ok(Scores { gradient_loss: flat(&gl)?, forward_impact: flat(&fi)? })
    })
}

fn flat(t: &Tensor) -> Result<Vec<f64>, tch::TchError> {
    let v: Vec<f64> = Vec::try_from(&t.f_reshape([-1])?)?;
    Ok(v.into_iter().map(|x| if x.is_finite() { x } else { 0.0 }).collect())
}

/// |alpha · mean_i x_i ⊗ (p_i − onehot(y_i))| as [K, C]; zeros for an empty set.
fn gradient_loss(set: &Inputs, alpha: f64) -> Result<Tensor, tch::TchError> {
    let x = set.x.f_to_kind(Kind::Double)?;
    let n = x.size()[0];
    let classes = set.logits.size()[1];
    let p = set.logits.f_to_kind(Kind::Double)?.f_softmax(-1, Kind::Double)?;
    let onehot = Tensor::f_zeros([n, classes], (Kind::Double, p.device()))?.f_scatter_value(1, &set.labels.f_reshape([-1, 1])?, 1.0)?;
    let delta = p.f_sub(&onehot)?;
    let g = x.f_tr()?.f_matmul(&delta)?.f_mul_scalar(alpha)?;
    g.f_div_scalar(n.max(1) as f64)?.f_abs()
}

/// front(k, j) · behind(j) as [K, C]; zeros for an empty set.
fn forward_impact(set: &Inputs, w: &Tensor) -> Result<Tensor, tch::TchError> {
    let x = set.x.f_to_kind(Kind::Double)?.f_abs()?;
    let n = x.size()[0].max(1) as f64;
    let w_abs = w.f_abs()?;
    // D[i, j] = Σ_k |x_ik| |w_kj|; front = |w| ⊙ (|x|ᵀ · (1/D)) / N, with 1/0 read as 0.
    let d = x.f_matmul(&w_abs)?;
    let inv = d.f_reciprocal()?.f_where_scalarother(&d.f_gt(0.0)?, 0.0)?;
    let front = w_abs.f_mul(&x.f_tr()?.f_matmul(&inv)?)?.f_div_scalar(n)?;
    // g_i = ∂p[ŷ]/∂z = p[ŷ] (onehot(ŷ) − p), l1-normalised per input, averaged.
    let p = set.logits.f_to_kind(Kind::Double)?.f_softmax(-1, Kind::Double)?;
    let predicted = p.f_argmax(-1, true)?;
    let top = p.f_gather(1, &predicted, false)?;
    let onehot = p.f_zeros_like()?.f_scatter_value(1, &predicted, 1.0)?;
    let g = onehot.f_sub(&p)?.f_mul(&top)?.f_abs()?;
    let sum = g.f_sum_dim_intlist([1i64].as_slice(), true, Kind::Double)?;
    let normalised = g.f_div(&sum)?.f_where_scalarother(&sum.f_gt(0.0)?, 0.0)?;
    let behind = normalised.f_sum_dim_intlist([0i64].as_slice(), true, Kind::Double)?.f_div_scalar(n)?;
    front.f_mul(&behind)
}

/// Indices of the localized weights with their front number (0 = the Pareto front): whole fronts
/// while fewer than `min_weights` are taken, at most `max_weights` in all. Within a front: GL
/// descending, then FI, then index (deterministic).
pub(crate) fn pareto(gl: &[f64], fi: &[f64], min_weights: usize, max_weights: usize) -> Vec<(usize, usize)> {
    let mut remaining: Vec<usize> = (0..gl.len().min(fi.len())).collect();
    let mut chosen = Vec::new();
    let mut front_number = 0;
    while !remaining.is_empty() && (chosen.is_empty() || chosen.len() < min_weights) && chosen.len() < max_weights {
        let front = first_front(gl, fi, &remaining);
        let taken: std::collections::HashSet<usize> = front.iter().copied().collect();
        remaining.retain(|i| !taken.contains(i));
        chosen.extend(front.into_iter().map(|i| (i, front_number)));
        front_number += 1;
    }
    chosen.truncate(max_weights);
    chosen
}

/// The non-dominated points among `among` (both scores maximised), sorted GL desc, FI desc,
/// index asc. A point is dominated when another is ≥ in both scores and > in one.
fn first_front(gl: &[f64], fi: &[f64], among: &[usize]) -> Vec<usize> {
    let mut order = among.to_vec();
    order.sort_by(|&a, &b| gl[b].total_cmp(&gl[a]).then(fi[b].total_cmp(&fi[a])).then(a.cmp(&b)));
    let mut front = Vec::new();
    // Best FI among points with strictly greater GL than the current group.
    let mut best_before = f64::NEG_INFINITY;
    let mut start = 0;
    while start < order.len() {
        let g = gl[order[start]];
        let end = start + order[start..].iter().take_while(|&&i| gl[i] == g).count();
        let group_best = fi[order[start]];
        for &i in &order[start..end] {
            if fi[i] == group_best && fi[i] > best_before {
                front.push(i);
            }
        }
        best_before = best_before.max(group_best);
        start = end;
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_front_holds_exactly_the_non_dominated_points() {
        // (gl, fi): 0 (3,1) front, 1 (1,3) front, 2 (2,2) front, 3 (2,1) dominated by 2,
        // 4 (1,1) dominated, 5 (2,2) duplicate of 2: front.
        let gl = [3.0, 1.0, 2.0, 2.0, 1.0, 2.0];
        let fi = [1.0, 3.0, 2.0, 1.0, 1.0, 2.0];
        assert_eq!(first_front(&gl, &fi, &[0, 1, 2, 3, 4, 5]), vec![0, 2, 5, 1]);
        // Fronts are peeled until min_weights; the cap cuts.
        assert_eq!(pareto(&gl, &fi, 1, 10), vec![(0, 0), (2, 0), (5, 0), (1, 0)]);
        assert_eq!(pareto(&gl, &fi, 5, 10), vec![(0, 0), (2, 0), (5, 0), (1, 0), (3, 1)]);
        assert_eq!(pareto(&gl, &fi, 6, 10), vec![(0, 0), (2, 0), (5, 0), (1, 0), (3, 1), (4, 2)]);
        assert_eq!(pareto(&gl, &fi, 1, 2), vec![(0, 0), (2, 0)]);
    }
}
