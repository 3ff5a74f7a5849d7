//! Training the towers: symmetric InfoNCE over the batch with a learnable temperature, AdamW,
//! early stopping on validation recall, the untrained (class names only) start competing as
//! epoch 0.

use std::collections::HashSet;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::prelude::*;
use serde::{Deserialize, Serialize};
use wasm_infer::Encoded;

use super::eval::evaluate;
use super::model::{DualEncoder, Init, Pair, class_probs, projected, text_batch, text_classes};
use crate::{Error, Result};

/// Ranking hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankConfig {
    /// Shared embedding size.
    pub dim: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Pairs per batch (the InfoNCE negatives are the rest of the batch).
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Words per text.
    pub max_len: usize,
    /// Words seen fewer times in training captions are unknown.
    pub min_count: usize,
    /// Vocabulary size cap (with `<pad>`, `<unk>`).
    pub max_vocab: usize,
    /// Stop after this many epochs without a better validation R@1 + R@5 + R@10.
    pub patience: usize,
    /// Random seed (initialisation, batch order).
    pub seed: u64,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            epochs: 120,
            batch_size: 64,
            lr: 3e-3,
            weight_decay: 1e-3,
            max_len: 16,
            min_count: 1,
            max_vocab: 8000,
            patience: 30,
            seed: 7,
        }
    }
}

impl RankConfig {
    /// Reject settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Param(m.into()));
        if self.dim == 0 || self.max_len == 0 {
            return bad("dim and max_len must be ≥ 1");
        }
        if self.epochs == 0 || self.batch_size < 2 {
            return bad("epochs must be ≥ 1 and batch_size ≥ 2 (InfoNCE needs negatives)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.weight_decay < 0.0 {
            return bad("lr must be positive and weight_decay ≥ 0");
        }
        Ok(())
    }
}

/// One epoch of ranking training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean symmetric InfoNCE loss.
    pub train_loss: f64,
    /// Caption → image Recall@1 on the validation split.
    pub val_r1: f64,
    /// Caption → image Recall@10 on the validation split.
    pub val_r10: f64,
    /// Learnt logit scale (1 / temperature) after the epoch.
    pub scale: f64,
}

/// The best-validation towers and the curves.
#[derive(Debug, Clone)]
pub struct RankFit {
    /// Towers from the best epoch.
    pub model: DualEncoder,
    /// Per-epoch curves.
    pub history: Vec<RankEpoch>,
    /// Epoch kept (0: the untrained start was best).
    pub best_epoch: usize,
    /// The untrained start (class names only), for comparison.
    pub start: DualEncoder,
}

/// `n` draws from `U(-bound, bound)`.
fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// The variables being trained, their optimiser and the frozen image side.
struct Trainable {
    projection: Var,
    words: Var,
    log_scale: Var,
    opt: AdamW,
    classifier_weight: Tensor,
    classifier_bias: Tensor,
    /// Class probabilities of the training images (they never change: the backbone and its
    /// classifier are frozen).
    train_probs: Tensor,
}

impl Trainable {
    fn new(
        init: &Init,
        cfg: &RankConfig,
        train_features: &Tensor,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let cpu = &Device::Cpu;
        let classes = init.classifier_bias.dim(0)?;
        // Variance 1/dim: a random projection that keeps dot products (Johnson–Lindenstrauss), so
        // the class-space match between words and images holds from the start.
        let bound = (3.0 / cfg.dim as f32).sqrt();
        let projection = Var::from_tensor(&Tensor::from_vec(
            uniform(rng, cfg.dim * classes, bound),
            (cfg.dim, classes),
            cpu,
        )?)?;
        let words = Var::from_tensor(&init.word_classes.copy()?)?;
        // CLIP's start: temperature 0.07.
        let log_scale = Var::from_tensor(&Tensor::new(&[(1.0f32 / 0.07).ln()], cpu)?)?;
        let opt = AdamW::new(
            vec![projection.clone(), words.clone(), log_scale.clone()],
            ParamsAdamW {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                ..Default::default()
            },
        )?;
        let (cw, cb) = (&init.classifier_weight, &init.classifier_bias);
        Ok(Self {
            train_probs: class_probs(train_features, cw, cb)?,
            classifier_weight: cw.clone(),
            classifier_bias: cb.clone(),
            projection,
            words,
            log_scale,
            opt,
        })
    }

    /// The towers as they are now.
    fn snapshot(&self) -> Result<DualEncoder> {
        Ok(DualEncoder {
            classifier_weight: self.classifier_weight.clone(),
            classifier_bias: self.classifier_bias.clone(),
            projection: self.projection.as_tensor().copy()?,
            word_classes: self.words.as_tensor().copy()?,
            scale: f64::from(self.log_scale.as_tensor().exp()?.to_vec1::<f32>()?[0]).min(100.0),
        })
    }

    /// One optimiser step on the pairs `chunk` (indices into `train`); returns the loss.
    fn step(&mut self, train: &[Pair], chunk: &[usize], epoch: usize) -> Result<f32> {
        let cpu = &Device::Cpu;
        let rows: Vec<u32> = chunk.iter().map(|&i| train[i].image as u32).collect();
        let rows = Tensor::from_vec(rows, chunk.len(), cpu)?;
        let projection = self.projection.as_tensor();
        let img = projected(&self.train_probs.index_select(&rows, 0)?, projection)?;
        let texts: Vec<&Encoded> = chunk.iter().map(|&i| &train[i].text).collect();
        let (ids, mask) = text_batch(&texts)?;
        let txt = projected(
            &text_classes(self.words.as_tensor(), &ids, &mask)?,
            projection,
        )?;
        let scale = self.log_scale.as_tensor().clamp(0.0, 100f32.ln())?.exp()?;
        let logits = img.matmul(&txt.t()?)?.broadcast_mul(&scale)?;
        let targets: Vec<u32> = (0..chunk.len() as u32).collect();
        let targets = Tensor::from_vec(targets, chunk.len(), cpu)?;
        let loss = ((candle_nn::loss::cross_entropy(&logits, &targets)?
            + candle_nn::loss::cross_entropy(&logits.t()?.contiguous()?, &targets)?)?
            / 2.0)?;
        if !loss.to_scalar::<f32>()?.is_finite() {
            return Err(Error::Dataset(format!(
                "ranking loss is not finite at epoch {epoch} (lower lr)"
            )));
        }
        self.opt.backward_step(&loss)?;
        Ok(loss.to_scalar::<f32>()?)
    }

    /// One pass over `train` in `order`, in batches; returns the mean loss.
    fn epoch(
        &mut self,
        train: &[Pair],
        order: &[usize],
        batch_size: usize,
        epoch: usize,
    ) -> Result<f64> {
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        for chunk in order.chunks(batch_size) {
            // One caption per image in a batch: another caption of the same image is no negative.
            let mut images = HashSet::new();
            let chunk: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| images.insert(train[i].image))
                .collect();
            if chunk.len() < 2 {
                continue;
            }
            let loss = self.step(train, &chunk, epoch)?;
            loss_sum += f64::from(loss) * chunk.len() as f64;
            seen += chunk.len();
        }
        Ok(loss_sum / seen.max(1) as f64)
    }
}

/// Train the towers on `train` pairs (features `[n_images, feature_dim]`), starting from
/// `init`, keeping the epoch (0 = the untrained start) with the best caption → image
/// R@1 + R@5 + R@10 on `val`.
pub fn fit(
    train_features: &Tensor,
    train: &[Pair],
    val_features: &Tensor,
    val: &[Pair],
    init: &Init,
    cfg: &RankConfig,
    on_epoch: &mut dyn FnMut(&RankEpoch) -> bool,
) -> Result<RankFit> {
    cfg.validate()?;
    if train.len() < 2 || val.is_empty() {
        return Err(Error::Dataset(format!(
            "need ≥ 2 training and ≥ 1 validation captions (have {} and {})",
            train.len(),
            val.len()
        )));
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut towers = Trainable::new(init, cfg, train_features, &mut rng)?;
    let zero_shot = towers.snapshot()?;
    let start = zero_shot.clone();
    let (zs, _) = evaluate(&zero_shot, val_features, val)?;
    let mut history = Vec::new();
    // Epoch 0 (no training) competes too: training must beat the zero-shot start.
    let mut best: Option<(f64, usize, DualEncoder)> = Some((zs.r1 + zs.r5 + zs.r10, 0, zero_shot));
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let train_loss = towers.epoch(train, &order, cfg.batch_size, epoch)?;
        let model = towers.snapshot()?;
        let (t2i, _) = evaluate(&model, val_features, val)?;
        let e = RankEpoch {
            epoch,
            train_loss,
            val_r1: t2i.r1,
            val_r10: t2i.r10,
            scale: model.scale,
        };
        if !on_epoch(&e) {
            return Err(Error::Cancelled);
        }
        history.push(e);
        // Kept: the best R@1 + R@5 + R@10 (R@10 alone saturates on small splits).
        let rsum = t2i.r1 + t2i.r5 + t2i.r10;
        if best.as_ref().is_none_or(|(r, _, _)| rsum > *r) {
            best = Some((rsum, epoch, model));
        } else if best
            .as_ref()
            .is_some_and(|(_, at, _)| epoch - at >= cfg.patience)
        {
            break;
        }
    }
    let (_, best_epoch, model) = best.ok_or_else(|| Error::Dataset("no epoch ran".into()))?;
    Ok(RankFit {
        model,
        history,
        best_epoch,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::model::word_class_init;

    /// A toy world: 8 "classes" with one-hot features and an identity classifier; the
    /// captions name each image's class in words the class names do not contain, so only
    /// training can pair them.
    #[test]
    fn learns_a_toy_pairing() {
        let names: Vec<String> = ["red", "green", "blue", "cat", "dog", "car", "tree", "sun"]
            .map(String::from)
            .to_vec();
        let said = [
            "rouge", "vert", "bleu", "chat", "chien", "auto", "arbre", "soleil",
        ];
        let n = names.len();
        let tok = wasm_infer::Tokenizer::new(wasm_infer::tokenizer::build(
            said.iter()
                .map(|s| s.to_string())
                .chain(names.iter().cloned()),
            1,
            100,
            4,
        ))
        .unwrap();
        let mut eye = vec![0f32; n * n];
        for i in 0..n {
            eye[i * n + i] = 8.0;
        }
        let feats = Tensor::from_vec(eye.clone(), (n, n), &Device::Cpu).unwrap();
        let vocab = &tok.spec().vocab;
        let init = Init {
            classifier_weight: Tensor::from_vec(eye, (n, n), &Device::Cpu).unwrap(),
            classifier_bias: Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap(),
            word_classes: Tensor::from_vec(
                word_class_init(vocab, &names),
                (vocab.len(), n),
                &Device::Cpu,
            )
            .unwrap(),
        };
        // Zero-shot: the class names already find their images.
        let named: Vec<Pair> = names
            .iter()
            .enumerate()
            .map(|(i, w)| Pair {
                image: i,
                text: tok.encode(w),
            })
            .collect();
        let pairs: Vec<Pair> = said
            .iter()
            .enumerate()
            .map(|(i, w)| Pair {
                image: i,
                text: tok.encode(&format!("un {w}")),
            })
            .collect();
        let cfg = RankConfig {
            dim: 8,
            epochs: 200,
            batch_size: 8,
            lr: 0.05,
            patience: 200,
            ..Default::default()
        };
        let fit = fit(&feats, &pairs, &feats, &pairs, &init, &cfg, &mut |_| true).unwrap();
        assert!(fit.best_epoch > 0);
        let (t2i, i2t) = evaluate(&fit.model, &feats, &pairs).unwrap();
        assert_eq!(t2i.r1, 1.0, "{t2i:?}");
        assert_eq!(i2t.r1, 1.0, "{i2t:?}");
        let (named_t2i, _) = evaluate(&fit.model, &feats, &named).unwrap();
        assert_eq!(named_t2i.r1, 1.0, "class names still work: {named_t2i:?}");
    }
}
