//! Detection data: COCO and sidecar imports refuse bad input as a whole, with the entry
//! named; composites of the bundled cut-outs on the bundled background photos are
//! deterministic, their boxes exact, and they survive a COCO round trip.
//! Needs `scripts/fetch-assets.sh` (the README's test command runs it first).

// Test helpers panic on purpose: the panic message is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use contract::detection::mean_ap;
use contract::evidence::SplitMix64;
use image::RgbaImage;
use trainer::dataset::{Dataset, Split};
use trainer::detect::baseline::full_image_boxes;
use trainer::detect::compose::{background, paste};
use trainer::detect::{ComposeConfig, DetectSet, Stamp, compose_set};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets")
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(RgbaImage::from_pixel(w, h, image::Rgba([10, 20, 30, 255])))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A folder with `a.png` (64×48), `b.png` (32×32) and `annotations.json` = `coco`.
fn coco_folder(coco: &serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.png"), png(64, 48)).unwrap();
    std::fs::write(dir.path().join("b.png"), png(32, 32)).unwrap();
    std::fs::write(dir.path().join("notes.png"), b"not an image").unwrap();
    std::fs::write(
        dir.path().join("annotations.json"),
        serde_json::to_vec(coco).unwrap(),
    )
    .unwrap();
    dir
}

fn good() -> serde_json::Value {
    serde_json::json!({
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.png", "width": 32, "height": 32}
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [0, 0, 64, 48]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [10.5, 4, 20, 12.25]},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [1, 1, 30, 30]}
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    })
}

/// A change to a COCO document.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

fn coco_err(coco: serde_json::Value) -> String {
    let dir = coco_folder(&coco);
    DetectSet::import_coco(&dir.path().join("annotations.json"))
        .unwrap_err()
        .to_string()
}

#[test]
fn coco_import_reads_boxes_and_refuses_bad_entries_by_name() {
    let dir = coco_folder(&good());
    let set = DetectSet::import_coco(&dir.path().join("annotations.json")).unwrap();
    assert_eq!(set.labels, ["cat", "dog"]);
    assert_eq!(set.items.len(), 2);
    let a = &set.items[0];
    assert_eq!((a.width, a.height, a.boxes.len()), (64, 48, 2));
    assert_eq!(a.boxes[0].label, 1);
    assert_eq!(a.boxes[1].label, 0);
    assert_eq!(
        [
            a.boxes[1].rect.x,
            a.boxes[1].rect.y,
            a.boxes[1].rect.w,
            a.boxes[1].rect.h
        ],
        [10.5, 4.0, 20.0, 12.25]
    );
    assert_eq!(set.items[1].boxes.len(), 1);

    // Written back and read again: the same images and boxes.
    let out = tempfile::tempdir().unwrap();
    set.write_coco(out.path()).unwrap();
    let back = DetectSet::import_coco(&out.path().join("annotations.json")).unwrap();
    assert_eq!(back.labels, set.labels);
    for (x, y) in back.items.iter().zip(&set.items) {
        assert_eq!((&x.sha256, &x.boxes), (&y.sha256, &y.boxes));
    }
    // It binds each file by its sha256 (any case), which the reader checks.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("annotations.json")).unwrap())
            .unwrap();
    assert_eq!(written["images"][1]["sha256"], set.items[1].sha256.as_str());
    let mut upper = good();
    upper["images"][1]["sha256"] = set.items[1].sha256.to_uppercase().into();
    let dir = coco_folder(&upper);
    DetectSet::import_coco(&dir.path().join("annotations.json")).unwrap();

    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good();
        edit(&mut c);
        coco_err(c)
    };
    let cases: Vec<(&str, Edit)> = vec![
        (
            "leaves the 64×48 image",
            Box::new(|c| c["annotations"][1]["bbox"] = serde_json::json!([50, 4, 20, 12])),
        ),
        (
            "leaves the 64×48 image",
            Box::new(|c| c["annotations"][1]["bbox"] = serde_json::json!([-1, 4, 20, 12])),
        ),
        (
            "has no area",
            Box::new(|c| c["annotations"][1]["bbox"] = serde_json::json!([1, 4, 0, 12])),
        ),
        (
            "unknown category id 9",
            Box::new(|c| c["annotations"][1]["category_id"] = 9.into()),
        ),
        (
            "unknown image id 5",
            Box::new(|c| c["annotations"][1]["image_id"] = 5.into()),
        ),
        (
            "annotation id 10 appears twice",
            Box::new(|c| c["annotations"][1]["id"] = 10.into()),
        ),
        (
            "image id 1 appears twice",
            Box::new(|c| c["images"][1]["id"] = 1.into()),
        ),
        (
            "category id 3 appears twice",
            Box::new(|c| c["categories"][1]["id"] = 3.into()),
        ),
        (
            "appears twice",
            Box::new(|c| c["categories"][1]["name"] = "cat".into()),
        ),
        (
            "missing.png",
            Box::new(|c| c["images"][1]["file_name"] = "missing.png".into()),
        ),
        (
            "notes.png",
            Box::new(|c| c["images"][1]["file_name"] = "notes.png".into()),
        ),
        (
            "inside the file's folder",
            Box::new(|c| c["images"][1]["file_name"] = "../b.png".into()),
        ),
        (
            "the file says 30×32",
            Box::new(|c| c["images"][1]["width"] = 30.into()),
        ),
        (
            "crowd",
            Box::new(|c| c["annotations"][0]["iscrowd"] = 1.into()),
        ),
        (
            "category 3",
            Box::new(|c| c["categories"][0]["name"] = "".into()),
        ),
        (
            "image 2 (b.png) is not the file annotated",
            Box::new(|c| c["images"][1]["sha256"] = "00".repeat(32).into()),
        ),
        (
            "missing field `categories`",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("categories");
            }),
        ),
    ];
    for (want, edit) in cases {
        let e = with(&*edit);
        assert!(e.contains(want), "expected {want:?} in {e}");
    }
    // The entry is named.
    let e = with(&|c| c["annotations"][2]["bbox"] = serde_json::json!([1, 1, 40, 30]));
    assert!(e.contains("annotation 12") && e.contains("32×32"), "{e}");
}

#[test]
fn the_full_image_baseline_boxes_each_image_with_the_top_class() {
    let dir = coco_folder(&good());
    let set = DetectSet::import_coco(&dir.path().join("annotations.json")).unwrap();
    assert_eq!(set.truths().len(), 3);
    // A classifier whose labels come in another order: matched by name.
    let names = ["dog".to_string(), "cat".to_string()];
    let probs = [vec![0.8f32, 0.2], vec![0.3, 0.7]];
    let dets = full_image_boxes(&set, &names, |i| Ok(probs[i].clone())).unwrap();
    assert_eq!(dets.len(), 2);
    assert_eq!(
        (dets[0].label, dets[0].score, dets[0].bbox),
        (1, 0.8, [0.0, 0.0, 64.0, 48.0])
    );
    assert_eq!(
        (dets[1].label, dets[1].score, dets[1].bbox),
        (0, 0.7, [0.0, 0.0, 32.0, 32.0])
    );
    // Image a's "dog" box is the whole image, found; of the two "cat" boxes only b's (IoU
    // 900/1024 with the whole of b) is: recall 1/2 at precision 1, 51 of 101 recall points.
    let m = mean_ap(&set.truths(), &dets, 2);
    assert!((m.per_class_ap50[0].unwrap() - 51.0 / 101.0).abs() < 1e-12);
    assert!((m.per_class_ap50[1].unwrap() - 1.0).abs() < 1e-12);
    let unknown = ["dog".to_string(), "bird".to_string()];
    let e = full_image_boxes(&set, &unknown, |i| Ok(probs[i].clone())).unwrap_err();
    assert!(e.to_string().contains("\"bird\""), "{e}");
}

#[test]
fn sidecars_are_read_next_to_their_images() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.png"), png(64, 48)).unwrap();
    std::fs::write(dir.path().join("b.png"), png(32, 32)).unwrap();
    std::fs::write(
        dir.path().join("a.boxes.json"),
        r#"[{"label": "dog", "bbox": [0, 0, 10, 10]}, {"label": "cat", "bbox": [5, 5, 20, 20]}]"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("b.boxes.json"), "[]").unwrap();
    let set = DetectSet::import_sidecars(dir.path()).unwrap();
    assert_eq!(set.labels, ["cat", "dog"]);
    assert_eq!(set.items.len(), 2);
    assert_eq!(
        set.items[0]
            .boxes
            .iter()
            .map(|b| b.label)
            .collect::<Vec<_>>(),
        [1, 0]
    );
    assert!(
        set.items[1].boxes.is_empty(),
        "an image with nothing to find"
    );

    std::fs::write(
        dir.path().join("b.boxes.json"),
        r#"[{"label": "cat", "bbox": [5, 5, 30, 30]}]"#,
    )
    .unwrap();
    let e = DetectSet::import_sidecars(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.boxes.json") && e.contains("leaves the 32×32 image"),
        "{e}"
    );
    std::fs::write(dir.path().join("c.boxes.json"), "[]").unwrap();
    let e = DetectSet::import_sidecars(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("c.boxes.json") && e.contains("no image"), "{e}");
}

/// The bundled cut-outs of `split` (a few per label) and three bundled backgrounds.
fn bundled(split: Split) -> (Vec<Stamp>, Vec<String>, Vec<RgbaImage>) {
    let photos = Dataset::import_folder(&assets().join("datasets/tuxpaint-photos")).unwrap();
    let stamps: Vec<Stamp> = photos
        .split(split)
        .take(40)
        .map(|s| Stamp {
            label: s.label,
            pixels: s.decode().unwrap(),
        })
        .collect();
    let dir = assets().join("datasets/backgrounds");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        12,
        "bundled backgrounds: run scripts/fetch-assets.sh"
    );
    let backgrounds = names
        .iter()
        .take(3)
        .map(|p| image::open(p).unwrap().to_rgba8())
        .collect();
    (stamps, photos.labels, backgrounds)
}

#[test]
fn composites_are_deterministic_with_exact_boxes() {
    let (stamps, labels, backgrounds) = bundled(Split::Test);
    assert!(stamps.len() >= 10, "{} test stamps", stamps.len());
    let cfg = ComposeConfig {
        count: 12,
        size: 192,
        ..Default::default()
    };
    let set = compose_set(&stamps, labels.clone(), &backgrounds, Split::Test, &cfg).unwrap();
    let again = compose_set(&stamps, labels.clone(), &backgrounds, Split::Test, &cfg).unwrap();
    let other = compose_set(
        &stamps,
        labels.clone(),
        &backgrounds,
        Split::Test,
        &ComposeConfig {
            seed: 15,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_eq!(set.items.len(), 12);
    let shas = |s: &DetectSet| s.items.iter().map(|i| i.sha256.clone()).collect::<Vec<_>>();
    assert_eq!(shas(&set), shas(&again), "same seed, same images");
    assert_ne!(shas(&set), shas(&other), "another seed, other images");
    let mut objects = 0;
    for item in &set.items {
        assert_eq!(item.split, Split::Test);
        assert!((1..=4).contains(&item.boxes.len()), "{}", item.boxes.len());
        objects += item.boxes.len();
        for (i, b) in item.boxes.iter().enumerate() {
            assert!(b.rect.problem(192, 192).is_none(), "{:?}", b.rect);
            assert!(b.rect.w >= 4.0 && b.rect.h >= 4.0);
            for c in &item.boxes[i + 1..] {
                assert!(b.rect.iou(&c.rect) <= cfg.max_iou);
            }
        }
    }
    assert!(objects > 12, "{objects} objects in 12 images");

    // Exact boxes: drawn again step by step, every pixel outside the boxes is the
    // background's, and every box's edges touch a changed pixel (tight).
    let mut rng = SplitMix64::new(cfg.seed);
    let bg = background(
        &backgrounds[rng.below(backgrounds.len())],
        cfg.size,
        &mut rng,
    );
    let mut canvas = bg.clone();
    let boxes = paste(&mut canvas, &stamps, &cfg, &mut rng);
    assert_eq!(boxes, set.items[0].boxes);
    let decoded = image::load_from_memory(&set.items[0].bytes)
        .unwrap()
        .to_rgba8();
    assert_eq!(decoded, canvas, "the stored PNG is the composite");
    let inside = |x: u32, y: u32| {
        boxes.iter().any(|b| {
            let (x, y) = (x as f32, y as f32);
            x >= b.rect.x && x < b.rect.x + b.rect.w && y >= b.rect.y && y < b.rect.y + b.rect.h
        })
    };
    for (x, y, p) in canvas.enumerate_pixels() {
        if !inside(x, y) {
            assert_eq!(
                p,
                bg.get_pixel(x, y),
                "pixel ({x}, {y}) outside every box changed"
            );
        }
    }
    for b in &boxes {
        let (x0, y0) = (b.rect.x as u32, b.rect.y as u32);
        let (x1, y1) = (x0 + b.rect.w as u32 - 1, y0 + b.rect.h as u32 - 1);
        let changed = |x: u32, y: u32| canvas.get_pixel(x, y) != bg.get_pixel(x, y);
        assert!(
            (x0..=x1).any(|x| changed(x, y0)),
            "top edge of {:?}",
            b.rect
        );
        assert!(
            (x0..=x1).any(|x| changed(x, y1)),
            "bottom edge of {:?}",
            b.rect
        );
        assert!(
            (y0..=y1).any(|y| changed(x0, y)),
            "left edge of {:?}",
            b.rect
        );
        assert!(
            (y0..=y1).any(|y| changed(x1, y)),
            "right edge of {:?}",
            b.rect
        );
    }

    // Through COCO and back: the same images and boxes.
    let out = tempfile::tempdir().unwrap();
    set.write_coco(out.path()).unwrap();
    let back = DetectSet::import_coco(&out.path().join("annotations.json")).unwrap();
    assert_eq!(back.labels, labels);
    for (x, y) in back.items.iter().zip(&set.items) {
        assert_eq!((&x.sha256, &x.boxes), (&y.sha256, &y.boxes));
    }

    // Settings that cannot draw are refused.
    for bad in [
        ComposeConfig {
            min_objects: 0,
            ..cfg.clone()
        },
        ComposeConfig {
            min_objects: 5,
            max_objects: 4,
            ..cfg.clone()
        },
        ComposeConfig {
            size: 10,
            ..cfg.clone()
        },
        ComposeConfig {
            max_scale: 2.0,
            ..cfg.clone()
        },
    ] {
        assert!(compose_set(&stamps, labels.clone(), &backgrounds, Split::Test, &bad).is_err());
    }
    assert!(compose_set(&[], labels, &backgrounds, Split::Test, &cfg).is_err());
}
