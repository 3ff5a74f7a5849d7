//! The frozen backbone's feature pass: decoded images → the shared preprocessing →
//! EfficientNet-Lite0 features, in batches, with progress and cancellation; through the
//! feature cache ([`super::cache`]) when the run has one ([`FeaturePass`]).

use std::time::Instant;

use candle_core::{Device, Tensor};
use image::RgbaImage;
use rand::Rng;
use rand::rngs::StdRng;
use wasm_infer::preprocess::{image_to_tensor, image_to_tensor_with};
use wasm_infer::{CropBox, PixelFormat, Pixels, Preprocess};

use super::cache::{self, CacheStats, FeatureStore, View};
use super::meta::Progress;
use crate::backbone::{Backbone, INPUT_SIZE};
use crate::dataset::Sample;
use crate::{Error, Result};

/// Images per backbone batch.
pub const FEATURE_BATCH: usize = 16;

/// Borrow decoded pixels for the shared preprocessing.
pub fn pixels(img: &RgbaImage) -> Result<Pixels<'_>> {
    Ok(Pixels::new(
        img.width(),
        img.height(),
        PixelFormat::Rgba8,
        img.as_raw(),
    )?)
}

/// An image a feature pass reads: a classification [`Sample`], a detection item.
pub trait Picture {
    /// Lower-case hex sha256 of the file's bytes (the feature cache's key).
    fn sha256(&self) -> &str;
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// The decoded pixels.
    fn decode(&self) -> Result<RgbaImage>;
}

impl Picture for Sample {
    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn decode(&self) -> Result<RgbaImage> {
        Sample::decode(self)
    }
}

/// Decode an image and preprocess it for inference (as the manifest's preprocessing says),
/// as the browser does.
pub fn inference_tensor(image: &(impl Picture + ?Sized), prep: &Preprocess) -> Result<Vec<f32>> {
    Ok(image_to_tensor(&pixels(&image.decode()?)?, prep)?)
}

/// A random resized crop (area fraction in `[min_area, 1]`, aspect 3/4–4/3) plus a coin flip.
pub(crate) fn random_view(rng: &mut StdRng, w: u32, h: u32, min_area: f32) -> (CropBox, bool) {
    let (wf, hf) = (w as f32, h as f32);
    for _ in 0..10 {
        let area = wf * hf * rng.random_range(min_area..=1.0);
        let log_ratio = rng.random_range((3f32 / 4.0).ln()..=(4f32 / 3.0).ln());
        let ratio = log_ratio.exp();
        let bw = (area * ratio).sqrt();
        let bh = (area / ratio).sqrt();
        if bw <= wf && bh <= hf {
            let x = rng.random_range(0.0..=wf - bw);
            let y = rng.random_range(0.0..=hf - bh);
            return (CropBox { x, y, w: bw, h: bh }, rng.random_bool(0.5));
        }
    }
    let side = wf.min(hf);
    (
        CropBox {
            x: (wf - side) / 2.0,
            y: (hf - side) / 2.0,
            w: side,
            h: side,
        },
        rng.random_bool(0.5),
    )
}

/// Decode an image and preprocess it through `view` (its fixed crop and flip, the whole
/// image, or the inference view).
pub fn view_tensor(
    image: &(impl Picture + ?Sized),
    view: &View,
    prep: &Preprocess,
) -> Result<Vec<f32>> {
    let (width, height) = image.size();
    match view.crop(image.sha256(), width, height) {
        None => inference_tensor(image, prep),
        Some((crop, flip)) => Ok(image_to_tensor_with(
            &pixels(&image.decode()?)?,
            prep,
            crop,
            flip,
        )?),
    }
}

/// Run the backbone over prepared input tensors, [`FEATURE_BATCH`] at a time: pooled
/// features, or the feature map for [`View::WholeMap`]; `tick` gets the size of each
/// finished batch and cancels the pass by returning false. `count` (the images expected) only
/// words the error when there are none.
pub fn features_of(
    backbone: &Backbone,
    view: &View,
    inputs: impl Iterator<Item = Result<Vec<f32>>>,
    count: usize,
    tick: &mut dyn FnMut(usize) -> bool,
) -> Result<Tensor> {
    let per = 3 * INPUT_SIZE * INPUT_SIZE;
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(FEATURE_BATCH * per);
    let mut inputs = inputs.peekable();
    while inputs.peek().is_some() {
        buf.clear();
        let mut n = 0;
        while n < FEATURE_BATCH {
            match inputs.next() {
                Some(t) => {
                    buf.extend_from_slice(&t?);
                    n += 1;
                }
                None => break,
            }
        }
        let batch = Tensor::from_slice(&buf, (n, 3, INPUT_SIZE, INPUT_SIZE), &Device::Cpu)?;
        out.push(match view {
            View::WholeMap => backbone.feature_map(&batch)?,
            _ => backbone.features(&batch)?,
        });
        if !tick(n) {
            return Err(Error::Cancelled);
        }
    }
    if out.is_empty() {
        return Err(Error::Dataset(format!(
            "no images to embed (expected {count})"
        )));
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// Counts the images of a run's feature passes and reports them as [`Progress::Features`].
#[derive(Debug)]
pub struct FeatureCounter {
    started: Instant,
    done: usize,
    total: usize,
}

impl FeatureCounter {
    /// A count towards `total` images, starting the clock now.
    pub fn new(total: usize) -> Self {
        Self {
            started: Instant::now(),
            done: 0,
            total,
        }
    }

    /// Seconds since [`FeatureCounter::new`].
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Add `n` finished images and report; false when the run is to stop.
    pub fn tick(&mut self, n: usize, progress: &mut dyn FnMut(Progress) -> bool) -> bool {
        self.done += n;
        progress(Progress::Features {
            done: self.done,
            total: self.total,
            images_per_sec: self.done as f64 / self.elapsed_secs().max(1e-9),
        })
    }
}

/// Cache entries read or written per store call (bounds a call's memory and latency).
const CACHE_BATCH: usize = 256;

/// A run's feature pass: the backbone's features of images through a view, read from the
/// feature cache where it has them, computed (and written back) where it does not; every view
/// counted towards [`Progress::Features`].
pub struct FeaturePass<'a> {
    backbone: &'a Backbone,
    store: Option<&'a dyn FeatureStore>,
    prep: Preprocess,
    counter: FeatureCounter,
    stats: CacheStats,
}

impl<'a> FeaturePass<'a> {
    /// A pass over `total` views in all, through `store` when there is one.
    pub fn new(
        backbone: &'a Backbone,
        store: Option<&'a dyn FeatureStore>,
        prep: &Preprocess,
        total: usize,
    ) -> Self {
        Self {
            backbone,
            store,
            prep: prep.clone(),
            counter: FeatureCounter::new(total),
            stats: CacheStats::default(),
        }
    }

    /// Seconds since the pass started.
    pub fn elapsed_secs(&self) -> f64 {
        self.counter.elapsed_secs()
    }

    /// Where the views came from so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The features of `samples` through `view`, in order: `[samples.len(), FEATURE_DIM]`,
    /// or `[samples.len(), FEATURE_DIM, 7, 7]` for [`View::WholeMap`] ([`View::shape`]).
    pub fn features<P: Picture>(
        &mut self,
        samples: &[&P],
        view: View,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Tensor> {
        if samples.is_empty() {
            return Err(Error::Dataset("no images to embed".into()));
        }
        let sha = &self.backbone.weights_sha256;
        let keys: Vec<String> = samples
            .iter()
            .map(|s| cache::key(sha, s.sha256(), &view))
            .collect();
        let mut rows: Vec<Option<Vec<f32>>> = vec![None; samples.len()];
        if let Some(store) = self.store {
            for (c, chunk) in keys.chunks(CACHE_BATCH).enumerate() {
                let Ok(found) = store.load(chunk) else {
                    self.stats.store_errors += 1;
                    continue;
                };
                for (j, entry) in found.into_iter().enumerate().take(chunk.len()) {
                    let i = c * CACHE_BATCH + j;
                    let Some(bytes) = entry else { continue };
                    match cache::decode(&keys[i], &bytes, view.floats()) {
                        Some(v) => rows[i] = Some(v),
                        None => self.stats.corrupt += 1,
                    }
                }
            }
            let hits = rows.iter().filter(|r| r.is_some()).count();
            self.stats.hits += hits;
            if hits > 0 && !self.counter.tick(hits, progress) {
                return Err(Error::Cancelled);
            }
        }
        let missing: Vec<usize> = (0..samples.len()).filter(|&i| rows[i].is_none()).collect();
        // Computed a cache batch at a time and written back at once, so a run stopped halfway
        // keeps what it computed.
        for part in missing.chunks(CACHE_BATCH) {
            let inputs = part
                .iter()
                .map(|&i| view_tensor(samples[i], &view, &self.prep));
            let counter = &mut self.counter;
            let computed = features_of(self.backbone, &view, inputs, part.len(), &mut |n| {
                counter.tick(n, progress)
            })?
            .flatten_from(1)?
            .to_vec2::<f32>()?;
            self.stats.computed += part.len();
            let mut entries = Vec::new();
            for (&i, v) in part.iter().zip(computed) {
                if self.store.is_some() {
                    entries.push((keys[i].clone(), cache::encode(&keys[i], &v)));
                }
                rows[i] = Some(v);
            }
            if let Some(store) = self.store
                && store.save(&entries).is_err()
            {
                self.stats.store_errors += 1;
            }
        }
        let flat: Vec<f32> = rows.into_iter().flatten().flatten().collect();
        Ok(Tensor::from_vec(
            flat,
            view.shape(samples.len()),
            &Device::Cpu,
        )?)
    }
}
