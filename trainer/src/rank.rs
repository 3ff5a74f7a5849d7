//! Image-text ranking: a dual encoder trained with candle on the frozen backbone.
//!
//! Both towers meet in the space of the backbone's 1000 ImageNet classes, projected to `dim`:
//!
//! - Image tower: EfficientNet-Lite0 (frozen) → its ImageNet classifier (frozen) → softmax →
//!   learnt projection `P` → L2 norm.
//! - Text tower: the shared tokenizer (`wasm_infer::tokenizer`) → a learnt class distribution
//!   per word, initialised from the ImageNet class names (the word "koala" starts on the class
//!   "koala, koala bear, …"; words of no class name start at zero and are learnt from the
//!   captions) → mean over the words → the same `P` → L2 norm.
//!
//! So a word that names an ImageNet class finds its images before any training (zero-shot),
//! and training on captions adapts the projection and the words to the user's images. No
//! pretrained text encoder small enough for a browser can be had offline; the class names
//! are the pretrained knowledge on the text side.
//!
//! Loss: symmetric InfoNCE over the batch with a learnable temperature (logit scale `exp(s)`,
//! capped at 100). Evaluation: Recall@1/5/10 and median rank in both directions, next to
//! chance and a bag-of-words baseline that uses the same frozen features but no text model.

use std::path::Path;

use candle_core::{D, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::prelude::*;
use serde::{Deserialize, Serialize};
use wasm_infer::session::sha256_hex;
use wasm_infer::{
    Dim, Encoded, MANIFEST_SCHEMA_VERSION, ModelManifest, OnnxFile, Preprocess, RankMetrics,
    Recall, Session, Task, TensorSpec, TextEncoder, TextTower, Tokenizer,
};

use crate::backbone::Backbone;
use crate::dataset::{Dataset, Sample, Split};
use crate::error::io;
use crate::export::{
    BATCH_SYMBOL, EMBEDDING_NAME, IDS_NAME, INPUT_NAME, MASK_NAME, OPSET, export_image_encoder,
    export_text_encoder,
};
use crate::pipeline::{
    Progress, RunMeta, features_of, inference_tensor, now_rfc3339, replace_dir, write_file,
};
use crate::{Error, Result};

/// Ranking hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

/// The trained towers (on top of the frozen backbone).
#[derive(Debug, Clone)]
pub struct DualEncoder {
    /// The backbone's ImageNet classifier, `[1000, feature_dim]` (frozen).
    pub classifier_weight: Tensor,
    /// Its bias, `[1000]` (frozen).
    pub classifier_bias: Tensor,
    /// `P`: `[dim, 1000]`.
    pub projection: Tensor,
    /// Class distribution of each word: `[vocab, 1000]`.
    pub word_classes: Tensor,
    /// Learnt logit scale (1 / temperature).
    pub scale: f64,
}

/// Floor on the squared norm (the ONNX graph uses the same): a zero vector stays zero, and
/// the gradient stays finite (the floor comes before the square root).
pub const NORM_EPS_SQUARED: f32 = 1e-12;

/// Rows scaled to unit L2 norm: `x / sqrt(max(Σx², eps²))`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .maximum(NORM_EPS_SQUARED)?
        .sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// Ids and mask tensors of encoded texts.
pub fn text_batch(texts: &[&Encoded]) -> Result<(Tensor, Tensor)> {
    let n = texts.len();
    let len = texts.first().map_or(0, |e| e.ids.len());
    let ids: Vec<u32> = texts
        .iter()
        .flat_map(|e| e.ids.iter().map(|&i| i as u32))
        .collect();
    let mask: Vec<f32> = texts.iter().flat_map(|e| e.mask.iter().copied()).collect();
    Ok((
        Tensor::from_vec(ids, (n, len), &Device::Cpu)?,
        Tensor::from_vec(mask, (n, len), &Device::Cpu)?,
    ))
}

/// Image class probabilities `[n, 1000]` of backbone features.
fn class_probs(features: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let logits = features.matmul(&w.t()?)?.broadcast_add(b)?;
    Ok(candle_nn::ops::softmax_last_dim(&logits)?)
}

/// Mean class distribution of the words of each text `[n, 1000]`.
fn text_classes(table: &Tensor, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (n, len) = ids.dims2()?;
    let classes = table.dim(1)?;
    let words = table
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((n, len, classes))?;
    let summed = words.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    Ok(summed.broadcast_div(&mask.sum_keepdim(1)?)?)
}

fn projected(x: &Tensor, projection: &Tensor) -> Result<Tensor> {
    l2_normalize(&x.matmul(&projection.t()?)?)
}

impl DualEncoder {
    /// Unit embeddings of backbone features `[n, feature_dim]`.
    pub fn embed_features(&self, features: &Tensor) -> Result<Tensor> {
        let p = class_probs(features, &self.classifier_weight, &self.classifier_bias)?;
        projected(&p, &self.projection)
    }

    /// Unit embeddings of encoded texts.
    pub fn embed_texts(&self, texts: &[&Encoded]) -> Result<Tensor> {
        let (ids, mask) = text_batch(texts)?;
        projected(
            &text_classes(&self.word_classes, &ids, &mask)?,
            &self.projection,
        )
    }

    /// Embedding size.
    pub fn dim(&self) -> Result<usize> {
        Ok(self.projection.dim(0)?)
    }

    /// The text tower folded for export: each word's class distribution already projected,
    /// `[vocab, dim]` (mean then project = project then mean).
    pub fn folded_words(&self) -> Result<Tensor> {
        Ok(self.word_classes.matmul(&self.projection.t()?)?)
    }
}

/// Initial class distribution of each vocabulary word: uniform over the ImageNet classes
/// whose names contain it (same normalisation as the tokenizer), zero for other words.
pub fn word_class_init(vocab: &[String], class_names: &[String]) -> Vec<f32> {
    let classes = class_names.len();
    let index: std::collections::HashMap<&str, usize> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i))
        .collect();
    let mut of_word: Vec<Vec<usize>> = vec![Vec::new(); vocab.len()];
    for (c, name) in class_names.iter().enumerate() {
        let mut words = wasm_infer::tokenizer::words(name);
        words.sort();
        words.dedup();
        for w in words {
            if let Some(&i) = index.get(w.as_str()) {
                of_word[i].push(c);
            }
        }
    }
    let mut table = vec![0f32; vocab.len() * classes];
    for (i, cs) in of_word.iter().enumerate() {
        for &c in cs {
            table[i * classes + c] = 1.0 / cs.len() as f32;
        }
    }
    table
}

/// Where training starts: the frozen ImageNet classifier and the words' class distributions.
#[derive(Debug, Clone)]
pub struct Init {
    /// `[1000, feature_dim]`.
    pub classifier_weight: Tensor,
    /// `[1000]`.
    pub classifier_bias: Tensor,
    /// `[vocab, 1000]` ([`word_class_init`]).
    pub word_classes: Tensor,
}

impl Init {
    /// From the backbone and the class names, for a vocabulary.
    pub fn new(backbone: &Backbone, class_names: &[String], vocab: &[String]) -> Result<Self> {
        let classes = class_names.len();
        let cpu = &Device::Cpu;
        Ok(Self {
            classifier_weight: Tensor::from_slice(
                &backbone.imagenet_weight,
                (classes, backbone.imagenet_weight.len() / classes.max(1)),
                cpu,
            )?,
            classifier_bias: Tensor::from_slice(&backbone.imagenet_bias, classes, cpu)?,
            word_classes: Tensor::from_vec(
                word_class_init(vocab, class_names),
                (vocab.len(), classes),
                cpu,
            )?,
        })
    }
}

/// One caption of one image (index into the split's feature rows).
#[derive(Debug, Clone)]
pub struct Pair {
    /// Row of the image in the split's features.
    pub image: usize,
    /// The encoded caption.
    pub text: Encoded,
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
    /// Logit scale.
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

fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
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
    let cpu = &Device::Cpu;
    let classes = init.classifier_bias.dim(0)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    // Variance 1/dim: a random projection that keeps dot products (Johnson–Lindenstrauss), so
    // the class-space match between words and images holds from the start.
    let bound = (3.0 / cfg.dim as f32).sqrt();
    let projection = Var::from_tensor(&Tensor::from_vec(
        uniform(&mut rng, cfg.dim * classes, bound),
        (cfg.dim, classes),
        cpu,
    )?)?;
    let words = Var::from_tensor(&init.word_classes.copy()?)?;
    // CLIP's start: temperature 0.07.
    let log_scale = Var::from_tensor(&Tensor::new(&[(1.0f32 / 0.07).ln()], cpu)?)?;
    let mut opt = AdamW::new(
        vec![projection.clone(), words.clone(), log_scale.clone()],
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let (cw, cb) = (&init.classifier_weight, &init.classifier_bias);
    // Image class probabilities never change (frozen backbone and classifier).
    let train_probs = class_probs(train_features, cw, cb)?;
    let snapshot = || -> Result<DualEncoder> {
        Ok(DualEncoder {
            classifier_weight: cw.clone(),
            classifier_bias: cb.clone(),
            projection: projection.as_tensor().copy()?,
            word_classes: words.as_tensor().copy()?,
            scale: f64::from(log_scale.as_tensor().exp()?.to_vec1::<f32>()?[0]).min(100.0),
        })
    };
    let zero_shot = snapshot()?;
    let start = zero_shot.clone();
    let (zs, _) = evaluate(&zero_shot, val_features, val)?;
    let mut history = Vec::new();
    // Epoch 0 (no training) competes too: training must beat the zero-shot start.
    let mut best: Option<(f64, usize, DualEncoder)> = Some((zs.r1 + zs.r5 + zs.r10, 0, zero_shot));
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            // One caption per image in a batch: another caption of the same image is no negative.
            let mut images = std::collections::HashSet::new();
            let chunk: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| images.insert(train[i].image))
                .collect();
            if chunk.len() < 2 {
                continue;
            }
            let rows: Vec<u32> = chunk.iter().map(|&i| train[i].image as u32).collect();
            let rows = Tensor::from_vec(rows, chunk.len(), cpu)?;
            let img = projected(&train_probs.index_select(&rows, 0)?, projection.as_tensor())?;
            let texts: Vec<&Encoded> = chunk.iter().map(|&i| &train[i].text).collect();
            let (ids, mask) = text_batch(&texts)?;
            let txt = projected(
                &text_classes(words.as_tensor(), &ids, &mask)?,
                projection.as_tensor(),
            )?;
            let scale = log_scale.as_tensor().clamp(0.0, 100f32.ln())?.exp()?;
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
            opt.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
            seen += chunk.len();
        }
        let model = snapshot()?;
        let (t2i, _) = evaluate(&model, val_features, val)?;
        let e = RankEpoch {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
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

/// 1-based rank of the best-scored relevant item among `scores`, ties shared evenly (the
/// expected rank when ties are broken at random).
pub fn rank_of(scores: &[f32], relevant: &[usize]) -> f64 {
    let best = relevant
        .iter()
        .map(|&i| scores[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let above = scores
        .iter()
        .enumerate()
        .filter(|(i, s)| **s > best && !relevant.contains(i))
        .count();
    let tied = scores
        .iter()
        .enumerate()
        .filter(|(i, s)| **s == best && !relevant.contains(i))
        .count();
    1.0 + above as f64 + tied as f64 / 2.0
}

/// Recall@1/5/10 and median rank from the rank of each query's match.
pub fn recall_from_ranks(ranks: &[f64]) -> Recall {
    let n = ranks.len().max(1) as f64;
    let at = |k: f64| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    let mut sorted = ranks.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => 0.0,
        m if m % 2 == 1 => sorted[m / 2],
        m => (sorted[m / 2 - 1] + sorted[m / 2]) / 2.0,
    };
    Recall {
        r1: at(1.0),
        r5: at(5.0),
        r10: at(10.0),
        median_rank: median,
    }
}

/// Rows of a `[n, m]` score matrix (all finite).
fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let v = t.to_vec2::<f32>()?;
    if v.iter().flatten().any(|x| !x.is_finite()) {
        return Err(Error::Dataset("similarity scores are not finite".into()));
    }
    Ok(v)
}

/// Caption → image and image → caption recall of `model` on a split.
pub fn evaluate(
    model: &DualEncoder,
    features: &Tensor,
    pairs: &[Pair],
) -> Result<(Recall, Recall)> {
    let img = model.embed_features(features)?;
    let texts: Vec<&Encoded> = pairs.iter().map(|p| &p.text).collect();
    let txt = model.embed_texts(&texts)?;
    let sim = rows(&txt.matmul(&img.t()?)?)?; // [texts, images]
    let t2i: Vec<f64> = sim
        .iter()
        .zip(pairs)
        .map(|(s, p)| rank_of(s, &[p.image]))
        .collect();
    let n_images = features.dim(0)?;
    let sim_t = rows(&img.matmul(&txt.t()?)?)?; // [images, texts]
    let i2t: Vec<f64> = (0..n_images)
        .filter_map(|i| {
            let relevant: Vec<usize> = pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.image == i)
                .map(|(j, _)| j)
                .collect();
            (!relevant.is_empty()).then(|| rank_of(&sim_t[i], &relevant))
        })
        .collect();
    Ok((recall_from_ranks(&t2i), recall_from_ranks(&i2t)))
}

/// Expected recall of ranking `n` items at random.
pub fn random_recall(n: usize) -> Recall {
    let n = n.max(1) as f64;
    Recall {
        r1: 1.0_f64.min(n) / n,
        r5: 5.0_f64.min(n) / n,
        r10: 10.0_f64.min(n) / n,
        median_rank: (n + 1.0) / 2.0,
    }
}

fn bag(words: impl IntoIterator<Item = String>) -> std::collections::HashMap<String, f32> {
    let mut m = std::collections::HashMap::new();
    for w in words {
        *m.entry(w).or_insert(0.0) += 1.0;
    }
    m
}

fn cosine(
    a: &std::collections::HashMap<String, f32>,
    b: &std::collections::HashMap<String, f32>,
) -> f32 {
    let dot: f32 = a.iter().map(|(w, x)| x * b.get(w).unwrap_or(&0.0)).sum();
    let na: f32 = a.values().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.values().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Bag-of-words baseline, caption → image: each test image is described by the words of the
/// captions of its `k` nearest training images (cosine on backbone features); a query ranks
/// the images by the cosine of word counts.
pub fn bow_baseline(
    train_features: &Tensor,
    train_captions: &[Vec<String>],
    test_features: &Tensor,
    test: &[(usize, String)],
    k: usize,
) -> Result<Recall> {
    let a = l2_normalize(test_features)?;
    let b = l2_normalize(train_features)?;
    let sim = rows(&a.matmul(&b.t()?)?)?;
    let described: Vec<_> = sim
        .iter()
        .map(|s| {
            let mut order: Vec<usize> = (0..s.len()).collect();
            order.sort_by(|&x, &y| s[y].total_cmp(&s[x]));
            bag(order.into_iter().take(k).flat_map(|i| {
                train_captions[i]
                    .iter()
                    .flat_map(|c| wasm_infer::tokenizer::words(c))
            }))
        })
        .collect();
    let ranks: Vec<f64> = test
        .iter()
        .map(|(image, caption)| {
            let q = bag(wasm_infer::tokenizer::words(caption));
            let scores: Vec<f32> = described.iter().map(|d| cosine(&q, d)).collect();
            rank_of(&scores, &[*image])
        })
        .collect();
    Ok(recall_from_ranks(&ranks))
}

// ---------------------------------------------------------------------------------------------
// The whole run: features, training, evaluation, export, parity, files.

/// Images and captions per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankSplits {
    /// Training images / captions.
    pub train: (usize, usize),
    /// Validation images / captions.
    pub val: (usize, usize),
    /// Test images / captions.
    pub test: (usize, usize),
}

/// candle vs tract on the exported encoders.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankParity {
    /// Images compared.
    pub images: usize,
    /// Largest absolute difference on an image embedding component.
    pub image_max_abs_diff: f32,
    /// Texts compared.
    pub texts: usize,
    /// Largest absolute difference on a text embedding component.
    pub text_max_abs_diff: f32,
}

/// Everything a ranking run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankReport {
    /// The manifest written next to the encoders.
    pub manifest: ModelManifest,
    /// Per-epoch curves.
    pub history: Vec<RankEpoch>,
    /// Epoch kept.
    pub best_epoch: usize,
    /// Hyper-parameters used.
    pub config: RankConfig,
    /// Images and captions per split.
    pub splits: RankSplits,
    /// Parity figures.
    pub parity: RankParity,
    /// Caption → image on the test split before training (ImageNet class names only).
    pub zero_shot_text_to_image: Recall,
    /// Whole run, seconds.
    pub total_secs: f64,
}

/// Largest allowed |candle − tract| on an embedding component.
pub const PARITY_TOLERANCE: f32 = 1e-4;
/// File names in a ranking model folder.
pub const IMAGE_FILE: &str = "image.onnx";
/// See [`IMAGE_FILE`].
pub const TEXT_FILE: &str = "text.onnx";

/// Train, evaluate, export and verify an image-text ranking model; write it to `out_dir`
/// (`image.onnx`, `text.onnx`, `manifest.json`, `metrics.json`). Only images with captions
/// take part.
pub fn run(
    dataset: &Dataset,
    backbone: &Backbone,
    class_names: &[String],
    cfg: &RankConfig,
    meta: &RunMeta,
    out_dir: &Path,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<RankReport> {
    cfg.validate()?;
    let started = std::time::Instant::now();
    let prep = Preprocess::efficientnet_lite();
    let captioned = |split: Split| -> Vec<&Sample> {
        dataset
            .split(split)
            .filter(|s| !s.captions.is_empty())
            .collect()
    };
    let (train, val, test) = (
        captioned(Split::Train),
        captioned(Split::Val),
        captioned(Split::Test),
    );
    let texts = |v: &[&Sample]| v.iter().map(|s| s.captions.len()).sum::<usize>();
    let splits = RankSplits {
        train: (train.len(), texts(&train)),
        val: (val.len(), texts(&val)),
        test: (test.len(), texts(&test)),
    };
    if train.len() < 8 || val.is_empty() || test.len() < 2 {
        return Err(Error::Dataset(format!(
            "too few captioned images: {} train, {} val, {} test (need ≥ 8, ≥ 1, ≥ 2)",
            train.len(),
            val.len(),
            test.len()
        )));
    }
    // Vocabulary: the training captions' words and the ImageNet class names' words.
    let spec = wasm_infer::tokenizer::build(
        train
            .iter()
            .flat_map(|s| s.captions.iter())
            .chain(class_names.iter()),
        cfg.min_count,
        cfg.max_vocab,
        cfg.max_len,
    );
    let tok = Tokenizer::new(spec.clone())?;

    // 1. Frozen backbone features (clean view) of every captioned image.
    let total = train.len() + val.len() + test.len();
    let mut done = 0usize;
    let t0 = std::time::Instant::now();
    let mut tick = |n: usize| {
        done += n;
        progress(Progress::Features {
            done,
            total,
            images_per_sec: done as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        })
    };
    let clean = |s: &&Sample| inference_tensor(s, &prep);
    let train_x = features_of(backbone, train.iter().map(clean), train.len(), &mut tick)?;
    let val_x = features_of(backbone, val.iter().map(clean), val.len(), &mut tick)?;
    let test_x = features_of(backbone, test.iter().map(clean), test.len(), &mut tick)?;
    let pairs = |v: &[&Sample]| -> Vec<Pair> {
        v.iter()
            .enumerate()
            .flat_map(|(i, s)| s.captions.iter().map(move |c| (i, c)))
            .map(|(image, c)| Pair {
                image,
                text: tok.encode(c),
            })
            .collect()
    };
    let (train_p, val_p, test_p) = (pairs(&train), pairs(&val), pairs(&test));

    // 2. Towers.
    let mut on_epoch = |e: &RankEpoch| {
        progress(Progress::Batch {
            epoch: e.epoch,
            epochs: cfg.epochs,
            batch: 1,
            batches: 1,
            loss: e.train_loss,
        })
    };
    let init = Init::new(backbone, class_names, &spec.vocab)?;
    let fitted = fit(
        &train_x,
        &train_p,
        &val_x,
        &val_p,
        &init,
        cfg,
        &mut on_epoch,
    )?;

    // 3. Test metrics next to the baselines.
    let (t2i, i2t) = evaluate(&fitted.model, &test_x, &test_p)?;
    let train_captions: Vec<Vec<String>> = train.iter().map(|s| s.captions.clone()).collect();
    let test_texts: Vec<(usize, String)> = test
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.captions.iter().map(move |c| (i, c.clone())))
        .collect();
    let (zero_shot, _) = evaluate(&fitted.start, &test_x, &test_p)?;
    let bow = bow_baseline(&train_x, &train_captions, &test_x, &test_texts, 5)?;
    let metrics = RankMetrics {
        n_images: test.len() as u32,
        n_texts: test_p.len() as u32,
        text_to_image: t2i,
        image_to_text: i2t,
        random_text_to_image: random_recall(test.len()),
        bow_text_to_image: bow,
    };

    // 4. Export + manifest.
    if !progress(Progress::Export) {
        return Err(Error::Cancelled);
    }
    let snapshot = dataset.snapshot_id();
    let created_at = now_rfc3339();
    let model_id = meta.model_id_or("rank", &snapshot, &created_at, cfg);
    let image_onnx = export_image_encoder(backbone, &fitted.model, &model_id)?;
    let text_onnx = export_text_encoder(&fitted.model, cfg.max_len, &model_id)?;
    let dim = fitted.model.dim()?;
    let batch = || Dim::Symbol(BATCH_SYMBOL.into());
    let size = prep.size as usize;
    let file = |name: &str, bytes: &[u8]| OnnxFile {
        file: name.into(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        opset: OPSET,
    };
    let manifest = ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        model_id: model_id.clone(),
        task: Task::Rank,
        onnx: file(IMAGE_FILE, &image_onnx),
        input: TensorSpec {
            name: INPUT_NAME.into(),
            shape: vec![batch(), Dim::Fixed(3), Dim::Fixed(size), Dim::Fixed(size)],
        },
        output: TensorSpec {
            name: EMBEDDING_NAME.into(),
            shape: vec![batch(), Dim::Fixed(dim)],
        },
        preprocess: prep.clone(),
        labels: dataset.labels.clone(),
        metrics: None,
        dataset_snapshot: snapshot,
        parent_model_id: meta.parent_model_id.clone(),
        created_at,
        trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        text: Some(TextTower {
            onnx: file(TEXT_FILE, &text_onnx),
            ids: TensorSpec {
                name: IDS_NAME.into(),
                shape: vec![batch(), Dim::Fixed(cfg.max_len)],
            },
            mask: TensorSpec {
                name: MASK_NAME.into(),
                shape: vec![batch(), Dim::Fixed(cfg.max_len)],
            },
            output: TensorSpec {
                name: EMBEDDING_NAME.into(),
                shape: vec![batch(), Dim::Fixed(dim)],
            },
            tokenizer: spec,
        }),
        rank_metrics: Some(metrics),
    };
    manifest.validate()?;

    // 5. Parity: candle vs tract on the exported bytes, test images and captions.
    let parity = check_parity(
        &fitted.model,
        &manifest,
        &image_onnx,
        &text_onnx,
        &test,
        &test_x,
        &test_p,
    )?;
    let report = RankReport {
        manifest,
        history: fitted.history,
        best_epoch: fitted.best_epoch,
        config: cfg.clone(),
        splits,
        parity,
        zero_shot_text_to_image: zero_shot,
        total_secs: started.elapsed().as_secs_f64(),
    };
    write_dir(out_dir, &image_onnx, &text_onnx, &report)?;
    Ok(report)
}

/// Embeddings of the test images and captions by candle and by tract (the exported bytes);
/// fail beyond [`PARITY_TOLERANCE`].
pub fn check_parity(
    model: &DualEncoder,
    manifest: &ModelManifest,
    image_onnx: &[u8],
    text_onnx: &[u8],
    images: &[&Sample],
    features: &Tensor,
    texts: &[Pair],
) -> Result<RankParity> {
    let take = images.len().min(32);
    let candle_img = model
        .embed_features(&features.narrow(0, 0, take)?)?
        .to_vec2::<f32>()?;
    let session = Session::new(image_onnx, manifest.clone())?;
    let mut image_diff = 0f32;
    for (s, c) in images.iter().zip(&candle_img) {
        let t = session
            .run(&inference_tensor(s, &manifest.preprocess)?)?
            .remove(0);
        image_diff = image_diff.max(max_abs_diff(c, &t));
    }
    let take_t = texts.len().min(64);
    let refs: Vec<&Encoded> = texts[..take_t].iter().map(|p| &p.text).collect();
    let candle_txt = model.embed_texts(&refs)?.to_vec2::<f32>()?;
    let encoder = TextEncoder::new(text_onnx, manifest)?;
    let mut text_diff = 0f32;
    for (e, c) in refs.iter().zip(&candle_txt) {
        text_diff = text_diff.max(max_abs_diff(c, &encoder.embed_encoded(e)?));
    }
    for (what, d) in [("image", image_diff), ("text", text_diff)] {
        if d.is_nan() || d > PARITY_TOLERANCE {
            return Err(Error::Parity(format!(
                "{what} embeddings differ by {d:e} between candle and tract (tolerance {PARITY_TOLERANCE:e})"
            )));
        }
    }
    Ok(RankParity {
        images: take,
        image_max_abs_diff: image_diff,
        texts: take_t,
        text_max_abs_diff: text_diff,
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NAN;
    }
    // NaN-propagating maximum: a NaN anywhere fails the check.
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, |m, d| {
            if d.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        })
}

/// Write the model folder atomically ([`replace_dir`]).
pub fn write_dir(
    out_dir: &Path,
    image_onnx: &[u8],
    text_onnx: &[u8],
    report: &RankReport,
) -> Result<()> {
    replace_dir(out_dir, |tmp| {
        write_file(tmp, IMAGE_FILE, image_onnx)?;
        write_file(tmp, TEXT_FILE, text_onnx)?;
        write_file(tmp, "manifest.json", report.manifest.to_json()?.as_bytes())?;
        write_file(
            tmp,
            "metrics.json",
            serde_json::to_string_pretty(report)?.as_bytes(),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The gallery: every image of the dataset embedded by the exported image encoder, so a
// browser can search the whole collection offline.

/// Gallery index file (JSON): model id, dimensions and one entry per image.
pub const GALLERY_JSON: &str = "gallery.json";
/// Gallery vectors: `count × dim` signed bytes, row-major, `round(x · scale)`.
pub const GALLERY_BIN: &str = "gallery.bin";
/// Quantisation scale of the gallery vectors (components of unit vectors are in [-1, 1]).
pub const GALLERY_SCALE: f32 = 127.0;

/// One gallery image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GalleryItem {
    /// Image id (the sample's `source`: the api's image id).
    pub id: String,
    /// Its label.
    pub label: String,
    /// Its captions.
    pub captions: Vec<String>,
}

/// `gallery.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gallery {
    /// Model whose image encoder computed the vectors.
    pub model_id: String,
    /// Embedding size.
    pub dim: usize,
    /// Images.
    pub count: usize,
    /// Vectors are `round(x · scale)` as i8 in `gallery.bin`.
    pub scale: f32,
    /// Images, in `gallery.bin` row order.
    pub items: Vec<GalleryItem>,
}

/// Embed every image of `dataset` with the exported image encoder in `dir` (tract, as
/// deployed) and write `gallery.json` + `gallery.bin` there.
pub fn write_gallery(dir: &Path, dataset: &Dataset) -> Result<Gallery> {
    let manifest = ModelManifest::from_json(
        &std::fs::read_to_string(dir.join("manifest.json")).map_err(io(dir))?,
    )?;
    let onnx = std::fs::read(dir.join(&manifest.onnx.file)).map_err(io(dir))?;
    let session = Session::new(&onnx, manifest.clone())?;
    let mut items = Vec::with_capacity(dataset.samples.len());
    let mut vectors: Vec<u8> = Vec::new();
    let mut dim = 0;
    for s in &dataset.samples {
        let e = session
            .run(&inference_tensor(s, &manifest.preprocess)?)?
            .remove(0);
        dim = e.len();
        vectors.extend(
            e.iter()
                .map(|x| (x * GALLERY_SCALE).round().clamp(-127.0, 127.0) as i8 as u8),
        );
        items.push(GalleryItem {
            id: s.source.clone(),
            label: dataset.labels[s.label].clone(),
            captions: s.captions.clone(),
        });
    }
    let gallery = Gallery {
        model_id: manifest.model_id.clone(),
        dim,
        count: items.len(),
        scale: GALLERY_SCALE,
        items,
    };
    write_file(dir, GALLERY_BIN, &vectors)?;
    write_file(
        dir,
        GALLERY_JSON,
        serde_json::to_string(&gallery)?.as_bytes(),
    )?;
    Ok(gallery)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: 3 queries whose matches rank 1, 3 and 2 (a tie between two).
    #[test]
    fn recall_on_a_hand_checked_case() {
        // Query 0: item 0 best → rank 1.
        assert_eq!(rank_of(&[0.9, 0.1, 0.2], &[0]), 1.0);
        // Query 1: item 2 is third.
        assert_eq!(rank_of(&[0.9, 0.5, 0.1], &[2]), 3.0);
        // Query 2: item 1 ties with item 0 for first → expected rank 1.5.
        assert_eq!(rank_of(&[0.7, 0.7, 0.1], &[1]), 1.5);
        // Several relevant items: the best one counts.
        assert_eq!(rank_of(&[0.9, 0.5, 0.8], &[1, 2]), 2.0);
        let r = recall_from_ranks(&[1.0, 3.0, 1.5, 12.0]);
        assert_eq!((r.r1, r.r5, r.r10), (0.25, 0.75, 0.75));
        assert_eq!(r.median_rank, 2.25);
        let r = random_recall(20);
        assert_eq!((r.r1, r.r5, r.r10, r.median_rank), (0.05, 0.25, 0.5, 10.5));
    }

    #[test]
    fn normalised_rows_have_unit_length() {
        let x = Tensor::new(&[[3.0f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let y = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }

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
