//! The statistics the registry's quality gate decides on, defined once for every task: a
//! candidate and the models it is compared with (the champion, the baselines) are scored on
//! the **same** examples, one number per example (1/0 for a right/wrong label, 1/0 for a
//! caption whose image is in the top 10, …), and the gate looks at the per-example
//! differences.
//!
//! - [`bootstrap_mean`]: a percentile interval for the mean of per-example values (or of
//!   paired differences), from a seeded resampling, so the same inputs and seed give the same
//!   interval on every machine; [`bootstrap_statistic`] the same for a figure recomputed on
//!   each resample ([`weighted_f1_of`], the product task's [`Statistic::WeightedF1`]).
//! - [`mcnemar_exact`]: McNemar's exact test for two classifiers on the same examples (the
//!   binomial test on the discordant pairs), reported next to the interval for accuracy.
//! - [`non_inferior`] and [`beats`]: what an interval says against an allowed regression or a
//!   baseline, as [`Check::Pass`], [`Check::Unsure`] or [`Check::Fail`]; [`Verdict::of`]
//!   combines them into promote / inconclusive / reject.

use serde::{Deserialize, Serialize};

mod record;

pub use record::{ChampionOutcomes, Evidence, Method, Outcomes};

/// A mean and its two-sided interval at the gate's confidence level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interval {
    /// The observed mean.
    pub mean: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
}

/// splitmix64: a small, fully specified generator, so a seed gives the same resamples on
/// every platform (native and wasm) and in every version of the dependencies.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (`n > 0`; Lemire's multiply-shift, bias below 2⁻³² for the
    /// sizes the gate sees).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// The `q` quantile (0..=1) of sorted values, linearly interpolated.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

/// Percentile bootstrap of the mean of `values`: `resamples` resamples of `values.len()`
/// examples drawn with replacement (from `seed`), and the central `confidence` share of their
/// means. Paired comparisons pass the per-example differences, so each resample keeps an
/// example's two scores together. An empty input gives a zero interval.
pub fn bootstrap_mean(values: &[f64], resamples: u32, confidence: f64, seed: u64) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval {
            mean: 0.0,
            lo: 0.0,
            hi: 0.0,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    Interval {
        mean,
        lo: quantile(&means, tail).min(mean),
        hi: quantile(&means, 1.0 - tail).max(mean),
    }
}

/// The statistic a gate decides on, computed over a set of examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// The mean of the per-example values (accuracy, recall at 10).
    #[default]
    Mean,
    /// Support-weighted F1 over the classes (scikit-learn's `f1_score(average="weighted")`):
    /// computed from the predicted labels of the whole set, not a mean of per-example values,
    /// so its intervals resample examples and recompute it.
    WeightedF1,
    /// COCO mAP@0.5 over the examples (images): computed from every model's matched
    /// detections ([`Outcomes::hits`]) and the images' true boxes ([`Evidence::boxes`]), so its
    /// intervals resample images and recompute it ([`crate::detection::ApTable`]).
    Map50,
}

/// Support-weighted F1 of `predicted` against `truth` (equal lengths) over the examples
/// `picks` (indices, repeats allowed: a bootstrap resample): each class's F1
/// `2·tp / (2·tp + fp + fn)` (0 when the class is neither true nor predicted), weighted by its
/// share of the true labels. Classes only predicted weigh nothing, as in scikit-learn.
pub fn weighted_f1_of(truth: &[u32], predicted: &[u32], picks: &[usize]) -> f64 {
    if picks.is_empty() {
        return 0.0;
    }
    // The labels that occur, so a stray large label id cannot size the table.
    let mut labels: Vec<u32> = truth.iter().chain(predicted).copied().collect();
    labels.sort_unstable();
    labels.dedup();
    let slot = |l: u32| labels.binary_search(&l).unwrap_or_default();
    // Per class: true positives, true count (support), predicted count.
    let mut counts = vec![[0u32; 3]; labels.len()];
    for &i in picks {
        let (t, p) = (slot(truth[i]), slot(predicted[i]));
        counts[t][1] += 1;
        counts[p][2] += 1;
        if t == p {
            counts[t][0] += 1;
        }
    }
    let weighted: f64 = counts
        .iter()
        .filter(|[_, support, _]| *support > 0)
        .map(|&[tp, support, pred]| {
            let f1 = 2.0 * f64::from(tp) / f64::from(support + pred);
            f1 * f64::from(support)
        })
        .sum();
    weighted / picks.len() as f64
}

/// Support-weighted F1 over every example.
pub fn weighted_f1(truth: &[u32], predicted: &[u32]) -> f64 {
    weighted_f1_of(truth, predicted, &(0..truth.len()).collect::<Vec<_>>())
}

/// Percentile bootstrap of a statistic that is recomputed on each resample (not a mean of
/// per-example values): `stat` is given the drawn example indices. Paired comparisons return
/// the candidate's statistic minus the other's on the **same** draw. The observed value is
/// `stat` on every example; the rest as [`bootstrap_mean`].
pub fn bootstrap_statistic(
    n: usize,
    stat: impl Fn(&[usize]) -> f64,
    resamples: u32,
    confidence: f64,
    seed: u64,
) -> Interval {
    if n == 0 {
        return Interval {
            mean: 0.0,
            lo: 0.0,
            hi: 0.0,
        };
    }
    let all: Vec<usize> = (0..n).collect();
    let observed = stat(&all);
    let mut rng = SplitMix64::new(seed);
    let mut draw = vec![0usize; n];
    let mut values: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            draw.iter_mut().for_each(|d| *d = rng.below(n));
            stat(&draw)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    Interval {
        mean: observed,
        lo: quantile(&values, tail).min(observed),
        hi: quantile(&values, 1.0 - tail).max(observed),
    }
}

/// Per-example differences `a[i] - b[i]` (equal lengths).
pub fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// McNemar's exact test for two classifiers scored on the same examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McNemar {
    /// Examples only the candidate gets right.
    pub candidate_only: u32,
    /// Examples only the other model gets right.
    pub other_only: u32,
    /// Two-sided p-value of "both are right equally often" (exact binomial on the discordant
    /// pairs).
    pub p_value: f64,
}

impl McNemar {
    /// The test on per-example right/wrong values (1.0 right, 0.0 wrong).
    pub fn of(candidate: &[f64], other: &[f64]) -> Self {
        let (mut b, mut c) = (0u32, 0u32);
        for (x, y) in candidate.iter().zip(other) {
            match (*x > 0.5, *y > 0.5) {
                (true, false) => b += 1,
                (false, true) => c += 1,
                _ => {}
            }
        }
        McNemar {
            candidate_only: b,
            other_only: c,
            p_value: mcnemar_exact(b, c),
        }
    }
}

/// Two-sided p-value of McNemar's exact test with `b` and `c` discordant pairs:
/// `min(1, 2·P[X ≤ min(b, c)])` for `X ~ Binomial(b + c, ½)` (what `scipy.stats.binomtest(b,
/// b + c, 0.5)` gives). Summed in log space, so thousands of pairs neither underflow nor lose
/// precision.
pub fn mcnemar_exact(b: u32, c: u32) -> f64 {
    let n = b + c;
    if n == 0 || b == c {
        return 1.0;
    }
    let k = b.min(c);
    // log pmf(i) for i = 0..=k, by the ratio pmf(i+1)/pmf(i) = (n-i)/(i+1).
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut logs = Vec::with_capacity(k as usize + 1);
    for i in 0..=k {
        logs.push(log_pmf);
        log_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let cdf = top.exp() * logs.iter().map(|l| (l - top).exp()).sum::<f64>();
    (2.0 * cdf).min(1.0)
}

/// What one comparison says (`GateCheck` in the OpenAPI document: `Check` there is a health
/// check's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = GateCheck))]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// The interval clears the bar.
    Pass,
    /// The interval straddles the bar: the examples cannot tell.
    Unsure,
    /// The interval is entirely on the wrong side of the bar.
    Fail,
}

/// Non-inferiority of a candidate on the interval of its paired difference (candidate −
/// reference): pass when even the interval's low end is above `-margin`, fail when its high
/// end is below it, unsure otherwise.
pub fn non_inferior(difference: &Interval, margin: f64) -> Check {
    if difference.lo > -margin {
        Check::Pass
    } else if difference.hi < -margin {
        Check::Fail
    } else {
        Check::Unsure
    }
}

/// Superiority over a baseline on the interval of the paired difference (candidate −
/// baseline): pass when the interval's low end is above 0, fail when not even its high end is
/// (no sign of beating the baseline at all), unsure otherwise.
pub fn beats(difference: &Interval) -> Check {
    if difference.lo > 0.0 {
        Check::Pass
    } else if difference.hi <= 0.0 {
        Check::Fail
    } else {
        Check::Unsure
    }
}

/// The gate's verdict on a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every comparison passed: it becomes the champion.
    Promote,
    /// No comparison failed but some could not tell: kept as a candidate, promotable by hand.
    Inconclusive,
    /// A comparison failed: kept as a candidate, not served.
    #[default]
    Reject,
}

impl Verdict {
    /// All pass → promote; any fail → reject; otherwise inconclusive.
    pub fn of(checks: impl IntoIterator<Item = Check>) -> Self {
        let mut verdict = Verdict::Promote;
        for c in checks {
            match c {
                Check::Fail => return Verdict::Reject,
                Check::Unsure => verdict = Verdict::Inconclusive,
                Check::Pass => {}
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn right(n: usize, wrong: &[usize]) -> Vec<f64> {
        (0..n)
            .map(|i| if wrong.contains(&i) { 0.0 } else { 1.0 })
            .collect()
    }

    #[test]
    fn mcnemar_hand_checked() {
        // b = 0, c = 3: 2 · (1/2)³ = 0.25.
        assert!((mcnemar_exact(0, 3) - 0.25).abs() < 1e-15);
        // b = 1, c = 4: 2 · (1 + 5)/32 = 0.375.
        assert!((mcnemar_exact(1, 4) - 0.375).abs() < 1e-15);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(4, 1), mcnemar_exact(1, 4));
        // Large counts stay finite and tiny.
        let p = mcnemar_exact(100, 3000);
        assert!((0.0..1e-300).contains(&p), "{p}");
        let p = mcnemar_exact(1480, 1520);
        assert!(p > 0.4 && p < 0.8, "{p}");
        let m = McNemar::of(&[1.0, 1.0, 0.0, 0.0], &[1.0, 0.0, 1.0, 1.0]);
        assert_eq!((m.candidate_only, m.other_only), (1, 2));
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_mean() {
        let d = differences(&right(46, &[3, 9, 20]), &right(46, &[3, 30]));
        let a = bootstrap_mean(&d, 2000, 0.95, 7);
        assert_eq!(
            a,
            bootstrap_mean(&d, 2000, 0.95, 7),
            "same seed, same interval"
        );
        assert_ne!(
            a,
            bootstrap_mean(&d, 2000, 0.95, 8),
            "another seed resamples anew"
        );
        assert!((a.mean + 1.0 / 46.0).abs() < 1e-12);
        assert!(a.lo < a.mean && a.mean < a.hi, "{a:?}");
        // Identical models: a zero-width interval at 0.
        let z = bootstrap_mean(
            &differences(&right(10, &[1]), &right(10, &[1])),
            500,
            0.95,
            1,
        );
        assert_eq!((z.lo, z.mean, z.hi), (0.0, 0.0, 0.0));
        assert_eq!(bootstrap_mean(&[], 10, 0.95, 1).mean, 0.0);
    }

    #[test]
    fn one_image_worse_on_46_is_not_rejected() {
        // The champion is right on 37 of 46, the candidate on 36: one image apart.
        let champion = right(46, &[1, 5, 8, 13, 21, 25, 33, 40, 44]);
        let candidate = right(46, &[1, 5, 8, 13, 21, 25, 33, 40, 44, 12]);
        let d = bootstrap_mean(&differences(&candidate, &champion), 2000, 0.95, 42);
        assert_ne!(non_inferior(&d, 0.02), Check::Fail, "{d:?}");
        let v = Verdict::of([non_inferior(&d, 0.02)]);
        assert!(
            matches!(v, Verdict::Inconclusive | Verdict::Promote),
            "{v:?}"
        );
        assert!(McNemar::of(&candidate, &champion).p_value > 0.05);
    }

    #[test]
    fn clearly_worse_on_500_is_rejected_and_clearly_better_promoted() {
        // Champion right on 450 of 500; the candidate loses 60 of those and gains 5.
        let champion = right(500, &(0..50).collect::<Vec<_>>());
        let mut wrong: Vec<usize> = (5..50).collect();
        wrong.extend(100..160);
        let worse = right(500, &wrong);
        let d = bootstrap_mean(&differences(&worse, &champion), 2000, 0.95, 42);
        assert_eq!(non_inferior(&d, 0.02), Check::Fail, "{d:?}");
        assert_eq!(Verdict::of([non_inferior(&d, 0.02)]), Verdict::Reject);
        assert!(McNemar::of(&worse, &champion).p_value < 1e-6);
        // The reverse: the candidate fixes 40 of the champion's 50 mistakes.
        let better = right(500, &(40..50).collect::<Vec<_>>());
        let d = bootstrap_mean(&differences(&better, &champion), 2000, 0.95, 42);
        assert_eq!(non_inferior(&d, 0.02), Check::Pass, "{d:?}");
        assert_eq!(beats(&d), Check::Pass);
        assert_eq!(
            Verdict::of([non_inferior(&d, 0.02), beats(&d)]),
            Verdict::Promote
        );
    }

    #[test]
    fn weighted_f1_matches_scikit_learn() {
        // `sklearn.metrics.f1_score(t, p, average="weighted")` (scikit-learn 1.9.1) printed
        // 0.5885714285714286 and 0.4444444444444444 for these two.
        let t = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3];
        let p = [0, 0, 1, 3, 1, 1, 2, 0, 2, 2];
        assert!((weighted_f1(&t, &p) - 0.5885714285714286).abs() < 1e-15);
        // Class 2 only predicted: it weighs nothing.
        assert!((weighted_f1(&[0, 0, 1], &[0, 2, 2]) - 0.4444444444444444).abs() < 1e-15);
        assert_eq!(weighted_f1(&[], &[]), 0.0);
        // Label ids are names, not sizes: a huge one scores like any other.
        let far = weighted_f1(&[0, 0, 1, u32::MAX], &[0, 1, 1, u32::MAX]);
        assert!((far - weighted_f1(&[0, 0, 1, 2], &[0, 1, 1, 2])).abs() < 1e-15);
        // A resample counts repeats: the first item twice is [0, 0, 0] against [0, 0, 2].
        let twice = weighted_f1_of(&[0, 1], &[0, 2], &[0, 0, 1]);
        assert!((twice - weighted_f1(&[0, 0, 1], &[0, 0, 2])).abs() < 1e-15);
    }

    #[test]
    fn a_recomputed_mean_resamples_like_bootstrap_mean() {
        // The same draws: a statistic that is the mean gives bootstrap_mean's interval.
        let v = right(46, &[3, 9, 20]);
        let by_stat = bootstrap_statistic(
            v.len(),
            |picks| picks.iter().map(|&i| v[i]).sum::<f64>() / picks.len() as f64,
            2000,
            0.95,
            7,
        );
        let by_mean = bootstrap_mean(&v, 2000, 0.95, 7);
        assert!((by_stat.mean - by_mean.mean).abs() < 1e-12);
        assert!((by_stat.lo - by_mean.lo).abs() < 1e-12);
        assert!((by_stat.hi - by_mean.hi).abs() < 1e-12);
    }

    /// Evidence on weighted F1 over `truth`, a candidate and one learnt baseline.
    fn f1_evidence(truth: &[u32], cand: Vec<u32>, base: Vec<u32>) -> Evidence {
        Evidence {
            boxes: None,
            metric: "weighted_f1".into(),
            statistic: Statistic::WeightedF1,
            method: Method::TestSplit,
            items: (0..truth.len()).map(|i| i.to_string()).collect(),
            truth: Some(truth.to_vec()),
            candidate: Outcomes::from_labels("candidate", cand, truth),
            baselines: vec![Outcomes::from_labels("tower", base, truth)],
            champion: None,
        }
    }

    #[test]
    fn weighted_f1_evidence_is_scored_and_compared_on_the_statistic() {
        // 300 items: 200 of class 0, 50 each of classes 1 and 2.
        let truth: Vec<u32> = (0..300)
            .map(|i| [0, 1, 2][usize::from(i >= 200) + usize::from(i >= 250)])
            .collect();
        // The candidate is right everywhere but 10 items; the baseline collapses class 2
        // into class 0.
        let cand: Vec<u32> = truth
            .iter()
            .enumerate()
            .map(|(i, t)| if i < 10 { 1 } else { *t })
            .collect();
        let base: Vec<u32> = truth.iter().map(|t| if *t == 2 { 0 } else { *t }).collect();
        let e = f1_evidence(&truth, cand.clone(), base.clone());
        assert!((e.score(&e.candidate) - weighted_f1(&truth, &cand)).abs() < 1e-15);
        assert!((e.score(&e.baselines[0]) - weighted_f1(&truth, &base)).abs() < 1e-15);
        // Not the mean of right/wrong: the baseline's accuracy is 250/300.
        assert!((e.baselines[0].mean() - 250.0 / 300.0).abs() < 1e-15);
        assert!(
            e.score(&e.baselines[0]) < 0.78,
            "{}",
            e.score(&e.baselines[0])
        );
        let d = e.paired(&e.candidate, &e.baselines[0], 2000, 0.95, 42);
        let gap = weighted_f1(&truth, &cand) - weighted_f1(&truth, &base);
        assert!((d.mean - gap).abs() < 1e-12);
        assert!(d.lo > 0.1 && d.lo < d.mean && d.mean < d.hi, "{d:?}");
        assert_eq!(beats(&d), Check::Pass);
        // Against itself: exactly zero on every resample.
        let same = e.paired(&e.candidate, &e.candidate, 500, 0.95, 1);
        assert_eq!((same.lo, same.mean, same.hi), (0.0, 0.0, 0.0));
        let own = e.interval(&e.candidate, 2000, 0.95, 42);
        assert!(
            own.lo < own.mean && own.mean <= own.hi && own.hi <= 1.0,
            "{own:?}"
        );
        // Outcomes without predicted labels cannot be scored on weighted F1.
        let mut no_labels = e.baselines[0].clone();
        no_labels.predicted = None;
        assert!(e.usable(&e.candidate) && !e.usable(&no_labels));
        // Written and read back with its statistic; a mean's evidence omits it.
        let back: Evidence = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        let mean = Evidence {
            statistic: Statistic::Mean,
            ..e
        };
        assert!(!serde_json::to_string(&mean).unwrap().contains("statistic"));
    }

    #[test]
    fn verdicts_combine_checks() {
        use Check::*;
        assert_eq!(Verdict::of([Pass, Pass]), Verdict::Promote);
        assert_eq!(Verdict::of([Pass, Unsure]), Verdict::Inconclusive);
        assert_eq!(Verdict::of([Unsure, Fail]), Verdict::Reject);
        assert_eq!(Verdict::of([]), Verdict::Promote);
        // A candidate identical to a baseline does not beat it.
        let same = Interval {
            mean: 0.0,
            lo: 0.0,
            hi: 0.0,
        };
        assert_eq!(beats(&same), Fail);
    }

    /// mAP@0.5 evidence: the score is COCO's mAP of the matched detections; intervals
    /// resample images; a model without matched detections cannot be compared.
    #[test]
    fn map50_is_recomputed_on_resampled_images() {
        use crate::detection::Hit;
        // Ten images, one box of label i % 2 each.
        let boxes: Vec<Vec<u32>> = (0..10).map(|i| vec![i % 2]).collect();
        // The candidate finds 8 of them (scores high), misses 2 and adds 2 false boxes (low).
        let mut hits: Vec<Hit> = (0..8).map(|i| Hit(i, i % 2, 0.9, true)).collect();
        hits.push(Hit(8, 0, 0.2, false));
        hits.push(Hit(9, 1, 0.1, false));
        let candidate = Outcomes::from_hits("candidate", hits, &boxes);
        assert_eq!(candidate.values[..8], [1.0; 8]);
        assert_eq!(candidate.values[8..], [0.0; 2]);
        let nothing = Outcomes::from_hits("whole image", Vec::new(), &boxes).trivial();
        let e = Evidence {
            metric: "map50".into(),
            statistic: Statistic::Map50,
            method: Method::TestSplit,
            items: (0..10).map(|i| format!("img{i}")).collect(),
            truth: None,
            boxes: Some(boxes.clone()),
            candidate: candidate.clone(),
            baselines: vec![nothing.clone()],
            champion: None,
        };
        // Label 0: 4 of 5 found at the top: precision 1 at the 81 recall points 0 to 0.8, none
        // beyond → AP = 81/101; label 1 the same.
        let ap = 81.0 / 101.0;
        assert!(
            (e.score(&candidate) - ap).abs() < 1e-12,
            "{}",
            e.score(&candidate)
        );
        assert_eq!(e.score(&nothing), 0.0);
        let own = e.interval(&candidate, 500, 0.95, 7);
        assert!(own.lo < ap && own.hi <= 1.0 && own.lo > 0.0, "{own:?}");
        let d = e.paired(&candidate, &nothing, 500, 0.95, 7);
        assert!((d.mean - ap).abs() < 1e-12 && d.lo > 0.0, "{d:?}");
        assert_eq!(beats(&d), Check::Pass);
        // Same seed, same interval.
        assert_eq!(e.interval(&candidate, 500, 0.95, 7), own);
        // Without the images' boxes, or without matched detections: not comparable.
        let mut blind = e.clone();
        blind.boxes = None;
        assert!(!blind.usable(&candidate));
        let unmatched = Outcomes {
            hits: None,
            ..candidate.clone()
        };
        assert!(!e.usable(&unmatched) && e.usable(&candidate));
    }
}
