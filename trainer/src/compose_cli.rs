//! `trainer compose`: write the bundled detection composites as COCO folders.

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use trainer::dataset::{Dataset, Split};
use trainer::detect::{ComposeConfig, compose_split, load_backgrounds};

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
