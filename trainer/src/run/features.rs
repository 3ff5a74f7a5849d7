//! The frozen backbone's feature pass: decoded images → the shared preprocessing →
//! EfficientNet-Lite0 features, in batches, with progress and cancellation.

use std::time::Instant;

use candle_core::{Device, Tensor};
use image::RgbaImage;
use wasm_infer::preprocess::image_to_tensor;
use wasm_infer::{PixelFormat, Pixels, Preprocess};

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

/// Decode a sample and preprocess it for inference (centre crop), as the browser does.
pub fn inference_tensor(sample: &Sample, prep: &Preprocess) -> Result<Vec<f32>> {
    Ok(image_to_tensor(&pixels(&sample.decode()?)?, prep)?)
}

/// Run the backbone over prepared input tensors, [`FEATURE_BATCH`] at a time; `tick` gets the
/// size of each finished batch and cancels the pass by returning false. `count` (the images
/// expected) only words the error when there are none.
pub fn features_of(
    backbone: &Backbone,
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
        out.push(backbone.features(&batch)?);
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

    /// Clean (centre-crop) features of `samples`, counted.
    pub fn clean(
        &mut self,
        backbone: &Backbone,
        samples: &[&Sample],
        prep: &Preprocess,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Tensor> {
        let inputs = samples.iter().map(|s| inference_tensor(s, prep));
        features_of(backbone, inputs, samples.len(), &mut |n| {
            self.tick(n, progress)
        })
    }
}
