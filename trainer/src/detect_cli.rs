//! `trainer compose` (the bundled detection composites as COCO folders) and
//! `trainer detect-baseline` (the trivial detector's mAP on one).

use std::path::PathBuf;

use anyhow::{Context, Result};
use contract::detection::mean_ap;
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
