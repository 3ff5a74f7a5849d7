//! Product models (a title, an image, or both → categories), run natively (the api, the
//! trainer's parity checks: the ONNX head) and in the browser (the NNEF head), on the shared
//! [`Backbone`].
//!
//! The head takes the backbone's features, the text as the manifest's tokenizer encodes it
//! ([`Tokenizer::encode_optional`]: no words → mask all zero, "no text") and `has_image`
//! (0: no image; the features are then zeros and ignored). So the image's features can be
//! computed once ([`ProductSession::features`]) and the head re-run as a title is typed
//! ([`ProductSession::scores`]).

use std::sync::Arc;

use tract_nnef::prelude::*;

use crate::manifest::{Dim, ModelManifest, ProductInputs, Task};
use crate::preprocess::{Pixels, image_to_tensor};
#[cfg(not(target_arch = "wasm32"))]
use crate::session::verify_file;
use crate::session::{Backbone, Prediction, Runnable, Session, top_k, verify_digest};
use crate::tokenizer::{Encoded, Tokenizer};
use crate::{Error, Result};

/// A product model's head on its backbone, planned for one item at a time.
pub struct ProductSession {
    manifest: ModelManifest,
    backbone: Arc<Backbone>,
    tokenizer: Tokenizer,
    head: Runnable,
    dim: usize,
}

impl std::fmt::Debug for ProductSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductSession")
            .field("model_id", &self.manifest.model_id)
            .finish()
    }
}

/// The manifest's product inputs and the backbone's feature size, when `manifest` is a
/// product model on `backbone`.
fn check(backbone: &Backbone, manifest: &ModelManifest) -> Result<(ProductInputs, usize)> {
    if manifest.task != Task::Product {
        return Err(Error::manifest(format!(
            "model {} is a {} model, not a product model",
            manifest.model_id, manifest.task
        )));
    }
    let spec = Session::check_backbone(backbone, manifest)?;
    let dim = match spec.output.shape.as_slice() {
        [_, Dim::Fixed(d)] => *d,
        _ => unreachable!("validated: [batch, dim]"),
    };
    let inputs = manifest
        .product
        .clone()
        .ok_or_else(|| Error::manifest("a product model without its inputs".into()))?;
    Ok((inputs, dim))
}

/// The head's input names must be, in order, the backbone's output and the manifest's ids,
/// mask and has_image; its one output the manifest's.
fn check_names(
    inputs: &[String],
    outputs: &[String],
    features: &str,
    p: &ProductInputs,
    output: &str,
) -> Result<()> {
    let want = [features, &p.ids.name, &p.mask.name, &p.has_image.name];
    if inputs.len() != 4 || inputs.iter().zip(want).any(|(a, b)| a != b) {
        return Err(Error::Graph(format!(
            "product head inputs are {inputs:?}, manifest says {want:?}"
        )));
    }
    if outputs.len() != 1 || outputs[0] != output {
        return Err(Error::Graph(format!(
            "product head outputs are {outputs:?}, manifest says [{output:?}]"
        )));
    }
    Ok(())
}

fn names<F: Fact + Clone + 'static, O>(
    model: &tract_nnef::tract_core::model::Graph<F, O>,
    outlets: &[OutletId],
) -> Vec<String>
where
    O: std::fmt::Debug + std::fmt::Display + AsRef<dyn Op> + AsMut<dyn Op> + Clone + 'static,
{
    outlets
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect()
}

impl ProductSession {
    /// Load the ONNX head (the manifest's `onnx`), checking its bytes against the manifest
    /// and its inputs and output against the manifest's names.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(backbone: Arc<Backbone>, onnx: &[u8], manifest: ModelManifest) -> Result<Self> {
        use tract_onnx::prelude::{Framework as _, InferenceModelExt as _};
        let (p, dim) = check(&backbone, &manifest)?;
        verify_file(onnx, &manifest.onnx)?;
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .map_err(Error::engine)?;
        let features = backbone_output(&manifest);
        check_names(
            &names(&model, model.input_outlets().map_err(Error::engine)?),
            &names(&model, model.output_outlets().map_err(Error::engine)?),
            &features,
            &p,
            &manifest.output.name,
        )?;
        let len = p.tokenizer.max_len;
        let head = model
            .with_input_fact(0, f32::fact([1, dim]).into())
            .and_then(|m| m.with_input_fact(1, i64::fact([1, len]).into()))
            .and_then(|m| m.with_input_fact(2, f32::fact([1, len]).into()))
            .and_then(|m| m.with_input_fact(3, f32::fact([1, 1]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(Error::engine)?;
        Self::assemble(backbone, manifest, p, head, dim)
    }

    /// Load the head as browsers do: the NNEF file the manifest's `nnef` names (planned for
    /// one item at export), checked the same way.
    pub fn from_nnef(
        backbone: Arc<Backbone>,
        nnef: &[u8],
        manifest: ModelManifest,
    ) -> Result<Self> {
        let (p, dim) = check(&backbone, &manifest)?;
        let file = manifest.nnef.as_ref().ok_or_else(|| {
            Error::manifest(format!("model {} has no NNEF head", manifest.model_id))
        })?;
        verify_digest(nnef, &file.file, &file.sha256, file.bytes)?;
        let model = crate::nnef::load(nnef)?;
        check_names(
            &names(&model, &model.inputs),
            &names(&model, &model.outputs),
            &backbone_output(&manifest),
            &p,
            &manifest.output.name,
        )?;
        let head = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(Error::engine)?;
        Self::assemble(backbone, manifest, p, head, dim)
    }

    fn assemble(
        backbone: Arc<Backbone>,
        manifest: ModelManifest,
        p: ProductInputs,
        head: Runnable,
        dim: usize,
    ) -> Result<Self> {
        Ok(Self {
            tokenizer: Tokenizer::new(p.tokenizer)?,
            manifest,
            backbone,
            head,
            dim,
        })
    }

    /// The manifest the session was created with.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The shared backbone.
    pub fn backbone(&self) -> &Arc<Backbone> {
        &self.backbone
    }

    /// The tokenizer of the head's text input.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The backbone's features of an image, preprocessed as the manifest says.
    pub fn features(&self, pixels: &Pixels<'_>) -> Result<Vec<f32>> {
        let image = image_to_tensor(pixels, &self.manifest.preprocess)?;
        self.backbone.features(&image)
    }

    /// Probabilities over the labels for a text (may be empty) and an image's features (or
    /// none); an error when there is neither a word nor an image.
    pub fn scores(&self, features: Option<&[f32]>, text: &str) -> Result<Vec<f32>> {
        self.scores_encoded(features, &self.tokenizer.encode_optional(text))
    }

    /// [`ProductSession::scores`] of an already encoded text.
    pub fn scores_encoded(&self, features: Option<&[f32]>, text: &Encoded) -> Result<Vec<f32>> {
        let has_text = text.mask.iter().any(|&m| m > 0.0);
        if features.is_none() && !has_text {
            return Err(Error::Image(
                "nothing to classify: give a title with at least one word, or an image".into(),
            ));
        }
        let len = self.tokenizer.spec().max_len;
        if text.ids.len() != len || text.mask.len() != len {
            return Err(Error::Graph(format!(
                "text of {} ids and {} mask values, the head takes {len}",
                text.ids.len(),
                text.mask.len()
            )));
        }
        let zeros;
        let (f, has) = match features {
            Some(f) if f.len() == self.dim => (f, 1f32),
            Some(f) => {
                return Err(Error::Graph(format!(
                    "{} features, the backbone gives {}",
                    f.len(),
                    self.dim
                )));
            }
            None => {
                zeros = vec![0f32; self.dim];
                (zeros.as_slice(), 0.0)
            }
        };
        let t = |shape: &[usize], v: &[f32]| Tensor::from_shape(shape, v).map_err(Error::engine);
        let inputs = tvec!(
            t(&[1, self.dim], f)?.into(),
            Tensor::from_shape(&[1, len], &text.ids)
                .map_err(Error::engine)?
                .into(),
            t(&[1, len], &text.mask)?.into(),
            t(&[1, 1], &[has])?.into(),
        );
        let out = self.head.run(inputs).map_err(Error::engine)?;
        let view = out
            .first()
            .ok_or_else(|| Error::Engine("product head produced no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(Error::engine)?;
        Ok(view.iter().copied().collect())
    }

    /// The `k` most probable categories of a title (may be empty) and an image (or none).
    pub fn classify(
        &self,
        pixels: Option<&Pixels<'_>>,
        text: &str,
        k: usize,
    ) -> Result<Vec<Prediction>> {
        let features = pixels.map(|p| self.features(p)).transpose()?;
        let scores = self.scores(features.as_deref(), text)?;
        Ok(top_k(&scores, &self.manifest.labels, k))
    }
}

/// The name of the backbone's output, the head's first input.
fn backbone_output(manifest: &ModelManifest) -> String {
    manifest
        .backbone
        .as_ref()
        .map(|b| b.output.name.clone())
        .unwrap_or_default()
}
