//! Spectrum counts per neuron and the suspiciousness formulas of spectrum-based fault
//! localization, adapted to neurons as in ArchRepair.
//!
//! For neuron n: a_f / n_f = failing inputs on which it is activated / not activated, a_p / n_p
//! the same on passing inputs. Each input counts with the weight g_i(n) = ||∂L_i/∂W_n|| of the
//! weights producing n; the weights of a neuron are rescaled to average 1 over all inputs, so the
//! weighted counts stay on the scale of plain counts (D* depends on it) while inputs whose loss
//! depends most on n count most. Plain (unweighted) counts are kept too: the `activation`
//! baseline and the evidence use them.

use tch::{Kind, Tensor};

use super::options::Formula;

/// Activated/not-activated counts on failing/passing inputs, for one neuron.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub af: f64,
    pub nf: f64,
    pub ap: f64,
    pub np: f64,
}

/// A zero D* denominator (a neuron active on every failing input and no passing one) counts
/// as this, so the score stays finite and still ranks first.
const DSTAR_FLOOR: f64 = 1e-6;

impl Counts {
    /// The suspiciousness of the neuron under `formula`; 0 where a ratio has no data.
    pub fn score(&self, formula: Formula) -> f64 {
        let Counts { af, nf, ap, np } = *self;
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        match formula {
            Formula::Ochiai => ratio(af, ((af + nf) * (af + ap)).sqrt()),
            Formula::Tarantula => {
                let (fail, pass) = (ratio(af, af + nf), ratio(ap, ap + np));
                ratio(fail, fail + pass)
            }
            Formula::Dstar2 => af.powi(2) / (ap + nf).max(DSTAR_FLOOR),
            Formula::Dstar3 => af.powi(3) / (ap + nf).max(DSTAR_FLOOR),
        }
    }
}

/// Running sums over inputs, one entry per neuron.
#[derive(Debug, Clone, Default)]
pub struct Spectrum {
    /// Plain counts.
    counts: Vec<Counts>,
    /// Gradient-weighted sums (not yet rescaled).
    weighted: Vec<Counts>,
    failing_inputs: usize,
    passing_inputs: usize,
}

impl Spectrum {
    pub fn new(neurons: usize) -> Spectrum {
        Spectrum { counts: vec![Counts::default(); neurons], weighted: vec![Counts::default(); neurons], ..Spectrum::default() }
    }

    pub fn neurons(&self) -> usize {
        self.counts.len()
    }

    pub fn failing_inputs(&self) -> usize {
        self.failing_inputs
    }

    pub fn passing_inputs(&self) -> usize {
        self.passing_inputs
    }

    /// Adds a batch: `active` and `weights` are [N, neurons] (active 0/1), all rows failing
    /// inputs or all passing.
    pub fn add(&mut self, active: &Tensor, weights: &Tensor, failing: bool) -> Result<(), tch::TchError> {
        let rows = active.size()[0] as usize;
        let active = active.f_to_kind(Kind::Double)?;
        let inactive = active.f_neg()?.f_add_scalar(1.0)?;
        let weights = weights.f_to_kind(Kind::Double)?;
        let column_sums = |t: &Tensor| -> Result<Vec<f64>, tch::TchError> {
            let sums = t.f_sum_dim_intlist([0i64].as_slice(), false, Kind::Double)?.f_to_device(tch::Device::Cpu)?;
            Vec::<f64>::try_from(&sums)
        };
        let (on, off) = (column_sums(&active)?, column_sums(&inactive)?);
        let (w_on, w_off) = (column_sums(&active.f_mul(&weights)?)?, column_sums(&inactive.f_mul(&weights)?)?);
        for (n, (c, w)) in self.counts.iter_mut().zip(self.weighted.iter_mut()).enumerate() {
            if failing {
                (c.af, c.nf, w.af, w.nf) = (c.af + on[n], c.nf + off[n], w.af + w_on[n], w.nf + w_off[n]);
            } else {
                (c.ap, c.np, w.ap, w.np) = (c.ap + on[n], c.np + off[n], w.ap + w_on[n], w.np + w_off[n]);
            }
        }
        if failing {
            self.failing_inputs += rows;
        } else {
            self.passing_inputs += rows;
        }
        Ok(())
    }

    /// Plain counts of neuron `n`.
    pub fn counts(&self, n: usize) -> Counts {
        self.counts[n]
    }

    /// Gradient-weighted counts of neuron `n`, rescaled so its weights average 1 over all
    /// inputs; plain counts where every weight was 0.
    pub fn weighted_counts(&self, n: usize) -> Counts {
        let w = self.weighted[n];
        let total = w.af + w.nf + w.ap + w.np;
        if total <= 0.0 {
            return self.counts[n];
        }
        let scale = (self.failing_inputs + self.passing_inputs) as f64 / total;
        Counts { af: w.af * scale, nf: w.nf * scale, ap: w.ap * scale, np: w.np * scale }
    }

    /// Mean weight-gradient norm of neuron `n` on failing and on passing inputs (not rescaled).
    pub fn mean_gradients(&self, n: usize) -> (f64, f64) {
        let w = self.weighted[n];
        let mean = |sum: f64, count: usize| if count > 0 { sum / count as f64 } else { 0.0 };
        (mean(w.af + w.nf, self.failing_inputs), mean(w.ap + w.np, self.passing_inputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_hand_computed_values() {
        let c = Counts { af: 6.0, nf: 2.0, ap: 3.0, np: 9.0 };
        // Ochiai: 6 / sqrt(8 * 9)
        assert!((c.score(Formula::Ochiai) - 6.0 / 72f64.sqrt()).abs() < 1e-12);
        // Tarantula: (6/8) / (6/8 + 3/12) = 0.75 / 1.0
        assert!((c.score(Formula::Tarantula) - 0.75).abs() < 1e-12);
        // D*: 36 / 5 and 216 / 5
        assert!((c.score(Formula::Dstar2) - 7.2).abs() < 1e-12);
        assert!((c.score(Formula::Dstar3) - 43.2).abs() < 1e-12);
        // Never activated: nothing to blame; active on all failures and no passing: the floor.
        let silent = Counts { af: 0.0, nf: 8.0, ap: 0.0, np: 12.0 };
        assert!(Formula::ALL.iter().all(|&f| silent.score(f) == 0.0));
        let perfect = Counts { af: 8.0, nf: 0.0, ap: 0.0, np: 12.0 };
        assert_eq!((perfect.score(Formula::Ochiai), perfect.score(Formula::Tarantula)), (1.0, 1.0));
        assert_eq!(perfect.score(Formula::Dstar2), 64.0 / DSTAR_FLOOR);
    }

    #[test]
    fn counts_and_weights_accumulate_per_neuron_and_rescale_to_plain_count_scale() {
        let mut s = Spectrum::new(2);
        // Two failing inputs, then two passing; neuron 0 active on both failures, neuron 1 on
        // the second failure and the first passing input.
        let active = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 1.0]).reshape([2, 2]);
        let weights = Tensor::from_slice(&[3.0f32, 1.0, 1.0, 1.0]).reshape([2, 2]);
        s.add(&active, &weights, true).unwrap();
        let active = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.0]).reshape([2, 2]);
        let weights = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 0.0]).reshape([2, 2]);
        s.add(&active, &weights, false).unwrap();
        assert_eq!((s.failing_inputs(), s.passing_inputs()), (2, 2));
        assert_eq!(s.counts(0), Counts { af: 2.0, nf: 0.0, ap: 0.0, np: 2.0 });
        assert_eq!(s.counts(1), Counts { af: 1.0, nf: 1.0, ap: 1.0, np: 1.0 });
        // Neuron 0: weights 3, 1 | 1, 3 (total 8, 4 inputs: scale 1/2).
        assert_eq!(s.weighted_counts(0), Counts { af: 2.0, nf: 0.0, ap: 0.0, np: 2.0 });
        // Neuron 1: active weights 1 (fail), 2 (pass); inactive 1 (fail), 0 (pass); total 4.
        assert_eq!(s.weighted_counts(1), Counts { af: 1.0, nf: 1.0, ap: 2.0, np: 0.0 });
        assert_eq!(s.mean_gradients(0), (2.0, 2.0));
    }
}
