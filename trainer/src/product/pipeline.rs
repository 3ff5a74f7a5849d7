//! A whole product-classification run: features of every image (through the feature cache),
//! the tokenizer from the training texts, training, the three-modality test figures, the ONNX
//! export and its candle ↔ tract parity, and the model folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use contract::ModelFiles;
use contract::evidence::{Evidence, Method, Outcomes, Statistic};
use serde::{Deserialize, Serialize};
use wasm_infer::{
    Encoded, ModelManifest, Preprocess, ProductInputs, ProductMetrics, ProductSession, Task,
    Tokenizer, TokenizerSpec,
};

use super::data::{ProductItem, ProductSet};
use super::eval::{Modality, score_named};
use super::export::{HAS_IMAGE_NAME, IDS_NAME, MASK_NAME, export_product_head, with_shipped_words};
use super::fit::{ProductConfig, ProductEpoch, fit};
use super::model::{ProductBatch, ProductModel};
use crate::backbone::{Backbone, FEATURE_DIM};
use crate::dataset::Split;
use crate::export::OUTPUT_NAME;
use crate::run::{
    CacheStats, ExportedHead, FeaturePass, FeatureStore, Identity, ModelFolder, Parity, Progress,
    RunMeta, ShippedBackbone, View, batched, image_manifest, now_rfc3339,
};
use crate::{Error, Result};

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
    /// Largest probability difference, candle vs the ONNX head (what the api runs).
    pub max_abs_diff: f32,
    /// Largest probability difference, candle vs the NNEF head (what browsers run).
    pub nnef_max_abs_diff: f32,
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
    /// What the registry's gate decides on: each scored test item right or wrong with both
    /// inputs, next to the majority class and the model's own towers alone (text only, image
    /// only) on the same items; the api adds the champion.
    pub evidence: Option<Evidence>,
}

/// A finished run: the weights, the report and the model folder's files.
#[derive(Debug)]
pub struct ProductRun {
    /// The trained weights.
    pub model: ProductModel,
    /// The report (`metrics.json`).
    pub report: ProductReport,
    /// The manifest (`manifest.json`).
    pub manifest: ModelManifest,
    /// Every file of the model folder, as written.
    pub files: ModelFolder,
}

/// One split's items as model inputs.
struct Part<'a> {
    items: Vec<&'a ProductItem>,
    batch: ProductBatch,
    labels: Vec<u32>,
}

/// Positions in `set.items` of the items of `split`, in file order.
fn positions(set: &ProductSet, split: Split) -> Vec<usize> {
    (0..set.items.len())
        .filter(|&k| set.items[k].split == split)
        .collect()
}

/// The items of `set` at `picks` as one batch; `texts` is parallel to `set.items`.
fn part<'a>(
    set: &'a ProductSet,
    picks: &[usize],
    rows: &std::collections::HashMap<String, Vec<f32>>,
    texts: &[Encoded],
) -> Result<Part<'a>> {
    let items: Vec<&ProductItem> = picks.iter().map(|&k| &set.items[k]).collect();
    let features: Vec<Option<&[f32]>> = items
        .iter()
        .map(|i| {
            i.image
                .as_ref()
                .and_then(|s| rows.get(&s.sha256).map(Vec::as_slice))
        })
        .collect();
    let encoded: Vec<&Encoded> = picks.iter().map(|&k| &texts[k]).collect();
    let batch = ProductBatch::new(&features, &encoded, FEATURE_DIM)?;
    let labels = items.iter().map(|i| i.label as u32).collect();
    Ok(Part {
        items,
        batch,
        labels,
    })
}

/// Train, evaluate and export a product classifier on `set`, and write its model folder to
/// `out_dir` (replaced atomically: the backbone in both forms, `product_head.onnx` and
/// `.nnef`, `manifest.json`, `metrics.json`). `progress` sees the feature pass, every epoch
/// and the export, and cancels the run by returning false.
pub fn run(
    set: &ProductSet,
    backbone: &Backbone,
    store: Option<&dyn FeatureStore>,
    config: &ProductConfig,
    meta: &RunMeta,
    out_dir: &Path,
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
        &Preprocess::efficientnet_lite(),
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
    let train = part(set, &positions(set, Split::Train), &rows, &texts)?;
    let val = part(set, &positions(set, Split::Val), &rows, &texts)?;
    let test_items: Vec<usize> = positions(set, Split::Test)
        .into_iter()
        .filter(|&k| set.items[k].image.is_some() && texts[k].mask[0] > 0.0)
        .collect();
    if test_items.is_empty() {
        return Err(Error::Dataset(
            "no test item has both a text and an image to score".into(),
        ));
    }
    let test = part(set, &test_items, &rows, &texts)?;

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
    // Scored as shipped: the word table in 8 bits.
    let model = with_shipped_words(fitted.model)?;

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

    if !progress(Progress::Export) {
        return Err(Error::Cancelled);
    }
    let snapshot = set.snapshot_id();
    let created_at = now_rfc3339();
    let id = Identity {
        model_id: meta.model_id_or("product", &snapshot, &created_at, config),
        snapshot,
        created_at: created_at.clone(),
        parent_model_id: meta.parent_model_id.clone(),
    };
    let model_id = id.model_id.clone();
    let shipped = ShippedBackbone::of(backbone)?;
    let onnx = export_product_head(&model, config.max_len, &model_id)?;
    let words = model.words.dims2()?;
    let nnef = wasm_infer::nnef::export_product_head(
        &onnx,
        FEATURE_DIM,
        config.max_len,
        [words.0, words.1],
    )?;
    let head = ExportedHead { onnx, nnef };
    let metrics = ProductMetrics {
        text: text_s,
        image: image_s,
        both: both_s,
        majority_baseline,
    };
    let manifest = ModelManifest {
        product: Some(ProductInputs {
            ids: batched(IDS_NAME, &[config.max_len]),
            mask: batched(MASK_NAME, &[config.max_len]),
            has_image: batched(HAS_IMAGE_NAME, &[1]),
            tokenizer: spec.clone(),
        }),
        product_metrics: Some(metrics.clone()),
        ..image_manifest(
            id,
            &shipped,
            Task::Product,
            &head,
            &Preprocess::efficientnet_lite(),
            batched(OUTPUT_NAME, &[set.labels.len()]),
            set.labels.clone(),
        )
    };
    manifest.validate()?;
    let parity = check_parity(&model, &manifest, (&shipped, &head), &test.batch)?;

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
    let truth = &test.labels;
    let evidence = Evidence {
        boxes: None,
        metric: "weighted_f1".into(),
        statistic: Statistic::WeightedF1,
        method: Method::TestSplit,
        items: test
            .items
            .iter()
            .map(|i| {
                i.image
                    .as_ref()
                    .map(|s| s.sha256.clone())
                    .unwrap_or_default()
            })
            .collect(),
        truth: Some(truth.clone()),
        candidate: Outcomes::from_labels("candidate", predicted[2].clone(), truth),
        baselines: vec![
            Outcomes::from_labels("majority class", vec![majority; truth.len()], truth).trivial(),
            Outcomes::from_labels("its text tower alone", predicted[0].clone(), truth),
            Outcomes::from_labels("its image tower alone", predicted[1].clone(), truth),
        ],
        champion: None,
    };
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
        test: metrics,
        parity,
        seconds: [feature_secs, fit_secs],
        feature_cache: pass.stats(),
        splits: ProductSplits {
            train: sources(&train),
            val: sources(&val),
            test: sources(&test),
            predicted: predicted_rows,
        },
        evidence: Some(evidence),
    };
    let files = ModelFolder::new()
        .with(ModelFiles::BACKBONE_ONNX, shipped.bytes)
        .with(ModelFiles::BACKBONE_INT8, shipped.int8)
        .with(ModelFiles::PRODUCT_HEAD_ONNX, head.onnx)
        .with(ModelFiles::PRODUCT_HEAD_NNEF, head.nnef)
        .with(ModelFiles::MANIFEST, manifest.to_json()?)
        .with(ModelFiles::METRICS, serde_json::to_string_pretty(&report)?)
        .write(out_dir, |_| Ok(vec![]))?;
    Ok(ProductRun {
        model,
        report,
        manifest,
        files,
    })
}

/// Probabilities of up to 32 items in each modality, by candle and by tract on the exported
/// bytes: the ONNX head (on the `f32` backbone, as the api loads it) and the NNEF head (on the
/// 8-bit backbone, as browsers load it), given the same features; fails beyond
/// [`crate::run::PARITY_TOLERANCE`].
pub fn check_parity(
    model: &ProductModel,
    manifest: &ModelManifest,
    (backbone, head): (&ShippedBackbone, &ExportedHead),
    items: &ProductBatch,
) -> Result<ProductParity> {
    let server = ProductSession::new(
        Arc::new(wasm_infer::Backbone::full(&backbone.bytes, manifest)?),
        &head.onnx,
        manifest.clone(),
    )?;
    let browser = ProductSession::from_nnef(
        Arc::new(wasm_infer::Backbone::new(&backbone.int8, manifest)?),
        &head.nnef,
        manifest.clone(),
    )?;
    let n = items.items()?.min(32);
    let (mut onnx, mut nnef) = (Parity::default(), Parity::default());
    for modality in Modality::ALL {
        let b = modality.apply(items)?;
        let candle = model.probabilities(&b)?.narrow(0, 0, n)?.to_vec2::<f32>()?;
        let has: Vec<f32> = b.has_image.flatten_all()?.to_vec1()?;
        let features = b.features.to_vec2::<f32>()?;
        let ids = b.ids.to_vec2::<u32>()?;
        let mask = b.mask.to_vec2::<f32>()?;
        for (k, c) in candle.iter().enumerate() {
            let f = (has[k] > 0.0).then_some(features[k].as_slice());
            let text = Encoded {
                ids: ids[k].iter().map(|&i| i64::from(i)).collect(),
                mask: mask[k].clone(),
            };
            let what = format!("{} probabilities", modality.name());
            onnx.compare(&what, c, &server.scores_encoded(f, &text)?)?;
            nnef.compare(
                format!("{what} (NNEF head)"),
                c,
                &browser.scores_encoded(f, &text)?,
            )?;
        }
    }
    Ok(ProductParity {
        items: n,
        max_abs_diff: onnx.max_abs_diff,
        nnef_max_abs_diff: nnef.max_abs_diff,
    })
}
