//! ONNX export of the ranking model's two towers, on the shared graph builder
//! ([`crate::export`]): the image tower's head on the shared backbone's features (ImageNet
//! classifier → softmax → projection → L2 norm) and the text encoder (folded word table →
//! masked mean → L2 norm).

use tract_onnx::pb;

use super::model::{DualEncoder, NORM_EPS_SQUARED};
use crate::backbone::{Backbone, FEATURE_DIM};
use crate::export::{
    FEATURES_NAME, GraphBuilder, attr_int, attr_ints, encode_model, features_info, masked_mean,
    typed_value_info, value_info,
};
pub use crate::export::{IDS_NAME, MASK_NAME};
use crate::{Error, Result};

/// Name of the embedding output of both ranking encoders.
pub const EMBEDDING_NAME: &str = "embedding";

/// The ranking model's image head: the backbone's `features [batch, 1280]` → ImageNet
/// classifier (Gemm) → Softmax → projection (MatMul) → L2 normalisation →
/// `embedding [batch, dim]`. (The ImageNet classifier is frozen too, but only ranking uses
/// it: in the head, the shared backbone file stays as small as the classifier needs.)
pub fn export_image_head(
    backbone: &Backbone,
    model: &DualEncoder,
    model_id: &str,
) -> Result<Vec<u8>> {
    let (classes, features) = model.classifier_weight.dims2()?;
    let (dim, pc) = model.projection.dims2()?;
    if features != FEATURE_DIM || pc != classes {
        return Err(Error::Export(format!(
            "classifier [{classes}, {features}] and projection [{dim}, {pc}] do not fit the {FEATURE_DIM}-d backbone"
        )));
    }
    let mut g = GraphBuilder::default();
    let x = FEATURES_NAME.to_string();
    let w = g.initializer(
        "imagenet.weight",
        &[classes, features],
        &model.classifier_weight.flatten_all()?.to_vec1()?,
    );
    let b = g.initializer(
        "imagenet.bias",
        &[classes],
        &model.classifier_bias.to_vec1()?,
    );
    let logits = g.node(
        "Gemm",
        "imagenet",
        vec![x, w, b],
        vec![attr_int("transB", 1)],
    );
    let probs = g.node(
        "Softmax",
        "imagenet.softmax",
        vec![logits],
        vec![attr_int("axis", 1)],
    );
    let p = g.initializer(
        "projection.t",
        &[classes, dim],
        &model
            .projection
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1()?,
    );
    let y = g.node("MatMul", "image.proj", vec![probs, p], vec![]);
    l2_normalize(&mut g, y, EMBEDDING_NAME);
    let graph = g.finish(
        "edgeml-image-head",
        vec![features_info()],
        vec![value_info(EMBEDDING_NAME, &[None, Some(dim as i64)])],
    );
    Ok(encode_model(
        graph,
        format!(
            "ImageNet classifier of EfficientNet-Lite0 (frozen, weights sha256 {}) + projection, image head of model {model_id}",
            backbone.weights_sha256
        ),
    ))
}

/// The ranking model's text encoder: `ids [batch, len]` (int64), `mask [batch, len]` (float) →
/// projected word vectors (Gather on the folded table) → masked mean
/// ([`crate::export::masked_mean`]) → L2 normalisation →
/// `embedding [batch, dim]`.
pub fn export_text_encoder(model: &DualEncoder, max_len: usize, model_id: &str) -> Result<Vec<u8>> {
    let folded = model.folded_words()?;
    let (vocab, dim) = folded.dims2()?;
    let mut g = GraphBuilder::default();
    let table = g.initializer(
        "text.words",
        &[vocab, dim],
        &folded.flatten_all()?.to_vec1()?,
    );
    let mean = masked_mean(&mut g, table);
    l2_normalize(&mut g, mean, EMBEDDING_NAME);
    let len = max_len as i64;
    let ids = typed_value_info(
        IDS_NAME,
        &[None, Some(len)],
        pb::tensor_proto::DataType::Int64,
    );
    let graph = g.finish(
        "edgeml-text-encoder",
        vec![ids, value_info(MASK_NAME, &[None, Some(len)])],
        vec![value_info(EMBEDDING_NAME, &[None, Some(dim as i64)])],
    );
    Ok(encode_model(
        graph,
        format!(
            "projected word vectors (from ImageNet class names, trained on captions), text encoder of model {model_id}"
        ),
    ))
}

/// `x / sqrt(max(Σx², eps²))` along axis 1 (as [`super::model::l2_normalize`]), into the
/// graph output `output`.
fn l2_normalize(g: &mut GraphBuilder, x: String, output: &str) {
    let eps = g.initializer("norm.eps2", &[], &[NORM_EPS_SQUARED]);
    let sq = g.node(
        "ReduceSumSquare",
        "norm.sumsq",
        vec![x.clone()],
        vec![attr_ints("axes", vec![1]), attr_int("keepdims", 1)],
    );
    let floor = g.node("Max", "norm.floor", vec![sq, eps], vec![]);
    let norm = g.node("Sqrt", "norm", vec![floor], vec![]);
    g.output_node("Div", vec![x, norm], vec![], output);
}
