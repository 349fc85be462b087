//! Vulnerable-unit localization, the first half of ArchRepair: given a model, its failures and
//! passing examples, name the block to repair, with the evidence.
//!
//! Stages: **collect** (run the model on the split; D_fail = N misclassified examples, a passing
//! sample of correctly classified ones), **attack** (adversarial versions of the passing inputs
//! join the failing side: the "adversarial-aware" spectrum), **spectrum** (per neuron, activation
//! counts on failing vs passing inputs weighted by per-example weight-gradient magnitudes; a
//! formula scores each neuron; a unit scores the mean of its neurons), and the baselines
//! (`gradient`, `activation`, `random`), our gradient `agreement`, our BatchNormalization
//! `drift` (forward passes only) and our `probe` (a short fine-tune of each unit, weights put
//! back) in the same interface.
//! Inputs are processed batch by batch and only per-neuron sums are kept, so memory does not
//! grow with the number of inputs.
//! The model is only read: eval mode throughout, gradients asked of autograd, never
//! accumulated into the weights; `probe` alone changes a unit's weights for its short
//! fine-tune and copies them back bit for bit before the next unit.

pub mod attack;
pub mod baselines;
pub mod chart;
pub mod classifier;
pub mod drift;
pub mod observe;
pub mod options;
pub mod pixels;
pub mod probe;
pub mod ranking;
pub mod spectrum;
pub mod units;

use std::ops::Range;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tch::Tensor;

use crate::commands::progress::images_bar;
use crate::data::{Dataset, InputPlan};
use crate::detect::detect;
use crate::graph::Graph;
use crate::lower::LoweredModel;
use crate::Error;

use attack::Attack;
use classifier::Classifier;
use observe::Observer;
use options::{AttackSpec, CollectSpec, Formula, LocalizeSpec, Method, Reference};
use pixels::PixelInput;
use ranking::{order, AttackSummary, CollectSummary, Evidence, MethodOrder, RankedUnit, Ranking, Timings};
use spectrum::Spectrum;
use units::{Probes, UnitInfo};

/// Everything localization reads.
pub struct Request<'a> {
    pub graph: &'a Graph,
    pub model: &'a LoweredModel,
    pub plan: &'a InputPlan,
    pub data: &'a Dataset,
    pub collect: &'a CollectSpec,
    pub attack: &'a AttackSpec,
    pub localize: &'a LocalizeSpec,
    pub seed: u64,
    pub progress: bool,
    /// The model file, for messages and the report.
    pub model_path: &'a std::path::Path,
}

/// The collect stage's choice of inputs (indices into the dataset).
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    pub evaluated: usize,
    pub misclassified: usize,
    pub failures: Vec<usize>,
    pub passing: Vec<usize>,
}

pub fn localize(request: &Request) -> Result<Ranking, Error> {
    let started = Instant::now();
    let spec = request.localize;
    let attack = Attack::resolve(request.attack, request.plan.data);
    if let Some(a) = &attack {
        a.check().map_err(Error::Mismatch)?;
    }
    let probes = Probes::new(request.graph, &detect(request.graph), spec.granularity);
    if probes.units.is_empty() {
        return Err(Error::Mismatch(format!(
            "`{}`: no {} found to rank; with no detected blocks, set `localize.granularity: layer` to rank every Conv/Gemm layer",
            request.model_path.display(),
            if spec.granularity == options::Granularity::Block { "blocks" } else { "Conv/Gemm layers" }
        )));
    }
    let input = PixelInput::new(request.plan, request.model.device())?;
    let classifier = Classifier::new(request.graph, request.model, &input);
    let batch = input.batch_size(spec.batch);

    let collected = collect(&classifier, request.data, request.collect, batch, request.seed, request.progress).map_err(lower_error(request))?;
    let collect_seconds = started.elapsed().as_secs_f64();

    let needs_spectrum = spec.compare || matches!(spec.method, Method::Spectrum | Method::Activation);
    let spectrum_started = Instant::now();
    let (spectrum, columns, attack_summary) = if needs_spectrum {
        let run = SpectrumRun { classifier: &classifier, probes: &probes, data: request.data, batch, progress: request.progress };
        run.measure(&collected, attack, spec, request.seed).map_err(lower_error(request))?
    } else {
        (Spectrum::new(0), Vec::new(), None)
    };
    let spectrum_seconds = spectrum_started.elapsed().as_secs_f64();

    let gradient_started = Instant::now();
    let weights = baselines::LayerWeights::new(&classifier, request.graph, &probes);
    let gradient = if spec.compare || spec.method == Method::Gradient {
        let mut failures = collected.failures.clone();
        failures.shuffle(&mut Pcg64::seed_from_u64(request.seed ^ 0x6772_6164));
        failures.truncate(spec.gradient_failures.max(1));
        let failures = Inputs { input: &input, data: request.data, indices: &failures, batch };
        Some(baselines::gradient_scores(&classifier, &weights, &probes, &failures).map_err(lower_error(request))?)
    } else {
        None
    };
    let agreement = if spec.compare || spec.method == Method::Agreement {
        let failing = Inputs { input: &input, data: request.data, indices: &collected.failures, batch };
        let passing = Inputs { input: &input, data: request.data, indices: &collected.passing, batch };
        Some(baselines::agreement_scores(&classifier, &weights, &probes, &failing, &passing).map_err(lower_error(request))?)
    } else {
        None
    };
    let gradient_seconds = gradient_started.elapsed().as_secs_f64();

    let drift_started = Instant::now();
    let drift = if spec.compare || spec.method == Method::Drift {
        measure_drift(request, &classifier, &probes, &collected, &input, batch)?
    } else {
        None
    };
    let drift_seconds = drift_started.elapsed().as_secs_f64();

    // `probe` trains, so it runs only when asked for (not in --compare).
    let probe_started = Instant::now();
    let probed = if spec.method == Method::Probe {
        let probe = probe::Probe { classifier: &classifier, data: request.data, batch, steps: spec.probe_steps, lr: spec.probe_lr, seed: request.seed, progress: request.progress };
        Some(probe.measure(request.graph, &probes, &collected).map_err(lower_error(request))?)
    } else {
        None
    };
    let probe_seconds = probe_started.elapsed().as_secs_f64();

    let infos: Vec<&UnitInfo> = probes.units.iter().map(|u| &u.info).collect();
    let scored = |method: Method, formula: Formula| -> Vec<f64> {
        match method {
            Method::Spectrum | Method::Activation => unit_scores(&columns, |n| neuron_score(&spectrum, method, formula, n)),
            Method::Gradient => gradient.clone().unwrap_or_default(),
            Method::Agreement => agreement.clone().unwrap_or_default(),
            Method::Drift => drift.as_ref().map(|d| d.iter().map(|(score, _)| *score).collect()).unwrap_or_default(),
            Method::Probe => probed.as_ref().map(|p| p.iter().map(|(score, _)| *score).collect()).unwrap_or_default(),
            Method::Random => baselines::random_scores(infos.len(), request.seed),
        }
    };
    let scores = scored(spec.method, spec.formula);
    let uses_formula = matches!(spec.method, Method::Spectrum | Method::Activation);
    let shares = uses_formula.then(|| top_k_shares(&spectrum, &columns, spec.top_k, |n| neuron_score(&spectrum, spec.method, spec.formula, n)));

    let units = order(&scores)
        .into_iter()
        .enumerate()
        .map(|(rank, u)| RankedUnit {
            rank: rank + 1,
            unit: infos[u].clone(),
            score: scores[u],
            top_k_share: shares.as_ref().map(|s| s[u]),
            evidence: (!columns.is_empty()).then(|| evidence(&spectrum, &columns[u])),
            mean_abs_gradient: (spec.method == Method::Gradient).then(|| scores[u]),
            drift: drift.as_ref().filter(|_| spec.method == Method::Drift).map(|d| d[u].1.clone()),
            probe: probed.as_ref().and_then(|p| p[u].1.clone()),
        })
        .collect();

    let mut comparison = Vec::new();
    if spec.compare {
        let methods = Formula::ALL.iter().map(|&f| (Method::Spectrum, Some(f))).chain(Formula::ALL.iter().map(|&f| (Method::Activation, Some(f))));
        let others = [Method::Agreement, Method::Gradient, Method::Drift, Method::Random].into_iter().filter(|&m| m != Method::Drift || drift.is_some());
        for (method, formula) in methods.chain(others.map(|m| (m, None))) {
            let scores = scored(method, formula.unwrap_or(Formula::Ochiai));
            comparison.push(MethodOrder { method, formula, order: order(&scores).into_iter().map(|u| infos[u].id).collect(), scores });
        }
    }

    Ok(Ranking {
        format: ranking::FORMAT_VERSION,
        model: request.model_path.display().to_string(),
        data: request.data.source.display().to_string(),
        input: request.plan.describe(),
        seed: request.seed,
        method: spec.method,
        formula: uses_formula.then_some(spec.formula),
        granularity: spec.granularity,
        threshold: spec.threshold,
        top_k: spec.top_k,
        collect: CollectSummary {
            evaluated: collected.evaluated,
            accuracy: 1.0 - collected.misclassified as f64 / collected.evaluated.max(1) as f64,
            misclassified: collected.misclassified,
            failures: collected.failures.len(),
            passing: collected.passing.len(),
        },
        attack: attack_summary,
        failing_inputs: if needs_spectrum { spectrum.failing_inputs() } else { collected.failures.len() },
        passing_inputs: if needs_spectrum { spectrum.passing_inputs() } else { collected.passing.len() },
        units,
        comparison,
        seconds: Timings { collect: collect_seconds, spectrum: spectrum_seconds, gradient: gradient_seconds, drift: drift_seconds, probe: probe_seconds, total: started.elapsed().as_secs_f64() },
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// The `drift` localizer's scores and evidence per unit, on D_fail and the passing sample; None
/// in a comparison on a model without BatchNormalization, an error when it is the method asked for.
fn measure_drift(request: &Request, classifier: &Classifier, probes: &Probes, collected: &Collected, input: &PixelInput, batch: usize) -> Result<Option<Vec<drift::UnitDrift>>, Error> {
    let Some(drift) = drift::Drift::new(request.graph, classifier, probes) else {
        if request.localize.method != Method::Drift {
            return Ok(None);
        }
        return Err(Error::Mismatch(format!(
            "`{}` has no BatchNormalization with running statistics, which `localize.method: drift` reads; use `method: spectrum` (or `agreement`) for this model",
            request.model_path.display()
        )));
    };
    let failing = Inputs { input, data: request.data, indices: &collected.failures, batch };
    let passing = Inputs { input, data: request.data, indices: &collected.passing, batch };
    drift.measure(classifier, &[&failing, &passing]).map(Some).map_err(lower_error(request))
}

/// An error of a stage that runs the model: running it, or anything else (already an [`Error`]).
pub enum Failure {
    Lower(crate::lower::LowerError),
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

impl From<tch::TchError> for Failure {
    fn from(e: tch::TchError) -> Self {
        Failure::Lower(crate::lower::LowerError::Torch(e))
    }
}

impl From<crate::lower::LowerError> for Failure {
    fn from(e: crate::lower::LowerError) -> Self {
        Failure::Lower(e)
    }
}

impl Failure {
    /// The library error, naming `model` when running it failed.
    pub(crate) fn in_model(self, model: &std::path::Path) -> Error {
        match self {
            Failure::Lower(source) => Error::Lower { path: model.to_path_buf(), source },
            Failure::Other(e) => e,
        }
    }
}

/// Names the model file in errors of running it.
fn lower_error<'a>(request: &'a Request) -> impl Fn(Failure) -> Error + 'a {
    move |failure| failure.in_model(request.model_path)
}

/// The collect stage alone (for the search): D_fail and the passing sample of `data`.
pub(crate) fn collect_failures(classifier: &Classifier, data: &Dataset, spec: &CollectSpec, seed: u64, progress: bool) -> Result<Collected, Failure> {
    collect(classifier, data, spec, classifier.input.batch_size(256), seed, progress)
}

/// Runs the model on every example; keeps up to `spec.failures` misclassified ones (a seeded
/// sample) and a seeded sample of correctly classified ones.
fn collect(classifier: &Classifier, data: &Dataset, spec: &CollectSpec, batch: usize, seed: u64, progress: bool) -> Result<Collected, Failure> {
    let bar = images_bar(data.len() as u64, progress);
    bar.set_message("collect: evaluating");
    let (mut failures, mut passing) = (Vec::new(), Vec::new());
    for start in (0..data.len()).step_by(batch) {
        let end = (start + batch).min(data.len());
        let b = classifier.input.pixels(&data.images(start..end))?;
        let predicted = classifier.predict(&b.pixels)?;
        let predicted: Vec<i64> = Vec::try_from(&predicted.f_narrow(0, 0, b.real as i64).map_err(Error::torch("reading predictions"))?)
            .map_err(Error::torch("reading predictions"))?;
        for (i, p) in (start..end).zip(predicted) {
            if p == data.labels[i] { passing.push(i) } else { failures.push(i) }
        }
        crate::interrupt::check()?;
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let misclassified = failures.len();
    if misclassified == 0 {
        return Err(Failure::Other(Error::Mismatch(format!(
            "the model classifies all {} examples of `{}` correctly: there are no failures to localize; use a split where it fails (e.g. a corrupted one, docs/corruptions.md)",
            data.len(),
            data.source.display()
        ))));
    }
    let mut rng = Pcg64::seed_from_u64(seed);
    failures.shuffle(&mut rng);
    failures.truncate(spec.failures.max(1));
    passing.shuffle(&mut rng);
    passing.truncate(spec.passing.unwrap_or(failures.len()));
    // Model order within each set: batches then see examples in a stable order.
    failures.sort_unstable();
    passing.sort_unstable();
    Ok(Collected { evaluated: data.len(), misclassified, failures, passing })
}

/// Examples of the dataset, made into labelled pixel batches one batch at a time (memory stays
/// bounded whatever their number).
pub(crate) struct Inputs<'a> {
    input: &'a PixelInput,
    data: &'a Dataset,
    indices: &'a [usize],
    batch: usize,
}

impl Inputs<'_> {
    /// (pixels, labels, real rows): batches filled up for fixed-batch models.
    fn batches(&self) -> impl Iterator<Item = Result<(Tensor, Tensor, usize), Error>> + '_ {
        self.indices.chunks(self.batch).map(|chunk| labelled_batch(self.input, self.data, chunk))
    }
}

pub(crate) fn labelled_batch(input: &PixelInput, data: &Dataset, indices: &[usize]) -> Result<(Tensor, Tensor, usize), Error> {
    let images: Vec<_> = indices.iter().map(|&i| data.image(i)).collect();
    let b = input.pixels(&images)?;
    let mut labels: Vec<i64> = indices.iter().map(|&i| data.labels[i]).collect();
    let rows = b.pixels.size()[0] as usize;
    if let Some(&last) = labels.last() {
        labels.resize(rows, last);
    }
    let labels = Tensor::f_from_slice(&labels).and_then(|t| t.f_to_device(b.pixels.device())).map_err(Error::torch("building labels"))?;
    Ok((b.pixels, labels, b.real))
}

/// The spectrum pass over D_fail, the passing sample and its adversarial versions.
struct SpectrumRun<'a> {
    classifier: &'a Classifier<'a>,
    probes: &'a Probes,
    data: &'a Dataset,
    batch: usize,
    progress: bool,
}

impl SpectrumRun<'_> {
    fn measure(&self, collected: &Collected, attack: Option<Attack>, spec: &LocalizeSpec, seed: u64) -> Result<(Spectrum, Vec<Range<usize>>, Option<AttackSummary>), Failure> {
        let mut observer = Observer::new(self.classifier, self.probes, spec.threshold);
        if spec.reference == Reference::PassingMean {
            observer.set_reference(self.passing_mean_levels(&observer, &collected.passing)?);
        }
        let mut spectrum: Option<Spectrum> = None;
        let mut columns = Vec::new();
        let mut add = |obs: observe::Observation, failing: bool| -> Result<(), Failure> {
            let s = spectrum.get_or_insert_with(|| Spectrum::new(obs.active.size()[1] as usize));
            columns = obs.columns;
            Ok(s.add(&obs.active, &obs.weights, failing).map_err(Error::torch("adding to the spectrum"))?)
        };
        let total = collected.failures.len() + collected.passing.len();
        let bar = images_bar(total as u64, self.progress);
        bar.set_message("spectrum: failures");
        for chunk in collected.failures.chunks(self.batch) {
            let (pixels, labels, real) = labelled_batch(self.classifier.input, self.data, chunk)?;
            add(observer.observe(&pixels, &labels, real)?, true)?;
            crate::interrupt::check()?;
            bar.inc(real as u64);
        }
        bar.set_message(if attack.is_some() { "spectrum: passing+adv" } else { "spectrum: passing" });
        let mut succeeded = 0;
        for chunk in collected.passing.chunks(self.batch) {
            let (pixels, labels, real) = labelled_batch(self.classifier.input, self.data, chunk)?;
            add(observer.observe(&pixels, &labels, real)?, false)?;
            if let Some(attack) = &attack {
                let adversarial = attack.run(self.classifier, &pixels, &labels, seed, chunk)?;
                let fooled = self.fooled(&adversarial, &labels, real)?;
                succeeded += fooled.size()[0] as usize;
                let obs = observer.observe(&adversarial, &labels, real)?;
                let pick = |t: &Tensor| t.f_index_select(0, &fooled);
                let obs = observe::Observation {
                    active: pick(&obs.active).map_err(Error::torch("selecting adversarial rows"))?,
                    weights: pick(&obs.weights).map_err(Error::torch("selecting adversarial rows"))?,
                    columns: obs.columns,
                };
                add(obs, true)?;
            }
            crate::interrupt::check()?;
            bar.inc(real as u64);
        }
        bar.finish_and_clear();
        let summary = attack.map(|attack| AttackSummary { attack, attacked: collected.passing.len(), succeeded });
        Ok((spectrum.unwrap_or_default(), columns, summary))
    }

    /// Mean level of every neuron over the passing inputs (forward passes only).
    fn passing_mean_levels(&self, observer: &Observer, passing: &[usize]) -> Result<Tensor, Failure> {
        let mut sum: Option<Tensor> = None;
        for chunk in passing.chunks(self.batch) {
            let (pixels, _, real) = labelled_batch(self.classifier.input, self.data, chunk)?;
            let levels = observer.levels(&pixels, real)?.f_sum_dim_intlist([0i64].as_slice(), false, tch::Kind::Float)?;
            sum = Some(match sum {
                Some(s) => s.f_add(&levels)?,
                None => levels,
            });
        }
        let sum = sum.ok_or_else(|| Error::Mismatch("no passing inputs to measure the neurons' usual levels on (collect.passing is 0)".into()))?;
        Ok(sum.f_div_scalar(passing.len() as f64)?)
    }

    /// Row indices (among the first `real`) that the model now misclassifies.
    fn fooled(&self, adversarial: &Tensor, labels: &Tensor, real: usize) -> Result<Tensor, Failure> {
        let predicted = self.classifier.predict(adversarial)?;
        let wrong = predicted.f_ne_tensor(labels).and_then(|t| t.f_narrow(0, 0, real as i64)).map_err(Error::torch("comparing predictions"))?;
        Ok(wrong.f_nonzero().and_then(|t| t.f_flatten(0, -1)).map_err(Error::torch("comparing predictions"))?)
    }
}

/// A neuron's suspiciousness: its weighted counts (`spectrum`) or plain ones (`activation`).
fn neuron_score(spectrum: &Spectrum, method: Method, formula: Formula, n: usize) -> f64 {
    match method {
        Method::Activation => spectrum.counts(n).score(formula),
        _ => spectrum.weighted_counts(n).score(formula),
    }
}

/// Mean neuron score per unit (NaN for a unit without neurons: ranked last).
fn unit_scores(columns: &[Range<usize>], score: impl Fn(usize) -> f64) -> Vec<f64> {
    columns.iter().map(|c| if c.is_empty() { f64::NAN } else { c.clone().map(&score).sum::<f64>() / c.len() as f64 }).collect()
}

/// Share of the global top-k neurons falling in each unit.
fn top_k_shares(spectrum: &Spectrum, columns: &[Range<usize>], k: usize, score: impl Fn(usize) -> f64) -> Vec<f64> {
    let scores: Vec<f64> = (0..spectrum.neurons()).map(score).collect();
    let k = k.min(scores.len());
    let top: Vec<usize> = order(&scores).into_iter().take(k).collect();
    columns.iter().map(|c| if k == 0 { 0.0 } else { top.iter().filter(|n| c.contains(n)).count() as f64 / k as f64 }).collect()
}

fn evidence(spectrum: &Spectrum, columns: &Range<usize>) -> Evidence {
    let n = columns.len().max(1) as f64;
    let mut e = Evidence { neurons: columns.len(), ..Evidence::default() };
    for i in columns.clone() {
        let c = spectrum.counts(i);
        let (gf, gp) = spectrum.mean_gradients(i);
        e.af += c.af / n;
        e.nf += c.nf / n;
        e.ap += c.ap / n;
        e.np += c.np / n;
        e.mean_gradient_failing += gf / n;
        e.mean_gradient_passing += gp / n;
    }
    let rate = |on: f64, off: f64| if on + off > 0.0 { on / (on + off) } else { 0.0 };
    e.failing_activation_rate = rate(e.af, e.nf);
    e.passing_activation_rate = rate(e.ap, e.np);
    e
}
