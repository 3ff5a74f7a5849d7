//! What a training run trains: one [`TrainTask`] implementation per task, so the worker has a
//! single path for every task. A new task (detection, product classification, …) is added by
//! implementing the trait and naming it in [`TASKS`] and the two dispatches
//! ([`parse_task_params`], `Worker::train`).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use contract::api::ImageBox;
use contract::{ModelFiles, Task};
use serde::Serialize;
use serde::de::DeserializeOwned;
use trainer::backbone::Backbone;
use trainer::dataset::Dataset;
use trainer::product::{ProductConfig, ProductSet};
use trainer::rank::RankConfig;
use trainer::run::{CacheStats, FeatureStore, ModelFolder, Progress, RunMeta};
use trainer::train::{Head, TrainConfig};
use wasm_infer::manifest::ModelManifest;
use wasm_infer::session::Session;

use crate::registry;
use crate::storage::Storage;
use crate::{Error, Result};

/// Tasks a run can train.
pub const TASKS: [&str; 4] = ["classify", "rank", "product", "detect"];

/// The task named `name` (`classify`, `rank`, `product`, `detect`); an unknown name is
/// invalid input (422).
pub fn task_named(name: &str) -> Result<Task> {
    name.parse::<Task>()
        .ok()
        .filter(|t| TASKS.contains(&t.as_str()))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown task {name:?} (known: {})",
                TASKS.join(", ")
            ))
        })
}

/// Everything the blocking part of a run gets: its parameters, the snapshot, the backbone
/// and where to write the model folder.
pub struct Job<C> {
    /// The run's validated parameters.
    pub config: C,
    /// The approved images the run trains on.
    pub dataset: Dataset,
    /// Their boxes, by image id (the samples' `source`), for tasks that read boxes.
    pub boxes: HashMap<String, Vec<ImageBox>>,
    /// The frozen backbone (loaded once per process).
    pub backbone: Arc<Backbone>,
    /// The backbone's weights file; its folder also holds `imagenet_classes.txt`.
    pub backbone_path: PathBuf,
    /// The backbone feature cache (`None`: every feature is computed).
    pub features: Option<Arc<dyn FeatureStore>>,
    /// The champion the model retrains, as its parent.
    pub meta: RunMeta,
    /// The model folder to write (a temporary folder, uploaded by the registry).
    pub dir: PathBuf,
}

/// What a finished run hands to the registry.
pub struct Outputs {
    /// The model folder's files, as written (its `metrics.json` carries the gate's evidence:
    /// the candidate, the baselines and the champion on the same examples).
    pub files: ModelFolder,
    /// Where the run's backbone features came from.
    pub feature_cache: CacheStats,
}

/// One kind of training run.
pub trait TrainTask {
    /// The task, as stored on runs and models.
    const TASK: Task;
    /// Names the parameters in error messages (`training parameters: …`).
    const PARAMS: &'static str;
    /// Whether the snapshot carries the images' captions.
    const CAPTIONS: bool;
    /// Whether the run reads the images' boxes.
    const BOXES: bool = false;
    /// Hyper-parameters: absent keys take the defaults, unknown keys are refused (the config
    /// types deny unknown fields).
    type Config: Serialize + DeserializeOwned + Default + Send + 'static;
    /// What the run loads asynchronously before the blocking part (e.g. the champion).
    type Prepared: Send + 'static;

    /// Reject settings that cannot train.
    fn validate(config: &Self::Config) -> Result<()>;

    /// Load what the blocking part needs, given the current champion's id and the backbone
    /// the run trains on.
    fn prepare(
        storage: &Storage,
        champion: Option<&str>,
        backbone: &Backbone,
    ) -> impl Future<Output = Self::Prepared> + Send;

    /// Train and write the model folder (in a blocking thread); `progress` returns false when
    /// the run is to stop.
    fn train(
        job: Job<Self::Config>,
        prepared: Self::Prepared,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Outputs>;
}

/// Merge user parameters (a JSON object) over `T`'s defaults and validate them.
pub fn parse<T: TrainTask>(params: Option<&serde_json::Value>) -> Result<T::Config> {
    let Some(v) = params else {
        return Ok(T::Config::default());
    };
    if !v.is_object() {
        return Err(Error::Invalid("params must be a JSON object".into()));
    }
    let cfg: T::Config = serde_json::from_value(v.clone())
        .map_err(|e| Error::Invalid(format!("{} parameters: {e}", T::PARAMS)))?;
    T::validate(&cfg)?;
    Ok(cfg)
}

/// [`parse`] for the task named `task`, as the JSON stored on the run.
pub fn parse_task_params(
    task: &str,
    params: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    Ok(match task_named(task)? {
        Task::Classify => serde_json::to_value(parse::<Classify>(params)?)?,
        Task::Rank => serde_json::to_value(parse::<Rank>(params)?)?,
        Task::Product => serde_json::to_value(parse::<Product>(params)?)?,
        Task::Detect => serde_json::to_value(parse::<super::detect::Detect>(params)?)?,
    })
}

/// Merge classification parameters over [`TrainConfig`]'s defaults and validate.
pub fn parse_params(params: Option<&serde_json::Value>) -> Result<TrainConfig> {
    parse::<Classify>(params)
}

/// Merge ranking parameters over [`RankConfig`]'s defaults and validate.
pub fn parse_rank_params(params: Option<&serde_json::Value>) -> Result<RankConfig> {
    parse::<Rank>(params)
}

/// Image classification: a linear head on the backbone; the champion is scored on the
/// candidate's examples when their labels agree ([`trainer::evidence`]).
pub struct Classify;

/// A classification champion, loaded to be re-scored on a candidate's test split.
pub struct Champion {
    /// Its model id.
    pub id: String,
    /// How it is scored.
    pub scorer: ChampionScorer,
}

/// How a champion is re-scored.
pub enum ChampionScorer {
    /// Its head (`head.safetensors`) on the run's backbone features: the champion was trained
    /// on the same backbone, so its head on the (cached) test features is the model it served.
    /// With its training config (from its `metrics.json`), for cross-validated runs.
    Head(Head, Box<ModelManifest>, Option<TrainConfig>),
    /// Its whole graph through tract (no usable head, or another backbone).
    Graph(Box<Session>),
}

impl TrainTask for Classify {
    const TASK: Task = Task::Classify;
    const PARAMS: &'static str = "training";
    const CAPTIONS: bool = false;
    type Config = TrainConfig;
    /// The champion, to re-score it.
    type Prepared = Option<Champion>;

    fn validate(config: &TrainConfig) -> Result<()> {
        Ok(config.validate()?)
    }

    async fn prepare(
        storage: &Storage,
        champion: Option<&str>,
        backbone: &Backbone,
    ) -> Self::Prepared {
        let id = champion?;
        let manifest = registry::load_manifest(storage, id)
            .await
            .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "champion manifest"))
            .ok()?;
        // Its head, when it has one and it sits on this backbone; else its whole graph.
        let head = if manifest.backbone_sha256.as_deref() == Some(backbone.weights_sha256.as_str())
        {
            let key = crate::storage::model_key(id, ModelFiles::HEAD);
            match storage.get(&key).await {
                Ok(bytes) => Head::from_safetensors(&bytes, &key)
                    .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "unusable head"))
                    .ok(),
                Err(_) => None,
            }
        } else {
            None
        };
        let scorer = match head {
            Some(head) => {
                let config = champion_config(storage, id).await;
                ChampionScorer::Head(head, Box::new(manifest), config)
            }
            None => ChampionScorer::Graph(Box::new(
                registry::load_session(storage, id)
                    .await
                    .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "could not load the champion to re-score it"))
                    .ok()?,
            )),
        };
        Some(Champion {
            id: id.to_string(),
            scorer,
        })
    }

    fn train(
        job: Job<TrainConfig>,
        champion: Self::Prepared,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Outputs> {
        let Job {
            config,
            dataset,
            backbone,
            features,
            mut meta,
            dir,
            ..
        } = job;
        // Its head on the run's own features, or its recipe on the run's folds.
        let (graph, compare) = match champion {
            Some(Champion {
                id,
                scorer: ChampionScorer::Head(head, manifest, config),
            }) => (
                None,
                Some(trainer::evidence::ChampionRef {
                    id,
                    labels: manifest.labels.clone(),
                    head: Some(head),
                    config,
                }),
            ),
            Some(Champion {
                id,
                scorer: ChampionScorer::Graph(session),
            }) => (Some((id, session)), None),
            None => (None, None),
        };
        meta.champion = compare;
        let mut trained = trainer::pipeline::run(
            &dataset,
            &backbone,
            features.as_deref(),
            &config,
            &meta,
            &dir,
            progress,
        )?;
        // A champion without a usable head (older, or on another backbone): its whole graph on
        // the test images, when the run's examples are the test split.
        if let (Some((id, session)), Some(evidence)) = (graph, trained.report.evidence.as_mut())
            && evidence.method == contract::evidence::Method::TestSplit
            && evidence.champion.is_none()
        {
            match registry::score_on_test_split(&session, &dataset) {
                Ok(Some(predicted))
                    if Some(predicted.len()) == evidence.truth.as_ref().map(Vec::len) =>
                {
                    let truth = evidence.truth.clone().unwrap_or_default();
                    evidence.champion = Some(contract::evidence::ChampionOutcomes {
                        id,
                        how: "its whole graph on the same test images".into(),
                        outcomes: contract::evidence::Outcomes::from_labels(
                            "champion", predicted, &truth,
                        ),
                    });
                    trained.files = trained.files.with(
                        ModelFiles::METRICS,
                        serde_json::to_string_pretty(&trained.report)?,
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(champion = %id, error = %e, "re-scoring the champion failed")
                }
            }
        }
        Ok(Outputs {
            feature_cache: trained.report.timing.feature_cache,
            files: trained.files,
        })
    }
}

/// The training config a champion was trained with (its `metrics.json`), when readable.
async fn champion_config(storage: &Storage, id: &str) -> Option<TrainConfig> {
    #[derive(serde::Deserialize)]
    struct WithConfig {
        config: TrainConfig,
    }
    let key = crate::storage::model_key(id, ModelFiles::METRICS);
    let bytes = storage
        .get(&key)
        .await
        .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "champion metrics"))
        .ok()?;
    serde_json::from_slice::<WithConfig>(&bytes)
        .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "champion config"))
        .ok()
        .map(|w| w.config)
}

/// Image-text ranking: the dual encoder on the images' captions, plus the gallery every
/// image of the dataset is embedded into.
pub struct Rank;

/// A ranking champion, loaded to be scored on a candidate's test captions: its image tower
/// (backbone + image head) and its text encoder.
pub struct RankChampion {
    id: String,
    images: Session,
    texts: wasm_infer::session::TextEncoder,
}

impl TrainTask for Rank {
    const TASK: Task = Task::Rank;
    const PARAMS: &'static str = "ranking";
    const CAPTIONS: bool = true;
    type Config = RankConfig;
    type Prepared = Option<RankChampion>;

    fn validate(config: &RankConfig) -> Result<()> {
        Ok(config.validate()?)
    }

    async fn prepare(storage: &Storage, champion: Option<&str>, _: &Backbone) -> Self::Prepared {
        let id = champion?;
        let load = async {
            let images = registry::load_session(storage, id).await?;
            let text = images
                .manifest()
                .text
                .as_ref()
                .ok_or_else(|| Error::Internal("no text encoder".into()))?;
            let bytes = storage
                .get(&crate::storage::model_key(id, &text.onnx.file))
                .await?;
            let texts = wasm_infer::session::TextEncoder::new(&bytes, images.manifest())?;
            Ok::<_, Error>(RankChampion {
                id: id.to_string(),
                images,
                texts,
            })
        };
        load.await
            .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "could not load the ranking champion to re-score it"))
            .ok()
    }

    fn train(
        job: Job<RankConfig>,
        champion: Self::Prepared,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Outputs> {
        let classes_path = job.backbone_path.with_file_name("imagenet_classes.txt");
        let classes = trainer::backbone::imagenet_classes(&classes_path)?;
        let mut trained = trainer::rank::run(
            &job.dataset,
            &job.backbone,
            job.features.as_deref(),
            &classes,
            &job.config,
            &job.meta,
            &job.dir,
            progress,
        )?;
        // The champion on the very same test captions, query for query.
        if let (Some(c), Some(evidence)) = (champion, trained.report.evidence.as_mut()) {
            match rank_champion_ranks(&c, &job.dataset) {
                Ok(ranks) if ranks.len() == evidence.candidate.values.len() => {
                    evidence.champion = Some(contract::evidence::ChampionOutcomes {
                        id: c.id.clone(),
                        how: "its towers on the same test captions and images".into(),
                        outcomes: contract::evidence::Outcomes::from_ranks("champion", ranks, 10.0),
                    });
                    trained.files = trained.files.with(
                        ModelFiles::METRICS,
                        serde_json::to_string_pretty(&trained.report)?,
                    );
                }
                Ok(_) => tracing::warn!(champion = %c.id, "the champion's queries do not line up"),
                Err(e) => {
                    tracing::warn!(champion = %c.id, error = %e, "re-scoring the champion failed")
                }
            }
        }
        Ok(Outputs {
            feature_cache: trained.report.feature_cache,
            files: trained.files,
        })
    }
}

/// The caption → image rank of each test caption (in the run's query order: test images in
/// split order, each image's captions in order) under a ranking champion.
fn rank_champion_ranks(c: &RankChampion, dataset: &Dataset) -> Result<Vec<f64>> {
    let test: Vec<_> = dataset
        .split(trainer::dataset::Split::Test)
        .filter(|s| !s.captions.is_empty())
        .collect();
    let mut images = Vec::with_capacity(test.len());
    for s in &test {
        let img = s.decode()?;
        images.push(c.images.embed(&trainer::run::pixels(&img)?)?);
    }
    let mut ranks = Vec::new();
    for (me, s) in test.iter().enumerate() {
        for caption in &s.captions {
            let q = c.texts.embed(caption)?;
            let scores: Vec<f32> = images
                .iter()
                .map(|v| v.iter().zip(&q).map(|(a, b)| a * b).sum())
                .collect();
            ranks.push(trainer::rank::rank_of(&scores, &[me]));
        }
    }
    Ok(ranks)
}

/// Product classification: a title and an image per item (the images' captions are their
/// titles), text only, image only or both ([`trainer::product`]).
pub struct Product;

/// A product champion, loaded to be scored on a candidate's test items.
pub struct ProductChampion {
    id: String,
    session: wasm_infer::ProductSession,
}

impl TrainTask for Product {
    const TASK: Task = Task::Product;
    const PARAMS: &'static str = "product";
    const CAPTIONS: bool = true;
    type Config = ProductConfig;
    type Prepared = Option<ProductChampion>;

    fn validate(config: &ProductConfig) -> Result<()> {
        Ok(config.validate()?)
    }

    async fn prepare(storage: &Storage, champion: Option<&str>, _: &Backbone) -> Self::Prepared {
        let id = champion?;
        registry::load_product_session(storage, id)
            .await
            .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "could not load the product champion to re-score it"))
            .ok()
            .map(|session| ProductChampion {
                id: id.to_string(),
                session,
            })
    }

    fn train(
        job: Job<ProductConfig>,
        champion: Self::Prepared,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Outputs> {
        let set = ProductSet::from_dataset(&job.dataset);
        let mut run = trainer::product::run(
            &set,
            &job.backbone,
            job.features.as_deref(),
            &job.config,
            &job.meta,
            &job.dir,
            progress,
        )?;
        // The champion on the very same test items, with the same title and image.
        if let (Some(c), Some(evidence)) = (champion, run.report.evidence.as_mut()) {
            match product_champion_labels(&c, &set, &run.report.splits.test, &run.report.labels) {
                Ok(Some(predicted))
                    if Some(predicted.len()) == evidence.truth.as_ref().map(Vec::len) =>
                {
                    let truth = evidence.truth.clone().unwrap_or_default();
                    evidence.champion = Some(contract::evidence::ChampionOutcomes {
                        id: c.id.clone(),
                        how: "its head and backbone on the same titles and images".into(),
                        outcomes: contract::evidence::Outcomes::from_labels(
                            "champion", predicted, &truth,
                        ),
                    });
                    run.files = run.files.with(
                        ModelFiles::METRICS,
                        serde_json::to_string_pretty(&run.report)?,
                    );
                }
                Ok(_) => {
                    tracing::info!(champion = %c.id, "the champion's categories differ: compared by its recorded figure")
                }
                Err(e) => {
                    tracing::warn!(champion = %c.id, error = %e, "re-scoring the champion failed")
                }
            }
        }
        Ok(Outputs {
            feature_cache: run.report.feature_cache,
            files: run.files,
        })
    }
}

/// The label index (in the candidate's `labels`) a product champion predicts for each scored
/// test item (`tests`: their sources, in order), or `None` when its categories differ.
fn product_champion_labels(
    c: &ProductChampion,
    set: &ProductSet,
    tests: &[String],
    labels: &[String],
) -> Result<Option<Vec<u32>>> {
    if c.session.manifest().labels != labels {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(tests.len());
    for source in tests {
        let Some(item) = set.items.iter().find(|i| &i.source == source) else {
            return Ok(None);
        };
        let img = item.image.as_ref().map(|s| s.decode()).transpose()?;
        let pixels = img.as_ref().map(trainer::run::pixels).transpose()?;
        let top = c.session.classify(pixels.as_ref(), &item.words(), 1)?;
        let Some(i) = top
            .first()
            .and_then(|p| labels.iter().position(|l| *l == p.label))
        else {
            return Ok(None);
        };
        out.push(i as u32);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_merge_over_defaults_and_refuse_unknown_keys() {
        let c = parse_params(Some(&serde_json::json!({"epochs": 5, "views": 1}))).unwrap();
        assert_eq!(
            (c.epochs, c.views, c.batch_size),
            (5, 1, TrainConfig::default().batch_size)
        );
        let e = parse_params(Some(&serde_json::json!({"epohcs": 5}))).unwrap_err();
        assert!(e.to_string().contains("epohcs"), "{e}");
        let e = parse_params(Some(&serde_json::json!({"epochs": 0}))).unwrap_err();
        assert_eq!(
            e.status_code().0,
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
        assert!(parse_params(Some(&serde_json::json!([1]))).is_err());
        assert_eq!(parse_params(None).unwrap(), TrainConfig::default());
        let e = parse_task_params("rank", Some(&serde_json::json!({"views": 2}))).unwrap_err();
        assert!(e.to_string().contains("views"), "{e}");
        assert!(parse_task_params("segment", None).is_err());
    }
}
