//! What browsers run for 1×1 convolutions, checked natively: the four-lane product of
//! `pointwise::quad` (the loops of the wasm build, here on `Portable` lanes) against a plain
//! sum, on every layout and remainder it handles; and the 1×1 convolutions tract's wasm
//! declutter leaves around channel-last depthwise convolutions (an `EinSum` that reads planes
//! and writes channel-last, and one that reads channel-last and writes planes, with bias,
//! ReLU6 and a residual), found and swapped, giving tract's values.

mod common;
use common::noise;
use tract_nnef::prelude::*;
use tract_nnef::tract_core::ops::einsum::EinSum;
use tract_nnef::tract_core::ops::math;
use wasm_infer::pointwise::quad::{Portable, Product, Strided};
use wasm_infer::pointwise::{PointwiseConv, install};

/// One case of the product: `co` outputs, `k` inputs, `pixels`; layouts and tail.
#[derive(Debug, Clone, Copy)]
struct Case {
    co: usize,
    k: usize,
    pixels: usize,
    x_last: bool,
    y_last: bool,
    clip: bool,
    residual: bool,
}

/// The product as `Product` computes it, in `f64`: `y[i, j] = clamp(bias[i] + Σ w[l, i]
/// x[l, j]) + res[i, j]`, at the output's strides.
fn reference(c: Case, w: &[f32], bias: &[f32], x: &[f32], res: &[f32]) -> Vec<f32> {
    let (xr, xc) = if c.x_last { (1, c.k) } else { (c.pixels, 1) };
    let (yr, yc) = if c.y_last { (1, c.co) } else { (c.pixels, 1) };
    let mut y = vec![0f32; c.co * c.pixels];
    for i in 0..c.co {
        for j in 0..c.pixels {
            let mut acc = bias[i] as f64;
            for l in 0..c.k {
                acc += w[l * c.co + i] as f64 * x[l * xr + j * xc] as f64;
            }
            if c.clip {
                acc = acc.clamp(0.0, 0.5);
            }
            let at = i * yr + j * yc;
            if c.residual {
                acc += res[at] as f64;
            }
            y[at] = acc as f32;
        }
    }
    y
}

#[test]
fn four_lane_product_matches_a_plain_sum_on_every_layout_and_remainder() {
    // Channels: blocks of 8 and single ones; pixels: groups of 4 and shorter ones.
    let shapes = [
        (96, 16, 37),
        (24, 144, 9),
        (13, 24, 6),
        (4, 3, 5),
        (7, 5, 3),
        (1, 1, 1),
    ];
    let mut checked = 0;
    for (s, &(co, k, pixels)) in shapes.iter().enumerate() {
        for layout in 0..4 {
            for tail in 0..4 {
                let c = Case {
                    co,
                    k,
                    pixels,
                    x_last: layout & 1 == 1,
                    y_last: layout & 2 == 2,
                    clip: tail & 1 == 1,
                    residual: tail & 2 == 2,
                };
                let seed = (s * 16 + layout * 4 + tail) as u64;
                let w = noise(k * co, seed);
                let bias = noise(co, seed + 100);
                let x = noise(k * pixels, seed + 200);
                let res = noise(co * pixels, seed + 300);
                let want = reference(c, &w, &bias, &x, &res);
                let (xr, xc) = if c.x_last { (1, k) } else { (pixels, 1) };
                let (yr, yc) = if c.y_last { (1, co) } else { (pixels, 1) };
                // NaN first: every output must be written.
                let mut y = vec![f32::NAN; co * pixels];
                // Tiles as the op cuts them: rows split in two, columns in three.
                let row_cut = (co / 2).max(1).min(co);
                let col_cuts = [0, pixels / 3, 2 * pixels / 3, pixels];
                for rows in [0..row_cut, row_cut..co] {
                    for cols in col_cuts.windows(2).map(|w| w[0]..w[1]) {
                        let p = Product {
                            weights: &w,
                            co,
                            k,
                            bias: &bias,
                            clip: c.clip.then_some((0.0, 0.5)),
                            x: Strided {
                                at: x.as_ptr(),
                                rows: xr,
                                cols: xc,
                            },
                            y: Strided {
                                at: y.as_mut_ptr(),
                                rows: yr,
                                cols: yc,
                            },
                            residual: c.residual.then_some(res.as_ptr()),
                            rows: rows.clone(),
                            cols,
                        };
                        // SAFETY: the tile is inside `x`, `y` and `res` at these strides,
                        // and the tiles are disjoint.
                        #[allow(unsafe_code)]
                        unsafe {
                            p.run::<Portable>()
                        };
                    }
                }
                for (n, (g, e)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "{c:?}: output {n} is {g}, want {e}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, shapes.len() * 16);
}

/// `x` (`[c, h, w]`, planes) → 1×1 to channel-last `[h, w, co1]` + bias + ReLU6 → 1×1 back
/// to planes `[co2, h, w]` + bias + `x`: the einsums tract's wasm declutter writes around a
/// channel-last depthwise convolution, without the depthwise in between.
fn transposing_block(c: usize, mid: usize, (h, w): (usize, usize)) -> TractResult<TypedModel> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([c, h, w]))?;
    let w1 = model.add_const("w1", tensor1(&noise(mid * c, 1)).into_shape(&[mid, c])?)?;
    let e1 = model.wire_node(
        "expand",
        EinSum::new("mk,kan->anm".parse()?, f32::datum_type()),
        &[w1, x],
    )?[0];
    let b1 = model.add_const("b1", tensor1(&noise(mid, 2)).into_shape(&[1, 1, mid])?)?;
    let e1 = model.wire_node("expand.bias", math::add(), &[e1, b1])?[0];
    let zero = model.add_const("zero", tensor0(0f32).broadcast_into_rank(3)?)?;
    let six = model.add_const("six", tensor0(0.5f32).broadcast_into_rank(3)?)?;
    let e1 = model.wire_node("expand.max", math::max(), &[e1, zero])?[0];
    let e1 = model.wire_node("expand.min", math::min(), &[e1, six])?[0];
    let w2 = model.add_const("w2", tensor1(&noise(c * mid, 3)).into_shape(&[c, mid])?)?;
    let p = model.wire_node(
        "project",
        EinSum::new("mk,ank->man".parse()?, f32::datum_type()),
        &[w2, e1],
    )?[0];
    let b2 = model.add_const("b2", tensor1(&noise(c, 4)).into_shape(&[c, 1, 1])?)?;
    let p = model.wire_node("project.bias", math::add(), &[p, b2])?[0];
    let y = model.wire_node("residual", math::add(), &[p, x])?[0];
    model.select_output_outlets(&[y])?;
    Ok(model)
}

#[test]
fn einsums_that_move_the_channels_last_and_back_are_swapped_and_agree_with_tract() {
    let (c, mid, h, w) = (16, 40, 7, 9);
    let model = transposing_block(c, mid, (h, w)).unwrap();
    let input = tensor1(&noise(c * h * w, 9))
        .into_shape(&[c, h, w])
        .unwrap();
    let tract = model
        .clone()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
        .run(tvec!(input.clone().into()))
        .unwrap();

    let mut ours = model.into_decluttered().unwrap();
    assert_eq!(
        install(&mut ours).unwrap(),
        2,
        "both 1×1 convolutions swapped"
    );
    let ops: Vec<&PointwiseConv> = ours
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<PointwiseConv>())
        .collect();
    assert_eq!(
        ops[0].output_shape(),
        &[h, w, mid],
        "the expand writes channel-last"
    );
    assert_eq!(
        ops[1].output_shape(),
        &[c, h, w],
        "the project writes planes"
    );
    let info: Vec<String> = ops.iter().map(|op| op.info().unwrap().join(" ")).collect();
    assert!(
        info[0].contains("channel-last out") && info[0].contains("clamp [0, 0.5]"),
        "{info:?}"
    );
    assert!(
        info[1].contains("channel-last in") && info[1].contains("residual"),
        "{info:?}"
    );
    // Only the ops and what they read are left: bias, clamp and residual are folded.
    assert!(
        ours.nodes()
            .iter()
            .all(|n| n.op_as::<PointwiseConv>().is_some()
                || n.op.name() == "Source"
                || n.op.name() == "Const"),
        "{ours}"
    );
    let got = ours
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
        .run(tvec!(input.into()))
        .unwrap();
    assert_eq!(got[0].shape(), tract[0].shape());
    let got: Vec<f32> = got[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let want: Vec<f32> = tract[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(got.len(), want.len());
    for (n, (g, e)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
            "value {n}: {g} vs {e}"
        );
    }
}
