//! The classification run: features → head → evaluation → ONNX export → tract parity →
//! model folder (`model.onnx`, `manifest.json`, `metrics.json`, `report.svg`,
//! `head.safetensors`). Used by the `trainer` CLI and by the api's retrain worker.
//!
//! The output folder appears only when every step succeeded ([`crate::run::folder`]), so a
//! failed or cancelled run never leaves a half-written model.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use contract::{ModelFiles, Task};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use wasm_infer::preprocess::image_to_tensor_with;
use wasm_infer::{CropBox, EvalMetrics, ModelManifest, Preprocess, Session};

use crate::backbone::{Backbone, INPUT_SIZE};
use crate::dataset::{Dataset, Sample, Split};
use crate::export::{OUTPUT_NAME, export_onnx};
use crate::run::{
    FEATURE_BATCH, FeatureCounter, ModelFolder, Parity, Trained, batched, features_of,
    image_manifest, inference_tensor, onnx_file,
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
    /// candle vs tract on the exported `model.onnx`.
    pub parity: ParityReport,
    /// Where the time went.
    pub timing: Timing,
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
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timing {
    /// Seconds in the backbone (all views).
    pub features_secs: f64,
    /// Backbone images processed.
    pub feature_images: usize,
    /// Seconds fitting the head.
    pub fit_secs: f64,
    /// Whole run, seconds.
    pub total_secs: f64,
    /// Training throughput: augmented training images through backbone and head per second.
    pub train_images_per_sec: f64,
}

/// A random resized crop (area fraction in `[min_area, 1]`, aspect 3/4–4/3) plus a coin flip.
fn random_view(rng: &mut StdRng, w: u32, h: u32, min_area: f32) -> (CropBox, bool) {
    let (wf, hf) = (w as f32, h as f32);
    for _ in 0..10 {
        let area = wf * hf * rng.random_range(min_area..=1.0);
        let log_ratio = rng.random_range((3f32 / 4.0).ln()..=(4f32 / 3.0).ln());
        let ratio = log_ratio.exp();
        let bw = (area * ratio).sqrt();
        let bh = (area / ratio).sqrt();
        if bw <= wf && bh <= hf {
            let x = rng.random_range(0.0..=wf - bw);
            let y = rng.random_range(0.0..=hf - bh);
            return (CropBox { x, y, w: bw, h: bh }, rng.random_bool(0.5));
        }
    }
    let side = wf.min(hf);
    (
        CropBox {
            x: (wf - side) / 2.0,
            y: (hf - side) / 2.0,
            w: side,
            h: side,
        },
        rng.random_bool(0.5),
    )
}

/// Backbone features of a run: `views` augmented views of the training images, clean views
/// of the validation and test images.
struct Features {
    train_views: Vec<Tensor>,
    val: Tensor,
    test: Tensor,
    /// Seconds spent on the training views.
    train_secs: f64,
    /// Seconds spent on all views.
    secs: f64,
    /// Backbone images processed.
    images: usize,
}

/// The feature pass of a classification run.
fn embed_splits(
    backbone: &Backbone,
    config: &TrainConfig,
    prep: &Preprocess,
    (train, val, test): (&[&Sample], &[&Sample], &[&Sample]),
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Features> {
    let images = train.len() * config.views + val.len() + test.len();
    let mut counter = FeatureCounter::new(images);
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed_f00d);
    let mut train_views = Vec::with_capacity(config.views);
    for _ in 0..config.views {
        let boxes: Vec<(CropBox, bool)> = train
            .iter()
            .map(|s| random_view(&mut rng, s.width, s.height, config.min_crop_area))
            .collect();
        let inputs = train.iter().zip(boxes).map(|(s, (crop, flip))| {
            Ok(image_to_tensor_with(
                &pixels(&s.decode()?)?,
                prep,
                crop,
                flip,
            )?)
        });
        let mut tick = |n: usize| counter.tick(n, progress);
        train_views.push(features_of(backbone, inputs, train.len(), &mut tick)?);
    }
    let train_secs = counter.elapsed_secs();
    let val = counter.clean(backbone, val, prep, progress)?;
    let test = counter.clean(backbone, test, prep, progress)?;
    Ok(Features {
        train_views,
        val,
        test,
        train_secs,
        secs: counter.elapsed_secs(),
        images,
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
    let mut train_counts = vec![0usize; dataset.labels.len()];
    train_y.iter().for_each(|l| train_counts[*l as usize] += 1);
    let majority = (0..train_counts.len()).max_by_key(|&i| (train_counts[i], usize::MAX - i));
    Ok(crate::eval::evaluate(
        &dataset.labels,
        test_y,
        &predicted,
        majority.unwrap_or(0) as u32,
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

/// Train, evaluate, export and verify a classifier; write it to `out_dir`.
pub fn run(
    dataset: &Dataset,
    backbone: &Backbone,
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
    let features = embed_splits(backbone, config, &prep, (&train, &val, &test), progress)?;

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

    // 3. Test metrics.
    let metrics = test_metrics(dataset, &fitted.head, &features.test, &train_y, &test_y)?;

    // 4. Export + manifest.
    if !progress(Progress::Export) {
        return Err(Error::Cancelled);
    }
    let id = meta.identify("cls", dataset, config);
    let onnx = export_onnx(backbone, &fitted.head, &id.model_id)?;
    let output = batched(OUTPUT_NAME, &[dataset.labels.len()]);
    let file = onnx_file(ModelFiles::MODEL_ONNX, &onnx);
    let manifest = ModelManifest {
        metrics: Some(metrics),
        ..image_manifest(
            id,
            Task::Classify,
            file,
            &prep,
            output,
            dataset.labels.clone(),
        )
    };

    // 5. Parity: candle (features + head) vs tract on the exported bytes.
    let parity = check_parity(dataset, backbone, &fitted.head, &onnx, &manifest)?;

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
            fit_secs,
            total_secs: started.elapsed().as_secs_f64(),
            train_images_per_sec: (train.len() * config.views) as f64
                / (features.train_secs + fit_secs),
        },
    };
    let files = write_model_dir(out_dir, onnx, &fitted.head, &report)?;
    Ok(Trained { report, files })
}

/// Run up to [`PARITY_IMAGES`] images (test first, then val, then train) through candle and
/// through tract on the exported bytes; fail if any probability differs by more than
/// [`PARITY_TOLERANCE`] or any argmax differs.
pub fn check_parity(
    dataset: &Dataset,
    backbone: &Backbone,
    head: &Head,
    onnx: &[u8],
    manifest: &ModelManifest,
) -> Result<ParityReport> {
    let mut chosen: Vec<&Sample> = Vec::new();
    for split in [Split::Test, Split::Val, Split::Train] {
        chosen.extend(dataset.split(split).take(PARITY_IMAGES - chosen.len()));
    }
    let session = Session::new(onnx, manifest.clone())?;
    let mut parity = Parity::default();
    for group in chosen.chunks(FEATURE_BATCH) {
        let mut batch = Vec::new();
        for s in group {
            batch.extend(inference_tensor(s, &manifest.preprocess)?);
        }
        let input = Tensor::from_slice(
            &batch,
            (group.len(), 3, INPUT_SIZE, INPUT_SIZE),
            &Device::Cpu,
        )?;
        let candle = head
            .probabilities(&backbone.features(&input)?)?
            .to_vec2::<f32>()?;
        let tract = session.run(&batch)?;
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
    })
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// Write `model.onnx`, `manifest.json`, `metrics.json`, `report.svg`, `head.safetensors` to
/// `out_dir` atomically; returns them as written.
pub fn write_model_dir(
    out_dir: &Path,
    onnx: Vec<u8>,
    head: &Head,
    report: &RunReport,
) -> Result<ModelFolder> {
    let svg = crate::report::svg(&report.manifest, &report.history, report.best_epoch);
    ModelFolder::new()
        .with(ModelFiles::MODEL_ONNX, onnx)
        .with(ModelFiles::MANIFEST, report.manifest.to_json()?)
        .with(ModelFiles::METRICS, serde_json::to_string_pretty(report)?)
        .with(ModelFiles::REPORT, svg)
        .write(out_dir, |tmp| {
            head.save(&tmp.join(ModelFiles::HEAD))?;
            Ok(vec![ModelFiles::HEAD])
        })
}
