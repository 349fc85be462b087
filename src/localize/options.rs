//! The spec sections of localization (`collect`, `attack`, `localize`) with their defaults.
//! Every default here is ours: the ArchRepair paper does not publish its exact formula, so
//! docs/localize.md states each choice and why.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `collect`: which inputs the spectrum is computed on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CollectSpec {
    /// N: misclassified examples kept as D_fail (all of them when fewer).
    pub failures: usize,
    /// Correctly classified examples sampled as the passing set (default: as many as D_fail).
    pub passing: Option<usize>,
}

impl Default for CollectSpec {
    fn default() -> Self {
        CollectSpec { failures: 1000, passing: None }
    }
}

/// `attack`: the adversarial versions of the passing inputs ("adversarial-aware" spectrum).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AttackSpec {
    pub method: AttackMethod,
    /// L∞ radius in pixel space [0, 1]; absent: 0.1 for grey images of at most 28x28, 8/255
    /// otherwise.
    pub eps: Option<f32>,
    /// PGD step; absent: eps / 4.
    pub step_size: Option<f32>,
    /// PGD iterations.
    pub steps: usize,
    /// PGD starts from a uniform random point of the eps-ball.
    pub random_start: bool,
}

impl Default for AttackSpec {
    fn default() -> Self {
        AttackSpec { method: AttackMethod::Pgd, eps: None, step_size: None, steps: 10, random_start: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttackMethod {
    Fgsm,
    Pgd,
    /// No adversarial inputs: the plain spectrum of D_fail vs passing.
    None,
}

/// `localize`: how blocks are scored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalizeSpec {
    pub method: Method,
    pub formula: Formula,
    pub granularity: Granularity,
    /// A neuron is activated on an input when the spatial mean of its output exceeds its
    /// reference level plus this.
    pub threshold: f32,
    /// The reference level of each neuron: `zero`, or `passing_mean` (its mean level over the
    /// passing inputs, so "activated" means "above its usual level").
    pub reference: Reference,
    /// Size of the global top-k of neurons whose share per block the ranking reports.
    pub top_k: usize,
    /// Random failures the `gradient` baseline averages over (the paper's empirical study).
    pub gradient_failures: usize,
    /// `probe` method: SGD steps each unit's weights take on the fit half.
    pub probe_steps: usize,
    /// `probe` method: their learning rate (momentum 0.9).
    pub probe_lr: f64,
    /// Inputs per forward/backward batch (the model's own batch size when its input fixes one).
    pub batch: usize,
    /// Also rank with every other method and formula, for comparison (ranking.json `comparison`).
    pub compare: bool,
}

impl Default for LocalizeSpec {
    fn default() -> Self {
        LocalizeSpec {
            method: Method::Spectrum,
            formula: Formula::Ochiai,
            granularity: Granularity::Block,
            threshold: 0.0,
            reference: Reference::Zero,
            top_k: 50,
            gradient_failures: 100,
            probe_steps: 24,
            probe_lr: 0.001,
            batch: 128,
            compare: false,
        }
    }
}

/// A localizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Adversarial-aware spectrum, counts weighted by per-example weight-gradient magnitudes.
    Spectrum,
    /// Mean |∂L/∂W| of each block on random failures.
    Gradient,
    /// Cosine between the weight gradients of the failing and of the passing inputs' losses.
    Agreement,
    /// The spectrum with unweighted counts.
    Activation,
    /// Where the BatchNormalization inputs' mean first drifts from the running statistics.
    Drift,
    /// Which unit, fine-tuned alone for a few steps on half of D_fail and the passing sample,
    /// classifies the other half best.
    Probe,
    /// A seeded random order: the floor every localizer must beat.
    Random,
}

/// Suspiciousness formula of spectrum-based fault localization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Formula {
    Ochiai,
    Tarantula,
    /// D* with star 2.
    Dstar2,
    /// D* with star 3.
    Dstar3,
}

impl Formula {
    pub const ALL: [Formula; 4] = [Formula::Ochiai, Formula::Tarantula, Formula::Dstar2, Formula::Dstar3];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    Zero,
    PassingMean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Detected blocks (`archrepair-onnx blocks`).
    Block,
    /// Every Conv and Gemm layer (the paper's layer-vs-block ablation).
    Layer,
}

/// Parses a lowercase name the way the spec does, for command-line flags.
fn parse_name<T: for<'de> Deserialize<'de>>(s: &str, what: &str, choices: &str) -> Result<T, String> {
    let value = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s.trim());
    T::deserialize(value).map_err(|_| format!("unknown {what} `{s}`; expected one of {choices}"))
}

macro_rules! name_traits {
    ($t:ty, $what:literal, $choices:literal) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                parse_name(&s.to_ascii_lowercase(), $what, $choices)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let json = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(json.as_str().unwrap_or("?"))
            }
        }
    };
}

name_traits!(Method, "localization method", "spectrum, agreement, gradient, activation, drift, probe, random");
name_traits!(Formula, "formula", "ochiai, tarantula, dstar2, dstar3");
name_traits!(Granularity, "granularity", "block, layer");
name_traits!(Reference, "reference", "zero, passing_mean");
name_traits!(AttackMethod, "attack", "fgsm, pgd, none");
