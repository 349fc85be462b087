//! Training the derived cell (backbone frozen), then optionally fine-tuning the whole network at
//! a small learning rate (BatchNormalization statistics still frozen). After every epoch the
//! net is scored on the held-out slice of the repair data; the best epoch's weights are kept.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::commands::progress::steps_bar;
use crate::Error;
use crate::localize::Failure;
use crate::lower::LowerError;

use super::bilevel::Sums;
use super::data::RepairData;
use super::net::{Distill, SplicedNet};
use super::optim::{clip_grad_norm, cosine, gradients, Sgd};
use super::options::TrainSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainEpoch {
    /// `block` or `finetune`.
    pub phase: String,
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub holdout_accuracy: f64,
    pub seconds: f64,
    /// The epoch diverged once, was rolled back and ran again at a tenth of the learning rate.
    #[serde(default)]
    pub rolled_back: bool,
}

pub struct Trained {
    pub history: Vec<TrainEpoch>,
    /// (phase, epoch) whose weights were kept.
    pub best: (String, usize),
    pub holdout_accuracy: f64,
    pub stopped_by_budget: bool,
}

/// What a [`Trainer`] trains in its first phase: the derived cell of a spliced net, or (the
/// weight-only baselines) a chosen set of the model's own weights.
pub trait Trainee {
    /// The first phase's name in the history: `block`, or `weights` for the baselines.
    fn phase(&self) -> &'static str;
    /// Mean loss (cross-entropy plus the optional distillation term) and correct predictions.
    fn loss_distilled(&self, pixels: &Tensor, labels: &Tensor, distill: Option<Distill>, train: bool) -> Result<(Tensor, i64), LowerError>;
    /// Predicted classes, eval mode, no gradients.
    fn predict(&self, pixels: &Tensor) -> Result<Tensor, LowerError>;
    /// The tensors the first phase steps.
    fn trainable(&self) -> Vec<Tensor>;
    /// Every tensor a snapshot copies (the trainable ones and any buffers beside them), in a
    /// stable order.
    fn variables(&self) -> Vec<Tensor>;
}

impl Trainee for SplicedNet<'_> {
    fn phase(&self) -> &'static str {
        "block"
    }
    fn loss_distilled(&self, pixels: &Tensor, labels: &Tensor, distill: Option<Distill>, train: bool) -> Result<(Tensor, i64), LowerError> {
        SplicedNet::loss_distilled(self, pixels, labels, distill, train)
    }
    fn predict(&self, pixels: &Tensor) -> Result<Tensor, LowerError> {
        SplicedNet::predict(self, pixels)
    }
    fn trainable(&self) -> Vec<Tensor> {
        self.cell_weights()
    }
    fn variables(&self) -> Vec<Tensor> {
        self.cell_variables()
    }
}

pub struct Trainer<'a> {
    pub spec: &'a TrainSpec,
    pub data: &'a RepairData,
    pub seed: u64,
    pub progress: bool,
    /// The backbone's trainable weights (fine-tuned only when `finetune_epochs` > 0).
    pub backbone: Vec<Tensor>,
}

impl Trainer<'_> {
    /// Copies of every cell variable (BatchNormalization buffers included, by name) and of the
    /// backbone's trainable weights.
    fn snapshot(&self, net: &impl Trainee) -> Vec<Tensor> {
        self.state(net).iter().map(|t| t.detach().copy()).collect()
    }

    fn restore(&self, net: &impl Trainee, saved: &[Tensor]) {
        tch::no_grad(|| {
            for (t, s) in self.state(net).iter().zip(saved) {
                let _ = t.shallow_clone().copy_(s);
            }
        });
    }

    fn state(&self, net: &impl Trainee) -> Vec<Tensor> {
        net.variables().into_iter().chain(self.backbone.iter().map(Tensor::shallow_clone)).collect()
    }

    pub fn run(&self, net: &impl Trainee) -> Result<Trained, Failure> {
        let spec = self.spec;
        let started = Instant::now();
        let over_budget = || spec.budget_minutes.is_some_and(|m| started.elapsed().as_secs_f64() > m * 60.0);
        let mut history = Vec::new();
        let mut best: Option<(f64, String, usize, Vec<Tensor>)> = None;
        let mut stopped_by_budget = false;
        let phases = [(net.phase(), spec.epochs, spec.lr, false), ("finetune", spec.finetune_epochs, spec.finetune_lr, true)];
        for (phase, epochs, lr0, whole) in phases {
            if epochs == 0 || stopped_by_budget {
                continue;
            }
            let mut params = net.trainable();
            if whole {
                for t in &self.backbone {
                    let _ = t.set_requires_grad(true);
                }
                params.extend(self.backbone.iter().map(Tensor::shallow_clone));
            }
            let new_sgd = || Sgd::new(params.iter().map(Tensor::shallow_clone).collect(), spec.momentum, spec.weight_decay);
            let mut sgd = new_sgd();
            let rows = &self.data.training;
            let batch = spec.batch.max(1);
            let steps = rows.len() / batch;
            let bar = steps_bar((steps * epochs) as u64, self.progress);
            // A NaN or infinite loss rolls the epoch back to its start and runs it again at a
            // tenth of the learning rate (with fresh momentum), once per phase; a second
            // divergence is an error.
            let mut lr_scale = 1.0;
            let mut rolled_back_epoch = None;
            let mut epoch = 0;
            while epoch < epochs {
                let start_of_epoch = self.snapshot(net);
                let mut diverged = false;
                let epoch_started = Instant::now();
                let lr = lr_scale * if whole { lr0 } else { cosine(lr0, spec.lr_min, epoch, epochs) };
                let mut rows = rows.clone();
                rows.shuffle(&mut Pcg64::seed_from_u64(self.seed ^ (0x5452_4149 + epoch as u64 + if whole { 1 << 20 } else { 0 })));
                let mut sums = Sums::default();
                for step in 0..steps {
                    let chunk = &rows[step * batch..(step + 1) * batch];
                    let (pixels, labels) = self.data.batch(chunk)?;
                    let (loss, correct) = match (&self.data.teacher, spec.distill > 0.0) {
                        (Some(teacher), true) => {
                            let index = Tensor::f_from_slice(chunk)?.f_to_device(teacher.device())?;
                            let teacher = teacher.f_index_select(0, &index)?;
                            let mask = self.data.training_image_mask(chunk)?;
                            net.loss_distilled(&pixels, &labels, Some(Distill { teacher: &teacher, mask: &mask, weight: spec.distill }), true)?
                        }
                        _ => net.loss_distilled(&pixels, &labels, None, true)?,
                    };
                    if !sums.add(&loss, correct, batch).is_finite() {
                        diverged = true;
                        break;
                    }
                    let mut grads = gradients(&loss, &params)?;
                    clip_grad_norm(&mut grads, spec.grad_clip);
                    sgd.step(&grads, lr);
                    crate::interrupt::check()?;
                    bar.inc(1);
                    if step % 10 == 0 {
                        bar.set_message(format!("train {phase} epoch {}/{epochs} loss {:.3} acc {:.1}%", epoch + 1, sums.mean_loss(), 100.0 * sums.accuracy()));
                    }
                    if over_budget() {
                        stopped_by_budget = true;
                        break;
                    }
                }
                if diverged {
                    if let Some(first) = rolled_back_epoch {
                        return Err(Error::Mismatch(format!(
                            "training ({phase}) diverged (a NaN or infinite loss) in {phase} epoch {}, was rolled back to the epoch's start with a tenth of its learning rate, and diverged again in epoch {} (train.{} {:e}); lower it, lower train.grad_clip, or check the data for NaN",
                            first + 1,
                            epoch + 1,
                            if whole { "finetune_lr" } else { "lr" },
                            lr0
                        ))
                        .into());
                    }
                    self.restore(net, &start_of_epoch);
                    sgd = new_sgd();
                    lr_scale = 0.1;
                    rolled_back_epoch = Some(epoch);
                    continue;
                }
                let holdout_accuracy = accuracy(&|p| net.predict(p), self.data, &self.data.holdout)?;
                history.push(TrainEpoch {
                    phase: phase.to_string(),
                    epoch,
                    lr,
                    train_loss: sums.mean_loss(),
                    train_accuracy: sums.accuracy(),
                    holdout_accuracy,
                    seconds: epoch_started.elapsed().as_secs_f64(),
                    rolled_back: rolled_back_epoch == Some(epoch),
                });
                if best.as_ref().is_none_or(|b| holdout_accuracy > b.0) {
                    best = Some((holdout_accuracy, phase.to_string(), epoch, self.snapshot(net)));
                }
                if stopped_by_budget {
                    break;
                }
                epoch += 1;
            }
            bar.finish_and_clear();
            if whole {
                for t in &self.backbone {
                    let _ = t.set_requires_grad(false);
                }
            }
            // Put the best weights back before the next phase starts from them.
            if let Some((_, _, _, saved)) = &best {
                self.restore(net, saved);
            }
        }
        let (holdout_accuracy, phase, epoch) = match best {
            Some((accuracy, phase, epoch, _)) => (accuracy, phase, epoch),
            None => (accuracy(&|p| net.predict(p), self.data, &self.data.holdout)?, "none".into(), 0),
        };
        Ok(Trained { history, best: (phase, epoch), holdout_accuracy, stopped_by_budget })
    }
}

/// Accuracy of `predict` (a net with its cell in eval mode, or the subject) on `rows` of the
/// repair data.
pub fn accuracy(predict: &dyn Fn(&Tensor) -> Result<Tensor, LowerError>, data: &RepairData, rows: &[i64]) -> Result<f64, Failure> {
    if rows.is_empty() {
        return Ok(f64::NAN);
    }
    let mut correct = 0;
    for chunk in rows.chunks(256) {
        let (pixels, labels) = data.batch(chunk)?;
        let predicted = predict(&pixels)?;
        correct += predicted.f_eq_tensor(&labels)?.f_sum(tch::Kind::Int64)?.f_int64_value(&[])?;
    }
    Ok(correct as f64 / rows.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// One scalar weight w with loss (w·m − 3)², m the batch's mean pixel (0.5), that turns NaN
    /// once |w| > 10: a step of lr·3 from w = 0 diverges at lr 5 and not at 0.5.
    struct Fragile {
        w: Tensor,
    }

    impl Trainee for Fragile {
        fn phase(&self) -> &'static str {
            "weights"
        }
        fn loss_distilled(&self, pixels: &Tensor, labels: &Tensor, _: Option<Distill>, _: bool) -> Result<(Tensor, i64), LowerError> {
            let loss = (&self.w * pixels.mean(Kind::Float) - 3.0).square();
            let blown = tch::no_grad(|| self.w.abs().double_value(&[]) > 10.0);
            let loss = if blown { loss * f64::NAN } else { loss };
            Ok((loss, labels.size()[0]))
        }
        fn predict(&self, pixels: &Tensor) -> Result<Tensor, LowerError> {
            Ok(Tensor::zeros([pixels.size()[0]], (Kind::Int64, pixels.device())))
        }
        fn trainable(&self) -> Vec<Tensor> {
            vec![self.w.shallow_clone()]
        }
        fn variables(&self) -> Vec<Tensor> {
            self.trainable()
        }
    }

    fn data() -> RepairData {
        RepairData {
            pixels: Tensor::full([4, 1], 0.5, (Kind::Float, tch::Device::Cpu)),
            labels: Tensor::zeros([4], (Kind::Int64, tch::Device::Cpu)),
            failures: 0,
            half_a: Vec::new(),
            half_b: Vec::new(),
            training: vec![0, 1, 2, 3],
            holdout: vec![0, 1],
            teacher: None,
        }
    }

    fn train(lr: f64, epochs: usize) -> (Result<Trained, Error>, f64) {
        let spec = TrainSpec { epochs, batch: 2, lr, lr_min: lr, momentum: 0.0, weight_decay: 0.0, grad_clip: 5.0, distill: 0.0, ..TrainSpec::default() };
        let data = data();
        let net = Fragile { w: Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true) };
        let trained = Trainer { spec: &spec, data: &data, seed: 1, progress: false, backbone: Vec::new() }.run(&net).map_err(|e| e.in_model(std::path::Path::new("fragile")));
        (trained, net.w.double_value(&[0]))
    }

    #[test]
    fn a_diverging_epoch_is_rolled_back_and_rescued_by_the_lower_rate() {
        // lr 5: the epoch's first step goes to w = 15, its second step's loss is NaN.
        let (trained, w) = train(5.0, 2);
        let trained = trained.unwrap_or_else(|e| panic!("the tenth of the rate rescues the epoch: {e}"));
        let first = &trained.history[0];
        assert!(first.rolled_back && (first.lr - 0.5).abs() < 1e-12, "{first:?}");
        assert!(!trained.history[1].rolled_back && (trained.history[1].lr - 0.5).abs() < 1e-12, "the lowered rate stays: {:?}", trained.history[1]);
        // At lr 0.5, w ← 0.75·w + 1.5 from 0, two steps per epoch: 1.5, 2.625 | 3.469, 4.102;
        // both epochs tie on the held-out rows, so the first epoch's weights are kept.
        assert!((w - 2.625).abs() < 1e-5, "w = {w}");
    }

    #[test]
    fn a_rate_that_diverges_even_at_a_tenth_is_an_error() {
        let (trained, _) = train(50.0, 2);
        let message = trained.err().expect("lr 50 and 5 both diverge").to_string();
        assert!(message.contains("rolled back") && message.contains("train.lr"), "{message}");
    }

    #[test]
    fn a_stable_rate_never_rolls_back() {
        let (trained, w) = train(0.5, 2);
        assert!(trained.unwrap_or_else(|e| panic!("{e}")).history.iter().all(|e| !e.rolled_back));
        assert!((w - 2.625).abs() < 1e-5, "w = {w}");
    }
}
