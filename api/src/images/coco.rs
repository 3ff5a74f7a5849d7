//! COCO import into a detection dataset: a COCO JSON document (`images`, `annotations` with
//! `bbox`, `categories`) and the image files it names, checked as a whole before anything is
//! stored — every file decoded within the server's budget, the document read by the trainer's
//! COCO reader (repeated ids, unknown images or categories, boxes outside their image or
//! without area, sizes that disagree with the files: the entry named), every category one of
//! the dataset's labels, every image with at least one box and every file named by the
//! document — then ingested like an upload, in one transaction. And the way out: a dataset's
//! approved images and their boxes as the same COCO document ([`export_coco`]).

use std::collections::{HashMap, HashSet};

use contract::api::ImageRow;
use contract::{ImageStatus, Task};
use trainer::dataset::Split;
use trainer::detect::data::Loaded;
use trainer::detect::{BoxLabel, CocoEntry, DetectSet, Rect, coco_document};

use super::boxes::{ImageBox, boxes_of_images, check_boxes, dataset_task, main_label};
use super::check::Checked;
use super::datasets::labels;
use super::upload::{PendingCaps, Uploaded, Uploader, ingest};
use crate::db::Db;
use crate::storage::Storage;
use crate::{Error, Result};

/// Import `files` (checked: decoded within the budget) with the boxes `annotations` (COCO
/// JSON) gives them into detection dataset `dataset_id`. All or nothing.
pub async fn import_coco(
    db: &Db,
    storage: &Storage,
    dataset_id: &str,
    annotations: &str,
    files: Vec<Checked>,
    uploader: &Uploader,
    caps: PendingCaps,
) -> Result<Vec<Uploaded>> {
    if dataset_task(db, dataset_id).await? != Task::Detect {
        return Err(Error::Invalid(format!(
            "dataset {dataset_id:?} holds labelled images: COCO boxes go to a detection dataset"
        )));
    }
    let known = labels(db, dataset_id).await?;
    let files = boxed(annotations, files, &known)?;
    let label = files
        .first()
        .and_then(|f| f.label.clone())
        .ok_or_else(|| Error::Invalid("no image in the request".into()))?;
    ingest(db, storage, dataset_id, &label, files, uploader, caps).await
}

/// The checked files with the boxes the COCO document gives them (and their listing label),
/// in the document's image order; `known`: the dataset's labels.
pub fn boxed(annotations: &str, files: Vec<Checked>, known: &[String]) -> Result<Vec<Checked>> {
    let mut by_name: HashMap<String, Checked> = HashMap::new();
    for f in files {
        if by_name.contains_key(&f.filename) {
            return Err(Error::Invalid(format!(
                "two files are named {:?}: COCO names images by file name",
                f.filename
            )));
        }
        by_name.insert(f.filename.clone(), f);
    }
    // The file of each image, in the document's order (the order of its items).
    let mut order: Vec<String> = Vec::new();
    let set = DetectSet::parse_coco("annotations", annotations.as_bytes(), |name| {
        order.push(name.to_string());
        let f = by_name
            .get(name)
            .ok_or_else(|| format!("no file named {name:?} in the request"))?;
        let (sha256, raw) = trainer::dataset::digest(&f.bytes);
        debug_assert_eq!(sha256, f.sha256);
        Ok(Loaded {
            sha256,
            split: Split::of_digest(&raw),
            width: f.width,
            height: f.height,
            bytes: std::sync::Arc::from(&f.bytes[..]),
        })
    })
    .map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(l) = set.labels.iter().find(|l| !known.contains(l)) {
        return Err(Error::UnknownLabel(format!(
            "category {l:?} is not a label of the dataset (labels: {})",
            known.join(", ")
        )));
    }
    let mut out = Vec::with_capacity(set.items.len());
    for (item, name) in set.items.iter().zip(&order) {
        let mut f = by_name.remove(name).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: the file is named twice in the annotations",
                item.source
            ))
        })?;
        let boxes: Vec<ImageBox> = item
            .boxes
            .iter()
            .map(|b| ImageBox {
                label: set.labels[b.label].clone(),
                bbox: [b.rect.x, b.rect.y, b.rect.w, b.rect.h],
            })
            .collect();
        check_boxes(&boxes, f.width, f.height, known).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("{}: {m}", item.source)),
            other => other,
        })?;
        f.label = main_label(&boxes).map(str::to_string);
        f.boxes = boxes;
        out.push(f);
    }
    if let Some(extra) = by_name.keys().next() {
        return Err(Error::Invalid(format!(
            "file {extra:?} is not an image of the annotations"
        )));
    }
    Ok(out)
}

/// Most images one export page holds (`limit`'s bound).
pub const EXPORT_PAGE: i64 = 5000;

/// The approved images of detection dataset `dataset_id` (oldest first, `limit` from
/// `offset`) and their boxes as a COCO document, in the format [`import_coco`] reads back:
/// each image's `file_name` is its uploaded name (made unique with its hash's head when two
/// share one), its `sha256` binds the file, its `coco_url` is where the file is served;
/// `info` says which page of how many images this is.
pub async fn export_coco(
    db: &Db,
    dataset_id: &str,
    limit: Option<i64>,
    offset: Option<i64>,
) -> Result<serde_json::Value> {
    let limit = crate::util::in_range("limit", limit, 1, EXPORT_PAGE)?.unwrap_or(EXPORT_PAGE);
    let offset = crate::util::in_range("offset", offset, 0, 10_000_000)?.unwrap_or(0);
    if dataset_task(db, dataset_id).await? != Task::Detect {
        return Err(Error::Invalid(format!(
            "dataset {dataset_id:?} holds labelled images, not boxes: only a detection dataset \
             exports as COCO"
        )));
    }
    let known = labels(db, dataset_id).await?;
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE dataset_id = $1 AND status = $2")
            .bind(dataset_id)
            .bind(ImageStatus::Approved)
            .fetch_one(db.pool())
            .await?;
    let rows: Vec<ImageRow> = sqlx::query_as(
        "SELECT * FROM images WHERE dataset_id = $1 AND status = $2 \
         ORDER BY created_at, id LIMIT $3 OFFSET $4",
    )
    .bind(dataset_id)
    .bind(ImageStatus::Approved)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut boxes = boxes_of_images(db, &ids).await?;
    let mut names = HashSet::new();
    let mut entries = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut file_name = r.filename.clone();
        if !names.insert(file_name.clone()) {
            file_name = format!("{}-{}", &r.sha256[..12], r.filename);
            names.insert(file_name.clone());
        }
        let boxes = boxes
            .remove(&r.id)
            .unwrap_or_default()
            .into_iter()
            .map(|b| {
                let label = known.iter().position(|l| *l == b.label).ok_or_else(|| {
                    Error::Internal(format!("image {}: box label {:?} unknown", r.id, b.label))
                })?;
                let [x, y, w, h] = b.bbox;
                Ok(BoxLabel {
                    label,
                    rect: Rect { x, y, w, h },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        entries.push(CocoEntry {
            file_name,
            width: u32::try_from(r.width).unwrap_or_default(),
            height: u32::try_from(r.height).unwrap_or_default(),
            sha256: Some(r.sha256.clone()),
            url: Some(format!("/api/images/{}/blob", r.id)),
            boxes,
        });
    }
    let info = serde_json::json!({
        "description": format!("edgeml detection dataset {dataset_id}: approved images and their boxes"),
        "total_images": total,
        "offset": offset,
    });
    Ok(coco_document(&known, entries, Some(info)))
}
