//! The backbone feature cache on real runs (a small subset of the bundled photos): a second
//! run on the same images computes no backbone pass and gives the same metrics, the ranking
//! run reuses the classifier's entries, a damaged entry is detected and recomputed, and a
//! different backbone does not see the old entries.
//!
//! Needs `scripts/fetch-assets.sh` (the README's test command runs it first).

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use trainer::backbone::{Backbone, default_classes_path, default_weights_path, imagenet_classes};
use trainer::dataset::{Dataset, Split};
use trainer::pipeline::{self, RunReport};
use trainer::rank::{self, RankConfig};
use trainer::run::cache::{self, CacheStats, View};
use trainer::run::{DirStore, FeatureStore, RunMeta};
use trainer::train::TrainConfig;

/// The first `per_label` photos of each label.
fn subset(per_label: usize) -> Dataset {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/datasets/tuxpaint-photos");
    assert!(
        data.exists(),
        "bundled photos missing: run scripts/fetch-assets.sh"
    );
    let mut d = Dataset::import_folder(&data).unwrap();
    let mut seen = vec![0usize; d.labels.len()];
    d.samples.retain(|s| {
        seen[s.label] += 1;
        seen[s.label] <= per_label
    });
    d
}

fn config() -> TrainConfig {
    TrainConfig {
        views: 2,
        epochs: 8,
        ..TrainConfig::default()
    }
}

fn classify(d: &Dataset, b: &Backbone, store: &dyn FeatureStore, out: &Path) -> RunReport {
    let meta = RunMeta {
        model_id: Some("cls-cache".into()),
        parent_model_id: None,
        ..Default::default()
    };
    pipeline::run(d, b, Some(store), &config(), &meta, out, &mut |_| true)
        .unwrap()
        .report
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect();
    out.sort();
    out
}

/// A copy of the backbone weights with one weight of the last block's projection changed:
/// another backbone (other sha256, other features).
fn other_backbone(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(default_weights_path()).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let t = &header["_blocks.15._project_conv.weight"];
    assert_eq!(t["dtype"], "F32", "{t}");
    let at = 8 + n + t["data_offsets"][0].as_u64().unwrap() as usize;
    let w = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(w * 1.5 + 0.01).to_le_bytes());
    let path = dir.join("other.safetensors");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn feature_cache_is_used_shared_checked_and_keyed_by_backbone() {
    let d = subset(12);
    let count = |s| d.split(s).count();
    let (train, val, test) = (count(Split::Train), count(Split::Val), count(Split::Test));
    assert!(train >= 40 && val >= 2 && test >= 2, "{train}/{val}/{test}");
    // Augmented views of the training images, clean views of every image (the training
    // images' for the kNN baseline), and augmented views of the test images (the test split is
    // small, so the gate's evidence cross-validates over train + test).
    assert!(test < config().cv_below);
    let views = (train + test) * config().views + val + test + train;
    let backbone = Backbone::load(&default_weights_path()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::new(tmp.path().join("cache"));

    // 1. A cold run computes every view and stores each once.
    let first = classify(&d, &backbone, &store, &tmp.path().join("m1"));
    assert_eq!(
        first.timing.feature_cache,
        CacheStats {
            hits: 0,
            computed: views,
            corrupt: 0,
            store_errors: 0
        }
    );
    assert_eq!(first.timing.feature_images, views);
    let entries = files_under(store.root());
    assert_eq!(entries.len(), views, "one entry per (image, view)");

    // 2. The same snapshot again: zero backbone passes, the same curves and metrics.
    let second = classify(&d, &backbone, &store, &tmp.path().join("m2"));
    assert_eq!(second.timing.feature_cache.computed, 0);
    assert_eq!(second.timing.feature_cache.hits, views);
    let curve = |r: &RunReport| {
        r.history
            .iter()
            .map(|e| (e.train_loss, e.val_accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(curve(&first), curve(&second));
    assert_eq!(
        serde_json::to_value(&first.manifest.metrics).unwrap(),
        serde_json::to_value(&second.manifest.metrics).unwrap()
    );
    assert_eq!(files_under(store.root()), entries, "nothing rewritten");

    // 3. Ranking shares the clean views: every image's clean view comes from the classifier's
    //    runs (the training images' for its kNN baseline), so ranking computes none.
    let classes = imagenet_classes(&default_classes_path()).unwrap();
    let cfg = RankConfig {
        epochs: 3,
        ..RankConfig::default()
    };
    let ranked = rank::run(
        &d,
        &backbone,
        Some(&store),
        &classes,
        &cfg,
        &RunMeta::default(),
        &tmp.path().join("r1"),
        &mut |_| true,
    )
    .unwrap()
    .report;
    assert_eq!(
        (ranked.feature_cache.hits, ranked.feature_cache.computed),
        (val + test + train, 0)
    );

    // 4. A damaged entry is refused, recomputed and rewritten whole.
    let victim = d.split(Split::Test).next().unwrap();
    let key = cache::key(&backbone.weights_sha256, &victim.sha256, &View::Clean);
    let path = store.path(&key);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let third = classify(&d, &backbone, &store, &tmp.path().join("m3"));
    assert_eq!(
        (
            third.timing.feature_cache.corrupt,
            third.timing.feature_cache.computed,
            third.timing.feature_cache.hits
        ),
        (1, 1, views - 1)
    );
    let dim = trainer::backbone::FEATURE_DIM;
    let repaired = cache::decode(&key, &std::fs::read(&path).unwrap(), dim).unwrap();
    let original = cache::decode(&key, &good, dim).unwrap();
    let diff = repaired
        .iter()
        .zip(&original)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-5, "recomputed features differ by {diff}");

    // 5. Another backbone never reads the old entries.
    let other = Backbone::load(&other_backbone(tmp.path())).unwrap();
    assert_ne!(other.weights_sha256, backbone.weights_sha256);
    let fourth = classify(&d, &other, &store, &tmp.path().join("m4"));
    assert_eq!(
        (
            fourth.timing.feature_cache.hits,
            fourth.timing.feature_cache.computed
        ),
        (0, views)
    );
    assert_eq!(files_under(store.root()).len(), 2 * views);
}
