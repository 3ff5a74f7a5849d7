//! Every depthwise layer of EfficientNet-Lite0 (224×224 input, one image), run by tract's own
//! `DepthWiseConv`, by wasm-infer's `EdgeDepthwiseConv` in a plan (channels first, as
//! `depthwise::install` puts it) and by the same op channel-last (as `layout::install` runs it
//! between two 1×1 convolutions) in the same process, alternating; prints a markdown table of
//! median times, GMAC/s and the ratios to tract (a benchmark, not a test). Native only, like
//! the op.
//!
//! ```text
//! cargo run --release -p wasm-infer --example bench_depthwise -- [RUNS]
//! ```

use std::time::Instant;

use tract_nnef::prelude::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_nnef::tract_core::ops::nn::DataFormat;
use wasm_infer::depthwise::{DepthwiseConv, Geometry, install};

/// (channels, input side, kernel, stride) of blocks 0–15.
const LAYERS: [(usize, usize, usize, usize); 16] = [
    (32, 112, 3, 1),
    (96, 112, 3, 2),
    (144, 56, 3, 1),
    (144, 56, 5, 2),
    (240, 28, 5, 1),
    (240, 28, 3, 2),
    (480, 14, 3, 1),
    (480, 14, 3, 1),
    (480, 14, 5, 1),
    (672, 14, 5, 1),
    (672, 14, 5, 1),
    (672, 14, 5, 2),
    (1152, 7, 5, 1),
    (1152, 7, 5, 1),
    (1152, 7, 5, 1),
    (1152, 7, 3, 1),
];

fn plan(
    c: usize,
    side: usize,
    k: usize,
    s: usize,
    ours: bool,
) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([c, side, side]))?;
    let values = kernel_values(c, k);
    let kernel = model.add_const("k", tensor1(&values).into_shape(&[c, 1, k, k])?)?;
    let bias = model.add_const("b", tensor1(&vec![0.1f32; c]))?;
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::CHW,
            kernel_shape: tvec!(k, k),
            padding: PaddingSpec::Explicit(tvec!(k / 2, k / 2), tvec!(k / 2, k / 2)),
            dilations: None,
            strides: Some(tvec!(s, s)),
            input_channels: c,
            output_channels: c,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: c,
        q_params: None,
    };
    let y = model.wire_node("dw", conv, &[x, kernel, bias])?;
    model.select_output_outlets(&y)?;
    let mut model = model.into_decluttered()?;
    if ours {
        install(&mut model)?;
    }
    model.into_optimized()?.into_runnable()
}

fn kernel_values(c: usize, k: usize) -> Vec<f32> {
    (0..c * k * k)
        .map(|i| ((i % 17) as f32 - 8.0) / 9.0)
        .collect()
}

/// The channel-last op for the same layer.
fn channel_last(c: usize, side: usize, k: usize, s: usize) -> TractResult<DepthwiseConv> {
    let out = side.div_ceil(s);
    let pad = ((out - 1) * s + k).saturating_sub(side) / 2;
    let geo = Geometry {
        n: 1,
        c,
        h: side,
        w: side,
        oh: out,
        ow: out,
        kh: k,
        kw: k,
        sh: s,
        sw: s,
        pad_top: pad.min(k / 2),
        pad_left: pad.min(k / 2),
    };
    DepthwiseConv::with_layout(geo, false, &kernel_values(c, k), &vec![0.1f32; c])?.channel_last()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> TractResult<()> {
    let runs: usize = std::env::args().nth(1).map_or(Ok(50), |r| r.parse())?;
    println!(
        "| block | channels | input | kernel | stride | MMAC | tract ms | GMAC/s | wasm-infer ms | GMAC/s | ratio | channel-last ms | GMAC/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let (mut total_t, mut total_o, mut total_l) = (0.0, 0.0, 0.0);
    for (block, &(c, side, k, s)) in LAYERS.iter().enumerate() {
        let input: TValue = tensor1(
            &(0..c * side * side)
                .map(|i| ((i % 23) as f32 - 11.0) / 7.0)
                .collect::<Vec<_>>(),
        )
        .into_shape(&[c, side, side])?
        .into();
        let plans = [plan(c, side, k, s, false)?, plan(c, side, k, s, true)?];
        let last = channel_last(c, side, k, s)?;
        let out = side.div_ceil(s);
        let pixels: Vec<f32> = (0..c * side * side)
            .map(|i| ((i % 23) as f32 - 11.0) / 7.0)
            .collect();
        let mut y = vec![0f32; c * out * out];
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..runs + 3 {
            for (plan, times) in plans.iter().zip(&mut times) {
                let t = Instant::now();
                plan.run(tvec!(input.clone()))?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let t = Instant::now();
            last.run(&pixels, &mut y)?;
            times[2].push(t.elapsed().as_secs_f64() * 1e3);
        }
        let [t, o, l] = times.map(|mut v| median(v.split_off(3)));
        let mmac = (c * out * out * k * k) as f64 / 1e6;
        total_t += t;
        total_o += o;
        total_l += l;
        println!(
            "| {block} | {c} | {side}×{side} | {k}×{k} | {s} | {mmac:.1} | {t:.3} | {:.1} | {o:.3} | {:.1} | {:.2} | {l:.3} | {:.1} | {:.2} |",
            mmac / t,
            mmac / o,
            o / t,
            mmac / l,
            l / t
        );
    }
    println!(
        "| all | | | | | | {total_t:.2} | | {total_o:.2} | | {:.2} | {total_l:.2} | | {:.2} |",
        total_o / total_t,
        total_l / total_t
    );
    Ok(())
}
