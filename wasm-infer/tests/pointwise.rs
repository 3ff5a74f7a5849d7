//! wasm-infer's 1×1 convolution and its fused tails against tract's own plan: an MBConv
//! block as EfficientNet has them (expand 1×1 + bias + ReLU6, depthwise + ReLU6, project 1×1 +
//! bias + residual), one image channels-first and a batch of two, on one and several
//! threads; the same block with its inner tensors channel-last, and three blocks with every
//! tensor between them channel-last (`layout::install`); and the
//! chains that must not be fused or switched (a value read twice, a model output, a clamp
//! whose bounds cross), which must still give tract's values.

mod common;
use common::noise;
use tract_nnef::prelude::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_nnef::tract_core::ops::math;
use tract_nnef::tract_core::ops::nn::DataFormat;
use wasm_infer::depthwise::DepthwiseConv;
use wasm_infer::pointwise::{PointwiseConv, install};

struct Net {
    model: TypedModel,
    input: Tensor,
}

/// A convolution of `x` (`[n,] c, h, w`) with `k × k` kernels, `groups` groups.
fn conv(
    model: &mut TypedModel,
    name: &str,
    x: OutletId,
    (ci, co, k, groups): (usize, usize, usize, usize),
    batch: bool,
    seed: u64,
) -> TractResult<OutletId> {
    let scale = 2.0 / ((ci / groups * k * k) as f32).sqrt();
    let weights: Vec<f32> = noise(co * ci / groups * k * k, seed)
        .iter()
        .map(|v| v * scale)
        .collect();
    let kernel = model.add_const(
        format!("{name}.kernel"),
        tensor1(&weights).into_shape(&[co, ci / groups, k, k])?,
    )?;
    let bias = model.add_const(format!("{name}.bias"), tensor1(&noise(co, seed + 1)))?;
    let op = Conv {
        pool_spec: PoolSpec {
            data_format: if batch {
                DataFormat::NCHW
            } else {
                DataFormat::CHW
            },
            kernel_shape: tvec!(k, k),
            padding: PaddingSpec::Explicit(tvec!(k / 2, k / 2), tvec!(k / 2, k / 2)),
            dilations: None,
            strides: None,
            input_channels: ci,
            output_channels: co,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: groups,
        q_params: None,
    };
    Ok(model.wire_node(name, op, &[x, kernel, bias])?[0])
}

/// `min(max(x, lo), hi)` as separate ops, the way ONNX's ReLU6 (Clip) declutters.
fn clamp(
    model: &mut TypedModel,
    name: &str,
    x: OutletId,
    (lo, hi): (f32, f32),
    rank: usize,
) -> TractResult<OutletId> {
    let unit = vec![1; rank];
    let lo = model.add_const(format!("{name}.lo"), tensor1(&[lo]).into_shape(&unit)?)?;
    let hi = model.add_const(format!("{name}.hi"), tensor1(&[hi]).into_shape(&unit)?)?;
    let x = model.wire_node(format!("{name}.max"), math::max(), &[x, lo])?[0];
    Ok(model.wire_node(format!("{name}.min"), math::min(), &[x, hi])?[0])
}

/// An MBConv block: expand 1×1 (`c` → `4c`) + ReLU6, depthwise 3×3 + ReLU6, project 1×1
/// (`4c` → `c`) + the block's input.
fn mbconv(n: usize, c: usize, hw: usize, bounds: (f32, f32)) -> TractResult<Net> {
    mbconvs(1, n, c, hw, bounds)
}

/// `blocks` MBConv blocks in a row; with more than one, as in an EfficientNet stage, the
/// first has no residual add, and a 1×1 head convolution (`c` → `2c`) gives the output.
fn mbconvs(blocks: usize, n: usize, c: usize, hw: usize, bounds: (f32, f32)) -> TractResult<Net> {
    let batch = n > 1;
    let shape: Vec<usize> = if batch {
        vec![n, c, hw, hw]
    } else {
        vec![c, hw, hw]
    };
    let mut model = TypedModel::default();
    let mut x = model.add_source("x", f32::fact(&shape))?;
    for b in 0..blocks {
        // The first block's names carry no number.
        let at = |name: &str| match b {
            0 => name.to_string(),
            b => format!("{name}{b}"),
        };
        let seed = 10 * b as u64;
        let e = conv(
            &mut model,
            &at("expand"),
            x,
            (c, 4 * c, 1, 1),
            batch,
            seed + 1,
        )?;
        let e = clamp(&mut model, &at("expand.relu6"), e, bounds, shape.len())?;
        let d = conv(
            &mut model,
            &at("dw"),
            e,
            (4 * c, 4 * c, 3, 4 * c),
            batch,
            seed + 2,
        )?;
        let d = clamp(&mut model, &at("dw.relu6"), d, bounds, shape.len())?;
        let p = conv(
            &mut model,
            &at("project"),
            d,
            (4 * c, c, 1, 1),
            batch,
            seed + 3,
        )?;
        x = match (blocks, b) {
            (1, _) | (_, 1..) => model.wire_node(at("residual"), math::add(), &[p, x])?[0],
            _ => p,
        };
    }
    if blocks > 1 {
        x = conv(&mut model, "head", x, (c, 2 * c, 1, 1), batch, 99)?;
    }
    model.select_output_outlets(&[x])?;
    let input = tensor1(&noise(shape.iter().product(), 9)).into_shape(&shape)?;
    Ok(Net { model, input })
}

fn run(model: TypedModel, input: &Tensor, threads: usize) -> TractResult<Vec<f32>> {
    let plan = model.into_optimized()?.into_runnable()?;
    let out = wasm_infer::session::with_threads(threads, || plan.run(tvec!(input.clone().into())))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

/// The model with wasm-infer's ops swapped in, and how many of each.
fn ours(model: &TypedModel) -> TractResult<(TypedModel, usize, usize)> {
    let mut ours = model.clone();
    let p = install(&mut ours)?;
    let d = wasm_infer::depthwise::install(&mut ours)?;
    Ok((ours, p, d))
}

fn ops_named(model: &TypedModel, name: &str) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op().name() == name)
        .count()
}

fn worst(want: &[f32], got: &[f32]) -> f32 {
    assert_eq!(want.len(), got.len(), "same number of outputs");
    want.iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
        .fold(0f32, f32::max)
}

/// Every output of `reference` and `ours` on `input`: the same shapes and values (≤ 1e-5).
fn same_outputs(reference: TypedModel, ours: TypedModel, input: &Tensor) -> TractResult<()> {
    let (a, b) = (
        reference.into_optimized()?.into_runnable()?,
        ours.into_optimized()?.into_runnable()?,
    );
    let (a, b) = (
        a.run(tvec!(input.clone().into()))?,
        b.run(tvec!(input.clone().into()))?,
    );
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a.shape(), b.shape());
        let a: Vec<f32> = a.to_plain_array_view::<f32>()?.iter().copied().collect();
        let b: Vec<f32> = b.to_plain_array_view::<f32>()?.iter().copied().collect();
        assert!(worst(&a, &b) <= 1e-5);
    }
    Ok(())
}

#[test]
fn an_mbconv_block_is_three_ops_and_gives_tracts_values() -> TractResult<()> {
    for (n, c, hw) in [(1, 8, 14), (1, 24, 56), (2, 6, 9)] {
        let net = mbconv(n, c, hw, (0.0, 6.0))?;
        let reference = net.model.into_decluttered()?;
        let (ours, p, d) = ours(&reference)?;
        assert_eq!(
            (p, d),
            (2, 1),
            "two 1×1 and one depthwise convolution replaced"
        );
        // Bias, both ReLU6 and the residual add are folded into the three ops.
        for op in ["Add", "Max", "Min", "EinSum", "Conv"] {
            assert_eq!(ops_named(&ours, op), 0, "{op} left in {ours}");
        }
        let pointwise: Vec<String> = ours
            .nodes()
            .iter()
            .filter(|n| n.op_as::<PointwiseConv>().is_some())
            .map(|n| n.op().info().unwrap().join(" "))
            .collect();
        assert!(
            pointwise[0].ends_with("then bias, clamp [0, 6]")
                && pointwise[1].ends_with("then bias, residual"),
            "{pointwise:?}"
        );
        assert!(
            ours.nodes()
                .iter()
                .filter_map(|n| n.op_as::<DepthwiseConv>())
                .all(|op| op.info().unwrap()[0].ends_with("clamp [0, 6]"))
        );
        let want = run(reference, &net.input, 1)?;
        let got = run(ours.clone(), &net.input, 1)?;
        assert!(want.iter().any(|&v| v != 0.0));
        let w = worst(&want, &got);
        assert!(w <= 1e-5, "{n}×{c}×{hw}²: max relative |Δ| {w}");
        for threads in [2, 3] {
            assert_eq!(
                run(ours.clone(), &net.input, threads)?,
                got,
                "{threads} threads change no float"
            );
        }
    }
    Ok(())
}

#[test]
fn inside_a_block_tensors_are_channel_last_and_give_tracts_values() -> TractResult<()> {
    for (n, c, hw) in [(1, 8, 14), (1, 28, 28), (2, 6, 9), (1, 5, 7)] {
        let net = mbconv(n, c, hw, (0.0, 6.0))?;
        let reference = net.model.into_decluttered()?;
        let mut ours = reference.clone();
        let installed = wasm_infer::layout::install_kernels(&mut ours)?;
        assert_eq!(
            (
                installed.pointwise,
                installed.depthwise,
                installed.channel_last
            ),
            (2, 1, 1),
            "{n}×{c}×{hw}²: one block switched"
        );
        let dw = ours
            .nodes()
            .iter()
            .find(|n| n.op_as::<DepthwiseConv>().is_some())
            .expect("depthwise");
        assert!(dw.op_as::<DepthwiseConv>().unwrap().is_channel_last());
        // Expand's output and the depthwise output: pixels of 4c channels.
        for outlet in [dw.inputs[0], OutletId::new(dw.id, 0)] {
            let shape = ours
                .outlet_fact(outlet)?
                .shape
                .as_concrete()
                .unwrap()
                .to_vec();
            assert_eq!(shape.last(), Some(&(4 * c)), "{shape:?} is channel-last");
        }
        let infos: Vec<String> = ours
            .nodes()
            .iter()
            .filter(|n| n.op_as::<PointwiseConv>().is_some())
            .map(|n| n.op().info().unwrap().join(" "))
            .collect();
        assert!(
            infos
                .iter()
                .any(|i| i.contains("channel-last out, then bias, clamp"))
                && infos
                    .iter()
                    .any(|i| i.contains("channel-last in, then bias, residual")),
            "{infos:?}"
        );
        let want = run(reference, &net.input, 1)?;
        let got = run(ours.clone(), &net.input, 1)?;
        let w = worst(&want, &got);
        assert!(w <= 1e-5, "{n}×{c}×{hw}²: max relative |Δ| {w}");
        for threads in [2, 3] {
            assert_eq!(
                run(ours.clone(), &net.input, threads)?,
                got,
                "{threads} threads change no float"
            );
        }
    }

    // Three blocks and a head: the tensors between blocks (read by the next expand and as
    // the next residual) are channel-last too; the model's input and output keep tract's
    // layout.
    for (n, c, hw) in [(1, 8, 14), (2, 6, 9)] {
        let net = mbconvs(3, n, c, hw, (0.0, 6.0))?;
        let reference = net.model.into_decluttered()?;
        let mut ours = reference.clone();
        let installed = wasm_infer::layout::install_kernels(&mut ours)?;
        assert_eq!(
            (installed.pointwise, installed.channel_last),
            (7, 3),
            "{ours}"
        );
        for block in ["project", "residual1", "residual2"] {
            let id = ours.node_by_name(block)?.id;
            let shape = ours
                .outlet_fact(OutletId::new(id, 0))?
                .shape
                .as_concrete()
                .unwrap()
                .to_vec();
            assert_eq!(shape.last(), Some(&c), "{block}: {shape:?} is channel-last");
        }
        let output = ours.output_outlets()?[0];
        assert_eq!(
            ours.outlet_fact(output)?.shape,
            reference.outlet_fact(reference.output_outlets()?[0])?.shape
        );
        let want = run(reference, &net.input, 1)?;
        let got = run(ours.clone(), &net.input, 1)?;
        let w = worst(&want, &got);
        assert!(w <= 1e-5, "3 blocks {n}×{c}×{hw}²: max relative |Δ| {w}");
        assert_eq!(run(ours, &net.input, 2)?, got, "2 threads change no float");
    }

    // The expand's output is also a model output: the block keeps tract's layout (a model
    // output must come out as the graph says), with the same values.
    let net = mbconv(1, 8, 10, (0.0, 6.0))?;
    let mut model = net.model.clone();
    let expand = model.node_by_name("expand.relu6.min")?.id;
    let residual = model.output_outlets()?[0];
    model.select_output_outlets(&[residual, OutletId::new(expand, 0)])?;
    let reference = model.into_decluttered()?;
    let mut ours = reference.clone();
    let installed = wasm_infer::layout::install_kernels(&mut ours)?;
    assert_eq!((installed.pointwise, installed.channel_last), (2, 0));
    same_outputs(reference, ours, &net.input)
}

#[test]
fn crossed_bounds_and_shared_values_stay_with_tract() -> TractResult<()> {
    // lo > hi: min(max(x, 6), 0) is not a clamp; the ops stay separate.
    let net = mbconv(1, 8, 10, (6.0, 0.0))?;
    let reference = net.model.into_decluttered()?;
    let (ours_model, p, _) = ours(&reference)?;
    assert_eq!(p, 2);
    assert_eq!(ops_named(&ours_model, "Max"), 2, "{ours_model}");
    assert!(
        worst(
            &run(reference, &net.input, 1)?,
            &run(ours_model, &net.input, 1)?
        ) <= 1e-5
    );

    // The Max of the expand's ReLU6 is also a model output: what comes after it is not
    // folded into the 1×1.
    let net = mbconv(1, 8, 10, (0.0, 6.0))?;
    let mut model = net.model.clone();
    let expand = model.node_by_name("expand.relu6.max")?.id;
    let residual = model.output_outlets()?[0];
    model.select_output_outlets(&[residual, OutletId::new(expand, 0)])?;
    let reference = model.into_decluttered()?;
    let (ours_model, p, _) = ours(&reference)?;
    assert_eq!(p, 2);
    assert_eq!(
        ops_named(&ours_model, "Min"),
        1,
        "folding stops at the model output: the Min after it stays"
    );
    same_outputs(reference, ours_model, &net.input)
}

#[test]
fn refuses_inconsistent_shapes() {
    assert!(PointwiseConv::new(&[4, 3, 3], 0, &[0.0; 11], 3, None, None, false).is_err());
    assert!(
        PointwiseConv::new(&[4, 3, 3], 0, &[0.0; 12], 3, Some(&[0.0; 2]), None, false).is_err()
    );
    assert!(
        PointwiseConv::new(&[4, 3, 3], 0, &[0.0; 12], 3, None, Some((1.0, 0.0)), false).is_err()
    );
    let op = PointwiseConv::new(
        &[2, 2, 2],
        0,
        &[1.0, 2.0, 3.0, 4.0],
        2,
        Some(&[0.5, -0.5]),
        None,
        true,
    )
    .expect("consistent");
    assert!(
        op.clone().with_output_shape(&[1, 2, 4]).is_err(),
        "not the same values"
    );
    assert!(
        op.clone().with_output_shape(&[1, 2, 1, 2, 2]).is_ok(),
        "unit axes only"
    );
    let mut out = [0.0; 8];
    assert!(
        op.run(&[1.0; 8], None, &mut out).is_err(),
        "the residual is required"
    );
    assert!(
        op.run(&[1.0; 7], Some(&[0.0; 8]), &mut out).is_err(),
        "short input"
    );
    // y[o] = Σ W[o, i] x[i] + b[o] + r: x = (1, 2) on every pixel.
    op.run(
        &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0],
        Some(&[10.0; 8]),
        &mut out,
    )
    .expect("runs");
    assert_eq!(out, [15.5, 15.5, 15.5, 15.5, 20.5, 20.5, 20.5, 20.5]);

    // Channels last (`[pixels, channels]`): the same weights, pixel by pixel, clamped.
    let op = PointwiseConv::new(
        &[3, 2],
        1,
        &[1.0, 2.0, 3.0, 4.0],
        2,
        Some(&[0.5, -0.5]),
        Some((0.0, 15.0)),
        true,
    )
    .expect("consistent");
    let mut out = [0.0; 6];
    let residual = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    op.run(&[1.0, 2.0, -1.0, -2.0, 3.0, 0.0], Some(&residual), &mut out)
        .expect("runs");
    // Pixels (1, 2) → (5.5, 10.5); (-1, -2) → clamped (0, 0); (3, 0) → (3.5, 8.5); then the
    // residual.
    assert_eq!(out, [6.5, 12.5, 3.0, 4.0, 8.5, 14.5]);

    // One pixel (`[c, 1, 1]`, a head on pooled features): every output channel gets its own
    // bias.
    let op = PointwiseConv::new(
        &[2, 1, 1],
        0,
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        3,
        Some(&[0.5, -0.5, 1.0]),
        None,
        false,
    )
    .expect("consistent");
    let mut out = [0.0; 3];
    op.run(&[1.0, 2.0], None, &mut out).expect("runs");
    assert_eq!(out, [5.5, 10.5, 18.0]);
}

#[test]
fn a_stem_convolution_runs_over_its_patches_and_gives_tracts_values() -> TractResult<()> {
    // EfficientNet's stem (3×3, stride 2, TensorFlow's padding: nothing before, one after) and
    // a batched 5×5 "same" convolution with a shared bias, each followed by ReLU6.
    let cases = [
        (
            1,
            3,
            8,
            (17, 16),
            3,
            2,
            PaddingSpec::Explicit(tvec!(0, 0), tvec!(1, 1)),
        ),
        (2, 4, 5, (9, 11), 5, 1, PaddingSpec::SameUpper),
        // 25 × 31 output pixels: on two threads, four tiles of columns that start and end
        // inside output rows, each gathering its own patches.
        (
            1,
            3,
            8,
            (61, 49),
            3,
            2,
            PaddingSpec::Explicit(tvec!(0, 0), tvec!(1, 1)),
        ),
    ];
    for (n, c, co, (h, w), k, stride, padding) in cases {
        let batch = n > 1;
        let shape: Vec<usize> = if batch {
            vec![n, c, h, w]
        } else {
            vec![c, h, w]
        };
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(&shape))?;
        let kernel = model.add_const(
            "kernel",
            tensor1(&noise(co * c * k * k, 4)).into_shape(&[co, c, k, k])?,
        )?;
        let bias = if batch {
            model.add_const("bias", tensor0(0.125f32))?
        } else {
            model.add_const("bias", tensor1(&noise(co, 5)))?
        };
        let op = Conv {
            pool_spec: PoolSpec {
                data_format: if batch {
                    DataFormat::NCHW
                } else {
                    DataFormat::CHW
                },
                kernel_shape: tvec!(k, k),
                padding,
                dilations: None,
                strides: Some(tvec!(stride, stride)),
                input_channels: c,
                output_channels: co,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        };
        let y = model.wire_node("stem", op, &[x, kernel, bias])?[0];
        let y = clamp(&mut model, "stem.relu6", y, (0.0, 6.0), shape.len())?;
        model.select_output_outlets(&[y])?;
        let reference = model.into_decluttered()?;
        let (ours, p, _) = ours(&reference)?;
        assert_eq!(p, 1, "the convolution is replaced");
        assert_eq!(
            ops_named(&ours, "Max") + ops_named(&ours, "Conv"),
            0,
            "{ours}"
        );
        let input = tensor1(&noise(shape.iter().product(), 6)).into_shape(&shape)?;
        let want = run(reference, &input, 1)?;
        let got = run(ours.clone(), &input, 1)?;
        assert!(want.iter().filter(|&&v| v > 0.0).count() > want.len() / 4);
        let w = worst(&want, &got);
        assert!(
            w <= 1e-5,
            "{shape:?} {k}×{k}/{stride}: max relative |Δ| {w}"
        );
        assert_eq!(run(ours, &input, 2)?, got, "two threads change no float");
    }
    Ok(())
}

/// The backbone's 1×1 layers on their own, channel-last as deployed (pixels × channels), give
/// the same floats on one to four threads: tiles split for threads never change the order in
/// which the `gemm` crate sums a value (on the 14 × 14 and 7 × 7 layers, narrower tiles would
/// take its small-product paths, which sum differently).
#[test]
fn threads_change_no_float_on_the_backbones_layers() -> TractResult<()> {
    // (pixels, channels in, channels out, residual): 112², 56², 28², 14² and 7² layers.
    let layers = [
        (12544, 32, 16, false),
        (3136, 144, 24, true),
        (784, 240, 40, true),
        (196, 240, 80, false),
        (196, 480, 80, true),
        (196, 672, 112, true),
        (196, 112, 672, false),
        (49, 672, 192, false),
        (49, 1152, 192, true),
        (49, 192, 1152, false),
        (49, 1152, 320, false),
        (49, 320, 1280, false),
    ];
    for (i, (pixels, ci, co, residual)) in layers.into_iter().enumerate() {
        let seed = 100 + i as u64;
        let weights: Vec<f32> = noise(co * ci, seed)
            .iter()
            .map(|v| v / (ci as f32).sqrt())
            .collect();
        let bias = noise(co, seed + 1);
        let op = PointwiseConv::new(
            &[pixels, ci],
            1,
            &weights,
            co,
            Some(&bias),
            Some((0.0, 6.0)),
            residual,
        )?;
        let input = noise(pixels * ci, seed + 2);
        let res = residual.then(|| noise(pixels * co, seed + 3));
        let run = |threads: usize| -> TractResult<Vec<f32>> {
            let mut out = vec![f32::NAN; pixels * co];
            wasm_infer::session::with_threads(threads, || {
                op.run(&input, res.as_deref(), &mut out)
            })?;
            Ok(out)
        };
        let one = run(1)?;
        assert!(
            one.iter().all(|v| v.is_finite()),
            "layer {i}: every output written"
        );
        // The product itself, against a plain sum in f64.
        for (p, c) in [(0, 0), (pixels - 1, co - 1), (pixels / 2, co / 3)] {
            let dot: f64 = (0..ci)
                .map(|j| f64::from(weights[c * ci + j]) * f64::from(input[p * ci + j]))
                .sum();
            let want = (dot + f64::from(bias[c])).clamp(0.0, 6.0)
                + res.as_ref().map_or(0.0, |r| f64::from(r[p * co + c]));
            let got = f64::from(one[p * co + c]);
            assert!(
                (got - want).abs() <= 1e-4,
                "layer {i} ({p}, {c}): {got} vs {want}"
            );
        }
        for threads in [2, 3, 4] {
            assert!(
                run(threads)? == one,
                "layer {i}: {threads} threads changed a float"
            );
        }
    }
    Ok(())
}
