//! Image review states, as stored in the `images.status` column.

/// Uploaded by a non-admin, waiting for review.
pub const PENDING: &str = "pending";
/// Used for training.
pub const APPROVED: &str = "approved";
/// Kept for the record, never trained on.
pub const REJECTED: &str = "rejected";
