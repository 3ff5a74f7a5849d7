//! The shipped backbone's weights in 8 bits: weight-only, per output channel, symmetric int8,
//! expanded back to `f32` when tract builds the model, so inference runs the same `f32`
//! kernels as the full file (tract's int8 compute is no speed path for convolutions, and its
//! ONNX `DequantizeLinear` reads one scale per tensor only). Written by the trainer
//! ([`encode`]), read by the api and the browser ([`decode`]): one definition of the format.
//!
//! `backbone.q8` is the backbone's NNEF tar ([`crate::nnef`]) in which every `f32` tensor of
//! rank ≥ 2 (the convolution and matrix-product weights: 97 % of the backbone's bytes),
//! except the stem's (the constants of the nodes fed by the graph input), is stored as a
//! `<label>.q8` entry instead of `<label>.dat`; biases and scalars stay `.dat` (`f32`).
//! A `.q8` entry (little-endian):
//!
//! ```text
//! b"EDGEQ8T\x01"                       magic + format version
//! u32 rank, rank × u64 dims            the tensor's shape
//! c × f32                              one scale per output channel: c is the first dimension
//!                                      larger than 1 (dimension 0 of a convolution's OIHW
//!                                      kernel; dimension 1 of the [1, out, in] weights tract
//!                                      gives the matrix products of 1×1 convolutions)
//! n × i8                               round(w / scale), in the tensor's own order
//! ```
//!
//! A channel's scale is its largest magnitude / 127, so every weight is within half a step of
//! its original.
//!
//! The product head (`product_head.nnef`) stores its word table the same way, one scale per
//! word ([`crate::nnef::export_product_head`]); the trainer scores the values [`round_trip`]
//! gives back, so what it measured is what the file computes.

use crate::{Error, Result};
use tract_nnef::prelude::*;

const MAGIC: &[u8; 8] = b"EDGEQ8T\x01";

/// The backbone's `f32` ONNX graph (input `[batch, 3, size, size]`) as the 8-bit backbone
/// file: decluttered for one `size × size` image, written as NNEF, weights in 8 bits.
#[cfg(not(target_arch = "wasm32"))]
pub fn encode(onnx: &[u8], size: usize) -> Result<Vec<u8>> {
    crate::nnef::export(onnx, &[f32::fact([1, 3, size, size])], true)
}

/// The typed graph of an 8-bit backbone file, its weights expanded to `f32`. Refuses a file
/// that is not an NNEF tar, whose entries are cut short or do not fit the graph.
pub fn decode(bytes: &[u8]) -> Result<TypedModel> {
    crate::nnef::load(bytes).map_err(|e| bad(&e.to_string()))
}

/// Which tensors of an NNEF tar go to 8 bits, by label and tensor.
pub type Pick<'a> = &'a dyn Fn(&str, &Tensor) -> bool;

/// Rewrite an NNEF tar: the `f32` tensors of rank ≥ 2 that `wanted` picks (by label and
/// tensor) become `.q8` entries. Entries keep their order; headers are fixed (mode, owner,
/// time), so the same tar gives the same bytes.
#[cfg(not(target_arch = "wasm32"))]
pub fn quantise_tar(tar: &[u8], wanted: Pick<'_>) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(Error::engine)? {
        let mut entry = entry.map_err(Error::engine)?;
        let path = entry.path().map_err(Error::engine)?.into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(Error::engine)?;
        let name = path.to_string_lossy().into_owned();
        let (name, bytes) = match name.strip_suffix(".dat") {
            Some(label) => {
                let tensor = tract_nnef::tensors::read_tensor(&bytes[..]).map_err(Error::engine)?;
                if tensor.datum_type() == f32::datum_type()
                    && tensor.rank() >= 2
                    && wanted(label, &tensor)
                {
                    (format!("{label}.q8"), encode_tensor(&tensor)?)
                } else {
                    (name, bytes)
                }
            }
            _ => (name, bytes),
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut header, &name, &bytes[..])
            .map_err(Error::engine)?;
    }
    out.into_inner().map_err(Error::engine)
}

/// The output channels of a weight tensor: its first dimension larger than 1 (the leading
/// ones hold a single block, so the channels are contiguous runs of the data either way).
fn channels(shape: &[usize]) -> usize {
    shape.iter().copied().find(|&d| d > 1).unwrap_or(1)
}

/// One `f32` tensor (rank ≥ 1; output channels: [`channels`]) as a `.q8` entry.
#[cfg(not(target_arch = "wasm32"))]
pub fn encode_tensor(tensor: &Tensor) -> Result<Vec<u8>> {
    let plain = tensor.try_as_plain_ram().map_err(Error::engine)?;
    let values = plain.as_slice::<f32>().map_err(Error::engine)?;
    let shape = tensor.shape();
    let channels = channels(shape);
    if values.is_empty() || !values.len().is_multiple_of(channels) {
        return Err(Error::Graph(format!(
            "{} values do not split into {channels} channels",
            values.len()
        )));
    }
    let per = values.len() / channels;
    let scales: Vec<f32> = values
        .chunks(per.max(1))
        .map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0)
        .collect();
    let mut out = Vec::with_capacity(16 + shape.len() * 8 + channels * 4 + values.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
    for &d in shape {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    for s in &scales {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for (c, &s) in values.chunks(per.max(1)).zip(&scales) {
        out.extend(c.iter().map(|&v| {
            let q = if s > 0.0 { (v / s).round() } else { 0.0 };
            (q.clamp(-127.0, 127.0) as i8) as u8
        }));
    }
    Ok(out)
}

/// The values an `f32` tensor of `shape` comes back as from a `.q8` entry: what a model
/// stored in 8 bits computes with, so a trainer can score (and export to ONNX) the very
/// weights the 8-bit file carries.
#[cfg(not(target_arch = "wasm32"))]
pub fn round_trip(values: &[f32], shape: &[usize]) -> Result<Vec<f32>> {
    let tensor = Tensor::from_shape(shape, values).map_err(Error::engine)?;
    let back = decode_tensor(&encode_tensor(&tensor)?)?;
    let plain = back.try_as_plain_ram().map_err(Error::engine)?;
    Ok(plain.as_slice::<f32>().map_err(Error::engine)?.to_vec())
}

/// A `.q8` entry back as its `f32` tensor. Refuses a bad magic, a shape that does not
/// match the bytes, bytes cut short or left over, and scales that are not finite.
pub fn decode_tensor(bytes: &[u8]) -> Result<Tensor> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(bad("not an 8-bit tensor (magic)"));
    }
    let rank = r.u32()? as usize;
    if rank == 0 || rank > 8 {
        return Err(bad(&format!("rank {rank}")));
    }
    let mut shape = Vec::with_capacity(rank);
    for _ in 0..rank {
        shape.push(usize::try_from(u64::from_le_bytes(r.array()?)).map_err(Error::engine)?);
    }
    let len = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n > 0)
        .ok_or_else(|| bad(&format!("shape {shape:?}")))?;
    let channels = channels(&shape);
    let scales: Vec<f32> = r
        .take(
            channels
                .checked_mul(4)
                .ok_or_else(|| bad("scale count overflows"))?,
        )?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return Err(bad("a scale is not a finite non-negative number"));
    }
    let q = r.take(len)?;
    if r.at != bytes.len() {
        return Err(bad("bytes after the tensor"));
    }
    let per = len / channels;
    let mut values = Vec::with_capacity(len);
    for (c, &s) in q.chunks(per).zip(&scales) {
        values.extend(c.iter().map(|&v| f32::from(v as i8) * s));
    }
    Tensor::from_shape(&shape, &values).map_err(Error::engine)
}

fn bad(why: &str) -> Error {
    Error::Integrity(format!("8-bit backbone: {why}"))
}

/// A cursor over the bytes that refuses to read past their end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| bad("cut short"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A 3-channel weight, one channel all zeros.
    fn weight() -> Tensor {
        let w: Vec<f32> = (0..3 * 2 * 2 * 2)
            .map(|i| {
                if i < 8 {
                    0.0
                } else {
                    ((i * 37 % 17) as f32 - 8.0) * 0.013
                }
            })
            .collect();
        Tensor::from_shape(&[3, 2, 2, 2], &w).unwrap()
    }

    #[test]
    fn weights_come_back_within_half_a_step_per_channel() {
        let w = weight();
        let q = encode_tensor(&w).unwrap();
        assert!(q.starts_with(MAGIC));
        let back = decode_tensor(&q).unwrap();
        assert_eq!(back.shape(), [3, 2, 2, 2]);
        let (pw, pb) = (
            w.try_as_plain_ram().unwrap(),
            back.try_as_plain_ram().unwrap(),
        );
        let (orig, got) = (pw.as_slice::<f32>().unwrap(), pb.as_slice::<f32>().unwrap());
        for (c, (o, d)) in orig.chunks(8).zip(got.chunks(8)).enumerate() {
            let step = o.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in o.iter().zip(d) {
                assert!((a - b).abs() <= step * 0.5001, "channel {c}: {a} vs {b}");
            }
            if c == 0 {
                assert!(
                    d.iter().all(|v| *v == 0.0),
                    "an all-zero channel stays zero"
                );
            }
        }
        // Deterministic: the same tensor gives the same bytes (the file's address).
        assert_eq!(encode_tensor(&w).unwrap(), q);
    }

    #[test]
    fn matrix_weights_with_a_leading_one_are_scaled_per_output_row() {
        // tract's 1×1 convolutions are matrix products with [1, out, in] weights: channel i
        // of this one has magnitude 10^-i, so one scale for all would flatten the small rows.
        let w: Vec<f32> = (0..3 * 8i32)
            .map(|i| ((i % 8) as f32 - 3.5) * 10f32.powi(-(i / 8)))
            .collect();
        let q = encode_tensor(&Tensor::from_shape(&[1, 3, 8], &w).unwrap()).unwrap();
        // magic, rank, 3 dims, then 3 scales (one per row), then 24 values.
        assert_eq!(q.len(), 8 + 4 + 3 * 8 + 3 * 4 + 24);
        let back = decode_tensor(&q).unwrap();
        assert_eq!(back.shape(), [1, 3, 8]);
        let pb = back.try_as_plain_ram().unwrap();
        for (row, (o, d)) in w
            .chunks(8)
            .zip(pb.as_slice::<f32>().unwrap().chunks(8))
            .enumerate()
        {
            let step = o.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in o.iter().zip(d) {
                assert!((a - b).abs() <= step * 0.5001, "row {row}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn damaged_tensors_are_refused() {
        let q = encode_tensor(&weight()).unwrap();
        let err = |bytes: &[u8]| decode_tensor(bytes).unwrap_err().to_string();
        assert!(err(&q[..q.len() - 1]).contains("cut short"));
        assert!(err(&[&q[..], &[0u8]].concat()).contains("bytes after the tensor"));
        let mut magic = q.clone();
        magic[0] = b'X';
        assert!(err(&magic).contains("magic"));
        let mut nan = q.clone();
        nan[12 + 4 * 8..12 + 4 * 8 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(err(&nan).contains("finite"));
        let mut zero = q.clone();
        zero[12..20].copy_from_slice(&0u64.to_le_bytes());
        assert!(err(&zero).contains("shape"));
    }
}
