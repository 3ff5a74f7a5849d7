//! Product-classification figures: accuracy, weighted and macro F1 and per-class F1 for text
//! only, image only, and both, on the same items.

use serde::{Deserialize, Serialize};

use super::model::ProductBatch;
use crate::Result;

/// Which inputs the model is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// The title and text; the image withheld.
    Text,
    /// The image; the text withheld.
    Image,
    /// Both.
    Both,
}

impl Modality {
    /// The three, in report order.
    pub const ALL: [Modality; 3] = [Modality::Text, Modality::Image, Modality::Both];

    /// The batch with this modality's inputs only.
    pub fn apply(self, b: &ProductBatch) -> Result<ProductBatch> {
        match self {
            Modality::Text => b.text_only(),
            Modality::Image => b.image_only(),
            Modality::Both => Ok(b.clone()),
        }
    }

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Text => "text only",
            Modality::Image => "image only",
            Modality::Both => "text + image",
        }
    }
}

/// The figures of one modality (the manifest's type).
pub use wasm_infer::ModalityScores as Scores;

/// Score predictions against truth over `classes` classes (labels named by their index).
pub fn score(truth: &[u32], predicted: &[u32], classes: usize) -> Scores {
    let names: Vec<String> = (0..classes).map(|i| i.to_string()).collect();
    score_named(&names, truth, predicted)
}

/// Score predictions against truth, per-class figures named by `labels`.
pub fn score_named(labels: &[String], truth: &[u32], predicted: &[u32]) -> Scores {
    let m = crate::eval::evaluate(labels, truth, predicted, 0);
    Scores {
        n: truth.len() as u32,
        accuracy: m.accuracy,
        // The gate's statistic, defined once in the contract.
        weighted_f1: contract::evidence::weighted_f1(truth, predicted),
        macro_f1: m.macro_f1,
        per_class: m.per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_f1_weights_classes_by_support() {
        // Class 0: 3 items, all right (F1 1 with one false positive from class 1: P 3/4,
        // R 1 → 6/7). Class 1: 1 item, wrong (F1 0).
        let s = score(&[0, 0, 0, 1], &[0, 0, 0, 0], 2);
        let f0 = 2.0 * 0.75 / 1.75;
        assert!((s.weighted_f1 - f0 * 0.75).abs() < 1e-12);
        assert!((s.macro_f1 - f0 / 2.0).abs() < 1e-12);
        assert!((s.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(s.n, 4);
        // The per-class figures and the contract's weighted F1 agree.
        let from_classes: f64 = s
            .per_class
            .iter()
            .map(|c| c.f1 * f64::from(c.support))
            .sum::<f64>()
            / 4.0;
        assert!((s.weighted_f1 - from_classes).abs() < 1e-12);
    }
}
