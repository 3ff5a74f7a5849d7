//! The dual encoder's towers as candle tensors: the frozen ImageNet classifier, the learnt
//! projection and word table, and the embeddings they give (the exported ONNX graphs in
//! [`super::export`] compute the same).

use candle_core::{D, Device, Tensor};
use wasm_infer::Encoded;

use crate::Result;
use crate::backbone::Backbone;

/// The trained towers (on top of the frozen backbone).
#[derive(Debug, Clone)]
pub struct DualEncoder {
    /// The backbone's ImageNet classifier, `[1000, feature_dim]` (frozen).
    pub classifier_weight: Tensor,
    /// Its bias, `[1000]` (frozen).
    pub classifier_bias: Tensor,
    /// `P`: `[dim, 1000]`.
    pub projection: Tensor,
    /// Class distribution of each word: `[vocab, 1000]`.
    pub word_classes: Tensor,
    /// Learnt logit scale (1 / temperature).
    pub scale: f64,
}

/// Floor on the squared norm (the ONNX graph uses the same): a zero vector stays zero, and
/// the gradient stays finite (the floor comes before the square root).
pub const NORM_EPS_SQUARED: f32 = 1e-12;

/// Rows scaled to unit L2 norm: `x / sqrt(max(Σx², eps²))`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .maximum(NORM_EPS_SQUARED)?
        .sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// Ids and mask tensors of encoded texts.
pub fn text_batch(texts: &[&Encoded]) -> Result<(Tensor, Tensor)> {
    let n = texts.len();
    let len = texts.first().map_or(0, |e| e.ids.len());
    let ids: Vec<u32> = texts
        .iter()
        .flat_map(|e| e.ids.iter().map(|&i| i as u32))
        .collect();
    let mask: Vec<f32> = texts.iter().flat_map(|e| e.mask.iter().copied()).collect();
    Ok((
        Tensor::from_vec(ids, (n, len), &Device::Cpu)?,
        Tensor::from_vec(mask, (n, len), &Device::Cpu)?,
    ))
}

/// Image class probabilities `[n, 1000]` of backbone features.
pub(crate) fn class_probs(features: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let logits = features.matmul(&w.t()?)?.broadcast_add(b)?;
    Ok(candle_nn::ops::softmax_last_dim(&logits)?)
}

/// Mean class distribution of the words of each text `[n, 1000]`.
pub(crate) fn text_classes(table: &Tensor, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (n, len) = ids.dims2()?;
    let classes = table.dim(1)?;
    let words = table
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((n, len, classes))?;
    let summed = words.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    Ok(summed.broadcast_div(&mask.sum_keepdim(1)?)?)
}

/// `x` projected by `projection` (`[dim, classes]`) and scaled to unit length.
pub(crate) fn projected(x: &Tensor, projection: &Tensor) -> Result<Tensor> {
    l2_normalize(&x.matmul(&projection.t()?)?)
}

impl DualEncoder {
    /// Unit embeddings of backbone features `[n, feature_dim]`.
    pub fn embed_features(&self, features: &Tensor) -> Result<Tensor> {
        let p = class_probs(features, &self.classifier_weight, &self.classifier_bias)?;
        projected(&p, &self.projection)
    }

    /// Unit embeddings of encoded texts.
    pub fn embed_texts(&self, texts: &[&Encoded]) -> Result<Tensor> {
        let (ids, mask) = text_batch(texts)?;
        projected(
            &text_classes(&self.word_classes, &ids, &mask)?,
            &self.projection,
        )
    }

    /// Embedding size.
    pub fn dim(&self) -> Result<usize> {
        Ok(self.projection.dim(0)?)
    }

    /// The text tower folded for export: each word's class distribution already projected,
    /// `[vocab, dim]` (mean then project = project then mean).
    pub fn folded_words(&self) -> Result<Tensor> {
        Ok(self.word_classes.matmul(&self.projection.t()?)?)
    }
}

/// Initial class distribution of each vocabulary word: uniform over the ImageNet classes
/// whose names contain it (same normalisation as the tokenizer), zero for other words.
pub fn word_class_init(vocab: &[String], class_names: &[String]) -> Vec<f32> {
    let classes = class_names.len();
    let index: std::collections::HashMap<&str, usize> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i))
        .collect();
    let mut of_word: Vec<Vec<usize>> = vec![Vec::new(); vocab.len()];
    for (c, name) in class_names.iter().enumerate() {
        let mut words = wasm_infer::tokenizer::words(name);
        words.sort();
        words.dedup();
        for w in words {
            if let Some(&i) = index.get(w.as_str()) {
                of_word[i].push(c);
            }
        }
    }
    let mut table = vec![0f32; vocab.len() * classes];
    for (i, cs) in of_word.iter().enumerate() {
        for &c in cs {
            table[i * classes + c] = 1.0 / cs.len() as f32;
        }
    }
    table
}

/// Where training starts: the frozen ImageNet classifier and the words' class distributions.
#[derive(Debug, Clone)]
pub struct Init {
    /// `[1000, feature_dim]`.
    pub classifier_weight: Tensor,
    /// `[1000]`.
    pub classifier_bias: Tensor,
    /// `[vocab, 1000]` ([`word_class_init`]).
    pub word_classes: Tensor,
}

impl Init {
    /// From the backbone and the class names, for a vocabulary.
    pub fn new(backbone: &Backbone, class_names: &[String], vocab: &[String]) -> Result<Self> {
        let classes = class_names.len();
        let cpu = &Device::Cpu;
        Ok(Self {
            classifier_weight: Tensor::from_slice(
                &backbone.imagenet_weight,
                (classes, backbone.imagenet_weight.len() / classes.max(1)),
                cpu,
            )?,
            classifier_bias: Tensor::from_slice(&backbone.imagenet_bias, classes, cpu)?,
            word_classes: Tensor::from_vec(
                word_class_init(vocab, class_names),
                (vocab.len(), classes),
                cpu,
            )?,
        })
    }
}

/// One caption of one image (index into the split's feature rows).
#[derive(Debug, Clone)]
pub struct Pair {
    /// Row of the image in the split's features.
    pub image: usize,
    /// The encoded caption.
    pub text: Encoded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_rows_have_unit_length() {
        let x = Tensor::new(&[[3.0f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let y = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }
}
