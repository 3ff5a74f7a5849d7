//! Small helpers: clock, random ids, bounded query numbers.

use rand::RngCore;

use crate::{Error, Result};

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A new id: `<prefix>-<time hex><random>`, sortable by creation time, key-safe.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:011x}{}", now_ms(), random_hex(4))
}

/// A query number within `lo..=hi` (as the OpenAPI document states it), or a 400.
pub fn in_range(name: &str, v: Option<i64>, lo: i64, hi: i64) -> Result<Option<i64>> {
    match v {
        Some(n) if !(lo..=hi).contains(&n) => Err(Error::BadRequest(format!(
            "{name} must be {lo} to {hi} (got {n})"
        ))),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_key_safe_and_distinct() {
        let a = new_id("run");
        let b = new_id("run");
        assert_ne!(a, b);
        assert!(crate::storage::is_safe_id(&a), "{a}");
    }
}
