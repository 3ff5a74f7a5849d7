//! The shipped backbone's weights in 8 bits: weight-only, per output channel, symmetric int8,
//! expanded back to `f32` before tract builds the model, so inference runs the same `f32`
//! kernels as the full file (tract's int8 compute is no speed path for convolutions, and its
//! ONNX `DequantizeLinear` reads one scale per tensor only). Written by the trainer
//! ([`encode`]), read by the api and the browser ([`decode`]): one definition of the format.
//!
//! File layout (little-endian):
//!
//! ```text
//! b"EDGEQ8\0\x01"                      magic + format version
//! u32 n, n bytes                       the ONNX graph, the quantised initializers emptied
//! u32 count                            quantised tensors, each:
//!   u16 n, n bytes                     initializer name (UTF-8)
//!   u32 c, c × f32                     one scale per output channel (dimension 0)
//!   u64 n, n × i8                      round(w / scale), in the tensor's own order
//! ```
//!
//! Every `f32` initializer of rank ≥ 2 (the convolution weights: 97 % of the backbone's
//! bytes) is quantised, except the stem's (the nodes fed by the graph input); biases and
//! scalars stay `f32` in the graph. A channel's scale is its
//! largest magnitude / 127, so every weight is within half a step of its original.

use prost::Message;
use tract_onnx::pb;

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"EDGEQ8\0\x01";
const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;

/// A whole-`f32` ONNX graph as the 8-bit backbone file.
pub fn encode(onnx: &[u8]) -> Result<Vec<u8>> {
    let mut model = pb::ModelProto::decode(onnx).map_err(Error::engine)?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| Error::Graph("the ONNX file has no graph".into()))?;
    // The weights of nodes fed by the graph's input (the stem convolution, on raw pixels) stay
    // `f32`: 864 values (3 KB), whose rounding every later layer inherits. (Measured on the
    // bundled photos, BENCHMARKS.md: 46 of 46 test images keep their top-1 label this way,
    // 45 with the stem quantised too.)
    let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let stem: Vec<String> = graph
        .node
        .iter()
        .filter(|n| {
            n.input
                .first()
                .is_some_and(|i| inputs.contains(&i.as_str()))
        })
        .flat_map(|n| n.input.iter().skip(1).cloned())
        .collect();
    let mut tensors = Vec::new();
    for t in &mut graph.initializer {
        if t.data_type != FLOAT || t.dims.len() < 2 {
            continue;
        }
        if stem.contains(&t.name) {
            continue;
        }
        let channels = usize::try_from(t.dims[0]).map_err(Error::engine)?;
        let values = floats(t)?;
        if channels == 0 || !values.len().is_multiple_of(channels) {
            return Err(Error::Graph(format!(
                "{}: {} values do not split into {channels} channels",
                t.name,
                values.len()
            )));
        }
        let per = values.len() / channels;
        let scales: Vec<f32> = values
            .chunks(per)
            .map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0)
            .collect();
        let q: Vec<u8> = values
            .chunks(per)
            .zip(&scales)
            .flat_map(|(c, &s)| {
                c.iter().map(move |&v| {
                    let q = if s > 0.0 { (v / s).round() } else { 0.0 };
                    (q.clamp(-127.0, 127.0) as i8) as u8
                })
            })
            .collect();
        tensors.push((t.name.clone(), scales, q));
        t.raw_data.clear();
        t.float_data.clear();
    }
    let skeleton = model.encode_to_vec();
    let mut out =
        Vec::with_capacity(skeleton.len() + tensors.iter().map(|t| t.2.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32_len(skeleton.len())?.to_le_bytes());
    out.extend_from_slice(&skeleton);
    out.extend_from_slice(&u32_len(tensors.len())?.to_le_bytes());
    for (name, scales, q) in tensors {
        let n = u16::try_from(name.len()).map_err(Error::engine)?;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&u32_len(scales.len())?.to_le_bytes());
        for s in scales {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&(q.len() as u64).to_le_bytes());
        out.extend_from_slice(&q);
    }
    Ok(out)
}

/// The ONNX graph of an 8-bit backbone file, its weights expanded to `f32`. Refuses a file
/// that is not in this format, is cut short, or whose tensors do not fit the graph.
pub fn decode(bytes: &[u8]) -> Result<pb::ModelProto> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(bad("not an 8-bit backbone file (magic)"));
    }
    let n = r.u32()? as usize;
    let mut model = pb::ModelProto::decode(r.take(n)?).map_err(Error::engine)?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| bad("the graph is missing"))?;
    let count = r.u32()?;
    for _ in 0..count {
        let n = usize::from(u16::from_le_bytes(r.array()?));
        let name =
            std::str::from_utf8(r.take(n)?).map_err(|_| bad("a tensor name is not UTF-8"))?;
        let channels = r.u32()? as usize;
        let scales: Vec<f32> = r
            .take(
                channels
                    .checked_mul(4)
                    .ok_or_else(|| bad("scale count overflows"))?,
            )?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let len = usize::try_from(u64::from_le_bytes(r.array()?)).map_err(Error::engine)?;
        let q = r.take(len)?;
        let t = graph
            .initializer
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| bad(&format!("no initializer {name:?} in the graph")))?;
        let numel = t.dims.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        let fits = t.data_type == FLOAT
            && t.raw_data.is_empty()
            && t.float_data.is_empty()
            && t.dims.first().and_then(|&d| usize::try_from(d).ok()) == Some(channels)
            && channels > 0
            && numel == Some(len)
            && len.is_multiple_of(channels);
        if !fits {
            return Err(bad(&format!(
                "{name}: {len} values in {channels} channels do not fit {:?}",
                t.dims
            )));
        }
        let per = len / channels;
        let mut raw = Vec::with_capacity(len * 4);
        for (c, &s) in q.chunks(per).zip(&scales) {
            for &v in c {
                raw.extend_from_slice(&(f32::from(v as i8) * s).to_le_bytes());
            }
        }
        t.raw_data = raw;
    }
    if r.at != bytes.len() {
        return Err(bad("bytes after the last tensor"));
    }
    if let Some(t) = graph.initializer.iter().find(|t| {
        t.data_type == FLOAT
            && t.dims.len() >= 2
            && t.raw_data.is_empty()
            && t.float_data.is_empty()
    }) {
        return Err(bad(&format!("initializer {:?} has no weights", t.name)));
    }
    Ok(model)
}

fn bad(why: &str) -> Error {
    Error::Integrity(format!("8-bit backbone: {why}"))
}

fn u32_len(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(Error::engine)
}

/// The `f32` values of an initializer (raw little-endian bytes or `float_data`).
fn floats(t: &pb::TensorProto) -> Result<Vec<f32>> {
    if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            return Err(Error::Graph(format!("{}: raw data is not f32", t.name)));
        }
        Ok(t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    } else {
        Ok(t.float_data.clone())
    }
}

/// A cursor over the file that refuses to read past its end.
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
            .ok_or_else(|| bad("the file is cut short"))?;
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

    fn tensor(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    /// A graph with a 3-channel conv weight (one channel all zeros), a bias and a scalar.
    fn model() -> (Vec<u8>, Vec<f32>) {
        let w: Vec<f32> = (0..3 * 2 * 2 * 2)
            .map(|i| {
                if i < 8 {
                    0.0
                } else {
                    ((i * 37 % 17) as f32 - 8.0) * 0.013
                }
            })
            .collect();
        let graph = pb::GraphProto {
            name: "g".into(),
            initializer: vec![
                tensor("conv.weight", &[3, 2, 2, 2], &w),
                tensor("conv.bias", &[3], &[0.5, -0.25, 1.0]),
                tensor("relu6.max", &[], &[6.0]),
                tensor("stem.weight", &[2, 1, 1, 1], &[0.123_456_7, -1.0e-3]),
            ],
            input: vec![pb::ValueInfoProto {
                name: "image".into(),
                ..Default::default()
            }],
            node: vec![pb::NodeProto {
                op_type: "Conv".into(),
                input: vec!["image".into(), "stem.weight".into()],
                output: vec!["stem".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = pb::ModelProto {
            ir_version: 7,
            graph: Some(graph),
            ..Default::default()
        };
        (m.encode_to_vec(), w)
    }

    #[test]
    fn weights_come_back_within_half_a_step_per_channel() {
        let (onnx, w) = model();
        let q = encode(&onnx).unwrap();
        assert!(q.starts_with(MAGIC));
        let back = decode(&q).unwrap();
        let g = back.graph.unwrap();
        let got = floats(&g.initializer[0]).unwrap();
        assert_eq!(got.len(), w.len());
        for (c, (orig, dec)) in w.chunks(8).zip(got.chunks(8)).enumerate() {
            let step = orig.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in orig.iter().zip(dec) {
                assert!((a - b).abs() <= step * 0.5001, "channel {c}: {a} vs {b}");
            }
            if c == 0 {
                assert!(
                    dec.iter().all(|v| *v == 0.0),
                    "an all-zero channel stays zero"
                );
            }
        }
        // Biases and scalars stay f32, bit for bit.
        assert_eq!(floats(&g.initializer[1]).unwrap(), [0.5, -0.25, 1.0]);
        assert_eq!(floats(&g.initializer[2]).unwrap(), [6.0]);
        // The stem (fed by the graph input) keeps its f32 weights.
        assert_eq!(floats(&g.initializer[3]).unwrap(), [0.123_456_7, -1.0e-3]);
        assert_eq!(g.initializer[0].dims, [3, 2, 2, 2]);
        // Deterministic: the same graph gives the same bytes (the file's address).
        assert_eq!(encode(&onnx).unwrap(), q);
    }

    #[test]
    fn damaged_files_are_refused() {
        let (onnx, _) = model();
        let q = encode(&onnx).unwrap();
        let err = |bytes: &[u8]| decode(bytes).unwrap_err().to_string();
        assert!(err(&q[..q.len() - 1]).contains("cut short"));
        assert!(err(&[&q[..], &[0u8]].concat()).contains("bytes after the last tensor"));
        let mut magic = q.clone();
        magic[0] = b'X';
        assert!(err(&magic).contains("magic"));
        // No tensor section at all: the emptied weights are noticed.
        let n = u32::from_le_bytes(q[8..12].try_into().unwrap()) as usize;
        let mut none = q[..12 + n].to_vec();
        none.extend_from_slice(&0u32.to_le_bytes());
        assert!(err(&none).contains("has no weights"));
    }
}
