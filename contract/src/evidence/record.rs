//! What a run records for the gate in its `metrics.json`: the examples, how they were
//! predicted ([`Method`]), and every model's outcome on each of them ([`Outcomes`],
//! [`ChampionOutcomes`]) — enough to recompute the verdict with the statistics of the parent
//! module ([`Evidence::score`], [`Evidence::interval`], [`Evidence::paired`]).

use serde::{Deserialize, Serialize};

use crate::detection::{ApTable, Hit};

use super::{
    Interval, Statistic, bootstrap_mean, bootstrap_statistic, differences, weighted_f1,
    weighted_f1_of,
};

/// How the figures of a gate were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Method {
    /// Every model predicted the held-out test split.
    TestSplit,
    /// `folds`-fold cross-validation over the training and test splits (the validation split
    /// still picks each fold's epoch): every example is predicted by a head that did not train
    /// on it. Used when the test split is smaller than the run's `cv_below`.
    CrossValidation {
        /// Number of folds.
        folds: u32,
    },
}

impl Method {
    /// In words, for reasons and the Admin page.
    pub fn describe(&self, n: usize) -> String {
        match self {
            Method::TestSplit => format!("the test split ({n} examples)"),
            Method::CrossValidation { folds } => {
                format!("{folds}-fold cross-validation over train + test ({n} examples)")
            }
        }
    }
}

/// One model's outcome on each example of an [`Evidence`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Who: `candidate`, `champion`, `kNN (k=5)`, `majority class`, `bag of words`, …
    pub name: String,
    /// The metric's value on each example (1 right / 0 wrong; 1 when the match ranks in the
    /// top 10 / 0).
    pub values: Vec<f64>,
    /// Classification: the label index predicted for each example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Vec<u32>>,
    /// Ranking: the 1-based rank of each query's match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<Vec<f64>>,
    /// Detection: every counted detection (COCO's matching at IoU 0.5), `[image, label,
    /// score, hit]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hits: Option<Vec<Hit>>,
    /// A baseline that knows nothing of the images (majority class, chance): the candidate must
    /// beat it outright. A baseline that learns from the same features (kNN, bag of words) is
    /// a model in its own right: the candidate must be no worse than the strongest of those
    /// beyond the gate's margin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trivial: bool,
}

impl Outcomes {
    /// Per-example right/wrong from predicted labels against `truth`.
    pub fn from_labels(name: impl Into<String>, predicted: Vec<u32>, truth: &[u32]) -> Self {
        let values = predicted
            .iter()
            .zip(truth)
            .map(|(p, t)| f64::from(u8::from(p == t)))
            .collect();
        Outcomes {
            name: name.into(),
            values,
            predicted: Some(predicted),
            ranks: None,
            hits: None,
            trivial: false,
        }
    }

    /// Per-query hit (rank ≤ `k`) from the ranks of the matches.
    pub fn from_ranks(name: impl Into<String>, ranks: Vec<f64>, k: f64) -> Self {
        Outcomes {
            name: name.into(),
            values: ranks.iter().map(|r| f64::from(u8::from(*r <= k))).collect(),
            predicted: None,
            ranks: Some(ranks),
            hits: None,
            trivial: false,
        }
    }

    /// A detector's outcomes on images with true boxes of `truth_labels` (per image, the
    /// labels of its boxes): its matched detections, and per image the share of its true boxes
    /// found (1 for an image without any), shown next to the mAP.
    pub fn from_hits(name: impl Into<String>, hits: Vec<Hit>, truth_labels: &[Vec<u32>]) -> Self {
        let mut found = vec![0usize; truth_labels.len()];
        for h in hits.iter().filter(|h| h.3) {
            if let Some(f) = found.get_mut(h.0 as usize) {
                *f += 1;
            }
        }
        let values = truth_labels
            .iter()
            .zip(&found)
            .map(|(t, &f)| {
                if t.is_empty() {
                    1.0
                } else {
                    f as f64 / t.len() as f64
                }
            })
            .collect();
        Outcomes {
            name: name.into(),
            values,
            predicted: None,
            ranks: None,
            hits: Some(hits),
            trivial: false,
        }
    }

    /// The same, marked as a trivial baseline.
    pub fn trivial(self) -> Self {
        Outcomes {
            trivial: true,
            ..self
        }
    }

    /// The metric: the mean of the values.
    pub fn mean(&self) -> f64 {
        if self.values.is_empty() {
            0.0
        } else {
            self.values.iter().sum::<f64>() / self.values.len() as f64
        }
    }
}

/// What a run hands the gate, written to its `metrics.json`: the examples, and every model's
/// outcome on each of them — enough to recompute the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The gate's metric (`accuracy`, `text_to_image_r10`, `weighted_f1`).
    pub metric: String,
    /// How the metric is computed from the outcomes (the mean of per-example values unless
    /// said otherwise).
    #[serde(default, skip_serializing_if = "is_mean")]
    pub statistic: Statistic,
    /// How the examples were predicted.
    pub method: Method,
    /// Example ids (the image's sha256; `sha256#i` for the `i`-th caption of an image).
    pub items: Vec<String>,
    /// Classification: the true label index of each example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<Vec<u32>>,
    /// Detection: the labels of each example's true boxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<Vec<Vec<u32>>>,
    /// The candidate.
    pub candidate: Outcomes,
    /// Baselines scored on the same examples.
    pub baselines: Vec<Outcomes>,
    /// The champion on the same examples, when it could be scored on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<ChampionOutcomes>,
}

fn is_mean(s: &Statistic) -> bool {
    *s == Statistic::Mean
}

impl Evidence {
    /// Whether `o` can be compared on this evidence's examples: one outcome per example, and
    /// for a statistic over labels, the predicted labels and the truth.
    pub fn usable(&self, o: &Outcomes) -> bool {
        o.values.len() == self.candidate.values.len()
            && match self.statistic {
                Statistic::Mean => true,
                Statistic::WeightedF1 => self.labels_of(o).is_some(),
                Statistic::Map50 => self.table_of(o).is_some(),
            }
    }

    /// `o`'s matched detections as an AP table over the evidence's images (the classes: the
    /// highest label seen + 1).
    fn table_of(&self, o: &Outcomes) -> Option<ApTable> {
        let boxes = self.boxes.as_deref()?;
        let hits = o.hits.as_deref()?;
        if boxes.len() != o.values.len() {
            return None;
        }
        let classes = boxes
            .iter()
            .flatten()
            .copied()
            .chain(hits.iter().map(|h| h.1))
            .max()
            .map_or(0, |m| m + 1);
        Some(ApTable::new(boxes, hits, classes))
    }

    fn labels_of<'a>(&'a self, o: &'a Outcomes) -> Option<(&'a [u32], &'a [u32])> {
        let truth = self.truth.as_deref()?;
        let predicted = o.predicted.as_deref()?;
        (truth.len() == o.values.len() && predicted.len() == truth.len())
            .then_some((truth, predicted))
    }

    /// `o`'s figure on the gate's metric, over every example.
    pub fn score(&self, o: &Outcomes) -> f64 {
        if self.statistic == Statistic::Map50
            && let Some(t) = self.table_of(o)
        {
            return t.unweighted();
        }
        match (self.statistic, self.labels_of(o)) {
            (Statistic::WeightedF1, Some((truth, predicted))) => weighted_f1(truth, predicted),
            _ => o.mean(),
        }
    }

    /// The interval of `o`'s figure.
    pub fn interval(&self, o: &Outcomes, resamples: u32, confidence: f64, seed: u64) -> Interval {
        if self.statistic == Statistic::Map50
            && let Some(t) = self.table_of(o)
        {
            return bootstrap_statistic(
                t.images(),
                |picks| t.mean(&weights(picks, t.images())),
                resamples,
                confidence,
                seed,
            );
        }
        match (self.statistic, self.labels_of(o)) {
            (Statistic::WeightedF1, Some((truth, predicted))) => bootstrap_statistic(
                truth.len(),
                |picks| weighted_f1_of(truth, predicted, picks),
                resamples,
                confidence,
                seed,
            ),
            _ => bootstrap_mean(&o.values, resamples, confidence, seed),
        }
    }

    /// The interval of the paired difference `a − b` on the same examples (each resample
    /// draws the same examples for both).
    pub fn paired(
        &self,
        a: &Outcomes,
        b: &Outcomes,
        resamples: u32,
        confidence: f64,
        seed: u64,
    ) -> Interval {
        if self.statistic == Statistic::Map50
            && let (Some(ta), Some(tb)) = (self.table_of(a), self.table_of(b))
        {
            let n = ta.images();
            return bootstrap_statistic(
                n,
                |picks| {
                    let w = weights(picks, n);
                    ta.mean(&w) - tb.mean(&w)
                },
                resamples,
                confidence,
                seed,
            );
        }
        match (self.statistic, self.labels_of(a), self.labels_of(b)) {
            (Statistic::WeightedF1, Some((truth, pa)), Some((_, pb))) => bootstrap_statistic(
                truth.len(),
                |picks| weighted_f1_of(truth, pa, picks) - weighted_f1_of(truth, pb, picks),
                resamples,
                confidence,
                seed,
            ),
            _ => bootstrap_mean(
                &differences(&a.values, &b.values),
                resamples,
                confidence,
                seed,
            ),
        }
    }
}

/// How many times each of `n` examples was drawn.
fn weights(picks: &[usize], n: usize) -> Vec<f64> {
    let mut w = vec![0.0; n];
    for &i in picks {
        if let Some(x) = w.get_mut(i) {
            *x += 1.0;
        }
    }
    w
}

/// The champion's outcomes in an [`Evidence`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChampionOutcomes {
    /// Its model id.
    pub id: String,
    /// How it was scored, in words (its head on the same features; its recipe retrained on
    /// the same folds; its whole graph).
    pub how: String,
    /// Its outcomes, on the evidence's items.
    pub outcomes: Outcomes,
}
