//! Object detection as a training task: the approved images of a detection dataset with their
//! boxes become a [`trainer::detect::DetectSet`]'s items (split by sha256 like every set), the
//! trainer's detection pipeline trains, scores and exports the head, and the champion is
//! scored on the run's own test feature maps when it reads the same backbone and labels.

use std::collections::{BTreeSet, HashMap};

use contract::Task;
use contract::api::ImageBox;
use trainer::backbone::Backbone;
use trainer::dataset::{Dataset, Split};
use trainer::detect::fit::DetectConfig;
use trainer::detect::pipeline::Splits;
use trainer::detect::{BoxLabel, DetectItem, Rect};
use trainer::run::Progress;
use wasm_infer::session::Session;

use super::task::{Job, Outputs, TrainTask};
use crate::registry;
use crate::storage::Storage;
use crate::{Error, Result};

/// Object detection: a head on the backbone's feature map, gated on test mAP@0.5.
pub struct Detect;

/// A detection champion, loaded to be scored on a candidate's test feature maps.
pub struct DetectChampion {
    id: String,
    session: Session,
}

/// The labels the boxes use (sorted) and one item per image of `dataset` with its boxes
/// (`boxes`: by image id, the sample's `source`). An image without boxes is left out.
pub fn items_of(
    dataset: &Dataset,
    boxes: &HashMap<String, Vec<ImageBox>>,
) -> Result<(Vec<String>, Vec<DetectItem>)> {
    let labels: Vec<String> = dataset
        .samples
        .iter()
        .filter_map(|s| boxes.get(&s.source))
        .flatten()
        .map(|b| b.label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut items = Vec::with_capacity(dataset.samples.len());
    for s in &dataset.samples {
        let Some(bs) = boxes.get(&s.source).filter(|b| !b.is_empty()) else {
            tracing::warn!(image = %s.source, "an approved detection image has no boxes: left out");
            continue;
        };
        let boxes = bs
            .iter()
            .map(|b| {
                let [x, y, w, h] = b.bbox;
                let label = labels.binary_search(&b.label).map_err(|_| {
                    Error::Internal(format!("label {:?} vanished from the snapshot", b.label))
                })?;
                Ok(BoxLabel {
                    label,
                    rect: Rect { x, y, w, h },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        items.push(DetectItem {
            source: s.source.clone(),
            sha256: s.sha256.clone(),
            split: s.split,
            width: s.width,
            height: s.height,
            boxes,
            bytes: s.bytes().clone(),
        });
    }
    Ok((labels, items))
}

impl TrainTask for Detect {
    const TASK: Task = Task::Detect;
    const PARAMS: &'static str = "detection";
    const CAPTIONS: bool = false;
    const BOXES: bool = true;
    type Config = DetectConfig;
    type Prepared = Option<DetectChampion>;

    fn validate(config: &DetectConfig) -> Result<()> {
        Ok(config.validate()?)
    }

    async fn prepare(
        storage: &Storage,
        champion: Option<&str>,
        backbone: &Backbone,
    ) -> Self::Prepared {
        let id = champion?;
        let session = registry::load_session(storage, id)
            .await
            .inspect_err(|e| tracing::warn!(champion = %id, error = %e, "could not load the detection champion to re-score it"))
            .ok()?;
        // Its head reads the run's feature maps only if it was trained on this backbone.
        (session.manifest().backbone_sha256.as_deref() == Some(backbone.weights_sha256.as_str()))
            .then(|| DetectChampion {
                id: id.to_string(),
                session,
            })
    }

    fn train(
        job: Job<DetectConfig>,
        champion: Self::Prepared,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Outputs> {
        let (labels, items) = items_of(&job.dataset, &job.boxes)?;
        let of = |split: Split| {
            items
                .iter()
                .filter(|i| i.split == split)
                .collect::<Vec<_>>()
        };
        let (train, val, test) = (of(Split::Train), of(Split::Val), of(Split::Test));
        if train.is_empty() || val.is_empty() {
            return Err(Error::Invalid(format!(
                "a detector needs approved images in every split (train {}, validation {}, \
                 test {}; images fall into them by their content's hash, 80/10/10): approve more \
                 images",
                train.len(),
                val.len(),
                test.len()
            )));
        }
        let splits = Splits {
            train: &train,
            val: &val,
            test: &test,
        };
        let mut run = trainer::detect::pipeline::run(
            splits,
            &labels,
            &job.backbone,
            job.features.as_deref(),
            &job.config,
            &job.meta,
            &job.dir,
            progress,
        )?;
        // The champion's head on the very same test feature maps, when its labels agree.
        if let (Some(c), Some(evidence)) = (champion, run.report.evidence.as_mut()) {
            let manifest = c.session.manifest();
            match manifest.head_shape() {
                Some(shape) if manifest.labels == labels => {
                    match trainer::detect::evidence::champion_on_maps(
                        &run.test_maps,
                        &test,
                        shape,
                        |map| Ok(c.session.run_features(map)?),
                    ) {
                        Ok(outcomes) => {
                            evidence.champion = Some(trainer::detect::evidence::champion(
                                &c.id,
                                "its head on the same test feature maps",
                                outcomes,
                            ));
                            run.files = run.files.with(
                                contract::ModelFiles::METRICS,
                                serde_json::to_string_pretty(&run.report)?,
                            );
                        }
                        Err(e) => {
                            tracing::warn!(champion = %c.id, error = %e, "re-scoring the detection champion failed")
                        }
                    }
                }
                _ => {
                    tracing::info!(champion = %c.id, "the champion's labels differ: compared by its recorded mAP")
                }
            }
        }
        Ok(Outputs {
            feature_cache: run.report.feature_cache,
            files: run.files,
        })
    }
}
