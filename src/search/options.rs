//! The spec sections of the repair search (`search`) and of the discrete block's training
//! (`train`), with their defaults. The optimisation defaults are DARTS's (Liu et al., ICLR 2019);
//! the repair-data and budget defaults are ours, sized for a 2-core machine (docs/search.md).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::localize::options::Granularity;

/// Which block (or layer, at `search.granularity: layer`) to replace: the top of the
/// localization ranking, one by id, or, for the paper's ablation of the localization, a seeded
/// random one or the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockChoice {
    #[default]
    Auto,
    Id(usize),
    /// Uniformly among the replaceable units, drawn with the spec's seed.
    Random,
    /// The replaceable unit nearest the output.
    Last,
}

impl FromStr for BlockChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BlockChoice::Auto),
            "random" => Ok(BlockChoice::Random),
            "last" => Ok(BlockChoice::Last),
            id => id.parse().map(BlockChoice::Id).map_err(|_| format!("block `{id}`: expected a block id (see `archrepair-onnx blocks`), `auto`, `random` or `last`")),
        }
    }
}

impl fmt::Display for BlockChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockChoice::Auto => f.write_str("auto"),
            BlockChoice::Random => f.write_str("random"),
            BlockChoice::Last => f.write_str("last"),
            BlockChoice::Id(id) => write!(f, "{id}"),
        }
    }
}

impl<'de> Deserialize<'de> for BlockChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(usize),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Id(id) => Ok(BlockChoice::Id(id)),
            Raw::Name(name) => name.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Mirrors the `Deserialize` above: `auto`, `random`, `last`, or a block id as a number or as a
/// string of digits.
impl schemars::JsonSchema for BlockChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BlockChoice".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "enum": ["auto", "random", "last"] },
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\+?[0-9]+$" }
            ]
        })
    }
}

/// `search.ops`: names of candidate operations, each at most once; the search refuses others
/// before it starts (`ops::parse_ops`), so the schema lists the names instead of any string.
fn ops_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = crate::search::ops::OpKind::ALL.iter().map(|o| o.name()).collect();
    schemars::json_schema!({ "type": "array", "items": { "enum": names }, "uniqueItems": true })
}

impl Serialize for BlockChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BlockChoice::Id(id) => s.serialize_u64(*id as u64),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

/// α updates: DARTS's first-order approximation, or its second-order (unrolled) gradient with
/// the finite-difference Hessian-vector product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    First,
    Second,
}

impl FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "first" => Ok(Order::First),
            "second" => Ok(Order::Second),
            other => Err(format!("unknown order `{other}`; expected first or second")),
        }
    }
}

/// `search`: the cell, the bi-level optimisation and the repair data.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSpec {
    /// Which block to replace: `auto` (the top of the localization ranking), a block id (see
    /// `archrepair-onnx blocks`), `random` (seeded) or `last`; at `granularity: layer`, the ids
    /// number the layers.
    pub block: BlockChoice,
    /// What the cell replaces: a detected `block` (default), or one Conv `layer` (the paper's
    /// block-vs-layer ablation; the localization then ranks layers).
    pub granularity: Granularity,
    /// Candidate operations on every edge (names in docs/search.md).
    #[schemars(schema_with = "ops_schema")]
    pub ops: Vec<String>,
    /// Intermediate nodes of the cell.
    pub nodes: usize,
    /// Channels inside the cell; absent: the block's output channels.
    pub channels: Option<usize>,
    /// Keep the block's own shortcut (identity or projection) around the cell, which then
    /// replaces only the residual branch. Ignored for blocks without a shortcut.
    pub keep_shortcut: bool,
    /// Search epochs over the repair data.
    pub epochs: usize,
    /// First epochs train the weights only; α stay at their initial values.
    pub warmup_epochs: usize,
    pub batch: usize,
    /// Cell weights: SGD with momentum, cosine learning rate from `lr` to `lr_min`.
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    /// Learning rate of α (the architecture weights), trained with Adam.
    pub alpha_lr: f64,
    pub alpha_betas: [f64; 2],
    pub alpha_weight_decay: f64,
    pub order: Order,
    /// At most this many skip_connect edges in the derived cell (the DARTS collapse guard).
    pub max_skip: usize,
    /// Training images the search uses (a seeded sample); absent: all of `train.train_images`.
    pub train_images: Option<usize>,
    /// Each failure appears this many times in the repair data.
    pub oversample_failures: usize,
    /// Share of the repair data held out to choose the repaired model (never the test split).
    pub holdout: f64,
    /// Wall-clock budget of the search in minutes; the search stops after the batch that
    /// exceeds it. Absent: `epochs` decides alone.
    pub budget_minutes: Option<f64>,
}

impl Default for SearchSpec {
    fn default() -> Self {
        SearchSpec {
            block: BlockChoice::Auto,
            granularity: Granularity::Block,
            ops: crate::search::ops::OpKind::ALL.iter().map(|o| o.name().to_string()).collect(),
            nodes: 4,
            channels: None,
            keep_shortcut: true,
            epochs: 2,
            warmup_epochs: 0,
            batch: 64,
            lr: 0.025,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            alpha_lr: 3e-4,
            alpha_betas: [0.5, 0.999],
            alpha_weight_decay: 1e-3,
            order: Order::First,
            max_skip: 2,
            train_images: Some(12_000),
            oversample_failures: 1,
            holdout: 0.1,
            budget_minutes: None,
        }
    }
}

/// `train`: the derived (discrete) block, then an optional whole-network fine-tune.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    pub epochs: usize,
    /// Training images the derived cell trains on (a seeded sample that contains the search's);
    /// absent: the whole training set.
    pub train_images: Option<usize>,
    pub batch: usize,
    /// SGD with momentum, cosine from `lr` to `lr_min`.
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    /// Start the discrete block from the weights its operations had at the end of the search
    /// (joint architecture and weight search), instead of from scratch.
    pub inherit_weights: bool,
    /// Epochs of whole-network fine-tuning after the block's training (BatchNormalization
    /// statistics stay frozen); 0 = none.
    pub finetune_epochs: usize,
    pub finetune_lr: f64,
    /// Weight of a distillation term, KL(subject ‖ repaired) on the training images (not on
    /// the failures), added to the cross-entropy: it holds the repaired net to the subject
    /// where the subject is trusted, against breaking what worked. 0 = plain cross-entropy
    /// (the paper's loss); the default 0.5 is chosen by the repair benchmark (docs/search.md).
    pub distill: f64,
    /// Wall-clock budget of the training in minutes (block and fine-tune together).
    pub budget_minutes: Option<f64>,
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            epochs: 4,
            train_images: None,
            batch: 64,
            lr: 0.025,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            inherit_weights: true,
            finetune_epochs: 0,
            finetune_lr: 1e-4,
            distill: 0.5,
            budget_minutes: None,
        }
    }
}
