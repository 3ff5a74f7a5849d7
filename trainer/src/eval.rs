//! Classification metrics: accuracy, macro F1, per-class precision/recall, confusion matrix,
//! majority-class baseline; and their text rendering for the CLI.

use wasm_infer::{ClassMetrics, EvalMetrics};

/// Score predictions against truth. `majority_label` is the most frequent training class.
pub fn evaluate(
    labels: &[String],
    truth: &[u32],
    predicted: &[u32],
    majority_label: u32,
) -> EvalMetrics {
    let k = labels.len();
    let mut confusion = vec![vec![0u32; k]; k];
    for (t, p) in truth.iter().zip(predicted) {
        confusion[*t as usize][*p as usize] += 1;
    }
    let n = truth.len();
    let correct: u32 = (0..k).map(|i| confusion[i][i]).sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|i| {
            let tp = f64::from(confusion[i][i]);
            let support: u32 = confusion[i].iter().sum();
            let predicted_i: u32 = confusion.iter().map(|row| row[i]).sum();
            let precision = ratio(tp, f64::from(predicted_i));
            let recall = ratio(tp, f64::from(support));
            let f1 = ratio(2.0 * precision * recall, precision + recall);
            ClassMetrics {
                label: labels[i].clone(),
                support,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    // Macro F1 over the classes present in the test split.
    let present: Vec<&ClassMetrics> = per_class.iter().filter(|c| c.support > 0).collect();
    let macro_f1 = ratio(present.iter().map(|c| c.f1).sum(), present.len() as f64);
    let majority_hits = truth.iter().filter(|t| **t == majority_label).count();
    EvalMetrics {
        n_test: n as u32,
        accuracy: ratio(f64::from(correct), n as f64),
        macro_f1,
        majority_baseline: ratio(majority_hits as f64, n as f64),
        per_class,
        confusion,
        estimate: None,
    }
}

/// The gate's evidence as text: how the examples were predicted, then the candidate and each
/// baseline with its 95 % bootstrap interval, and the paired difference to the candidate with
/// McNemar's exact p-value.
pub fn render_evidence(e: &contract::evidence::Evidence, seed: u64) -> String {
    use contract::evidence::{McNemar, bootstrap_mean, differences};
    let n = e.items.len();
    let ci = |v: &[f64]| bootstrap_mean(v, 2000, 0.95, seed);
    let c = ci(&e.candidate.values);
    let mut out = format!(
        "gate evidence: {} on {}\n  {:<24} {:>6.1} %  [{:.1}, {:.1}]\n",
        e.metric,
        e.method.describe(n),
        "candidate",
        100.0 * c.mean,
        100.0 * c.lo,
        100.0 * c.hi
    );
    let champion = e
        .champion
        .iter()
        .map(|c| (format!("champion {}", c.id), &c.outcomes));
    let others = e.baselines.iter().map(|b| (b.name.clone(), b));
    for (name, o) in champion.chain(others) {
        let own = ci(&o.values);
        let d = ci(&differences(&e.candidate.values, &o.values));
        let m = McNemar::of(&e.candidate.values, &o.values);
        out += &format!(
            "  {name:<24} {:>6.1} %  [{:.1}, {:.1}]   candidate − it: {:+.1} points [{:+.1}, {:+.1}], McNemar p = {:.3}\n",
            100.0 * own.mean,
            100.0 * own.lo,
            100.0 * own.hi,
            100.0 * d.mean,
            100.0 * d.lo,
            100.0 * d.hi,
            m.p_value
        );
    }
    out
}

/// A plain-text report: headline figures, per-class table, confusion matrix.
pub fn render(m: &EvalMetrics) -> String {
    let mut out = format!(
        "test images: {}   accuracy: {:.3}   macro-F1: {:.3}   majority baseline: {:.3}\n\n",
        m.n_test, m.accuracy, m.macro_f1, m.majority_baseline
    );
    let width = m
        .per_class
        .iter()
        .map(|c| c.label.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out += &format!("{:<width$}  support  precision  recall     f1\n", "class");
    for c in &m.per_class {
        out += &format!(
            "{:<width$}  {:>7}  {:>9.3}  {:>6.3}  {:>5.3}\n",
            c.label, c.support, c.precision, c.recall, c.f1
        );
    }
    out += &format!(
        "\nconfusion (rows: true, columns: predicted)\n{:<width$}",
        ""
    );
    for (j, _) in m.per_class.iter().enumerate() {
        out += &format!(" {j:>4}");
    }
    out += "\n";
    for (i, row) in m.confusion.iter().enumerate() {
        out += &format!("{:<width$}", format!("{i} {}", m.per_class[i].label));
        for v in row {
            out += &format!(" {v:>4}");
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_metrics() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // truth:     a a a b b c
        // predicted: a a b b c c
        let m = evaluate(&labels, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 0);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.per_class[0].precision - 1.0).abs() < 1e-12);
        assert!((m.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].precision - 0.5).abs() < 1e-12);
        assert!((m.per_class[2].precision - 0.5).abs() < 1e-12);
        let f1 = [0.8, 0.5, 2.0 / 3.0];
        assert!((m.macro_f1 - f1.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        assert!((m.majority_baseline - 0.5).abs() < 1e-12);
        assert!(render(&m).contains("macro-F1: 0.656"));
    }
}
