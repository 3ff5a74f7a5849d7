//! The `/api/limits` document: what the server accepts, so clients check before sending (the
//! browser's outbox refuses a contribution the server would refuse, with the same numbers).

use serde::{Deserialize, Serialize};

/// Request and content limits the server enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    /// Files per upload request.
    pub max_files: u32,
    /// Bytes per upload or prediction request body.
    pub max_upload_bytes: u64,
    /// Largest image side accepted on upload, in pixels.
    pub max_image_side: u32,
    /// Largest image area accepted on upload, in pixels.
    pub max_image_pixels: u64,
    /// Largest image area accepted by the server's prediction route, in pixels.
    pub max_predict_pixels: u64,
    /// Longest caption, in characters.
    pub max_caption_chars: u32,
    /// Captions an image may carry (approved and pending together).
    pub max_captions_per_image: u32,
    /// Upload requests per minute per client (steady rate; admin requests are exempt).
    pub upload_rate_per_min: u32,
    /// Prediction requests per minute per client.
    pub predict_rate_per_min: u32,
    /// Images a client may have waiting for review.
    pub max_pending_per_client: u32,
}

impl Default for Limits {
    /// The server's defaults (what a client assumes before it has asked).
    fn default() -> Self {
        Limits {
            max_files: 200,
            max_upload_bytes: 32 * 1024 * 1024,
            max_image_side: 8192,
            max_image_pixels: 40_000_000,
            max_predict_pixels: 40_000_000,
            max_caption_chars: 500,
            max_captions_per_image: 20,
            upload_rate_per_min: 120,
            predict_rate_per_min: 240,
            max_pending_per_client: 1000,
        }
    }
}
