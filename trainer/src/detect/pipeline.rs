//! A whole detection run: feature maps of every image (through the feature cache), the head
//! trained on the train split and selected on val, COCO mAP on the test split, the ONNX and
//! NNEF heads and their candle ↔ tract parity, and the model folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;
use contract::ModelFiles;
use contract::detection::{
    DecodeParams, Detection, DetectionMetrics, DetectionSpec, MeanAp, decode, iou,
};
use contract::evidence::Evidence;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasm_infer::{Fit, ModelManifest, Preprocess, Session, Task};

use super::data::DetectItem;
use super::export::{MAPS_NAME, export_detect_head};
use super::fit::{DetectConfig, DetectEpoch, DetectFit, fit, score, shown_threshold, truths};
use super::model::DetectHead;
use crate::backbone::{Backbone, FEATURE_DIM, MAP_SIDE};
use crate::run::{
    CacheStats, ExportedHead, FeaturePass, FeatureStore, Identity, ModelFolder, Parity, Progress,
    RunMeta, ShippedBackbone, View, batched, image_manifest, inference_tensor, now_rfc3339,
};
use crate::{Error, Result};

/// What clients show: boxes from a score chosen on the validation split
/// ([`super::fit::shown_threshold`]), suppressed at IoU 0.5, at most 100.
pub fn shown(min_score: f32) -> DecodeParams {
    DecodeParams {
        min_score,
        nms_iou: 0.5,
        max_detections: 100,
    }
}

/// The preprocessing of detection models: the backbone's, on the whole image stretched.
pub fn preprocess() -> Preprocess {
    Preprocess {
        fit: Fit::Stretch,
        crop_fraction: 1.0,
        ..Preprocess::efficientnet_lite()
    }
}

/// The images of a run, by split.
#[derive(Debug, Clone, Copy)]
pub struct Splits<'a> {
    /// Trained on.
    pub train: &'a [&'a DetectItem],
    /// Picks the epoch.
    pub val: &'a [&'a DetectItem],
    /// Scored.
    pub test: &'a [&'a DetectItem],
}

/// Feature maps and the fitted head, before export.
#[derive(Debug)]
pub struct Trained {
    /// The fit, its head as shipped ([`DetectHead::shipped`]).
    pub fit: DetectFit,
    /// Test mAP.
    pub test: MeanAp,
    /// Test feature maps (for parity).
    pub test_maps: Tensor,
    /// The score from which boxes are shown, chosen on the validation split, and the F1 of
    /// the boxes shown there.
    pub shown: (f32, f64),
    /// Seconds in the backbone (or its cache) and in training.
    pub seconds: [f64; 2],
    /// Where the maps came from.
    pub feature_cache: CacheStats,
}

/// Feature maps of the three splits, the fit, the test score.
pub fn train(
    splits: Splits<'_>,
    classes: usize,
    backbone: &Backbone,
    store: Option<&dyn FeatureStore>,
    config: &DetectConfig,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Trained> {
    config.validate()?;
    if classes == 0 {
        return Err(Error::Dataset("a detector needs ≥ 1 label".into()));
    }
    let started = Instant::now();
    let total = splits.train.len() + splits.val.len() + splits.test.len();
    let mut pass = FeaturePass::new(backbone, store, &preprocess(), total);
    let train_maps = pass.features(splits.train, View::WholeMap, progress)?;
    let val_maps = pass.features(splits.val, View::WholeMap, progress)?;
    let test_maps = pass.features(splits.test, View::WholeMap, progress)?;
    let feature_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let fitted = fit(
        config,
        classes,
        (&train_maps, splits.train),
        (&val_maps, splits.val),
        &mut |e: &DetectEpoch| {
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
    // Scored as shipped: the large weights in 8 bits.
    let fitted = DetectFit {
        head: fitted.head.shipped()?,
        ..fitted
    };
    let test = score(&fitted.head, &test_maps, splits.test)?;
    let shown = shown_threshold(&fitted.head, &val_maps, splits.val)?;
    Ok(Trained {
        fit: fitted,
        test,
        test_maps,
        shown,
        seconds: [feature_secs, fit_secs],
        feature_cache: pass.stats(),
    })
}

/// candle ↔ tract agreement on the exported detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectParity {
    /// Test images compared.
    pub images: usize,
    /// Largest difference of the head's maps, candle vs the ONNX head (what the api runs),
    /// given the same feature map.
    pub max_abs_diff: f32,
    /// The same against the NNEF head (what browsers run).
    pub nnef_max_abs_diff: f32,
    /// Largest difference of the maps from the image: candle's backbone and head vs tract's
    /// `f32` backbone and ONNX head.
    pub image_max_abs_diff: f32,
    /// Boxes shown (at the manifest's `detection.decode`) from candle's maps; tract's were the
    /// same boxes: same labels, in the same order, each overlapping candle's by IoU ≥ 0.999.
    pub boxes: usize,
}

/// What clients show, as chosen on the validation split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShownBoxes {
    /// Lowest score shown.
    pub min_score: f32,
    /// F1 of the boxes shown on the validation split.
    pub val_f1: f64,
}

/// Everything a run reports (`metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectReport {
    /// Model id.
    pub model_id: String,
    /// RFC 3339 time of the export.
    pub created_at: String,
    /// Trainer version.
    pub trainer_version: String,
    /// sha256 of the backbone weights whose feature maps the head reads.
    pub backbone_sha256: String,
    /// Labels, in map order.
    pub labels: Vec<String>,
    /// Images per split (train, val, test).
    pub counts: [usize; 3],
    /// The settings.
    pub config: DetectConfig,
    /// Per-epoch curves.
    pub history: Vec<DetectEpoch>,
    /// Epoch kept.
    pub best_epoch: usize,
    /// Test figures.
    pub test: DetectionMetrics,
    /// The score from which clients show boxes (chosen on the validation split), and the F1
    /// of the boxes shown there (a box right when it hits one of its label at IoU ≥ 0.5).
    pub shown: ShownBoxes,
    /// candle ↔ tract.
    pub parity: DetectParity,
    /// Seconds in the backbone (or reading its cache) and in training.
    pub seconds: [f64; 2],
    /// Where the feature maps came from.
    pub feature_cache: CacheStats,
    /// The test images' sources, in the order the detections index them.
    pub test_images: Vec<String>,
    /// Every test detection (down to a score of 0.001, as COCO scores them): what the figures
    /// were computed from.
    pub detections: Vec<Detection>,
    /// What the registry's gate decides on: mAP@0.5 on the test images, the candidate's and
    /// the baseline's detections matched to the true boxes ([`super::evidence`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// A finished run: the head, the report and the model folder's files.
#[derive(Debug)]
pub struct DetectRun {
    /// The trained head.
    pub head: DetectHead,
    /// The report (`metrics.json`).
    pub report: DetectReport,
    /// The manifest (`manifest.json`).
    pub manifest: ModelManifest,
    /// Every file of the model folder, as written.
    pub files: ModelFolder,
    /// The test images' feature maps (`[images, 1280, 7, 7]`, in the order of
    /// [`DetectReport::test_images`]): a champion's head is scored on them.
    pub test_maps: Tensor,
}

/// Content id of what a detector trains on: the labels, and each image's sha256 with its
/// boxes, in a fixed order.
pub fn snapshot_id(labels: &[String], splits: Splits<'_>) -> String {
    let mut rows: Vec<String> = [splits.train, splits.val, splits.test]
        .iter()
        .flat_map(|items| items.iter())
        .map(|i| {
            let boxes: Vec<String> = i
                .boxes
                .iter()
                .map(|b| {
                    format!(
                        "{}:{}:{}:{}:{}",
                        b.label, b.rect.x, b.rect.y, b.rect.w, b.rect.h
                    )
                })
                .collect();
            format!("{} {}", i.sha256, boxes.join(","))
        })
        .collect();
    rows.sort();
    let mut h = Sha256::new();
    h.update(labels.join("\n").as_bytes());
    for r in rows {
        h.update(b"\n");
        h.update(r.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Train, score and export a detector on `splits` (boxes labelled by `labels`), and write its
/// model folder to `out_dir` (replaced atomically: the backbone in both forms,
/// `detect_head.onnx` and `.nnef`, `manifest.json`, `metrics.json`). `progress` sees the
/// feature pass, every epoch and the export, and cancels the run by returning false.
#[allow(clippy::too_many_arguments)]
pub fn run(
    splits: Splits<'_>,
    labels: &[String],
    backbone: &Backbone,
    store: Option<&dyn FeatureStore>,
    config: &DetectConfig,
    meta: &RunMeta,
    out_dir: &Path,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<DetectRun> {
    if splits.test.is_empty() {
        return Err(Error::Dataset(
            "no test image to score the detector on".into(),
        ));
    }
    let trained = train(splits, labels.len(), backbone, store, config, progress)?;
    if !progress(Progress::Export) {
        return Err(Error::Cancelled);
    }
    let head = trained.fit.head;
    let snapshot = snapshot_id(labels, splits);
    let created_at = now_rfc3339();
    let id = Identity {
        model_id: meta.model_id_or("detect", &snapshot, &created_at, config),
        snapshot,
        created_at: created_at.clone(),
        parent_model_id: meta.parent_model_id.clone(),
    };
    let model_id = id.model_id.clone();
    let shipped = ShippedBackbone::of(backbone)?;
    let onnx = export_detect_head(&head, &model_id)?;
    let nnef =
        wasm_infer::nnef::export_map_head(&onnx, [FEATURE_DIM, MAP_SIDE], &head.quantised_sizes())?;
    let exported = ExportedHead { onnx, nnef };
    let test_truths = truths(splits.test);
    let test = DetectionMetrics {
        images: splits.test.len(),
        boxes: test_truths.len(),
        map50: trained.test.map50,
        map50_95: trained.test.map50_95,
        per_class_ap50: trained.test.per_class_ap50.clone(),
    };
    let manifest = ModelManifest {
        detection: Some(DetectionSpec {
            side: MAP_SIDE,
            decode: shown(trained.shown.0),
        }),
        detection_metrics: Some(test.clone()),
        ..image_manifest(
            id,
            &shipped,
            Task::Detect,
            &exported,
            &preprocess(),
            batched(MAPS_NAME, &[labels.len() + 4, MAP_SIDE, MAP_SIDE]),
            labels.to_vec(),
        )
    };
    manifest.validate()?;
    let parity = check_parity(
        &head,
        &manifest,
        (&shipped, &exported),
        (&trained.test_maps, splits.test),
    )?;
    let outputs = head.outputs(&trained.test_maps, 64)?;
    let detections = super::fit::decode_rows(
        &outputs,
        splits.test,
        head.shape(MAP_SIDE)?,
        &DecodeParams::evaluation(),
    )?;
    let evidence = super::evidence::evidence(splits.train, splits.test, &detections, labels.len());
    let report = DetectReport {
        model_id,
        created_at,
        trainer_version: env!("CARGO_PKG_VERSION").into(),
        backbone_sha256: backbone.weights_sha256.clone(),
        labels: labels.to_vec(),
        counts: [splits.train.len(), splits.val.len(), splits.test.len()],
        config: config.clone(),
        history: trained.fit.history,
        best_epoch: trained.fit.best_epoch,
        test,
        shown: ShownBoxes {
            min_score: trained.shown.0,
            val_f1: trained.shown.1,
        },
        parity,
        seconds: trained.seconds,
        feature_cache: trained.feature_cache,
        test_images: splits.test.iter().map(|i| i.source.clone()).collect(),
        detections,
        evidence: Some(evidence),
    };
    let files = ModelFolder::new()
        .with(ModelFiles::BACKBONE_ONNX, shipped.bytes)
        .with(ModelFiles::BACKBONE_INT8, shipped.int8)
        .with(ModelFiles::DETECT_HEAD_ONNX, exported.onnx)
        .with(ModelFiles::DETECT_HEAD_NNEF, exported.nnef)
        .with(ModelFiles::MANIFEST, manifest.to_json()?)
        .with(ModelFiles::METRICS, serde_json::to_string_pretty(&report)?)
        .write(out_dir, |_| Ok(vec![]))?;
    Ok(DetectRun {
        head,
        report,
        manifest,
        files,
        test_maps: trained.test_maps,
    })
}

/// Test images compared by [`check_parity`].
pub const PARITY_IMAGES: usize = 8;

/// The head's maps of up to [`PARITY_IMAGES`] test images, by candle and by tract on the
/// exported bytes: the ONNX head (as the api loads it) and the NNEF head (as browsers load
/// it) given candle's feature maps, and the whole ONNX pair (the `f32` backbone, then the
/// head) from the image; then the boxes shown, decoded from candle's and from tract's maps.
/// Fails beyond [`crate::run::PARITY_TOLERANCE`] or when the boxes differ.
pub fn check_parity(
    head: &DetectHead,
    manifest: &ModelManifest,
    (shipped, exported): (&ShippedBackbone, &ExportedHead),
    (maps, items): (&Tensor, &[&DetectItem]),
) -> Result<DetectParity> {
    let full = Arc::new(wasm_infer::Backbone::full(&shipped.bytes, manifest)?);
    let server = Session::composed(full.clone(), &exported.onnx, manifest.clone())?;
    let browser = Session::composed_nnef(full, &exported.nnef, manifest.clone())?;
    let n = items.len().min(PARITY_IMAGES);
    let maps = maps.narrow(0, 0, n)?;
    let candle = head.outputs(&maps, n)?;
    let features = maps.flatten_from(1)?.to_vec2::<f32>()?;
    let shape = head.shape(MAP_SIDE)?;
    let shown = manifest
        .detection
        .map(|d| d.decode)
        .ok_or_else(|| Error::Export("a detector's manifest without `detection`".into()))?;
    let (mut onnx, mut nnef, mut whole) = (Parity::default(), Parity::default(), Parity::default());
    let mut boxes = 0;
    for (k, item) in items.iter().take(n).enumerate() {
        onnx.compare(
            "detection maps",
            &candle[k],
            &server.run_features(&features[k])?,
        )?;
        nnef.compare(
            "detection maps (NNEF head)",
            &candle[k],
            &browser.run_features(&features[k])?,
        )?;
        let input = inference_tensor(*item, &manifest.preprocess)?;
        let tract = server.run(&input)?.remove(0);
        whole.compare("detection maps from the image", &candle[k], &tract)?;
        let size = (item.width, item.height);
        let ours = decode(&candle[k], shape, size, k, &shown)?;
        let theirs = decode(&tract, shape, size, k, &shown)?;
        let same = ours.len() == theirs.len()
            && ours
                .iter()
                .zip(&theirs)
                .all(|(a, b)| a.label == b.label && iou(&a.bbox, &b.bbox) >= 0.999);
        if !same {
            return Err(Error::Parity(format!(
                "{}: candle shows {ours:?}, tract {theirs:?}",
                item.source
            )));
        }
        boxes += ours.len();
    }
    Ok(DetectParity {
        images: n,
        max_abs_diff: onnx.max_abs_diff,
        nnef_max_abs_diff: nnef.max_abs_diff,
        image_max_abs_diff: whole.max_abs_diff,
        boxes,
    })
}
