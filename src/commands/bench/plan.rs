//! bench.yaml: its types, its checks, the grid it expands to (subjects × scenarios × methods ×
//! seeds), and the spec each cell runs with (the subject's base spec + the scenario's data +
//! method + seed, with the chosen profile deep-merged over it).
//!
//! Every check that can refuse a bench runs here, before any cell starts, so a typo in
//! bench.yaml costs seconds, not the first hour of a benchmark. The cell's spec goes through
//! [`Spec::from_yaml`] before it is written: what the child process reads is known to parse.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::baselines::Method;
use crate::data::corrupt::Corruption;
use crate::data::Split;
use crate::spec::{DataSpec, NamedData, Spec};
use crate::Error;

/// The only bench.yaml version this build reads.
pub const BENCH_VERSION: u32 = 1;

/// Folder names under the bench's output folder that a subject may not take.
const RESERVED: [&str; 2] = ["corrupted", "plots"];

/// bench.yaml as written (docs/bench.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchFile {
    pub version: u32,
    pub subjects: Vec<SubjectEntry>,
    pub scenarios: Vec<ScenarioEntry>,
    pub methods: Vec<MethodEntry>,
    pub seeds: Vec<u64>,
    /// The corruptions a corruption scenario also measures (besides clean); default: the
    /// corruptions of every corruption scenario.
    #[serde(default)]
    pub evaluate_corruptions: Option<Vec<String>>,
    #[serde(default)]
    pub profiles: Profiles,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectEntry {
    pub name: String,
    /// The ONNX model, relative to bench.yaml's folder.
    pub model: PathBuf,
    /// The subject's base spec (data, input, ...), relative to bench.yaml's folder.
    pub spec: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioEntry {
    pub name: String,
    pub kind: ScenarioKind,
    #[serde(default)]
    pub corruption: Option<String>,
    #[serde(default)]
    pub severity: Option<u8>,
}

/// `methods[]`: a method's name, or a variant of a method (a name of its own and spec keys
/// deep-merged over its cells' specs after the profile), e.g. ArchRepair on the last block for
/// the paper's ablation of the localization.
#[derive(Debug, Clone)]
pub enum MethodEntry {
    Method(Method),
    Variant(Variant),
}

/// By hand rather than `untagged`, so that a misspelt method keeps serde's message naming the
/// known methods.
impl<'de> Deserialize<'de> for MethodEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match Value::deserialize(d)? {
            value @ Value::Mapping(_) => serde_norway::from_value(value).map(MethodEntry::Variant).map_err(D::Error::custom),
            value => serde_norway::from_value(value).map(MethodEntry::Method).map_err(D::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub method: Method,
    #[serde(default)]
    pub spec: Option<Value>,
}

/// A checked method entry: the cells' folder and table name, the method, its overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRun {
    pub name: String,
    pub method: Method,
    /// Merged after the profile (a mapping; empty for a plain method).
    pub overlay: Value,
}

impl MethodRun {
    /// The run of a `methods[]` entry; a refusal names the entry's key (`name`, `spec`).
    pub fn checked(entry: &MethodEntry) -> Result<MethodRun, (&'static str, String)> {
        let v = match entry {
            MethodEntry::Method(m) => return Ok(MethodRun { name: m.to_string(), method: *m, overlay: Value::Mapping(Default::default()) }),
            MethodEntry::Variant(v) => v,
        };
        check_name(&v.name).map_err(|e| ("name", e))?;
        let overlay = match &v.spec {
            None | Some(Value::Null) => Value::Mapping(Default::default()),
            Some(Value::Mapping(map)) if map.contains_key("method") || map.contains_key("seed") => {
                return Err(("spec", "sets `method` or `seed`; give the variant's method as its `method` key and the seeds in `seeds`".into()))
            }
            Some(map @ Value::Mapping(_)) => map.clone(),
            Some(_) => return Err(("spec", "must be a mapping of spec keys (e.g. `search: {block: last}`)".into())),
        };
        Ok(MethodRun { name: v.name.clone(), method: v.method, overlay })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioKind {
    /// Scenario 1: D_fail from the subject's clean test failures.
    Clean,
    /// Scenario 2: D_fail from one corrupted test split.
    Corruption,
}

/// `profiles`: spec overlays, each with an optional `limit` (test images used).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profiles {
    #[serde(default)]
    pub quick: Option<Value>,
    #[serde(default)]
    pub full: Option<Value>,
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    Clean { name: String },
    Corruption { name: String, corruption: Corruption, severity: u8 },
}

impl Scenario {
    pub fn name(&self) -> &str {
        match self {
            Scenario::Clean { name } | Scenario::Corruption { name, .. } => name,
        }
    }
}

/// A checked subject: absolute paths, its base spec loaded (data paths absolute).
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub model: PathBuf,
    pub spec_path: PathBuf,
    pub spec: Spec,
}

impl Subject {
    /// The subject's test split (the base spec's `data`).
    pub fn data(&self) -> &DataSpec {
        self.spec.data.as_ref().expect("checked in Plan::load")
    }
}

/// The chosen profile: its overlay (without `limit`) and its limit.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub overlay: Value,
    pub limit: Option<usize>,
}

/// bench.yaml, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file: PathBuf,
    pub subjects: Vec<Subject>,
    pub scenarios: Vec<Scenario>,
    pub methods: Vec<MethodRun>,
    pub seeds: Vec<u64>,
    pub evaluate_corruptions: Vec<Corruption>,
    pub profile: Profile,
}

/// One cell of the grid, by index into the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub subject: usize,
    pub scenario: usize,
    /// Index into [`Plan::methods`].
    pub method: usize,
    pub seed: u64,
}

impl Plan {
    /// Reads and checks `path`; `quick` picks `profiles.quick` (else `profiles.full`).
    pub fn load(path: &Path, quick: bool) -> Result<Plan, Error> {
        let file = std::path::absolute(path).map_err(|source| crate::data::DataError::Read { path: path.to_path_buf(), source })?;
        let text = std::fs::read_to_string(&file).map_err(|e| Error::Mismatch(format!("cannot read bench file `{}`: {e}", path.display())))?;
        let parsed = BenchFile::from_yaml(&text).map_err(|e| Error::Mismatch(format!("bench file `{}`: {e}", path.display())))?;
        let folder = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        Plan::check(parsed, &file, &folder, quick)
    }

    fn check(b: BenchFile, file: &Path, folder: &Path, quick: bool) -> Result<Plan, Error> {
        let at = |key: String, what: String| Error::Mismatch(format!("bench file `{}`, `{key}`: {what}", file.display()));
        for (key, empty) in [("subjects", b.subjects.is_empty()), ("scenarios", b.scenarios.is_empty()), ("methods", b.methods.is_empty()), ("seeds", b.seeds.is_empty())] {
            if empty {
                return Err(at(key.into(), "is empty; list at least one".into()));
            }
        }
        let mut names = BTreeSet::new();
        let mut subjects = Vec::new();
        for (i, s) in b.subjects.iter().enumerate() {
            check_name(&s.name).map_err(|e| at(format!("subjects[{i}].name"), e))?;
            if RESERVED.contains(&s.name.as_str()) || !names.insert(s.name.clone()) {
                return Err(at(format!("subjects[{i}].name"), format!("`{}` is taken (names must be unique and not {}); rename it", s.name, RESERVED.join(" or "))));
            }
            let model = folder.join(&s.model);
            if !model.is_file() {
                return Err(at(format!("subjects[{i}].model"), format!("`{}` is not a file; the path is relative to the bench file's folder `{}`", model.display(), folder.display())));
            }
            let spec_path = folder.join(&s.spec);
            if !spec_path.is_file() {
                return Err(at(format!("subjects[{i}].spec"), format!("`{}` is not a file; the path is relative to the bench file's folder `{}`", spec_path.display(), folder.display())));
            }
            let spec = Spec::load(&spec_path).map_err(|e| at(format!("subjects[{i}].spec"), e.to_string()))?;
            if spec.data.is_none() {
                return Err(at(format!("subjects[{i}].spec"), format!("`{}` has no `data` section; the bench needs the subject's test split there", spec_path.display())));
            }
            subjects.push(Subject { name: s.name.clone(), model, spec_path, spec });
        }
        let mut scenario_names = BTreeSet::new();
        let mut scenarios = Vec::new();
        for (i, s) in b.scenarios.iter().enumerate() {
            check_name(&s.name).map_err(|e| at(format!("scenarios[{i}].name"), e))?;
            if !scenario_names.insert(s.name.clone()) {
                return Err(at(format!("scenarios[{i}].name"), format!("`{}` appears twice; scenario names must be unique", s.name)));
            }
            scenarios.push(match (s.kind, &s.corruption, s.severity) {
                (ScenarioKind::Clean, None, None) => Scenario::Clean { name: s.name.clone() },
                (ScenarioKind::Clean, _, _) => return Err(at(format!("scenarios[{i}]"), "kind: clean takes no `corruption` or `severity`; remove them, or use kind: corruption".into())),
                (ScenarioKind::Corruption, Some(c), Some(severity @ 1..=5)) => {
                    let corruption = c.parse::<Corruption>().map_err(|e| at(format!("scenarios[{i}].corruption"), e.to_string()))?;
                    Scenario::Corruption { name: s.name.clone(), corruption, severity }
                }
                (ScenarioKind::Corruption, _, _) => return Err(at(format!("scenarios[{i}]"), "kind: corruption needs `corruption` (a name from docs/corruptions.md) and `severity` (1-5)".into())),
            });
        }
        let mut methods: Vec<MethodRun> = Vec::new();
        for (i, entry) in b.methods.iter().enumerate() {
            let run = MethodRun::checked(entry).map_err(|(key, e)| at(format!("methods[{i}].{key}"), e))?;
            if methods.iter().any(|m| m.name == run.name) {
                return Err(at(format!("methods[{i}]"), format!("`{}` appears twice; give a variant a `name` of its own", run.name)));
            }
            methods.push(run);
        }
        let mut seeds = Vec::new();
        for s in &b.seeds {
            if seeds.contains(s) {
                return Err(at("seeds".into(), format!("{s} appears twice")));
            }
            seeds.push(*s);
        }
        let evaluate_corruptions = match &b.evaluate_corruptions {
            Some(list) => list.iter().enumerate().map(|(i, c)| c.parse::<Corruption>().map_err(|e| at(format!("evaluate_corruptions[{i}]"), e.to_string()))).collect::<Result<Vec<_>, _>>()?,
            None => scenarios.iter().filter_map(|s| if let Scenario::Corruption { corruption, .. } = s { Some(*corruption) } else { None }).collect(),
        };
        let evaluate_corruptions = evaluate_corruptions.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        let (name, overlay) = match (quick, &b.profiles.quick, &b.profiles.full) {
            (true, Some(v), _) => ("quick", v.clone()),
            (true, None, _) => return Err(at("profiles.quick".into(), "is missing, and --quick asks for it; add a `quick` overlay (docs/bench.md) or drop --quick".into())),
            (false, _, Some(v)) => ("full", v.clone()),
            (false, _, None) => ("full", Value::Mapping(Default::default())),
        };
        let profile = Profile::from_overlay(name, overlay).map_err(|e| at(format!("profiles.{name}"), e))?;
        let plan = Plan { file: file.to_path_buf(), subjects, scenarios, methods, seeds, evaluate_corruptions, profile };
        // The overlays must give a valid spec for every subject (their keys are spec keys).
        for subject in &plan.subjects {
            compose(&subject.spec, &[&plan.profile.overlay]).map_err(|e| at(format!("profiles.{name}"), format!("merged over `{}`: {e}", subject.spec_path.display())))?;
            for (i, m) in plan.methods.iter().enumerate() {
                compose(&subject.spec, &[&plan.profile.overlay, &m.overlay]).map_err(|e| at(format!("methods[{i}].spec"), format!("merged over `{}`: {e}", subject.spec_path.display())))?;
            }
        }
        Ok(plan)
    }

    /// The grid, subject-major then scenario, method, seed: the order the cells run in.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for subject in 0..self.subjects.len() {
            for scenario in 0..self.scenarios.len() {
                for method in 0..self.methods.len() {
                    for &seed in &self.seeds {
                        cells.push(Cell { subject, scenario, method, seed });
                    }
                }
            }
        }
        cells
    }

    /// `subject/scenario/method/seed<k>`: the cell's name and its folder under the output.
    pub fn cell_name(&self, cell: &Cell) -> String {
        format!("{}/{}/{}/seed{}", self.subjects[cell.subject].name, self.scenarios[cell.scenario].name(), self.methods[cell.method].name, cell.seed)
    }
}

impl BenchFile {
    /// Parses bench.yaml and checks its version; the error names the key or line.
    pub fn from_yaml(text: &str) -> Result<BenchFile, String> {
        let file: BenchFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if file.version != BENCH_VERSION {
            return Err(format!("version: {} is not supported; this build reads `version: {BENCH_VERSION}`", file.version));
        }
        Ok(file)
    }
}

impl Profile {
    /// Splits `limit` off a profile's overlay; the rest must be a mapping of spec keys.
    fn from_overlay(name: &'static str, overlay: Value) -> Result<Profile, String> {
        let mut map = match overlay {
            Value::Mapping(map) => map,
            Value::Null => Default::default(),
            _ => return Err("must be a mapping of spec keys (e.g. `search: {epochs: 1}`) and `limit`".into()),
        };
        let limit = match map.remove("limit") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => Some(n.as_u64().unwrap() as usize),
            Some(other) => return Err(format!("limit: {other:?} is not a positive number of test images")),
        };
        Ok(Profile { name, overlay: Value::Mapping(map), limit })
    }
}

/// Names become folder names: letters, digits, `_`, `-`, `.`; not `.` or `..`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name != "." && name != ".." && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a folder name; use letters, digits, `_`, `-` and `.`"))
    }
}

/// Merges `overlay` into `base`: mappings key by key, recursively; any other value of the
/// overlay (scalar, list, null) replaces the base's.
pub fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (key, value) in o {
                match b.get_mut(key) {
                    Some(slot) => deep_merge(slot, value),
                    None => {
                        b.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (slot, value) => *slot = value.clone(),
    }
}

/// `spec` with `overlays` merged over it in turn, as YAML text that [`Spec::from_yaml`] accepts.
pub fn compose(spec: &Spec, overlays: &[&Value]) -> Result<String, String> {
    let mut value = serde_norway::to_value(spec).map_err(|e| e.to_string())?;
    for overlay in overlays {
        deep_merge(&mut value, overlay);
    }
    let text = serde_norway::to_string(&value).map_err(|e| e.to_string())?;
    Spec::from_yaml(&text)?;
    Ok(text)
}

/// What a corruption scenario's cell reads: the corrupted files' folder for its severity, and
/// how many images each file holds (the clean set is cut to as many when the profile limits).
#[derive(Debug, Clone)]
pub struct CorruptedData {
    pub dir: PathBuf,
    pub count: usize,
}

impl Plan {
    /// The typed spec of `cell`, before the profile: base + scenario data + method + seed.
    pub fn cell_spec(&self, cell: &Cell, corrupted: Option<&CorruptedData>) -> Result<Spec, Error> {
        let subject = &self.subjects[cell.subject];
        let mut spec = subject.spec.clone();
        spec.method = self.methods[cell.method].method;
        spec.seed = cell.seed;
        if let Scenario::Corruption { name, corruption, .. } = &self.scenarios[cell.scenario] {
            let corrupted = corrupted.ok_or_else(|| Error::Mismatch(format!("scenario `{name}`: no corrupted data was prepared")))?;
            let clean = subject.data().clone();
            let file = |c: Corruption| DataSpec { path: corrupted.dir.join(format!("{}.npy", c.name())), format: None, split: None, severity: None, layout: None };
            spec.train_data = Some(spec.train_data.clone().unwrap_or_else(|| DataSpec { split: Some(Split::Train), ..clean.clone() }));
            spec.data = Some(file(*corruption));
            let rows = self.profile.limit.map(|_| [0, corrupted.count]);
            spec.evaluate.push(NamedData { name: "clean".into(), rows, data: clean });
            for &other in self.evaluate_corruptions.iter().filter(|&&c| c != *corruption) {
                spec.evaluate.push(NamedData { name: other.name().into(), rows: None, data: file(other) });
            }
        }
        Ok(spec)
    }

    /// The bytes of the cell's spec.yaml: a header naming the cell, profile and limit (so a
    /// changed limit changes the file), then the spec with the profile and the method
    /// variant's overlay merged over it.
    pub fn cell_spec_text(&self, cell: &Cell, corrupted: Option<&CorruptedData>) -> Result<String, Error> {
        let spec = self.cell_spec(cell, corrupted)?;
        let yaml = compose(&spec, &[&self.profile.overlay, &self.methods[cell.method].overlay]).map_err(|e| Error::Mismatch(format!("the spec of cell {}: {e}", self.cell_name(cell))))?;
        let limit = self.profile.limit.map_or("none".to_string(), |l| l.to_string());
        Ok(format!(
            "# archrepair-onnx bench cell {} (profile {}, limit {limit}).\n# Written by `archrepair-onnx bench`: the cell reruns when this file would change.\n{yaml}",
            self.cell_name(cell),
            self.profile.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn deep_merge_merges_mappings_and_replaces_everything_else() {
        let mut base = yaml("a: {x: 1, y: {p: 2, q: 3}}\nlist: [1, 2]\nkeep: k\n");
        deep_merge(&mut base, &yaml("a: {y: {q: 30, r: 4}, z: 5}\nlist: [9]\nnew: {n: 1}\n"));
        assert_eq!(base, yaml("a: {x: 1, y: {p: 2, q: 30, r: 4}, z: 5}\nlist: [9]\nkeep: k\nnew: {n: 1}\n"));
        // A scalar over a mapping replaces it, and null replaces too.
        let mut base = yaml("a: {x: 1}\nb: 2\n");
        deep_merge(&mut base, &yaml("a: 3\nb: null\n"));
        assert_eq!(base, yaml("a: 3\nb: null\n"));
    }

    #[test]
    fn compose_overlays_the_spec_and_refuses_unknown_keys() {
        let spec = Spec::from_yaml("version: 1\nseed: 4\nsearch: {epochs: 5, train_images: 100}\ndata: {path: /d, split: test}\n").unwrap();
        let text = compose(&spec, &[&yaml("search: {epochs: 1}\ncollect: {failures: 50}\n")]).unwrap();
        let merged = Spec::from_yaml(&text).unwrap();
        assert_eq!((merged.search.epochs, merged.search.train_images, merged.collect.failures, merged.seed), (1, Some(100), 50, 4));
        assert_eq!(merged.data, spec.data);
        let bad = compose(&spec, &[&yaml("search: {epoch: 1}\n")]).unwrap_err();
        assert!(bad.contains("epoch") && bad.contains("epochs"), "{bad}");
    }

    fn plan(scenarios: Vec<Scenario>, methods: Vec<Method>, seeds: Vec<u64>) -> Plan {
        let spec = Spec::from_yaml("version: 1\ndata: {path: /data/fm, split: test}\n").unwrap();
        let subject = |name: &str| Subject { name: name.into(), model: "/m.onnx".into(), spec_path: "/s.yaml".into(), spec: spec.clone() };
        let evaluate_corruptions = vec![Corruption::GaussianNoise, Corruption::Fog];
        let profile = Profile::from_overlay("quick", yaml("limit: 300\ntrain: {epochs: 1}\n")).unwrap();
        let methods = methods.into_iter().map(|method| MethodRun { name: method.to_string(), method, overlay: yaml("{}") }).collect();
        Plan { file: "/b.yaml".into(), subjects: vec![subject("a"), subject("b")], scenarios, methods, seeds, evaluate_corruptions, profile }
    }

    #[test]
    fn the_grid_is_every_subject_scenario_method_and_seed_once() {
        let scenarios = vec![Scenario::Clean { name: "s1".into() }, Scenario::Corruption { name: "fog3".into(), corruption: Corruption::Fog, severity: 3 }];
        let p = plan(scenarios, vec![Method::Archrepair, Method::Arachne, Method::Apricot], vec![1, 2]);
        let cells = p.cells();
        assert_eq!(cells.len(), 2 * 2 * 3 * 2);
        let names: BTreeSet<String> = cells.iter().map(|c| p.cell_name(c)).collect();
        assert_eq!(names.len(), cells.len(), "a cell repeats");
        assert_eq!(p.cell_name(&cells[0]), "a/s1/archrepair/seed1");
        assert_eq!(p.cell_name(&cells[1]), "a/s1/archrepair/seed2");
        assert_eq!(p.cell_name(&cells[23]), "b/fog3/apricot/seed2");
    }

    #[test]
    fn a_corruption_cell_reads_its_corruption_and_measures_clean_and_the_others() {
        let scenarios = vec![Scenario::Corruption { name: "fog3".into(), corruption: Corruption::Fog, severity: 3 }];
        let p = plan(scenarios, vec![Method::FinetuneBlock], vec![7]);
        let cell = p.cells()[0];
        let corrupted = CorruptedData { dir: "/out/corrupted/fm/s3".into(), count: 300 };
        let spec = p.cell_spec(&cell, Some(&corrupted)).unwrap();
        assert_eq!((spec.seed, spec.method), (7, Method::FinetuneBlock));
        assert_eq!(spec.data.unwrap().path, PathBuf::from("/out/corrupted/fm/s3/fog.npy"));
        let train = spec.train_data.unwrap();
        assert_eq!((train.path, train.split), (PathBuf::from("/data/fm"), Some(Split::Train)));
        let sets: Vec<(&str, Option<[usize; 2]>)> = spec.evaluate.iter().map(|e| (e.name.as_str(), e.rows)).collect();
        assert_eq!(sets, [("clean", Some([0, 300])), ("gaussian_noise", None)]);
        let text = p.cell_spec_text(&cell, Some(&corrupted)).unwrap();
        assert!(text.starts_with("# archrepair-onnx bench cell a/fog3/finetune-block/seed7") && text.contains("limit 300"), "{text}");
        assert_eq!(Spec::from_yaml(&text).unwrap().train.epochs, 1, "the profile overlay is merged");
    }

    #[test]
    fn the_committed_bench_files_load_and_every_cell_spec_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let corrupted = CorruptedData { dir: "/c/s3".into(), count: 10 };
        for (file, quick, cells) in [("bench/bench.yaml", false, 270), ("bench/bench.yaml", true, 270), ("fixtures/bench/quick.yaml", true, 24), ("bench/compare.yaml", true, 24), ("bench/compare-medium.yaml", false, 72), ("bench/ablation.yaml", false, 48), ("bench/resnet18.yaml", false, 24)] {
            let plan = Plan::load(&root.join(file), quick).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(plan.cells().len(), cells, "{file}");
            for cell in plan.cells() {
                let spec = Spec::from_yaml(&plan.cell_spec_text(&cell, Some(&corrupted)).unwrap()).unwrap();
                assert_eq!((spec.method, spec.seed), (plan.methods[cell.method].method, cell.seed));
                if plan.subjects[cell.subject].name == "fashion_mnist_resnet18_32" {
                    assert_eq!(spec.input.fit, Some(crate::data::Fit::Pad));
                }
            }
        }
        let full = Plan::load(&root.join("bench/bench.yaml"), false).unwrap();
        assert_eq!(full.profile.limit, None);
        let mnist = full.subjects.iter().find(|s| s.name == "mnist_resnet20").unwrap();
        assert!(mnist.data().path.ends_with(".data/mnist"), "{:?}", mnist.data().path);
        assert_eq!(Plan::load(&root.join("bench/bench.yaml"), true).unwrap().profile.limit, Some(2000));
    }

    #[test]
    fn a_method_variant_is_its_own_cell_with_its_overlay_merged_after_the_profile() {
        let text = "version: 1\nsubjects: []\nscenarios: []\nseeds: [1]\nmethods:\n  - archrepair\n  - {name: archrepair-last, method: archrepair, spec: {search: {block: last}, train: {epochs: 3}}}\n";
        let file = BenchFile::from_yaml(text).unwrap();
        let mut p = plan(vec![Scenario::Clean { name: "s1".into() }], vec![], vec![1]);
        p.methods = file.methods.iter().map(|m| MethodRun::checked(m).unwrap()).collect();
        let cells = p.cells();
        assert_eq!(cells.len(), 2 * 2);
        assert_eq!(p.cell_name(&cells[1]), "a/s1/archrepair-last/seed1");
        let plain = Spec::from_yaml(&p.cell_spec_text(&cells[0], None).unwrap()).unwrap();
        let last = Spec::from_yaml(&p.cell_spec_text(&cells[1], None).unwrap()).unwrap();
        assert_eq!((plain.search.block, plain.train.epochs), (crate::search::options::BlockChoice::Auto, 1), "the profile's train.epochs");
        assert_eq!((last.method, last.search.block, last.train.epochs), (Method::Archrepair, crate::search::options::BlockChoice::Last, 3), "the variant wins over the profile");
        // A variant's name is checked like a folder name, and may not repeat a method's.
        let dir = std::env::temp_dir().join(format!("bench-variant-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (entry, key) in [("{name: a/b, method: archrepair}", "methods[1].name"), ("{name: archrepair, method: finetune-block}", "appears twice"), ("{name: x, method: archrepair, spec: {search: {blok: 1}}}", "blok"), ("{name: x, method: archrepair, spec: 3}", "methods[1].spec"), ("{name: x, method: archrepair, spec: {seed: 4}}", "give the variant's method")] {
            let bench = format!("version: 1\nsubjects: []\nscenarios: []\nseeds: [1]\nmethods: [archrepair, {entry}]\n");
            let file = dir.join("b.yaml");
            std::fs::write(&file, bench.replace("subjects: []", "subjects: [{name: a, model: m.onnx, spec: s.yaml}]").replace("scenarios: []", "scenarios: [{name: c, kind: clean}]")).unwrap();
            std::fs::write(dir.join("m.onnx"), b"").unwrap();
            std::fs::write(dir.join("s.yaml"), "version: 1\ndata: {path: /d, split: test}\n").unwrap();
            let err = Plan::load(&file, false).unwrap_err().to_string();
            assert!(err.contains(key), "{entry}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bench_files_with_unknown_keys_or_methods_are_refused_with_the_key() {
        let good = "version: 1\nsubjects: []\nscenarios: []\nmethods: [archrepair]\nseeds: [1]\n";
        BenchFile::from_yaml(good).unwrap();
        let unknown = BenchFile::from_yaml(&format!("{good}seed: 3\n")).unwrap_err();
        assert!(unknown.contains("seed") && unknown.contains("seeds"), "{unknown}");
        let method = BenchFile::from_yaml(&good.replace("[archrepair]", "[archrepair, finetune]")).unwrap_err();
        assert!(method.contains("finetune") && method.contains("finetune-block"), "{method}");
        assert!(BenchFile::from_yaml(&good.replace("version: 1", "version: 2")).unwrap_err().contains("version: 2"));
        assert!(Profile::from_overlay("quick", yaml("limit: -3\n")).unwrap_err().contains("limit"));
        assert_eq!(Profile::from_overlay("quick", yaml("limit: 40\nseed: 1\n")).unwrap().overlay, yaml("seed: 1\n"));
    }
}
