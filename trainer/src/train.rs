//! Head training in candle on frozen-backbone features: AdamW, linear warmup + cosine decay,
//! feature dropout, early stopping on validation accuracy, fixed seeds.
//!
//! Augmentation (random resized crop + horizontal flip) happens in pixel space before the
//! backbone: each training image is seen through `views` augmented crops, one per epoch in
//! turn, so a first training costs `views` backbone passes per image instead of one per epoch,
//! and a retrain none for the images the feature cache already has ([`crate::run::cache`]).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use contract::api::EpochMetrics;

use crate::{Error, Result};

/// Hyper-parameters of a training run. Same data + same config → same model and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Maximum epochs over the training split.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Peak learning rate (reached after warmup).
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Epochs of linear warmup.
    pub warmup_epochs: usize,
    /// Stop after this many epochs without a better validation accuracy.
    pub patience: usize,
    /// Dropout on features during training.
    pub dropout: f32,
    /// Augmented views computed per training image.
    pub views: usize,
    /// Smallest crop area (fraction of the image) for random resized crops.
    pub min_crop_area: f32,
    /// Weight each class's loss by the inverse of its training frequency (the bundled and most
    /// user datasets are unbalanced; this trades a little accuracy for much better macro F1).
    pub class_balanced: bool,
    /// Seed for initialisation, dropout and shuffling. (The augmented views do not depend on
    /// it: view `k` of an image is a fixed crop, so its features can be cached; see
    /// [`crate::run::cache`].)
    pub seed: u64,
    /// Below this many test images, the gate's figures come from cross-validation over train +
    /// test instead of the test split alone ([`crate::evidence`]); 0 never cross-validates.
    pub cv_below: usize,
    /// Folds of that cross-validation.
    pub cv_folds: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 60,
            batch_size: 32,
            lr: 3e-3,
            weight_decay: 1e-2,
            warmup_epochs: 2,
            patience: 12,
            dropout: 0.2,
            views: 4,
            min_crop_area: 0.35,
            class_balanced: true,
            seed: 42,
            cv_below: 200,
            cv_folds: 5,
        }
    }
}

impl TrainConfig {
    /// Reject values that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Param(m.to_string()));
        if self.epochs == 0 || self.epochs > 10_000 {
            return bad("epochs must be in 1..=10000");
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return bad("batch_size must be in 1..=4096");
        }
        if !(self.lr > 0.0 && self.lr < 10.0) {
            return bad("lr must be in (0, 10)");
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return bad("weight_decay must be in [0, 1)");
        }
        if !(0.0..0.95).contains(&self.dropout) {
            return bad("dropout must be in [0, 0.95)");
        }
        if self.views == 0 || self.views > 64 {
            return bad("views must be in 1..=64");
        }
        if !(2..=20).contains(&self.cv_folds) {
            return bad("cv_folds must be in 2..=20");
        }
        if self.cv_below > 1_000_000 {
            return bad("cv_below must be at most 1000000");
        }
        if !(self.min_crop_area > 0.0 && self.min_crop_area <= 1.0) {
            return bad("min_crop_area must be in (0, 1]");
        }
        Ok(())
    }

    /// Learning rate at optimiser step `step` of `total` (`per_epoch` steps per epoch).
    pub fn lr_at(&self, step: usize, per_epoch: usize, total: usize) -> f64 {
        let warmup = (self.warmup_epochs * per_epoch).min(total.saturating_sub(1));
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        let span = (total - warmup).max(1) as f64;
        let t = (step - warmup) as f64 / span;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// A trained linear head: `logits = features · weightᵀ + bias`.
#[derive(Debug, Clone)]
pub struct Head {
    /// `[classes, feature_dim]`.
    pub weight: Tensor,
    /// `[classes]`.
    pub bias: Tensor,
}

impl Head {
    /// Logits for `[n, feature_dim]` features.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        Ok(features
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?)
    }

    /// Softmax probabilities for `[n, feature_dim]` features.
    pub fn probabilities(&self, features: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax_last_dim(&self.logits(features)?)?)
    }

    /// Save as safetensors (`head.weight`, `head.bias`).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let tensors = [
            ("head.weight", self.weight.clone()),
            ("head.bias", self.bias.clone()),
        ];
        candle_core::safetensors::save(&tensors.into_iter().collect(), path)?;
        Ok(())
    }

    /// Load what [`Head::save`] wrote.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
        Self::from_safetensors(&bytes, &path.display().to_string())
    }

    /// A head from the bytes [`Head::save`] wrote (`source` names them in errors).
    pub fn from_safetensors(bytes: &[u8], source: &str) -> Result<Self> {
        let mut t = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let mut take = |name: &str| {
            t.remove(name)
                .ok_or_else(|| Error::Weights(format!("{source}: no {name}")))
        };
        let (weight, bias) = (take("head.weight")?, take("head.bias")?);
        let (classes, dim) = weight.dims2()?;
        if bias.dims() != [classes] || dim != crate::backbone::FEATURE_DIM {
            return Err(Error::Weights(format!(
                "{source}: head of shape {:?} + {:?} does not fit {} backbone features",
                weight.dims(),
                bias.dims(),
                crate::backbone::FEATURE_DIM
            )));
        }
        Ok(Head { weight, bias })
    }
}

/// Inputs to [`fit`]: features already computed by the backbone.
#[derive(Debug)]
pub struct FitData<'a> {
    /// `train_views[v]` is `[n_train, dim]`: view `v` of every training image.
    pub train_views: &'a [Tensor],
    /// Labels of the training images.
    pub train_labels: &'a [u32],
    /// `[n_val, dim]` clean validation features.
    pub val: &'a Tensor,
    /// Validation labels.
    pub val_labels: &'a [u32],
    /// Number of classes.
    pub classes: usize,
}

/// What [`fit`] reports after each batch; return `false` from the callback to cancel.
#[derive(Debug, Clone, Copy)]
pub struct BatchProgress {
    /// 1-based epoch.
    pub epoch: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// 1-based batch within the epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// This batch's loss.
    pub loss: f64,
}

/// Result of [`fit`].
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The head from the epoch with the best validation accuracy.
    pub head: Head,
    /// Per-epoch curves.
    pub history: Vec<EpochMetrics>,
    /// Epoch whose head was kept.
    pub best_epoch: usize,
}

/// Train the head with early stopping; returns the best-validation head and the curves.
pub fn fit(
    data: &FitData<'_>,
    cfg: &TrainConfig,
    on_batch: &mut dyn FnMut(BatchProgress, Option<&EpochMetrics>) -> bool,
) -> Result<Fitted> {
    cfg.validate()?;
    let n = data.train_labels.len();
    if n == 0 || data.val_labels.is_empty() {
        return Err(Error::Dataset(format!(
            "need training and validation images (have {n} train, {} val)",
            data.val_labels.len()
        )));
    }
    let dim = data.train_views[0].dim(1)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (weight, bias, mut opt) = init_head(&mut rng, data.classes, dim, cfg)?;
    let batches = n.div_ceil(cfg.batch_size);
    let total_steps = batches * cfg.epochs;
    let val_targets = Tensor::from_slice(data.val_labels, data.val_labels.len(), &Device::Cpu)?;
    let class_weight = class_weights(data, cfg.class_balanced);

    let mut history = Vec::new();
    let mut best: Option<(f64, f64, usize, Head)> = None;
    let mut step = 0;
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 1..=cfg.epochs {
        let view = &data.train_views[(epoch - 1) % data.train_views.len()];
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let lr = cfg.lr_at(step, batches, total_steps);
            opt.set_learning_rate(lr);
            let idx: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
            let idx_t = Tensor::from_vec(idx, chunk.len(), &Device::Cpu)?;
            let mut x = view.index_select(&idx_t, 0)?;
            if cfg.dropout > 0.0 {
                x = dropout(&x, cfg.dropout, &mut rng)?;
            }
            let labels: Vec<u32> = chunk.iter().map(|&i| data.train_labels[i]).collect();
            let head = Head {
                weight: weight.as_tensor().clone(),
                bias: bias.as_tensor().clone(),
            };
            let (loss_v, right) = train_step(&head, &x, &labels, &class_weight, &mut opt)?;
            step += 1;
            loss_sum += loss_v * chunk.len() as f64;
            correct += right;
            let progress = BatchProgress {
                epoch,
                epochs: cfg.epochs,
                batch: b + 1,
                batches,
                loss: loss_v,
            };
            let last = b + 1 == batches;
            if !last && !on_batch(progress, None) {
                return Err(Error::Cancelled);
            }
            if last {
                let head = Head {
                    weight: weight.as_tensor().copy()?,
                    bias: bias.as_tensor().copy()?,
                };
                let (val_loss, val_acc) = val_scores(&head, data, &val_targets)?;
                let m = EpochMetrics {
                    epoch,
                    train_loss: loss_sum / n as f64,
                    train_accuracy: correct as f64 / n as f64,
                    val_loss,
                    val_accuracy: val_acc,
                    lr,
                };
                let better = match &best {
                    None => true,
                    Some((acc, loss, _, _)) => {
                        val_acc > *acc || (val_acc == *acc && val_loss < *loss)
                    }
                };
                if better {
                    best = Some((val_acc, val_loss, epoch, head));
                }
                history.push(m);
                if !on_batch(progress, history.last()) {
                    return Err(Error::Cancelled);
                }
            }
        }
        let best_epoch = best.as_ref().map_or(epoch, |b| b.2);
        if epoch - best_epoch >= cfg.patience {
            break;
        }
    }
    let (_, _, best_epoch, head) =
        best.ok_or_else(|| Error::Dataset("no epoch completed".into()))?;
    Ok(Fitted {
        head,
        history,
        best_epoch,
    })
}

/// A head of `classes × dim` drawn from `U(±1/√dim)` (zero bias) and its AdamW optimiser.
fn init_head(
    rng: &mut StdRng,
    classes: usize,
    dim: usize,
    cfg: &TrainConfig,
) -> Result<(Var, Var, AdamW)> {
    let bound = 1.0 / (dim as f32).sqrt();
    let init: Vec<f32> = (0..classes * dim)
        .map(|_| rng.random_range(-bound..bound))
        .collect();
    let weight = Var::from_tensor(&Tensor::from_vec(init, (classes, dim), &Device::Cpu)?)?;
    let bias = Var::zeros(classes, DType::F32, &Device::Cpu)?;
    let opt = AdamW::new(
        vec![weight.clone(), bias.clone()],
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    Ok((weight, bias, opt))
}

/// Per-sample loss weights by class: inverse class frequency normalised to mean 1 over the
/// data when `balanced`, else 1.
fn class_weights(data: &FitData<'_>, balanced: bool) -> Vec<f32> {
    let n = data.train_labels.len();
    let mut counts = vec![0usize; data.classes];
    data.train_labels
        .iter()
        .for_each(|l| counts[*l as usize] += 1);
    counts
        .iter()
        .map(|&c| {
            if balanced && c > 0 {
                n as f32 / (data.classes as f32 * c as f32)
            } else {
                1.0
            }
        })
        .collect()
}

/// Inverted dropout: each component kept with probability `1 − p` and scaled by `1/(1 − p)`.
fn dropout(x: &Tensor, p: f32, rng: &mut StdRng) -> Result<Tensor> {
    let (rows, dim) = x.dims2()?;
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..rows * dim)
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    Ok((x * Tensor::from_vec(mask, (rows, dim), &Device::Cpu)?)?)
}

/// One optimiser step of `head` on the batch `x` with its `labels`; returns the batch loss
/// and how many of the batch it classified right (before the step).
fn train_step(
    head: &Head,
    x: &Tensor,
    labels: &[u32],
    class_weight: &[f32],
    opt: &mut AdamW,
) -> Result<(f64, usize)> {
    let targets = Tensor::from_slice(labels, labels.len(), &Device::Cpu)?;
    let logits = head.logits(x)?;
    let weights: Vec<f32> = labels.iter().map(|l| class_weight[*l as usize]).collect();
    let weights = Tensor::from_vec(weights, labels.len(), &Device::Cpu)?;
    let loss = weighted_cross_entropy(&logits, &targets, &weights)?;
    opt.backward_step(&loss)?;
    let loss_v = f64::from(loss.to_scalar::<f32>()?);
    let pred = logits.argmax(1)?.to_vec1::<u32>()?;
    let right = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok((loss_v, right))
}

/// Validation loss and accuracy of `head`.
fn val_scores(head: &Head, data: &FitData<'_>, val_targets: &Tensor) -> Result<(f64, f64)> {
    let val_logits = head.logits(data.val)?;
    let val_loss =
        f64::from(candle_nn::loss::cross_entropy(&val_logits, val_targets)?.to_scalar::<f32>()?);
    let val_pred = val_logits.argmax(1)?.to_vec1::<u32>()?;
    let val_acc = val_pred
        .iter()
        .zip(data.val_labels)
        .filter(|(p, l)| p == l)
        .count() as f64
        / data.val_labels.len() as f64;
    Ok((val_loss, val_acc))
}

/// Mean of `weight_i · −log softmax(logits_i)[target_i]`, divided by the sum of the weights.
fn weighted_cross_entropy(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = log_p.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let total = (picked * weights)?.sum_all()?.neg()?;
    Ok((total / f64::from(weights.sum_all()?.to_scalar::<f32>()?))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let cfg = TrainConfig {
            lr: 1.0,
            warmup_epochs: 1,
            ..TrainConfig::default()
        };
        assert!((cfg.lr_at(0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(9, 10, 100) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(cfg.lr_at(55, 10, 100) < 0.51 && cfg.lr_at(55, 10, 100) > 0.49);
        assert!(cfg.lr_at(99, 10, 100) < 1e-3);
    }

    #[test]
    fn weighted_cross_entropy_matches_hand_computation() {
        let logits = Tensor::new(&[[2f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 0], &Device::Cpu).unwrap();
        let w = Tensor::new(&[1f32, 3.0], &Device::Cpu).unwrap();
        let got = weighted_cross_entropy(&logits, &targets, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let l0 = -(2f32.exp() / (2f32.exp() + 1.0)).ln();
        let l1 = -(1.0 / (1.0 + 1f32.exp())).ln();
        assert!((got - (l0 + 3.0 * l1) / 4.0).abs() < 1e-6, "{got}");
        let unweighted = Tensor::new(&[1f32, 1.0], &Device::Cpu).unwrap();
        let plain = candle_nn::loss::cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let ours = weighted_cross_entropy(&logits, &targets, &unweighted)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((plain - ours).abs() < 1e-6);
    }

    #[test]
    fn invalid_params_are_refused() {
        let cfg = TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("batch_size")
        );
    }
}
