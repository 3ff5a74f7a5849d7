//! Gallery search, defined once in Rust so it is tested natively and runs unchanged in the
//! browser: the ranking champion's int8 gallery ([`contract::gallery`]) plus the images this
//! browser contributed (embedded locally, f32), ranked by cosine similarity against a query
//! embedding (text → image, image → image), and the gallery's captions ranked against an
//! image embedding (image → text).

use contract::gallery::{Gallery, GalleryItem};
use contract::worker::Hit;

use crate::{Error, Result};

/// An image contributed from this browser, embedded by the ranking image encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalImage {
    /// The server's id for it.
    pub id: String,
    /// The label it was contributed with.
    pub label: String,
    /// Its caption (may be empty).
    pub caption: String,
    /// Its embedding by the ranking image encoder (unit length, f32: not quantised).
    pub vector: Vec<f32>,
    /// Object URL of its thumbnail (the page shows it; the search only passes it on).
    pub thumb: Option<String>,
}

/// One gallery caption, embedded by the text encoder.
#[derive(Debug, Clone, PartialEq)]
struct CaptionRow {
    item: usize,
    caption: String,
}

/// A ranking model's searchable images.
#[derive(Debug, Clone)]
pub struct SearchIndex {
    gallery: Gallery,
    vectors: Vec<i8>,
    local: Vec<LocalImage>,
    captions: Vec<CaptionRow>,
    caption_vectors: Vec<f32>,
}

impl SearchIndex {
    /// Check `gallery.bin` against its index (`count × dim` bytes, one item per row).
    pub fn new(gallery: Gallery, bin: &[u8]) -> Result<Self> {
        if gallery.dim == 0 || !(gallery.scale.is_finite() && gallery.scale > 0.0) {
            return Err(Error::Integrity(format!(
                "gallery dim {} / scale {} are not usable",
                gallery.dim, gallery.scale
            )));
        }
        if gallery.items.len() != gallery.count || bin.len() != gallery.count * gallery.dim {
            return Err(Error::Integrity(format!(
                "gallery size does not match its index: {} items, {} bytes for {} × {}",
                gallery.items.len(),
                bin.len(),
                gallery.count,
                gallery.dim
            )));
        }
        let captions = gallery
            .items
            .iter()
            .enumerate()
            .flat_map(|(item, it)| {
                it.captions.iter().map(move |c| CaptionRow {
                    item,
                    caption: c.clone(),
                })
            })
            .collect();
        Ok(Self {
            vectors: bin.iter().map(|&b| b as i8).collect(),
            gallery,
            local: Vec::new(),
            captions,
            caption_vectors: Vec::new(),
        })
    }

    /// The model whose image encoder embedded the gallery.
    pub fn model_id(&self) -> &str {
        &self.gallery.model_id
    }

    /// Embedding size of the model (queries must have it).
    pub fn dim(&self) -> usize {
        self.gallery.dim
    }

    /// Images in the server's gallery.
    pub fn count(&self) -> usize {
        self.gallery.count
    }

    /// Images added from this browser.
    pub fn local_count(&self) -> usize {
        self.local.len()
    }

    /// Whether the server's gallery already has image `id` (a local copy is then redundant).
    pub fn in_gallery(&self, id: &str) -> bool {
        self.gallery.items.iter().any(|it| it.id == id)
    }

    /// Add (or replace) an image embedded in this browser.
    pub fn add_local(&mut self, image: LocalImage) -> Result<()> {
        if image.vector.len() != self.gallery.dim {
            return Err(Error::Image(format!(
                "local embedding has {} values, the gallery {}",
                image.vector.len(),
                self.gallery.dim
            )));
        }
        self.local.retain(|e| e.id != image.id);
        self.local.push(image);
        Ok(())
    }

    fn check_query(&self, q: &[f32]) -> Result<()> {
        if q.len() == self.gallery.dim {
            Ok(())
        } else {
            Err(Error::Image(format!(
                "query embedding has {} values, the gallery {}",
                q.len(),
                self.gallery.dim
            )))
        }
    }

    fn gallery_hit(&self, i: usize, score: f32) -> Hit {
        let it: &GalleryItem = &self.gallery.items[i];
        Hit {
            id: it.id.clone(),
            label: it.label.clone(),
            caption: it.captions.first().cloned().unwrap_or_default(),
            score,
            local: false,
            thumb: None,
        }
    }

    /// The `k` images most similar to the unit query `q`, best first: int8 dot products over
    /// the gallery (divided by the scale), f32 ones over the local images.
    pub fn top_k(&self, q: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.check_query(q)?;
        let dim = self.gallery.dim;
        let scale = self.gallery.scale;
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .chunks_exact(dim)
            .map(|row| dot_i8(row, q) / scale)
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();
        top_by_score(&mut scored, k);
        let mut hits: Vec<Hit> = scored
            .into_iter()
            .map(|(s, i)| self.gallery_hit(i, s))
            .collect();
        hits.extend(self.local.iter().map(|e| Hit {
            id: e.id.clone(),
            label: e.label.clone(),
            caption: e.caption.clone(),
            score: dot(&e.vector, q),
            local: true,
            thumb: e.thumb.clone(),
        }));
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(hits)
    }

    /// "More like this": the stored vector of image `id` (gallery or local) as a query, and the
    /// caption to show for it.
    pub fn query_of(&self, id: &str) -> Result<(Vec<f32>, String)> {
        let dim = self.gallery.dim;
        if let Some(i) = self.gallery.items.iter().position(|it| it.id == id) {
            let it = &self.gallery.items[i];
            let q = self.vectors[i * dim..(i + 1) * dim]
                .iter()
                .map(|&v| f32::from(v) / self.gallery.scale)
                .collect();
            let caption = it.captions.first().unwrap_or(&it.label).clone();
            return Ok((q, caption));
        }
        let e = self
            .local
            .iter()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::Image(format!("image {id} is not in the gallery")))?;
        let caption = if e.caption.is_empty() {
            e.label.clone()
        } else {
            e.caption.clone()
        };
        Ok((e.vector.clone(), caption))
    }

    /// Every gallery caption, in the order [`SearchIndex::set_caption_vectors`] expects their
    /// embeddings.
    pub fn captions(&self) -> impl Iterator<Item = &str> {
        self.captions.iter().map(|c| c.caption.as_str())
    }

    /// Whether the captions have been embedded.
    pub fn has_caption_vectors(&self) -> bool {
        self.caption_vectors.len() == self.captions.len() * self.dim()
    }

    /// The text encoder's embeddings of [`SearchIndex::captions`], concatenated.
    pub fn set_caption_vectors(&mut self, vectors: Vec<f32>) -> Result<()> {
        if vectors.len() != self.captions.len() * self.dim() {
            return Err(Error::Image(format!(
                "{} caption values for {} captions of {} dimensions",
                vectors.len(),
                self.captions.len(),
                self.dim()
            )));
        }
        self.caption_vectors = vectors;
        Ok(())
    }

    /// Image → text: the `k` distinct captions nearest to the unit image embedding `q`.
    pub fn top_captions(&self, q: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.check_query(q)?;
        if !self.has_caption_vectors() {
            return Err(Error::Image("the captions are not embedded yet".into()));
        }
        let mut scored: Vec<(f32, usize)> = self
            .caption_vectors
            .chunks_exact(self.dim())
            .map(|row| dot(row, q))
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut seen = std::collections::HashSet::new();
        let mut hits = Vec::with_capacity(k);
        for (score, i) in scored {
            let row = &self.captions[i];
            if !seen.insert(row.caption.as_str()) {
                continue;
            }
            let mut hit = self.gallery_hit(row.item, score);
            hit.caption = row.caption.clone();
            hits.push(hit);
            if hits.len() == k {
                break;
            }
        }
        Ok(hits)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn dot_i8(a: &[i8], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, y)| f32::from(x) * y).sum()
}

/// Keep the `k` best `(score, index)` pairs, best first (ties: lower index first).
fn top_by_score(scored: &mut Vec<(f32, usize)>, k: usize) {
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < scored.len() {
        scored.select_nth_unstable_by(k, order);
        scored.truncate(k);
    }
    scored.sort_by(order);
}
