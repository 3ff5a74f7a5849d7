//! Dataset routes: list, create, one dataset with its label counts, add a label, export a
//! detection dataset as COCO.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{Admin, J, P, Q, Shared};
pub use contract::api::{NewDataset, NewLabel};

use crate::Result;
use crate::error::ErrorBody;
use crate::images::{self, DatasetInfo};

#[utoipa::path(get, path = "/api/datasets", tag = "images", responses((status = 200, body = Vec<images::DatasetInfo>)))]
pub(super) async fn list_datasets(State(st): State<Shared>) -> Result<Json<Vec<DatasetInfo>>> {
    Ok(Json(images::list_datasets(&st.db).await?))
}

#[utoipa::path(post, path = "/api/datasets", tag = "images", request_body = NewDataset,
    responses((status = 201, body = images::DatasetInfo), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "invalid name or label")), security(("bearer" = [])))]
pub(super) async fn create_dataset(
    State(st): State<Shared>,
    _: Admin,
    J(b): J<NewDataset>,
) -> Result<(StatusCode, Json<DatasetInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(
            images::create_dataset(
                &st.db,
                None,
                &b.name,
                &b.labels,
                b.task.unwrap_or(contract::Task::Classify),
            )
            .await?,
        ),
    ))
}

#[utoipa::path(get, path = "/api/datasets/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 200, body = images::DatasetInfo), (status = 404, body = ErrorBody)))]
pub(super) async fn get_dataset(
    State(st): State<Shared>,
    P(id): P<String>,
) -> Result<Json<DatasetInfo>> {
    Ok(Json(images::get_dataset(&st.db, &id).await?))
}

#[utoipa::path(post, path = "/api/datasets/{id}/labels", tag = "images", params(("id" = String, Path)), request_body = NewLabel,
    responses((status = 200, body = images::DatasetInfo), (status = 422, body = ErrorBody, description = "invalid label")), security(("bearer" = [])))]
pub(super) async fn add_label(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
    J(b): J<NewLabel>,
) -> Result<Json<DatasetInfo>> {
    Ok(Json(images::add_label(&st.db, &id, &b.name).await?))
}

/// A page of a COCO export.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ExportQuery {
    /// Images in this page, oldest approved first (default 5000).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
    /// Images skipped (default 0).
    #[param(minimum = 0, maximum = 10000000)]
    offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/datasets/{id}/coco", tag = "images", params(("id" = String, Path, description = "detection dataset id"), ExportQuery),
    responses((status = 200, body = Object, description = "the approved images and their boxes as a COCO document (`info` with `total_images` and `offset`; each image with `file_name`, `width`, `height`, `sha256` and `coco_url`), which `POST /api/datasets/{id}/coco` reads back"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "not a detection dataset")),
    security(("bearer" = [])))]
pub(super) async fn export_coco(
    State(st): State<Shared>,
    _: Admin,
    P(id): P<String>,
    Q(q): Q<ExportQuery>,
) -> Result<Json<serde_json::Value>> {
    Ok(Json(
        images::coco::export_coco(&st.db, &id, q.limit, q.offset).await?,
    ))
}
