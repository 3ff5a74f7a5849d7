//! The graphs browsers load: each ONNX file the trainer exports is also written, at export
//! time, as the model tract has already decluttered, in NNEF (a tar of `graph.nnef` and one
//! file per tensor), planned for one input. Loading NNEF skips ONNX parsing and analysis,
//! and the wasm module carries no ONNX parser, protobuf or inference-rule code: in wasm32
//! this crate links `tract-nnef` and not `tract-onnx`.
//!
//! The loader ([`framework`]) knows the standard NNEF operations plus the few `tract_core`
//! ones these graphs use (`tract_core_external`, for inputs that are not `f32`, and
//! `tract_core_gather`, for the text encoder's word ids and embeddings), not
//! tract's whole `tract_core` registry: that registry names every core op (FFT, STFT,
//! recurrent cells…), and with it the linker would keep them all. [`export`] loads what it
//! wrote with this same loader, so a graph that needs anything else fails at export, on the
//! server, never in a browser.
//!
//! Tensors may be stored in 8 bits ([`crate::quant`]: `<label>.q8` entries, expanded to `f32`
//! when the graph is built), which is how the backbone ships.

use std::collections::HashMap;
use std::io::Read;

use tract_nnef::ast::{Identifier, ProtoModel};
use tract_nnef::framework::Nnef;
use tract_nnef::internal::*;

use crate::{Error, Result};

/// The NNEF framework browsers and servers build these graphs with: the NNEF standard
/// library and operations, `tract_core_external` and `tract_core_gather`. (Files are read by
/// [`load`], not by tract's tar reader, whose sub-model support links every registry.)
///
/// Built once per process and shared: building it parses NNEF's standard library and fills
/// the registries (about 10 ms natively, a quarter of loading the backbone), and a page loads
/// two or three graphs (backbone, head, text encoder).
pub fn framework() -> &'static Nnef {
    static FRAMEWORK: std::sync::LazyLock<Nnef> = std::sync::LazyLock::new(|| Nnef {
        stdlib: tract_nnef::framework::stdlib(),
        registries: vec![tract_nnef::ops::tract_nnef(), core_subset()],
        resource_loaders: vec![],
        allow_extended_identifier_syntax: false,
        extern_all_constants: false,
    });
    &FRAMEWORK
}

/// The `tract_core` operations the exported graphs use, registered under tract's own
/// registry name so graphs written by tract's full registry read back unchanged.
fn core_subset() -> tract_nnef::registry::Registry {
    let mut registry = tract_nnef::registry::Registry::new("tract_core");
    registry.register_primitive(
        "tract_core_external",
        &[
            TypeName::String.named("datum_type"),
            TypeName::Integer.array().named("shape"),
        ],
        &[("output", TypeName::Any.tensor())],
        de_external,
    );
    registry.register_primitive(
        "tract_core_gather",
        &[
            TypeName::Scalar.tensor().named("input"),
            TypeName::Scalar.tensor().named("indices"),
            TypeName::Integer.named("axis"),
        ],
        &[("output", TypeName::Scalar.tensor())],
        de_gather,
    );
    registry
}

/// `tract_core_external(datum_type, shape)`: a graph input of any type (NNEF's own `external`
/// is `f32` only), as tract reads it.
fn de_external(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let shape: TVec<TDim> =
        builder.allowing_new_symbols(|builder| invocation.named_arg_as(builder, "shape"))?;
    let dt: DatumType = invocation
        .named_arg_as::<String>(builder, "datum_type")?
        .parse()?;
    Ok(Value::Wire(builder.model.add_source("", dt.fact(&*shape))?))
}

/// `tract_core_gather(input, indices, axis)`: the indices cast to `i64`, as tract reads it.
fn de_gather(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    use tract_nnef::tract_core::ops::array::Gather;
    let input = invocation.named_arg_as(builder, "input")?;
    let indices = invocation.named_arg_as(builder, "indices")?;
    let indices = builder.wire_as_outlets(
        tract_nnef::tract_core::ops::cast::cast(i64::datum_type()),
        &[indices],
    )?[0];
    let axis: usize = invocation.named_arg_as(builder, "axis")?;
    builder.wire(Gather::new(axis), &[input, indices])
}

/// Build the typed graph of an NNEF tar written by [`export`]: `graph.nnef` and one entry per
/// tensor, `<label>.dat` (NNEF's tensor file) or `<label>.q8` ([`crate::quant`], expanded
/// to `f32`). Anything else in the archive (other names, entries that are not plain files), a
/// tensor given twice, a damaged entry or a graph naming a tensor the archive lacks is
/// refused. No entry may claim more bytes than the archive holds, so what is allocated stays
/// within a few times the file's size.
pub fn load(bytes: &[u8]) -> Result<TypedModel> {
    let bad = |why: String| Error::Graph(format!("NNEF graph: {why}"));
    let mut graph = None;
    let mut tensors: HashMap<Identifier, Arc<Tensor>> = HashMap::new();
    let mut archive = tar::Archive::new(bytes);
    let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = {
            let path = entry.path().map_err(|e| bad(e.to_string()))?;
            path.to_string_lossy().trim_start_matches("./").to_string()
        };
        // Sparse, link and other special entries can expand to far more than they occupy.
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!("{name}: not a plain file")));
        }
        let mut data = Vec::new();
        entry
            .take(bytes.len() as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        if data.len() > bytes.len() {
            return Err(bad(format!("{name}: larger than the archive")));
        }
        let (label, tensor) = if name == tract_nnef::resource::GRAPH_NNEF_FILENAME {
            if graph.is_some() {
                return Err(bad("graph.nnef appears twice".into()));
            }
            graph =
                Some(String::from_utf8(data).map_err(|_| bad("graph.nnef is not UTF-8".into()))?);
            continue;
        } else if let Some(label) = name.strip_suffix(".dat") {
            check_dat(&data).map_err(|why| bad(format!("{name}: {why}")))?;
            let tensor = tract_nnef::tensors::read_tensor(&data[..])
                .map_err(|e| bad(format!("{name}: {e}")))?;
            (label, tensor)
        } else if let Some(label) = name.strip_suffix(".q8") {
            let tensor =
                crate::quant::decode_tensor(&data).map_err(|e| bad(format!("{name}: {e}")))?;
            (label, tensor)
        } else {
            return Err(bad(format!("unexpected entry {name:?}")));
        };
        if tensors
            .insert(Identifier::from(label), Arc::new(tensor))
            .is_some()
        {
            return Err(bad(format!("tensor {label:?} appears twice")));
        }
    }
    let text = graph.ok_or_else(|| bad("no graph.nnef".into()))?;
    let doc = tract_nnef::ast::parse::parse_document(&text).map_err(|e| bad(format!("{e:#}")))?;
    let proto = ProtoModel {
        doc,
        tensors,
        quantization: None,
        resources: HashMap::new(),
    };
    proto.validate().map_err(|e| bad(format!("{e:#}")))?;
    framework()
        .model_for_proto_model(&proto)
        .map_err(|e| bad(format!("{e:#}")))
}

/// An NNEF tensor file's 128-byte header against its bytes: the data size it declares must be
/// what follows it, and its items whole bytes. (tract's reader allocates the tensor the header
/// describes before reading the data.)
fn check_dat(data: &[u8]) -> std::result::Result<(), String> {
    let field = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(size), Some(bits)) = (field(4), field(44)) else {
        return Err("shorter than a tensor header".into());
    };
    if data.len() < 128 || size as usize != data.len() - 128 {
        return Err(format!(
            "header declares {size} bytes of data, the file holds {}",
            data.len().saturating_sub(128)
        ));
    }
    if ![8, 16, 32, 64].contains(&bits) {
        return Err(format!("{bits}-bit items are not read here"));
    }
    Ok(())
}

/// The ONNX graph `onnx`, with its inputs fixed to `inputs` (one image or one text at a
/// time, as every session plans it), decluttered by tract and written as an NNEF tar;
/// `quantise` stores its weights in 8 bits ([`crate::quant::quantise_tar`]; all but the
/// stem's). Deterministic: the same graph gives the same bytes. The result is read back with
/// [`framework`], so a graph browsers could not load is refused here.
#[cfg(not(target_arch = "wasm32"))]
pub fn export(onnx: &[u8], inputs: &[TypedFact], quantise: bool) -> Result<Vec<u8>> {
    let typed = declutter(onnx, inputs)?;
    let stem = stem_labels(&typed);
    write(
        &typed,
        quantise.then_some(&|label: &str, _: &Tensor| !stem.iter().any(|k| k == label)),
    )
}

/// `onnx` with its inputs fixed to `inputs`, typed and decluttered by tract.
#[cfg(not(target_arch = "wasm32"))]
fn declutter(onnx: &[u8], inputs: &[TypedFact]) -> Result<TypedModel> {
    use tract_onnx::prelude::{Framework as _, InferenceModelExt as _};
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .map_err(Error::engine)?;
    for (i, fact) in inputs.iter().enumerate() {
        model = model
            .with_input_fact(i, fact.clone().into())
            .map_err(Error::engine)?;
    }
    let mut typed = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(Error::engine)?;
    // Producer names and versions: not needed to run, and they would pull the cast op in.
    typed.properties.clear();
    Ok(typed)
}

/// `typed` as an NNEF tar, the tensors `quantise` picks in 8 bits, checked by loading it back.
#[cfg(not(target_arch = "wasm32"))]
fn write(typed: &TypedModel, quantise: Option<crate::quant::Pick<'_>>) -> Result<Vec<u8>> {
    let tar = tract_nnef::nnef()
        .write_to_tar_with_config(typed, Vec::new(), false, true)
        .map_err(Error::engine)?;
    let out = match quantise {
        Some(wanted) => crate::quant::quantise_tar(&tar, wanted)?,
        None => tar,
    };
    load(&out)?;
    Ok(out)
}

/// The labels of the constants read by the nodes fed by the graph's inputs (the stem
/// convolution, on raw pixels): kept in `f32` by the 8-bit form.
#[cfg(not(target_arch = "wasm32"))]
fn stem_labels(model: &TypedModel) -> Vec<String> {
    use tract_nnef::tract_core::ops::konst::Const;
    model
        .nodes()
        .iter()
        .filter(|n| n.inputs.iter().any(|i| model.inputs.contains(i)))
        .flat_map(|n| n.inputs.iter())
        .filter(|i| model.node(i.node).op_is::<Const>())
        .map(|i| model.node(i.node).name.clone())
        .collect()
}

/// A head (`features [batch, features]` → one output) as browsers load it: [`export`] for one
/// feature row, weights in `f32`.
#[cfg(not(target_arch = "wasm32"))]
pub fn export_head(onnx: &[u8], features: usize) -> Result<Vec<u8>> {
    export(onnx, &[f32::fact([1, features])], false)
}

/// A head on the backbone's feature map (`[batch, channels, side, side]`, detection) as
/// browsers load it: [`export`] for one map, the weight tensors of `quantised` sizes (values
/// each; the detection head's 1×1 reduction of the backbone's channels and its 3×3 layer,
/// nearly all of its bytes) in 8 bits, one scale per output channel as the backbone's; the
/// rest `f32`. The trainer scores and exports those tensors as [`crate::quant::round_trip`]
/// gives them back, so the file computes what was measured. Refused unless each size names
/// exactly one tensor of the graph.
#[cfg(not(target_arch = "wasm32"))]
pub fn export_map_head(
    onnx: &[u8],
    [channels, side]: [usize; 2],
    quantised: &[usize],
) -> Result<Vec<u8>> {
    let typed = declutter(onnx, &[f32::fact([1, channels, side, side])])?;
    let found = std::cell::RefCell::new(vec![0usize; quantised.len()]);
    let out = write(
        &typed,
        Some(
            &|_: &str, t: &Tensor| match quantised.iter().position(|&n| n == t.len()) {
                Some(k) => {
                    found.borrow_mut()[k] += 1;
                    true
                }
                None => false,
            },
        ),
    )?;
    if found.borrow().iter().any(|&n| n != 1) {
        return Err(Error::Graph(format!(
            "the head's weights of {quantised:?} values were found {:?} times, not once each",
            found.borrow()
        )));
    }
    Ok(out)
}

/// A ranking text encoder (`ids [batch, len]` int64, `mask [batch, len]` float → embedding)
/// as browsers load it: [`export`] for one text of `len` tokens.
#[cfg(not(target_arch = "wasm32"))]
pub fn export_text(onnx: &[u8], len: usize) -> Result<Vec<u8>> {
    export(onnx, &[i64::fact([1, len]), f32::fact([1, len])], false)
}

/// A product head (`features [batch, features]`, `ids [batch, len]` int64, `mask [batch, len]`,
/// `has_image [batch, 1]` → probabilities) as browsers load it: [`export`] for one item, its
/// word table (`words`: `[vocab, dim]`, nearly all of the head's bytes) in 8 bits, one scale per
/// word, the rest in `f32`. The trainer scores and exports the table as
/// [`crate::quant::round_trip`] gives it back, so the file computes what was measured. Refused
/// when the graph holds no constant of that shape.
#[cfg(not(target_arch = "wasm32"))]
pub fn export_product_head(
    onnx: &[u8],
    features: usize,
    len: usize,
    words: [usize; 2],
) -> Result<Vec<u8>> {
    let typed = declutter(
        onnx,
        &[
            f32::fact([1, features]),
            i64::fact([1, len]),
            f32::fact([1, len]),
            f32::fact([1, 1]),
        ],
    )?;
    let found = std::cell::Cell::new(0);
    let out = write(
        &typed,
        Some(&|_: &str, t: &Tensor| {
            let hit = t.shape() == words;
            found.set(found.get() + usize::from(hit));
            hit
        }),
    )?;
    if found.get() != 1 {
        return Err(Error::Graph(format!(
            "the product head holds {} word tables of shape {words:?}, not one",
            found.get()
        )));
    }
    Ok(out)
}
