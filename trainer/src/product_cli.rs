//! `trainer product`: train a product classifier (title + image) and print its figures.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use trainer::product::{self, ProductConfig, ProductSet, Scores};
use trainer::run::{DirStore, FeatureStore, Progress, RunMeta};

use super::{load_backbone, progress_bar, show_epochs};

/// The subcommand's arguments.
#[derive(clap::Args)]
pub struct ProductArgs {
    /// Items file: `.jsonl` or `.csv` with `title`, `text`, `image`, `category` (image paths
    /// relative to it).
    #[arg(long, default_value = "assets/datasets/openclipart/items.jsonl")]
    items: PathBuf,
    /// Output model folder (replaced atomically when the run succeeds).
    #[arg(long)]
    out: PathBuf,
    /// EfficientNet-Lite0 safetensors (default: assets/backbone/efficientnet_lite0.safetensors).
    #[arg(long, env = "EDGEML_BACKBONE")]
    weights: Option<PathBuf>,
    /// Keep backbone features in this folder, keyed by (backbone, image, view).
    #[arg(long, env = "EDGEML_FEATURE_CACHE")]
    feature_cache: Option<PathBuf>,
    /// Use at most this many items per category (the first in the file).
    #[arg(long)]
    limit_per_category: Option<usize>,
    /// Maximum epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Size of the word vectors.
    #[arg(long)]
    dim: Option<usize>,
    /// Words per text.
    #[arg(long)]
    max_len: Option<usize>,
    /// AdamW learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Chance that an item with both loses its text (the same again for its image) in a step.
    #[arg(long)]
    modality_dropout: Option<f64>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
}

/// Import, train, export, print.
pub fn product_cli(args: ProductArgs) -> Result<()> {
    let spinner = ProgressBar::new_spinner()
        .with_message(format!("reading {} (rendering SVGs)", args.items.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut set = ProductSet::import(&args.items)
        .with_context(|| format!("importing {}", args.items.display()))?;
    spinner.finish_and_clear();
    if let Some(n) = args.limit_per_category {
        set = set.limit_per_label(n);
    }
    let counts = set.counts();
    println!(
        "{} items in {} categories ({}); {} rows noted (repeats skipped, blank drawings kept without an image)",
        set.items.len(),
        set.labels.len(),
        set.labels
            .iter()
            .zip(&counts)
            .map(|(l, n)| format!("{l} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        set.skipped.len()
    );
    let backbone = load_backbone(args.weights)?;
    let d = ProductConfig::default();
    let config = ProductConfig {
        epochs: args.epochs.unwrap_or(d.epochs),
        seed: args.seed.unwrap_or(d.seed),
        dim: args.dim.unwrap_or(d.dim),
        max_len: args.max_len.unwrap_or(d.max_len),
        lr: args.lr.unwrap_or(d.lr),
        modality_dropout: args.modality_dropout.unwrap_or(d.modality_dropout),
        ..d
    };
    let cache = args.feature_cache.map(DirStore::new);
    let bar = progress_bar();
    let mut on_progress = |p: Progress| {
        show_epochs(&bar, p, "cross-entropy", "ONNX + NNEF head, tract parity");
        true
    };
    let run = product::run(
        &set,
        &backbone,
        cache.as_ref().map(|c| c as &dyn FeatureStore),
        &config,
        &RunMeta::default(),
        &args.out,
        &mut on_progress,
    )?;
    bar.finish_and_clear();
    print(&run.report, &args.out);
    Ok(())
}

fn print(r: &product::ProductReport, out: &Path) {
    let [train, val, test, scored] = r.counts;
    println!(
        "model {} in {}: {train} train, {val} val, {test} test items ({scored} with text and image, scored); best epoch {} of {}",
        r.model_id,
        out.display(),
        r.best_epoch,
        r.history.len()
    );
    println!(
        "  {:<14} {:>8} {:>11} {:>8}",
        "", "accuracy", "weighted F1", "macro F1"
    );
    let row = |name: &str, s: &Scores| {
        println!(
            "  {name:<14} {:>8.3} {:>11.3} {:>8.3}",
            s.accuracy, s.weighted_f1, s.macro_f1
        );
    };
    row("text only", &r.test.text);
    row("image only", &r.test.image);
    row("text + image", &r.test.both);
    println!("  majority class accuracy {:.3}", r.test.majority_baseline);
    println!(
        "  candle vs tract: {} items × 3 modalities, max |Δp| {:.1e} (ONNX head), {:.1e} (NNEF head); backbone {:.1} s ({} computed, {} cached), training {:.1} s",
        r.parity.items,
        r.parity.max_abs_diff,
        r.parity.nnef_max_abs_diff,
        r.seconds[0],
        r.feature_cache.computed,
        r.feature_cache.hits,
        r.seconds[1]
    );
}
