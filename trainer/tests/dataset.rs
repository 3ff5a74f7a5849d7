//! Dataset import on real images: corrupt and non-image files, empty classes, the split.

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use trainer::dataset::{Dataset, Split};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tuxpaint-mini")
}

/// Copy the fixture tree into a temp dir so a test can add bad files to it.
fn copy_fixtures(labels: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for label in labels {
        let dst = dir.path().join(label);
        std::fs::create_dir_all(&dst).unwrap();
        for f in std::fs::read_dir(fixtures().join(label)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
    dir
}

#[test]
fn corrupt_and_non_image_files_are_reported_and_skipped() {
    let dir = copy_fixtures(&["animals", "food"]);
    let good = std::fs::read(fixtures().join("food/banana.png")).unwrap();
    std::fs::write(
        dir.path().join("animals/truncated.png"),
        &good[..good.len() / 3],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("food/notes.jpg"),
        b"this is text, not a jpeg",
    )
    .unwrap();
    std::fs::write(dir.path().join("food/copy-of-banana.png"), &good).unwrap();
    std::fs::write(dir.path().join("food/banana.txt"), b"A banana.").unwrap();

    let ds = Dataset::import_folder(dir.path()).unwrap();
    assert_eq!(ds.labels, ["animals", "food"]);
    assert_eq!(ds.samples.len(), 6, "3 real photos per class");
    let reasons: Vec<(String, String)> = ds
        .skipped
        .iter()
        .map(|s| {
            (
                Path::new(&s.path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into(),
                s.reason.clone(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    let reason = |name: &str| {
        reasons
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.as_str())
    };
    assert!(
        reason("truncated.png").is_some_and(|r| !r.is_empty()),
        "{reasons:?}"
    );
    assert_eq!(reason("notes.jpg"), Some("not a recognised image format"));
    assert!(
        reason("copy-of-banana.png").is_some_and(|r| r.starts_with("duplicate of")),
        "{reasons:?}"
    );
}

#[test]
fn an_empty_class_is_a_clear_error() {
    let dir = copy_fixtures(&["animals", "food"]);
    std::fs::create_dir_all(dir.path().join("plants")).unwrap();
    std::fs::write(dir.path().join("plants/readme.md"), b"# todo").unwrap();
    let err = Dataset::import_folder(dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        "dataset: class(es) with no usable image: plants (add images or remove the folder)"
    );
}

#[test]
fn a_single_class_or_missing_root_is_refused() {
    let dir = copy_fixtures(&["animals"]);
    let err = Dataset::import_folder(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("has 1 class folder(s); need at least 2"),
        "{err}"
    );
    let err = Dataset::import_folder(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn split_depends_only_on_content() {
    let all = Dataset::import_folder(&fixtures()).unwrap();
    let dir = copy_fixtures(&["animals", "food"]);
    let part = Dataset::import_folder(dir.path()).unwrap();
    for s in &part.samples {
        let same = all.samples.iter().find(|a| a.sha256 == s.sha256).unwrap();
        assert_eq!(
            same.split, s.split,
            "{} moved split when other images changed",
            s.source
        );
    }
    // The rule itself: first 8 bytes of the sha256, big-endian, mod 100.
    let mut d = [0u8; 32];
    d[7] = 79;
    assert_eq!(Split::of_digest(&d), Split::Train);
    d[7] = 80;
    assert_eq!(Split::of_digest(&d), Split::Val);
    d[7] = 99;
    assert_eq!(Split::of_digest(&d), Split::Test);
    // Snapshot ids change when a label changes.
    let mut relabelled = all.clone();
    relabelled.samples[0].label = 1;
    assert_ne!(all.snapshot_id(), relabelled.snapshot_id());
}

#[test]
fn captions_from_sidecar_files_and_captions_tsv() {
    let dir = copy_fixtures(&["animals", "food"]);
    std::fs::write(
        dir.path().join("food/banana.txt"),
        "A banana.\nsecond line ignored\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("captions.tsv"),
        "# path\tcaption\nfood/banana.png\tA ripe yellow banana\nfood/banana.png\t  \nunknown.png\tnobody\n",
    )
    .unwrap();
    let ds = Dataset::import_folder(dir.path()).unwrap();
    let banana = ds
        .samples
        .iter()
        .find(|s| s.source.ends_with("food/banana.png"))
        .unwrap();
    assert_eq!(banana.captions, ["A banana.", "A ripe yellow banana"]);
    // A malformed line is an error that names the file and line.
    std::fs::write(
        dir.path().join("captions.tsv"),
        "food/banana.png A banana\n",
    )
    .unwrap();
    let err = Dataset::import_folder(dir.path()).unwrap_err().to_string();
    assert!(err.contains("captions.tsv:1"), "{err}");
}

#[test]
fn caption_lists_without_class_folders() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["banana.png", "strawberry.png"] {
        std::fs::copy(fixtures().join("food").join(f), images.join(f)).unwrap();
    }
    std::fs::copy(
        fixtures().join("animals/echidna.png"),
        dir.path().join("echidna.png"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("captions.jsonl"),
        concat!(
            "{\"image\": \"images/banana.png\", \"caption\": \"A banana.\"}\n",
            "{\"image\": \"images/strawberry.png\", \"captions\": [\"A strawberry.\", \"A red fruit.\"]}\n",
            "\n",
            "{\"image\": \"echidna.png\", \"caption\": \"A spiny animal.\"}\n",
            "{\"image\": \"images/banana.png\", \"caption\": \"A yellow fruit.\"}\n",
        ),
    )
    .unwrap();
    let ds = Dataset::import_captions(dir.path()).unwrap();
    assert_eq!(ds.labels, ["images"]);
    let by = |name: &str| {
        ds.samples
            .iter()
            .find(|s| s.source.ends_with(name))
            .unwrap()
            .captions
            .clone()
    };
    assert_eq!(by("banana.png"), ["A banana.", "A yellow fruit."]);
    assert_eq!(by("strawberry.png"), ["A strawberry.", "A red fruit."]);
    assert_eq!(by("echidna.png"), ["A spiny animal."]);
    // A path leaving the folder and a broken line are refused with the line number.
    std::fs::write(
        dir.path().join("captions.jsonl"),
        "{\"image\": \"../x.png\", \"caption\": \"x\"}\n",
    )
    .unwrap();
    assert!(
        Dataset::import_captions(dir.path())
            .unwrap_err()
            .to_string()
            .contains("inside")
    );
    std::fs::write(dir.path().join("captions.jsonl"), "{\"image\": 3}\n").unwrap();
    assert!(
        Dataset::import_captions(dir.path())
            .unwrap_err()
            .to_string()
            .contains("captions.jsonl:1")
    );
}
