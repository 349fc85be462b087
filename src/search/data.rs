//! The repair data (the paper's protocol): D_fail ∪ a training set, held in memory as one pixel
//! tensor, split by seeded shuffles into a held-out slice (to choose the repaired model; never
//! the test split) and two halves for the bi-level search (weights on one, α on the other).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tch::Tensor;

use crate::data::Dataset;
use crate::localize::classifier::Classifier;
use crate::localize::pixels::PixelInput;
use crate::localize::Failure;
use crate::Error;

use super::options::SearchSpec;

/// Labelled pixel tensors and index sets into them.
pub struct RepairData {
    /// [N, ...] in pixel space, on the model's device: D_fail first, then training images.
    pub pixels: Tensor,
    pub labels: Tensor,
    /// How many leading rows are failures (the rest are training images).
    pub failures: usize,
    /// Rows for the weights (search half A).
    pub half_a: Vec<i64>,
    /// Rows for α (search half B).
    pub half_b: Vec<i64>,
    /// Rows for training the derived cell: the failures and every training image not held out
    /// (a superset of both halves).
    pub training: Vec<i64>,
    /// Rows held out to choose the repaired model.
    pub holdout: Vec<i64>,
    /// The subject's log-probabilities of every row, when training distils from it.
    pub teacher: Option<Tensor>,
}

impl RepairData {
    /// `failures`: indices into `eval` (D_fail); the training images come from `train`:
    /// `train_images` of them in all (None: every one), of which the search uses the first
    /// `search.train_images`.
    pub fn build(input: &PixelInput, eval: &Dataset, failures: &[usize], train: &Dataset, spec: &SearchSpec, train_images: Option<usize>, seed: u64) -> Result<RepairData, Error> {
        let mut rng = Pcg64::seed_from_u64(seed ^ 0x7265_7061_6972);
        let mut train_rows: Vec<usize> = (0..train.len()).collect();
        train_rows.shuffle(&mut rng);
        let wanted = match (train_images, spec.train_images) {
            (None, _) | (_, None) => train.len(),
            (Some(t), Some(s)) => t.max(s),
        };
        train_rows.truncate(wanted);
        let (fail_pixels, fail_labels) = load(input, eval, failures)?;
        let (train_pixels, train_labels) = load(input, train, &train_rows)?;
        let cat = |a: Tensor, b: Option<Tensor>| match b {
            Some(b) => Tensor::f_cat(&[a, b], 0).map_err(Error::torch("assembling the repair data")),
            None => Ok(a),
        };
        let (pixels, labels) = match (fail_pixels, train_pixels) {
            (Some(f), t) => (cat(f, t)?, cat(fail_labels, (!train_rows.is_empty()).then_some(train_labels))?),
            (None, _) => return Err(Error::Mismatch("the repair data has no failures (D_fail is empty)".into())),
        };

        // Hold out the same share of failures and of training images. Training rows keep their
        // shuffled order, so "the first k" is a seeded sample.
        let share = spec.holdout.clamp(0.0, 0.9);
        let split = |mut rows: Vec<i64>| {
            let held = ((rows.len() as f64) * share).round() as usize;
            let rest = rows.split_off(held);
            (rows, rest)
        };
        let n_fail = failures.len() as i64;
        let mut fail_rows: Vec<i64> = (0..n_fail).collect();
        fail_rows.shuffle(&mut rng);
        let (held_fail, fail_rest) = split(fail_rows);
        let (held_train, train_rest) = split((n_fail..n_fail + train_rows.len() as i64).collect());
        let failures_repeated: Vec<i64> = (0..spec.oversample_failures.max(1)).flat_map(|_| fail_rest.iter().copied()).collect();
        let search_train = spec.train_images.map_or(train_rest.len(), |s| ((s as f64) * (1.0 - share)).round() as usize).min(train_rest.len());
        let mut search_rows: Vec<i64> = failures_repeated.iter().chain(&train_rest[..search_train]).copied().collect();
        search_rows.shuffle(&mut rng);
        let half_b = search_rows.split_off(search_rows.len() / 2);
        let training = failures_repeated.iter().chain(&train_rest).copied().collect();
        let mut holdout = held_fail;
        holdout.extend(held_train);
        Ok(RepairData { pixels, labels, failures: failures.len(), half_a: search_rows, half_b, training, holdout, teacher: None })
    }

    /// Records the subject's log-probabilities of every row (forward passes only).
    pub fn add_teacher(&mut self, classifier: &Classifier) -> Result<(), Failure> {
        let mut parts = Vec::new();
        let rows: Vec<i64> = (0..self.pixels.size()[0]).collect();
        for chunk in rows.chunks(256) {
            let (pixels, _) = self.batch(chunk)?;
            let output = tch::no_grad(|| classifier.forward(&pixels))?;
            parts.push(classifier.log_probabilities(&output)?);
        }
        self.teacher = Some(Tensor::f_cat(&parts, 0)?);
        Ok(())
    }

    /// 1.0 for the training-image rows among `rows`, 0.0 for failures.
    pub fn training_image_mask(&self, rows: &[i64]) -> Result<Tensor, tch::TchError> {
        let mask: Vec<f32> = rows.iter().map(|&r| if r >= self.failures as i64 { 1.0 } else { 0.0 }).collect();
        Tensor::f_from_slice(&mask)?.f_to_device(self.pixels.device())
    }

    /// The batch of `rows` (pixels, labels).
    pub fn batch(&self, rows: &[i64]) -> Result<(Tensor, Tensor), tch::TchError> {
        let index = Tensor::f_from_slice(rows)?.f_to_device(self.pixels.device())?;
        Ok((self.pixels.f_index_select(0, &index)?, self.labels.f_index_select(0, &index)?))
    }
}

/// Pixels (None when `indices` is empty) and labels of `indices` of `data`, built in chunks
/// (bounded peak memory).
fn load(input: &PixelInput, data: &Dataset, indices: &[usize]) -> Result<(Option<Tensor>, Tensor), Error> {
    let context = "loading the repair data";
    let mut parts = Vec::new();
    for chunk in indices.chunks(input.batch_size(512)) {
        let images: Vec<_> = chunk.iter().map(|&i| data.image(i)).collect();
        let b = input.pixels(&images)?;
        parts.push(b.pixels.f_narrow(0, 0, b.real as i64).map_err(Error::torch(context))?);
    }
    let labels: Vec<i64> = indices.iter().map(|&i| data.labels[i]).collect();
    let device = input.device();
    let labels = Tensor::f_from_slice(&labels).and_then(|t| t.f_to_device(device)).map_err(Error::torch(context))?;
    if parts.is_empty() {
        return Ok((None, labels));
    }
    Ok((Some(Tensor::f_cat(&parts, 0).map_err(Error::torch(context))?), labels))
}
