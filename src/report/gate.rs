//! The deployment gate: thresholds from the spec's `gate` section checked against what
//! onnxruntime measured. Exit code 0 when every set threshold holds, 1 when one does not.

use serde::{Deserialize, Serialize};

use super::{GateCheck, GateOutcome, OrtMeasures};

/// Thresholds; an absent key is not checked. Accuracies and rates are fractions (0.01 = 1 %).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// Least accepted change of accuracy on the evaluation split minus D_fail (after − before).
    #[serde(default)]
    pub min_accuracy_delta: Option<f64>,
    /// Least accepted accuracy after repair on the evaluation split minus D_fail.
    #[serde(default)]
    pub min_accuracy: Option<f64>,
    /// Least accepted share of D_fail the repaired model gets right.
    #[serde(default)]
    pub min_repair_rate: Option<f64>,
    /// Largest accepted share of previously correct images the repaired model gets wrong.
    #[serde(default)]
    pub max_break_rate: Option<f64>,
    /// Largest accepted latency after / before (onnxruntime, same batch and threads).
    #[serde(default)]
    pub max_latency_ratio: Option<f64>,
    /// Least accepted accuracy change on each `evaluate` set (after − before).
    #[serde(default)]
    pub min_set_delta: Option<f64>,
}

impl GateSpec {
    pub fn check(&self, measured: &OrtMeasures) -> GateOutcome {
        let m = &measured.evaluation;
        let mut checks = Vec::new();
        let mut at_least = |key: &str, threshold: Option<f64>, value: f64| {
            if let Some(t) = threshold {
                checks.push(GateCheck { key: format!("gate.{key}"), comparison: ">=".into(), threshold: t, value, passed: value >= t });
            }
        };
        at_least("min_accuracy_delta", self.min_accuracy_delta, m.accuracy_after - m.accuracy_before);
        at_least("min_accuracy", self.min_accuracy, m.accuracy_after);
        at_least("min_repair_rate", self.min_repair_rate, m.repair_rate);
        for set in &measured.sets {
            at_least(&format!("min_set_delta ({})", set.name), self.min_set_delta, set.after - set.before);
        }
        let mut at_most = |key: &str, threshold: Option<f64>, value: f64| {
            if let Some(t) = threshold {
                checks.push(GateCheck { key: format!("gate.{key}"), comparison: "<=".into(), threshold: t, value, passed: value <= t });
            }
        };
        at_most("max_break_rate", self.max_break_rate, m.break_rate);
        at_most("max_latency_ratio", self.max_latency_ratio, measured.latency.ratio);
        GateOutcome { passed: checks.iter().all(|c| c.passed), checks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;
    use crate::search::metrics::{RepairMetrics, SetAccuracy};

    fn measured() -> OrtMeasures {
        let evaluation = RepairMetrics::new(&[0, 1, 1, 0], &[1, 1, 0, 0], &[1, 1, 1, 0], &[0]);
        OrtMeasures {
            evaluation,
            sets: vec![SetAccuracy { name: "fog".into(), evaluated: 10, before: 0.5, after: 0.4 }],
            latency: Latency { batch: 4, images: 4, before_ms: 1.0, after_ms: 1.5, ratio: 1.5 },
        }
    }

    #[test]
    fn absent_thresholds_pass_and_each_set_threshold_is_checked_on_its_side() {
        let m = measured();
        assert!(GateSpec::default().check(&m).passed && GateSpec::default().check(&m).checks.is_empty());
        // Repair rate 1/1, break rate 1/3 (example 2 was right and is wrong after).
        let ok = GateSpec { min_repair_rate: Some(1.0), max_break_rate: Some(0.34), max_latency_ratio: Some(1.5), ..GateSpec::default() }.check(&m);
        assert!(ok.passed, "{ok:?}");
        let failed = GateSpec { max_break_rate: Some(0.3), min_set_delta: Some(-0.05), ..GateSpec::default() }.check(&m);
        assert!(!failed.passed);
        let verdicts: Vec<(&str, bool)> = failed.checks.iter().map(|c| (c.key.as_str(), c.passed)).collect();
        assert_eq!(verdicts, vec![("gate.min_set_delta (fog)", false), ("gate.max_break_rate", false)]);
    }
}
