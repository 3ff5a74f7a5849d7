//! The vectorised depthwise convolution against tract's own, on the geometries EfficientNet
//! uses and on the awkward ones around them: strides 1 and 2, 3×3 and 5×5 kernels, symmetric,
//! asymmetric and "same" padding, widths that fill no block or several, a batch of two, and a
//! bias shared by all channels. Both plans are optimised by tract; only the op differs.

mod common;
use common::noise;
use tract_nnef::prelude::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_nnef::tract_core::ops::nn::DataFormat;
use wasm_infer::depthwise::{DepthwiseConv, install};

struct Case {
    n: usize,
    c: usize,
    hw: (usize, usize),
    k: (usize, usize),
    stride: (usize, usize),
    padding: PaddingSpec,
    shared_bias: bool,
    /// NCHW, or CHW for one image (as tract's declutter leaves a batch of one).
    batch_axis: bool,
    /// NHWC (HWC without the batch axis): what tract's declutter makes of a depthwise layer
    /// where tract-linalg has a channel-inner kernel (wasm).
    channel_last: bool,
}

impl Case {
    fn input_shape(&self) -> Vec<usize> {
        let (n, c, (h, w)) = (self.n, self.c, self.hw);
        match (self.batch_axis, self.channel_last) {
            (true, false) => vec![n, c, h, w],
            (false, false) => vec![c, h, w],
            (true, true) => vec![n, h, w, c],
            (false, true) => vec![h, w, c],
        }
    }
}

fn model(case: &Case, seed: u64) -> TractResult<TypedModel> {
    let Case { c, k, .. } = *case;
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(case.input_shape()))?;
    let kernel = tensor1(&noise(c * k.0 * k.1, seed)).into_shape(&[c, 1, k.0, k.1])?;
    let bias = if case.shared_bias {
        tensor0(0.25f32)
    } else {
        tensor1(&noise(c, seed + 1))
    };
    let kernel = model.add_const("kernel", kernel)?;
    let bias = model.add_const("bias", bias)?;
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: match (case.batch_axis, case.channel_last) {
                (true, false) => DataFormat::NCHW,
                (false, false) => DataFormat::CHW,
                (true, true) => DataFormat::NHWC,
                (false, true) => DataFormat::HWC,
            },
            kernel_shape: tvec!(k.0, k.1),
            padding: case.padding.clone(),
            dilations: None,
            strides: Some(tvec!(case.stride.0, case.stride.1)),
            input_channels: c,
            output_channels: c,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: c,
        q_params: None,
    };
    let y = model.wire_node("dw", conv, &[x, kernel, bias])?;
    model.select_output_outlets(&y)?;
    Ok(model)
}

fn run(model: TypedModel, input: &Tensor) -> TractResult<Vec<f32>> {
    let out = model
        .into_optimized()?
        .into_runnable()?
        .run(tvec!(input.clone().into()))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

fn check(case: Case) -> TractResult<()> {
    let Case { n, c, hw, .. } = case;
    let input = tensor1(&noise(n * c * hw.0 * hw.1, 7)).into_shape(&case.input_shape())?;
    let reference = model(&case, 3)?.into_decluttered()?;
    let mut ours = reference.clone();
    assert_eq!(install(&mut ours)?, 1, "the convolution is replaced");
    let ours_plan = ours.clone().into_optimized()?;
    assert!(
        ours_plan
            .nodes()
            .iter()
            .any(|n| n.op_as::<DepthwiseConv>().is_some()),
        "tract's optimiser keeps the replacement"
    );
    let shape = ours_plan
        .output_fact(0)?
        .shape
        .as_concrete()
        .map(<[_]>::to_vec);
    let expected_shape = reference
        .clone()
        .into_optimized()?
        .output_fact(0)?
        .shape
        .as_concrete()
        .map(<[_]>::to_vec);
    assert_eq!(shape, expected_shape, "same output shape");
    let want = run(reference, &input)?;
    let got = run(ours.clone(), &input)?;
    assert_eq!(want.len(), got.len());
    let worst = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "max |Δ| {worst} against tract's depthwise");
    let op = ours
        .nodes()
        .iter()
        .find_map(|n| n.op_as::<DepthwiseConv>())
        .expect("installed")
        .clone();
    assert_eq!(op.is_channel_last(), case.channel_last);
    if case.channel_last {
        return Ok(());
    }
    check_channel_last(&op)
}

/// `[n, c, plane]` as `[n, plane, c]`, or back with `back`.
fn relayout(x: &[f32], n: usize, c: usize, back: bool) -> Vec<f32> {
    let plane = x.len() / (n * c);
    let mut y = vec![0f32; x.len()];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..plane {
                let (planar, last) = ((i * c + ch) * plane + p, (i * plane + p) * c + ch);
                if back {
                    y[planar] = x[last];
                } else {
                    y[last] = x[planar];
                }
            }
        }
    }
    y
}

/// The same op channel-last (as `layout::install` runs it between two 1×1 convolutions),
/// with and without a clamp, gives the channels-first op's values (checked against tract's
/// above) pixel by pixel.
fn check_channel_last(op: &DepthwiseConv) -> TractResult<()> {
    let g = op.geometry().clone();
    let input = noise(g.n * g.c * g.h * g.w, 13);
    for clip in [None, Some((-0.25f32, 0.5f32))] {
        let mut planar = op.clone();
        if let Some((lo, hi)) = clip {
            planar = planar.with_clip(lo, hi)?;
        }
        let last = planar.clone().channel_last()?;
        assert!(last.is_channel_last() && !planar.is_channel_last());
        let mut want = vec![f32::NAN; g.n * g.c * g.oh * g.ow];
        planar.run(&input, &mut want)?;
        let mut out = vec![f32::NAN; want.len()];
        last.run(&relayout(&input, g.n, g.c, false), &mut out)?;
        let got = relayout(&out, g.n, g.c, true);
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "channel-last, clamp {clip:?}, {g:?}: max |Δ| {worst} against channels-first"
        );
    }
    Ok(())
}

fn explicit(before: (usize, usize), after: (usize, usize)) -> PaddingSpec {
    PaddingSpec::Explicit(tvec!(before.0, before.1), tvec!(after.0, after.1))
}

#[test]
fn agrees_with_tract_on_efficientnet_geometries_one_image_chw() -> TractResult<()> {
    for (hw, k, stride, pad) in [
        ((112, 112), 3, 1, 1),
        ((112, 112), 3, 2, 1),
        ((56, 56), 5, 2, 2),
        ((28, 28), 5, 1, 2),
        ((14, 14), 3, 1, 1),
        ((14, 14), 5, 2, 2),
        ((7, 7), 5, 1, 2),
    ] {
        check(Case {
            n: 1,
            c: 6,
            hw,
            k: (k, k),
            stride: (stride, stride),
            padding: explicit((pad, pad), (pad, pad)),
            shared_bias: false,
            batch_axis: false,
            channel_last: false,
        })?;
    }
    Ok(())
}

#[test]
fn agrees_with_tract_on_narrow_planes_and_many_channels() -> TractResult<()> {
    // Planes narrower than one wide block (16 columns): only narrow blocks and their tails;
    // many channels (several threads' chunks of planes); strides 1 and 2; one image and a
    // batch; a 1×1 depthwise kernel.
    for (n, c, hw, k, stride, padding) in [
        (1, 64, (14, 14), 5, 1, explicit((2, 2), (2, 2))),
        (1, 70, (7, 7), 3, 1, explicit((1, 1), (1, 1))),
        (1, 40, (14, 14), 5, 2, explicit((1, 1), (2, 2))),
        (2, 5, (9, 13), 3, 2, PaddingSpec::SameUpper),
        (2, 33, (1, 15), 1, 1, PaddingSpec::Valid),
        // Channel-last: blocks of 4, 2 and 1 registers and a tail (AVX-512: 64 + 32 + 16 +
        // 3; AVX2: 8 × 4 + 8 × 2 + 8 + 3), and one register and a tail.
        (1, 115, (14, 14), 5, 2, explicit((2, 2), (2, 2))),
        (2, 24, (9, 11), 3, 1, PaddingSpec::SameUpper),
    ] {
        check(Case {
            n,
            c,
            hw,
            k: (k.min(hw.0), k),
            stride: (stride, stride),
            padding,
            shared_bias: n > 1,
            batch_axis: n > 1,
            channel_last: false,
        })?;
    }
    Ok(())
}

#[test]
fn takes_channel_last_convolutions_as_tract_lays_them_out_in_wasm() -> TractResult<()> {
    // The backbone's layers in HWC (one image), and awkward ones in NHWC: the op is built
    // channel-last from the start.
    for (n, c, hw, k, stride, padding) in [
        (1, 96, (112, 112), 3, 2, explicit((0, 0), (1, 1))),
        (1, 144, (28, 28), 5, 1, explicit((2, 2), (2, 2))),
        (1, 1152, (7, 7), 5, 1, explicit((2, 2), (2, 2))),
        (2, 21, (9, 13), 3, 2, PaddingSpec::SameUpper),
        (2, 36, (5, 6), 3, 1, PaddingSpec::Valid),
    ] {
        check(Case {
            n,
            c,
            hw,
            k: (k, k),
            stride: (stride, stride),
            padding,
            shared_bias: n > 1,
            batch_axis: n > 1,
            channel_last: true,
        })?;
    }
    Ok(())
}

#[test]
fn agrees_with_tract_on_awkward_geometries_batched_nchw() -> TractResult<()> {
    // TensorFlow-style stride-2 padding (nothing before, one after), "same" padding, a
    // non-square kernel and stride, widths of 1, 33 (one wide block + a tail) and 41.
    let cases = [
        ((16, 33), (3, 3), (2, 2), explicit((0, 0), (1, 1))),
        ((17, 41), (3, 3), (1, 1), PaddingSpec::SameUpper),
        ((9, 40), (5, 5), (2, 2), PaddingSpec::SameLower),
        ((12, 1), (3, 1), (1, 1), explicit((1, 0), (1, 0))),
        ((10, 70), (1, 5), (2, 1), explicit((0, 2), (0, 2))),
        ((5, 5), (3, 3), (1, 1), PaddingSpec::Valid),
    ];
    for (hw, k, stride, padding) in cases {
        check(Case {
            n: 2,
            c: 3,
            hw,
            k,
            stride,
            padding,
            shared_bias: true,
            batch_axis: true,
            channel_last: false,
        })?;
    }
    Ok(())
}

#[test]
fn leaves_other_convolutions_to_tract() -> TractResult<()> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, 4, 8, 8]))?;
    let kernel = model.add_const(
        "kernel",
        tensor1(&noise(4 * 2 * 9, 1)).into_shape(&[4, 2, 3, 3])?,
    )?;
    let bias = model.add_const("bias", tensor1(&[0f32; 4]))?;
    let grouped = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec!(3, 3),
            padding: explicit((1, 1), (1, 1)),
            dilations: None,
            strides: None,
            input_channels: 4,
            output_channels: 4,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: 2,
        q_params: None,
    };
    let y = model.wire_node("grouped", grouped, &[x, kernel, bias])?;
    model.select_output_outlets(&y)?;
    let mut model = model.into_decluttered()?;
    assert_eq!(
        install(&mut model)?,
        0,
        "two groups of two channels is not depthwise"
    );
    Ok(())
}

#[test]
fn refuses_inconsistent_weights() {
    let geo = wasm_infer::depthwise::Geometry {
        n: 1,
        c: 2,
        h: 4,
        w: 4,
        oh: 4,
        ow: 4,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        pad_top: 1,
        pad_left: 1,
    };
    assert!(DepthwiseConv::new(geo.clone(), &[0.0; 17], &[0.0; 2]).is_err());
    assert!(DepthwiseConv::new(geo.clone(), &[0.0; 18], &[0.0; 3]).is_err());
    let op = DepthwiseConv::new(geo, &[0.0; 18], &[1.0, 2.0]).expect("consistent");
    let mut out = vec![0.0; 2 * 16];
    assert!(op.run(&[0.0; 31], &mut out).is_err(), "short input refused");
    op.run(&[0.5; 32], &mut out).expect("runs");
    assert!(out[..16].iter().all(|&v| v == 1.0) && out[16..].iter().all(|&v| v == 2.0));
}

#[test]
fn threads_split_the_planes_and_change_no_value() -> TractResult<()> {
    let case = Case {
        n: 2,
        c: 40,
        hw: (28, 28),
        k: (5, 5),
        stride: (2, 2),
        padding: explicit((2, 2), (2, 2)),
        shared_bias: false,
        batch_axis: true,
        channel_last: false,
    };
    let input = tensor1(&noise(2 * 40 * 28 * 28, 11)).into_shape(&[2, 40, 28, 28])?;
    let mut ours = model(&case, 5)?.into_decluttered()?;
    assert_eq!(install(&mut ours)?, 1);
    let plan = ours.into_optimized()?.into_runnable()?;
    let run = |threads: usize| -> TractResult<Vec<f32>> {
        let out =
            wasm_infer::session::with_threads(threads, || plan.run(tvec!(input.clone().into())))?;
        Ok(out[0]
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect())
    };
    let one = run(1)?;
    assert_eq!(run(2)?, one, "two threads: the same floats");
    assert_eq!(run(3)?, one, "three threads: the same floats");
    // Channel-last, rows split over the threads.
    let op = ours_op(&case)?.channel_last()?;
    let input = noise(2 * 40 * 28 * 28, 11);
    let run = |threads: usize| -> TractResult<Vec<f32>> {
        let mut out = vec![0f32; 2 * 40 * 14 * 14];
        wasm_infer::session::with_threads(threads, || op.run(&input, &mut out))?;
        Ok(out)
    };
    let one = run(1)?;
    assert_eq!(run(2)?, one, "channel-last, two threads: the same floats");
    assert_eq!(run(3)?, one, "channel-last, three threads: the same floats");
    Ok(())
}

/// The op `install` puts in place of `case`'s convolution.
fn ours_op(case: &Case) -> TractResult<DepthwiseConv> {
    let mut ours = model(case, 5)?.into_decluttered()?;
    assert_eq!(install(&mut ours)?, 1);
    Ok(ours
        .nodes()
        .iter()
        .find_map(|n| n.op_as::<DepthwiseConv>())
        .expect("installed")
        .clone())
}
