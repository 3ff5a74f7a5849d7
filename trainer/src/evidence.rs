//! What a classification run hands the registry's gate ([`contract::evidence::Evidence`]):
//! the candidate, its baselines and (when the caller passes it) the champion, each predicting
//! the **same** examples.
//!
//! - **Baselines** on the same frozen features: the majority class of the training labels, and
//!   k-nearest-neighbours (cosine, k picked on the validation split among [`KNN_KS`]) — a
//!   strong baseline on small datasets, where a linear head has little room to do better.
//! - **Examples.** The test split; or, when it is smaller than the run's `cv_below`,
//!   `cv_folds`-fold cross-validation over train + test: each example's fold is fixed by its
//!   content hash, every fold's head (and kNN, and majority class) is fitted on the other folds
//!   with the run's own recipe, and predicts the fold. The head trains in seconds on the cached
//!   features, so this costs a few fits, and the gate then decides on every labelled image
//!   instead of a tenth of them.
//! - **Champion.** On the test split, its head on the same features (it is the model being
//!   served). Under cross-validation, its recipe (its training config) retrained on the same
//!   folds: the served head was trained on most of these images, so its own predictions on
//!   them would flatter it.

use candle_core::{Device, Tensor};
use contract::evidence::{ChampionOutcomes, Evidence, Method, Outcomes, Statistic};

use crate::Result;
use crate::train::{FitData, Head, TrainConfig, fit};

/// The k the kNN baseline chooses from (on the validation split).
pub const KNN_KS: [usize; 5] = [1, 3, 5, 7, 9];

/// The champion, as a classification run can score it (its backbone already checked to be
/// the run's; its labels are checked against the run's).
#[derive(Debug, Clone)]
pub struct ChampionRef {
    /// Its model id.
    pub id: String,
    /// Its labels, in order: it is compared only when they are the run's.
    pub labels: Vec<String>,
    /// Its head (scores it on the test split).
    pub head: Option<Head>,
    /// Its training config (retrains its recipe on cross-validation folds).
    pub config: Option<TrainConfig>,
}

/// The features and labels a run already has, by split.
pub struct Splits<'a> {
    /// The labels, in order.
    pub labels: &'a [String],
    /// Augmented views of the training images (`[n_train, dim]` each).
    pub train_views: &'a [Tensor],
    /// Clean view of the training images.
    pub train_clean: &'a Tensor,
    /// Training labels.
    pub train_y: &'a [u32],
    /// Training image hashes.
    pub train_ids: Vec<String>,
    /// Augmented views of the test images (only needed for cross-validation).
    pub test_views: Option<&'a [Tensor]>,
    /// Clean view of the test images.
    pub test_clean: &'a Tensor,
    /// Test labels.
    pub test_y: &'a [u32],
    /// Test image hashes.
    pub test_ids: Vec<String>,
    /// Clean view of the validation images.
    pub val: &'a Tensor,
    /// Validation labels.
    pub val_y: &'a [u32],
}

/// The most frequent label (lowest index on ties).
pub fn majority(labels: &[u32], classes: usize) -> u32 {
    let mut counts = vec![0usize; classes];
    labels.iter().for_each(|l| counts[*l as usize] += 1);
    (0..classes)
        .max_by_key(|&i| (counts[i], usize::MAX - i))
        .unwrap_or(0) as u32
}

fn normalized(x: &Tensor) -> Result<Tensor> {
    crate::rank::model::l2_normalize(x)
}

/// Cosine similarities of every query to every reference, as rows.
fn similarities(reference: &Tensor, query: &Tensor) -> Result<Vec<Vec<f32>>> {
    let s = normalized(query)?.matmul(&normalized(reference)?.t()?)?;
    Ok(s.to_vec2::<f32>()?)
}

/// kNN votes for each `k` in `ks`, from precomputed similarity rows: majority of the `k`
/// nearest labels, ties broken by the larger summed similarity, then the lower label.
fn knn_from(sims: &[Vec<f32>], labels: &[u32], classes: usize, ks: &[usize]) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::with_capacity(sims.len()); ks.len()];
    for row in sims {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for (slot, &k) in out.iter_mut().zip(ks) {
            let mut votes = vec![(0usize, 0f32); classes];
            for &j in order.iter().take(k.max(1)) {
                let v = &mut votes[labels[j] as usize];
                v.0 += 1;
                v.1 += row[j];
            }
            let best = (0..classes)
                .max_by(|&a, &b| {
                    (votes[a].0.cmp(&votes[b].0))
                        .then(votes[a].1.total_cmp(&votes[b].1))
                        .then(b.cmp(&a))
                })
                .unwrap_or(0);
            slot.push(best as u32);
        }
    }
    out
}

/// A kNN classifier on frozen features, its k picked on the validation split.
pub struct Knn {
    /// The chosen k.
    pub k: usize,
}

impl Knn {
    /// Pick k on `val` (most right; the smaller k on ties).
    pub fn pick(
        reference: &Tensor,
        labels: &[u32],
        classes: usize,
        val: &Tensor,
        val_y: &[u32],
    ) -> Result<Self> {
        let votes = knn_from(&similarities(reference, val)?, labels, classes, &KNN_KS);
        let right = |p: &Vec<u32>| p.iter().zip(val_y).filter(|(a, b)| a == b).count();
        let best = (0..KNN_KS.len())
            .max_by_key(|&i| (right(&votes[i]), usize::MAX - i))
            .unwrap_or(0);
        Ok(Knn { k: KNN_KS[best] })
    }

    /// Predict `query` from `reference`.
    pub fn predict(
        &self,
        reference: &Tensor,
        labels: &[u32],
        classes: usize,
        query: &Tensor,
    ) -> Result<Vec<u32>> {
        let sims = similarities(reference, query)?;
        Ok(knn_from(&sims, labels, classes, &[self.k]).remove(0))
    }
}

fn argmax_rows(head: &Head, x: &Tensor) -> Result<Vec<u32>> {
    Ok(head.logits(x)?.argmax(1)?.to_vec1::<u32>()?)
}

/// The fold (of `folds`) an example falls in, from its content hash (independent of the
/// train/val/test split, which uses the hash's first bytes).
pub fn fold_of(sha256: &str, folds: usize) -> usize {
    let tail = &sha256[sha256.len().saturating_sub(12)..];
    u64::from_str_radix(tail, 16).unwrap_or(0) as usize % folds.max(1)
}

fn select(x: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let t = Tensor::from_vec(idx.clone(), idx.len(), &Device::Cpu)?;
    Ok(x.index_select(&t, 0)?)
}

/// Fit `config`'s head on `views`/`labels` with the validation split picking the epoch.
fn fit_on(
    views: &[Tensor],
    labels: &[u32],
    s: &Splits<'_>,
    config: &TrainConfig,
    go: &mut dyn FnMut() -> bool,
) -> Result<Head> {
    let n_views = config.views.min(views.len()).max(1);
    let data = FitData {
        train_views: &views[..n_views],
        train_labels: labels,
        val: s.val,
        val_labels: s.val_y,
        classes: s.labels.len(),
    };
    Ok(fit(&data, config, &mut |_, _| go())?.head)
}

/// The gate's evidence for a classification run whose final head is `head`, trained with
/// `config`; `champion` when there is one to compare with. `go` is asked between fits (false
/// stops the run: cancelled).
pub fn classification(
    s: &Splits<'_>,
    head: &Head,
    config: &TrainConfig,
    champion: Option<&ChampionRef>,
    go: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Evidence> {
    let champion = champion.filter(|c| c.labels == s.labels);
    match s.test_views {
        Some(test_views)
            if s.test_y.len() < config.cv_below
                && config.cv_folds >= 2
                && folds_in_use(s, config.cv_folds) >= 2 =>
        {
            cross_validated(s, test_views, config, champion, go)
        }
        _ => on_test_split(s, head, champion),
    }
}

/// How many folds hold at least one example (a handful of images can all hash into one fold:
/// then no fold has others to train on, and the test split is all there is).
fn folds_in_use(s: &Splits<'_>, folds: usize) -> usize {
    let mut used = vec![false; folds];
    for id in s.train_ids.iter().chain(&s.test_ids) {
        used[fold_of(id, folds)] = true;
    }
    used.iter().filter(|u| **u).count()
}

fn on_test_split(s: &Splits<'_>, head: &Head, champion: Option<&ChampionRef>) -> Result<Evidence> {
    let knn = Knn::pick(s.train_clean, s.train_y, s.labels.len(), s.val, s.val_y)?;
    let knn_pred = knn.predict(s.train_clean, s.train_y, s.labels.len(), s.test_clean)?;
    let maj = majority(s.train_y, s.labels.len());
    let champion = match champion {
        Some(ChampionRef {
            id, head: Some(h), ..
        }) => Some(ChampionOutcomes {
            id: id.clone(),
            how: "its head on the same test images".into(),
            outcomes: Outcomes::from_labels("champion", argmax_rows(h, s.test_clean)?, s.test_y),
        }),
        _ => None,
    };
    Ok(Evidence {
        boxes: None,
        metric: "accuracy".into(),
        statistic: Statistic::Mean,
        method: Method::TestSplit,
        items: s.test_ids.clone(),
        truth: Some(s.test_y.to_vec()),
        candidate: Outcomes::from_labels("candidate", argmax_rows(head, s.test_clean)?, s.test_y),
        baselines: vec![
            Outcomes::from_labels(format!("kNN (k={})", knn.k), knn_pred, s.test_y),
            Outcomes::from_labels("majority class", vec![maj; s.test_y.len()], s.test_y).trivial(),
        ],
        champion,
    })
}

fn cross_validated(
    s: &Splits<'_>,
    test_views: &[Tensor],
    config: &TrainConfig,
    champion: Option<&ChampionRef>,
    go: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Evidence> {
    let folds = config.cv_folds;
    let views: Vec<Tensor> = s
        .train_views
        .iter()
        .zip(test_views)
        .map(|(a, b)| Tensor::cat(&[a, b], 0))
        .collect::<std::result::Result<_, _>>()?;
    let clean = Tensor::cat(&[s.train_clean, s.test_clean], 0)?;
    let ids: Vec<String> = s.train_ids.iter().chain(&s.test_ids).cloned().collect();
    let truth: Vec<u32> = s.train_y.iter().chain(s.test_y).copied().collect();
    let n = ids.len();
    let fold: Vec<usize> = ids.iter().map(|id| fold_of(id, folds)).collect();
    let recipe = champion.and_then(|c| c.config.as_ref().map(|cfg| (c, cfg)));
    let (mut cand, mut knn_p, mut maj_p, mut champ_p) =
        (vec![0u32; n], vec![0u32; n], vec![0u32; n], vec![0u32; n]);
    let mut ks = Vec::new();
    let mut stop = false;
    for f in 0..folds {
        let (inside, outside): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold[i] == f);
        if inside.is_empty() {
            continue;
        }
        if !go(f + 1, folds) {
            stop = true;
            break;
        }
        let fold_views: Vec<Tensor> = views
            .iter()
            .map(|v| select(v, &outside))
            .collect::<Result<_>>()?;
        let labels: Vec<u32> = outside.iter().map(|&i| truth[i]).collect();
        let (ref_x, query) = (select(&clean, &outside)?, select(&clean, &inside)?);
        let mut keep_going = || true;
        let head = fit_on(&fold_views, &labels, s, config, &mut keep_going)?;
        let knn = Knn::pick(&ref_x, &labels, s.labels.len(), s.val, s.val_y)?;
        ks.push(knn.k);
        let knn_fold = knn.predict(&ref_x, &labels, s.labels.len(), &query)?;
        let champ_fold = match recipe {
            Some((_, cfg)) => Some(argmax_rows(
                &fit_on(&fold_views, &labels, s, cfg, &mut keep_going)?,
                &query,
            )?),
            None => None,
        };
        let maj = majority(&labels, s.labels.len());
        let cand_fold = argmax_rows(&head, &query)?;
        for (j, &i) in inside.iter().enumerate() {
            cand[i] = cand_fold[j];
            knn_p[i] = knn_fold[j];
            maj_p[i] = maj;
            if let Some(c) = &champ_fold {
                champ_p[i] = c[j];
            }
        }
    }
    if stop {
        return Err(crate::Error::Cancelled);
    }
    ks.sort_unstable();
    let k_text = match (ks.first(), ks.last()) {
        (Some(a), Some(b)) if a == b => format!("k={a}"),
        (Some(a), Some(b)) => format!("k={a}–{b} by fold"),
        _ => "k=1".into(),
    };
    let champion = recipe.map(|(c, cfg)| ChampionOutcomes {
        id: c.id.clone(),
        how: format!(
            "its recipe ({} epochs, lr {}, {} views) retrained on the same folds",
            cfg.epochs,
            cfg.lr,
            cfg.views.min(views.len())
        ),
        outcomes: Outcomes::from_labels("champion", champ_p, &truth),
    });
    Ok(Evidence {
        boxes: None,
        metric: "accuracy".into(),
        statistic: Statistic::Mean,
        method: Method::CrossValidation {
            folds: folds as u32,
        },
        items: ids,
        candidate: Outcomes::from_labels("candidate", cand, &truth),
        baselines: vec![
            Outcomes::from_labels(format!("kNN ({k_text})"), knn_p, &truth),
            Outcomes::from_labels("majority class", maj_p, &truth).trivial(),
        ],
        truth: Some(truth),
        champion,
    })
}

/// The candidate's figure with its 95 % interval (a 2,000-resample bootstrap seeded by the
/// run), next to the kNN baseline's, as the manifest records it.
pub fn estimate(e: &Evidence, seed: u64) -> contract::Estimate {
    use contract::evidence::bootstrap_mean;
    let interval = |o: &Outcomes| bootstrap_mean(&o.values, 2000, 0.95, seed);
    contract::Estimate {
        method: e.method,
        n: e.items.len() as u32,
        value: interval(&e.candidate),
        knn: e
            .baselines
            .iter()
            .find(|b| b.name.starts_with("kNN"))
            .map(interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_votes_and_ties() {
        // References on two axes; the query is nearest to the two label-1 points.
        let r = Tensor::from_vec(
            vec![1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9, 0.2, 0.8],
            (5, 2),
            &Device::Cpu,
        )
        .unwrap();
        let labels = [0, 0, 1, 1, 1];
        let q = Tensor::from_vec(vec![0.05f32, 1.0, 1.0, 0.02], (2, 2), &Device::Cpu).unwrap();
        let sims = similarities(&r, &q).unwrap();
        let votes = knn_from(&sims, &labels, 2, &[1, 3, 5]);
        assert_eq!(votes[0], vec![1, 0]);
        assert_eq!(votes[1], vec![1, 0], "3-NN: the nearest three");
        assert_eq!(votes[2], vec![1, 1], "5-NN: three label-1 of five");
        assert_eq!(majority(&[2, 1, 1, 2], 3), 1, "ties go to the lower label");
        let counts = (0..200).fold([0usize; 5], |mut c, i| {
            let sha = wasm_infer::session::sha256_hex(&[i as u8, 7]);
            c[fold_of(&sha, 5)] += 1;
            c
        });
        assert!(
            counts.iter().all(|&c| c > 20),
            "folds roughly even: {counts:?}"
        );
    }

    /// Three well-separated clusters in 8 dimensions, `n` points each (label = cluster), with
    /// a few points of cluster 2 placed inside cluster 0 (so no model is perfect).
    fn clusters(n: usize, offset: usize) -> (Tensor, Vec<u32>, Vec<String>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut ids = Vec::new();
        for c in 0..3u32 {
            for i in 0..n {
                let k = offset + i;
                let mut v = vec![0.05f32 * ((k * 7 + c as usize) % 5) as f32; 8];
                let home = if c == 2 && i % 7 == 0 { 0 } else { c as usize };
                v[home] += 1.0 + 0.1 * (k % 3) as f32;
                x.extend(v);
                y.push(c);
                ids.push(wasm_infer::session::sha256_hex(
                    format!("{c}-{k}").as_bytes(),
                ));
            }
        }
        (
            Tensor::from_vec(x, (3 * n, 8), &Device::Cpu).unwrap(),
            y,
            ids,
        )
    }

    #[test]
    fn evidence_on_the_test_split_and_by_cross_validation() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let (train_x, train_y, train_ids) = clusters(30, 0);
        let (test_x, test_y, test_ids) = clusters(10, 1000);
        let (val_x, val_y, _) = clusters(5, 2000);
        let views = [train_x.clone()];
        let test_views = [test_x.clone()];
        let s = Splits {
            labels: &labels,
            train_views: &views,
            train_clean: &train_x,
            train_y: &train_y,
            train_ids: train_ids.clone(),
            test_views: Some(&test_views),
            test_clean: &test_x,
            test_y: &test_y,
            test_ids: test_ids.clone(),
            val: &val_x,
            val_y: &val_y,
        };
        let config = TrainConfig {
            views: 1,
            epochs: 40,
            lr: 0.05,
            dropout: 0.0,
            ..TrainConfig::default()
        };
        let data = FitData {
            train_views: &views,
            train_labels: &train_y,
            val: &val_x,
            val_labels: &val_y,
            classes: 3,
        };
        let head = fit(&data, &config, &mut |_, _| true).unwrap().head;
        let champion = ChampionRef {
            id: "champ".into(),
            labels: labels.clone(),
            head: Some(head.clone()),
            config: Some(config.clone()),
        };

        // Test split (cross-validation off): the candidate is the head on the test features.
        let on_test = TrainConfig {
            cv_below: 0,
            ..config.clone()
        };
        let e = classification(&s, &head, &on_test, Some(&champion), &mut |_, _| true).unwrap();
        assert_eq!(e.method, Method::TestSplit);
        assert_eq!(e.items, test_ids);
        assert_eq!(
            e.candidate.predicted.as_deref(),
            Some(&argmax_rows(&head, &test_x).unwrap()[..])
        );
        assert_eq!(
            e.champion.as_ref().unwrap().outcomes.values,
            e.candidate.values,
            "same head"
        );
        let majority = &e.baselines[1];
        assert!(majority.trivial && majority.predicted.as_ref().unwrap().iter().all(|p| *p == 0));
        assert!(
            e.candidate.mean() > 0.85 && e.baselines[0].mean() > 0.85,
            "{e:?}"
        );
        // Another label set: the champion is left out.
        let other = ChampionRef {
            labels: vec!["x".into(); 3],
            ..champion.clone()
        };
        let e = classification(&s, &head, &on_test, Some(&other), &mut |_, _| true).unwrap();
        assert!(e.champion.is_none());

        // Cross-validation over train + test: every example predicted once, by a head fitted
        // on the other folds; the champion's recipe (the same config) gives the same answers.
        let mut seen = Vec::new();
        let e = classification(&s, &head, &config, Some(&champion), &mut |f, k| {
            seen.push((f, k));
            true
        })
        .unwrap();
        assert_eq!(e.method, Method::CrossValidation { folds: 5 });
        assert_eq!(seen, (1..=5).map(|f| (f, 5)).collect::<Vec<_>>());
        assert_eq!(e.items.len(), 120);
        assert_eq!(e.items, [train_ids.clone(), test_ids.clone()].concat());
        assert_eq!(
            e.truth.as_deref(),
            Some(&[train_y.clone(), test_y.clone()].concat()[..])
        );
        let champ = e.champion.as_ref().unwrap();
        assert!(champ.how.contains("recipe"), "{}", champ.how);
        assert_eq!(champ.outcomes.values, e.candidate.values);
        assert!(e.candidate.mean() > 0.85, "{}", e.candidate.mean());
        // Out of fold: the points of cluster 2 inside cluster 0 are not learnt by heart.
        let mut planted =
            (0..120).filter(|&i| e.truth.as_ref().unwrap()[i] == 2 && (i % 30) % 7 == 0 && i < 90);
        assert!(planted.clone().count() > 0);
        assert!(
            planted.all(|i| e.candidate.values[i] == 0.0),
            "{:?}",
            e.candidate.values
        );
        // A handful of images that all hash into one fold: the test split is used instead.
        let one_fold: Vec<usize> = (0..120).filter(|&i| fold_of(&e.items[i], 5) == 0).collect();
        let pick = |v: &[String], y: &[u32], x: &Tensor, from: usize| {
            let idx: Vec<usize> = one_fold
                .iter()
                .copied()
                .filter(|&i| i >= from && i < from + v.len())
                .map(|i| i - from)
                .take(3)
                .collect();
            (
                idx.iter().map(|&i| v[i].clone()).collect::<Vec<_>>(),
                idx.iter().map(|&i| y[i]).collect::<Vec<_>>(),
                select(x, &idx).unwrap(),
            )
        };
        let (tr_ids, tr_y, tr_x) = pick(&train_ids, &train_y, &train_x, 0);
        let (te_ids, te_y, te_x) = pick(&test_ids, &test_y, &test_x, 90);
        assert!(!tr_ids.is_empty() && !te_ids.is_empty());
        let (tr_views, te_views) = ([tr_x.clone()], [te_x.clone()]);
        let tiny = Splits {
            train_views: &tr_views,
            train_clean: &tr_x,
            train_y: &tr_y,
            train_ids: tr_ids,
            test_views: Some(&te_views),
            test_clean: &te_x,
            test_y: &te_y,
            test_ids: te_ids.clone(),
            ..s
        };
        let e1 = classification(&tiny, &head, &config, None, &mut |_, _| true).unwrap();
        assert_eq!((e1.method, e1.items), (Method::TestSplit, te_ids));

        // Cancelled between folds.
        let stopped = classification(&s, &head, &config, None, &mut |f, _| f < 3);
        assert!(matches!(stopped, Err(crate::Error::Cancelled)));
        let est = estimate(&e, 1);
        assert_eq!(est.n, 120);
        assert!(est.value.lo <= est.value.mean && est.value.mean <= est.value.hi);
        assert!(est.knn.is_some());
    }
}
