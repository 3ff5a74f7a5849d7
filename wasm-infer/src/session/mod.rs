//! The tract inference session: the graphs the trainer exported, run natively (api, trainer
//! parity checks: the ONNX files) or in the browser (wasm32: the same graphs as NNEF,
//! [`crate::nnef`]).
//!
//! A model is the shared frozen [`Backbone`] (image → features, one file per backbone,
//! loaded once and shared by every session on it) composed with the version's small head
//! (features → output). Manifests written before heads were split describe one whole graph;
//! those still load natively with [`Session::new`].

use sha2::{Digest, Sha256};
use tract_nnef::prelude::*;

use crate::manifest::{BackboneRef, ModelManifest, Task};
use crate::preprocess::{Pixels, image_to_tensor};
use crate::tokenizer::{Encoded, Tokenizer};
use crate::{Error, Result};

pub(crate) type Runnable = Arc<TypedRunnableModel>;

mod detect;
mod plan;

#[cfg(not(target_arch = "wasm32"))]
use plan::plan_for;
use plan::{check_text_inputs, one_of, plan_typed, run_one};

pub use contract::api::Prediction;

/// The frozen backbone, planned for one image at a time: shared (behind an `Arc`) by the
/// sessions of every model and task on it, so it is downloaded, parsed and optimised once.
/// It remembers the features of the last image it ran, so two heads asking about the same
/// image (classification and search) cost one forward pass.
pub struct Backbone {
    spec: BackboneRef,
    size: usize,
    plan: Runnable,
    last: std::sync::Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl std::fmt::Debug for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backbone")
            .field("sha256", &self.spec.onnx.sha256)
            .finish()
    }
}

impl Backbone {
    /// Load the backbone file a manifest ships (`manifest.backbone.shipped()`: the 8-bit NNEF
    /// file when it has one, expanded to `f32`; natively, else the `f32` ONNX graph),
    /// checking the bytes' size and sha256 and the graph's input (the manifest's image input)
    /// and output against it.
    pub fn new(bytes: &[u8], manifest: &ModelManifest) -> Result<Self> {
        Self::load(bytes, manifest, true)
    }

    /// [`Backbone::new`] for bytes whose sha256 the caller has already checked against the
    /// manifest: the browsers' worker does, with WebCrypto, before it caches or uses any model
    /// file, and hashing the 3.6 MB again in wasm took about 33 ms, 15 % of building the
    /// session. The size and the graph's shapes are still checked.
    pub fn prechecked(bytes: &[u8], manifest: &ModelManifest) -> Result<Self> {
        Self::load(bytes, manifest, false)
    }

    fn load(bytes: &[u8], manifest: &ModelManifest, hash: bool) -> Result<Self> {
        let spec = Self::spec_of(manifest)?;
        let shipped = spec.shipped();
        if hash {
            verify_digest(bytes, &shipped.file, &shipped.sha256, shipped.bytes)?;
        } else {
            verify_size(bytes, &shipped.file, shipped.bytes)?;
        }
        if spec.int8.is_some() {
            if manifest.nnef.is_none() {
                return Err(Error::manifest(format!(
                    "model {} predates NNEF: its backbone.q8 is in the earlier ONNX-based form",
                    manifest.model_id
                )));
            }
            let model = crate::quant::decode(bytes)?;
            return Self::build(model, spec, manifest);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Self::full(bytes, manifest)
        }
        #[cfg(target_arch = "wasm32")]
        Err(Error::manifest(format!(
            "model {} ships no NNEF backbone",
            manifest.model_id
        )))
    }

    /// Load the backbone's `f32` ONNX graph (`manifest.backbone.onnx`): the reference the
    /// 8-bit file is measured against, and what candle's parity is checked on.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn full(onnx: &[u8], manifest: &ModelManifest) -> Result<Self> {
        let spec = Self::spec_of(manifest)?;
        verify_file(onnx, &spec.onnx)?;
        let size = manifest.preprocess.size as usize;
        let plan = plan_for(
            onnx,
            (&manifest.input, &spec.output),
            f32::fact([1, 3, size, size]),
        )?;
        Ok(Self::with_plan(plan, spec, manifest))
    }

    fn spec_of(manifest: &ModelManifest) -> Result<BackboneRef> {
        manifest.validate()?;
        manifest.backbone.clone().ok_or_else(|| {
            Error::manifest(format!(
                "model {} has no separate backbone: its graph is whole",
                manifest.model_id
            ))
        })
    }

    fn build(model: TypedModel, spec: BackboneRef, manifest: &ModelManifest) -> Result<Self> {
        let plan = plan_typed(model, (&manifest.input, &spec.output))?;
        Ok(Self::with_plan(plan, spec, manifest))
    }

    fn with_plan(plan: Runnable, spec: BackboneRef, manifest: &ModelManifest) -> Self {
        Backbone {
            spec,
            size: manifest.preprocess.size as usize,
            plan,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The sha256 of the backbone's f32 graph (`backbone.onnx`): its identity, whichever of
    /// its two files it was loaded from.
    pub fn sha256(&self) -> &str {
        &self.spec.onnx.sha256
    }

    /// The optimised tract plan (one image per run).
    pub fn plan(&self) -> &Arc<TypedRunnableModel> {
        &self.plan
    }

    /// Features of one preprocessed image (`3 × size × size` values).
    pub fn features(&self, image: &[f32]) -> Result<Vec<f32>> {
        if let Ok(last) = self.last.lock()
            && let Some((input, features)) = last.as_ref()
            && input.as_slice() == image
        {
            return Ok(features.clone());
        }
        let size = self.size;
        let input = Tensor::from_shape(&[1, 3, size, size], image).map_err(Error::engine)?;
        let features = run_one(&self.plan, tvec!(input))?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((image.to_vec(), features.clone()));
        }
        Ok(features)
    }
}

/// Where a session's output comes from.
enum Graph {
    /// One graph from the image (manifests without a backbone; native only).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Whole(Runnable),
    /// The shared backbone, then this version's head.
    Composed {
        backbone: Arc<Backbone>,
        head: Runnable,
    },
}

/// A loaded, validated, optimised model ready to run batches.
pub struct Session {
    manifest: ModelManifest,
    graph: Graph,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("model_id", &self.manifest.model_id)
            .finish()
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Session {
    /// Load a whole graph `onnx` (image → output) described by a manifest without a
    /// backbone.
    ///
    /// Refuses bytes whose size or sha256 differ from the manifest, and graphs whose input or
    /// output names and shapes differ from it: a browser must never run a model with the wrong
    /// preprocessing or label map.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(onnx: &[u8], manifest: ModelManifest) -> Result<Self> {
        manifest.validate()?;
        if manifest.backbone.is_some() {
            return Err(Error::manifest(format!(
                "model {} is a head on backbone {}: load it with its backbone",
                manifest.model_id,
                manifest
                    .backbone
                    .as_ref()
                    .map_or("", |b| b.onnx.sha256.as_str())
            )));
        }
        verify_file(onnx, &manifest.onnx)?;
        // Plan for one image at a time: with the batch dimension fixed, tract picks packed
        // convolution kernels it cannot use for a symbolic batch (5x faster here, 134 → 26 ms
        // per image natively). Batches run image by image.
        let size = manifest.preprocess.size as usize;
        let plan = plan_for(
            onnx,
            (&manifest.input, &manifest.output),
            f32::fact([1, 3, size, size]),
        )?;
        Ok(Session {
            manifest,
            graph: Graph::Whole(plan),
        })
    }

    /// Load the ONNX head `head` (the manifest's `onnx`) of a manifest with a backbone, on
    /// `backbone` (loaded once, shared): the backbone must be the one the manifest names, the
    /// head's bytes must match the manifest, and its one input must be the backbone's output.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn composed(backbone: Arc<Backbone>, head: &[u8], manifest: ModelManifest) -> Result<Self> {
        let spec = Self::check_backbone(&backbone, &manifest)?;
        verify_file(head, &manifest.onnx)?;
        let one = one_of(&spec.output)?;
        let head = plan_for(head, (&spec.output, &manifest.output), f32::fact(one))?;
        Ok(Session {
            manifest,
            graph: Graph::Composed { backbone, head },
        })
    }

    /// [`Session::composed`] on the head as browsers load it: the NNEF file the manifest's
    /// `nnef` names, checked the same way.
    pub fn composed_nnef(
        backbone: Arc<Backbone>,
        head: &[u8],
        manifest: ModelManifest,
    ) -> Result<Self> {
        let spec = Self::check_backbone(&backbone, &manifest)?;
        let file = manifest.nnef.as_ref().ok_or_else(|| {
            Error::manifest(format!(
                "model {} has no NNEF head (exported before browsers loaded NNEF)",
                manifest.model_id
            ))
        })?;
        verify_digest(head, &file.file, &file.sha256, file.bytes)?;
        let head = plan_typed(crate::nnef::load(head)?, (&spec.output, &manifest.output))?;
        Ok(Session {
            manifest,
            graph: Graph::Composed { backbone, head },
        })
    }

    /// The manifest's backbone, when `backbone` is the one it names.
    pub(crate) fn check_backbone(
        backbone: &Backbone,
        manifest: &ModelManifest,
    ) -> Result<BackboneRef> {
        manifest.validate()?;
        let spec = manifest.backbone.as_ref().ok_or_else(|| {
            Error::manifest(format!(
                "model {} has no separate backbone: load its whole graph",
                manifest.model_id
            ))
        })?;
        if spec != &backbone.spec {
            return Err(Error::Integrity(format!(
                "model {} runs on backbone {}, not {}",
                manifest.model_id,
                spec.onnx.sha256,
                backbone.sha256()
            )));
        }
        Ok(spec.clone())
    }

    /// The manifest this session was created with.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The optimised tract plans (one image per run), for profiling them node by node: the
    /// backbone's then the head's, or the whole graph's.
    pub fn plans(&self) -> Vec<&Arc<TypedRunnableModel>> {
        match &self.graph {
            Graph::Whole(plan) => vec![plan],
            Graph::Composed { backbone, head } => vec![&backbone.plan, head],
        }
    }

    /// The shared backbone, for sessions composed on one.
    pub fn backbone(&self) -> Option<&Arc<Backbone>> {
        match &self.graph {
            Graph::Whole(_) => None,
            Graph::Composed { backbone, .. } => Some(backbone),
        }
    }

    /// The output of one preprocessed image.
    fn run_image(&self, image: &[f32]) -> Result<Vec<f32>> {
        match &self.graph {
            Graph::Whole(plan) => {
                let size = self.manifest.preprocess.size as usize;
                let input =
                    Tensor::from_shape(&[1, 3, size, size], image).map_err(Error::engine)?;
                run_one(plan, tvec!(input))
            }
            Graph::Composed { backbone, head } => {
                let features = backbone.features(image)?;
                let shape = one_of(&backbone.spec.output)?;
                let input = Tensor::from_shape(&shape, &features).map_err(Error::engine)?;
                run_one(head, tvec!(input))
            }
        }
    }

    /// The head alone on one image's backbone output (`features`, as
    /// [`Backbone::features`] gives it): for callers that keep features (a page asking two
    /// questions of one photo) and for checking a head against its trainer on the same input.
    pub fn run_features(&self, features: &[f32]) -> Result<Vec<f32>> {
        let Graph::Composed { backbone, head } = &self.graph else {
            return Err(Error::manifest(format!(
                "model {} is one whole graph: it has no head to run alone",
                self.manifest.model_id
            )));
        };
        let shape = one_of(&backbone.spec.output)?;
        let input = Tensor::from_shape(&shape, features).map_err(Error::engine)?;
        run_one(head, tvec!(input))
    }

    /// Run a batch of preprocessed images (`n × 3 × size × size` values, as produced by
    /// [`crate::preprocess::image_to_tensor`]); returns one output row per image.
    pub fn run(&self, batch: &[f32]) -> Result<Vec<Vec<f32>>> {
        let per_image = self.manifest.preprocess.tensor_len();
        if batch.is_empty() || !batch.len().is_multiple_of(per_image) {
            return Err(Error::Image(format!(
                "batch of {} values is not a whole number of {per_image}-value images",
                batch.len()
            )));
        }
        batch
            .chunks(per_image)
            .map(|image| self.run_image(image))
            .collect()
    }

    /// Unit embedding of an image (ranking models).
    pub fn embed(&self, pixels: &Pixels<'_>) -> Result<Vec<f32>> {
        if self.manifest.task != Task::Rank {
            return Err(Error::manifest(format!(
                "model {} is a {} model, not a ranking model",
                self.manifest.model_id,
                self.manifest.task.as_str()
            )));
        }
        let input = image_to_tensor(pixels, &self.manifest.preprocess)?;
        Ok(self.run(&input)?.remove(0))
    }

    /// Classify one decoded image: preprocess, run, return the `k` most probable labels.
    pub fn classify(&self, pixels: &Pixels<'_>, k: usize) -> Result<Vec<Prediction>> {
        if self.manifest.task != Task::Classify {
            return Err(Error::manifest(format!(
                "model {} is a {} model, not a classifier",
                self.manifest.model_id,
                self.manifest.task.as_str()
            )));
        }
        let input = image_to_tensor(pixels, &self.manifest.preprocess)?;
        let probs = self.run(&input)?.remove(0);
        Ok(top_k(&probs, &self.manifest.labels, k))
    }
}

/// Check a model file against its manifest entry (size, then sha256).
pub fn verify_file(onnx: &[u8], file: &crate::OnnxFile) -> Result<()> {
    verify_digest(onnx, &file.file, &file.sha256, file.bytes)
}

/// Check `bytes` of the file `name` against its recorded sha256 and size.
pub fn verify_digest(bytes: &[u8], name: &str, sha256: &str, size: u64) -> Result<()> {
    verify_size(bytes, name, size)?;
    let digest = sha256_hex(bytes);
    if !digest.eq_ignore_ascii_case(sha256) {
        return Err(Error::Integrity(format!(
            "{name}: sha256 is {digest}, manifest says {sha256}"
        )));
    }
    Ok(())
}

/// Check the size of `bytes` of the file `name` against its recorded size.
fn verify_size(bytes: &[u8], name: &str, size: u64) -> Result<()> {
    if bytes.len() as u64 != size {
        return Err(Error::Integrity(format!(
            "{name} is {} bytes, manifest says {size}",
            bytes.len()
        )));
    }
    Ok(())
}

/// The text side of a ranking model: the manifest's tokenizer and the text encoder, planned
/// for one text at a time.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    plan: Runnable,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("vocab", &self.tokenizer.spec().vocab.len())
            .finish()
    }
}

impl TextEncoder {
    fn tower(manifest: &ModelManifest) -> Result<&crate::TextTower> {
        manifest.validate()?;
        manifest.text.as_ref().ok_or_else(|| {
            Error::manifest(format!(
                "model {} has no text encoder (task {})",
                manifest.model_id,
                manifest.task.as_str()
            ))
        })
    }

    /// Load the text encoder as browsers do (`manifest.text.nnef`), checking its size and
    /// sha256, its input names against the manifest.
    pub fn from_nnef(bytes: &[u8], manifest: &ModelManifest) -> Result<Self> {
        let text = Self::tower(manifest)?;
        let file = text.nnef.as_ref().ok_or_else(|| {
            Error::manifest(format!(
                "model {} has no NNEF text encoder (exported before browsers loaded NNEF)",
                manifest.model_id
            ))
        })?;
        verify_digest(bytes, &file.file, &file.sha256, file.bytes)?;
        let tokenizer = Tokenizer::new(text.tokenizer.clone())?;
        let model = crate::nnef::load(bytes)?;
        check_text_inputs(model.inputs.iter().map(|o| &model.node(o.node).name), text)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(Error::engine)?;
        Ok(Self { tokenizer, plan })
    }

    /// Load the text encoder (`manifest.text.onnx`), checking its size and sha256, its
    /// input and output names against the manifest.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(onnx: &[u8], manifest: &ModelManifest) -> Result<Self> {
        use tract_onnx::prelude::{Framework as _, InferenceModelExt as _};
        let text = Self::tower(manifest)?;
        verify_file(onnx, &text.onnx)?;
        let tokenizer = Tokenizer::new(text.tokenizer.clone())?;
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .map_err(Error::engine)?;
        let inputs = model.input_outlets().map_err(Error::engine)?;
        check_text_inputs(inputs.iter().map(|o| &model.node(o.node).name), text)?;
        let len = text.tokenizer.max_len;
        let plan = model
            .with_input_fact(0, i64::fact([1, len]).into())
            .and_then(|m| m.with_input_fact(1, f32::fact([1, len]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(Error::engine)?;
        Ok(Self { tokenizer, plan })
    }

    /// The tokenizer in use.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Unit embedding of a text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        self.embed_encoded(&self.tokenizer.encode(text))
    }

    /// Unit embedding of an already encoded text.
    pub fn embed_encoded(&self, e: &Encoded) -> Result<Vec<f32>> {
        let len = e.ids.len();
        let ids = Tensor::from_shape(&[1, len], &e.ids).map_err(Error::engine)?;
        let mask = Tensor::from_shape(&[1, len], &e.mask).map_err(Error::engine)?;
        let out = self
            .plan
            .run(tvec!(ids.into(), mask.into()))
            .map_err(Error::engine)?;
        let view = out
            .first()
            .ok_or_else(|| Error::Engine("text encoder produced no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(Error::engine)?;
        Ok(view.iter().copied().collect())
    }
}

/// Run `f` with `threads` intra-op threads, or on this thread alone when `threads` is 0 or 1.
/// `f` runs on the calling thread, with a team of `threads - 1` helpers that stay awake until
/// it returns ([`crate::par`]): wasm-infer's kernels (the 1×1 and depthwise convolutions, all
/// but a fraction of a percent of a backbone pass) split each op over them without waking a
/// sleeping thread. tract's own ops (the heads' and the text encoder's products) spread over
/// a rayon pool of `threads` (one per count, built on first use and kept). A server gives a
/// request several threads when it is the only one running, and one otherwise. In wasm (no
/// threads here) `f` just runs.
#[cfg(not(target_arch = "wasm32"))]
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    use tract_onnx::tract_core::tract_linalg::multithread::{Executor, multithread_tract_scope};
    static POOLS: std::sync::Mutex<Vec<(usize, Executor)>> = std::sync::Mutex::new(Vec::new());
    if threads <= 1 {
        return multithread_tract_scope(Executor::SingleThread, f);
    }
    let pool = {
        let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
        match pools.iter().find(|(n, _)| *n == threads) {
            Some((_, pool)) => pool.clone(),
            None => {
                if pools.is_empty() {
                    thread_thresholds();
                }
                let pool = Executor::multithread_with_name(threads, "edgeml-infer");
                pools.push((threads, pool.clone()));
                pool
            }
        }
    };
    crate::par::lend(threads, || multithread_tract_scope(pool, f))
}

/// [`with_threads`] in wasm: `f` runs on this thread (a threaded browser module spreads each
/// plan run over its pool itself: [`browser_threads`]).
#[cfg(target_arch = "wasm32")]
pub fn with_threads<R: Send>(_threads: usize, f: impl FnOnce() -> R + Send) -> R {
    f()
}

/// Where tract's ops start to split their work over threads. tract's defaults thread a matrix
/// product from 64 panels on: most of this backbone's are smaller. From 16, two threads run it
/// in 0.56-0.65x the time of one (`examples/profile_tract.rs`), against 0.65-0.77x at the
/// defaults. (In wasm tract never threads a product by default.)
#[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
fn thread_thresholds() {
    use tract_nnef::tract_core::tract_linalg::multithread as mt;
    mt::set_threading_panel_threshold(16);
    mt::set_threading_mac_threshold(1 << 18);
    mt::set_threading_element_threshold(crate::par::MIN_ELEMENTS);
}

/// Run a plan the way this build runs a browser's. In the threaded wasm module, when
/// `initThreadPool` built a pool of more than one thread, `f` runs on one of its Web Workers
/// (the caller, the page's inference worker, waits), so the parallel sections of its ops start
/// and end inside the pool as natively in [`with_threads`] (whose thresholds it sets on first
/// use). Elsewhere `f` just runs: natively callers choose their threads with [`with_threads`].
pub(crate) fn browser_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(all(target_arch = "wasm32", feature = "threads"))]
    {
        use tract_nnef::tract_core::tract_linalg::multithread as mt;
        if rayon::current_num_threads() > 1 {
            static THRESHOLDS: std::sync::Once = std::sync::Once::new();
            THRESHOLDS.call_once(thread_thresholds);
            return rayon::scope(|_| mt::multithread_tract_scope(mt::Executor::RayonGlobal, f));
        }
    }
    f()
}

/// The `k` highest scores with their labels, best first (ties keep label order).
pub fn top_k(scores: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Prediction {
            label: labels[i].clone(),
            score: scores[i],
        })
        .collect()
}
