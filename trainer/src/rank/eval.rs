//! How well a ranking model ranks: Recall@1/5/10 and median rank in both directions, next to
//! chance and a bag-of-words baseline that uses the same frozen features but no text model.

use std::collections::HashMap;

use candle_core::Tensor;
use wasm_infer::{Encoded, Recall};

use super::model::{DualEncoder, Pair, l2_normalize};
use crate::{Error, Result};

/// 1-based rank of the best-scored relevant item among `scores`, ties shared evenly (the
/// expected rank when ties are broken at random).
pub fn rank_of(scores: &[f32], relevant: &[usize]) -> f64 {
    let best = relevant
        .iter()
        .map(|&i| scores[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let above = scores
        .iter()
        .enumerate()
        .filter(|(i, s)| **s > best && !relevant.contains(i))
        .count();
    let tied = scores
        .iter()
        .enumerate()
        .filter(|(i, s)| **s == best && !relevant.contains(i))
        .count();
    1.0 + above as f64 + tied as f64 / 2.0
}

/// Recall@1/5/10 and median rank from the rank of each query's match.
pub fn recall_from_ranks(ranks: &[f64]) -> Recall {
    let n = ranks.len().max(1) as f64;
    let at = |k: f64| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    let mut sorted = ranks.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => 0.0,
        m if m % 2 == 1 => sorted[m / 2],
        m => (sorted[m / 2 - 1] + sorted[m / 2]) / 2.0,
    };
    Recall {
        r1: at(1.0),
        r5: at(5.0),
        r10: at(10.0),
        median_rank: median,
    }
}

/// Rows of a `[n, m]` score matrix (all finite).
fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let v = t.to_vec2::<f32>()?;
    if v.iter().flatten().any(|x| !x.is_finite()) {
        return Err(Error::Dataset("similarity scores are not finite".into()));
    }
    Ok(v)
}

/// Caption → image and image → caption recall of `model` on a split.
pub fn evaluate(
    model: &DualEncoder,
    features: &Tensor,
    pairs: &[Pair],
) -> Result<(Recall, Recall)> {
    let (t2i, i2t) = evaluate_ranks(model, features, pairs)?;
    Ok((recall_from_ranks(&t2i), i2t))
}

/// [`evaluate`], with the caption → image rank of each query (in `pairs` order) instead of
/// its recall: the gate's per-example evidence.
pub fn evaluate_ranks(
    model: &DualEncoder,
    features: &Tensor,
    pairs: &[Pair],
) -> Result<(Vec<f64>, Recall)> {
    let img = model.embed_features(features)?;
    let texts: Vec<&Encoded> = pairs.iter().map(|p| &p.text).collect();
    let txt = model.embed_texts(&texts)?;
    let sim = rows(&txt.matmul(&img.t()?)?)?; // [texts, images]
    let t2i: Vec<f64> = sim
        .iter()
        .zip(pairs)
        .map(|(s, p)| rank_of(s, &[p.image]))
        .collect();
    let n_images = features.dim(0)?;
    let sim_t = rows(&img.matmul(&txt.t()?)?)?; // [images, texts]
    let i2t: Vec<f64> = (0..n_images)
        .filter_map(|i| {
            let relevant: Vec<usize> = pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.image == i)
                .map(|(j, _)| j)
                .collect();
            (!relevant.is_empty()).then(|| rank_of(&sim_t[i], &relevant))
        })
        .collect();
    Ok((t2i, recall_from_ranks(&i2t)))
}

/// Expected recall of ranking `n` items at random.
pub fn random_recall(n: usize) -> Recall {
    let n = n.max(1) as f64;
    Recall {
        r1: 1.0_f64.min(n) / n,
        r5: 5.0_f64.min(n) / n,
        r10: 10.0_f64.min(n) / n,
        median_rank: (n + 1.0) / 2.0,
    }
}

fn bag(words: impl IntoIterator<Item = String>) -> HashMap<String, f32> {
    let mut m = HashMap::new();
    for w in words {
        *m.entry(w).or_insert(0.0) += 1.0;
    }
    m
}

fn cosine(a: &HashMap<String, f32>, b: &HashMap<String, f32>) -> f32 {
    let dot: f32 = a.iter().map(|(w, x)| x * b.get(w).unwrap_or(&0.0)).sum();
    let na: f32 = a.values().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.values().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Bag-of-words baseline, caption → image: each test image is described by the words of the
/// captions of its `k` nearest training images (cosine on backbone features); a query ranks
/// the images by the cosine of word counts.
pub fn bow_baseline(
    train_features: &Tensor,
    train_captions: &[Vec<String>],
    test_features: &Tensor,
    test: &[(usize, String)],
    k: usize,
) -> Result<Recall> {
    let ranks = bow_ranks(train_features, train_captions, test_features, test, k)?;
    Ok(recall_from_ranks(&ranks))
}

/// [`bow_baseline`]'s rank of each query's match, in `test` order.
pub fn bow_ranks(
    train_features: &Tensor,
    train_captions: &[Vec<String>],
    test_features: &Tensor,
    test: &[(usize, String)],
    k: usize,
) -> Result<Vec<f64>> {
    let a = l2_normalize(test_features)?;
    let b = l2_normalize(train_features)?;
    let sim = rows(&a.matmul(&b.t()?)?)?;
    let described: Vec<_> = sim
        .iter()
        .map(|s| {
            let mut order: Vec<usize> = (0..s.len()).collect();
            order.sort_by(|&x, &y| s[y].total_cmp(&s[x]));
            bag(order.into_iter().take(k).flat_map(|i| {
                train_captions[i]
                    .iter()
                    .flat_map(|c| wasm_infer::tokenizer::words(c))
            }))
        })
        .collect();
    let ranks: Vec<f64> = test
        .iter()
        .map(|(image, caption)| {
            let q = bag(wasm_infer::tokenizer::words(caption));
            let scores: Vec<f32> = described.iter().map(|d| cosine(&q, d)).collect();
            rank_of(&scores, &[*image])
        })
        .collect();
    Ok(ranks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: 3 queries whose matches rank 1, 3 and 2 (a tie between two).
    #[test]
    fn recall_on_a_hand_checked_case() {
        // Query 0: item 0 best → rank 1.
        assert_eq!(rank_of(&[0.9, 0.1, 0.2], &[0]), 1.0);
        // Query 1: item 2 is third.
        assert_eq!(rank_of(&[0.9, 0.5, 0.1], &[2]), 3.0);
        // Query 2: item 1 ties with item 0 for first → expected rank 1.5.
        assert_eq!(rank_of(&[0.7, 0.7, 0.1], &[1]), 1.5);
        // Several relevant items: the best one counts.
        assert_eq!(rank_of(&[0.9, 0.5, 0.8], &[1, 2]), 2.0);
        let r = recall_from_ranks(&[1.0, 3.0, 1.5, 12.0]);
        assert_eq!((r.r1, r.r5, r.r10), (0.25, 0.75, 0.75));
        assert_eq!(r.median_rank, 2.25);
        let r = random_recall(20);
        assert_eq!((r.r1, r.r5, r.r10, r.median_rank), (0.05, 0.25, 0.5, 10.5));
    }
}
