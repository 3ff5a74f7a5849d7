//! The model manifest: the JSON document that describes one exported model.
//!
//! It is written by the trainer next to `model.onnx`, stored by the api in its registry and read
//! by the browser before it runs the model. Every consumer checks it with
//! [`ModelManifest::validate`]; the session also checks the ONNX bytes against it.

use serde::{Deserialize, Serialize};

use crate::{Error, ModelFiles, Result};

mod tasks;

/// Version of the manifest layout. Bump it when a field changes meaning.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

pub use crate::kinds::Task;

/// One dimension of a tensor shape: a fixed size or a named symbol (e.g. `"batch"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A dynamic size, named as in the ONNX graph.
    Symbol(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

/// A named graph input or output with its shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Name in the ONNX graph.
    pub name: String,
    /// Shape; the first dimension is the batch symbol.
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// The shape as text, e.g. `[batch, 3, 224, 224]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(Dim::to_string).collect();
        format!("[{}]", dims.join(", "))
    }
}

/// The ONNX file the manifest belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnnxFile {
    /// File name next to the manifest (`model.onnx`).
    pub file: String,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// ONNX opset the graph was written for.
    pub opset: i64,
}

/// A file of the model folder, for integrity (the search gallery's files, the NNEF graphs
/// browsers load, the 8-bit backbone): clients check downloaded bytes against it before they
/// keep them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// File name next to the manifest (one of [`ModelFiles`](crate::ModelFiles)'s names).
    pub file: String,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The search gallery of a ranking model ([`crate::gallery`]): its two files, written after
/// the encoders by embedding every image of the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GalleryFiles {
    /// `gallery.json`: ids, labels, captions, quantisation scale.
    pub index: FileDigest,
    /// `gallery.bin`: the int8 vectors.
    pub vectors: FileDigest,
}

/// The frozen backbone a model's head runs on: one content-addressed graph shared by every
/// model version and task trained on it, downloaded once and cached for good
/// ([`ModelFiles::backbone_url`]). It takes the manifest's `input` (preprocessed images) and
/// gives `output`; the model's own graph (the manifest's `onnx`, the *head*) has exactly one
/// input, named and shaped as that output, and gives the manifest's `output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackboneRef {
    /// The backbone graph with `f32` weights (`backbone.onnx` in a model folder); its sha256
    /// is its address. The reference the 8-bit file is checked against.
    pub onnx: OnnxFile,
    /// The features it gives, `[batch, dim]`: the head's input.
    pub output: TensorSpec,
    /// The same graph decluttered by tract, as NNEF with 8-bit weights (`backbone.q8`): when
    /// present, what browsers download and run (absent in manifests written before it
    /// existed; manifests written before [`ModelManifest::nnef`] name an earlier, ONNX-based
    /// form of the file that browsers no longer read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<FileDigest>,
}

impl BackboneRef {
    /// The backbone file clients run: the 8-bit one when there is one, else the `f32` graph
    /// (name, sha256, size).
    pub fn shipped(&self) -> FileDigest {
        self.int8.clone().unwrap_or_else(|| FileDigest {
            file: self.onnx.file.clone(),
            sha256: self.onnx.sha256.clone(),
            bytes: self.onnx.bytes,
        })
    }
}

/// Memory layout of the image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Batch, channel (R, G, B), height, width.
    #[serde(rename = "NCHW")]
    Nchw,
}

/// How decoded pixels become the model's input tensor (applied by `wasm_infer::preprocess`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Output side in pixels (the tensor is `size × size`).
    pub size: u32,
    /// Inference crop: the centred square whose side is `crop_fraction × min(width, height)`.
    pub crop_fraction: f32,
    /// Resampling filter: always `"triangle"` (antialiased bilinear).
    pub filter: String,
    /// Colour transparent pixels are composited over, RGB 0–255.
    pub background: [u8; 3],
    /// Per-channel mean, subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, divides after the mean.
    pub std: [f32; 3],
    /// Axis order of the input tensor.
    pub layout: Layout,
    /// How the image becomes the square input: the centred crop (classifiers; absent in
    /// manifests written before detection), or the whole image stretched (detection: nothing
    /// is cut off, and a box maps back to the image by scaling each axis).
    #[serde(default, skip_serializing_if = "Fit::is_center_crop")]
    pub fit: Fit,
}

/// How an image becomes the model's square input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// The centred square of side `crop_fraction × min(width, height)`.
    #[default]
    CenterCrop,
    /// The whole image, each axis scaled to the input side (`crop_fraction` unused).
    Stretch,
}

impl Fit {
    /// The default, left out of the JSON.
    pub fn is_center_crop(&self) -> bool {
        *self == Fit::CenterCrop
    }
}

impl Preprocess {
    /// The preprocessing EfficientNet-Lite0 (our shipped backbone) was trained with:
    /// inception-style `(v - 127) / 128` on 0–255 values (checked against ImageNet predictions
    /// and the stem BatchNorm statistics; ImageNet mean/std overdrives it ~2x).
    pub fn efficientnet_lite() -> Self {
        Preprocess {
            size: 224,
            crop_fraction: 0.875,
            filter: "triangle".into(),
            background: [255, 255, 255],
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
            layout: Layout::Nchw,
            fit: Fit::CenterCrop,
        }
    }

    /// Number of `f32` values one image occupies in the input tensor.
    pub fn tensor_len(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }
}

/// Precision and recall of one class on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class label.
    pub label: String,
    /// Test images of this class.
    pub support: u32,
    /// Of the test images predicted as this label, the fraction that had it.
    pub precision: f64,
    /// Of the test images with this label, the fraction predicted as it.
    pub recall: f64,
    /// F1 score.
    pub f1: f64,
}

/// Evaluation of a classifier on the held-out test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Number of test images.
    pub n_test: u32,
    /// Top-1 accuracy.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores.
    pub macro_f1: f64,
    /// Accuracy of always answering the most frequent training class.
    pub majority_baseline: f64,
    /// Per-class precision/recall/F1, in label order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts, in label order.
    pub confusion: Vec<Vec<u32>>,
    /// The figure the gate decided on, and how it was obtained (the test split, or
    /// cross-validation when the test split is small), with its 95 % interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

/// A metric's estimate: its mean over `n` examples and a 95 % paired-bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// How the examples were predicted.
    pub method: crate::evidence::Method,
    /// Examples.
    pub n: u32,
    /// Mean and interval.
    pub value: crate::evidence::Interval,
    /// The kNN baseline on the same examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<crate::evidence::Interval>,
}

/// Recall@K and median rank of one retrieval direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// Share of queries whose match is ranked first.
    pub r1: f64,
    /// … in the top 5.
    pub r5: f64,
    /// … in the top 10.
    pub r10: f64,
    /// Median 1-based rank of the match.
    pub median_rank: f64,
}

/// Retrieval quality on the test split, next to the baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankMetrics {
    /// Test images (each with its captions).
    pub n_images: u32,
    /// Captions of the test images used as queries.
    pub n_texts: u32,
    /// Caption → image.
    pub text_to_image: Recall,
    /// Image → caption.
    pub image_to_text: Recall,
    /// Caption → image by chance (expected values).
    pub random_text_to_image: Recall,
    /// Caption → image by a bag-of-words baseline (captions of the training images nearest in
    /// backbone features, compared word by word with the query).
    pub bow_text_to_image: Recall,
}

/// The text side of a ranking model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextTower {
    /// The text encoder ONNX file.
    pub onnx: OnnxFile,
    /// The text encoder as browsers load it (`text.nnef`, decluttered by tract, planned for
    /// one text); absent in manifests written before browsers loaded NNEF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nnef: Option<FileDigest>,
    /// Word ids input `[batch, max_len]` (int64).
    pub ids: TensorSpec,
    /// Mask input `[batch, max_len]` (float, 1 = word).
    pub mask: TensorSpec,
    /// Embedding output `[batch, dim]`, L2-normalised, in the image embeddings' space.
    pub output: TensorSpec,
    /// How texts become ids.
    pub tokenizer: crate::tokenizer::TokenizerSpec,
}

/// The inputs of a product model's head besides the backbone's features (its first input):
/// a text as word ids and mask, and whether an image is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductInputs {
    /// Word ids `[batch, max_len]` (int64).
    pub ids: TensorSpec,
    /// Mask `[batch, max_len]` (float, 1 = word; all 0 = no text:
    /// [`crate::Tokenizer::encode_optional`]).
    pub mask: TensorSpec,
    /// `[batch, 1]` (float): 1 when the features are an image's, 0 when there is no image
    /// (the features are then ignored).
    pub has_image: TensorSpec,
    /// How texts become ids.
    pub tokenizer: crate::tokenizer::TokenizerSpec,
}

/// The figures of one way of asking a product model (text only, image only, or both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModalityScores {
    /// Items scored.
    pub n: u32,
    /// Top-1 accuracy.
    pub accuracy: f64,
    /// Per-class F1 weighted by each class's share of the items (what the gate compares).
    pub weighted_f1: f64,
    /// Unweighted mean of the per-class F1 of the classes present.
    pub macro_f1: f64,
    /// Per-class precision, recall and F1, in label order.
    pub per_class: Vec<ClassMetrics>,
}

/// A product model on its test split: the same items (those with both a text and an image)
/// asked three ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductMetrics {
    /// Title and text only.
    pub text: ModalityScores,
    /// Image only.
    pub image: ModalityScores,
    /// Both.
    pub both: ModalityScores,
    /// Accuracy of always answering the most frequent training category.
    pub majority_baseline: f64,
}

/// Everything a consumer needs to know about one exported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// Manifest layout version ([`MANIFEST_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Unique id of this model version.
    pub model_id: String,
    /// What the model does.
    pub task: Task,
    /// The model's own graph and its integrity data: the head on [`Self::backbone`]'s
    /// features, or (manifests without a backbone, written before heads were split from it)
    /// the whole graph from the image.
    pub onnx: OnnxFile,
    /// The image input.
    pub input: TensorSpec,
    /// The output (probabilities for `classify`).
    pub output: TensorSpec,
    /// How to turn pixels into the input tensor.
    pub preprocess: Preprocess,
    /// Class labels, in output order (the label map).
    pub labels: Vec<String>,
    /// Test-split evaluation, when the model was evaluated.
    pub metrics: Option<EvalMetrics>,
    /// Content id of the exact set of (image, label) pairs the model was trained on.
    pub dataset_snapshot: String,
    /// The model this one was retrained from, if any.
    pub parent_model_id: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Version of the trainer that produced it.
    pub trainer_version: String,
    /// sha256 of the frozen backbone's weights file the model was trained on: features from
    /// another backbone do not fit its head (absent in manifests written before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_sha256: Option<String>,
    /// The shared backbone the head (`onnx`) runs on; absent in manifests whose `onnx` is the
    /// whole graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneRef>,
    /// The head (`onnx`) as browsers load it: decluttered by tract and written as NNEF,
    /// planned for one image (`head.nnef`, `image_head.nnef`). Absent in manifests written
    /// before browsers loaded NNEF (and in whole-graph ones): those run on the server only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nnef: Option<FileDigest>,
    /// Ranking models: the text encoder (`onnx`/`input`/`output` are then the image encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextTower>,
    /// Ranking models: retrieval quality on the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_metrics: Option<RankMetrics>,
    /// Product models: the head's text and image-presence inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ProductInputs>,
    /// Product models: test figures per modality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_metrics: Option<ProductMetrics>,
    /// Detection models: the head's output layout and how clients turn it into boxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<crate::detection::DetectionSpec>,
    /// Detection models: COCO figures on the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_metrics: Option<crate::detection::DetectionMetrics>,
    /// Ranking models with a gallery: its files' digests (absent in manifests written before
    /// galleries were hashed, and in models exported without a gallery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gallery: Option<GalleryFiles>,
}

impl ModelManifest {
    /// Parse and validate a manifest.
    pub fn from_json(json: &str) -> Result<Self> {
        let manifest: ModelManifest = serde_json::from_str(json)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Pretty JSON, as written to `manifest.json`.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Check internal consistency: schema version, file digests, shapes, labels, normalisation.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Manifest(msg));
        if self.schema_version != MANIFEST_SCHEMA_VERSION {
            return bad(format!(
                "schema version {} is not supported (expected {MANIFEST_SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        if self.model_id.is_empty() {
            return bad("model_id is empty".into());
        }
        check_sha256("onnx.sha256", &self.onnx.sha256)?;
        let p = &self.preprocess;
        if p.size == 0 || p.size > 1024 {
            return bad(format!(
                "preprocess.size {} is out of range 1..=1024",
                p.size
            ));
        }
        if !(p.crop_fraction > 0.0 && p.crop_fraction <= 1.0) {
            return bad(format!(
                "preprocess.crop_fraction {} is not in (0, 1]",
                p.crop_fraction
            ));
        }
        if p.filter != "triangle" {
            return bad(format!("preprocess.filter {:?} is not supported", p.filter));
        }
        if p.std
            .iter()
            .any(|s| s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !s.is_finite())
        {
            return bad("preprocess.std must be positive".into());
        }
        let expected_input = [None, Some(3), Some(p.size as usize), Some(p.size as usize)];
        let input_ok = self.input.shape.len() == 4
            && self
                .input
                .shape
                .iter()
                .zip(expected_input)
                .all(|(d, e)| match (d, e) {
                    (Dim::Symbol(_), None) => true,
                    (Dim::Fixed(n), Some(m)) => *n == m,
                    _ => false,
                });
        if !input_ok {
            return bad(format!(
                "input shape {} must be [batch, 3, {s}, {s}] for preprocess.size {s}",
                self.input.shape_string(),
                s = p.size
            ));
        }
        if let Some(b) = &self.backbone {
            check_sha256("backbone.onnx.sha256", &b.onnx.sha256)?;
            if b.onnx.file != ModelFiles::BACKBONE_ONNX {
                return bad(format!(
                    "backbone.onnx.file {:?} must be {:?}",
                    b.onnx.file,
                    ModelFiles::BACKBONE_ONNX
                ));
            }
            // Detection heads read the feature map, every other head the pooled features.
            let (shape_ok, want) = match (self.task, b.output.shape.as_slice()) {
                (Task::Detect, [Dim::Symbol(_), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)]) => {
                    (*c > 0 && *h > 0 && h == w, "[batch, channels, side, side]")
                }
                (Task::Detect, _) => (false, "[batch, channels, side, side]"),
                (_, [Dim::Symbol(_), Dim::Fixed(n)]) => (*n > 0, "[batch, dim]"),
                _ => (false, "[batch, dim]"),
            };
            if b.output.name.is_empty() || !shape_ok {
                return bad(format!(
                    "backbone output {:?} {} must be named and {want}",
                    b.output.name,
                    b.output.shape_string()
                ));
            }
            if self.onnx.file == b.onnx.file {
                return bad("the head and the backbone are the same file".into());
            }
            if let Some(q) = &b.int8 {
                check_sha256("backbone.int8.sha256", &q.sha256)?;
                if q.file != ModelFiles::BACKBONE_INT8 {
                    return bad(format!(
                        "backbone.int8.file {:?} must be {:?}",
                        q.file,
                        ModelFiles::BACKBONE_INT8
                    ));
                }
            }
        }
        if let Some(n) = &self.nnef {
            check_sha256("nnef.sha256", &n.sha256)?;
            let want = ModelFiles::image_graph_nnef(self.task);
            if n.file != want {
                return bad(format!("nnef.file {:?} must be {want:?}", n.file));
            }
            match &self.backbone {
                None => {
                    return bad(
                        "nnef names a head, but the manifest has no separate backbone".into(),
                    );
                }
                Some(b) if b.int8.is_none() => {
                    return bad(
                        "nnef names a head, but the backbone has no NNEF file (`int8`)".into(),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(n) = self.text.as_ref().and_then(|t| t.nnef.as_ref()) {
            check_sha256("text.nnef.sha256", &n.sha256)?;
            if n.file != ModelFiles::TEXT_NNEF {
                return bad(format!(
                    "text.nnef.file {:?} must be {:?}",
                    n.file,
                    ModelFiles::TEXT_NNEF
                ));
            }
        }
        if self.task != Task::Product && (self.product.is_some() || self.product_metrics.is_some())
        {
            return bad(format!(
                "a {} model has no product inputs or metrics",
                self.task
            ));
        }
        if self.task != Task::Detect
            && (self.detection.is_some() || self.detection_metrics.is_some())
        {
            return bad(format!(
                "a {} model has no detection layout or figures",
                self.task
            ));
        }
        match self.task {
            Task::Classify => self.validate_classifier(),
            Task::Rank => self.validate_ranking(),
            Task::Product => self.validate_product(),
            Task::Detect => self.validate_detector(),
        }
    }
}

/// A digest as the manifest stores it: 64 hex digits.
fn check_sha256(what: &str, sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::Manifest(format!(
            "{what} {sha256:?} is not 64 hex digits"
        )))
    }
}
