//! Review decisions: approve, reject or relabel images, all in one transaction.

pub use contract::api::{Action, Decision};

use super::query::{ImageRow, get_image};
use crate::db::Db;
use crate::util::now_ms;
use crate::{Error, Result};
use contract::ImageStatus;

/// Apply review decisions in one transaction (any unknown id or label: nothing applied).
/// Returns the updated images and how many became newly approved.
pub async fn review(
    db: &Db,
    decisions: &[Decision],
    reviewer: &str,
) -> Result<(Vec<ImageRow>, usize)> {
    if decisions.is_empty() {
        return Err(Error::BadRequest("no decisions".into()));
    }
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    let mut newly_approved = 0;
    let mut ids = Vec::new();
    for d in decisions {
        let img: ImageRow = sqlx::query_as("SELECT * FROM images WHERE id = $1")
            .bind(&d.id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no image {:?}", d.id)))?;
        let label = match (&d.label, d.action) {
            (Some(l), _) => {
                let known: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM labels WHERE dataset_id = $1 AND name = $2",
                )
                .bind(&img.dataset_id)
                .bind(l)
                .fetch_one(&mut *tx)
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
        if new_status == ImageStatus::Approved && img.status != ImageStatus::Approved {
            newly_approved += 1;
        }
        sqlx::query(
            "UPDATE images SET label = $1, status = $2, reviewed_at = $3, reviewed_by = $4 WHERE id = $5",
        )
        .bind(&label)
        .bind(new_status)
        .bind(now)
        .bind(reviewer)
        .bind(&d.id)
        .execute(&mut *tx)
        .await?;
        ids.push(d.id.clone());
    }
    tx.commit().await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(get_image(db, &id).await?);
    }
    Ok((out, newly_approved))
}
