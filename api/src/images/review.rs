//! Review decisions: approve, reject or relabel images and approve or reject captions, all in
//! one transaction. Deciding a pending image decides its pending captions the same way (the
//! reviewer saw them on the image's card); captions added later to an approved image wait in
//! the caption queue.

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
    let new_status = match d.action {
        Action::Approve => ImageStatus::Approved,
        Action::Reject => ImageStatus::Rejected,
        Action::Relabel => img.status,
    };
    sqlx::query(
        "UPDATE images SET label = $1, status = $2, reviewed_at = $3, reviewed_by = $4 WHERE id = $5",
    )
    .bind(&label)
    .bind(new_status)
    .bind(now)
    .bind(reviewer)
    .bind(&d.id)
    .execute(&mut **tx)
    .await?;
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
        .bind(&d.id)
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
