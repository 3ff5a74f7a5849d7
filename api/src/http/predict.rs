//! The server-side prediction route (the fallback for clients without wasm).

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use serde::Deserialize;

use super::extract::{Q, Shared, read_form};
use crate::error::ErrorBody;
use crate::predict::{self, PredictResponse};
use crate::{Error, Result};

// The multipart body of a prediction, for the OpenAPI document only.
#[derive(utoipa::ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read by utoipa's derive, never built
pub(super) struct PredictForm {
    /// The image (optional for `task=product` when a title is given).
    #[schema(value_type = String, format = Binary)]
    file: Option<Vec<u8>>,
    /// `task=product`: the product's title (optional when an image is given).
    title: Option<String>,
}

/// Prediction query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictQuery {
    /// How many labels (default 5, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub k: Option<usize>,
    /// `classify` (default: an image → labels), `product` (a title and/or an image →
    /// categories, by the product champion) or `detect` (an image → labelled boxes, by the
    /// detection champion; `k` is not read).
    #[param(value_type = Option<String>)]
    pub task: Option<String>,
}

#[utoipa::path(post, path = "/api/predict", tag = "predict", params(PredictQuery),
    request_body(content = inline(PredictForm), content_type = "multipart/form-data"),
    responses((status = 200, body = PredictResponse), (status = 400, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "no model promoted yet, or the server is at its decode limit")))]
pub(super) async fn predict_handler(
    State(st): State<Shared>,
    Q(q): Q<PredictQuery>,
    mp: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Json<PredictResponse>> {
    let result =
        async {
            let ctx = predict::PredictCtx {
                predictor: &st.predictor,
                db: &st.db,
                storage: &st.storage,
                decode: &st.decode,
            };
            let k = q.k.unwrap_or(5);
            match q.task.as_deref().unwrap_or("classify") {
                "classify" => {
                    let form = read_form(mp?, &["file", "title"], 1).await?;
                    if form.fields.contains_key("title") {
                        return Err(Error::Invalid(
                            "the title field is read by task=product only".into(),
                        ));
                    }
                    let f = form.files.into_iter().next().ok_or_else(|| {
                        Error::BadRequest("send the image as a file field".into())
                    })?;
                    predict::predict(ctx, f.filename, f.bytes, st.predict_limits(), k).await
                }
                "product" => {
                    let mut form = read_form(mp?, &["file", "title"], 1).await?;
                    let title = form.fields.remove("title").unwrap_or_default();
                    let image = form.files.into_iter().next().map(|f| (f.filename, f.bytes));
                    predict::predict_product(ctx, title, image, st.predict_limits(), k).await
                }
                "detect" => {
                    let form = read_form(mp?, &["file"], 1).await?;
                    let f = form.files.into_iter().next().ok_or_else(|| {
                        Error::BadRequest("send the image as a file field".into())
                    })?;
                    predict::predict_detect(ctx, f.filename, f.bytes, st.predict_limits()).await
                }
                other => Err(Error::Invalid(format!(
                    "task {other:?} has no server prediction (classify, product, detect)"
                ))),
            }
        }
        .await;
    st.metrics
        .predictions
        .with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
        .inc();
    Ok(Json(result?))
}
