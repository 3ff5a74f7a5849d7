//! Composite detection images: cut-out photos pasted onto background photos, with exact boxes.

use image::{RgbaImage, imageops};

use contract::evidence::SplitMix64;

use super::data::{BoxLabel, DetectItem, DetectSet, Rect};
use std::path::Path;

use crate::dataset::{Dataset, Split, digest};
use crate::error::io;
use crate::{Error, Result};

/// How composites are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeConfig {
    /// Side of the square images, in pixels.
    pub size: u32,
    /// Number of images.
    pub count: usize,
    /// Objects per image: at least this many…
    pub min_objects: usize,
    /// …and at most this many.
    pub max_objects: usize,
    /// A stamp's longer side, as a share of the image's side: at least…
    pub min_scale: f32,
    /// …and at most.
    pub max_scale: f32,
    /// Largest intersection over union allowed between two boxes of one image.
    pub max_iou: f32,
    /// Seed: the same seed, stamps and backgrounds give the same images and boxes.
    pub seed: u64,
}

impl Default for ComposeConfig {
    fn default() -> Self {
        ComposeConfig {
            size: 320,
            count: 200,
            min_objects: 1,
            max_objects: 4,
            min_scale: 0.25,
            max_scale: 0.55,
            max_iou: 0.3,
            seed: 14,
        }
    }
}

impl ComposeConfig {
    /// Refuse settings that cannot draw a composite.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Param(format!("compose: {m}")));
        if !(64..=2048).contains(&self.size) {
            return bad("size must be 64–2048");
        }
        if self.min_objects == 0 || self.min_objects > self.max_objects || self.max_objects > 16 {
            return bad("objects per image must be 1 ≤ min ≤ max ≤ 16");
        }
        if !(0.05..=1.0).contains(&self.min_scale)
            || !(self.min_scale..=1.0).contains(&self.max_scale)
        {
            return bad("scales must be 0.05 ≤ min ≤ max ≤ 1");
        }
        if !(0.0..=1.0).contains(&self.max_iou) {
            return bad("max_iou must be in 0–1");
        }
        Ok(())
    }
}

/// A cut-out: its pixels (the alpha channel marks the object) and its label.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// Index into the composite set's labels.
    pub label: usize,
    /// RGBA pixels.
    pub pixels: RgbaImage,
}

/// A uniform number in `[lo, hi)`.
fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// The smallest rectangle holding every pixel with a non-zero alpha: `(x0, y0, x1, y1)`,
/// ends exclusive; `None` for a fully transparent image.
pub fn visible_extent(pixels: &RgbaImage) -> Option<(u32, u32, u32, u32)> {
    let mut ext: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in pixels.enumerate_pixels() {
        if p[3] > 0 {
            ext = Some(match ext {
                None => (x, y, x + 1, y + 1),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)),
            });
        }
    }
    ext
}

/// A square crop of `bg` (half to all of its shorter side, anywhere), resized to `size`.
pub fn background(bg: &RgbaImage, size: u32, rng: &mut SplitMix64) -> RgbaImage {
    let short = bg.width().min(bg.height());
    let side = (uniform(rng, 0.5, 1.0) * f64::from(short)).round().max(1.0) as u32;
    let x = (uniform(rng, 0.0, 1.0) * f64::from(bg.width() - side + 1)) as u32;
    let y = (uniform(rng, 0.0, 1.0) * f64::from(bg.height() - side + 1)) as u32;
    let crop = imageops::crop_imm(bg, x, y, side, side).to_image();
    imageops::resize(&crop, size, size, imageops::FilterType::Triangle)
}

/// Paste between `min_objects` and `max_objects` stamps onto `canvas` (a prepared
/// background): each scaled, placed so its visible pixels lie inside the image and its box
/// overlaps no earlier box beyond `max_iou` (a stamp that finds no such place in 20 tries is
/// left out; at least one is always placed), composited over the background by its alpha.
/// Returns the boxes: the exact extent of each stamp's visible pixels.
pub fn paste(
    canvas: &mut RgbaImage,
    stamps: &[Stamp],
    cfg: &ComposeConfig,
    rng: &mut SplitMix64,
) -> Vec<BoxLabel> {
    let size = canvas.width();
    let span = (cfg.max_objects - cfg.min_objects + 1) as u64;
    let wanted = cfg.min_objects + (rng.next_u64() % span) as usize;
    let mut boxes: Vec<BoxLabel> = Vec::new();
    let mut attempts = 0;
    while boxes.len() < wanted && attempts < wanted * 20 + 20 {
        attempts += 1;
        let stamp = &stamps[rng.below(stamps.len())];
        let (w, h) = stamp.pixels.dimensions();
        let longer =
            uniform(rng, f64::from(cfg.min_scale), f64::from(cfg.max_scale)) * f64::from(size);
        let f = longer / f64::from(w.max(h));
        let (sw, sh) = (
            ((f64::from(w) * f).round() as u32).clamp(1, size),
            ((f64::from(h) * f).round() as u32).clamp(1, size),
        );
        let scaled = imageops::resize(&stamp.pixels, sw, sh, imageops::FilterType::Triangle);
        let Some((x0, y0, x1, y1)) = visible_extent(&scaled) else {
            continue;
        };
        let (bw, bh) = (x1 - x0, y1 - y0);
        if bw < 4 || bh < 4 {
            continue;
        }
        // The visible part's top-left corner anywhere it fits.
        let bx = rng.below((size - bw + 1) as usize) as u32;
        let by = rng.below((size - bh + 1) as usize) as u32;
        let rect = Rect {
            x: bx as f32,
            y: by as f32,
            w: bw as f32,
            h: bh as f32,
        };
        if boxes.iter().any(|b| b.rect.iou(&rect) > cfg.max_iou) {
            continue;
        }
        // Paste the scaled stamp so that its visible part starts at (bx, by).
        let (ox, oy) = (i64::from(bx) - i64::from(x0), i64::from(by) - i64::from(y0));
        for (x, y, p) in scaled.enumerate_pixels() {
            let a = u32::from(p[3]);
            if a == 0 {
                continue;
            }
            let (cx, cy) = ((i64::from(x) + ox) as u32, (i64::from(y) + oy) as u32);
            let dst = canvas.get_pixel_mut(cx, cy);
            for c in 0..3 {
                let v = (u32::from(p[c]) * a + u32::from(dst[c]) * (255 - a) + 127) / 255;
                dst[c] = v as u8;
            }
            dst[3] = 255;
        }
        boxes.push(BoxLabel {
            label: stamp.label,
            rect,
        });
    }
    boxes
}

/// `cfg.count` composites of `stamps` on crops of `backgrounds`, as a set over `labels`
/// whose items are all in `split` (the caller picks stamps of that split, so held-out
/// composites show only held-out objects). Each image is stored as PNG.
pub fn compose_set(
    stamps: &[Stamp],
    labels: Vec<String>,
    backgrounds: &[RgbaImage],
    split: Split,
    cfg: &ComposeConfig,
) -> Result<DetectSet> {
    cfg.validate()?;
    if stamps.is_empty() || backgrounds.is_empty() {
        return Err(Error::Dataset(
            "compositing needs at least one stamp and one background".into(),
        ));
    }
    if let Some(s) = stamps.iter().find(|s| s.label >= labels.len()) {
        return Err(Error::Dataset(format!(
            "a stamp's label {} is not among {labels:?}",
            s.label
        )));
    }
    let mut rng = SplitMix64::new(cfg.seed);
    let mut items = Vec::with_capacity(cfg.count);
    for i in 0..cfg.count {
        let mut canvas = background(
            &backgrounds[rng.below(backgrounds.len())],
            cfg.size,
            &mut rng,
        );
        let boxes = paste(&mut canvas, stamps, cfg, &mut rng);
        let mut png = Vec::new();
        image::DynamicImage::ImageRgba8(canvas)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| Error::Dataset(format!("composite {i}: {e}")))?;
        let (sha256, _) = digest(&png);
        items.push(DetectItem {
            source: format!("composite {i} (seed {})", cfg.seed),
            sha256,
            split,
            width: cfg.size,
            height: cfg.size,
            boxes,
            bytes: png.into(),
        });
    }
    Ok(DetectSet { labels, items })
}

/// The background photographs of `dir` (every `.jpg`, `.jpeg` or `.png`, in name order),
/// decoded.
pub fn load_backgrounds(dir: &Path) -> Result<Vec<RgbaImage>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::Dataset(format!(
            "no background photo in {}",
            dir.display()
        )));
    }
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(io(p))?;
            crate::dataset::decode_image(&bytes)
                .map_err(|e| Error::Dataset(format!("{}: {e}", p.display())))
        })
        .collect()
}

/// Composites of the cut-outs of `photos` that fall in `split` (so a held-out split shows
/// only held-out objects), labelled with the photos' classes; the seed is `cfg.seed` plus
/// the split's rank, so the three splits draw differently.
pub fn compose_split(
    photos: &Dataset,
    backgrounds: &[RgbaImage],
    split: Split,
    cfg: &ComposeConfig,
) -> Result<DetectSet> {
    let stamps = photos
        .split(split)
        .map(|s| {
            Ok(Stamp {
                label: s.label,
                pixels: s.decode()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let offset = match split {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    };
    let cfg = ComposeConfig {
        seed: cfg.seed.wrapping_add(offset),
        ..cfg.clone()
    };
    compose_set(&stamps, photos.labels.clone(), backgrounds, split, &cfg)
}
