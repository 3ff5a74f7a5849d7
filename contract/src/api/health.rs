//! The `/health` (liveness) and `/ready` (readiness) reports.

use serde::{Deserialize, Serialize};

/// Health of one dependency.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Check {
    /// Reachable and working.
    pub ok: bool,
    /// Round trip in ms.
    pub ms: f64,
    /// Error, if any.
    pub error: Option<String>,
}

/// Liveness: the process answers (no dependency is touched).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
    /// Server version.
    pub version: String,
}

/// Readiness report.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// Database probe.
    pub database: Check,
    /// Storage probe (write, read, delete; the result is reused for a few seconds).
    pub storage: Check,
    /// Champion classifier, if any.
    pub model: Option<String>,
    /// Server version.
    pub version: String,
}
