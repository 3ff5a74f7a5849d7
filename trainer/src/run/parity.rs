//! The one parity rule: what candle computed and what tract computes on the exported bytes
//! may differ by at most [`PARITY_TOLERANCE`] on any component, or the run fails.

use std::fmt::Display;

use crate::{Error, Result};

/// Largest accepted |candle − tract| on any output component (a probability, an embedding
/// component).
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// Largest |a − b| over the components; NaN when a component is NaN or the lengths differ,
/// so a broken output never passes.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NAN;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, |m, d| {
            if d.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        })
}

/// A running candle ↔ tract comparison of one kind of output.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Parity {
    /// Outputs compared so far.
    pub compared: usize,
    /// Largest difference seen so far.
    pub max_abs_diff: f32,
}

impl Parity {
    /// Compare one output of candle with tract's; an error names `what` (e.g. `"image
    /// embeddings"`) when they differ beyond [`PARITY_TOLERANCE`].
    pub fn compare(&mut self, what: impl Display, candle: &[f32], tract: &[f32]) -> Result<()> {
        let d = max_abs_diff(candle, tract);
        self.compared += 1;
        self.max_abs_diff = self.max_abs_diff.max(d);
        if d.is_nan() || d > PARITY_TOLERANCE {
            return Err(Error::Parity(format!(
                "{what} differ by {d:e} between candle and tract (tolerance {PARITY_TOLERANCE:e})"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_length_mismatch_fail() {
        let mut p = Parity::default();
        p.compare("x", &[0.5, 0.25], &[0.5, 0.25 + 5e-5]).unwrap();
        assert_eq!(p.compared, 1);
        assert!(p.compare("x", &[0.5], &[0.5 + 2e-4]).is_err());
        assert!(p.compare("x", &[f32::NAN], &[0.0]).is_err());
        assert!(max_abs_diff(&[1.0], &[1.0, 2.0]).is_nan());
    }
}
