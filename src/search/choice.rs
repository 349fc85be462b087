//! Which unit the repair changes (`search.block` at `search.granularity`): the top of the
//! localization ranking, one given by id, or, for the paper's ablation of the localization, a
//! seeded random one or the last one. ArchRepair's cell can only replace some units (blocks
//! with C x H x W shapes, Conv layers with "same" padding); the weight-only baselines take any.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use crate::detect::{detect, Detection};
use crate::graph::Graph;
use crate::localize;
use crate::localize::options::Granularity;
use crate::spec::Spec;
use crate::Error;

use super::options::BlockChoice;
use super::target::Target;
use super::{BlockScore, Chosen, Request};

/// The kind of unit the spec's method changes, and whether a search cell replaces it; None for
/// the methods that do not localize.
pub fn unit_kind(spec: &Spec) -> Option<(Granularity, bool)> {
    spec.method.unit(spec.search.granularity)
}

/// The unit that `search.block` names, at `granularity`; `for_cell`: only units the search
/// cell can replace are candidates.
pub fn choose(request: &Request, granularity: Granularity, for_cell: bool) -> Result<Chosen, Error> {
    let spec = request.spec;
    let detection = detect(request.graph);
    let chosen = |(block, layer): (usize, Option<String>), chosen_by: String| Chosen { block, chosen_by, ranking: Vec::new(), layer };
    // (id, layer node) of every candidate, in the order `archrepair-onnx blocks` lists them.
    let candidates: Vec<(usize, Option<String>)> = match granularity {
        Granularity::Block => detection.blocks.iter().filter(|b| !for_cell || Target::new(request.graph, b, spec.search.keep_shortcut).is_ok()).map(|b| (b.id, None)).collect(),
        Granularity::Layer => detection.layers.iter().filter(|l| !for_cell || Target::replaces_layer(l)).map(|l| (l.id, Some(l.node.clone()))).collect(),
    };
    let none = || {
        let what = if for_cell { "that the search cell can replace" } else { "at all" };
        Error::Mismatch(format!("search.block: `{}` has no {granularity} {what} (see `archrepair-onnx blocks`)", request.model_path.display()))
    };
    match spec.search.block {
        BlockChoice::Id(id) => Ok(chosen(given(request.graph, &detection, spec, granularity, for_cell, id, request.model_path)?, "given".into())),
        BlockChoice::Auto => localize_top(request, granularity, &|id| candidates.iter().any(|c| c.0 == id)),
        BlockChoice::Random => {
            let pick = Pcg64::seed_from_u64(spec.seed ^ 0x7261_6e64_6f6d).random_range(0..candidates.len().max(1));
            Ok(chosen(candidates.get(pick).cloned().ok_or_else(none)?, format!("random (seed {})", spec.seed)))
        }
        BlockChoice::Last => Ok(chosen(candidates.last().cloned().ok_or_else(none)?, "last".into())),
    }
}

/// The unit of a given id, checked: it exists and, `for_cell`, the cell can replace it.
pub fn given(graph: &Graph, detection: &Detection, spec: &Spec, granularity: Granularity, for_cell: bool, id: usize, model_path: &Path) -> Result<(usize, Option<String>), Error> {
    let count = match granularity {
        Granularity::Block => detection.blocks.len(),
        Granularity::Layer => detection.layers.len(),
    };
    let missing = || {
        let note = if granularity == Granularity::Layer { " (the ids number layers here)" } else { "" };
        Error::Mismatch(format!(
            "search.block: `{}` has no {granularity} {id}{note}; it has {count} (ids 0-{}), see `archrepair-onnx blocks`",
            model_path.display(),
            count.saturating_sub(1)
        ))
    };
    match granularity {
        Granularity::Block => {
            let block = detection.blocks.iter().find(|b| b.id == id).ok_or_else(missing)?;
            if for_cell {
                Target::new(graph, block, spec.search.keep_shortcut).map_err(Error::Mismatch)?;
            }
            Ok((id, None))
        }
        Granularity::Layer => {
            let layer = detection.layers.iter().find(|l| l.id == id).ok_or_else(missing)?;
            if for_cell {
                Target::layer(layer).map_err(Error::Mismatch)?;
            }
            Ok((id, Some(layer.node.clone())))
        }
    }
}

/// What the cell replaces for the chosen unit.
pub fn target(graph: &Graph, chosen: &Chosen, keep_shortcut: bool, model_path: &Path) -> Result<Target, Error> {
    let detection = detect(graph);
    let unknown = |what: String| Error::Mismatch(format!("`{}` has no {what}; the localization saved for another model? Rerun without --resume", model_path.display()));
    match &chosen.layer {
        Some(node) => Target::layer(detection.layers.iter().find(|l| &l.node == node).ok_or_else(|| unknown(format!("Conv/Gemm node `{node}`")))?),
        None => Target::new(graph, detection.blocks.iter().find(|b| b.id == chosen.block).ok_or_else(|| unknown(format!("block {}", chosen.block)))?, keep_shortcut),
    }
    .map_err(Error::Mismatch)
}

/// The most suspicious unit at `granularity` that `eligible` accepts (layers: every Conv/Gemm
/// node), with the whole ranking.
pub fn localize_top(request: &Request, granularity: Granularity, eligible: &dyn Fn(usize) -> bool) -> Result<Chosen, Error> {
    let spec = request.spec;
    let mut localize_spec = spec.localize.clone();
    localize_spec.granularity = granularity;
    let ranking = localize::localize(&localize::Request {
        graph: request.graph,
        model: request.model,
        plan: request.plan,
        data: request.eval,
        collect: &spec.collect,
        attack: &spec.attack,
        localize: &localize_spec,
        seed: spec.seed,
        progress: request.progress,
        model_path: request.model_path,
    })?;
    let top = ranking.units.iter().find(|u| eligible(u.unit.id)).ok_or_else(|| Error::Mismatch(format!("localization ranked no {granularity} that the repair can change")))?;
    Ok(Chosen {
        block: top.unit.id,
        chosen_by: format!("localize ({})", localize_spec.method),
        ranking: ranking.units.iter().map(|u| BlockScore { block: u.unit.id, rank: u.rank, score: u.score }).collect(),
        layer: (granularity == Granularity::Layer).then(|| top.unit.name.clone()),
    })
}
