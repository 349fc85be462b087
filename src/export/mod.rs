//! Export: the derived cell becomes standard ONNX nodes spliced into the input model in place
//! of the replaced stretch (the block's residual branch, or the whole block), through
//! [`Patch`]. Every other node, name, initializer, metadata entry and the opset stay as they
//! were; a `metadata_props` entry records the repair.

pub mod cell_nodes;

use serde::Serialize;

use crate::graph::patch::{Patch, PatchError};
use crate::onnx::proto::{ModelProto, StringStringEntryProto};
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::tensor::{decode, encode_f32};
use crate::onnx::TensorData;
use crate::search::cell::Cell;
use crate::search::target::Target;

/// The metadata key describing the repair (JSON value: [`Provenance`]).
pub const METADATA_KEY: &str = "archrepair.repair";
/// The metadata key of the gate's verdict: `passed` or `failed`.
pub const GATE_METADATA_KEY: &str = "archrepair.gate";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the model imports opset {0} of the default domain; the repaired block needs opset {min} or later (re-export the model at opset >= {min})", min = cell_nodes::MIN_OPSET)]
    Opset(i64),

    #[error("the model declares no opset of the default ONNX domain")]
    NoOpset,

    #[error("exporting the cell: {0}")]
    Cell(String),

    #[error("splicing the cell into the model: {0}")]
    Patch(#[from] PatchError),
}

/// What the repair was, written into out.onnx's metadata.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub tool: String,
    pub version: String,
    /// The repair method (`archrepair` or a baseline's name).
    pub method: String,
    /// The repaired block (ArchRepair, finetune-block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
    /// ArchRepair: the replaced tensor (the residual branch's output or the block's exit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    /// ArchRepair: the derived cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genotype: Option<String>,
    /// Weight-only methods: the initializers whose values changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weights_changed: Vec<String>,
    /// FNV-1a of the resolved spec (JSON), to tell runs with different settings apart.
    pub spec_hash: String,
}

/// The model with the nodes `remove` (graph IR names) replaced by `cell`, which reads
/// `target.entry` and writes `target.tensor`.
pub fn export(model: &ModelProto, remove: &[String], target: &Target, cell: &Cell, provenance: &Provenance) -> Result<ModelProto, ExportError> {
    let opset = default_opset(model)?;
    if opset < cell_nodes::MIN_OPSET {
        return Err(ExportError::Opset(opset));
    }
    let unit = if target.layer.is_some() { 'l' } else { 'b' };
    let prefix = unused_prefix(model, &format!("archrepair/{unit}{}/", target.block));
    let emitted = cell_nodes::emit(cell, &target.entry, &target.tensor, &prefix).map_err(ExportError::Cell)?;
    let patch = Patch { remove: remove.to_vec(), nodes: emitted.nodes, initializers: emitted.initializers };
    let mut out = patch.apply(model)?;
    let value = serde_json::to_string(provenance).unwrap_or_default();
    set_metadata(&mut out, METADATA_KEY, &value);
    Ok(out)
}

/// Writes the backbone weights that training changed (a whole-network fine-tune) back to
/// their original initializers, in place, under their original names; initializers whose
/// values did not change stay byte-identical. Returns the names rewritten.
pub fn write_back_weights(model: &mut ModelProto, weights: &[crate::lower::Weight]) -> Result<Vec<String>, ExportError> {
    let Some(g) = model.graph.as_mut() else { return Ok(Vec::new()) };
    let mut rewritten = Vec::new();
    for w in weights.iter().filter(|w| w.role != crate::lower::Role::Constant) {
        let Some(init) = g.initializer.iter_mut().find(|t| t.name() == w.onnx_name) else { continue };
        let Ok(original) = decode(init) else { continue };
        let TensorData::Float(old) = &original.data else { continue };
        if original.elem_type != DataType::Float {
            continue; // half-precision weights are not rewritten (the fine-tune trains in f32)
        }
        let cpu = w.tensor.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
        let new = Vec::<f32>::try_from(&cpu.flatten(0, -1)).map_err(|e| ExportError::Cell(format!("weight `{}`: {e}", w.onnx_name)))?;
        if new.len() != old.len() {
            return Err(ExportError::Cell(format!("weight `{}` has {} values, its initializer {}", w.onnx_name, new.len(), old.len())));
        }
        if new.iter().any(|v| !v.is_finite()) {
            return Err(ExportError::Cell(format!("fine-tuned weight `{}` holds NaN or infinite values", w.onnx_name)));
        }
        if new.iter().zip(old).any(|(a, b)| a.to_bits() != b.to_bits()) {
            *init = encode_f32(&w.onnx_name, &original.dims, &new);
            rewritten.push(w.onnx_name.clone());
        }
    }
    Ok(rewritten)
}

/// Sets (or replaces) one metadata entry; the others keep their order.
pub fn set_metadata(model: &mut ModelProto, key: &str, value: &str) {
    match model.metadata_props.iter_mut().find(|e| e.key.as_deref() == Some(key)) {
        Some(entry) => entry.value = Some(value.to_string()),
        None => model.metadata_props.push(StringStringEntryProto { key: Some(key.to_string()), value: Some(value.to_string()) }),
    }
}

fn default_opset(model: &ModelProto) -> Result<i64, ExportError> {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or(ExportError::NoOpset)
}

/// `wanted`, or `wanted` with a counter, such that no node, tensor or initializer of the model
/// starts with it (a model repaired twice keeps both generations apart).
fn unused_prefix(model: &ModelProto, wanted: &str) -> String {
    let Some(g) = model.graph.as_ref() else { return wanted.to_string() };
    let names: Vec<&str> = g
        .node
        .iter()
        .flat_map(|n| n.name.iter().map(String::as_str).chain(n.output.iter().map(String::as_str)))
        .chain(g.initializer.iter().map(|t| t.name()))
        .collect();
    let taken = |p: &str| names.iter().any(|n| n.starts_with(p));
    if !taken(wanted) {
        return wanted.to_string();
    }
    let base = wanted.trim_end_matches('/');
    (2..).map(|i| format!("{base}.{i}/")).find(|p| !taken(p)).unwrap_or_else(|| wanted.to_string())
}

/// FNV-1a hex of `data` (a cheap, stable fingerprint; not for security).
pub fn fnv1a(data: impl AsRef<[u8]>) -> String {
    let hash = data.as_ref().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}
