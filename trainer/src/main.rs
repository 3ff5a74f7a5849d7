//! `trainer`: train, evaluate and export edgeml image classifiers and image-text ranking models.
//!
//! ```text
//! cargo run --release -p trainer -- train --data assets/datasets/tuxpaint-photos --out models/first
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use contract::ModelFiles;
use indicatif::{ProgressBar, ProgressStyle};
use trainer::backbone::{Backbone, default_weights_path};
use trainer::dataset::{Dataset, Split};
use trainer::pipeline::{self, RunReport};
use trainer::rank::RankConfig;
use trainer::run::{DirStore, FeatureStore, Progress, RunMeta, pixels};
use trainer::train::{Head, TrainConfig};
use wasm_infer::{ModelManifest, Task};

mod detect_cli;
mod product_cli;

#[derive(Parser)]
#[command(
    version,
    about = "Train, evaluate and export edgeml image classifiers and image-text ranking models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier on an ImageFolder tree and write head.onnx + backbone.onnx + manifest.json + metrics.json.
    Train {
        /// Dataset root: one folder per label, images inside.
        #[arg(long)]
        data: PathBuf,
        /// Output model folder (replaced atomically when the run succeeds).
        #[arg(long)]
        out: PathBuf,
        /// EfficientNet-Lite0 safetensors (default: assets/backbone/efficientnet_lite0.safetensors).
        #[arg(long, env = "EDGEML_BACKBONE")]
        weights: Option<PathBuf>,
        /// Model id to record (default: derived from data, config and time).
        #[arg(long)]
        model_id: Option<String>,
        /// Model this one retrains.
        #[arg(long)]
        parent: Option<String>,
        /// Keep backbone features in this folder, keyed by (backbone, image, view), so a rerun
        /// or retrain computes the backbone only for images it has not seen.
        #[arg(long, env = "EDGEML_FEATURE_CACHE")]
        feature_cache: Option<PathBuf>,
        #[command(flatten)]
        params: Params,
    },
    /// Train an image-text ranking model (dual encoder) on captioned images: an ImageFolder
    /// tree (`NAME.txt` next to each image, or `captions.tsv` at the root), or any folder with a
    /// `captions.jsonl` / `captions.tsv` list; write image_head.onnx + text.onnx + backbone.onnx + manifest.json.
    Rank {
        /// Dataset root: one folder per label, images and their captions inside.
        #[arg(long)]
        data: PathBuf,
        /// Output model folder (replaced atomically when the run succeeds).
        #[arg(long)]
        out: PathBuf,
        /// EfficientNet-Lite0 safetensors (default: assets/backbone/efficientnet_lite0.safetensors).
        #[arg(long, env = "EDGEML_BACKBONE")]
        weights: Option<PathBuf>,
        /// ImageNet class names (default: assets/backbone/imagenet_classes.txt).
        #[arg(long)]
        classes: Option<PathBuf>,
        /// Keep backbone features in this folder, keyed by (backbone, image, view), so a rerun
        /// or retrain computes the backbone only for images it has not seen.
        #[arg(long, env = "EDGEML_FEATURE_CACHE")]
        feature_cache: Option<PathBuf>,
        /// Maximum epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Shared embedding size.
        #[arg(long)]
        dim: Option<usize>,
        /// Random seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Train a product classifier on items with a title, keywords and an image (text only,
    /// image only or both); write product_head.onnx + metrics.json.
    Product(product_cli::ProductArgs),
    /// Write the bundled detection data: cut-out photos pasted onto background photographs,
    /// boxes exact, as COCO folders (train, val, test).
    Compose(detect_cli::ComposeArgs),
    /// Score the trivial detector on a COCO folder: one full-image box of a classifier's top
    /// class per image (COCO mAP@0.5 and mAP@[.5:.95]).
    DetectBaseline(detect_cli::BaselineArgs),
    /// Train an object detector (a head on the backbone's feature map) on COCO folders.
    Detect(detect_cli::DetectArgs),
    /// Score an exported model (with tract, as deployed): a classifier on a dataset's test
    /// split, a detector on a COCO folder (mAP@0.5 and mAP@[.5:.95]).
    Eval {
        /// Model folder written by `train` or `detect`.
        #[arg(long)]
        model: PathBuf,
        /// Dataset root (a classifier), or a COCO folder with `annotations.json` (a detector).
        #[arg(long)]
        data: PathBuf,
    },
    /// Run an exported model (tract, as deployed) on image files: a classifier's top-k labels,
    /// or the boxes a detector shows (label, score, [x, y, width, height] in pixels).
    Predict {
        /// Model folder written by `train` or `detect`.
        #[arg(long)]
        model: PathBuf,
        /// How many labels to print per image.
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// Image files (PNG, JPEG, WebP, GIF, BMP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Rebuild head.onnx and backbone.onnx from the folder's head.safetensors and the backbone
    /// weights, and re-run the parity check.
    Export {
        /// Model folder written by `train`.
        #[arg(long)]
        model: PathBuf,
        /// Dataset root whose images the parity check uses.
        #[arg(long)]
        data: PathBuf,
        /// EfficientNet-Lite0 safetensors.
        #[arg(long, env = "EDGEML_BACKBONE")]
        weights: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct Params {
    /// Maximum epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Augmented views per training image.
    #[arg(long)]
    views: Option<usize>,
    /// Early-stopping patience in epochs.
    #[arg(long)]
    patience: Option<usize>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Below this many test images, the gate's figures come from cross-validation over train +
    /// test (0: always the test split).
    #[arg(long)]
    cv_below: Option<usize>,
    /// Folds of that cross-validation.
    #[arg(long)]
    cv_folds: Option<usize>,
}

impl Params {
    fn config(&self) -> TrainConfig {
        let d = TrainConfig::default();
        TrainConfig {
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            views: self.views.unwrap_or(d.views),
            patience: self.patience.unwrap_or(d.patience),
            seed: self.seed.unwrap_or(d.seed),
            cv_below: self.cv_below.unwrap_or(d.cv_below),
            cv_folds: self.cv_folds.unwrap_or(d.cv_folds),
            ..d
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train {
            data,
            out,
            weights,
            model_id,
            parent,
            feature_cache,
            params,
        } => {
            let dataset = import(&data)?;
            let backbone = load_backbone(weights)?;
            let config = params.config();
            let cache = feature_cache.map(DirStore::new);
            let report = train(
                &dataset,
                &backbone,
                cache.as_ref().map(|c| c as &dyn FeatureStore),
                &config,
                RunMeta {
                    model_id,
                    parent_model_id: parent,
                    ..Default::default()
                },
                &out,
            )?;
            print_report(&report, &out);
        }
        Command::Rank {
            data,
            out,
            weights,
            classes,
            feature_cache,
            epochs,
            dim,
            seed,
        } => {
            // A caption list at the root (Flickr8K-style layout) or an ImageFolder tree.
            let dataset = if data.join("captions.jsonl").is_file()
                || (data.join("captions.tsv").is_file() && Dataset::import_folder(&data).is_err())
            {
                Dataset::import_captions(&data)
                    .with_context(|| format!("importing captions of {}", data.display()))?
            } else {
                import(&data)?
            };
            let backbone = load_backbone(weights)?;
            let path = classes.unwrap_or_else(trainer::backbone::default_classes_path);
            let names = trainer::backbone::imagenet_classes(&path)?;
            let d = RankConfig::default();
            let config = RankConfig {
                epochs: epochs.unwrap_or(d.epochs),
                dim: dim.unwrap_or(d.dim),
                seed: seed.unwrap_or(d.seed),
                ..d
            };
            let cache = feature_cache.map(DirStore::new);
            let cache = cache.as_ref().map(|c| c as &dyn FeatureStore);
            rank_cli(&dataset, &backbone, cache, &names, &config, &out)?;
        }
        Command::Product(args) => product_cli::product_cli(args)?,
        Command::Compose(args) => detect_cli::compose_cli(args)?,
        Command::DetectBaseline(args) => detect_cli::baseline_cli(args)?,
        Command::Detect(args) => detect_cli::detect_cli(args)?,
        Command::Eval { model, data } => eval(&model, &data)?,
        Command::Predict { model, top, images } => predict(&model, top, &images)?,
        Command::Export {
            model,
            data,
            weights,
        } => export(&model, &data, weights)?,
    }
    Ok(())
}

fn import(data: &Path) -> Result<Dataset> {
    let spinner = ProgressBar::new_spinner().with_message(format!("decoding {}", data.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let dataset =
        Dataset::import_folder(data).with_context(|| format!("importing {}", data.display()))?;
    spinner.finish_and_clear();
    let counts = dataset.counts();
    println!(
        "dataset {} — {} images, {} labels",
        data.display(),
        dataset.samples.len(),
        dataset.labels.len()
    );
    for (i, label) in dataset.labels.iter().enumerate() {
        let c = |s| counts.get(&s).map_or(0, |v: &Vec<usize>| v[i]);
        println!(
            "  {label:<16} train {:>4}  val {:>3}  test {:>3}",
            c(Split::Train),
            c(Split::Val),
            c(Split::Test)
        );
    }
    for s in &dataset.skipped {
        println!("  skipped {}: {}", s.path, s.reason);
    }
    Ok(dataset)
}

/// The training progress bar (stage prefix, bar, counts, message, elapsed).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:32}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Backbone passes: images done of total, throughput.
fn show_features(bar: &ProgressBar, done: usize, total: usize, images_per_sec: f64) {
    bar.set_prefix("backbone");
    bar.set_length(total as u64);
    bar.set_position(done as u64);
    bar.set_message(format!("{images_per_sec:.1} img/s"));
}

/// Progress of a run that reports one batch per epoch (ranking, products): the backbone pass,
/// the epochs with their `loss`, then the export (`export` says what it writes).
fn show_epochs(bar: &ProgressBar, p: Progress, loss: &str, export: &str) {
    match p {
        Progress::Features {
            done,
            total,
            images_per_sec,
        } => show_features(bar, done, total, images_per_sec),
        Progress::Batch {
            epoch,
            epochs,
            loss: value,
            ..
        } => {
            bar.set_prefix("epochs");
            bar.set_length(epochs as u64);
            bar.set_position(epoch as u64);
            bar.set_message(format!("{loss} {value:.4}"));
        }
        Progress::Epoch(_) | Progress::Evaluate { .. } => {}
        Progress::Export => {
            bar.set_prefix("export");
            bar.set_message(export.to_string());
        }
    }
}

fn rank_cli(
    dataset: &Dataset,
    backbone: &Backbone,
    cache: Option<&dyn FeatureStore>,
    names: &[String],
    config: &RankConfig,
    out: &Path,
) -> Result<()> {
    let bar = progress_bar();
    let mut on_progress = |p: Progress| {
        show_epochs(&bar, p, "InfoNCE", "two ONNX encoders + tract parity");
        true
    };
    let report = trainer::rank::run(
        dataset,
        backbone,
        cache,
        names,
        config,
        &RunMeta::default(),
        out,
        &mut on_progress,
    )?
    .report;
    bar.finish_and_clear();
    let m = report
        .manifest
        .rank_metrics
        .as_ref()
        .context("the run wrote no ranking metrics")?;
    let row = |name: &str, r: &wasm_infer::Recall| {
        println!(
            "  {name:<34} {:>6.3} {:>6.3} {:>6.3} {:>8.1}",
            r.r1, r.r5, r.r10, r.median_rank
        );
    };
    println!(
        "model {} in {} — test split: {} images, {} captions; best epoch {} of {}",
        report.manifest.model_id,
        out.display(),
        m.n_images,
        m.n_texts,
        report.best_epoch,
        report.history.len()
    );
    println!(
        "  {:<34} {:>6} {:>6} {:>6} {:>8}",
        "", "R@1", "R@5", "R@10", "med rank"
    );
    row("caption → image", &m.text_to_image);
    row("image → caption", &m.image_to_text);
    row(
        "caption → image, untrained start",
        &report.zero_shot_text_to_image,
    );
    row("caption → image, bag of words", &m.bow_text_to_image);
    row("caption → image, chance", &m.random_text_to_image);
    println!(
        "  candle vs tract: image embeddings {:.1e}, text embeddings {:.1e} (max |Δ|)",
        report.parity.image_max_abs_diff, report.parity.text_max_abs_diff
    );
    Ok(())
}

fn load_backbone(weights: Option<PathBuf>) -> Result<Backbone> {
    let path = weights.unwrap_or_else(default_weights_path);
    Backbone::load(&path).with_context(|| format!("loading backbone {}", path.display()))
}

fn train(
    dataset: &Dataset,
    backbone: &Backbone,
    cache: Option<&dyn FeatureStore>,
    config: &TrainConfig,
    meta: RunMeta,
    out: &Path,
) -> Result<RunReport> {
    let bar = progress_bar();
    let mut epoch_text = String::new();
    let mut on_progress = |p: Progress| {
        match p {
            Progress::Features {
                done,
                total,
                images_per_sec,
            } => show_features(&bar, done, total, images_per_sec),
            Progress::Batch {
                epoch,
                epochs,
                batch,
                batches,
                loss,
            } => {
                bar.set_prefix(format!("epoch {epoch}"));
                bar.set_length(batches as u64);
                bar.set_position(batch as u64);
                bar.set_message(format!("/{epochs} loss {loss:.4} {epoch_text}"));
            }
            Progress::Epoch(m) => {
                epoch_text = format!("| val acc {:.3}", m.val_accuracy);
                bar.println(format!(
                    "epoch {:>3}  train loss {:.4} acc {:.3}  val loss {:.4} acc {:.3}  lr {:.2e}",
                    m.epoch, m.train_loss, m.train_accuracy, m.val_loss, m.val_accuracy, m.lr
                ));
            }
            Progress::Evaluate { fold, folds } => {
                bar.set_prefix("evaluate");
                bar.set_length(folds as u64);
                bar.set_position(fold as u64);
                bar.set_message(format!("cross-validation fold {fold} of {folds}"));
            }
            Progress::Export => {
                bar.set_prefix("export");
                bar.set_message("ONNX + tract parity");
            }
        }
        true
    };
    let report = pipeline::run(
        dataset,
        backbone,
        cache,
        config,
        &meta,
        out,
        &mut on_progress,
    )?
    .report;
    bar.finish_and_clear();
    Ok(report)
}

fn print_report(r: &RunReport, out: &Path) {
    let m = &r.manifest;
    println!(
        "\nmodel {} → {}\n  splits: {} train / {} val / {} test; best epoch {} of {}",
        m.model_id,
        out.display(),
        r.split_sizes.train,
        r.split_sizes.val,
        r.split_sizes.test,
        r.best_epoch,
        r.history.len()
    );
    println!(
        "  time: {:.1}s total, features {:.1}s for {} views ({} computed, {} cached), head {:.1}s; training throughput {:.1} img/s",
        r.timing.total_secs,
        r.timing.features_secs,
        r.timing.feature_images,
        r.timing.feature_cache.computed,
        r.timing.feature_cache.hits,
        r.timing.fit_secs,
        r.timing.train_images_per_sec
    );
    println!(
        "  parity candle vs tract: {} images, max |Δp| {:.2e}, same argmax; shipped 8-bit backbone: same top-1 on {} of {}, max |Δp| {:.2e}\n",
        r.parity.images,
        r.parity.max_abs_diff,
        r.parity.int8_same_top1,
        r.parity.images,
        r.parity.int8_max_abs_diff
    );
    if let Some(metrics) = &m.metrics {
        println!("{}", trainer::eval::render(metrics));
    }
    if let Some(e) = &r.evidence {
        println!("{}", trainer::eval::render_evidence(e, r.config.seed));
    }
}

fn eval(model: &Path, data: &Path) -> Result<()> {
    let session = trainer::run::load_session(model)
        .with_context(|| format!("loading the model in {}", model.display()))?;
    if session.manifest().task == Task::Detect {
        return detect_cli::eval_detector(&session, data);
    }
    let manifest = session.manifest().clone();
    let dataset = import(data)?;
    let mut truth = Vec::new();
    let mut predicted = Vec::new();
    let mut unknown = 0;
    for s in dataset.split(Split::Test) {
        let label = &dataset.labels[s.label];
        let Some(t) = manifest.labels.iter().position(|l| l == label) else {
            unknown += 1;
            continue;
        };
        let top = session.classify(&pixels(&s.decode()?)?, 1)?;
        let p = manifest
            .labels
            .iter()
            .position(|l| *l == top[0].label)
            .unwrap_or(0);
        truth.push(t as u32);
        predicted.push(p as u32);
    }
    if truth.is_empty() {
        bail!(
            "no test image of {} has a label the model knows",
            data.display()
        );
    }
    if unknown > 0 {
        println!("  {unknown} test image(s) have labels the model does not know; not scored");
    }
    // Majority over the same test labels' training counts of this dataset.
    let counts = dataset.counts();
    let train = counts.get(&Split::Train).cloned().unwrap_or_default();
    let majority_label = (0..train.len())
        .max_by_key(|&i| train[i])
        .map(|i| &dataset.labels[i]);
    let majority = majority_label
        .and_then(|l| manifest.labels.iter().position(|m| m == l))
        .unwrap_or(0);
    let metrics = trainer::eval::evaluate(&manifest.labels, &truth, &predicted, majority as u32);
    println!(
        "model {} (tract)\n{}",
        manifest.model_id,
        trainer::eval::render(&metrics)
    );
    Ok(())
}

fn predict(model: &Path, k: usize, images: &[PathBuf]) -> Result<()> {
    let session = trainer::run::load_session(model)
        .with_context(|| format!("loading the model in {}", model.display()))?;
    for path in images {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let img = trainer::dataset::decode_image(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let started = std::time::Instant::now();
        let found: Vec<String> = if session.manifest().task == Task::Detect {
            session
                .detect(&pixels(&img)?)?
                .iter()
                .map(|b| {
                    let [x, y, w, h] = b.bbox;
                    format!(
                        "{} {:.3} [{x:.1}, {y:.1}, {w:.1}, {h:.1}]",
                        b.label, b.score
                    )
                })
                .collect()
        } else {
            session
                .classify(&pixels(&img)?, k)?
                .iter()
                .map(|p| format!("{} {:.3}", p.label, p.score))
                .collect()
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        println!("{}\t{}\t({ms:.1} ms)", path.display(), found.join(", "));
    }
    Ok(())
}

fn export(model: &Path, data: &Path, weights: Option<PathBuf>) -> Result<()> {
    let path = model.join(ModelFiles::MANIFEST);
    let json =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut manifest =
        ModelManifest::from_json(&json).with_context(|| format!("{}", path.display()))?;
    if manifest.task != Task::Classify {
        bail!(
            "export rebuilds classifiers; {} is a {} model",
            model.display(),
            manifest.task
        );
    }
    let head = Head::load(&model.join(ModelFiles::HEAD))?;
    let backbone = load_backbone(weights)?;
    let shipped = trainer::run::ShippedBackbone::of(&backbone)?;
    let exported =
        trainer::run::ExportedHead::new(trainer::export::export_head(&head, &manifest.model_id)?)?;
    let onnx = &exported.onnx;
    // Folders written before heads were split hold the whole graph: they become head + backbone;
    // folders written before NNEF files get them.
    manifest.onnx = trainer::run::onnx_file(ModelFiles::HEAD_ONNX, onnx);
    manifest.nnef = Some(trainer::run::digest(ModelFiles::HEAD_NNEF, &exported.nnef));
    manifest.backbone = Some(shipped.spec.clone());
    manifest.backbone_sha256 = Some(shipped.weights_sha256.clone());
    let dataset = import(data)?;
    if dataset.labels != manifest.labels {
        bail!(
            "dataset labels {:?} differ from the model's {:?}",
            dataset.labels,
            manifest.labels
        );
    }
    let parity = pipeline::check_parity(&dataset, &backbone, &head, &exported, &manifest)?;
    for (name, bytes) in [
        (ModelFiles::BACKBONE_ONNX, &shipped.bytes),
        (ModelFiles::BACKBONE_INT8, &shipped.int8),
        (ModelFiles::HEAD_ONNX, onnx),
        (ModelFiles::HEAD_NNEF, &exported.nnef),
    ] {
        let tmp = model.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, model.join(name))?;
    }
    let tmp = model.join(".manifest.json.tmp");
    std::fs::write(&tmp, manifest.to_json()?)?;
    std::fs::rename(&tmp, &path)?;
    let whole = model.join(ModelFiles::MODEL_ONNX);
    if whole.exists() {
        std::fs::remove_file(&whole)?;
    }
    println!(
        "exported {} ({} bytes, sha256 {}) on backbone {} ({} bytes; {} bytes in 8 bits); parity on {} images: max |Δp| {:.2e}; 8-bit backbone: same top-1 on {} of {}, max |Δp| {:.2e}",
        model.join(ModelFiles::HEAD_ONNX).display(),
        manifest.onnx.bytes,
        manifest.onnx.sha256,
        shipped.spec.onnx.sha256,
        shipped.spec.onnx.bytes,
        shipped.int8.len(),
        parity.images,
        parity.max_abs_diff,
        parity.int8_same_top1,
        parity.images,
        parity.int8_max_abs_diff
    );
    Ok(())
}
