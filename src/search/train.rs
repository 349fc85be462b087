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
    fn snapshot(&self, net: &SplicedNet) -> Vec<Tensor> {
        self.state(net).iter().map(|t| t.detach().copy()).collect()
    }

    fn restore(&self, net: &SplicedNet, saved: &[Tensor]) {
        tch::no_grad(|| {
            for (t, s) in self.state(net).iter().zip(saved) {
                let _ = t.shallow_clone().copy_(s);
            }
        });
    }

    fn state(&self, net: &SplicedNet) -> Vec<Tensor> {
        net.cell_variables().into_iter().chain(self.backbone.iter().map(Tensor::shallow_clone)).collect()
    }

    pub fn run(&self, net: &SplicedNet) -> Result<Trained, Failure> {
        let spec = self.spec;
        let started = Instant::now();
        let over_budget = || spec.budget_minutes.is_some_and(|m| started.elapsed().as_secs_f64() > m * 60.0);
        let mut history = Vec::new();
        let mut best: Option<(f64, String, usize, Vec<Tensor>)> = None;
        let mut stopped_by_budget = false;
        let phases = [("block", spec.epochs, spec.lr, false), ("finetune", spec.finetune_epochs, spec.finetune_lr, true)];
        for (phase, epochs, lr0, whole) in phases {
            if epochs == 0 || stopped_by_budget {
                continue;
            }
            let mut params = net.cell_weights();
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
                        _ => net.loss(&pixels, &labels, true)?,
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
                            "training the derived cell diverged (a NaN or infinite loss) in {phase} epoch {}, was rolled back to the epoch's start with a tenth of its learning rate, and diverged again in epoch {} (train.{} {:e}); lower it, lower train.grad_clip, or check the data for NaN",
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
