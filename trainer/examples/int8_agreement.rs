//! How the shipped 8-bit backbone compares with the `f32` one (a benchmark, not a test): a
//! trained model folder run both ways through tract, on every image of one or more datasets
//! (ImageFolder trees), per split: top-1 agreement, accuracy of each, largest probability
//! difference; and the files' sizes raw and gzipped. Prints a markdown table.
//!
//! ```text
//! cargo run --release -p trainer --example int8_agreement -- MODEL_DIR DATA_DIR...
//! ```

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use contract::ModelFiles;
use trainer::dataset::{Dataset, Split};
use trainer::run::{load_session, pixels};
use wasm_infer::{Backbone, ModelManifest, Session};

fn gzip_len(bytes: &[u8]) -> Result<usize> {
    let mut child = std::process::Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    let mut stdin = child.stdin.take().context("gzip stdin")?;
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("gzip writer panicked"))??;
    Ok(out.stdout.len())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data @ ..] = args.as_slice() else {
        bail!("usage: int8_agreement MODEL_DIR DATA_DIR...");
    };
    if data.is_empty() {
        bail!("usage: int8_agreement MODEL_DIR DATA_DIR...");
    }
    let dir = Path::new(model);
    let manifest =
        ModelManifest::from_json(&std::fs::read_to_string(dir.join(ModelFiles::MANIFEST))?)?;
    let shipped = load_session(dir)?;
    let head = std::fs::read(dir.join(&manifest.onnx.file))?;
    let full = Session::composed(
        std::sync::Arc::new(Backbone::full(
            &std::fs::read(dir.join(ModelFiles::BACKBONE_ONNX))?,
            &manifest,
        )?),
        &head,
        manifest.clone(),
    )?;

    println!("| file | bytes | gzip -9 bytes |");
    println!("|---|---|---|");
    let nnef = manifest.nnef.as_ref().map(|n| n.file.as_str());
    for name in [
        Some(ModelFiles::BACKBONE_ONNX),
        Some(ModelFiles::BACKBONE_INT8),
        Some(manifest.onnx.file.as_str()),
        nnef,
    ]
    .into_iter()
    .flatten()
    {
        let bytes = std::fs::read(dir.join(name))?;
        println!("| `{name}` | {} | {} |", bytes.len(), gzip_len(&bytes)?);
    }
    println!();
    println!(
        "| images | n | same top-1 as f32 | accuracy f32 | accuracy 8-bit | max abs diff of a probability |"
    );
    println!("|---|---|---|---|---|---|");
    for root in data {
        let dataset = Dataset::import_folder(Path::new(root))?;
        let groups: Vec<(String, Vec<&trainer::dataset::Sample>)> =
            [Split::Train, Split::Val, Split::Test]
                .into_iter()
                .map(|sp| (format!("{root} {sp:?}"), dataset.split(sp).collect()))
                .chain(std::iter::once((
                    format!("{root} all"),
                    dataset.samples.iter().collect(),
                )))
                .collect();
        for (name, samples) in groups {
            if samples.is_empty() {
                continue;
            }
            let (mut same, mut right_f32, mut right_q8, mut worst) = (0, 0, 0, 0f32);
            for s in &samples {
                let px_img = s.decode()?;
                let px = pixels(&px_img)?;
                let input = wasm_infer::preprocess::image_to_tensor(&px, &manifest.preprocess)?;
                let a = full.run(&input)?.remove(0);
                let b = shipped.run(&input)?.remove(0);
                let top = |v: &[f32]| {
                    (0..v.len())
                        .max_by(|&i, &j| v[i].total_cmp(&v[j]))
                        .unwrap_or(0)
                };
                let truth = manifest
                    .labels
                    .iter()
                    .position(|l| *l == dataset.labels[s.label]);
                same += usize::from(top(&a) == top(&b));
                right_f32 += usize::from(Some(top(&a)) == truth);
                right_q8 += usize::from(Some(top(&b)) == truth);
                worst = worst.max(trainer::run::max_abs_diff(&a, &b));
            }
            let n = samples.len();
            let pct = |k: usize| 100.0 * k as f64 / n as f64;
            println!(
                "| {name} | {n} | {same} ({:.1} %) | {:.3} | {:.3} | {worst:.2e} |",
                pct(same),
                right_f32 as f64 / n as f64,
                right_q8 as f64 / n as f64
            );
        }
    }
    Ok(())
}
