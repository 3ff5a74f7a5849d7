//! Where tract spends its time on an exported model (a profile, not a test): every node of the
//! optimised backbone plan (where all but a few microseconds go; the whole graph for folders
//! written before heads were split) timed over many runs of one real image, summed by operator
//! and printed as a markdown table, with the ten slowest nodes. Run by
//! `scripts/profile-tract.sh`.
//!
//! Natively it profiles the api's plan (the `f32` ONNX backbone), with tract's own kernels and
//! with wasm-infer's (1×1 and stem, depthwise), then threads and batches. Built for wasm32-wasip1 with the browser
//! module's flags and run by node's WASI, it profiles the plan browsers build: the shipped
//! 8-bit NNEF backbone, loaded by `Backbone::new`. Both first time the phases of building the
//! session from `backbone.q8`.
//!
//! ```text
//! cargo run --release -p wasm-infer --example profile_tract -- MODEL_DIR IMAGE [RUNS] [THREADS]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tract_nnef::prelude::*;
use tract_nnef::tract_core::plan::{SimpleState, eval};
use wasm_infer::preprocess::image_to_tensor;
use wasm_infer::{ModelManifest, PixelFormat, Pixels};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, image, rest @ ..] = args.as_slice() else {
        return Err("usage: profile_tract MODEL_DIR IMAGE [RUNS] [THREADS]".into());
    };
    let dir = std::path::Path::new(dir);
    let runs: usize = rest.first().map_or(Ok(50), |r| r.parse())?;
    let threads: usize = rest.get(1).map_or(Ok(2), |r| r.parse())?;
    let manifest = ModelManifest::from_json(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
    let size = manifest.preprocess.size as usize;
    let img = image::open(image)?.to_rgba8();
    let pixels = Pixels::new(img.width(), img.height(), PixelFormat::Rgba8, img.as_raw())?;
    let input = image_to_tensor(&pixels, &manifest.preprocess)?;
    let input: TValue = Tensor::from_shape(&[1, 3, size, size], &input)?.into();
    profile_plans(dir, &manifest, &input, runs, threads)
}

/// The plan browsers build: `backbone.q8` (NNEF, 8-bit weights expanded to `f32`), with
/// wasm-infer's 1×1 convolutions (`pointwise::quad`) and tract's other kernels, one thread.
#[cfg(target_arch = "wasm32")]
fn profile_plans(
    dir: &std::path::Path,
    manifest: &ModelManifest,
    input: &TValue,
    runs: usize,
    _threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    session_phases(dir, manifest)?;
    let spec = manifest
        .backbone
        .as_ref()
        .ok_or("the model has no separate backbone")?;
    let backbone =
        wasm_infer::Backbone::new(&std::fs::read(dir.join(&spec.shipped().file))?, manifest)?;
    profile(
        "the browsers' plan (backbone.q8 as NNEF), wasm",
        backbone.plan(),
        input,
        runs,
    )?;
    Ok(())
}

/// Where building the browsers' session goes: `Backbone::new` on `backbone.q8`, phase by
/// phase, median of 5 builds.
fn session_phases(
    dir: &std::path::Path,
    manifest: &ModelManifest,
) -> Result<(), Box<dyn std::error::Error>> {
    let spec = manifest
        .backbone
        .as_ref()
        .ok_or("the model has no separate backbone")?;
    let shipped = spec.shipped();
    let bytes = std::fs::read(dir.join(&shipped.file))?;
    let names = [
        "sha256 check",
        "read (tar, 8-bit weights, NNEF graph)",
        "declutter",
        "kernel swaps",
        "optimise (declutter, codegen, weight packing)",
        "runnable",
        "whole Backbone::new",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..5 {
        let mut phase = 0;
        let mut t = Instant::now();
        let mut lap = |times: &mut Vec<Vec<f64>>| {
            times[phase].push(t.elapsed().as_secs_f64() * 1e3);
            phase += 1;
            t = Instant::now();
        };
        let whole = Instant::now();
        wasm_infer::session::verify_digest(&bytes, &shipped.file, &shipped.sha256, shipped.bytes)?;
        lap(&mut times);
        let model = wasm_infer::nnef::load(&bytes)?;
        lap(&mut times);
        // As `Backbone::new` does it: declutter and swap wasm-infer's ops in.
        let mut model = model.into_decluttered()?;
        lap(&mut times);
        wasm_infer::layout::install_kernels(&mut model)?;
        lap(&mut times);
        let model = model.into_optimized()?;
        lap(&mut times);
        let _plan = model.into_runnable()?;
        lap(&mut times);
        times[6].push(whole.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "\n### building the browsers' session from {} ({} bytes)\n",
        shipped.file,
        bytes.len()
    );
    println!("| phase | ms (median of 5) |");
    println!("|---|---|");
    for (name, mut t) in names.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        println!("| {name} | {:.1} |", t[t.len() / 2]);
    }
    Ok(())
}

/// The api's plan (the `f32` ONNX backbone) with tract's kernels and with wasm-infer's, then
/// with intra-op threads and on batches.
#[cfg(not(target_arch = "wasm32"))]
fn profile_plans(
    dir: &std::path::Path,
    manifest: &ModelManifest,
    input: &TValue,
    runs: usize,
    threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use tract_onnx::prelude::*;

    let file = match &manifest.backbone {
        Some(b) => b.onnx.file.clone(),
        None => manifest.onnx.file.clone(),
    };
    let size = manifest.preprocess.size as usize;
    let plan_n = |ours: bool, n: usize| -> TractResult<Arc<TypedRunnableModel>> {
        let mut model = tract_onnx::onnx()
            .model_for_path(dir.join(&file))?
            .with_input_fact(0, f32::fact([n, 3, size, size]).into())?
            .into_typed()?
            .into_decluttered()?;
        if ours {
            wasm_infer::layout::install_kernels(&mut model)?;
        }
        model.into_optimized()?.into_runnable()
    };
    let plan = |ours: bool| plan_n(ours, 1);
    if manifest.nnef.is_some() {
        session_phases(dir, manifest)?;
    }

    let tract = plan(false)?;
    let ours = plan(true)?;
    let a = profile("tract's own kernels", &tract, input, runs)?;
    let b = profile(
        "wasm-infer's 1×1 and depthwise kernels (EdgePointwiseConv, EdgeDepthwiseConv), as deployed",
        &ours,
        input,
        runs,
    )?;
    println!(
        "\nwhole run: {a:.2} ms with tract's kernels, {b:.2} ms with wasm-infer's ({:.2}x)",
        b / a
    );
    // The deployed plan with intra-op threads (what the api gives a request running alone)
    // against one thread, runs alternating: node by node, then whole runs.
    threads_against_one(&ours, input, runs, threads)?;
    // Batches: time per image of one run on `n` images (one thread), against one image a run.
    for n in [2, 4, 8] {
        let batch = plan_n(true, n)?;
        let one = input.clone().into_tensor();
        let many = Tensor::stack_tensors(0, &vec![one; n])?;
        let many: TValue = many.into();
        let mut times = Vec::new();
        for i in 0..runs.div_ceil(n) + 2 {
            let t = Instant::now();
            batch.run(tvec!(many.clone()))?;
            if i >= 2 {
                times.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
            }
        }
        times.sort_by(f64::total_cmp);
        let t = times[times.len() / 2];
        println!(
            "batch of {n}: {t:.2} ms per image ({:.2}x one image a run)",
            t / b
        );
    }
    Ok(())
}

/// One thread against `threads`, runs alternating (so both see the same machine): the median
/// time of every node over 0.02 ms, then of whole runs without the per-node clock.
#[cfg(not(target_arch = "wasm32"))]
fn threads_against_one(
    plan: &Arc<TypedRunnableModel>,
    input: &TValue,
    runs: usize,
    threads: usize,
) -> TractResult<()> {
    use wasm_infer::session::with_threads;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut state = SimpleState::new(plan)?;
    let mut nodes: BTreeMap<usize, (String, [Vec<f64>; 2])> = BTreeMap::new();
    for i in 0..runs + 3 {
        for (k, n) in [1, threads].into_iter().enumerate() {
            let mut times = Vec::new();
            with_threads(n, || {
                state.run_plan_with_eval(tvec!(input.clone()), |ctx, st, node, inputs| {
                    let t = Instant::now();
                    let out = eval(ctx, st, node, inputs);
                    times.push((node.id, node.to_string(), t.elapsed().as_secs_f64() * 1e3));
                    out
                })
            })?;
            if i >= 3 {
                for (id, name, ms) in times {
                    nodes.entry(id).or_insert((name, Default::default())).1[k].push(ms);
                }
            }
        }
    }
    println!("\n### one thread against {threads}, runs alternating, median per node\n");
    println!("| node | 1 thread, ms | {threads} threads, ms | ratio |");
    println!("|---|---|---|---|");
    for (name, [one, many]) in nodes.values_mut() {
        let (a, b) = (median(one), median(many));
        if a >= 0.02 {
            println!("| {name} | {a:.3} | {b:.3} | {:.2} |", b / a);
        }
    }
    let mut whole: [Vec<f64>; 2] = Default::default();
    for i in 0..runs + 3 {
        for (k, n) in [1, threads].into_iter().enumerate() {
            let t = Instant::now();
            with_threads(n, || plan.run(tvec!(input.clone())))?;
            if i >= 3 {
                whole[k].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let [mut one, mut many] = whole;
    let (a, b) = (median(&mut one), median(&mut many));
    println!(
        "\nwhole runs, alternating: median {a:.2} ms on one thread, {b:.2} ms on {threads} ({:.2}x)",
        b / a
    );
    Ok(())
}

/// Time every node of `plan` over `runs` runs (after 3 warm-up runs), print the tables, and
/// return the mean whole-run time in ms.
fn profile(
    label: &str,
    plan: &Arc<TypedRunnableModel>,
    input: &TValue,
    runs: usize,
) -> TractResult<f64> {
    println!("\n### {label}\n");
    let mut state = SimpleState::new(plan)?;
    let mut per_node: BTreeMap<usize, (String, String, Duration)> = BTreeMap::new();
    let mut whole = Duration::ZERO;
    for i in 0..runs + 3 {
        let t0 = Instant::now();
        let mut times: Vec<(usize, String, String, Duration)> = Vec::new();
        state.run_plan_with_eval(tvec!(input.clone()), |ctx, st, node, inputs| {
            let t = Instant::now();
            let out = eval(ctx, st, node, inputs);
            times.push((
                node.id,
                node.op().name().to_string(),
                node.to_string(),
                t.elapsed(),
            ));
            out
        })?;
        if i < 3 {
            continue; // warm-up
        }
        whole += t0.elapsed();
        for (id, op, name, d) in times {
            per_node.entry(id).or_insert((op, name, Duration::ZERO)).2 += d;
        }
    }
    let mut per_op: BTreeMap<String, (usize, Duration)> = BTreeMap::new();
    for (op, _, d) in per_node.values() {
        let e = per_op.entry(op.clone()).or_default();
        e.0 += 1;
        e.1 += *d;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / runs as f64;
    let total: Duration = per_node.values().map(|v| v.2).sum();
    println!(
        "{} nodes, {runs} runs of one image: {:.2} ms per run ({:.2} ms in nodes)\n",
        per_node.len(),
        ms(whole),
        ms(total)
    );
    println!("| operator | nodes | ms per run | share |");
    println!("|---|---|---|---|");
    let mut ops: Vec<_> = per_op.into_iter().collect();
    ops.sort_by_key(|o| std::cmp::Reverse(o.1.1));
    for (op, (n, d)) in &ops {
        let share = 100.0 * d.as_secs_f64() / total.as_secs_f64();
        println!("| {op} | {n} | {:.2} | {share:.1} % |", ms(*d));
    }
    println!("\nslowest nodes:\n");
    let mut nodes: Vec<_> = per_node.values().collect();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.2));
    for (_, name, d) in nodes.iter().take(10) {
        println!("- {:.2} ms  {name}", ms(*d));
    }
    Ok(ms(whole))
}
