//! The YAML spec (`--spec repair.yaml`), versioned, unknown keys rejected.
//!
//! Sections so far: `data` (the labelled split failures come from), `input` (how images become
//! model input, docs/data.md), `seed`, and localization's `collect`, `attack` and `localize`
//! (docs/localize.md), the repair search's `train_data`, `evaluate`, `search` and `train`
//! (docs/search.md); validate, gate and report join with the main command.
//! YAML parsing stays behind [`Spec::from_yaml`] so the YAML crate can be swapped in one place.
//! The JSON Schema of this file, schemas/spec.schema.json, is derived from these types
//! ([`spec_schema`]), so doc comments on them are what editors show users: keep them user-facing.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::data::{DataSource, Format, InputSpec, Layout, Split};
use crate::localize::options::{AttackSpec, CollectSpec, LocalizeSpec};
use crate::report::gate::GateSpec;
use crate::report::ReportSpec;
use crate::search::options::{SearchSpec, TrainSpec};
use crate::validate::options::ValidateSpec;

mod schema;

pub use schema::spec_schema;

/// The only spec version this build reads.
pub const SPEC_VERSION: u32 = 1;

/// An archrepair-onnx repair spec (`--spec repair.yaml`); every key is documented in docs/spec.md.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Must be 1.
    #[schemars(schema_with = "schema::version")]
    pub version: u32,
    /// Seed of every random choice (samples, attack starts, the random baseline).
    #[serde(default)]
    pub seed: u64,
    /// The labelled split D_fail comes from and before/after is measured on; `--data` replaces it.
    #[serde(default)]
    pub data: Option<DataSpec>,
    #[serde(default)]
    pub input: InputSpec,
    #[serde(default)]
    pub collect: CollectSpec,
    #[serde(default)]
    pub attack: AttackSpec,
    #[serde(default)]
    pub localize: LocalizeSpec,
    /// The training images of the repair data (D_fail ∪ training set).
    #[serde(default)]
    pub train_data: Option<DataSpec>,
    /// More labelled sets the search measures before/after accuracy on (e.g. corruptions).
    #[serde(default)]
    pub evaluate: Vec<NamedData>,
    #[serde(default)]
    pub search: SearchSpec,
    #[serde(default)]
    pub train: TrainSpec,
    /// The Arachne baseline (`method: arachne`): localization and differential evolution on the
    /// last fully connected layer (docs/baselines.md).
    #[serde(default)]
    pub arachne: crate::baselines::arachne::ArachneSpec,
    /// How out.onnx is checked against the tch model and measured by onnxruntime.
    #[serde(default)]
    pub validate: ValidateSpec,
    /// The Apricot baseline (`method: apricot`): reduced models, weight adaptation, retraining.
    #[serde(default)]
    pub apricot: crate::baselines::apricot::ApricotSpec,
    /// Thresholds that decide the exit code.
    #[serde(default)]
    pub gate: GateSpec,
    #[serde(default)]
    pub report: ReportSpec,
    /// libtorch and onnxruntime threads (0: their defaults).
    #[serde(default)]
    pub threads: usize,
    /// Where libtorch trains: `auto` (CUDA when present), `cpu` or `cuda`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// How the model is repaired: `archrepair` (default) or one of the weight-only baselines
    /// it is compared with (docs/baselines.md); `--method` replaces it.
    #[serde(default)]
    pub method: crate::baselines::Method,
}

/// The spec's `device`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn device(self) -> Result<tch::Device, String> {
        match self {
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => Err("device: cuda, but libtorch sees no CUDA device; use `device: auto` or `cpu`".into()),
        }
    }
}

/// One entry of `evaluate`: a name for the report and the data.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedData {
    /// The set's name in the report.
    pub name: String,
    /// Only examples `[first, end)` of the set, e.g. the half of a test split that D_fail was
    /// not drawn from (`--limit` keeps the other half for D_fail).
    #[serde(default)]
    pub rows: Option<[usize; 2]>,
    #[serde(flatten)]
    pub data: DataSpec,
}

/// `data`: the labelled images (docs/data.md); command-line `--data` replaces it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// A file or folder; relative paths are relative to the spec file.
    pub path: PathBuf,
    /// `idx`, `cifar10`, `npy`, `npz` or `folder`; absent: detected from the path.
    #[serde(default, deserialize_with = "parsed", serialize_with = "shown")]
    #[schemars(schema_with = "schema::format_name")]
    pub format: Option<Format>,
    /// `test` (or `t10k`) or `train`, for data that stores both; default `test`.
    #[serde(default, deserialize_with = "parsed", serialize_with = "shown")]
    #[schemars(schema_with = "schema::split_name")]
    pub split: Option<Split>,
    /// Severity (1-5) of a CIFAR-10-C-layout corruption file.
    #[serde(default)]
    pub severity: Option<u8>,
    /// `nchw` or `nhwc`, for NPY/NPZ image arrays whose layout the shape does not tell.
    #[serde(default, deserialize_with = "parsed", serialize_with = "shown")]
    #[schemars(schema_with = "schema::layout_name")]
    pub layout: Option<Layout>,
}

impl DataSpec {
    pub fn source(&self) -> DataSource {
        DataSource {
            path: self.path.clone(),
            format: self.format,
            split: self.split.unwrap_or_default(),
            corruption_severity: self.severity,
            layout: self.layout,
        }
    }
}

/// A value written as its name (`format: idx`), read with the type's `FromStr`.
fn parsed<'de, D: Deserializer<'de>, T: std::str::FromStr<Err = String>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
}

fn shown<S: serde::Serializer, T: std::fmt::Display>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("spec `{path}`: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Spec {
    /// Reads a spec file; relative data paths become relative to the spec's folder.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        let mut spec = Spec::from_yaml(&text).map_err(|reason| SpecError::Invalid { path: path.to_path_buf(), reason })?;
        if let Some(folder) = path.parent() {
            let extra = spec.evaluate.iter_mut().map(|e| &mut e.data);
            for data in spec.data.iter_mut().chain(spec.train_data.iter_mut()).chain(extra) {
                if data.path.is_relative() {
                    data.path = folder.join(&data.path);
                }
            }
            if let Some(dir) = spec.report.dir.as_mut().filter(|d| d.is_relative()) {
                *dir = folder.join(&*dir);
            }
        }
        Ok(spec)
    }

    /// Parses and checks the version; the error says which key or line is wrong.
    pub fn from_yaml(text: &str) -> Result<Spec, String> {
        let spec: Spec = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if spec.version != SPEC_VERSION {
            return Err(format!("version: {} is not supported; this build reads `version: {SPEC_VERSION}`", spec.version));
        }
        Ok(spec)
    }
}

impl InputSpec {
    /// These settings, with every key that `overrides` sets taken from it (command-line flags
    /// override the spec).
    pub fn overridden_by(self, overrides: InputSpec) -> InputSpec {
        InputSpec {
            layout: overrides.layout.or(self.layout),
            channels: overrides.channels.or(self.channels),
            size: overrides.size.or(self.size),
            scale: overrides.scale.or(self.scale),
            mean: overrides.mean.or(self.mean),
            std: overrides.std.or(self.std),
            fit: overrides.fit.or(self.fit),
            grey_to_rgb: overrides.grey_to_rgb.or(self.grey_to_rgb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Fit, Layout};

    #[test]
    fn input_section_parses_and_flags_override_it() {
        let spec = Spec::from_yaml("version: 1\ninput:\n  layout: nchw\n  fit: pad\n  mean: [0.5]\n  std: [0.25]\n").unwrap();
        assert_eq!(spec.input.fit, Some(Fit::Pad));
        let merged = spec.input.overridden_by(InputSpec { fit: Some(Fit::Resize), ..InputSpec::default() });
        assert_eq!((merged.fit, merged.layout, merged.mean), (Some(Fit::Resize), Some(Layout::Nchw), Some(vec![0.5])));
    }

    #[test]
    fn localization_sections_parse_with_defaults_and_a_relative_data_path_follows_the_spec() {
        use crate::localize::options::{AttackMethod, Formula, Granularity, Method, Reference};
        let spec = Spec::from_yaml("version: 1\nseed: 3\ncollect: {failures: 50}\nattack: {method: fgsm, eps: 0.05}\nlocalize: {method: gradient, formula: dstar3, granularity: layer, reference: passing_mean}\n").unwrap();
        assert_eq!((spec.seed, spec.collect.failures, spec.collect.passing), (3, 50, None));
        assert_eq!((spec.attack.method, spec.attack.eps, spec.attack.steps), (AttackMethod::Fgsm, Some(0.05), 10));
        let l = &spec.localize;
        assert_eq!((l.method, l.formula, l.granularity, l.reference, l.top_k), (Method::Gradient, Formula::Dstar3, Granularity::Layer, Reference::PassingMean, 50));
        let bad = Spec::from_yaml("version: 1\nlocalize: {formula: ochai}\n").unwrap_err();
        assert!(bad.contains("ochai") && bad.contains("ochiai"), "{bad}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repair.yaml");
        std::fs::write(&path, "version: 1\ndata: {path: images, format: folder, split: train}\n").unwrap();
        let data = Spec::load(&path).unwrap().data.unwrap().source();
        assert_eq!((data.path, data.format, data.split), (dir.path().join("images"), Some(crate::data::Format::Folder), crate::data::Split::Train));
        std::fs::write(&path, "version: 1\ndata: {path: x, format: zip}\n").unwrap();
        assert!(Spec::load(&path).unwrap_err().to_string().contains("zip"));
    }

    #[test]
    fn search_sections_parse_with_defaults_and_their_paths_follow_the_spec() {
        use crate::search::options::{BlockChoice, Order};
        let spec = Spec::from_yaml("version: 1\nsearch: {block: 3, order: second, ops: [skip_connect, sep_conv_3x3]}\ntrain: {distill: 0.25}\n").unwrap();
        assert_eq!((spec.search.block, spec.search.order, spec.search.nodes, spec.search.ops.len()), (BlockChoice::Id(3), Order::Second, 4, 2));
        assert_eq!((spec.train.distill, spec.train.epochs, spec.search.keep_shortcut), (0.25, 4, true));
        assert_eq!(Spec::from_yaml("version: 1\n").unwrap().train.distill, 0.5);
        assert_eq!(Spec::from_yaml("version: 1\nsearch: {block: auto}\n").unwrap().search.block, BlockChoice::Auto);
        assert!(Spec::from_yaml("version: 1\nsearch: {block: first}\n").unwrap_err().contains("auto"));
        assert!(Spec::from_yaml("version: 1\nsearch: {epoch: 3}\n").unwrap_err().contains("epochs"));
        assert!(Spec::from_yaml("version: 1\nevaluate: [{name: fog, path: f.npy, severty: 3}]\n").unwrap_err().contains("severty"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repair.yaml");
        std::fs::write(&path, "version: 1\ntrain_data: {path: train, split: train}\nevaluate: [{name: fog, path: c/fog.npy, severity: 3, rows: [10, 20]}]\n").unwrap();
        let spec = Spec::load(&path).unwrap();
        assert_eq!(spec.train_data.unwrap().path, dir.path().join("train"));
        let fog = &spec.evaluate[0];
        assert_eq!((fog.name.as_str(), fog.data.path.clone(), fog.data.severity, fog.rows), ("fog", dir.path().join("c/fog.npy"), Some(3), Some([10, 20])));
    }

    #[test]
    fn unknown_keys_wrong_versions_and_bad_values_are_refused_with_the_key() {
        let unknown = Spec::from_yaml("version: 1\ninput:\n  layuot: nchw\n").unwrap_err();
        assert!(unknown.contains("layuot") && unknown.contains("layout"), "{unknown}");
        assert!(Spec::from_yaml("version: 2\n").unwrap_err().contains("version: 2"));
        assert!(Spec::from_yaml("input: {}\n").unwrap_err().contains("version"));
        let bad = Spec::from_yaml("version: 1\ninput:\n  fit: stretch\n").unwrap_err();
        assert!(bad.contains("stretch"), "{bad}");
    }
}
