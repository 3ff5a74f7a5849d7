//! A detection set: labelled boxes per image, imported from COCO JSON or from sidecars.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dataset::{Split, decode_image, digest, validate_label};
use crate::error::io;
use crate::{Error, Result};

/// A box in pixels: left, top, width, height (COCO's `bbox`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width (> 0).
    pub w: f32,
    /// Height (> 0).
    pub h: f32,
}

impl Rect {
    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.w * self.h
    }

    /// Intersection over union with `other`.
    pub fn iou(&self, other: &Rect) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        let inter = ix.max(0.0) * iy.max(0.0);
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }

    /// Why this box cannot be in a `width × height` image (`None` when it can): finite, a
    /// positive area, inside the image.
    pub fn problem(&self, width: u32, height: u32) -> Option<String> {
        contract::detection::box_problem(&[self.x, self.y, self.w, self.h], width, height)
    }
}

/// One labelled box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxLabel {
    /// Index into [`DetectSet::labels`].
    pub label: usize,
    /// Where.
    pub rect: Rect,
}

/// One image and its boxes.
#[derive(Debug, Clone)]
pub struct DetectItem {
    /// Where it came from (`FILE` or `annotations.json: image 7`).
    pub source: String,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
    /// Split by the sha256.
    pub split: Split,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Its boxes (may be empty: an image with nothing to find).
    pub boxes: Vec<BoxLabel>,
    /// The encoded file.
    pub bytes: Arc<[u8]>,
}

/// Images with labelled boxes.
#[derive(Debug, Clone)]
pub struct DetectSet {
    /// Category names; a box's `label` indexes this.
    pub labels: Vec<String>,
    /// Every image, in the file's order.
    pub items: Vec<DetectItem>,
}

#[derive(Deserialize)]
struct Coco {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize, Serialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
    /// The file's sha256 (lower-case hex), when the document binds its files: checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// Where the file can be fetched (COCO's own field; not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coco_url: Option<String>,
}

/// One image of a COCO document to write (see [`coco_document`]).
#[derive(Debug, Clone)]
pub struct CocoEntry {
    /// Its `file_name`.
    pub file_name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The file's sha256, written so a reader can check it has the very file.
    pub sha256: Option<String>,
    /// Where the file can be fetched (`coco_url`).
    pub url: Option<String>,
    /// Its boxes (labels index the document's categories).
    pub boxes: Vec<BoxLabel>,
}

/// The COCO JSON document (`info` when given, `images`, `annotations` with `bbox` and `area`,
/// `categories`) of `entries` on `labels`, ids counted from 1 in order: the one format
/// [`DetectSet::write_coco`] writes, the api exports and [`DetectSet::parse_coco`] reads.
pub fn coco_document(
    labels: &[String],
    entries: Vec<CocoEntry>,
    info: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut images = Vec::with_capacity(entries.len());
    let mut annotations = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let image_id = i as u64 + 1;
        for b in &e.boxes {
            annotations.push(CocoAnnotation {
                id: annotations.len() as u64 + 1,
                image_id,
                category_id: b.label as u64 + 1,
                bbox: [b.rect.x, b.rect.y, b.rect.w, b.rect.h],
                area: b.rect.area(),
                iscrowd: 0,
            });
        }
        images.push(CocoImage {
            id: image_id,
            file_name: e.file_name,
            width: e.width,
            height: e.height,
            sha256: e.sha256,
            coco_url: e.url,
        });
    }
    let categories: Vec<CocoCategory> = labels
        .iter()
        .enumerate()
        .map(|(i, name)| CocoCategory {
            id: i as u64 + 1,
            name: name.clone(),
        })
        .collect();
    let mut doc = serde_json::json!({
        "images": images,
        "annotations": annotations,
        "categories": categories,
    });
    if let Some(info) = info {
        doc["info"] = info;
    }
    doc
}

#[derive(Deserialize, Serialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
    #[serde(default)]
    area: f32,
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize, Serialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

/// One box of a sidecar (`NAME.boxes.json` next to `NAME.png`: a JSON list of these).
#[derive(Deserialize)]
struct SidecarBox {
    label: String,
    bbox: [f32; 4],
}

fn rect([x, y, w, h]: [f32; 4]) -> Rect {
    Rect { x, y, w, h }
}

/// An image file read, hashed and measured once (by [`DetectSet::parse_coco`]'s caller).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Its split (by the sha256).
    pub split: Split,
    /// Width in pixels, as decoded.
    pub width: u32,
    /// Height in pixels, as decoded.
    pub height: u32,
    /// The encoded file.
    pub bytes: Arc<[u8]>,
}

/// Read, hash and decode an image file inside `root`.
fn load_image(root: &Path, name: &str) -> std::result::Result<Loaded, String> {
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!("{name:?} must be a path inside the file's folder"));
    }
    let bytes = std::fs::read(root.join(rel)).map_err(|e| format!("{name}: {e}"))?;
    let image = decode_image(&bytes).map_err(|e| format!("{name}: {e}"))?;
    let (sha256, raw) = digest(&bytes);
    Ok(Loaded {
        sha256,
        split: Split::of_digest(&raw),
        width: image.width(),
        height: image.height(),
        bytes: Arc::from(bytes),
    })
}

impl DetectSet {
    /// Import a COCO JSON file (`images`, `annotations` with `bbox` [x, y, w, h] in pixels,
    /// `categories`; image files relative to the JSON's folder). All or nothing: the first
    /// problem (a repeated id, an annotation naming an unknown image or category, a box
    /// outside its image or without area, a crowd region, an image whose file is missing,
    /// undecodable or not the declared size, a bad category name) is the error, naming the
    /// entry.
    pub fn import_coco(path: &Path) -> Result<DetectSet> {
        let name = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| Error::Dataset(format!("{name}: {e}")))?;
        let root = path.parent().unwrap_or(Path::new("."));
        Self::parse_coco(&name, &text, |file| load_image(root, file))
    }

    /// [`DetectSet::import_coco`] of COCO JSON text (`name` names it in errors), each image
    /// file given by `load` (its `file_name` → the file read, hashed and decoded, or why not):
    /// the same checks, all or nothing.
    pub fn parse_coco(
        name: &str,
        text: &[u8],
        mut load: impl FnMut(&str) -> std::result::Result<Loaded, String>,
    ) -> Result<DetectSet> {
        let bad = |m: String| Error::Dataset(format!("{name}: {m}"));
        let coco: Coco = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;

        let mut labels = Vec::new();
        let mut category = HashMap::new();
        for c in &coco.categories {
            validate_label(&c.name).map_err(|e| bad(format!("category {}: {e}", c.id)))?;
            if labels.contains(&c.name) {
                return Err(bad(format!("category name {:?} appears twice", c.name)));
            }
            if category.insert(c.id, labels.len()).is_some() {
                return Err(bad(format!("category id {} appears twice", c.id)));
            }
            labels.push(c.name.clone());
        }
        let mut index = HashMap::new();
        let mut items = Vec::new();
        for im in &coco.images {
            if index.insert(im.id, items.len()).is_some() {
                return Err(bad(format!("image id {} appears twice", im.id)));
            }
            let l = load(&im.file_name).map_err(|e| bad(format!("image {}: {e}", im.id)))?;
            if let Some(want) = im
                .sha256
                .as_deref()
                .filter(|w| !w.eq_ignore_ascii_case(&l.sha256))
            {
                return Err(bad(format!(
                    "image {} ({}) is not the file annotated: its sha256 is {}, the document says {want}",
                    im.id, im.file_name, l.sha256
                )));
            }
            if (l.width, l.height) != (im.width, im.height) {
                return Err(bad(format!(
                    "image {} ({}) is {}×{}, the file says {}×{}",
                    im.id, im.file_name, l.width, l.height, im.width, im.height
                )));
            }
            items.push(DetectItem {
                source: format!("{name}: image {} ({})", im.id, im.file_name),
                sha256: l.sha256,
                split: l.split,
                width: l.width,
                height: l.height,
                boxes: Vec::new(),
                bytes: l.bytes,
            });
        }
        let mut seen = HashSet::new();
        for a in &coco.annotations {
            let at = |m: String| bad(format!("annotation {}: {m}", a.id));
            if !seen.insert(a.id) {
                return Err(bad(format!("annotation id {} appears twice", a.id)));
            }
            let &k = index
                .get(&a.image_id)
                .ok_or_else(|| at(format!("unknown image id {}", a.image_id)))?;
            let &label = category
                .get(&a.category_id)
                .ok_or_else(|| at(format!("unknown category id {}", a.category_id)))?;
            if a.iscrowd != 0 {
                return Err(at("crowd regions are not read".into()));
            }
            let r = rect(a.bbox);
            let item = &mut items[k];
            if let Some(why) = r.problem(item.width, item.height) {
                return Err(at(format!("{why} (image {})", a.image_id)));
            }
            item.boxes.push(BoxLabel { label, rect: r });
        }
        Ok(DetectSet { labels, items })
    }

    /// Import the images of `root` that have a sidecar `NAME.boxes.json` (a JSON list of
    /// `{"label", "bbox": [x, y, w, h]}`), in file-name order; the labels are the names the
    /// sidecars use, sorted. All or nothing, like [`DetectSet::import_coco`].
    pub fn import_sidecars(root: &Path) -> Result<DetectSet> {
        let bad = |m: String| Error::Dataset(format!("{}: {m}", root.display()));
        let mut sidecars: Vec<String> = std::fs::read_dir(root)
            .map_err(|e| bad(e.to_string()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".boxes.json"))
            .collect();
        sidecars.sort();
        let mut parsed = Vec::new();
        for s in &sidecars {
            let stem = s.trim_end_matches(".boxes.json");
            let text = std::fs::read(root.join(s)).map_err(|e| bad(format!("{s}: {e}")))?;
            let boxes: Vec<SidecarBox> =
                serde_json::from_slice(&text).map_err(|e| bad(format!("{s}: {e}")))?;
            let image = ["png", "jpg", "jpeg"]
                .iter()
                .map(|ext| format!("{stem}.{ext}"))
                .find(|n| root.join(n).is_file())
                .ok_or_else(|| bad(format!("{s}: no image {stem}.png/.jpg next to it")))?;
            parsed.push((s.clone(), image, boxes));
        }
        let mut labels: Vec<String> = parsed
            .iter()
            .flat_map(|(_, _, b)| b.iter().map(|b| b.label.clone()))
            .collect();
        labels.sort();
        labels.dedup();
        for l in &labels {
            validate_label(l).map_err(|e| bad(format!("label {l:?}: {e}")))?;
        }
        let mut items = Vec::new();
        for (s, image, boxes) in parsed {
            let l = load_image(root, &image).map_err(|e| bad(format!("{s}: {e}")))?;
            let mut out = Vec::new();
            for (i, b) in boxes.iter().enumerate() {
                let r = rect(b.bbox);
                if let Some(why) = r.problem(l.width, l.height) {
                    return Err(bad(format!("{s}: box {i}: {why}")));
                }
                let label = labels.binary_search(&b.label).unwrap_or_default();
                out.push(BoxLabel { label, rect: r });
            }
            items.push(DetectItem {
                source: image,
                sha256: l.sha256,
                split: l.split,
                width: l.width,
                height: l.height,
                boxes: out,
                bytes: l.bytes,
            });
        }
        Ok(DetectSet { labels, items })
    }

    /// Write the set as COCO JSON at `dir/annotations.json`, each image as `dir/<sha256>.png`
    /// (or its own bytes' format), ids counted from 1 in order.
    pub fn write_coco(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut entries = Vec::with_capacity(self.items.len());
        for item in &self.items {
            let ext = if item.bytes.starts_with(b"\x89PNG") {
                "png"
            } else {
                "jpg"
            };
            let file_name = format!("{}.{ext}", item.sha256);
            let path = dir.join(&file_name);
            std::fs::write(&path, &item.bytes).map_err(io(&path))?;
            entries.push(CocoEntry {
                file_name,
                width: item.width,
                height: item.height,
                sha256: Some(item.sha256.clone()),
                url: None,
                boxes: item.boxes.clone(),
            });
        }
        let doc = coco_document(&self.labels, entries, None);
        let path = dir.join("annotations.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&doc)?).map_err(io(&path))?;
        Ok(())
    }
}

impl crate::run::Picture for DetectItem {
    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn decode(&self) -> Result<image::RgbaImage> {
        decode_image(&self.bytes).map_err(|e| Error::Dataset(format!("{}: {e}", self.source)))
    }
}
