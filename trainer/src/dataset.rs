//! Labelled image datasets: import from an ImageFolder tree (`ROOT/<label>/<images>`), content
//! hashing, and the deterministic train/val/test split.
//!
//! The split of an image depends only on the sha256 of its bytes, so adding images never moves
//! an existing image to another split and the test set of one model stays the test set of the
//! next. Files that are not decodable images are reported and skipped; a class folder with no
//! usable image is an error (a label nobody can learn is a mistake in the data).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbaImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::io;
use crate::{Error, Result};

pub use wasm_infer::decode::{MAX_SIDE, decode_image};

/// Which part of the data an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// 80 %: fits the head.
    Train,
    /// 10 %: early stopping and model selection.
    Val,
    /// 10 %: the reported metrics, never used for any decision.
    Test,
}

impl Split {
    /// The split of an image with this sha256 (hex or raw bytes hashed elsewhere).
    pub fn of_digest(digest: &[u8; 32]) -> Split {
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        match u64::from_be_bytes(head) % 100 {
            0..80 => Split::Train,
            80..90 => Split::Val,
            _ => Split::Test,
        }
    }
}

/// One labelled image. It keeps the encoded file bytes, not the pixels, so a dataset costs its
/// size on disk in memory; [`Sample::decode`] gives the pixels when they are needed.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it came from (for reports).
    pub source: String,
    /// Index into [`Dataset::labels`].
    pub label: usize,
    /// Lower-case hex sha256 of the original file bytes.
    pub sha256: String,
    /// Split derived from the hash.
    pub split: Split,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Captions (for ranking models): from a `NAME.txt` next to the image (its first line) or
    /// from `captions.tsv` at the dataset root (`relative/path<TAB>caption`, one line per
    /// caption, several per image allowed).
    pub captions: Vec<String>,
    bytes: Arc<[u8]>,
}

impl Sample {
    /// A sample of `label` from an image file's bytes, decoded once to check and measure them;
    /// the decoder's reason when they are not a usable image.
    pub fn from_bytes(
        label: usize,
        source: &str,
        bytes: &[u8],
    ) -> std::result::Result<Sample, String> {
        let (sha256, raw) = digest(bytes);
        let image = decode_image(bytes)?;
        Ok(Sample {
            source: source.to_string(),
            label,
            split: Split::of_digest(&raw),
            sha256,
            width: image.width(),
            height: image.height(),
            captions: Vec::new(),
            bytes: Arc::from(bytes),
        })
    }

    /// The encoded file, as imported.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// Decode the pixels (RGBA8). The bytes already decoded once at import (or at upload, for
    /// the api's snapshots), so this only fails if memory runs out.
    pub fn decode(&self) -> Result<RgbaImage> {
        decode_image(&self.bytes).map_err(|e| Error::Dataset(format!("{}: {e}", self.source)))
    }
}

/// A file the import skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Path of the file.
    pub path: String,
    /// Human-readable reason.
    pub reason: String,
}

/// A labelled image set ready for training.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Sorted class labels; a sample's `label` indexes this.
    pub labels: Vec<String>,
    /// Every usable image, sorted by (label, sha256).
    pub samples: Vec<Sample>,
    /// Files that were not usable images.
    pub skipped: Vec<Skipped>,
}

/// Hex sha256 and raw digest of some bytes.
pub fn digest(bytes: &[u8]) -> (String, [u8; 32]) {
    let d: [u8; 32] = Sha256::digest(bytes).into();
    (hex::encode(d), d)
}

impl Dataset {
    /// Import an ImageFolder tree: every sub-folder of `root` is a label, every file below it
    /// (recursively) a candidate image. Hidden files and caption `.txt` files are ignored.
    pub fn import_folder(root: &Path) -> Result<Dataset> {
        let mut entries: Vec<(String, PathBuf)> = Vec::new();
        let mut labels = Vec::new();
        let read = std::fs::read_dir(root).map_err(io(root))?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for entry in read {
            let entry = entry.map_err(io(root))?;
            if entry.file_type().map_err(io(entry.path()))?.is_dir()
                && !entry.file_name().to_string_lossy().starts_with('.')
            {
                dirs.push(entry.path());
            }
        }
        dirs.sort();
        for dir in dirs {
            let label = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            validate_label(&label)?;
            labels.push(label.clone());
            for file in walkdir::WalkDir::new(&dir).sort_by_file_name() {
                let file =
                    file.map_err(|e| Error::Dataset(format!("walking {}: {e}", dir.display())))?;
                let name = file.file_name().to_string_lossy();
                if file.file_type().is_file() && !name.starts_with('.') && !name.ends_with(".txt") {
                    entries.push((label.clone(), file.into_path()));
                }
            }
        }
        if labels.len() < 2 {
            return Err(Error::Dataset(format!(
                "{} has {} class folder(s); need at least 2 (layout: ROOT/<label>/<images>)",
                root.display(),
                labels.len()
            )));
        }
        let tsv = read_captions_tsv(root)?;
        let mut builder = Builder::new(labels);
        for (label, path) in entries {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let mut captions = Vec::new();
            if let Ok(text) = std::fs::read_to_string(path.with_extension("txt"))
                && let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty())
            {
                captions.push(line.to_string());
            }
            if let Ok(rel) = path.strip_prefix(root)
                && let Some(more) = tsv.get(&rel.to_string_lossy().replace('\\', "/"))
            {
                captions.extend(more.iter().cloned());
            }
            builder.add_with_captions(&label, &path.display().to_string(), &bytes, captions)?;
        }
        builder.finish()
    }

    /// Import image-caption pairs listed in `ROOT/captions.jsonl` (one JSON object per line:
    /// `{"image": "images/x.jpg", "caption": "…"}` or `"captions": ["…", …]`) or, failing that,
    /// `ROOT/captions.tsv` (`relative/path<TAB>caption`), images anywhere under `ROOT`. The
    /// label of an image is its folder (`images` above); labels only matter to reports here.
    /// For ranking data that has no class folders (the Flickr8K / COCO layout).
    pub fn import_captions(root: &Path) -> Result<Dataset> {
        let jsonl = root.join("captions.jsonl");
        let mut pairs: Vec<(String, Vec<String>)> = Vec::new();
        let mut add =
            |file: String, captions: Vec<String>| match pairs.iter_mut().find(|p| p.0 == file) {
                Some(p) => p.1.extend(captions),
                None => pairs.push((file, captions)),
            };
        if jsonl.is_file() {
            #[derive(serde::Deserialize)]
            struct Line {
                image: String,
                caption: Option<String>,
                #[serde(default)]
                captions: Vec<String>,
            }
            let text = std::fs::read_to_string(&jsonl).map_err(io(&jsonl))?;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let l: Line = serde_json::from_str(line)
                    .map_err(|e| Error::Dataset(format!("{}:{}: {e}", jsonl.display(), n + 1)))?;
                let mut caps: Vec<String> = l.caption.into_iter().chain(l.captions).collect();
                caps.retain(|c| !c.trim().is_empty());
                add(l.image, caps);
            }
        } else {
            let mut tsv: Vec<_> = read_captions_tsv(root)?.into_iter().collect();
            tsv.sort();
            if tsv.is_empty() {
                return Err(Error::Dataset(format!(
                    "{} has no captions.jsonl or captions.tsv",
                    root.display()
                )));
            }
            for (file, caps) in tsv {
                add(file, caps);
            }
        }
        let label_of = |file: &str| {
            Path::new(file)
                .parent()
                .and_then(|p| p.file_name())
                .map_or_else(
                    || "images".to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
        };
        let mut labels: Vec<String> = pairs.iter().map(|(f, _)| label_of(f)).collect();
        labels.sort();
        labels.dedup();
        for l in &labels {
            validate_label(l)?;
        }
        let mut builder = Builder::new(labels);
        for (file, captions) in pairs {
            if file.split('/').any(|c| c == "..") || Path::new(&file).is_absolute() {
                return Err(Error::Dataset(format!(
                    "{file:?}: image paths must stay inside {}",
                    root.display()
                )));
            }
            let path = root.join(&file);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            builder.add_with_captions(
                &label_of(&file),
                &path.display().to_string(),
                &bytes,
                captions,
            )?;
        }
        builder.finish()
    }

    /// Samples of one split, in dataset order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.split == split)
    }

    /// Count per split and label: `counts[split][label]`.
    pub fn counts(&self) -> BTreeMap<Split, Vec<usize>> {
        let mut out = BTreeMap::new();
        for s in &self.samples {
            out.entry(s.split)
                .or_insert_with(|| vec![0; self.labels.len()])[s.label] += 1;
        }
        out
    }

    /// Content id of the exact (image, label) set: sha256 over sorted `sha256 label` lines.
    pub fn snapshot_id(&self) -> String {
        let mut lines: Vec<String> = self
            .samples
            .iter()
            .map(|s| format!("{} {}\n", s.sha256, self.labels[s.label]))
            .collect();
        lines.sort();
        digest(lines.concat().as_bytes()).0
    }
}

/// `ROOT/captions.tsv` (`relative/path<TAB>caption` lines; `#` comments), if present.
fn read_captions_tsv(root: &Path) -> Result<HashMap<String, Vec<String>>> {
    let path = root.join("captions.tsv");
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(&path)(e)),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((file, caption)) = line.split_once('\t') else {
            return Err(Error::Dataset(format!(
                "{}:{}: expected `relative/path<TAB>caption`",
                path.display(),
                n + 1
            )));
        };
        let caption = caption.trim();
        if !caption.is_empty() {
            out.entry(file.trim().to_string())
                .or_default()
                .push(caption.to_string());
        }
    }
    Ok(out)
}

/// Labels are folder names, URL segments and JSON keys: keep them plain.
pub fn validate_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ' | '.'))
        && !label.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Dataset(format!(
            "label {label:?} must be 1-64 ASCII letters, digits, spaces, '_', '-' or '.', not starting with '.'"
        )))
    }
}

/// Incremental dataset assembly from (label, bytes) pairs; used by folder import and by the
/// api when it snapshots approved uploads.
#[derive(Debug)]
pub struct Builder {
    labels: Vec<String>,
    index: HashMap<String, usize>,
    seen: HashMap<String, usize>,
    samples: Vec<Sample>,
    skipped: Vec<Skipped>,
}

impl Builder {
    /// Start a dataset with these labels (sorted and de-duplicated).
    pub fn new(mut labels: Vec<String>) -> Self {
        labels.sort();
        labels.dedup();
        let index = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect();
        Builder {
            labels,
            index,
            seen: HashMap::new(),
            samples: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Add one file; undecodable files and duplicates are recorded in `skipped`.
    pub fn add(&mut self, label: &str, source: &str, bytes: &[u8]) -> Result<()> {
        self.add_with_captions(label, source, bytes, Vec::new())
    }

    /// Add one file with its captions.
    pub fn add_with_captions(
        &mut self,
        label: &str,
        source: &str,
        bytes: &[u8],
        captions: Vec<String>,
    ) -> Result<()> {
        let label_idx = self.label_index(label, source)?;
        let (sha256, raw) = digest(bytes);
        if self.is_duplicate(&sha256, label_idx, source) {
            return Ok(());
        }
        match decode_image(bytes) {
            Ok(image) => self.push(Sample {
                source: source.to_string(),
                label: label_idx,
                split: Split::of_digest(&raw),
                sha256,
                width: image.width(),
                height: image.height(),
                captions,
                bytes: Arc::from(bytes),
            }),
            Err(reason) => self.skipped.push(Skipped {
                path: source.to_string(),
                reason,
            }),
        }
        Ok(())
    }

    /// Add a file that was decoded and measured when it was stored (the api's uploads): it is
    /// hashed, and must hash to `sha256` (else the stored bytes changed: an error), but not
    /// decoded again, so a snapshot of thousands of images costs their hashing only.
    pub fn add_checked(
        &mut self,
        label: &str,
        source: &str,
        bytes: &[u8],
        (sha256, width, height): (&str, u32, u32),
        captions: Vec<String>,
    ) -> Result<()> {
        let label_idx = self.label_index(label, source)?;
        let (actual, raw) = digest(bytes);
        if actual != sha256 {
            return Err(Error::Dataset(format!(
                "{source}: the stored bytes hash to {actual}, not to the recorded {sha256}"
            )));
        }
        if width == 0 || height == 0 {
            return Err(Error::Dataset(format!(
                "{source}: recorded size {width}×{height}"
            )));
        }
        if self.is_duplicate(&actual, label_idx, source) {
            return Ok(());
        }
        self.push(Sample {
            source: source.to_string(),
            label: label_idx,
            split: Split::of_digest(&raw),
            sha256: actual,
            width,
            height,
            captions,
            bytes: Arc::from(bytes),
        });
        Ok(())
    }

    fn label_index(&self, label: &str, source: &str) -> Result<usize> {
        self.index
            .get(label)
            .copied()
            .ok_or_else(|| Error::Dataset(format!("unknown label {label:?} for {source}")))
    }

    /// Whether an image with this hash is already in (recorded in `skipped` if so).
    fn is_duplicate(&mut self, sha256: &str, label_idx: usize, source: &str) -> bool {
        let Some(&first) = self.seen.get(sha256) else {
            return false;
        };
        let other = &self.samples[first];
        let reason = if other.label == label_idx {
            format!("duplicate of {}", other.source)
        } else {
            format!(
                "same image as {} but labelled {:?} there",
                other.source, self.labels[other.label]
            )
        };
        self.skipped.push(Skipped {
            path: source.to_string(),
            reason,
        });
        true
    }

    fn push(&mut self, sample: Sample) {
        self.seen.insert(sample.sha256.clone(), self.samples.len());
        self.samples.push(sample);
    }

    /// Check every class has images and return the dataset.
    pub fn finish(mut self) -> Result<Dataset> {
        let mut per_label = vec![0usize; self.labels.len()];
        for s in &self.samples {
            per_label[s.label] += 1;
        }
        let empty: Vec<&str> = self
            .labels
            .iter()
            .zip(&per_label)
            .filter(|(_, n)| **n == 0)
            .map(|(l, _)| l.as_str())
            .collect();
        if !empty.is_empty() {
            return Err(Error::Dataset(format!(
                "class(es) with no usable image: {} (add images or remove the folder)",
                empty.join(", ")
            )));
        }
        self.samples
            .sort_by(|a, b| (a.label, &a.sha256).cmp(&(b.label, &b.sha256)));
        Ok(Dataset {
            labels: self.labels,
            samples: self.samples,
            skipped: self.skipped,
        })
    }
}
