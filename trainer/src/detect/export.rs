//! The detection head as ONNX: `feature_map [batch, 1280, 7, 7]` → Conv 1×1 → Relu → Conv 3×3
//! → Relu → Conv 1×1 → the class maps through a Sigmoid and the edge distances through an Exp,
//! concatenated → `maps [batch, classes + 4, 7, 7]`, the layout
//! [`contract::detection::decode`] reads. The same weights candle trained; tract declutters it
//! into the NNEF head browsers load ([`wasm_infer::nnef::export_map_head`]).

use super::model::DetectHead;
use crate::Result;
use crate::backbone::{FEATURE_DIM, MAP_SIDE};
use crate::export::{
    FEATURE_MAP_NAME, GraphBuilder, attr_int, attr_ints, encode_model, feature_map_info, value_info,
};

/// Name of the head's output.
pub const MAPS_NAME: &str = "maps";

/// The head's ONNX bytes.
pub fn export_detect_head(head: &DetectHead, model_id: &str) -> Result<Vec<u8>> {
    let classes = head.classes()?;
    let mut g = GraphBuilder::default();
    let mut x = FEATURE_MAP_NAME.to_string();
    let convs = [
        ("reduce", &head.reduce_w, &head.reduce_b, 0, true),
        ("mix", &head.mix_w, &head.mix_b, 1, true),
        ("out", &head.out_w, &head.out_b, 0, false),
    ];
    for (name, w, b, pad, relu) in convs {
        let dims = w.dims().to_vec();
        let w = g.initializer(
            &format!("{name}.weight"),
            &dims,
            &w.flatten_all()?.to_vec1()?,
        );
        let b = g.initializer(&format!("{name}.bias"), &[dims[0]], &b.to_vec1()?);
        let k = dims[2] as i64;
        x = g.node(
            "Conv",
            name,
            vec![x, w, b],
            vec![
                attr_ints("kernel_shape", vec![k, k]),
                attr_ints("strides", vec![1, 1]),
                attr_ints("pads", vec![pad; 4]),
                attr_ints("dilations", vec![1, 1]),
                attr_int("group", 1),
            ],
        );
        if relu {
            x = g.node("Relu", &format!("{name}.relu"), vec![x], vec![]);
        }
    }
    let axis = g.initializer_i64("channel_axis", &[1]);
    let slice = |g: &mut GraphBuilder, name: &str, from: usize, to: usize| {
        let starts = g.initializer_i64(&format!("{name}.starts"), &[from as i64]);
        let ends = g.initializer_i64(&format!("{name}.ends"), &[to as i64]);
        g.node(
            "Slice",
            name,
            vec![x.clone(), starts, ends, axis.clone()],
            vec![],
        )
    };
    let scores = slice(&mut g, "scores", 0, classes);
    let edges = slice(&mut g, "edges", classes, classes + 4);
    let probs = g.node("Sigmoid", "probs", vec![scores], vec![]);
    let cells = g.node("Exp", "cells", vec![edges], vec![]);
    g.output_node(
        "Concat",
        vec![probs, cells],
        vec![attr_int("axis", 1)],
        MAPS_NAME,
    );
    let side = Some(MAP_SIDE as i64);
    let graph = g.finish(
        "edgeml-detect-head",
        vec![feature_map_info()],
        vec![value_info(
            MAPS_NAME,
            &[None, Some((classes + 4) as i64), side, side],
        )],
    );
    debug_assert_eq!(head.reduce_w.dim(1)?, FEATURE_DIM);
    Ok(encode_model(
        graph,
        format!(
            "detection head of model {model_id} ({classes} classes, CenterNet-style maps), on the backbone's feature map"
        ),
    ))
}
