//! Training the product classifier: cross-entropy, AdamW, modality dropout (an item with both
//! text and image loses one of them at random, so each tower learns to decide alone), early
//! stopping on the validation split's weighted F1 of all three modalities together.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::prelude::*;
use serde::{Deserialize, Serialize};

use super::eval::{Modality, score};
use super::model::{ProductBatch, ProductModel, logits};
use crate::{Error, Result};

/// Product-classification hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProductConfig {
    /// Size of the word vectors.
    pub dim: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Items per batch.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Words per text.
    pub max_len: usize,
    /// Words seen fewer times in the training texts are unknown.
    pub min_count: usize,
    /// Vocabulary size cap (with `<pad>`, `<unk>`).
    pub max_vocab: usize,
    /// Chance that an item with both loses its text for a step (the same again for its
    /// image).
    pub modality_dropout: f64,
    /// Stop after this many epochs without a better validation score.
    pub patience: usize,
    /// Random seed (initialisation, batch order, dropout).
    pub seed: u64,
}

impl Default for ProductConfig {
    fn default() -> Self {
        Self {
            dim: 256,
            epochs: 60,
            batch_size: 64,
            lr: 2e-3,
            weight_decay: 1e-2,
            max_len: 24,
            min_count: 1,
            max_vocab: 8000,
            modality_dropout: 0.3,
            patience: 12,
            seed: 7,
        }
    }
}

impl ProductConfig {
    /// Reject settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Param(m.into()));
        if self.dim == 0 || self.max_len == 0 || self.max_vocab < 3 {
            return bad("dim and max_len must be ≥ 1 and max_vocab ≥ 3");
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch_size must be ≥ 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.weight_decay < 0.0 {
            return bad("lr must be positive and weight_decay ≥ 0");
        }
        if !(0.0..0.5).contains(&self.modality_dropout) {
            return bad("modality_dropout must be in [0, 0.5)");
        }
        Ok(())
    }
}

/// One epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training cross-entropy.
    pub train_loss: f64,
    /// Validation weighted F1: text only, image only, both.
    pub val_weighted_f1: [f64; 3],
}

/// The best-validation weights and the curves.
#[derive(Debug, Clone)]
pub struct ProductFit {
    /// Weights of the best epoch.
    pub model: ProductModel,
    /// Per-epoch curves.
    pub history: Vec<ProductEpoch>,
    /// Epoch kept.
    pub best_epoch: usize,
}

/// `n` draws from `U(-bound, bound)`.
fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// Fit on `train` (labels `train_labels`), select on `val`; `epoch_done` is called after each
/// epoch and stops the run by returning false.
pub fn fit(
    config: &ProductConfig,
    (vocab, classes): (usize, usize),
    (train, train_labels): (&ProductBatch, &[u32]),
    (val, val_labels): (&ProductBatch, &[u32]),
    epoch_done: &mut dyn FnMut(&ProductEpoch) -> bool,
) -> Result<ProductFit> {
    config.validate()?;
    let n = train_labels.len();
    if n == 0 || val_labels.is_empty() {
        return Err(Error::Dataset(
            "product training needs items in the train and val splits".into(),
        ));
    }
    let cpu = &Device::Cpu;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let d = config.dim;
    let feature_dim = train.features.dim(1)?;
    let mut words = uniform(&mut rng, vocab * d, 0.1);
    words[..d].fill(0.0);
    let words = Var::from_vec(words, (vocab, d), cpu)?;
    let text = Var::from_vec(
        uniform(&mut rng, d * classes, (1.0 / d as f32).sqrt()),
        (d, classes),
        cpu,
    )?;
    let image = Var::from_vec(
        uniform(
            &mut rng,
            feature_dim * classes,
            (1.0 / feature_dim as f32).sqrt(),
        ),
        (feature_dim, classes),
        cpu,
    )?;
    let bias = Var::zeros(classes, DType::F32, cpu)?;
    let vars = [&words, &text, &image, &bias];
    let mut opt = AdamW::new(
        vars.iter().map(|v| (*v).clone()).collect(),
        ParamsAdamW {
            lr: config.lr,
            weight_decay: config.weight_decay,
            ..Default::default()
        },
    )?;
    let snapshot = || -> Result<ProductModel> {
        Ok(ProductModel {
            words: words.as_tensor().copy()?,
            text: text.as_tensor().copy()?,
            image: image.as_tensor().copy()?,
            bias: bias.as_tensor().copy()?,
        })
    };
    let has_text: Vec<f32> = train.mask.max(1)?.to_vec1()?;
    let has_image: Vec<f32> = train.has_image.flatten_all()?.to_vec1()?;
    let labels = Tensor::new(train_labels, cpu)?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut best: Option<(f64, usize, ProductModel)> = None;
    let mut history = Vec::new();
    for epoch in 1..=config.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(config.batch_size) {
            let idx = Tensor::new(chunk, cpu)?;
            // Modality dropout: (keep text, keep image) per item that has both.
            let (mut keep_t, mut keep_i) = (Vec::new(), Vec::new());
            for &i in chunk {
                let both = has_text[i as usize] > 0.0 && has_image[i as usize] > 0.0;
                let u: f64 = rng.random();
                let p = config.modality_dropout;
                keep_t.push(if both && u < p { 0f32 } else { 1.0 });
                keep_i.push(if both && (p..2.0 * p).contains(&u) {
                    0f32
                } else {
                    1.0
                });
            }
            let m = chunk.len();
            let batch = ProductBatch {
                features: train.features.index_select(&idx, 0)?,
                has_image: train
                    .has_image
                    .index_select(&idx, 0)?
                    .mul(&Tensor::from_vec(keep_i, (m, 1), cpu)?)?,
                ids: train.ids.index_select(&idx, 0)?,
                mask: train
                    .mask
                    .index_select(&idx, 0)?
                    .broadcast_mul(&Tensor::from_vec(keep_t, (m, 1), cpu)?)?,
            };
            let z = logits(
                (
                    words.as_tensor(),
                    text.as_tensor(),
                    image.as_tensor(),
                    bias.as_tensor(),
                ),
                &batch,
            )?;
            let loss = candle_nn::loss::cross_entropy(&z, &labels.index_select(&idx, 0)?)?;
            opt.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * m as f64;
        }
        let model = snapshot()?;
        let mut f1 = [0.0; 3];
        for (slot, modality) in f1.iter_mut().zip(Modality::ALL) {
            let predicted = model.predict(&modality.apply(val)?)?;
            *slot = score(val_labels, &predicted, classes).weighted_f1;
        }
        let record = ProductEpoch {
            epoch,
            train_loss: loss_sum / n as f64,
            val_weighted_f1: f1,
        };
        let total: f64 = f1.iter().sum();
        if best.as_ref().is_none_or(|b| total > b.0) {
            best = Some((total, epoch, model));
        }
        let go_on = epoch_done(&record);
        history.push(record);
        if !go_on {
            return Err(Error::Cancelled);
        }
        if best
            .as_ref()
            .is_some_and(|b| epoch - b.1 >= config.patience)
        {
            break;
        }
    }
    let (_, best_epoch, model) = best.ok_or_else(|| Error::Dataset("no epoch ran".into()))?;
    Ok(ProductFit {
        model,
        history,
        best_epoch,
    })
}
