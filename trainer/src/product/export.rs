//! ONNX export of the product classifier, on the shared graph builder ([`crate::export`]):
//! `features [batch, 1280]` (the shared backbone's output), `ids [batch, len]` (int64),
//! `mask [batch, len]`, `has_image [batch, 1]` → `probs [batch, classes]`.
//!
//! Text only: `has_image` 0 (the features are then ignored; zeros will do). Image only: the
//! mask all 0 ([`wasm_infer::Tokenizer::encode_optional`] of an empty text).

use tract_onnx::pb;

use super::model::ProductModel;
use crate::backbone::FEATURE_DIM;
use crate::export::{
    FEATURES_NAME, GraphBuilder, OUTPUT_NAME, attr_int, encode_model, features_info, masked_mean,
    typed_value_info, value_info,
};
pub use crate::export::{IDS_NAME, MASK_NAME};
use crate::{Error, Result};

/// Name of the image-presence input (`[batch, 1]`, 1 or 0).
pub const HAS_IMAGE_NAME: &str = "has_image";

/// `model` with its word table as the 8-bit head file stores it (one scale per word,
/// [`wasm_infer::quant::round_trip`]): the model a run scores and exports, so the ONNX head
/// (server), the NNEF head (browsers) and the recorded figures are one model.
pub fn with_shipped_words(model: ProductModel) -> Result<ProductModel> {
    let (vocab, dim) = model.words.dims2()?;
    let values = model.words.flatten_all()?.to_vec1::<f32>()?;
    let back = wasm_infer::quant::round_trip(&values, &[vocab, dim])?;
    let words = candle_core::Tensor::from_vec(back, (vocab, dim), model.words.device())?;
    Ok(ProductModel { words, ..model })
}

/// The product classifier as ONNX bytes.
pub fn export_product_head(
    model: &ProductModel,
    max_len: usize,
    model_id: &str,
) -> Result<Vec<u8>> {
    let (vocab, dim) = model.words.dims2()?;
    let (d2, classes) = model.text.dims2()?;
    let (features, c2) = model.image.dims2()?;
    if features != FEATURE_DIM || d2 != dim || c2 != classes || model.bias.dims() != [classes] {
        return Err(Error::Export(format!(
            "words [{vocab}, {dim}], text [{d2}, {classes}], image [{features}, {c2}] and bias {:?} do not fit together and the {FEATURE_DIM}-d backbone",
            model.bias.dims()
        )));
    }
    let flat = |t: &candle_core::Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
    let mut g = GraphBuilder::default();
    let table = g.initializer("text.words", &[vocab, dim], &flat(&model.words)?);
    let mean = masked_mean(&mut g, table);
    let text_w = g.initializer("text.weight", &[dim, classes], &flat(&model.text)?);
    let text = g.node("MatMul", "text.scores", vec![mean, text_w], vec![]);
    let image_w = g.initializer(
        "image.weight",
        &[FEATURE_DIM, classes],
        &flat(&model.image)?,
    );
    let picture = g.node(
        "MatMul",
        "image.scores",
        vec![FEATURES_NAME.into(), image_w],
        vec![],
    );
    let picture = g.node(
        "Mul",
        "image.present",
        vec![picture, HAS_IMAGE_NAME.into()],
        vec![],
    );
    let fused = g.node("Add", "fusion.sum", vec![text, picture], vec![]);
    let bias = g.initializer("fusion.bias", &[classes], &flat(&model.bias)?);
    let z = g.node("Add", "fusion.bias", vec![fused, bias], vec![]);
    g.output_node("Softmax", vec![z], vec![attr_int("axis", 1)], OUTPUT_NAME);
    let len = max_len as i64;
    let graph = g.finish(
        "edgeml-product-head",
        vec![
            features_info(),
            typed_value_info(
                IDS_NAME,
                &[None, Some(len)],
                pb::tensor_proto::DataType::Int64,
            ),
            value_info(MASK_NAME, &[None, Some(len)]),
            value_info(HAS_IMAGE_NAME, &[None, Some(1)]),
        ],
        vec![value_info(OUTPUT_NAME, &[None, Some(classes as i64)])],
    );
    Ok(encode_model(
        graph,
        format!(
            "product classifier (title + keywords, image features, or both) of model {model_id}, on backbone features"
        ),
    ))
}
