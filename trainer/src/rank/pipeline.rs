//! The whole ranking run: captioned splits → vocabulary → frozen features → towers → test
//! metrics next to the baselines → the two ONNX encoders → parity → model folder.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use contract::ModelFiles;
use serde::{Deserialize, Serialize};
use wasm_infer::tokenizer::TokenizerSpec;
use wasm_infer::{
    Encoded, ModelManifest, Preprocess, RankMetrics, Recall, Task, TextEncoder, TextTower,
    Tokenizer,
};

use super::eval::{bow_ranks, evaluate, evaluate_ranks, random_recall, recall_from_ranks};
use super::export::{EMBEDDING_NAME, IDS_NAME, MASK_NAME, export_image_head, export_text_encoder};
use super::fit::{RankConfig, RankEpoch, RankFit, fit};
use super::model::{DualEncoder, Init, Pair};
use crate::backbone::Backbone;
use crate::dataset::{Dataset, Sample, Split};
use crate::run::{
    CacheStats, ExportedHead, FeaturePass, FeatureStore, ModelFolder, Parity, Progress, RunMeta,
    ShippedBackbone, Trained, View, batched, digest, image_manifest, inference_tensor, onnx_file,
};
use crate::{Error, Result};
use contract::evidence::{Evidence, Method, Outcomes, Statistic};

/// Images and captions per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankSplits {
    /// Training images / captions.
    pub train: (usize, usize),
    /// Validation images / captions.
    pub val: (usize, usize),
    /// Test images / captions.
    pub test: (usize, usize),
}

/// candle vs tract on the exported encoders.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankParity {
    /// Images compared.
    pub images: usize,
    /// Largest absolute difference on an image embedding component.
    pub image_max_abs_diff: f32,
    /// Texts compared.
    pub texts: usize,
    /// Largest absolute difference on a text embedding component.
    pub text_max_abs_diff: f32,
}

/// Everything a ranking run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankReport {
    /// The manifest written next to the encoders.
    pub manifest: ModelManifest,
    /// Per-epoch curves.
    pub history: Vec<RankEpoch>,
    /// Epoch whose towers were kept (0: the untrained start).
    pub best_epoch: usize,
    /// Hyper-parameters used.
    pub config: RankConfig,
    /// Images and captions per split.
    pub splits: RankSplits,
    /// candle vs tract on the exported encoders.
    pub parity: RankParity,
    /// Caption → image on the test split before training (ImageNet class names only).
    pub zero_shot_text_to_image: Recall,
    /// How many image features the feature cache had, and how many the backbone computed.
    #[serde(default)]
    pub feature_cache: CacheStats,
    /// Whole run, seconds.
    pub total_secs: f64,
    /// Each test caption's hit@10 for the model and the baselines: what the registry's gate
    /// decides on, per query.
    #[serde(default)]
    pub evidence: Option<contract::evidence::Evidence>,
}

/// The image tower's head file ([`ModelFiles::IMAGE_HEAD_ONNX`]).
pub const IMAGE_FILE: &str = ModelFiles::IMAGE_HEAD_ONNX;
/// The text encoder's file ([`ModelFiles::TEXT_ONNX`]).
pub const TEXT_FILE: &str = ModelFiles::TEXT_ONNX;

/// The captioned images of each split (only they take part in a ranking run).
struct Captioned<'a> {
    train: Vec<&'a Sample>,
    val: Vec<&'a Sample>,
    test: Vec<&'a Sample>,
}

impl<'a> Captioned<'a> {
    /// The captioned images of `dataset`; refused when too few to train and evaluate.
    fn of(dataset: &'a Dataset) -> Result<(Self, RankSplits)> {
        let captioned = |split: Split| -> Vec<&Sample> {
            dataset
                .split(split)
                .filter(|s| !s.captions.is_empty())
                .collect()
        };
        let (train, val, test) = (
            captioned(Split::Train),
            captioned(Split::Val),
            captioned(Split::Test),
        );
        let texts = |v: &[&Sample]| v.iter().map(|s| s.captions.len()).sum::<usize>();
        let splits = RankSplits {
            train: (train.len(), texts(&train)),
            val: (val.len(), texts(&val)),
            test: (test.len(), texts(&test)),
        };
        if train.len() < 8 || val.is_empty() || test.len() < 2 {
            return Err(Error::Dataset(format!(
                "too few captioned images: {} train, {} val, {} test (need ≥ 8, ≥ 1, ≥ 2)",
                train.len(),
                val.len(),
                test.len()
            )));
        }
        Ok((Self { train, val, test }, splits))
    }
}

/// The tokenizer of a run: the training captions' words and the ImageNet class names' words.
fn vocabulary(train: &[&Sample], class_names: &[String], cfg: &RankConfig) -> TokenizerSpec {
    wasm_infer::tokenizer::build(
        train
            .iter()
            .flat_map(|s| s.captions.iter())
            .chain(class_names.iter()),
        cfg.min_count,
        cfg.max_vocab,
        cfg.max_len,
    )
}

/// Every caption of `samples`, encoded, with the row of its image.
fn pairs(samples: &[&Sample], tok: &Tokenizer) -> Vec<Pair> {
    samples
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.captions.iter().map(move |c| (i, c)))
        .map(|(image, c)| Pair {
            image,
            text: tok.encode(c),
        })
        .collect()
}

/// Train, evaluate, export and verify an image-text ranking model; write it to `out_dir`
/// (`backbone.onnx`, `image_head.onnx`, `text.onnx`, `manifest.json`, `metrics.json`, the gallery). Only images with captions
/// take part. Backbone features come from `cache` where it has them.
#[allow(clippy::too_many_arguments)] // the classifier's run's inputs plus the class names
pub fn run(
    dataset: &Dataset,
    backbone: &Backbone,
    cache: Option<&dyn FeatureStore>,
    class_names: &[String],
    cfg: &RankConfig,
    meta: &RunMeta,
    out_dir: &Path,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Trained<RankReport>> {
    cfg.validate()?;
    let started = Instant::now();
    let prep = Preprocess::efficientnet_lite();
    let (Captioned { train, val, test }, splits) = Captioned::of(dataset)?;
    let spec = vocabulary(&train, class_names, cfg);
    let tok = Tokenizer::new(spec.clone())?;

    // 1. Frozen backbone features (clean view) of every captioned image.
    //    (The classifier's validation and test views are the same entries of the cache.)
    //    The gallery adds the images without captions (step 6): every image once in all.
    let mut pass = FeaturePass::new(backbone, cache, &prep, dataset.samples.len());
    let train_x = pass.features(&train, View::Clean, progress)?;
    let val_x = pass.features(&val, View::Clean, progress)?;
    let test_x = pass.features(&test, View::Clean, progress)?;
    let (train_p, val_p, test_p) = (pairs(&train, &tok), pairs(&val, &tok), pairs(&test, &tok));

    // 2. Towers.
    let mut on_epoch = |e: &RankEpoch| {
        progress(Progress::Batch {
            epoch: e.epoch,
            epochs: cfg.epochs,
            batch: 1,
            batches: 1,
            loss: e.train_loss,
        })
    };
    let init = Init::new(backbone, class_names, &spec.vocab)?;
    let fitted = fit(
        &train_x,
        &train_p,
        &val_x,
        &val_p,
        &init,
        cfg,
        &mut on_epoch,
    )?;

    // 3. Test metrics next to the baselines.
    let (metrics, zero_shot, evidence) =
        test_metrics(&fitted, (&train_x, &train), (&test_x, &test, &test_p))?;

    // 4. Export + manifest.
    if !progress(Progress::Export) {
        return Err(Error::Cancelled);
    }
    let id = meta.identify("rank", dataset, cfg);
    let shipped = ShippedBackbone::of(backbone)?;
    let image = ExportedHead::new(export_image_head(backbone, &fitted.model, &id.model_id)?)?;
    let text_onnx = export_text_encoder(&fitted.model, cfg.max_len, &id.model_id)?;
    let text_nnef = wasm_infer::nnef::export_text(&text_onnx, cfg.max_len)?;
    let dim = fitted.model.dim()?;
    let embedding = batched(EMBEDDING_NAME, &[dim]);
    let mut manifest = ModelManifest {
        text: Some(text_tower((&text_onnx, &text_nnef), spec, dim)),
        rank_metrics: Some(metrics),
        ..image_manifest(
            id,
            &shipped,
            Task::Rank,
            &image,
            &prep,
            embedding,
            dataset.labels.clone(),
        )
    };
    manifest.validate()?;

    // 5. Parity: candle vs tract on the exported bytes, test images and captions.
    let parity = check_parity(
        &fitted.model,
        &manifest,
        (&shipped, &image),
        (&text_onnx, &text_nnef),
        &test,
        &test_x,
        &test_p,
    )?;

    // 6. The gallery: every image of the dataset through the image tower, from its backbone
    //    features: in hand for the captioned images, computed (or cached) for the others.
    let uncaptioned: Vec<&Sample> = dataset
        .samples
        .iter()
        .filter(|s| s.captions.is_empty())
        .collect();
    let mut parts = vec![&train_x, &val_x, &test_x];
    let rest_x;
    if !uncaptioned.is_empty() {
        rest_x = pass.features(&uncaptioned, View::Clean, progress)?;
        parts.push(&rest_x);
    }
    let row: HashMap<&str, u32> = train
        .iter()
        .chain(&val)
        .chain(&test)
        .chain(&uncaptioned)
        .enumerate()
        .map(|(i, s)| (s.sha256.as_str(), i as u32))
        .collect();
    let order: Vec<u32> = dataset
        .samples
        .iter()
        .map(|s| row[s.sha256.as_str()])
        .collect();
    let all_x = Tensor::cat(&parts, 0)?.index_select(&Tensor::new(order, &Device::Cpu)?, 0)?;
    let embeddings = fitted.model.embed_features(&all_x)?.to_vec2::<f32>()?;
    let (gallery, vectors, listed) =
        super::gallery::build(&manifest.model_id, dataset, &embeddings)?;
    manifest.gallery = Some(listed);
    manifest.validate()?;
    let report = RankReport {
        manifest,
        history: fitted.history,
        best_epoch: fitted.best_epoch,
        config: cfg.clone(),
        splits,
        parity,
        zero_shot_text_to_image: zero_shot,
        feature_cache: pass.stats(),
        total_secs: started.elapsed().as_secs_f64(),
        evidence: Some(evidence),
    };
    let gallery = (serde_json::to_vec(&gallery)?, vectors);
    let files = write_dir(
        out_dir,
        &shipped,
        (image, text_onnx, text_nnef),
        gallery,
        &report,
    )?;
    Ok(Trained { report, files })
}

/// The text tower's manifest entry: the encoder file, its `ids`/`mask` inputs of the
/// tokenizer's length, its `embedding [batch, dim]` output and the tokenizer.
fn text_tower((onnx, nnef): (&[u8], &[u8]), spec: TokenizerSpec, dim: usize) -> TextTower {
    TextTower {
        onnx: onnx_file(ModelFiles::TEXT_ONNX, onnx),
        nnef: Some(digest(ModelFiles::TEXT_NNEF, nnef)),
        ids: batched(IDS_NAME, &[spec.max_len]),
        mask: batched(MASK_NAME, &[spec.max_len]),
        output: batched(EMBEDDING_NAME, &[dim]),
        tokenizer: spec,
    }
}

/// Recall of the fitted model on the test split in both directions, chance, the bag-of-words
/// baseline (from the training images' features and captions), the untrained start's
/// caption → image recall, and the gate's per-query evidence.
fn test_metrics(
    fitted: &RankFit,
    (train_x, train): (&Tensor, &[&Sample]),
    (test_x, test, test_p): (&Tensor, &[&Sample], &[Pair]),
) -> Result<(RankMetrics, Recall, Evidence)> {
    let (t2i_ranks, i2t) = evaluate_ranks(&fitted.model, test_x, test_p)?;
    let t2i = recall_from_ranks(&t2i_ranks);
    let train_captions: Vec<Vec<String>> = train.iter().map(|s| s.captions.clone()).collect();
    let test_texts: Vec<(usize, String)> = test
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.captions.iter().map(move |c| (i, c.clone())))
        .collect();
    let (zero_shot, _) = evaluate(&fitted.start, test_x, test_p)?;
    let bow_r = bow_ranks(train_x, &train_captions, test_x, &test_texts, 5)?;
    let bow = recall_from_ranks(&bow_r);
    let chance = random_recall(test.len());
    let items = test
        .iter()
        .flat_map(|s| (0..s.captions.len()).map(move |i| format!("{}#{i}", s.sha256)))
        .collect();
    let evidence = Evidence {
        boxes: None,
        metric: "text_to_image_r10".into(),
        statistic: Statistic::Mean,
        method: Method::TestSplit,
        items,
        truth: None,
        candidate: Outcomes::from_ranks("candidate", t2i_ranks, 10.0),
        baselines: vec![
            Outcomes::from_ranks("bag of words", bow_r, 10.0),
            Outcomes {
                hits: None,
                name: "chance".into(),
                values: vec![chance.r10; test_p.len()],
                predicted: None,
                ranks: None,
                trivial: true,
            },
        ],
        champion: None,
    };
    let metrics = RankMetrics {
        n_images: test.len() as u32,
        n_texts: test_p.len() as u32,
        text_to_image: t2i,
        image_to_text: i2t,
        random_text_to_image: chance,
        bow_text_to_image: bow,
    };
    Ok((metrics, zero_shot, evidence))
}

/// Embeddings of the test images (up to 32) and captions (up to 64) by candle and by tract
/// on the exported bytes (backbone + image head, the text encoder as ONNX and as the NNEF
/// browsers load), and the image head as browsers load it (NNEF, on the 8-bit backbone)
/// against the ONNX head on that backbone; fails beyond [`crate::run::PARITY_TOLERANCE`].
pub fn check_parity(
    model: &DualEncoder,
    manifest: &ModelManifest,
    (backbone, exported): (&ShippedBackbone, &ExportedHead),
    (text_onnx, text_nnef): (&[u8], &[u8]),
    images: &[&Sample],
    features: &Tensor,
    texts: &[Pair],
) -> Result<RankParity> {
    let take = images.len().min(32);
    let candle_img = model
        .embed_features(&features.narrow(0, 0, take)?)?
        .to_vec2::<f32>()?;
    let session = backbone.session(&exported.onnx, manifest)?;
    let browser_images = backbone.shipped_session(&exported.nnef, manifest)?;
    let shipped_onnx = wasm_infer::Session::composed(
        browser_images
            .backbone()
            .cloned()
            .ok_or_else(|| Error::Parity("the browser's image session has no backbone".into()))?,
        &exported.onnx,
        manifest.clone(),
    )?;
    let mut image = Parity::default();
    let mut browser = Parity::default();
    for (s, c) in images.iter().zip(&candle_img) {
        let x = inference_tensor(*s, &manifest.preprocess)?;
        image.compare("image embeddings", c, &session.run(&x)?.remove(0))?;
        browser.compare(
            "image embeddings (NNEF head, 8-bit backbone)",
            &shipped_onnx.run(&x)?.remove(0),
            &browser_images.run(&x)?.remove(0),
        )?;
    }
    let take_t = texts.len().min(64);
    let refs: Vec<&Encoded> = texts[..take_t].iter().map(|p| &p.text).collect();
    let candle_txt = model.embed_texts(&refs)?.to_vec2::<f32>()?;
    let encoder = TextEncoder::new(text_onnx, manifest)?;
    let browser = TextEncoder::from_nnef(text_nnef, manifest)?;
    let mut text = Parity::default();
    for (e, c) in refs.iter().zip(&candle_txt) {
        text.compare("text embeddings", c, &encoder.embed_encoded(e)?)?;
        text.compare("text embeddings (NNEF)", c, &browser.embed_encoded(e)?)?;
    }
    Ok(RankParity {
        images: take,
        image_max_abs_diff: image.max_abs_diff,
        texts: take_t,
        text_max_abs_diff: text.max_abs_diff,
    })
}

/// Write the model folder atomically ([`crate::run::replace_dir`]): the backbone (both forms), the image
/// head, the text encoder, the gallery (index, vectors), the manifest and the report as
/// `metrics.json`.
pub fn write_dir(
    out_dir: &Path,
    backbone: &ShippedBackbone,
    (image, text_onnx, text_nnef): (ExportedHead, Vec<u8>, Vec<u8>),
    (gallery_index, gallery_vectors): (Vec<u8>, Vec<u8>),
    report: &RankReport,
) -> Result<ModelFolder> {
    ModelFolder::new()
        .with(ModelFiles::BACKBONE_ONNX, backbone.bytes.clone())
        .with(ModelFiles::BACKBONE_INT8, backbone.int8.clone())
        .with(ModelFiles::IMAGE_HEAD_ONNX, image.onnx)
        .with(ModelFiles::IMAGE_HEAD_NNEF, image.nnef)
        .with(ModelFiles::TEXT_ONNX, text_onnx)
        .with(ModelFiles::TEXT_NNEF, text_nnef)
        .with(ModelFiles::GALLERY_JSON, gallery_index)
        .with(ModelFiles::GALLERY_BIN, gallery_vectors)
        .with(ModelFiles::MANIFEST, report.manifest.to_json()?)
        .with(ModelFiles::METRICS, serde_json::to_string_pretty(report)?)
        .write(out_dir, |_| Ok(vec![]))
}
