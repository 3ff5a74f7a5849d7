//! The product classifier as tensors: a text tower and a linear map of the frozen backbone's
//! image features whose class scores add up, one model for text only, image only, or both.
//!
//! - text: the shared tokenizer's word ids → a learnt vector per word → masked mean → a
//!   linear map to class scores (a fastText-style bag of words; zero when the mask is all
//!   zero: no text);
//! - image: backbone features `[1280]` → a linear map to class scores, times `has_image` (0
//!   or 1: no image adds nothing);
//! - `logits = text + image + bias`.
//!
//! Adding the towers' scores (late fusion) lets either stand alone and makes both a product
//! of the two towers' opinions. A shared hidden layer was tried first: the image features,
//! larger in scale, drowned the words, and both together scored below text alone. Training
//! drops one modality of an item at random ([`super::fit`]) so each tower learns to decide
//! alone.

use candle_core::{D, Device, Tensor};
use wasm_infer::Encoded;

use crate::Result;

/// The trained weights.
#[derive(Debug, Clone)]
pub struct ProductModel {
    /// `[vocab, dim]`: a vector per word id (id 0, padding, is never counted).
    pub words: Tensor,
    /// `[dim, classes]`: the text vector's class scores.
    pub text: Tensor,
    /// `[feature_dim, classes]`: the image features' class scores.
    pub image: Tensor,
    /// `[classes]`.
    pub bias: Tensor,
}

/// One batch of model inputs.
#[derive(Debug, Clone)]
pub struct ProductBatch {
    /// `[n, feature_dim]` backbone features (zeros where there is no image).
    pub features: Tensor,
    /// `[n, 1]`: 1 where the item has an image.
    pub has_image: Tensor,
    /// `[n, max_len]` word ids (u32).
    pub ids: Tensor,
    /// `[n, max_len]`: 1 for a word, 0 for padding (all 0: no text).
    pub mask: Tensor,
}

impl ProductBatch {
    /// Items in the batch.
    pub fn items(&self) -> Result<usize> {
        Ok(self.ids.dim(0)?)
    }

    /// A batch from per-item parts: feature rows (`None`: no image) and encoded texts.
    pub fn new(
        features: &[Option<&[f32]>],
        texts: &[&Encoded],
        feature_dim: usize,
    ) -> Result<Self> {
        let n = features.len();
        let len = texts.first().map_or(0, |e| e.ids.len());
        let mut flat = Vec::with_capacity(n * feature_dim);
        let mut has = Vec::with_capacity(n);
        for f in features {
            match f {
                Some(row) => {
                    flat.extend_from_slice(row);
                    has.push(1f32);
                }
                None => {
                    flat.extend(std::iter::repeat_n(0f32, feature_dim));
                    has.push(0.0);
                }
            }
        }
        let ids: Vec<u32> = texts
            .iter()
            .flat_map(|e| e.ids.iter().map(|&i| i as u32))
            .collect();
        let mask: Vec<f32> = texts.iter().flat_map(|e| e.mask.iter().copied()).collect();
        let cpu = &Device::Cpu;
        Ok(Self {
            features: Tensor::from_vec(flat, (n, feature_dim), cpu)?,
            has_image: Tensor::from_vec(has, (n, 1), cpu)?,
            ids: Tensor::from_vec(ids, (n, len), cpu)?,
            mask: Tensor::from_vec(mask, (n, len), cpu)?,
        })
    }

    /// The same items with the text removed (mask zero).
    pub fn image_only(&self) -> Result<Self> {
        Ok(Self {
            mask: self.mask.zeros_like()?,
            ..self.clone()
        })
    }

    /// The same items with the image removed.
    pub fn text_only(&self) -> Result<Self> {
        Ok(Self {
            has_image: self.has_image.zeros_like()?,
            ..self.clone()
        })
    }
}

/// Logits `[n, classes]` of a batch, from weights given as tensors (plain or `Var`s).
pub(crate) fn logits(
    (words, text_w, image, bias): (&Tensor, &Tensor, &Tensor, &Tensor),
    b: &ProductBatch,
) -> Result<Tensor> {
    let (n, len) = b.ids.dims2()?;
    let dim = words.dim(1)?;
    let per_word = words
        .index_select(&b.ids.flatten_all()?, 0)?
        .reshape((n, len, dim))?;
    let summed = per_word.broadcast_mul(&b.mask.unsqueeze(2)?)?.sum(1)?;
    let count = b.mask.sum_keepdim(1)?.maximum(1f64)?;
    let text = summed.broadcast_div(&count)?.matmul(text_w)?;
    let picture = b.features.matmul(image)?.broadcast_mul(&b.has_image)?;
    Ok((text + picture)?.broadcast_add(bias)?)
}

impl ProductModel {
    /// Logits `[n, classes]`.
    pub fn logits(&self, b: &ProductBatch) -> Result<Tensor> {
        logits((&self.words, &self.text, &self.image, &self.bias), b)
    }

    /// Class probabilities `[n, classes]`.
    pub fn probabilities(&self, b: &ProductBatch) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax_last_dim(&self.logits(b)?)?)
    }

    /// The most probable class of each item.
    pub fn predict(&self, b: &ProductBatch) -> Result<Vec<u32>> {
        Ok(self.logits(b)?.argmax(D::Minus1)?.to_vec1::<u32>()?)
    }

    /// Number of classes.
    pub fn classes(&self) -> Result<usize> {
        Ok(self.bias.dim(0)?)
    }
}
