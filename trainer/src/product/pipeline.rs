//! A whole product-classification run: features of every image (through the feature cache),
//! the tokenizer from the training texts, training, the three-modality test figures, the ONNX
//! export and its candle ↔ tract parity, and the model folder.

use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;
use wasm_infer::{Encoded, Tokenizer, TokenizerSpec};

use super::data::{ProductItem, ProductSet};
use super::eval::{Modality, Scores, score_named};
use super::export::export_product_head;
use super::fit::{ProductConfig, ProductEpoch, fit};
use super::model::{ProductBatch, ProductModel};
use crate::backbone::{Backbone, FEATURE_DIM};
use crate::dataset::Split;
use crate::run::{CacheStats, FeaturePass, FeatureStore, Parity, Progress, View, now_rfc3339};
use crate::{Error, Result};

/// The ONNX head in a product model folder.
pub const PRODUCT_HEAD_ONNX: &str = "product_head.onnx";
/// The run's report in a product model folder.
pub const PRODUCT_METRICS: &str = "metrics.json";

/// Figures of the three modalities on the same test items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductMetrics {
    /// Title and text only.
    pub text: Scores,
    /// Image only.
    pub image: Scores,
    /// Both.
    pub both: Scores,
    /// Accuracy of always answering the most frequent training category.
    pub majority_baseline: f64,
}

/// Where each item went, by its `file:line`, and what the model said about the test items
/// (for baselines computed elsewhere on the very same split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductSplits {
    /// Training items.
    pub train: Vec<String>,
    /// Validation items.
    pub val: Vec<String>,
    /// Test items with both a text and an image: the items [`ProductMetrics`] scores.
    pub test: Vec<String>,
    /// The model's category for each test item: text only, image only, both.
    pub predicted: Vec<[String; 3]>,
}

/// candle ↔ tract agreement on the exported head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProductParity {
    /// Items compared (each in the three modalities).
    pub items: usize,
    /// Largest probability difference.
    pub max_abs_diff: f32,
}

/// Everything a run reports (`metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductReport {
    /// Model id.
    pub model_id: String,
    /// RFC 3339 time of the export.
    pub created_at: String,
    /// Trainer version.
    pub trainer_version: String,
    /// sha256 of the backbone weights whose features the head reads.
    pub backbone_sha256: String,
    /// Categories, in output order.
    pub labels: Vec<String>,
    /// Items per split (train, val, test), and test items scored (with text and image).
    pub counts: [usize; 4],
    /// The settings.
    pub config: ProductConfig,
    /// How texts become the `ids` and `mask` inputs.
    pub tokenizer: TokenizerSpec,
    /// Per-epoch curves.
    pub history: Vec<ProductEpoch>,
    /// Epoch kept.
    pub best_epoch: usize,
    /// Test figures.
    pub test: ProductMetrics,
    /// candle ↔ tract.
    pub parity: ProductParity,
    /// Seconds in the backbone (or reading its cache) and in training.
    pub seconds: [f64; 2],
    /// Where the image features came from.
    pub feature_cache: CacheStats,
    /// The split and the test predictions.
    pub splits: ProductSplits,
}

/// A finished run: the weights, the report and the ONNX bytes.
#[derive(Debug)]
pub struct ProductRun {
    /// The trained weights.
    pub model: ProductModel,
    /// The report.
    pub report: ProductReport,
    /// The exported head.
    pub onnx: Vec<u8>,
}

/// One split's items as model inputs.
struct Part<'a> {
    items: Vec<&'a ProductItem>,
    batch: ProductBatch,
    labels: Vec<u32>,
}

fn part<'a>(
    items: Vec<&'a ProductItem>,
    rows: &std::collections::HashMap<String, Vec<f32>>,
    texts: &[Encoded],
    index: &std::collections::HashMap<*const ProductItem, usize>,
) -> Result<Part<'a>> {
    let features: Vec<Option<&[f32]>> = items
        .iter()
        .map(|i| {
            i.image
                .as_ref()
                .and_then(|s| rows.get(&s.sha256).map(Vec::as_slice))
        })
        .collect();
    let encoded: Vec<&Encoded> = items
        .iter()
        .map(|i| &texts[index[&(*i as *const ProductItem)]])
        .collect();
    let batch = ProductBatch::new(&features, &encoded, FEATURE_DIM)?;
    let labels = items.iter().map(|i| i.label as u32).collect();
    Ok(Part {
        items,
        batch,
        labels,
    })
}

/// Train, evaluate and export a product classifier on `set`. `progress` sees the feature
/// pass and every epoch, and cancels the run by returning false.
pub fn run(
    set: &ProductSet,
    backbone: &Backbone,
    store: Option<&dyn FeatureStore>,
    config: &ProductConfig,
    model_id: Option<String>,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<ProductRun> {
    config.validate()?;
    if set.labels.len() < 2 {
        return Err(Error::Dataset(format!(
            "a product classifier needs ≥ 2 categories, got {}",
            set.labels.len()
        )));
    }
    // Features of every distinct image, clean view, once.
    let started = Instant::now();
    let mut seen = std::collections::HashSet::new();
    let samples: Vec<_> = set
        .items
        .iter()
        .filter_map(|i| i.image.as_ref())
        .filter(|s| seen.insert(s.sha256.clone()))
        .collect();
    let mut pass = FeaturePass::new(
        backbone,
        store,
        &wasm_infer::Preprocess::efficientnet_lite(),
        samples.len(),
    );
    let rows: std::collections::HashMap<String, Vec<f32>> = if samples.is_empty() {
        Default::default()
    } else {
        let f = pass
            .features(&samples, View::Clean, progress)?
            .to_vec2::<f32>()?;
        samples.iter().map(|s| s.sha256.clone()).zip(f).collect()
    };
    let feature_secs = started.elapsed().as_secs_f64();

    let train_items: Vec<&ProductItem> = set.split(Split::Train).collect();
    let spec = wasm_infer::tokenizer::build(
        train_items.iter().map(|i| i.words()),
        config.min_count,
        config.max_vocab,
        config.max_len,
    );
    let tokenizer = Tokenizer::new(spec.clone())?;
    let texts: Vec<Encoded> = set
        .items
        .iter()
        .map(|i| tokenizer.encode_optional(&i.words()))
        .collect();
    let index: std::collections::HashMap<*const ProductItem, usize> = set
        .items
        .iter()
        .enumerate()
        .map(|(k, i)| (i as *const ProductItem, k))
        .collect();
    let train = part(train_items, &rows, &texts, &index)?;
    let val = part(set.split(Split::Val).collect(), &rows, &texts, &index)?;
    let test_items: Vec<&ProductItem> = set
        .split(Split::Test)
        .filter(|i| i.image.is_some() && texts[index[&(*i as *const ProductItem)]].mask[0] > 0.0)
        .collect();
    if test_items.is_empty() {
        return Err(Error::Dataset(
            "no test item has both a text and an image to score".into(),
        ));
    }
    let test = part(test_items, &rows, &texts, &index)?;

    let started = Instant::now();
    let fitted = fit(
        config,
        (spec.vocab.len(), set.labels.len()),
        (&train.batch, &train.labels),
        (&val.batch, &val.labels),
        &mut |e| {
            progress(Progress::Batch {
                epoch: e.epoch,
                epochs: config.epochs,
                batch: 1,
                batches: 1,
                loss: e.train_loss,
            })
        },
    )?;
    let fit_secs = started.elapsed().as_secs_f64();
    let model = fitted.model;

    let mut predicted = Vec::new();
    let mut scores = Vec::new();
    for modality in Modality::ALL {
        let p = model.predict(&modality.apply(&test.batch)?)?;
        scores.push(score_named(&set.labels, &test.labels, &p));
        predicted.push(p);
    }
    let mut train_counts = vec![0usize; set.labels.len()];
    for &l in &train.labels {
        train_counts[l as usize] += 1;
    }
    let majority = (0..train_counts.len())
        .max_by_key(|&c| (train_counts[c], std::cmp::Reverse(c)))
        .unwrap_or_default() as u32;
    let majority_baseline =
        test.labels.iter().filter(|&&l| l == majority).count() as f64 / test.labels.len() as f64;
    let mut scores = scores.into_iter();
    let (Some(text_s), Some(image_s), Some(both_s)) = (scores.next(), scores.next(), scores.next())
    else {
        return Err(Error::Dataset("three modalities were not scored".into()));
    };

    let created_at = now_rfc3339();
    let model_id = model_id.unwrap_or_else(|| {
        let seed = format!(
            "{}{created_at}{}",
            backbone.weights_sha256,
            serde_json::to_string(config).unwrap_or_default()
        );
        format!(
            "product-{}",
            &wasm_infer::session::sha256_hex(seed.as_bytes())[..12]
        )
    });
    let onnx = export_product_head(&model, config.max_len, &model_id)?;
    let parity = check_parity(&model, &onnx, &test.batch, config.max_len)?;

    let name = |l: u32| set.labels[l as usize].clone();
    let predicted_rows = (0..test.labels.len())
        .map(|k| {
            [
                name(predicted[0][k]),
                name(predicted[1][k]),
                name(predicted[2][k]),
            ]
        })
        .collect();
    let sources = |p: &Part<'_>| p.items.iter().map(|i| i.source.clone()).collect();
    let report = ProductReport {
        model_id,
        created_at,
        trainer_version: env!("CARGO_PKG_VERSION").into(),
        backbone_sha256: backbone.weights_sha256.clone(),
        labels: set.labels.clone(),
        counts: [
            train.labels.len(),
            val.labels.len(),
            set.split(Split::Test).count(),
            test.labels.len(),
        ],
        config: config.clone(),
        tokenizer: spec,
        history: fitted.history,
        best_epoch: fitted.best_epoch,
        test: ProductMetrics {
            text: text_s,
            image: image_s,
            both: both_s,
            majority_baseline,
        },
        parity,
        seconds: [feature_secs, fit_secs],
        feature_cache: pass.stats(),
        splits: ProductSplits {
            train: sources(&train),
            val: sources(&val),
            test: sources(&test),
            predicted: predicted_rows,
        },
    };
    Ok(ProductRun {
        model,
        report,
        onnx,
    })
}

/// Probabilities of up to 32 items in each modality, by candle and by tract (natively, on the
/// exported bytes); fails beyond [`crate::run::PARITY_TOLERANCE`].
pub fn check_parity(
    model: &ProductModel,
    onnx: &[u8],
    items: &ProductBatch,
    max_len: usize,
) -> Result<ProductParity> {
    let tract_err = |e: TractError| Error::Parity(format!("tract: {e}"));
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .and_then(|m| {
            m.with_input_fact(0, f32::fact([1, FEATURE_DIM]).into())?
                .with_input_fact(1, i64::fact([1, max_len]).into())?
                .with_input_fact(2, f32::fact([1, max_len]).into())?
                .with_input_fact(3, f32::fact([1, 1]).into())?
                .into_optimized()?
                .into_runnable()
        })
        .map_err(tract_err)?;
    let n = items.labels_len()?.min(32);
    let mut parity = Parity::default();
    for modality in Modality::ALL {
        let b = modality.apply(items)?;
        let candle = model.probabilities(&b)?.narrow(0, 0, n)?.to_vec2::<f32>()?;
        for (k, c) in candle.iter().enumerate() {
            let row = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.get(k)?.flatten_all()?.to_vec1()?) };
            let ids: Vec<i64> = b
                .ids
                .get(k)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(i64::from)
                .collect();
            let inputs = tvec!(
                tract_ndarray::Array2::from_shape_vec((1, FEATURE_DIM), row(&b.features)?)
                    .map_err(|e| Error::Parity(e.to_string()))?
                    .into_tvalue(),
                tract_ndarray::Array2::from_shape_vec((1, max_len), ids)
                    .map_err(|e| Error::Parity(e.to_string()))?
                    .into_tvalue(),
                tract_ndarray::Array2::from_shape_vec((1, max_len), row(&b.mask)?)
                    .map_err(|e| Error::Parity(e.to_string()))?
                    .into_tvalue(),
                tract_ndarray::Array2::from_shape_vec((1, 1), row(&b.has_image)?)
                    .map_err(|e| Error::Parity(e.to_string()))?
                    .into_tvalue(),
            );
            let out = plan.run(inputs).map_err(tract_err)?;
            let t = out[0]
                .to_plain_array_view::<f32>()
                .map_err(tract_err)?
                .iter()
                .copied()
                .collect::<Vec<f32>>();
            parity.compare(format!("{} probabilities", modality.name()), c, &t)?;
        }
    }
    Ok(ProductParity {
        items: n,
        max_abs_diff: parity.max_abs_diff,
    })
}

/// Write the model folder atomically: the ONNX head and the report.
pub fn write_dir(out_dir: &Path, run: &ProductRun) -> Result<()> {
    crate::run::ModelFolder::new()
        .with(PRODUCT_HEAD_ONNX, run.onnx.clone())
        .with(PRODUCT_METRICS, serde_json::to_string_pretty(&run.report)?)
        .write(out_dir, |_| Ok(vec![]))?;
    Ok(())
}

impl ProductBatch {
    /// Items in the batch.
    pub fn labels_len(&self) -> Result<usize> {
        Ok(self.ids.dim(0)?)
    }
}
