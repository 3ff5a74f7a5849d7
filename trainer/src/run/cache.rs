//! The backbone feature cache: what the frozen backbone computed for an image, stored once per
//! (backbone sha256, image sha256, view) so a retrain runs the backbone only on images (and
//! views) it has never seen, and the classification and ranking trainers share the passes.
//!
//! * **Views are fixed per image.** An augmented view is a random resized crop and flip drawn
//!   from a generator seeded by the image's sha256 and the view's index (not by the run's
//!   seed), so view `k` of an image is the same crop in every run and its features can be
//!   reused; a rerun with the same seed gives the same metrics. The recipe (crop area range,
//!   preprocessing) is part of the key ([`RECIPE`], [`View::name`]).
//! * **Entries are self-checking.** An entry is the feature vector followed by the sha256 of
//!   its key and its bytes ([`encode`]); [`decode`] refuses anything else (a truncated,
//!   bit-flipped or misplaced entry), and the pass recomputes and rewrites it.
//! * **The cache never decides a result.** A store that fails to read counts as a miss, one
//!   that fails to write is counted and the run goes on ([`CacheStats`]).
//!
//! Stores: [`DirStore`] (a local folder; the CLI's `--feature-cache`) here, object storage in
//! the api.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasm_infer::CropBox;

use crate::backbone::{FEATURE_DIM, MAP_SIDE};
use crate::{Error, Result};

/// Version of the way views are drawn and preprocessed; a change makes a new key space.
pub const RECIPE: &str = "v1";

const MAGIC: &[u8; 8] = b"EMLFEAT1";

/// Which view of an image a feature vector was computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// The inference view: resize the short side, centre crop (what the browser computes).
    Clean,
    /// The detection view: the whole image stretched to the input (nothing cut off), and the
    /// backbone's feature map before pooling (`[1280, 7, 7]`) rather than its mean.
    WholeMap,
    /// Augmented view `index` with crop areas in `[min_area, 1]` of the image.
    Augmented {
        /// 0-based view number.
        index: u32,
        /// Smallest crop area, as a fraction of the image.
        min_area: f32,
    },
}

impl View {
    /// The view's name in keys: `clean` or `aug<index>-a<min_area>` (the shortest decimal
    /// that reads back as the same `f32`, so two settings never share a name).
    pub fn name(&self) -> String {
        match self {
            View::Clean => "clean".into(),
            View::WholeMap => "whole-map".into(),
            View::Augmented { index, min_area } => format!("aug{index}-a{min_area}"),
        }
    }

    /// The crop and flip of this augmented view of the image with this sha256 and size; the
    /// same for every run; the whole image for [`View::WholeMap`]; `None` for [`View::Clean`]
    /// (the centred crop of the inference preprocessing).
    pub fn crop(&self, image_sha256: &str, width: u32, height: u32) -> Option<(CropBox, bool)> {
        if *self == View::WholeMap {
            return Some((CropBox::whole(width, height), false));
        }
        let View::Augmented { index, min_area } = *self else {
            return None;
        };
        let mut h = Sha256::new();
        h.update(b"edgeml view ");
        h.update(RECIPE.as_bytes());
        h.update(image_sha256.as_bytes());
        h.update(index.to_le_bytes());
        h.update(self.name().as_bytes());
        let mut rng = StdRng::from_seed(h.finalize().into());
        Some(super::features::random_view(
            &mut rng, width, height, min_area,
        ))
    }
}

impl View {
    /// Floats the backbone gives for one image through this view.
    pub fn floats(&self) -> usize {
        match self {
            View::WholeMap => FEATURE_DIM * MAP_SIDE * MAP_SIDE,
            _ => FEATURE_DIM,
        }
    }

    /// The shape of `n` images' features through this view.
    pub fn shape(&self, n: usize) -> Vec<usize> {
        match self {
            View::WholeMap => vec![n, FEATURE_DIM, MAP_SIDE, MAP_SIDE],
            _ => vec![n, FEATURE_DIM],
        }
    }
}

/// Where one feature vector lives in a store: `RECIPE/<backbone>/<image[..2]>/<image>/<view>`.
pub fn key(backbone_sha256: &str, image_sha256: &str, view: &View) -> String {
    let fan = image_sha256.get(..2).unwrap_or("xx");
    format!(
        "{RECIPE}/{backbone_sha256}/{fan}/{image_sha256}/{}",
        view.name()
    )
}

/// The image sha256 a [`key`] names, if it is one.
pub fn image_of_key(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [_, _, _, image, _] if image.len() == 64 => Some(image),
        _ => None,
    }
}

/// An entry: magic, the vector's length (u32 LE), the floats (LE), sha256(key ‖ all before).
pub fn encode(key: &str, features: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 + features.len() * 4 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(features.len() as u32).to_le_bytes());
    for f in features {
        out.extend_from_slice(&f.to_le_bytes());
    }
    let sum = checksum(key, &out);
    out.extend_from_slice(&sum);
    out
}

/// The vector of an entry written by [`encode`] under `key` with `dim` floats; `None` when
/// the bytes are not exactly that (corrupt, truncated, another key's or another size).
pub fn decode(key: &str, bytes: &[u8], dim: usize) -> Option<Vec<f32>> {
    let body_len = 8 + 4 + dim * 4;
    if bytes.len() != body_len + 32 || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(body_len);
    if u32::from_le_bytes(body[8..12].try_into().ok()?) as usize != dim
        || checksum(key, body)[..] != *sum
    {
        return None;
    }
    Some(
        body[12..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn checksum(key: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_le_bytes());
    h.update(key.as_bytes());
    h.update(body);
    h.finalize().into()
}

/// A place feature entries are kept. Calls come from the training thread, a batch at a time.
pub trait FeatureStore: Send + Sync {
    /// The entries stored under `keys`, in order (`None` where absent).
    fn load(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>>;
    /// Store entries (key, bytes); a key written twice holds the same bytes both times.
    fn save(&self, entries: &[(String, Vec<u8>)]) -> Result<()>;
}

/// How a run's feature pass went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Views read from the cache.
    pub hits: usize,
    /// Views the backbone computed (cache misses, or no cache).
    pub computed: usize,
    /// Entries found but refused by [`decode`] (then recomputed and rewritten).
    pub corrupt: usize,
    /// Store calls that failed (reads counted as misses, writes skipped).
    pub store_errors: usize,
}

/// A feature cache in a local folder, one file per entry, written atomically.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of an entry.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl FeatureStore for DirStore {
    fn load(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter()
            .map(|k| match std::fs::read(self.path(k)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::Io {
                    path: self.path(k),
                    source: e,
                }),
            })
            .collect()
    }

    fn save(&self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        for (k, bytes) in entries {
            let path = self.path(k);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
            }
            // Beside the entry, named after it (view names may hold a dot), then renamed.
            let mut tmp = path.clone().into_os_string();
            tmp.push(format!(".tmp-{}", std::process::id()));
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, bytes).map_err(crate::error::io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(crate::error::io(&path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ab3f0e0c1b5d8a6f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f70819";

    #[test]
    fn entries_round_trip_and_refuse_any_damage() {
        let k = key("bb", SHA, &View::Clean);
        assert_eq!(k, format!("v1/bb/ab/{SHA}/clean"));
        assert_eq!(image_of_key(&k), Some(SHA));
        let v = vec![0.5f32, -1.25, 3.0];
        let e = encode(&k, &v);
        assert_eq!(decode(&k, &e, 3), Some(v.clone()));
        // Another key, another size, a flipped bit, a truncation: all refused.
        assert_eq!(decode(&key("bc", SHA, &View::Clean), &e, 3), None);
        assert_eq!(decode(&k, &e, 2), None);
        for i in 0..e.len() {
            let mut bad = e.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&k, &bad, 3), None, "flip at byte {i} accepted");
        }
        assert_eq!(decode(&k, &e[..e.len() - 1], 3), None);
    }

    #[test]
    fn views_are_fixed_per_image_and_index() {
        let v0 = View::Augmented {
            index: 0,
            min_area: 0.35,
        };
        let v1 = View::Augmented {
            index: 1,
            min_area: 0.35,
        };
        assert_eq!(v0.name(), "aug0-a0.35");
        let a = v0.crop(SHA, 640, 480).unwrap();
        assert_eq!(a, v0.crop(SHA, 640, 480).unwrap());
        assert_ne!(a, v1.crop(SHA, 640, 480).unwrap());
        let other = SHA.replace("ab3f", "ab40");
        assert_ne!(a, v0.crop(&other, 640, 480).unwrap());
        let (c, _) = a;
        assert!(c.x >= 0.0 && c.y >= 0.0 && c.x + c.w <= 640.001 && c.y + c.h <= 480.001);
        assert!(c.w * c.h >= 0.35 * 640.0 * 480.0 * 0.999);
        assert_eq!(View::Clean.crop(SHA, 640, 480), None);
    }
}
