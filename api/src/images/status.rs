//! Image review states as strings, for SQL written by hand (`jobs`); new code uses
//! [`contract::ImageStatus`], which binds and decodes as the same TEXT.

/// Uploaded by a non-admin, waiting for review.
pub const PENDING: &str = "pending";
/// Used for training.
pub const APPROVED: &str = "approved";
/// Kept for the record, never trained on.
pub const REJECTED: &str = "rejected";
