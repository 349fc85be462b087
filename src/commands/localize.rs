//! `archrepair-onnx localize`: ranks the model's blocks by how suspicious they are, prints the
//! ranking, and writes ranking.json and ranking.svg into the output folder.

use std::path::{Path, PathBuf};

use tch::Device;

use crate::commands::eval::input_plan;
use crate::data::{self, DataError, DataSource};
use crate::localize::{self, chart, ranking::Ranking, Request};
use crate::model::LoadedModel;
use crate::spec::Spec;
use crate::Error;

#[derive(Debug, Clone)]
pub struct LocalizeOptions {
    pub data: DataSource,
    /// The resolved spec: `input`, `seed`, `collect`, `attack`, `localize` are read.
    pub spec: Spec,
    /// Use only the first N examples of the split.
    pub limit: Option<usize>,
    /// Folder for ranking.json and ranking.svg.
    pub out: PathBuf,
    /// Replace ranking.json / ranking.svg when they exist.
    pub force: bool,
    pub threads: usize,
    pub progress: bool,
}

/// The files `localize` writes, by name.
pub const FILES: [&str; 2] = ["ranking.json", "ranking.svg"];

/// The default output folder for `model`: `<model file stem>-localize` in the working folder.
pub fn default_out(model: &Path) -> PathBuf {
    super::default_out(model, "localize")
}

pub fn localize(model_path: &Path, options: &LocalizeOptions) -> Result<Ranking, Error> {
    let targets = super::output_files(&options.out, &FILES, options.force, "")?;
    let model = LoadedModel::open(model_path)?;
    let mut dataset = data::open(&options.data)?;
    if let Some(limit) = options.limit {
        dataset.truncate(limit);
    }
    let plan = input_plan(&model, &options.spec.input, &dataset)?;
    if options.threads > 0 {
        tch::set_num_threads(options.threads as i32);
    }
    let lowered = model.lower(Device::cuda_if_available())?;
    let request = Request {
        graph: &model.graph,
        model: &lowered,
        plan: &plan,
        data: &dataset,
        collect: &options.spec.collect,
        attack: &options.spec.attack,
        localize: &options.spec.localize,
        seed: options.spec.seed,
        progress: options.progress,
        model_path,
    };
    let ranking = localize::localize(&request)?;

    std::fs::create_dir_all(&options.out).map_err(|source| DataError::Write { path: options.out.clone(), source })?;
    let json = serde_json::to_string_pretty(&ranking).map_err(|e| DataError::format(&targets[0], e.to_string()))?;
    for (path, text) in targets.iter().zip([json + "\n", chart::svg(&ranking)]) {
        data::write_atomically(path, text.as_bytes())?;
    }
    Ok(ranking)
}
