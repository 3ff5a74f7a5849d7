//! The quality gate: whether a candidate replaces the champion.
//!
//! A run hands over its [`Evidence`] (`metrics.json`): the candidate, its baselines and the
//! champion predicting the same examples ([`trainer::evidence`], the ranking run's queries).
//! [`decide`] turns each comparison into a paired-bootstrap interval at the configured
//! confidence ([`contract::evidence`]): of the per-example differences for a mean (accuracy,
//! recall at 10), of the difference recomputed on each resample for weighted F1 (products):
//! - against a **trivial baseline** (majority class, chance), it must be better (the interval
//!   above 0); against the **strongest learnt baseline** (kNN on the same frozen features, bag
//!   of words), no worse than `margin` (a head that matches kNN is the better thing to ship: kNN
//!   would need every training feature in the browser, and a perfect kNN cannot be beaten);
//! - against the **champion**, it must be no worse than `margin` (the interval above
//!   `−margin`). A champion whose labels differ cannot predict the same examples: its recorded
//!   figure is used, against the candidate's own interval.
//!
//! All pass → promote; one fails → reject; otherwise **inconclusive**. (With no champion yet,
//! an undecided comparison with the learnt baseline does not hold back the first model: the
//! app would otherwise have none to serve.) Inconclusive: kept as a candidate,
//! shown in Admin with its intervals, promotable by hand. McNemar's exact test is reported next
//! to each paired accuracy comparison. A folder without evidence (never written by this
//! trainer) is refused.

use contract::evidence::{
    Check, Evidence, Interval, McNemar, Outcomes, Statistic, Verdict, beats, non_inferior,
};
use contract::{Task, api::Comparison};
use wasm_infer::manifest::ModelManifest;

use super::{GateDecision, ModelInfo};
use crate::{Error, Result};

/// How the gate decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateConfig {
    /// Regression allowed against the champion (on the metric's scale: 0.02 = 2 points).
    pub margin: f64,
    /// Confidence level of the two-sided intervals (0.95: each one-sided bound at 97.5 %).
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: u32,
    /// Bootstrap seed: the same evidence and seed give the same verdict.
    pub seed: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            margin: 0.02,
            confidence: 0.95,
            resamples: 2000,
            seed: 42,
        }
    }
}

impl GateConfig {
    /// The defaults with another margin.
    pub fn with_margin(margin: f64) -> Self {
        GateConfig {
            margin,
            ..Self::default()
        }
    }
}

/// The champion's figure recorded at its own training, for a candidate that cannot be paired
/// with it.
fn recorded_score(champion: &ModelInfo, task: Task) -> Option<f64> {
    match task {
        Task::Classify => champion.manifest.metrics.as_ref().map(|m| {
            m.estimate
                .as_ref()
                .map(|e| e.value.mean)
                .unwrap_or(m.accuracy)
        }),
        Task::Rank => champion
            .manifest
            .rank_metrics
            .as_ref()
            .map(|m| m.text_to_image.r10),
        Task::Product => champion
            .manifest
            .product_metrics
            .as_ref()
            .map(|m| m.both.weighted_f1),
        Task::Detect => champion
            .manifest
            .detection_metrics
            .as_ref()
            .map(|m| m.map50),
    }
}

/// The champion as the gate sees it: its id, and the figure recorded at its own training (used
/// only when the run could not score it on its own examples).
#[derive(Debug, Clone, PartialEq)]
pub struct ChampionFigure {
    /// Its model id.
    pub id: String,
    /// Its recorded figure on the gate's metric.
    pub recorded: Option<f64>,
}

impl ChampionFigure {
    /// From the registry's row.
    pub fn of(champion: &ModelInfo, task: Task) -> Self {
        ChampionFigure {
            id: champion.id.clone(),
            recorded: recorded_score(champion, task),
        }
    }
}

/// The verdict on `evidence` against the current `champion` (of the same task).
pub fn decide(
    evidence: &Evidence,
    champion: Option<&ChampionFigure>,
    cfg: &GateConfig,
) -> GateDecision {
    let candidate = &evidence.candidate;
    let cand = &candidate.values;
    let own = evidence.interval(candidate, cfg.resamples, cfg.confidence, cfg.seed);
    let paired = |other: &Outcomes| {
        evidence.paired(candidate, other, cfg.resamples, cfg.confidence, cfg.seed)
    };
    // McNemar's test compares right/wrong counts: it speaks to accuracy only.
    let accuracy = evidence.metric == "accuracy" && evidence.statistic == Statistic::Mean;
    let mut comparisons = Vec::new();
    // Baselines: trivial ones must be beaten outright; the strongest learnt one must not be
    // better than the candidate beyond the margin.
    let usable = |b: &&Outcomes| evidence.usable(b);
    let strongest = evidence
        .baselines
        .iter()
        .filter(usable)
        .filter(|b| !b.trivial)
        .max_by(|a, b| evidence.score(a).total_cmp(&evidence.score(b)));
    for b in evidence.baselines.iter().filter(usable) {
        let d = paired(b);
        let (role, bar, check) = if b.trivial {
            ("baseline", "> 0".to_string(), beats(&d))
        } else if strongest.is_some_and(|s| std::ptr::eq(s, b)) {
            (
                "baseline",
                format!("> −{:.3}", cfg.margin),
                non_inferior(&d, cfg.margin),
            )
        } else {
            (
                "baseline (weaker)",
                format!("> −{:.3}", cfg.margin),
                non_inferior(&d, cfg.margin),
            )
        };
        comparisons.push(Comparison {
            against: b.name.clone(),
            role: role.into(),
            score: evidence.score(b),
            paired: true,
            difference: d,
            bar,
            mcnemar: accuracy.then(|| McNemar::of(cand, &b.values)),
            check,
        });
    }
    // The champion: paired when the run scored it on the same examples.
    let mut champion_same = None;
    if let Some(ch) = champion {
        let scored = evidence
            .champion
            .as_ref()
            .filter(|c| c.id == ch.id && evidence.usable(&c.outcomes));
        let bar = format!("> −{:.3}", cfg.margin);
        match scored {
            Some(c) => {
                let d = paired(&c.outcomes);
                champion_same = Some(true);
                comparisons.push(Comparison {
                    against: format!("champion {} ({})", ch.id, c.how),
                    role: "champion".into(),
                    score: evidence.score(&c.outcomes),
                    paired: true,
                    difference: d,
                    bar,
                    mcnemar: accuracy.then(|| McNemar::of(cand, &c.outcomes.values)),
                    check: non_inferior(&d, cfg.margin),
                });
            }
            None => {
                if let Some(score) = ch.recorded {
                    let d = Interval {
                        mean: own.mean - score,
                        lo: own.lo - score,
                        hi: own.hi - score,
                    };
                    champion_same = Some(false);
                    comparisons.push(Comparison {
                        against: format!(
                            "champion {} (its figure recorded at its own training: not scorable on these examples)",
                            ch.id
                        ),
                        role: "champion".into(),
                        score,
                        paired: false,
                        difference: d,
                        bar,
                        mcnemar: None,
                        check: non_inferior(&d, cfg.margin),
                    });
                }
            }
        }
    }
    let deciding = comparisons
        .iter()
        .filter(|c| c.role == "baseline" || c.role == "champion");
    // With no champion, nothing is served yet: a first model that clearly beats the trivial
    // baselines and is not clearly worse than the learnt one is served (an interval that
    // straddles the learnt baseline's bar does not keep the app without a model).
    let first = champion.is_none();
    let verdict = Verdict::of(deciding.clone().map(|c| match c.check {
        Check::Unsure if first && c.bar != "> 0" => Check::Pass,
        other => other,
    }));
    let method = evidence.method.describe(cand.len());
    let pct = |x: f64| format!("{:.1} %", 100.0 * x);
    let signed = |x: f64| format!("{:+.1}", 100.0 * x);
    let words: Vec<String> = deciding
        .map(|c| {
            format!(
                "vs {} {}: {} points [{}, {}] ({})",
                c.against,
                pct(c.score),
                signed(c.difference.mean),
                signed(c.difference.lo),
                signed(c.difference.hi),
                match c.check {
                    Check::Pass => "clears",
                    Check::Unsure => "cannot tell",
                    Check::Fail => "fails",
                }
            )
        })
        .collect();
    let reason = format!(
        "{}: {} {} [{}, {}] on {method}; {}{}",
        match verdict {
            Verdict::Promote => "promoted",
            Verdict::Inconclusive => "inconclusive (kept as a candidate; promotable by hand)",
            Verdict::Reject => "rejected",
        },
        evidence.metric,
        pct(own.mean),
        pct(own.lo),
        pct(own.hi),
        words.join("; "),
        if first
            && verdict == Verdict::Promote
            && comparisons.iter().any(|c| c.check == Check::Unsure)
        {
            " (first model: served while no champion exists, though the learnt baseline cannot be told apart)"
        } else {
            ""
        }
    );
    let champion_cmp = comparisons.iter().find(|c| c.role == "champion");
    GateDecision {
        promote: verdict == Verdict::Promote,
        metric: evidence.metric.clone(),
        candidate: own.mean,
        champion: champion_cmp.map(|c| c.score),
        champion_id: champion_cmp.and(champion.map(|c| c.id.clone())),
        champion_same_split: champion_same,
        baseline: evidence
            .baselines
            .iter()
            .map(|b| evidence.score(b))
            .fold(0.0, f64::max),
        margin: cfg.margin,
        reason,
        verdict: Some(verdict),
        n: Some(cand.len() as u32),
        method: Some(method),
        test: Some(format!(
            "paired bootstrap of {} ({} resamples, {:.0} % two-sided intervals, seed {}){}",
            match evidence.statistic {
                Statistic::Mean => "per-example differences",
                Statistic::WeightedF1 =>
                    "the difference in weighted F1, recomputed on each resample of the examples",
                Statistic::Map50 =>
                    "the difference in mAP@0.5, recomputed on each resample of the images",
            },
            cfg.resamples,
            100.0 * cfg.confidence,
            cfg.seed,
            if accuracy {
                "; McNemar's exact test reported"
            } else {
                ""
            }
        )),
        confidence: Some(cfg.confidence),
        interval: Some(own),
        comparisons,
    }
}

/// The run's evidence from its `metrics.json` (`None` when it has none).
pub fn evidence_of(metrics_json: &[u8]) -> Result<Option<Evidence>> {
    #[derive(serde::Deserialize)]
    struct WithEvidence {
        #[serde(default)]
        evidence: Option<Evidence>,
    }
    let w: WithEvidence = serde_json::from_slice(metrics_json)
        .map_err(|e| Error::Internal(format!("metrics.json: {e}")))?;
    Ok(w.evidence)
}

/// The gate's decision for a candidate against the champion, on the evidence its run
/// recorded (every run of this trainer records some).
pub(super) fn decide_for(
    manifest: &ModelManifest,
    evidence: Option<&Evidence>,
    champion: Option<&ModelInfo>,
    cfg: &GateConfig,
) -> Result<GateDecision> {
    let e = evidence.ok_or_else(|| {
        Error::Internal("the run recorded no gate evidence in its metrics.json".into())
    })?;
    if e.candidate.values.is_empty() {
        return Err(Error::Internal("the run's evidence has no examples".into()));
    }
    let figure = champion.map(|c| ChampionFigure::of(c, manifest.task));
    Ok(decide(e, figure.as_ref(), cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    mod on_evidence {
        use super::*;
        use contract::evidence::{ChampionOutcomes, Method, Outcomes, Statistic};

        fn right(n: usize, wrong: impl IntoIterator<Item = usize>) -> Vec<u32> {
            let wrong: Vec<usize> = wrong.into_iter().collect();
            (0..n).map(|i| u32::from(wrong.contains(&i))).collect()
        }

        /// Evidence over `n` examples of truth 0: a prediction of 1 is a mistake.
        fn evidence(cand: Vec<u32>, knn: Vec<u32>, champion: Option<Vec<u32>>) -> Evidence {
            let n = cand.len();
            let truth = vec![0u32; n];
            Evidence {
                boxes: None,
                metric: "accuracy".into(),
                statistic: Statistic::Mean,
                method: Method::TestSplit,
                items: (0..n).map(|i| format!("{i:064x}")).collect(),
                truth: Some(truth.clone()),
                candidate: Outcomes::from_labels("candidate", cand, &truth),
                baselines: vec![
                    Outcomes::from_labels("kNN (k=3)", knn, &truth),
                    Outcomes::from_labels(
                        "majority class",
                        (0..n as u32).map(|i| i % 2).collect(),
                        &truth,
                    )
                    .trivial(),
                ],
                champion: champion.map(|p| ChampionOutcomes {
                    id: "champ".into(),
                    how: "its head on the same test images".into(),
                    outcomes: Outcomes::from_labels("champion", p, &truth),
                }),
            }
        }

        fn champion_info(acc: f64) -> ChampionFigure {
            ChampionFigure {
                id: "champ".into(),
                recorded: Some(acc),
            }
        }

        fn verdict(e: &Evidence, champ: Option<&ChampionFigure>) -> GateDecision {
            decide(e, champ, &GateConfig::default())
        }

        #[test]
        fn one_image_worse_than_the_champion_on_46_is_not_rejected() {
            let champ_p = right(46, [1, 5, 8, 13, 21, 25, 33, 40, 44]);
            let cand = right(46, [1, 5, 8, 13, 21, 25, 33, 40, 44, 12]);
            let knn = right(46, [1, 5, 8, 13, 21, 25, 33, 40, 44, 2, 3]);
            let e = evidence(cand, knn, Some(champ_p));
            let info = champion_info(37.0 / 46.0);
            let d = verdict(&e, Some(&info));
            assert_ne!(d.verdict, Some(Verdict::Reject), "{}", d.reason);
            assert_eq!(d.verdict, Some(Verdict::Inconclusive), "{}", d.reason);
            assert!(!d.promote);
            assert_eq!(d.n, Some(46));
            assert_eq!(d.champion_same_split, Some(true));
            let champ = d.comparisons.iter().find(|c| c.role == "champion").unwrap();
            assert!(champ.paired && champ.difference.lo < -0.02 && champ.difference.hi >= 0.0);
            let mc = champ.mcnemar.unwrap();
            assert_eq!((mc.candidate_only, mc.other_only), (0, 1));
            // Reproducible: the same evidence and seed give the same decision.
            assert_eq!(d, verdict(&e, Some(&info)));
            assert!(d.reason.starts_with("inconclusive"), "{}", d.reason);
        }

        #[test]
        fn clearly_worse_on_500_is_rejected_clearly_better_promoted() {
            let champ_p = right(500, 0..50);
            let knn = right(500, 0..80);
            let worse = right(500, (5..50).chain(100..160));
            let info = champion_info(0.9);
            let d = verdict(
                &evidence(worse, knn.clone(), Some(champ_p.clone())),
                Some(&info),
            );
            assert_eq!(d.verdict, Some(Verdict::Reject), "{}", d.reason);
            let better = right(500, 40..50);
            let d = verdict(&evidence(better, knn, Some(champ_p)), Some(&info));
            assert_eq!(d.verdict, Some(Verdict::Promote), "{}", d.reason);
            assert!(d.promote);
            assert_eq!(d.comparisons.len(), 3, "kNN, majority class, champion");
        }

        #[test]
        fn baselines_decide_the_first_model() {
            // As good as a perfect kNN: promoted (within the margin, and it beats the majority).
            let d = verdict(&evidence(right(60, []), right(60, []), None), None);
            assert_eq!(d.verdict, Some(Verdict::Promote), "{}", d.reason);
            // Cannot be told apart from kNN: served as the first model, not over a champion.
            let close = evidence(right(271, 0..41), right(271, 20..66), None);
            let d = verdict(&close, None);
            assert_eq!(d.verdict, Some(Verdict::Promote), "{}", d.reason);
            assert!(d.reason.contains("first model"), "{}", d.reason);
            let knn = d
                .comparisons
                .iter()
                .find(|c| c.against.starts_with("kNN"))
                .unwrap();
            assert_eq!(knn.check, Check::Unsure, "{knn:?}");
            let champ = champion_info(0.8);
            let mut e = close.clone();
            e.champion = Some(ChampionOutcomes {
                id: "champ".into(),
                how: "its head".into(),
                outcomes: e.candidate.clone(),
            });
            let d = verdict(&e, Some(&champ));
            assert_eq!(d.verdict, Some(Verdict::Inconclusive), "{}", d.reason);
            // Far below kNN: a head that learnt little is rejected.
            let d = verdict(&evidence(right(300, 0..100), right(300, 0..20), None), None);
            assert_eq!(d.verdict, Some(Verdict::Reject), "{}", d.reason);
            let knn = d
                .comparisons
                .iter()
                .find(|c| c.against.starts_with("kNN"))
                .unwrap();
            assert_eq!(knn.check, Check::Fail);
            // No better than the trivial baseline (which is right on every other example).
            let half = (0..300).filter(|i| i % 2 == 1);
            let d = verdict(
                &evidence(right(300, half.clone()), right(300, half), None),
                None,
            );
            assert_eq!(d.verdict, Some(Verdict::Reject), "{}", d.reason);
        }

        #[test]
        fn products_are_gated_on_weighted_f1_not_accuracy() {
            // 1,200 items: 1,080 of class 0 and 40 each of classes 1–3. The champion misses
            // 120 items of class 0 (calling them 1, 2, 3); the candidate calls everything
            // class 0. Same accuracy (0.9), but the candidate has dropped three categories.
            let truth: Vec<u32> = (0..1200u32)
                .map(|i| if i < 1080 { 0 } else { 1 + (i - 1080) / 40 })
                .collect();
            let champion: Vec<u32> = truth
                .iter()
                .enumerate()
                .map(|(i, t)| if i < 120 { 1 + i as u32 % 3 } else { *t })
                .collect();
            let candidate = vec![0u32; 1200];
            let mut e = Evidence {
                boxes: None,
                metric: "weighted_f1".into(),
                statistic: Statistic::WeightedF1,
                method: Method::TestSplit,
                items: (0..1200).map(|i| format!("{i:064x}")).collect(),
                truth: Some(truth.clone()),
                candidate: Outcomes::from_labels("candidate", candidate.clone(), &truth),
                baselines: vec![],
                champion: Some(ChampionOutcomes {
                    id: "champ".into(),
                    how: "its head".into(),
                    outcomes: Outcomes::from_labels("champion", champion.clone(), &truth),
                }),
            };
            let info = champion_info(0.0);
            let d = verdict(&e, Some(&info));
            assert_eq!(d.verdict, Some(Verdict::Reject), "{}", d.reason);
            let f1 = contract::evidence::weighted_f1;
            assert!((d.candidate - f1(&truth, &candidate)).abs() < 1e-12);
            let champ = d.comparisons.iter().find(|c| c.role == "champion").unwrap();
            assert!((champ.score - f1(&truth, &champion)).abs() < 1e-12);
            assert!(champ.difference.hi < -0.02, "{champ:?}");
            assert!(champ.mcnemar.is_none(), "McNemar speaks to accuracy only");
            assert!(d.test.as_deref().unwrap().contains("weighted F1"));
            assert!(d.reason.contains("weighted_f1"), "{}", d.reason);
            // The same outcomes judged on accuracy cannot tell the two apart.
            e.metric = "accuracy".into();
            e.statistic = Statistic::Mean;
            let d = verdict(&e, Some(&info));
            assert_eq!(d.verdict, Some(Verdict::Inconclusive), "{}", d.reason);
            assert!((d.candidate - 0.9).abs() < 1e-12);
        }

        #[test]
        fn a_champion_with_other_labels_is_compared_by_its_recorded_figure() {
            let e = evidence(right(400, 0..40), right(400, 0..60), None);
            let info = champion_info(0.95);
            let d = verdict(&e, Some(&info));
            let champ = d.comparisons.iter().find(|c| c.role == "champion").unwrap();
            assert!(!champ.paired);
            assert_eq!(champ.score, 0.95);
            assert_eq!(d.champion_same_split, Some(false));
            // 0.90 [~0.87, ~0.93] against 0.95 − 0.02: clearly below.
            assert_eq!(d.verdict, Some(Verdict::Reject), "{}", d.reason);
        }
    }
}
