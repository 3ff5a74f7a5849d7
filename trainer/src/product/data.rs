//! Product items: import from JSONL or CSV next to an image folder, SVG drawings rendered
//! natively, the content-hash split.
//!
//! An item is `(title, text, image, category)`: `title` and `category` are required columns,
//! `text` (description, keywords) and `image` (a path relative to the file's folder: PNG,
//! JPEG, WebP, GIF, BMP or SVG) are optional. The import is all or nothing: the first bad row
//! (a missing column, an image that is not there or not an image, a path leaving the folder,
//! an empty title with no image, a bad category name) stops it with its line number, and
//! nothing is returned.
//!
//! The split follows the content, like images elsewhere: an item with an image is split by the
//! image's sha256 (so the same picture never sits on both sides), one without by the sha256 of
//! its title and text.

use std::collections::{BTreeSet, HashSet};
use std::path::{Component, Path};

use serde::Deserialize;

use crate::dataset::{Dataset, Sample, Skipped, Split, digest, validate_label};
use crate::error::io;
use crate::{Error, Result};

/// Side of the square canvas an SVG drawing is rendered on (the shared preprocessing then
/// resizes it like any image).
pub const SVG_SIDE: u32 = 256;

/// One product.
#[derive(Debug, Clone)]
pub struct ProductItem {
    /// Where it came from (`file:line`).
    pub source: String,
    /// The title as written.
    pub title: String,
    /// Description or keywords (may be empty).
    pub text: String,
    /// The picture, when the item has one.
    pub image: Option<Sample>,
    /// Index into [`ProductSet::labels`].
    pub label: usize,
    /// Split derived from the content.
    pub split: Split,
}

impl ProductItem {
    /// What the text tower reads: the title, then the text.
    pub fn words(&self) -> String {
        match (self.title.trim(), self.text.trim()) {
            (t, "") => t.to_string(),
            ("", x) => x.to_string(),
            (t, x) => format!("{t} {x}"),
        }
    }
}

/// Labelled products ready for training.
#[derive(Debug, Clone)]
pub struct ProductSet {
    /// Sorted categories; an item's `label` indexes this.
    pub labels: Vec<String>,
    /// Every item, in file order.
    pub items: Vec<ProductItem>,
    /// Rows left out as exact repeats of an earlier row (same title, text, image and category).
    pub skipped: Vec<Skipped>,
}

/// A row as both formats give it.
#[derive(Debug, Deserialize)]
struct Row {
    title: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image: Option<String>,
    category: Option<String>,
}

impl ProductSet {
    /// Import `path`: `.jsonl` (one JSON object per line) or `.csv` (a header row naming the
    /// columns); image paths are relative to `path`'s folder.
    pub fn import(path: &Path) -> Result<ProductSet> {
        let rows = read_rows(path)?;
        let root = path.parent().unwrap_or(Path::new("."));
        let name = path.display().to_string();
        let mut checked = Vec::with_capacity(rows.len());
        for (line, row) in rows {
            let at = format!("{name}:{line}");
            let bad = |m: String| Error::Dataset(format!("{at}: {m}"));
            let title = row.title.ok_or_else(|| bad("no `title` column".into()))?;
            let category = row
                .category
                .ok_or_else(|| bad("no `category` column".into()))?;
            let category = category.trim().to_string();
            validate_label(&category).map_err(|e| bad(e.to_string()))?;
            let image = row.image.filter(|i| !i.trim().is_empty());
            if title.trim().is_empty() && image.is_none() {
                return Err(bad("the title is empty and there is no image".into()));
            }
            let text = row.text.unwrap_or_default();
            checked.push((
                at,
                title.trim().to_string(),
                text.trim().to_string(),
                image,
                category,
            ));
        }
        if checked.is_empty() {
            return Err(Error::Dataset(format!("{name} has no items")));
        }
        let labels: Vec<String> = checked
            .iter()
            .map(|r| r.4.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Images are read and decoded (SVGs rendered) on every core.
        let images = load_images(
            root,
            &checked.iter().map(|r| (&r.0, &r.3)).collect::<Vec<_>>(),
        )?;
        let mut seen = HashSet::new();
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for ((at, title, text, rel, category), loaded) in checked.into_iter().zip(images) {
            let image = match loaded {
                Loaded::Image(s) => Some(s),
                Loaded::None => None,
                Loaded::Blank if title.is_empty() => {
                    return Err(Error::Dataset(format!(
                        "{at}: image {:?} draws nothing (only text or bitmaps, which are not rendered) and the title is empty",
                        rel.unwrap_or_default()
                    )));
                }
                Loaded::Blank => {
                    skipped.push(Skipped {
                        path: format!("{at}: {}", rel.unwrap_or_default()),
                        reason: "the drawing draws nothing (only text or bitmaps, which are not rendered); the item is kept without an image".into(),
                    });
                    None
                }
            };
            let label = labels.binary_search(&category).unwrap_or_default();
            let (content, split) = match &image {
                Some(s) => (s.sha256.clone(), s.split),
                None => {
                    let (hex, raw) = digest(format!("{title}\n{text}").as_bytes());
                    (hex, Split::of_digest(&raw))
                }
            };
            if !seen.insert((content, title.clone(), text.clone(), label)) {
                skipped.push(Skipped {
                    path: at,
                    reason: "repeats an earlier row".into(),
                });
                continue;
            }
            let image = image.map(|mut s| {
                s.label = label;
                s
            });
            items.push(ProductItem {
                source: at,
                title,
                text,
                image,
                label,
                split,
            });
        }
        Ok(ProductSet {
            labels,
            items,
            skipped,
        })
    }

    /// Items from a labelled image set whose captions are the titles (the api's uploads: the
    /// caption given with an image is its title, further captions its text); an image with
    /// no caption is an image-only item.
    pub fn from_dataset(dataset: &Dataset) -> ProductSet {
        let items = dataset
            .samples
            .iter()
            .map(|s| ProductItem {
                source: s.source.clone(),
                title: s.captions.first().cloned().unwrap_or_default(),
                text: s.captions.get(1..).unwrap_or_default().join(". "),
                image: Some(s.clone()),
                label: s.label,
                split: s.split,
            })
            .collect();
        ProductSet {
            labels: dataset.labels.clone(),
            items,
            skipped: Vec::new(),
        }
    }

    /// Items of one split, in file order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &ProductItem> {
        self.items.iter().filter(move |i| i.split == split)
    }

    /// Keep at most `n` items per category, the first in file order (small runs: tests,
    /// quick looks).
    pub fn limit_per_label(mut self, n: usize) -> Self {
        let mut count = vec![0usize; self.labels.len()];
        self.items.retain(|i| {
            count[i.label] += 1;
            count[i.label] <= n
        });
        self
    }

    /// Content id of the exact set of items (text, image, category): what a model trained on
    /// them records as its `dataset_snapshot`.
    pub fn snapshot_id(&self) -> String {
        let mut lines: Vec<String> = self
            .items
            .iter()
            .map(|i| {
                let image = i.image.as_ref().map_or("-", |s| s.sha256.as_str());
                let text = digest(format!("{}\n{}", i.title, i.text).as_bytes()).0;
                format!("{image} {text} {}\n", self.labels[i.label])
            })
            .collect();
        lines.sort();
        digest(lines.concat().as_bytes()).0
    }

    /// Items per category, in label order.
    pub fn counts(&self) -> Vec<usize> {
        let mut count = vec![0usize; self.labels.len()];
        for i in &self.items {
            count[i.label] += 1;
        }
        count
    }
}

/// `(line, row)` pairs of a JSONL or CSV file.
fn read_rows(path: &Path) -> Result<Vec<(usize, Row)>> {
    let name = path.display();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut rows = Vec::new();
    match ext.as_str() {
        "jsonl" | "ndjson" => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| Error::Dataset(format!("{name}: not UTF-8 ({e})")))?;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let row: Row = serde_json::from_str(line)
                    .map_err(|e| Error::Dataset(format!("{name}:{}: {e}", n + 1)))?;
                rows.push((n + 1, row));
            }
        }
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(bytes.as_slice());
            let headers = reader
                .headers()
                .map_err(|e| Error::Dataset(format!("{name}: {e}")))?
                .clone();
            for want in ["title", "category"] {
                if !headers.iter().any(|h| h.trim() == want) {
                    return Err(Error::Dataset(format!(
                        "{name}: the header has no `{want}` column (columns: title, text, image, category)"
                    )));
                }
            }
            for (n, record) in reader.deserialize::<Row>().enumerate() {
                let row = record.map_err(|e| Error::Dataset(format!("{name}:{}: {e}", n + 2)))?;
                rows.push((n + 2, row));
            }
        }
        _ => {
            return Err(Error::Dataset(format!(
                "{name}: products are imported from .jsonl or .csv files"
            )));
        }
    }
    Ok(rows)
}

/// The decoded image of every row that names one, in row order; the first unusable one is an
/// error naming its row.
fn load_images(root: &Path, rows: &[(&String, &Option<String>)]) -> Result<Vec<Loaded>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Loaded>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(at, image)| match image {
                            None => Ok(Loaded::None),
                            Some(rel) => load_image(root, rel)
                                .map_err(|m| Error::Dataset(format!("{at}: image {rel:?}: {m}"))),
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Dataset("image loader panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(rows.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// What a row's image turned out to be.
enum Loaded {
    /// The row names no image.
    None,
    /// An SVG that draws nothing this renderer draws (only text or bitmaps).
    Blank,
    /// A usable image.
    Image(Sample),
}

/// Read one image below `root`: an SVG is rendered to PNG, anything else must decode.
fn load_image(root: &Path, rel: &str) -> std::result::Result<Loaded, String> {
    let relative = Path::new(rel.trim());
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("image paths must stay inside the file's folder".into());
    }
    let path = root.join(relative);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let is_svg = relative
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let bytes = if is_svg {
        match render_svg(&bytes)? {
            Some(png) => png,
            None => return Ok(Loaded::Blank),
        }
    } else {
        bytes
    };
    Sample::from_bytes(0, &path.display().to_string(), &bytes).map(Loaded::Image)
}

/// Render an SVG drawing, fitted and centred on a transparent [`SVG_SIDE`]² canvas, as PNG;
/// `None` when nothing is drawn. Text and embedded bitmaps are not drawn (fonts differ between
/// machines; the drawing must render the same everywhere).
pub fn render_svg(svg: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_data(svg, &usvg::Options::default())
        .map_err(|e| format!("not a usable SVG ({e})"))?;
    let size = tree.size();
    let side = SVG_SIDE as f32;
    let scale = side / size.width().max(size.height());
    if !scale.is_finite() || scale <= 0.0 {
        return Err("the SVG has no size".into());
    }
    let dx = (side - size.width() * scale) / 2.0;
    let dy = (side - size.height() * scale) / 2.0;
    let mut pixmap = tiny_skia::Pixmap::new(SVG_SIDE, SVG_SIDE).ok_or("no canvas")?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale).post_translate(dx, dy),
        &mut pixmap.as_mut(),
    );
    if pixmap.data().chunks_exact(4).all(|p| p[3] == 0) {
        return Ok(None);
    }
    pixmap
        .encode_png()
        .map(Some)
        .map_err(|e| format!("PNG encoding: {e}"))
}
