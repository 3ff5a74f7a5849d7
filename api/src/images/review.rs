//! Review decisions: approve, reject or relabel images (or correct the boxes of a detection
//! dataset's image) and approve or reject captions, all in one transaction. Deciding a pending
//! image decides its pending captions the same way (the reviewer saw them on the image's
//! card); captions added later to an approved image wait in the caption queue.

pub use contract::api::{Action, Caption, CaptionAction, CaptionDecision, Decision};

use super::query::{ImageRow, get_image};
use crate::db::Db;
use crate::util::now_ms;
use crate::{Error, Result};
use contract::ImageStatus;

/// What a review request changed.
#[derive(Debug, Default)]
pub struct Reviewed {
    /// The decided images, as they are now.
    pub images: Vec<ImageRow>,
    /// The decided captions, as they are now.
    pub captions: Vec<Caption>,
    /// Images that became approved.
    pub newly_approved: usize,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Apply review decisions in one transaction (any unknown image, caption or label: nothing
/// applied; no decision at all: nothing to do).
pub async fn review(
    db: &Db,
    decisions: &[Decision],
    captions: &[CaptionDecision],
    reviewer: &str,
) -> Result<Reviewed> {
    if decisions.is_empty() && captions.is_empty() {
        return Ok(Reviewed::default());
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let mut out = Reviewed::default();
    let mut ids = Vec::new();
    let mut caption_keys = Vec::new();
    for d in decisions {
        let (newly, decided) = decide_image(&mut tx, d, reviewer, now).await?;
        out.newly_approved += usize::from(newly);
        ids.push(d.id.clone());
        caption_keys.extend(decided.into_iter().map(|c| (d.id.clone(), c)));
    }
    for c in captions {
        decide_caption(&mut tx, c, reviewer, now).await?;
        caption_keys.push((c.image_id.clone(), c.caption.clone()));
    }
    crate::db::commit(tx).await?;
    for id in ids {
        out.images.push(get_image(db, &id).await?);
    }
    for (image_id, caption) in caption_keys {
        out.captions.push(
            super::query::caption(db, &image_id, &caption)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no caption {caption:?} of {image_id}")))?,
        );
    }
    Ok(out)
}

/// One image decision; returns whether it became approved and the texts of the pending
/// captions decided with it.
async fn decide_image(
    tx: &mut Tx<'_>,
    d: &Decision,
    reviewer: &str,
    now: i64,
) -> Result<(bool, Vec<String>)> {
    let img: ImageRow = sqlx::query_as("SELECT * FROM images WHERE id = $1")
        .bind(&d.id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no image {:?}", d.id)))?;
    let task: contract::Task = sqlx::query_scalar("SELECT task FROM datasets WHERE id = $1")
        .bind(&img.dataset_id)
        .fetch_one(&mut **tx)
        .await?;
    if task == contract::Task::Detect {
        return decide_boxed(tx, &img, d, reviewer, now).await;
    }
    if d.boxes.is_some() {
        return Err(Error::Invalid(format!(
            "image {:?} is in a dataset of labelled images: it has no boxes to correct",
            d.id
        )));
    }
    let label = match (&d.label, d.action) {
        (Some(l), _) => {
            let known: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM labels WHERE dataset_id = $1 AND name = $2",
            )
            .bind(&img.dataset_id)
            .bind(l)
            .fetch_one(&mut **tx)
            .await?;
            if known == 0 {
                return Err(Error::UnknownLabel(format!(
                    "dataset {:?} has no label {l:?}",
                    img.dataset_id
                )));
            }
            l.clone()
        }
        (None, Action::Relabel) => {
            return Err(Error::BadRequest(format!(
                "relabel of {:?} needs a label",
                d.id
            )));
        }
        (None, _) => img.label.clone(),
    };
    let new_status = status_after(&img, d.action);
    record(tx, &d.id, (&label, new_status), reviewer, now).await?;
    captions_follow(tx, &img, new_status, reviewer, now).await
}

/// Write a decision's label and status on image `id`, with who decided and when.
async fn record(
    tx: &mut Tx<'_>,
    id: &str,
    (label, status): (&str, ImageStatus),
    reviewer: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE images SET label = $1, status = $2, reviewed_at = $3, reviewed_by = $4 WHERE id = $5",
    )
    .bind(label)
    .bind(status)
    .bind(now)
    .bind(reviewer)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The status a decision leaves an image in.
fn status_after(img: &ImageRow, action: Action) -> ImageStatus {
    match action {
        Action::Approve => ImageStatus::Approved,
        Action::Reject => ImageStatus::Rejected,
        Action::Relabel => img.status,
    }
}

/// A decision on an image of a detection dataset: its label is its boxes' (a corrected set
/// of boxes replaces the stored one, checked like an upload's); `relabel` needs boxes.
async fn decide_boxed(
    tx: &mut Tx<'_>,
    img: &ImageRow,
    d: &Decision,
    reviewer: &str,
    now: i64,
) -> Result<(bool, Vec<String>)> {
    if d.label.is_some() {
        return Err(Error::Invalid(format!(
            "image {:?} is in a detection dataset: correct its boxes, not its label",
            d.id
        )));
    }
    let label = match &d.boxes {
        Some(boxes) => {
            let labels: Vec<String> =
                sqlx::query_scalar("SELECT name FROM labels WHERE dataset_id = $1 ORDER BY name")
                    .bind(&img.dataset_id)
                    .fetch_all(&mut **tx)
                    .await?;
            let (w, h) = (
                u32::try_from(img.width).unwrap_or(0),
                u32::try_from(img.height).unwrap_or(0),
            );
            super::boxes::check_boxes(boxes, w, h, &labels).map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("image {:?}: {m}", d.id)),
                Error::UnknownLabel(m) => Error::UnknownLabel(format!("image {:?}: {m}", d.id)),
                other => other,
            })?;
            super::boxes::write_boxes(tx, &img.id, boxes).await?;
            super::boxes::main_label(boxes)
                .unwrap_or(&img.label)
                .to_string()
        }
        None if d.action == Action::Relabel => {
            return Err(Error::BadRequest(format!(
                "relabel of {:?} needs its corrected boxes",
                d.id
            )));
        }
        None => img.label.clone(),
    };
    let new_status = status_after(img, d.action);
    record(tx, &d.id, (&label, new_status), reviewer, now).await?;
    captions_follow(tx, img, new_status, reviewer, now).await
}

/// The pending captions decided with their pending image; whether it became approved.
async fn captions_follow(
    tx: &mut Tx<'_>,
    img: &ImageRow,
    new_status: ImageStatus,
    reviewer: &str,
    now: i64,
) -> Result<(bool, Vec<String>)> {
    // The card showed the pending image with its pending captions: they share its fate.
    let mut decided = Vec::new();
    if img.status == ImageStatus::Pending && new_status != ImageStatus::Pending {
        decided = sqlx::query_scalar(
            "UPDATE captions SET status = $1, reviewed_at = $2, reviewed_by = $3 \
             WHERE image_id = $4 AND status = $5 RETURNING caption",
        )
        .bind(new_status)
        .bind(now)
        .bind(reviewer)
        .bind(&img.id)
        .bind(ImageStatus::Pending)
        .fetch_all(&mut **tx)
        .await?;
    }
    let newly = new_status == ImageStatus::Approved && img.status != ImageStatus::Approved;
    Ok((newly, decided))
}

async fn decide_caption(
    tx: &mut Tx<'_>,
    c: &CaptionDecision,
    reviewer: &str,
    now: i64,
) -> Result<()> {
    let status = match c.action {
        CaptionAction::Approve => ImageStatus::Approved,
        CaptionAction::Reject => ImageStatus::Rejected,
    };
    let done = sqlx::query(
        "UPDATE captions SET status = $1, reviewed_at = $2, reviewed_by = $3 \
         WHERE image_id = $4 AND caption = $5",
    )
    .bind(status)
    .bind(now)
    .bind(reviewer)
    .bind(&c.image_id)
    .bind(&c.caption)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!(
            "image {:?} has no caption {:?}",
            c.image_id, c.caption
        )));
    }
    Ok(())
}
