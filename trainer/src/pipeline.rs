//! The classification run: features → head → evaluation → ONNX export → tract parity →
//! model folder (`head.onnx` on `backbone.onnx`, their NNEF forms `head.nnef` and
//! `backbone.q8` for browsers, `manifest.json`, `metrics.json`, `report.svg`,
//! `head.safetensors`). Used by the `trainer` CLI and by the api's retrain worker.
//!
//! The output folder appears only when every step succeeded ([`crate::run::folder`]), so a
//! failed or cancelled run never leaves a half-written model.

use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use contract::{ModelFiles, Task};
use serde::{Deserialize, Serialize};
use wasm_infer::{EvalMetrics, ModelManifest, Preprocess};

use crate::backbone::Backbone;
use crate::dataset::{Dataset, Sample, Split};
use crate::export::{OUTPUT_NAME, export_head};
use crate::run::{
    CacheStats, ExportedHead, FEATURE_BATCH, FeaturePass, FeatureStore, ModelFolder, Parity,
    ShippedBackbone, Trained, View, batched, image_manifest, inference_tensor,
};
use crate::train::{EpochMetrics, FitData, Head, TrainConfig, fit};
use crate::{Error, Result};

// The shared run pieces, at the paths callers have always used.
pub use crate::run::{PARITY_TOLERANCE, Progress, RunMeta, pixels, replace_dir, write_file};

/// Images the parity check runs through candle and tract.
pub const PARITY_IMAGES: usize = 64;

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The manifest written next to the model.
    pub manifest: ModelManifest,
    /// Per-epoch curves.
    pub history: Vec<EpochMetrics>,
    /// Epoch whose head was kept.
    pub best_epoch: usize,
    /// Training config used.
    pub config: TrainConfig,
    /// Images per split.
    pub split_sizes: SplitSizes,
    /// candle vs tract on the exported `backbone.onnx` + `head.onnx`.
    pub parity: ParityReport,
    /// Where the time went.
    pub timing: Timing,
    /// The candidate, its baselines and the champion on the same examples: what the registry's
    /// gate decides on, per example, so the verdict can be recomputed.
    #[serde(default)]
    pub evidence: Option<contract::evidence::Evidence>,
}

/// Images per split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SplitSizes {
    /// Images the head trains on (80 %).
    pub train: usize,
    /// Images that pick the epoch (10 %).
    pub val: usize,
    /// Images the reported metrics come from (10 %).
    pub test: usize,
}

/// candle vs tract on the same images.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ParityReport {
    /// Images compared.
    pub images: usize,
    /// Largest absolute difference on any probability.
    pub max_abs_diff: f32,
    /// Whether every image had the same argmax.
    pub same_argmax: bool,
    /// The shipped 8-bit backbone against the `f32` one, both through tract with the head:
    /// images whose top-1 label is the same (of `images`).
    #[serde(default)]
    pub int8_same_top1: usize,
    /// … and the largest absolute difference on any probability.
    #[serde(default)]
    pub int8_max_abs_diff: f32,
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timing {
    /// Seconds getting the backbone features (all views, cached or computed).
    pub features_secs: f64,
    /// Views the run used (training images × views + validation + test images).
    pub feature_images: usize,
    /// How many of them the feature cache had, and how many the backbone computed.
    #[serde(default)]
    pub feature_cache: CacheStats,
    /// Seconds fitting the head.
    pub fit_secs: f64,
    /// Whole run, seconds.
    pub total_secs: f64,
    /// Training throughput: augmented training images through backbone and head per second.
    pub train_images_per_sec: f64,
}

/// Backbone features of a run: `views` augmented views of the training images, clean views
/// of the validation and test images.
struct Features {
    train_views: Vec<Tensor>,
    /// Clean view of the training images (the kNN baseline's reference).
    train_clean: Tensor,
    val: Tensor,
    test: Tensor,
    /// Augmented views of the test images, when the gate cross-validates.
    test_views: Option<Vec<Tensor>>,
    /// Seconds spent on the training views.
    train_secs: f64,
    /// Seconds spent on all views.
    secs: f64,
    /// Views in all (cached or computed).
    images: usize,
    /// Where they came from.
    cache: CacheStats,
}

/// The feature pass of a classification run (through the feature cache when there is one).
fn embed_splits(
    backbone: &Backbone,
    cache: Option<&dyn FeatureStore>,
    config: &TrainConfig,
    prep: &Preprocess,
    (train, val, test): (&[&Sample], &[&Sample], &[&Sample]),
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Features> {
    let cross_validate = test.len() < config.cv_below;
    let test_augmented = if cross_validate { test.len() } else { 0 };
    let images =
        (train.len() + test_augmented) * config.views + val.len() + test.len() + train.len();
    let mut pass = FeaturePass::new(backbone, cache, prep, images);
    let view = |index: usize| View::Augmented {
        index: index as u32,
        min_area: config.min_crop_area,
    };
    let mut train_views = Vec::with_capacity(config.views);
    for index in 0..config.views {
        train_views.push(pass.features(train, view(index), progress)?);
    }
    let train_secs = pass.elapsed_secs();
    let val = pass.features(val, View::Clean, progress)?;
    let test_clean = pass.features(test, View::Clean, progress)?;
    let train_clean = pass.features(train, View::Clean, progress)?;
    let test_views = if cross_validate {
        let views = (0..config.views)
            .map(|index| pass.features(test, view(index), progress))
            .collect::<Result<Vec<_>>>()?;
        Some(views)
    } else {
        None
    };
    Ok(Features {
        train_views,
        train_clean,
        val,
        test: test_clean,
        test_views,
        train_secs,
        secs: pass.elapsed_secs(),
        images,
        cache: pass.stats(),
    })
}

/// Test-split metrics of `head`, with the majority class of the training labels as baseline.
fn test_metrics(
    dataset: &Dataset,
    head: &Head,
    test_x: &Tensor,
    train_y: &[u32],
    test_y: &[u32],
) -> Result<EvalMetrics> {
    let test_probs = head.probabilities(test_x)?;
    let predicted = test_probs.argmax(1)?.to_vec1::<u32>()?;
    let majority = crate::evidence::majority(train_y, dataset.labels.len());
    Ok(crate::eval::evaluate(
        &dataset.labels,
        test_y,
        &predicted,
        majority,
    ))
}

/// The images of each split; refused when too few to train and evaluate.
#[allow(clippy::type_complexity)] // the three splits and their sizes, as `run` names them
fn splits(dataset: &Dataset) -> Result<(Vec<&Sample>, Vec<&Sample>, Vec<&Sample>, SplitSizes)> {
    let train: Vec<&Sample> = dataset.split(Split::Train).collect();
    let val: Vec<&Sample> = dataset.split(Split::Val).collect();
    let test: Vec<&Sample> = dataset.split(Split::Test).collect();
    let sizes = SplitSizes {
        train: train.len(),
        val: val.len(),
        test: test.len(),
    };
    if train.len() < dataset.labels.len() || val.is_empty() || test.is_empty() {
        return Err(Error::Dataset(format!(
            "too few images to train and evaluate: {} train, {} val, {} test \
             (need ≥ 1 per class to train and ≥ 1 each to validate and test; ~10 per class is a minimum in practice)",
            sizes.train, sizes.val, sizes.test
        )));
    }
    Ok((train, val, test, sizes))
}

/// Train, evaluate, export and verify a classifier; write it to `out_dir`. Backbone features
/// come from `cache` where it has them (and are written to it where not).
pub fn run(
    dataset: &Dataset,
    backbone: &Backbone,
    cache: Option<&dyn FeatureStore>,
    config: &TrainConfig,
    meta: &RunMeta,
    out_dir: &Path,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Trained<RunReport>> {
    config.validate()?;
    let started = Instant::now();
    let prep = Preprocess::efficientnet_lite();
    let (train, val, test, sizes) = splits(dataset)?;

    // 1. Backbone features: clean views of val/test, `views` augmented views of train.
    let features = embed_splits(
        backbone,
        cache,
        config,
        &prep,
        (&train, &val, &test),
        progress,
    )?;

    // 2. Head.
    let t1 = Instant::now();
    let labels_of = |v: &[&Sample]| v.iter().map(|s| s.label as u32).collect::<Vec<u32>>();
    let (train_y, val_y, test_y) = (labels_of(&train), labels_of(&val), labels_of(&test));
    let data = FitData {
        train_views: &features.train_views,
        train_labels: &train_y,
        val: &features.val,
        val_labels: &val_y,
        classes: dataset.labels.len(),
    };
    let mut on_batch = |b: crate::train::BatchProgress, epoch: Option<&EpochMetrics>| {
        let go = progress(Progress::Batch {
            epoch: b.epoch,
            epochs: b.epochs,
            batch: b.batch,
            batches: b.batches,
            loss: b.loss,
        });
        match epoch {
            Some(m) => go && progress(Progress::Epoch(m.clone())),
            None => go,
        }
    };
    let fitted = fit(&data, config, &mut on_batch)?;
    let fit_secs = t1.elapsed().as_secs_f64();

    // 3. Test metrics, and the gate's evidence: the candidate, its baselines and the champion
    //    on the same examples.
    let mut metrics = test_metrics(dataset, &fitted.head, &features.test, &train_y, &test_y)?;
    let ids = |v: &[&Sample]| v.iter().map(|s| s.sha256.clone()).collect::<Vec<_>>();
    let split_features = crate::evidence::Splits {
        labels: &dataset.labels,
        train_views: &features.train_views,
        train_clean: &features.train_clean,
        train_y: &train_y,
        train_ids: ids(&train),
        test_views: features.test_views.as_deref(),
        test_clean: &features.test,
        test_y: &test_y,
        test_ids: ids(&test),
        val: &features.val,
        val_y: &val_y,
    };
    let evidence = crate::evidence::classification(
        &split_features,
        &fitted.head,
        config,
        meta.champion.as_ref(),
        &mut |fold, folds| progress(Progress::Evaluate { fold, folds }),
    )?;
    metrics.estimate = Some(crate::evidence::estimate(&evidence, config.seed));

    // 4. Export + manifest.
    if !progress(Progress::Export) {
        return Err(Error::Cancelled);
    }
    let id = meta.identify("cls", dataset, config);
    let shipped = ShippedBackbone::of(backbone)?;
    let exported = ExportedHead::new(export_head(&fitted.head, &id.model_id)?)?;
    let output = batched(OUTPUT_NAME, &[dataset.labels.len()]);
    let manifest = ModelManifest {
        metrics: Some(metrics),
        ..image_manifest(
            id,
            &shipped,
            Task::Classify,
            &exported,
            &prep,
            output,
            dataset.labels.clone(),
        )
    };

    // 5. Parity: candle (features + head) vs tract on the exported backbone + head.
    //    The candle side reuses the run's own features of the test (then validation) images,
    //    so the check costs no backbone pass.
    let take = PARITY_IMAGES.min(test.len() + val.len());
    let chosen: Vec<&Sample> = test.iter().chain(&val).take(take).copied().collect();
    let candle_x = Tensor::cat(&[&features.test, &features.val], 0)?.narrow(0, 0, take)?;
    let parity = parity_on(
        &chosen,
        &candle_x,
        &fitted.head,
        (&shipped, &exported),
        &manifest,
    )?;

    let report = RunReport {
        manifest,
        history: fitted.history,
        best_epoch: fitted.best_epoch,
        config: config.clone(),
        split_sizes: sizes,
        parity,
        timing: Timing {
            features_secs: features.secs,
            feature_images: features.images,
            feature_cache: features.cache,
            fit_secs,
            total_secs: started.elapsed().as_secs_f64(),
            train_images_per_sec: (train.len() * config.views) as f64
                / (features.train_secs + fit_secs),
        },
        evidence: Some(evidence),
    };
    let files = write_model_dir(out_dir, &shipped, exported, &fitted.head, &report)?;
    Ok(Trained { report, files })
}

/// Run up to [`PARITY_IMAGES`] images (test first, then val, then train) through candle and
/// through tract on the exported backbone + head (`onnx`); fail if any probability differs
/// by more than [`PARITY_TOLERANCE`] or any argmax differs.
pub fn check_parity(
    dataset: &Dataset,
    backbone: &Backbone,
    head: &Head,
    exported: &ExportedHead,
    manifest: &ModelManifest,
) -> Result<ParityReport> {
    let shipped = ShippedBackbone::of(backbone)?;
    let mut chosen: Vec<&Sample> = Vec::new();
    for split in [Split::Test, Split::Val, Split::Train] {
        chosen.extend(dataset.split(split).take(PARITY_IMAGES - chosen.len()));
    }
    let mut pass = FeaturePass::new(backbone, None, &manifest.preprocess, chosen.len());
    let features = pass.features(&chosen, View::Clean, &mut |_| true)?;
    parity_on(&chosen, &features, head, (&shipped, exported), manifest)
}

/// [`check_parity`] on images whose candle backbone features (inference view) are known:
/// candle's head on them against tract on the exported backbone + head from the pixels.
fn parity_on(
    chosen: &[&Sample],
    features: &Tensor,
    head: &Head,
    (backbone, exported): (&ShippedBackbone, &ExportedHead),
    manifest: &ModelManifest,
) -> Result<ParityReport> {
    let session = backbone.session(&exported.onnx, manifest)?;
    let shipped = backbone.shipped_session(&exported.nnef, manifest)?;
    let (mut int8_same_top1, mut int8) = (0, Parity::default());
    let mut parity = Parity::default();
    let candle = head.probabilities(features)?.to_vec2::<f32>()?;
    for (group, candle) in chosen
        .chunks(FEATURE_BATCH)
        .zip(candle.chunks(FEATURE_BATCH))
    {
        let mut batch = Vec::new();
        for s in group {
            batch.extend(inference_tensor(*s, &manifest.preprocess)?);
        }
        let tract = session.run(&batch)?;
        for (t, q) in tract.iter().zip(shipped.run(&batch)?) {
            int8_same_top1 += usize::from(argmax(t) == argmax(&q));
            int8.max_abs_diff = int8.max_abs_diff.max(crate::run::max_abs_diff(t, &q));
        }
        for ((c, t), s) in candle.iter().zip(&tract).zip(group) {
            let (ac, at) = (argmax(c), argmax(t));
            if ac != at {
                return Err(Error::Parity(format!(
                    "{}: candle predicts {} but tract predicts {}",
                    s.source, manifest.labels[ac], manifest.labels[at]
                )));
            }
            parity.compare(format_args!("{}: probabilities", s.source), c, t)?;
        }
    }
    Ok(ParityReport {
        images: chosen.len(),
        max_abs_diff: parity.max_abs_diff,
        same_argmax: true,
        int8_same_top1,
        int8_max_abs_diff: int8.max_abs_diff,
    })
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// Write `backbone.onnx`, `backbone.q8`, `head.onnx`, `head.nnef`, `manifest.json`, `metrics.json`,
/// `report.svg`, `head.safetensors` to `out_dir` atomically; returns them as written.
pub fn write_model_dir(
    out_dir: &Path,
    backbone: &ShippedBackbone,
    exported: ExportedHead,
    head: &Head,
    report: &RunReport,
) -> Result<ModelFolder> {
    let svg = crate::report::svg(&report.manifest, &report.history, report.best_epoch);
    ModelFolder::new()
        .with(ModelFiles::BACKBONE_ONNX, backbone.bytes.clone())
        .with(ModelFiles::BACKBONE_INT8, backbone.int8.clone())
        .with(ModelFiles::HEAD_ONNX, exported.onnx)
        .with(ModelFiles::HEAD_NNEF, exported.nnef)
        .with(ModelFiles::MANIFEST, report.manifest.to_json()?)
        .with(ModelFiles::METRICS, serde_json::to_string_pretty(report)?)
        .with(ModelFiles::REPORT, svg)
        .write(out_dir, |tmp| {
            head.save(&tmp.join(ModelFiles::HEAD))?;
            Ok(vec![ModelFiles::HEAD])
        })
}
