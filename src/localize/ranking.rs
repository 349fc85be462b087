//! The result of localization: units ranked by suspiciousness with the evidence behind each
//! score (ranking.json, documented in docs/localize.md), and its text table.

use std::fmt;

use serde::Serialize;

use super::attack::Attack;
use super::drift::NormalizationDrift;
use super::probe::ProbeOutcome;
use super::options::{Formula, Granularity, Method};
use super::units::UnitInfo;

/// Version of the ranking.json layout.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    pub format: u32,
    pub model: String,
    pub data: String,
    /// How images were fed to the model.
    pub input: String,
    pub seed: u64,
    pub method: Method,
    /// The formula of the `spectrum` and `activation` methods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formula: Option<Formula>,
    pub granularity: Granularity,
    pub threshold: f32,
    pub top_k: usize,
    pub collect: CollectSummary,
    /// The adversarial inputs added to the failing side (absent with `attack.method: none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackSummary>,
    /// Inputs the spectrum counted: D_fail plus the successful adversarial inputs, and passing
    /// (without a spectrum: D_fail and the passing sample).
    pub failing_inputs: usize,
    pub passing_inputs: usize,
    /// Units, most suspicious first.
    pub units: Vec<RankedUnit>,
    /// With `localize.compare`: the order every method (and formula) gives, ids first to last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comparison: Vec<MethodOrder>,
    pub seconds: Timings,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectSummary {
    /// Examples of the split the model was run on.
    pub evaluated: usize,
    pub accuracy: f64,
    pub misclassified: usize,
    /// |D_fail|: misclassified examples used (at most `collect.failures`).
    pub failures: usize,
    pub passing: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttackSummary {
    #[serde(flatten)]
    pub attack: Attack,
    /// Passing inputs attacked, and how many of them the model then misclassified.
    pub attacked: usize,
    pub succeeded: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RankedUnit {
    pub rank: usize,
    #[serde(flatten)]
    pub unit: UnitInfo,
    pub score: f64,
    /// Share of the global top-k neurons (by this method's neuron scores) in this unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// `gradient` method: mean |∂L/∂W| of the unit's weights on the sampled failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_abs_gradient: Option<f64>,
    /// `drift` method: the shift at each of the unit's BatchNormalizations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Vec<NormalizationDrift>>,
    /// `probe` method: what fine-tuning the unit alone did to the check half.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeOutcome>,
}

/// What the spectrum saw in one unit (means over its neurons).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    pub neurons: usize,
    /// Plain counts per neuron: activated/not on failing (af, nf) and passing (ap, np) inputs.
    pub af: f64,
    pub nf: f64,
    pub ap: f64,
    pub np: f64,
    /// Share of failing / passing inputs on which a neuron is activated.
    pub failing_activation_rate: f64,
    pub passing_activation_rate: f64,
    /// Mean per-example weight-gradient norm ||∂L_i/∂W_n|| on failing / passing inputs.
    pub mean_gradient_failing: f64,
    pub mean_gradient_passing: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodOrder {
    pub method: Method,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formula: Option<Formula>,
    /// Unit ids, most suspicious first.
    pub order: Vec<usize>,
    pub scores: Vec<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub collect: f64,
    /// Attacks and the spectrum's forward/backward passes.
    pub spectrum: f64,
    /// The gradient and agreement localizers.
    pub gradient: f64,
    /// The drift localizer's forward passes.
    pub drift: f64,
    /// The probe localizer's fine-tunes and checks.
    pub probe: f64,
    pub total: f64,
}

/// Indices of `scores` from the most to the least suspicious; ties (and NaN, last) keep the
/// model order, so the ranking is stable.
pub fn order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])).then(a.cmp(&b)));
    order
}

impl Ranking {
    /// The most suspicious unit.
    pub fn top(&self) -> Option<&RankedUnit> {
        self.units.first()
    }
}

impl fmt::Display for Ranking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.collect;
        writeln!(f, "model     {}", self.model)?;
        writeln!(f, "data      {} ({} examples, accuracy {:.2}%, {} misclassified)", self.data, c.evaluated, 100.0 * c.accuracy, c.misclassified)?;
        let formula = self.formula.map(|x| format!(", {x}")).unwrap_or_default();
        writeln!(f, "method    {}{formula}, {} granularity, seed {}", self.method, self.granularity, self.seed)?;
        write!(f, "inputs    {} failing ({} from D_fail", self.failing_inputs, c.failures)?;
        if let Some(a) = &self.attack {
            write!(f, " + {} of {} passing inputs after {} eps {:.4}", a.succeeded, a.attacked, a.attack.method, a.attack.eps)?;
        }
        writeln!(f, "), {} passing", self.passing_inputs)?;
        writeln!(f)?;
        writeln!(
            f,
            "{:>4}  {:>4}  {:<18} {:<14} {:>10}  {:>6}  {:>7}  {:>7}  {:>10}  {:>10}",
            "rank", "id", "name", "kind", "score", "top-k", "act(F)", "act(P)", "grad(F)", "grad(P)"
        )?;
        for u in &self.units {
            let share = u.top_k_share.map_or("-".into(), |s| format!("{:.0}%", 100.0 * s));
            let (af, ap, gf, gp) = u.evidence.as_ref().map_or(("-".into(), "-".into(), "-".into(), "-".into()), |e| {
                (
                    format!("{:.0}%", 100.0 * e.failing_activation_rate),
                    format!("{:.0}%", 100.0 * e.passing_activation_rate),
                    format!("{:.3e}", e.mean_gradient_failing),
                    format!("{:.3e}", e.mean_gradient_passing),
                )
            });
            let score = u.mean_abs_gradient.map_or(format!("{:.4}", u.score), |g| format!("{g:.3e}"));
            writeln!(
                f,
                "{:>4}  {:>4}  {:<18} {:<14} {:>10}  {:>6}  {:>7}  {:>7}  {:>10}  {:>10}",
                u.rank,
                u.unit.id,
                truncate(&u.unit.name, 18),
                truncate(&u.unit.kind, 14),
                score,
                share,
                af,
                ap,
                gf,
                gp
            )?;
        }
        let drifts: Vec<_> = self.units.iter().filter_map(|u| Some((u, u.drift.as_ref()?.iter().max_by(|a, b| a.ratio.total_cmp(&b.ratio))?))).take(3).collect();
        if !drifts.is_empty() {
            writeln!(f, "\ndrift (largest shift ratio of the first units' BatchNormalizations)")?;
            for (u, d) in drifts {
                writeln!(f, "  {:<18} {}: shift {:.3e}, upstream {:.3e}, ratio {:.3}", truncate(&u.unit.name, 18), d.node, d.shift, d.upstream_shift, d.ratio)?;
            }
        }
        let probed: Vec<_> = self.units.iter().filter_map(|u| Some((u, u.probe.as_ref()?))).take(3).collect();
        if !probed.is_empty() {
            writeln!(f, "\nprobe (the first units, each fine-tuned alone, on the check half)")?;
            for (u, p) in probed {
                writeln!(f, "  {:<18} {} weights: {:.1}% of its failures repaired, {:.1}% of its passing inputs broken", truncate(&u.unit.name, 18), p.params, 100.0 * p.repaired, 100.0 * p.broken)?;
            }
        }
        if !self.comparison.is_empty() {
            writeln!(f, "\ncomparison (unit ids, most suspicious first)")?;
            for m in &self.comparison {
                let name = m.formula.map_or(m.method.to_string(), |x| format!("{} {x}", m.method));
                let ids: Vec<String> = m.order.iter().take(10).map(usize::to_string).collect();
                writeln!(f, "  {name:<22} {}", ids.join(" "))?;
            }
        }
        write!(
            f,
            "\ntime      collect {:.1} s, spectrum {:.1} s, gradient {:.1} s, drift {:.1} s, probe {:.1} s, total {:.1} s",
            self.seconds.collect, self.seconds.spectrum, self.seconds.gradient, self.seconds.drift, self.seconds.probe, self.seconds.total
        )
    }
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let tail: String = s.chars().rev().take(width - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::order;

    #[test]
    fn order_is_by_score_with_ties_and_nan_in_model_order() {
        assert_eq!(order(&[0.2, 0.9, f64::NAN, 0.9, 0.1]), vec![1, 3, 0, 4, 2]);
        assert_eq!(order(&[]), Vec::<usize>::new());
    }
}
