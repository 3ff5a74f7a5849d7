//! Boxes on the images of detection datasets: validated against the image and the dataset's
//! labels, written with their image (upload) or replacing its boxes (review) inside the
//! caller's transaction, read back for listings and for the snapshot a detection run trains
//! on.

use std::collections::HashMap;

pub use contract::api::ImageBox;
use contract::{ImageStatus, Task};

use crate::db::Db;
use crate::{Error, Result};

/// Most boxes one image may carry (COCO counts at most 100 detections per image).
pub const MAX_BOXES: usize = 100;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// What a dataset's images carry (`NotFound` when there is no such dataset).
pub async fn dataset_task(db: &Db, dataset_id: &str) -> Result<Task> {
    sqlx::query_scalar("SELECT task FROM datasets WHERE id = $1")
        .bind(dataset_id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no dataset {dataset_id:?}")))
}

/// Parse the `boxes` field of an upload: a JSON array of `{label, bbox}`.
pub fn parse_boxes(json: &str) -> Result<Vec<ImageBox>> {
    serde_json::from_str(json).map_err(|e| {
        Error::Invalid(format!(
            "boxes: {e} (expected a JSON array of {{\"label\": …, \"bbox\": [x, y, w, h]}})"
        ))
    })
}

/// Refuse boxes that cannot be stored on a `width × height` image of a dataset with `labels`:
/// none or more than [`MAX_BOXES`], a box outside the image or without area, an unknown
/// label. The error names the box.
pub fn check_boxes(boxes: &[ImageBox], width: u32, height: u32, labels: &[String]) -> Result<()> {
    if boxes.is_empty() {
        return Err(Error::Invalid(
            "an image of a detection dataset needs at least one box".into(),
        ));
    }
    if boxes.len() > MAX_BOXES {
        return Err(Error::Invalid(format!(
            "{} boxes on one image (at most {MAX_BOXES})",
            boxes.len()
        )));
    }
    for (i, b) in boxes.iter().enumerate() {
        if let Some(p) = contract::detection::box_problem(&b.bbox, width, height) {
            return Err(Error::Invalid(format!("box {i}: {p}")));
        }
        if !labels.contains(&b.label) {
            return Err(Error::UnknownLabel(format!(
                "box {i}: the dataset has no label {:?} (labels: {})",
                b.label,
                labels.join(", ")
            )));
        }
    }
    Ok(())
}

/// The label an image of a detection dataset is listed under: its largest box's (the first
/// of equals).
pub fn main_label(boxes: &[ImageBox]) -> Option<&str> {
    boxes
        .iter()
        .rev()
        .max_by(|a, b| (a.bbox[2] * a.bbox[3]).total_cmp(&(b.bbox[2] * b.bbox[3])))
        .map(|b| b.label.as_str())
}

/// Replace the boxes of image `image_id` inside `tx`.
pub async fn write_boxes(tx: &mut Tx<'_>, image_id: &str, boxes: &[ImageBox]) -> Result<()> {
    sqlx::query("DELETE FROM boxes WHERE image_id = $1")
        .bind(image_id)
        .execute(&mut **tx)
        .await?;
    for (i, b) in boxes.iter().enumerate() {
        let [x, y, w, h] = b.bbox.map(f64::from);
        sqlx::query(
            "INSERT INTO boxes (image_id, idx, label, x, y, w, h) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(image_id)
        .bind(i as i64)
        .bind(&b.label)
        .bind(x)
        .bind(y)
        .bind(w)
        .bind(h)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

type BoxRow = (String, String, f64, f64, f64, f64);

fn by_image(rows: Vec<BoxRow>) -> HashMap<String, Vec<ImageBox>> {
    let mut out: HashMap<String, Vec<ImageBox>> = HashMap::new();
    for (image, label, x, y, w, h) in rows {
        out.entry(image).or_default().push(ImageBox {
            label,
            bbox: [x as f32, y as f32, w as f32, h as f32],
        });
    }
    out
}

/// The boxes of some images (one query), by image id.
pub async fn boxes_of_images(db: &Db, ids: &[&str]) -> Result<HashMap<String, Vec<ImageBox>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let marks = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT image_id, label, x, y, w, h FROM boxes WHERE image_id IN ({marks}) \
         ORDER BY image_id, idx"
    )));
    for id in ids {
        q = q.bind(id.to_string());
    }
    Ok(by_image(q.fetch_all(db.pool()).await?))
}

/// The boxes of every approved image of a dataset, by image id: what a detection run trains
/// on.
pub async fn approved_boxes(db: &Db, dataset_id: &str) -> Result<HashMap<String, Vec<ImageBox>>> {
    let rows: Vec<BoxRow> = sqlx::query_as(
        "SELECT b.image_id, b.label, b.x, b.y, b.w, b.h FROM boxes b \
         JOIN images i ON i.id = b.image_id \
         WHERE i.dataset_id = $1 AND i.status = $2 ORDER BY b.image_id, b.idx",
    )
    .bind(dataset_id)
    .bind(ImageStatus::Approved)
    .fetch_all(db.pool())
    .await?;
    Ok(by_image(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(label: &str, bbox: [f32; 4]) -> ImageBox {
        ImageBox {
            label: label.into(),
            bbox,
        }
    }

    #[test]
    fn boxes_are_checked_against_the_image_and_the_labels() {
        let labels = vec!["cat".to_string(), "dog".to_string()];
        let ok = [
            b("cat", [0.0, 0.0, 10.0, 10.0]),
            b("dog", [5.0, 5.0, 95.0, 45.0]),
        ];
        check_boxes(&ok, 100, 50, &labels).unwrap();
        let cases: [(&[ImageBox], &str); 5] = [
            (&[], "at least one box"),
            (
                &[b("cat", [95.0, 0.0, 10.0, 10.0])],
                "box 0: box [95.0, 0.0, 10.0, 10.0] leaves the 100×50 image",
            ),
            (
                &[ok[0].clone(), b("dog", [1.0, 1.0, 0.0, 3.0])],
                "box 1: box [1.0, 1.0, 0.0, 3.0] has no area",
            ),
            (&[b("cat", [f32::NAN, 0.0, 1.0, 1.0])], "not finite"),
            (&[b("bird", [0.0, 0.0, 1.0, 1.0])], "no label \"bird\""),
        ];
        for (boxes, why) in cases {
            let e = check_boxes(boxes, 100, 50, &labels).unwrap_err();
            assert!(e.to_string().contains(why), "{e} lacks {why:?}");
            assert_eq!(e.status_code().0.as_u16(), 422);
        }
        let many = vec![ok[0].clone(); MAX_BOXES + 1];
        assert!(check_boxes(&many, 100, 50, &labels).is_err());
        assert_eq!(main_label(&ok), Some("dog"));
        assert_eq!(
            main_label(&[ok[0].clone(), b("dog", [0.0, 0.0, 10.0, 10.0])]),
            Some("cat")
        );
        assert_eq!(main_label(&[]), None);
        assert!(parse_boxes("[{\"label\": \"cat\", \"bbox\": [1, 2, 3]}]").is_err());
        // A number beyond f32's range parses, then fails the check as not finite.
        let huge = parse_boxes("[{\"label\": \"cat\", \"bbox\": [1e300, 2, 3, 4]}]").unwrap();
        let e = check_boxes(&huge, 100, 50, &labels).unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");
        assert!(parse_boxes("[{\"label\": \"cat\", \"bbox\": [1, 2, 3, 4], \"x\": 1}]").is_err());
        assert_eq!(
            parse_boxes("[{\"label\": \"cat\", \"bbox\": [1, 2, 3, 4]}]").unwrap(),
            vec![b("cat", [1.0, 2.0, 3.0, 4.0])]
        );
    }
}
