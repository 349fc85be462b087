//! The repair methods ArchRepair is compared with (issue 8). All of them keep the model's
//! architecture and change weights only, so their repaired model is the input model with some
//! initializers rewritten (`export::write_back_weights`), validated and measured exactly as
//! ArchRepair's.
//!
//! A method gets a [`Context`]: the lowered model, whose trainable weights it changes in place
//! (the tensors in `model.weights()` are the ones the forward pass reads), the repair data
//! (D_fail ∪ training images, with the held-out slice that chooses the kept model), and the
//! localized block. It returns its own log for the report as JSON.

pub mod arachne;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::localize::classifier::Classifier;
use crate::lower::LoweredModel;
use crate::search::data::RepairData;
use crate::search::Chosen;
use crate::spec::Spec;

/// The spec's `method` (and `--method`): how the model is repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Block-level architecture search and weight training (the paper's method).
    #[default]
    Archrepair,
    /// Fine-tunes every trainable weight on the repair data.
    FinetuneNetwork,
    /// Fine-tunes the weights of the most suspicious Conv/Gemm layer only.
    FinetuneLayer,
    /// Fine-tunes the localized block's weights only, architecture unchanged (the paper's
    /// empirical study).
    FinetuneBlock,
    /// Arachne (Sohn et al.): differential evolution on the last layer's most suspicious weights.
    Arachne,
    /// Apricot (Zhang & Chan): weights adapted toward reduced models that classify each failure
    /// right, then retrained.
    Apricot,
}

impl Method {
    pub const ALL: [Method; 6] = [Method::Archrepair, Method::FinetuneNetwork, Method::FinetuneLayer, Method::FinetuneBlock, Method::Arachne, Method::Apricot];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Archrepair => "archrepair",
            Method::FinetuneNetwork => "finetune-network",
            Method::FinetuneLayer => "finetune-layer",
            Method::FinetuneBlock => "finetune-block",
            Method::Arachne => "arachne",
            Method::Apricot => "apricot",
        }
    }

    /// Whether the method needs the localization ranking (the block or layer it works on).
    pub fn localizes(self) -> bool {
        matches!(self, Method::Archrepair | Method::FinetuneLayer | Method::FinetuneBlock)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| format!("unknown method `{s}`; expected one of {}", Method::ALL.map(Method::as_str).join(", ")))
    }
}

/// Everything a weight-only method reads. The model's trainable weights are changed in place;
/// BatchNormalization statistics never move (every forward pass runs in eval mode).
pub struct Context<'a> {
    pub graph: &'a Graph,
    pub model: &'a LoweredModel,
    /// The model as a classifier of pixel batches (normalisation inside, eval mode).
    pub classifier: &'a Classifier<'a>,
    /// D_fail (the first `data.failures` rows) then training images; `data.training` are the
    /// rows to train on, `data.holdout` the rows that choose the kept weights (never the test
    /// split).
    pub data: &'a RepairData,
    /// The localized block (and its ranking); empty ranking when the block was given.
    pub chosen: &'a Chosen,
    /// `seed`, `train` (shared optimiser settings), and each method's own section.
    pub spec: &'a Spec,
    pub progress: bool,
}
