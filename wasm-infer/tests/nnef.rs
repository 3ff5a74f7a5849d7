//! The browser's graph format (`wasm_infer::nnef`): an ONNX graph exported as NNEF computes
//! what the ONNX graph computes, deterministically; embedding lookups (the text encoder's
//! `Gather`) are read by the restricted loader; an operation browsers could not load is
//! refused at export; damaged files are refused when loaded.
#![allow(clippy::unwrap_used)]

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

fn dims_info(
    name: &str,
    dims: &[Option<i64>],
    elem: pb::tensor_proto::DataType,
) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(n) => Value::DimValue(*n),
                                None => Value::DimParam("batch".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], n: usize, seed: u32) -> pb::TensorProto {
    let values: Vec<f32> = (0..n)
        .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn model(graph: pb::GraphProto) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

const FLOAT: pb::tensor_proto::DataType = pb::tensor_proto::DataType::Float;

/// A classifier head: `features [batch, 16]` → Gemm → Softmax → `probs [batch, 5]`.
fn head(op: &str) -> Vec<u8> {
    let axis = pb::AttributeProto {
        name: "axis".into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    };
    let last = if op == "Softmax" {
        node("Softmax", &["logits"], "probs", vec![axis])
    } else {
        node(op, &["logits"], "probs", vec![])
    };
    model(pb::GraphProto {
        name: "head".into(),
        node: vec![
            node("Gemm", &["features", "w", "b"], "logits", vec![]),
            last,
        ],
        initializer: vec![floats("w", &[16, 5], 80, 7), floats("b", &[5], 5, 11)],
        input: vec![dims_info("features", &[None, Some(16)], FLOAT)],
        output: vec![dims_info("probs", &[None, Some(5)], FLOAT)],
        ..Default::default()
    })
}

fn run_onnx(onnx: &[u8], inputs: TVec<TValue>, facts: &[TypedFact]) -> Vec<f32> {
    let mut m = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .unwrap();
    for (i, f) in facts.iter().enumerate() {
        m = m.with_input_fact(i, f.clone().into()).unwrap();
    }
    run(m.into_optimized().unwrap(), inputs)
}

fn run_nnef(nnef: &[u8], inputs: TVec<TValue>) -> Vec<f32> {
    run(wasm_infer::nnef::load(nnef).unwrap(), inputs)
}

fn run(model: TypedModel, inputs: TVec<TValue>) -> Vec<f32> {
    let out = model
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
        .run(inputs)
        .unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn a_head_as_nnef_computes_what_its_onnx_computes() {
    let onnx = head("Softmax");
    let nnef = wasm_infer::nnef::export_head(&onnx, 16).unwrap();
    assert_eq!(
        wasm_infer::nnef::export_head(&onnx, 16).unwrap(),
        nnef,
        "deterministic: the same graph gives the same bytes"
    );
    let x: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) / 4.0).collect();
    let input = || tvec!(Tensor::from_shape(&[1, 16], &x).unwrap().into());
    let want = run_onnx(&onnx, input(), &[f32::fact([1, 16])]);
    let got = run_nnef(&nnef, input());
    assert_eq!(want.len(), 5);
    for (a, b) in want.iter().zip(&got) {
        assert!((a - b).abs() <= 1e-6, "{want:?} vs {got:?}");
    }
    // Planned for one row: the graph's input is [1, 16], named as in the ONNX.
    let m = wasm_infer::nnef::load(&nnef).unwrap();
    assert_eq!(m.node(m.inputs[0].node).name, "features");
    assert_eq!(
        m.outlet_fact(m.inputs[0]).unwrap().shape.as_concrete(),
        Some(&[1usize, 16][..])
    );
}

#[test]
fn an_embedding_lookup_reads_back_with_the_browsers_loader() {
    // ids [batch, 4] (int64) → Gather from a 10 × 3 table → ReduceSum over words, times the
    // mask's count: the text encoder's shape of graph.
    let ints = pb::tensor_proto::DataType::Int64;
    let onnx = model(pb::GraphProto {
        name: "text".into(),
        node: vec![
            node("Gather", &["table", "ids"], "words", vec![]),
            node(
                "ReduceSum",
                &["words", "axes"],
                "embedding",
                vec![pb::AttributeProto {
                    name: "keepdims".into(),
                    r#type: pb::attribute_proto::AttributeType::Int as i32,
                    i: 0,
                    ..Default::default()
                }],
            ),
        ],
        initializer: vec![
            floats("table", &[10, 3], 30, 3),
            pb::TensorProto {
                name: "axes".into(),
                dims: vec![1],
                data_type: ints as i32,
                int64_data: vec![1],
                ..Default::default()
            },
        ],
        input: vec![dims_info("ids", &[None, Some(4)], ints)],
        output: vec![dims_info("embedding", &[None, Some(3)], FLOAT)],
        ..Default::default()
    });
    let nnef = wasm_infer::nnef::export(&onnx, &[i64::fact([1, 4])], false).unwrap();
    let ids = [3i64, 0, 9, 3];
    let input = || tvec!(Tensor::from_shape(&[1, 4], &ids).unwrap().into());
    let want = run_onnx(&onnx, input(), &[i64::fact([1, 4])]);
    assert_eq!(run_nnef(&nnef, input()), want);
}

#[test]
fn an_op_browsers_cannot_load_is_refused_at_export() {
    // Erf is `tract_core_erf` in NNEF: not in the browsers' loader.
    let err = wasm_infer::nnef::export_head(&head("Erf"), 16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NNEF graph"), "{err}");
}

#[test]
fn damaged_nnef_files_are_refused() {
    let nnef = wasm_infer::nnef::export_head(&head("Softmax"), 16).unwrap();
    let err = |bytes: &[u8]| wasm_infer::nnef::load(bytes).unwrap_err().to_string();
    // Cut inside the weights, or not a tar at all.
    assert!(err(&nnef[..nnef.len() / 2]).contains("NNEF graph"));
    assert!(err(b"not a tar file at all, not even close").contains("NNEF graph"));
    // An entry no export writes, or a tensor given twice.
    let with = |name: &str, data: &[u8]| {
        let mut b = tar::Builder::new(Vec::new());
        let mut a = tar::Archive::new(&nnef[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut h = e.header().clone();
            let path = e.path().unwrap().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            b.append_data(&mut h, path, &bytes[..]).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    };
    assert!(err(&with("evil.sh", b"echo")).contains("unexpected entry"));
    // A link (or sparse file) entry, which could stand for more bytes than it holds.
    let link = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "graph.nnef", "/etc/passwd").unwrap();
        b.into_inner().unwrap()
    };
    assert!(err(&link).contains("not a plain file"));
    let (name, dat) = {
        let mut a = tar::Archive::new(&nnef[..]);
        let mut e = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_string_lossy().ends_with(".dat"))
            .unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        (e.path().unwrap().to_string_lossy().into_owned(), bytes)
    };
    assert!(err(&with(&name, &dat)).contains("appears twice"));
    // A tensor header that declares more data than its file holds (tract would allocate it).
    let mut lying = dat.clone();
    lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let lying_name = format!("{}z.dat", name.trim_end_matches(".dat"));
    assert!(err(&with(&lying_name, &lying)).contains("header declares"));
    // The graph text edited to name a tensor the file does not hold.
    // (Same length, so the archive itself stays well-formed.)
    let label = name.trim_end_matches(".dat");
    let other = format!("{}#", &label[..label.len() - 1]);
    let from = format!("label = \"{label}\"").into_bytes();
    let at = nnef.windows(from.len()).position(|w| w == from).unwrap();
    let mut edited = nnef.clone();
    edited[at..at + from.len()].copy_from_slice(format!("label = \"{other}\"").as_bytes());
    let e = err(&edited);
    assert!(e.contains(&other), "{e}");
}

#[test]
fn the_8bit_form_stores_weights_in_a_quarter_of_the_bytes_and_keeps_the_stem() {
    // A stem convolution on the image (kept in f32), then a second convolution (8 bits).
    let onnx = model(pb::GraphProto {
        name: "backbone".into(),
        node: vec![
            node("Conv", &["image", "stem.w"], "stem", vec![]),
            node("Conv", &["stem", "conv.w"], "features", vec![]),
        ],
        initializer: vec![
            floats("stem.w", &[8, 3, 3, 3], 8 * 27, 5),
            floats("conv.w", &[64, 8, 3, 3], 64 * 72, 9),
        ],
        input: vec![dims_info(
            "image",
            &[None, Some(3), Some(12), Some(12)],
            FLOAT,
        )],
        output: vec![dims_info(
            "features",
            &[None, Some(64), Some(8), Some(8)],
            FLOAT,
        )],
        ..Default::default()
    });
    let fact = f32::fact([1, 3, 12, 12]);
    let full = wasm_infer::nnef::export(&onnx, std::slice::from_ref(&fact), false).unwrap();
    let q8 = wasm_infer::nnef::export(&onnx, std::slice::from_ref(&fact), true).unwrap();
    let names = |bytes: &[u8]| -> Vec<String> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let q8_names = names(&q8);
    assert!(
        q8_names
            .iter()
            .any(|n| n.starts_with("stem.w") && n.ends_with(".dat")),
        "{q8_names:?}"
    );
    assert!(
        q8_names
            .iter()
            .any(|n| n.starts_with("conv.w") && n.ends_with(".q8")),
        "{q8_names:?}"
    );
    assert!(names(&full).iter().all(|n| !n.ends_with(".q8")));
    let x: Vec<f32> = (0..3 * 144).map(|i| (i % 17) as f32 / 17.0).collect();
    let input = || tvec!(Tensor::from_shape(&[1, 3, 12, 12], &x).unwrap().into());
    let (a, b) = (run_nnef(&full, input()), run_nnef(&q8, input()));
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst > 0.0 && worst < scale * 0.02,
        "8-bit error {worst} of {scale}"
    );
}
