//! `trainer compose` (the bundled detection composites as COCO folders),
//! `trainer detect-baseline` (the trivial detector's mAP on one) and `trainer eval` of a
//! detector (its mAP on one, run as browsers run it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use contract::detection::{DecodeParams, decode, mean_ap};
use indicatif::ProgressBar;
use trainer::dataset::{Dataset, Split};
use trainer::detect::baseline::full_image_boxes;
use trainer::detect::{ComposeConfig, DetectSet, compose_split, load_backgrounds};

use trainer::run::pixels;

/// The subcommand's arguments.
#[derive(clap::Args)]
pub struct ComposeArgs {
    /// Cut-out photos (an ImageFolder tree: one folder per label).
    #[arg(long, default_value = "assets/datasets/tuxpaint-photos")]
    stamps: PathBuf,
    /// Background photographs.
    #[arg(long, default_value = "assets/datasets/backgrounds")]
    backgrounds: PathBuf,
    /// Output folder: `train/`, `val/` and `test/`, each `annotations.json` + PNGs.
    #[arg(long)]
    out: PathBuf,
    /// Training composites (validation and test: a fifth of this each).
    #[arg(long, default_value_t = 400)]
    count: usize,
    /// Side of the square images.
    #[arg(long, default_value_t = 320)]
    size: u32,
    /// Seed.
    #[arg(long, default_value_t = 14)]
    seed: u64,
}

/// Compose the three splits and write them.
pub fn compose_cli(args: ComposeArgs) -> Result<()> {
    let photos = Dataset::import_folder(&args.stamps)
        .with_context(|| format!("importing {}", args.stamps.display()))?;
    let backgrounds = load_backgrounds(&args.backgrounds)?;
    for (split, name, count) in [
        (Split::Train, "train", args.count),
        (Split::Val, "val", args.count.div_ceil(5)),
        (Split::Test, "test", args.count.div_ceil(5)),
    ] {
        let spinner =
            ProgressBar::new_spinner().with_message(format!("{name}: {count} composites"));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let cfg = ComposeConfig {
            count,
            size: args.size,
            seed: args.seed,
            ..Default::default()
        };
        let set = compose_split(&photos, &backgrounds, split, &cfg)?;
        let dir = args.out.join(name);
        set.write_coco(&dir)?;
        spinner.finish_and_clear();
        let mut per = vec![0usize; set.labels.len()];
        for b in set.items.iter().flat_map(|i| &i.boxes) {
            per[b.label] += 1;
        }
        let counts: Vec<String> = set
            .labels
            .iter()
            .zip(&per)
            .map(|(l, n)| format!("{l} {n}"))
            .collect();
        println!(
            "{name}: {} images, {} boxes ({}) in {}",
            set.items.len(),
            per.iter().sum::<usize>(),
            counts.join(", "),
            dir.display()
        );
    }
    Ok(())
}

/// `trainer detect-baseline`'s arguments.
#[derive(clap::Args)]
pub struct BaselineArgs {
    /// A classifier's model folder (`trainer train`), on the set's labels.
    #[arg(long)]
    model: PathBuf,
    /// A COCO folder (its `annotations.json`), e.g. `trainer compose`'s `test/`.
    #[arg(long)]
    data: PathBuf,
}

/// Classify every image with tract, box it whole, score it.
pub fn baseline_cli(args: BaselineArgs) -> Result<()> {
    let set = DetectSet::import_coco(&args.data.join("annotations.json"))?;
    let session = trainer::run::load_session(&args.model)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    let preprocess = session.manifest().preprocess.clone();
    let labels = session.manifest().labels.clone();
    let started = std::time::Instant::now();
    let detections = full_image_boxes(&set, &labels, |i| {
        let img =
            trainer::dataset::decode_image(&set.items[i].bytes).map_err(trainer::Error::Dataset)?;
        let input = wasm_infer::preprocess::image_to_tensor(&pixels(&img)?, &preprocess)?;
        Ok(session.run(&input)?.remove(0))
    })?;
    let m = mean_ap(&set.truths(), &detections, set.labels.len() as u32);
    println!(
        "{} images, {} true boxes; one full-image box of {}'s top class per image ({:.1} s)",
        set.items.len(),
        set.truths().len(),
        session.manifest().model_id,
        started.elapsed().as_secs_f64()
    );
    println!("mAP@0.5 {:.4}  mAP@[.5:.95] {:.4}", m.map50, m.map50_95);
    for (label, ap) in set.labels.iter().zip(&m.per_class_ap50) {
        match ap {
            Some(ap) => println!("  {label:<12} AP@0.5 {ap:.4}"),
            None => println!("  {label:<12} (no true box)"),
        }
    }
    Ok(())
}

/// `trainer detect`'s arguments.
#[derive(clap::Args)]
pub struct DetectArgs {
    /// A folder with `train/`, `val/` and `test/` COCO folders (as `trainer compose` writes),
    /// or one COCO folder (`annotations.json`), split by each image's sha256.
    #[arg(long)]
    data: PathBuf,
    /// Output model folder (replaced atomically when the run succeeds).
    #[arg(long)]
    out: PathBuf,
    /// EfficientNet-Lite0 safetensors (default: assets/backbone/efficientnet_lite0.safetensors).
    #[arg(long, env = "EDGEML_BACKBONE")]
    weights: Option<PathBuf>,
    /// Keep backbone feature maps in this folder, keyed by (backbone, image, view).
    #[arg(long, env = "EDGEML_FEATURE_CACHE")]
    feature_cache: Option<PathBuf>,
    /// Maximum epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Channels of the head's hidden layers.
    #[arg(long)]
    hidden: Option<usize>,
    /// AdamW learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
}

/// The set's labels and its three splits: the folder's `train/`, `val/`, `test/` when it has
/// them (their labels must agree), else its own `annotations.json` split by sha256.
pub fn load_splits(
    data: &std::path::Path,
) -> Result<(Vec<String>, [Vec<trainer::detect::DetectItem>; 3])> {
    let coco = |dir: &std::path::Path| {
        DetectSet::import_coco(&dir.join("annotations.json"))
            .with_context(|| format!("importing {}", dir.display()))
    };
    if data.join("train").is_dir() {
        let mut labels = None;
        let mut parts = Vec::new();
        for name in ["train", "val", "test"] {
            let set = coco(&data.join(name))?;
            if labels.get_or_insert_with(|| set.labels.clone()) != &set.labels {
                anyhow::bail!(
                    "{name}/ has labels {:?}, train/ has {:?}",
                    set.labels,
                    labels
                );
            }
            parts.push(set.items);
        }
        let [train, val, test]: [Vec<_>; 3] = parts
            .try_into()
            .map_err(|_| anyhow::anyhow!("three splits"))?;
        Ok((labels.unwrap_or_default(), [train, val, test]))
    } else {
        let set = coco(data)?;
        let pick = |s: Split| set.items.iter().filter(|i| i.split == s).cloned().collect();
        Ok((
            set.labels.clone(),
            [pick(Split::Train), pick(Split::Val), pick(Split::Test)],
        ))
    }
}

/// Train, score, print.
pub fn detect_cli(args: DetectArgs) -> Result<()> {
    let (labels, [train, val, test]) = load_splits(&args.data)?;
    println!(
        "{} labels; {} train, {} val, {} test images",
        labels.len(),
        train.len(),
        val.len(),
        test.len()
    );
    let backbone = super::load_backbone(args.weights)?;
    let d = trainer::detect::fit::DetectConfig::default();
    let config = trainer::detect::fit::DetectConfig {
        epochs: args.epochs.unwrap_or(d.epochs),
        hidden: args.hidden.unwrap_or(d.hidden),
        lr: args.lr.unwrap_or(d.lr),
        seed: args.seed.unwrap_or(d.seed),
        ..d
    };
    let cache = args.feature_cache.map(trainer::run::DirStore::new);
    let bar = super::progress_bar();
    let mut on_progress = |p: trainer::run::Progress| {
        super::show_epochs(&bar, p, "focal + L1", "ONNX + NNEF head, tract parity");
        true
    };
    let (tr, va, te): (Vec<_>, Vec<_>, Vec<_>) = (
        train.iter().collect(),
        val.iter().collect(),
        test.iter().collect(),
    );
    let splits = trainer::detect::pipeline::Splits {
        train: &tr,
        val: &va,
        test: &te,
    };
    let run = trainer::detect::pipeline::run(
        splits,
        &labels,
        &backbone,
        cache.as_ref().map(|c| c as &dyn trainer::run::FeatureStore),
        &config,
        &trainer::run::RunMeta::default(),
        &args.out,
        &mut on_progress,
    )?;
    bar.finish_and_clear();
    let r = &run.report;
    println!(
        "model {} in {}: best epoch {} of {}",
        r.model_id,
        args.out.display(),
        r.best_epoch,
        r.history.len()
    );
    println!(
        "test ({} images, {} boxes): mAP@0.5 {:.4}  mAP@[.5:.95] {:.4}",
        r.test.images, r.test.boxes, r.test.map50, r.test.map50_95
    );
    println!(
        "boxes shown from a score of {:.2} (validation F1 {:.3} at IoU 0.5)",
        r.shown.min_score, r.shown.val_f1
    );
    for (label, ap) in r.labels.iter().zip(&r.test.per_class_ap50) {
        match ap {
            Some(ap) => println!("  {label:<12} AP@0.5 {ap:.4}"),
            None => println!("  {label:<12} (no true box)"),
        }
    }
    println!(
        "candle vs tract on {} test images: max |Δ| {:.1e} (ONNX head), {:.1e} (NNEF head), {:.1e} (from the image, f32 backbone); {} boxes shown, the same; backbone {:.1} s ({} computed, {} cached), training {:.1} s",
        r.parity.images,
        r.parity.max_abs_diff,
        r.parity.nnef_max_abs_diff,
        r.parity.image_max_abs_diff,
        r.parity.boxes,
        r.seconds[0],
        r.feature_cache.computed,
        r.feature_cache.hits,
        r.seconds[1]
    );
    Ok(())
}

/// `trainer eval` of a detector on a COCO folder (its `annotations.json`, e.g. `trainer
/// compose`'s `test/` or the hand-boxed photos in `assets/datasets/real-photos`): every image
/// through tract as browsers run it, its boxes decoded for scoring (every peak down to 0.001,
/// as COCO ranks them), COCO mAP against the folder's boxes. Categories meet the model's
/// labels by name; a category the model lacks scores 0 (it cannot be found).
pub fn eval_detector(session: &wasm_infer::Session, data: &std::path::Path) -> Result<()> {
    let set = DetectSet::import_coco(&data.join("annotations.json"))?;
    let manifest = session.manifest();
    let shape = manifest
        .head_shape()
        .context("the model's manifest gives no detection head shape")?;
    let to_set: Vec<Option<u32>> = manifest
        .labels
        .iter()
        .map(|l| set.labels.iter().position(|s| s == l).map(|i| i as u32))
        .collect();
    let started = std::time::Instant::now();
    let bar = ProgressBar::new(set.items.len() as u64);
    let mut found = Vec::new();
    for (image, item) in set.items.iter().enumerate() {
        let img = trainer::dataset::decode_image(&item.bytes).map_err(trainer::Error::Dataset)?;
        let input = wasm_infer::preprocess::image_to_tensor(&pixels(&img)?, &manifest.preprocess)?;
        let row = session.run(&input)?.remove(0);
        let params = DecodeParams::evaluation();
        for mut d in decode(&row, shape, (item.width, item.height), image, &params)? {
            if let Some(label) = to_set[d.label as usize] {
                d.label = label;
                found.push(d);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let m = mean_ap(&set.truths(), &found, set.labels.len() as u32);
    println!(
        "{} images, {} true boxes; detector {} (tract, as browsers run it; {:.1} s)",
        set.items.len(),
        set.truths().len(),
        manifest.model_id,
        started.elapsed().as_secs_f64()
    );
    println!("mAP@0.5 {:.4}  mAP@[.5:.95] {:.4}", m.map50, m.map50_95);
    for (label, ap) in set.labels.iter().zip(&m.per_class_ap50) {
        let lacks = if manifest.labels.contains(label) {
            ""
        } else {
            " (not a label of the model)"
        };
        match ap {
            Some(ap) => println!("  {label:<12} AP@0.5 {ap:.4}{lacks}"),
            None => println!("  {label:<12} (no true box)"),
        }
    }
    Ok(())
}
