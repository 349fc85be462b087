//! `archrepair-onnx blocks`: the repairable blocks and the layers of a model.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::detect::{detect, Block, Detection};
use crate::model::LoadedModel;
use crate::Error;

/// The `blocks --json` document (schema: `schemas/blocks.schema.json`).
#[derive(Debug, Serialize)]
pub struct BlocksReport {
    /// Version of this document's layout.
    pub format: u32,
    pub model: String,
    pub residual_blocks: usize,
    #[serde(flatten)]
    pub detection: Detection,
}

pub const FORMAT_VERSION: u32 = 1;

pub fn blocks(path: &Path) -> Result<BlocksReport, Error> {
    let model = LoadedModel::open(path)?;
    let detection = detect(&model.graph);
    Ok(BlocksReport {
        format: FORMAT_VERSION,
        model: path.display().to_string(),
        residual_blocks: detection.residual_count(),
        detection,
    })
}

fn shape(s: &Option<Vec<i64>>) -> String {
    s.as_ref().map_or("?".into(), |s| s.iter().map(i64::to_string).collect::<Vec<_>>().join("x"))
}

fn count(n: Option<u64>) -> String {
    match n {
        None => "?".into(),
        Some(n) if n >= 10_000_000 => format!("{:.1}M", n as f64 / 1e6),
        Some(n) if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        Some(n) => n.to_string(),
    }
}

fn kind(b: &Block) -> String {
    let mut kind = b.kind.as_str().to_string();
    if b.squeeze_excitation {
        kind.push_str("+se");
    }
    kind
}

impl fmt::Display for BlocksReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.detection;
        writeln!(f, "{}: {} blocks ({} residual), {} layers", self.model, d.blocks.len(), self.residual_blocks, d.layers.len())?;
        if !d.blocks.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "{:>3}  {:<20} {:<10} {:>11} {:>11} {:>6} {:>8} {:>8} {:>5}  exit",
                "id", "kind", "shortcut", "input", "output", "stride", "params", "FLOPs", "nodes"
            )?;
        }
        for b in &d.blocks {
            writeln!(
                f,
                "{:>3}  {:<20} {:<10} {:>11} {:>11} {:>6} {:>8} {:>8} {:>5}  {}",
                b.id,
                kind(b),
                b.shortcut.as_str(),
                shape(&b.input_shape),
                shape(&b.output_shape),
                b.stride.map_or("?".into(), |s| s.to_string()),
                count(Some(b.params as u64)),
                count(b.flops),
                b.nodes.len(),
                b.exit
            )?;
        }
        if !d.layers.is_empty() {
            writeln!(f)?;
            writeln!(f, "{:>3}  {:<5} {:>11} {:>11} {:>6} {:>8} {:>8} {:>5}  node", "id", "op", "input", "output", "stride", "params", "FLOPs", "block")?;
        }
        for l in &d.layers {
            writeln!(
                f,
                "{:>3}  {:<5} {:>11} {:>11} {:>6} {:>8} {:>8} {:>5}  {}",
                l.id,
                l.op_type,
                shape(&l.input_shape),
                shape(&l.output_shape),
                l.stride,
                count(Some(l.params as u64)),
                count(l.flops),
                l.block.map_or("-".into(), |b| b.to_string()),
                l.node
            )?;
        }
        Ok(())
    }
}
