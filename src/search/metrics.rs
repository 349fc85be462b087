//! Before/after measurements of a repair on labelled data, the paper's protocol: accuracy on the
//! evaluation split minus D_fail, repair rate (D_fail now right), break rate (inputs the subject
//! got right, D_fail excluded, now wrong). Measured with libtorch here; the main command
//! re-measures the exported model with onnxruntime.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::commands::progress::images_bar;
use crate::data::Dataset;
use crate::localize::pixels::PixelInput;
use crate::localize::Failure;
use crate::lower::LowerError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairMetrics {
    pub evaluated: usize,
    pub failures: usize,
    /// On the evaluation split minus D_fail.
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    /// On the whole split, D_fail included (which the repair trained on: not a fair score).
    pub full_accuracy_before: f64,
    pub full_accuracy_after: f64,
    pub repair_rate: f64,
    pub break_rate: f64,
    pub previously_correct: usize,
}

impl RepairMetrics {
    /// From predictions before and after on every example, the labels and D_fail's indices.
    pub fn new(before: &[i64], after: &[i64], labels: &[i64], failures: &[usize]) -> RepairMetrics {
        let mut in_fail = vec![false; labels.len()];
        for &i in failures {
            in_fail[i] = true;
        }
        let share = |hits: usize, of: usize| if of == 0 { f64::NAN } else { hits as f64 / of as f64 };
        let rest: Vec<usize> = (0..labels.len()).filter(|&i| !in_fail[i]).collect();
        let right = |p: &[i64], idx: &mut dyn Iterator<Item = usize>| idx.filter(|&i| p[i] == labels[i]).count();
        let previously: Vec<usize> = rest.iter().copied().filter(|&i| before[i] == labels[i]).collect();
        RepairMetrics {
            evaluated: labels.len(),
            failures: failures.len(),
            accuracy_before: share(right(before, &mut rest.iter().copied()), rest.len()),
            accuracy_after: share(right(after, &mut rest.iter().copied()), rest.len()),
            full_accuracy_before: share(right(before, &mut (0..labels.len())), labels.len()),
            full_accuracy_after: share(right(after, &mut (0..labels.len())), labels.len()),
            repair_rate: share(right(after, &mut failures.iter().copied()), failures.len()),
            break_rate: share(previously.iter().filter(|&&i| after[i] != labels[i]).count(), previously.len()),
            previously_correct: previously.len(),
        }
    }
}

/// Accuracy before and after on one more labelled set (e.g. a corruption).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetAccuracy {
    pub name: String,
    pub evaluated: usize,
    pub before: f64,
    pub after: f64,
}

/// Predicted class of every example of `data`.
pub fn predictions(predict: &dyn Fn(&Tensor) -> Result<Tensor, LowerError>, input: &PixelInput, data: &Dataset, label: &str, progress: bool) -> Result<Vec<i64>, Failure> {
    let bar = images_bar(data.len() as u64, progress);
    bar.set_message(label.to_string());
    let mut out = Vec::with_capacity(data.len());
    for start in (0..data.len()).step_by(input.batch_size(256)) {
        let end = (start + input.batch_size(256)).min(data.len());
        let b = input.pixels(&data.images(start..end))?;
        let p = predict(&b.pixels)?.f_narrow(0, 0, b.real as i64)?;
        out.extend(Vec::<i64>::try_from(&p)?);
        crate::interrupt::check()?;
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Share of `predicted` equal to the labels.
pub fn accuracy(predicted: &[i64], labels: &[i64]) -> f64 {
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_and_break_rates_follow_the_protocol() {
        let labels = [0, 1, 2, 3, 4, 5];
        let before = [0, 1, 2, 0, 0, 5]; // 3 and 4 wrong; D_fail = {3}
        let after = [0, 0, 2, 3, 4, 5]; // 3 repaired, 1 broken, 4 repaired (outside D_fail)
        let m = RepairMetrics::new(&before, &after, &labels, &[3]);
        assert_eq!((m.evaluated, m.failures, m.previously_correct), (6, 1, 4));
        assert_eq!(m.repair_rate, 1.0);
        assert_eq!(m.break_rate, 0.25);
        assert_eq!((m.accuracy_before, m.accuracy_after), (0.8, 0.8));
        assert!((m.full_accuracy_before - 4.0 / 6.0).abs() < 1e-12 && (m.full_accuracy_after - 5.0 / 6.0).abs() < 1e-12);
    }
}
