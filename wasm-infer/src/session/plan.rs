//! Graphs into plans: a graph's inputs and outputs checked against the manifest, its output
//! chosen by name, optimised for one input, and run.

use tract_nnef::prelude::*;

use super::Runnable;
use crate::manifest::{Dim, TensorSpec};
use crate::{Error, Result};

/// Parse `onnx`, check its input and output against `io`, and plan it for one input of
/// `fact` (the batch dimension fixed: see [`Session::new`]).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn plan_for(
    onnx: &[u8],
    io: (&TensorSpec, &TensorSpec),
    fact: TypedFact,
) -> Result<Runnable> {
    use tract_onnx::prelude::{Framework as _, InferenceModelExt as _};
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .map_err(Error::engine)?;
    let mut model = model;
    select_output(&mut model, &io.1.name)?;
    let typed = model.clone().into_typed().map_err(Error::engine)?;
    check_io(&typed, io, false)?;
    drop(typed);
    let typed = model
        .with_input_fact(0, fact.into())
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .map_err(Error::engine)?;
    optimise(typed)
}

/// Check a graph planned for one input (an NNEF file, [`crate::nnef`]) against `io`, and
/// plan it.
pub(crate) fn plan_typed(model: TypedModel, io: (&TensorSpec, &TensorSpec)) -> Result<Runnable> {
    let mut model = model;
    select_output(&mut model, &io.1.name)?;
    check_io(&model, io, true)?;
    let model = model.into_decluttered().map_err(Error::engine)?;
    optimise(model)
}

/// Of a graph with several outputs (the backbone gives pooled features and the feature map
/// they pool), keep the one named `name`: planning then drops what it does not need. A graph
/// with one output is left as it is (and checked by name later).
pub(crate) fn select_output<F, O>(
    model: &mut tract_nnef::prelude::Graph<F, O>,
    name: &str,
) -> Result<()>
where
    F: Fact + Clone + 'static,
    O: std::fmt::Debug + std::fmt::Display + AsRef<dyn Op> + AsMut<dyn Op> + Clone + 'static,
{
    if model.outputs.len() < 2 {
        return Ok(());
    }
    let found = model
        .outputs
        .iter()
        .copied()
        .find(|&o| model.outlet_label(o).unwrap_or(&model.node(o.node).name) == name);
    let Some(outlet) = found else {
        let names: Vec<String> = model
            .outputs
            .iter()
            .map(|&o| {
                model
                    .outlet_label(o)
                    .unwrap_or(&model.node(o.node).name)
                    .to_string()
            })
            .collect();
        return Err(Error::Graph(format!(
            "the graph's outputs are {names:?}, the manifest names {name:?}"
        )));
    };
    model
        .select_output_outlets(&[outlet])
        .map_err(Error::engine)
}

/// Swap in wasm-infer's convolution ops ([`crate::pointwise`], [`crate::depthwise`], with
/// channel-last tensors inside the backbone, [`crate::layout`]; in wasm the 1×1 ones only),
/// optimise, make runnable. In wasm this declutters twice (the swap needs a decluttered
/// graph, and `into_optimized` declutters first), but tract then packs no 1×1 weights:
/// under node the session build went from 294–348 to 270–294 ms.
pub(crate) fn optimise(mut typed: TypedModel) -> Result<Runnable> {
    crate::layout::install_kernels(&mut typed).map_err(Error::engine)?;
    typed
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(Error::engine)
}

/// The text encoder's inputs (their names, in order) must be the manifest's ids and mask.
pub(crate) fn check_text_inputs<'a>(
    names: impl Iterator<Item = &'a String>,
    text: &crate::TextTower,
) -> Result<()> {
    let names: Vec<&String> = names.collect();
    if names != [&text.ids.name, &text.mask.name] {
        return Err(Error::Graph(format!(
            "text encoder inputs are {names:?}, manifest says [{:?}, {:?}]",
            text.ids.name, text.mask.name
        )));
    }
    Ok(())
}

/// Run a plan on one input; its first output (`[1, …]`) flattened to one row. In the threaded
/// browser module the whole run happens on the pool ([`super::browser_threads`]).
pub(crate) fn run_one(plan: &Runnable, inputs: TVec<Tensor>) -> Result<Vec<f32>> {
    super::browser_threads(|| {
        let inputs = inputs.into_iter().map(TValue::from).collect();
        let outputs = plan.run(inputs).map_err(Error::engine)?;
        let out = outputs
            .first()
            .ok_or_else(|| Error::Engine("model produced no output".into()))?;
        let view = out.to_plain_array_view::<f32>().map_err(Error::engine)?;
        if view.shape().len() < 2 || view.shape()[0] != 1 {
            return Err(Error::Graph(format!(
                "output shape {:?} for one image",
                view.shape()
            )));
        }
        Ok(view.iter().copied().collect())
    })
}

/// The shape of one item of a `[batch, …]` tensor: the batch as 1, the rest as the spec fixes
/// them.
pub(crate) fn one_of(spec: &TensorSpec) -> Result<Vec<usize>> {
    let mut dims = vec![1];
    for d in spec.shape.iter().skip(1) {
        match d {
            Dim::Fixed(n) => dims.push(*n),
            Dim::Symbol(s) => {
                return Err(Error::manifest(format!(
                    "{} has a second dynamic dimension {s:?}",
                    spec.name
                )));
            }
        }
    }
    Ok(dims)
}

/// Compare the graph's declared input/output names and shapes with the manifest's specs; a
/// graph planned for one input (`one`) has 1 where the manifest says `batch`.
pub(crate) fn check_io(
    model: &TypedModel,
    (input, output): (&TensorSpec, &TensorSpec),
    one: bool,
) -> Result<()> {
    if model.inputs.len() != 1 || model.outputs.len() != 1 {
        return Err(Error::Graph(format!(
            "expected 1 input and 1 output, graph has {} and {}",
            model.inputs.len(),
            model.outputs.len()
        )));
    }
    let pairs = [
        ("input", model.inputs[0], input),
        ("output", model.outputs[0], output),
    ];
    for (what, outlet, spec) in pairs {
        // Inputs are source nodes named after the input; outputs carry the ONNX value name
        // as the outlet label.
        let name = model
            .outlet_label(outlet)
            .unwrap_or(&model.node(outlet.node).name);
        if *name != spec.name {
            return Err(Error::Graph(format!(
                "{what} is named {name:?} in the graph, {:?} in the manifest",
                spec.name
            )));
        }
        let fact = model.outlet_fact(outlet).map_err(Error::engine)?;
        if fact.datum_type != f32::datum_type() {
            return Err(Error::Graph(format!(
                "{what} is {:?}, not f32",
                fact.datum_type
            )));
        }
        let dims: Vec<TDim> = fact.shape.iter().cloned().collect();
        let matches = dims.len() == spec.shape.len()
            && dims
                .iter()
                .zip(&spec.shape)
                .all(|(d, m)| match (d.to_i64(), m) {
                    (Ok(v), Dim::Fixed(n)) => usize::try_from(v).is_ok_and(|v| v == *n),
                    (Err(_), Dim::Symbol(_)) => !one,
                    (Ok(1), Dim::Symbol(_)) => one,
                    _ => false,
                });
        if !matches {
            let graph: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            return Err(Error::Graph(format!(
                "{what} {name:?} has shape [{}] in the graph, {} in the manifest",
                graph.join(", "),
                spec.shape_string()
            )));
        }
    }
    Ok(())
}
