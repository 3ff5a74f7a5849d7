//! COCO import into a detection dataset: a COCO JSON document (`images`, `annotations` with
//! `bbox`, `categories`) and the image files it names, checked as a whole before anything is
//! stored — every file decoded within the server's budget, the document read by the trainer's
//! COCO reader (repeated ids, unknown images or categories, boxes outside their image or
//! without area, sizes that disagree with the files: the entry named), every category one of
//! the dataset's labels, every image with at least one box and every file named by the
//! document — then ingested like an upload, in one transaction.

use std::collections::HashMap;

use contract::Task;
use trainer::dataset::Split;
use trainer::detect::DetectSet;
use trainer::detect::data::Loaded;

use super::boxes::{ImageBox, check_boxes, dataset_task, main_label};
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
