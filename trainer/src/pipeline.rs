//! The whole training run: features → head → evaluation → ONNX export → tract parity →
//! model folder. Used by the `trainer` CLI and by the api's retrain worker.
//!
//! The output folder appears only when every step succeeded (written to a sibling temporary
//! folder, then renamed), so a failed or cancelled run never leaves a half-written model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use image::RgbaImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use wasm_infer::preprocess::{image_to_tensor, image_to_tensor_with};
use wasm_infer::session::sha256_hex;
use wasm_infer::{
    CropBox, Dim, EvalMetrics, MANIFEST_SCHEMA_VERSION, ModelManifest, OnnxFile, PixelFormat,
    Pixels, Preprocess, Session, Task, TensorSpec,
};

use crate::backbone::{Backbone, INPUT_SIZE};
use crate::dataset::{Dataset, Sample, Split};
use crate::error::io;
use crate::export::{BATCH_SYMBOL, INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx};
use crate::train::{EpochMetrics, FitData, Head, TrainConfig, fit};
use crate::{Error, Result};

/// Images per backbone batch.
pub const FEATURE_BATCH: usize = 16;
/// Images the parity check runs through candle and tract.
pub const PARITY_IMAGES: usize = 64;
/// Largest accepted |candle − tract| on any probability.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// Progress of a run, for progress bars and live updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Progress {
    /// Backbone passes over images (clean and augmented views).
    Features {
        /// Images done.
        done: usize,
        /// Images in total.
        total: usize,
        /// Throughput so far.
        images_per_sec: f64,
    },
    /// One head-training batch.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// Maximum epochs.
        epochs: usize,
        /// 1-based batch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// Batch loss.
        loss: f64,
    },
    /// An epoch finished.
    Epoch(EpochMetrics),
    /// Export and parity started.
    Export,
}

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
    /// Parity figures.
    pub parity: ParityReport,
    /// Timings.
    pub timing: Timing,
}

/// Images per split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SplitSizes {
    /// Train.
    pub train: usize,
    /// Validation.
    pub val: usize,
    /// Test.
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
    /// Whole run.
    pub total_secs: f64,
    /// Training throughput: augmented training images through backbone and head per second.
    pub train_images_per_sec: f64,
}

/// Identity and lineage of the model a run produces.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    /// Model id; derived from the dataset, config and time when `None`.
    pub model_id: Option<String>,
    /// The model this retrains, if any.
    pub parent_model_id: Option<String>,
}

impl RunMeta {
    /// The model id to record: the given one, else `PREFIX-` + 12 hex digits of the sha256 of
    /// the dataset snapshot, the creation time and the config.
    pub fn model_id_or(
        &self,
        prefix: &str,
        snapshot: &str,
        created_at: &str,
        config: &impl Serialize,
    ) -> String {
        self.model_id.clone().unwrap_or_else(|| {
            let seed = format!(
                "{snapshot}{created_at}{}",
                serde_json::to_string(config).unwrap_or_default()
            );
            format!("{prefix}-{}", &sha256_hex(seed.as_bytes())[..12])
        })
    }
}

/// Borrow decoded pixels for the shared preprocessing.
pub fn pixels(img: &RgbaImage) -> Result<Pixels<'_>> {
    Ok(Pixels::new(
        img.width(),
        img.height(),
        PixelFormat::Rgba8,
        img.as_raw(),
    )?)
}

/// Decode a sample and preprocess it for inference (centre crop).
pub(crate) fn inference_tensor(sample: &Sample, prep: &Preprocess) -> Result<Vec<f32>> {
    Ok(image_to_tensor(&pixels(&sample.decode()?)?, prep)?)
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

/// Run the backbone over prepared input tensors, `FEATURE_BATCH` at a time.
pub(crate) fn features_of(
    backbone: &Backbone,
    inputs: impl Iterator<Item = Result<Vec<f32>>>,
    count: usize,
    tick: &mut dyn FnMut(usize) -> bool,
) -> Result<Tensor> {
    let per = 3 * INPUT_SIZE * INPUT_SIZE;
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(FEATURE_BATCH * per);
    let mut inputs = inputs.peekable();
    while inputs.peek().is_some() {
        buf.clear();
        let mut n = 0;
        while n < FEATURE_BATCH {
            match inputs.next() {
                Some(t) => {
                    buf.extend_from_slice(&t?);
                    n += 1;
                }
                None => break,
            }
        }
        let batch = Tensor::from_slice(&buf, (n, 3, INPUT_SIZE, INPUT_SIZE), &Device::Cpu)?;
        out.push(backbone.features(&batch)?);
        if !tick(n) {
            return Err(Error::Cancelled);
        }
    }
    if out.is_empty() {
        return Err(Error::Dataset(format!(
            "no images to embed (expected {count})"
        )));
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// Train, evaluate, export and verify a classifier; write it to `out_dir`.
pub fn run(
    dataset: &Dataset,
    backbone: &Backbone,
    config: &TrainConfig,
    meta: &RunMeta,
    out_dir: &Path,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<RunReport> {
    config.validate()?;
    let started = Instant::now();
    let prep = Preprocess::efficientnet_lite();
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

    // 1. Backbone features: clean views of val/test, `views` augmented views of train.
    let feature_images = train.len() * config.views + val.len() + test.len();
    let t0 = Instant::now();
    let mut done = 0usize;
    let mut tick = |n: usize| {
        done += n;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        progress(Progress::Features {
            done,
            total: feature_images,
            images_per_sec: done as f64 / secs,
        })
    };
    let clean = |s: &&Sample| inference_tensor(s, &prep);
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
                &prep,
                crop,
                flip,
            )?)
        });
        train_views.push(features_of(backbone, inputs, train.len(), &mut tick)?);
    }
    let train_secs = t0.elapsed().as_secs_f64();
    let val_x = features_of(backbone, val.iter().map(clean), val.len(), &mut tick)?;
    let test_x = features_of(backbone, test.iter().map(clean), test.len(), &mut tick)?;
    let features_secs = t0.elapsed().as_secs_f64();

    // 2. Head.
    let t1 = Instant::now();
    let labels_of = |v: &[&Sample]| v.iter().map(|s| s.label as u32).collect::<Vec<u32>>();
    let (train_y, val_y, test_y) = (labels_of(&train), labels_of(&val), labels_of(&test));
    let data = FitData {
        train_views: &train_views,
        train_labels: &train_y,
        val: &val_x,
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
    let test_probs = fitted.head.probabilities(&test_x)?;
    let predicted = test_probs.argmax(1)?.to_vec1::<u32>()?;
    let mut train_counts = vec![0usize; dataset.labels.len()];
    train_y.iter().for_each(|l| train_counts[*l as usize] += 1);
    let majority = (0..train_counts.len()).max_by_key(|&i| (train_counts[i], usize::MAX - i));
    let metrics = crate::eval::evaluate(
        &dataset.labels,
        &test_y,
        &predicted,
        majority.unwrap_or(0) as u32,
    );

    // 4. Export + manifest.
    if !progress(Progress::Export) {
        return Err(Error::Cancelled);
    }
    let snapshot = dataset.snapshot_id();
    let created_at = now_rfc3339();
    let model_id = meta.model_id_or("cls", &snapshot, &created_at, config);
    let onnx = export_onnx(backbone, &fitted.head, &model_id)?;
    let manifest = classify_manifest(
        &model_id, &onnx, &prep, dataset, metrics, &snapshot, meta, created_at,
    );

    // 5. Parity: candle (features + head) vs tract on the exported bytes.
    let parity = check_parity(dataset, backbone, &fitted.head, &onnx, &manifest)?;

    let total_secs = started.elapsed().as_secs_f64();
    let report = RunReport {
        manifest,
        history: fitted.history,
        best_epoch: fitted.best_epoch,
        config: config.clone(),
        split_sizes: sizes,
        parity,
        timing: Timing {
            features_secs,
            feature_images,
            fit_secs,
            total_secs,
            train_images_per_sec: (train.len() * config.views) as f64 / (train_secs + fit_secs),
        },
    };
    write_model_dir(out_dir, &onnx, &fitted.head, &report)?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)] // every argument is one manifest field
fn classify_manifest(
    model_id: &str,
    onnx: &[u8],
    prep: &Preprocess,
    dataset: &Dataset,
    metrics: EvalMetrics,
    snapshot: &str,
    meta: &RunMeta,
    created_at: String,
) -> ModelManifest {
    let size = prep.size as usize;
    ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        model_id: model_id.to_string(),
        task: Task::Classify,
        onnx: OnnxFile {
            file: "model.onnx".into(),
            sha256: sha256_hex(onnx),
            bytes: onnx.len() as u64,
            opset: OPSET,
        },
        input: TensorSpec {
            name: INPUT_NAME.into(),
            shape: vec![
                Dim::Symbol(BATCH_SYMBOL.into()),
                Dim::Fixed(3),
                Dim::Fixed(size),
                Dim::Fixed(size),
            ],
        },
        output: TensorSpec {
            name: OUTPUT_NAME.into(),
            shape: vec![
                Dim::Symbol(BATCH_SYMBOL.into()),
                Dim::Fixed(dataset.labels.len()),
            ],
        },
        preprocess: prep.clone(),
        labels: dataset.labels.clone(),
        metrics: Some(metrics),
        dataset_snapshot: snapshot.to_string(),
        parent_model_id: meta.parent_model_id.clone(),
        created_at,
        trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        text: None,
        rank_metrics: None,
    }
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
    let mut max_diff = 0f32;
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
            let diff = c
                .iter()
                .zip(t)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            max_diff = max_diff.max(diff);
            let (ac, at) = (argmax(c), argmax(t));
            if ac != at {
                return Err(Error::Parity(format!(
                    "{}: candle predicts {} but tract predicts {}",
                    s.source, manifest.labels[ac], manifest.labels[at]
                )));
            }
            if diff.is_nan() || diff > PARITY_TOLERANCE {
                return Err(Error::Parity(format!(
                    "{}: probabilities differ by {diff:e} (tolerance {PARITY_TOLERANCE:e})",
                    s.source
                )));
            }
        }
    }
    Ok(ParityReport {
        images: chosen.len(),
        max_abs_diff: max_diff,
        same_argmax: true,
    })
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Replace `out_dir` atomically with a folder that `fill` writes: `fill` gets a temporary
/// sibling folder, which is renamed over `out_dir` once it succeeded (removed if it failed, so
/// a failed run leaves `out_dir` as it was).
pub fn replace_dir(out_dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out_dir.exists() {
        std::fs::remove_dir_all(out_dir).map_err(io(out_dir))?;
    }
    std::fs::rename(&tmp, out_dir).map_err(io(out_dir))?;
    Ok(())
}

/// Write `bytes` to `dir/file`.
pub fn write_file(dir: &Path, file: &str, bytes: &[u8]) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, bytes).map_err(io(p))
}

/// Write `model.onnx`, `manifest.json`, `metrics.json`, `report.svg`, `head.safetensors` to `out_dir`
/// atomically ([`replace_dir`]).
pub fn write_model_dir(out_dir: &Path, onnx: &[u8], head: &Head, report: &RunReport) -> Result<()> {
    replace_dir(out_dir, |tmp| {
        write_file(tmp, "model.onnx", onnx)?;
        write_file(tmp, "manifest.json", report.manifest.to_json()?.as_bytes())?;
        write_file(
            tmp,
            "metrics.json",
            serde_json::to_string_pretty(report)?.as_bytes(),
        )?;
        write_file(tmp, "report.svg", crate::report::svg(report).as_bytes())?;
        head.save(&tmp.join("head.safetensors"))
    })
}
