//! ONNX export: the graph builder every exporter shares (initializers, the model wrapper), the
//! frozen backbone's graph and the classifier's head, written with the prost types that
//! tract-onnx itself parses (`tract_onnx::pb`), so there is a single ONNX schema in the build.
//! The ranking encoders are exported next to their model ([`crate::rank::export`]); this
//! module knows no task pipeline.
//!
//! A model is two graphs, composed at inference:
//! - the **backbone** (one file per backbone weights, shared by every version and task, so its
//!   bytes must not depend on any model): `image [batch, 3, 224, 224]` → Conv (+ Clip 0..6)
//!   × 49 with residual Adds → `feature_map [batch, 1280, 7, 7]` (what detection heads read)
//!   → GlobalAveragePool → Flatten → `features [batch, 1280]` (what every other head reads).
//!   Two outputs of one file: a session plans the one its manifest names, and tract drops
//!   what that output does not need;
//! - the classifier's **head** (a few kilobytes per version): `features` → Gemm → Softmax →
//!   `probs [batch, classes]`.
//!
//! Opset 13, dynamic batch dimension. The weights are the folded ones the candle forward pass
//! uses.

use prost::Message;
use tract_onnx::pb;

use crate::backbone::{Backbone, ConvLayer, FEATURE_DIM, INPUT_SIZE, MAP_SIDE};
use crate::train::Head;
use crate::{Error, Result};

/// ONNX opset the exporter writes.
pub const OPSET: i64 = 13;
/// Name of the image input.
pub const INPUT_NAME: &str = "image";
/// Name of the backbone's output, the heads' input.
pub const FEATURES_NAME: &str = "features";
/// Name of the backbone's feature map before pooling, detection heads' input.
pub const FEATURE_MAP_NAME: &str = "feature_map";
/// Name of the probabilities output.
pub const OUTPUT_NAME: &str = "probs";
/// Name of the batch dimension symbol.
pub const BATCH_SYMBOL: &str = "batch";
/// Name of the word-ids input of graphs that read text (`[batch, len]`, int64).
pub const IDS_NAME: &str = "ids";
/// Name of the word-mask input of graphs that read text (`[batch, len]`, 1 = word).
pub const MASK_NAME: &str = "mask";

/// An ONNX graph under construction: nodes in topological order and their weights.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

pub(crate) fn attr_ints(name: &str, ints: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

pub(crate) fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub(crate) fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    typed_value_info(name, dims, pb::tensor_proto::DataType::Float)
}

/// The image input every image model takes: `image [batch, 3, 224, 224]`.
pub(crate) fn image_input() -> pb::ValueInfoProto {
    let size = INPUT_SIZE as i64;
    value_info(INPUT_NAME, &[None, Some(3), Some(size), Some(size)])
}

pub(crate) fn typed_value_info(
    name: &str,
    dims: &[Option<i64>],
    elem: pb::tensor_proto::DataType,
) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => Value::DimValue(*n),
                None => Value::DimParam(BATCH_SYMBOL.into()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    pub(crate) fn initializer(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data,
            ..Default::default()
        });
        name.into()
    }

    pub(crate) fn initializer_i64(&mut self, name: &str, data: &[i64]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: vec![data.len() as i64],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.into()
    }

    /// The finished graph `name` with these inputs and outputs.
    pub(crate) fn finish(
        self,
        name: &str,
        input: Vec<pb::ValueInfoProto>,
        output: Vec<pb::ValueInfoProto>,
    ) -> pb::GraphProto {
        pb::GraphProto {
            name: name.into(),
            node: self.nodes,
            initializer: self.initializers,
            input,
            output,
            ..Default::default()
        }
    }

    /// A node whose output gets a chosen name (graph outputs).
    pub(crate) fn output_node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attribute: Vec<pb::AttributeProto>,
        output: &str,
    ) {
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs,
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
    }

    /// The frozen backbone from `image` to its feature map `[batch, FEATURE_DIM, 7, 7]` and
    /// pooled features `[batch, FEATURE_DIM]`.
    pub(crate) fn backbone(&mut self, backbone: &Backbone) -> (String, String) {
        // Scalars for Clip (opset ≥ 11 takes min/max as inputs).
        self.initializer("relu6.min", &[], &[0.0]);
        self.initializer("relu6.max", &[], &[6.0]);
        let mut x = self.conv(&backbone.stem, INPUT_NAME.to_string());
        for (i, block) in backbone.blocks.iter().enumerate() {
            let input = x.clone();
            if let Some(expand) = &block.expand {
                x = self.conv(expand, x);
            }
            x = self.conv(&block.depthwise, x);
            x = self.conv(&block.project, x);
            if block.residual {
                x = self.node(
                    "Add",
                    &format!("_blocks.{i}.residual"),
                    vec![x, input],
                    vec![],
                );
            }
        }
        let map = self.conv(&backbone.head, x);
        let x = self.node("GlobalAveragePool", "pool", vec![map.clone()], vec![]);
        let pooled = self.node("Flatten", "flatten", vec![x], vec![attr_int("axis", 1)]);
        (map, pooled)
    }

    pub(crate) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        attribute: Vec<pb::AttributeProto>,
    ) -> String {
        let output = format!("{name}:out");
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs,
            output: vec![output.clone()],
            attribute,
            ..Default::default()
        });
        output
    }

    fn conv(&mut self, layer: &ConvLayer, x: String) -> String {
        let k = layer.kernel;
        let w = self.initializer(
            &format!("{}.weight", layer.name),
            &[layer.out_ch, layer.in_per_group, k, k],
            &layer.weight,
        );
        let b = self.initializer(
            &format!("{}.bias", layer.name),
            &[layer.out_ch],
            &layer.bias,
        );
        let attrs = vec![
            attr_ints("kernel_shape", vec![k as i64, k as i64]),
            attr_ints("strides", vec![layer.stride as i64; 2]),
            attr_ints("pads", layer.pads.iter().map(|p| *p as i64).collect()),
            attr_ints("dilations", vec![1, 1]),
            attr_int("group", layer.groups as i64),
        ];
        let y = self.node("Conv", &layer.name, vec![x, w, b], attrs);
        if layer.relu6 {
            let name = format!("{}.relu6", layer.name);
            self.node(
                "Clip",
                &name,
                vec![y, "relu6.min".into(), "relu6.max".into()],
                vec![],
            )
        } else {
            y
        }
    }
}

/// The frozen backbone as ONNX bytes: `image` → `features` and `feature_map`. The bytes
/// depend only on the backbone's weights (and this exporter), so every model on it shares one
/// file.
pub fn export_backbone(backbone: &Backbone) -> Vec<u8> {
    let mut g = GraphBuilder::default();
    let (map, pooled) = g.backbone(backbone);
    g.output_node("Identity", vec![pooled], vec![], FEATURES_NAME);
    g.output_node("Identity", vec![map], vec![], FEATURE_MAP_NAME);
    let graph = g.finish(
        "edgeml-backbone",
        vec![image_input()],
        vec![features_info(), feature_map_info()],
    );
    encode_model(
        graph,
        format!(
            "EfficientNet-Lite0 (frozen, weights sha256 {}): image → pooled features, and the \
             feature map before pooling",
            backbone.weights_sha256
        ),
    )
}

/// The `feature_map [batch, FEATURE_DIM, 7, 7]` value: the backbone's second output,
/// detection heads' input.
pub(crate) fn feature_map_info() -> pb::ValueInfoProto {
    let side = Some(MAP_SIDE as i64);
    value_info(
        FEATURE_MAP_NAME,
        &[None, Some(FEATURE_DIM as i64), side, side],
    )
}

/// The `features [batch, FEATURE_DIM]` value: the backbone's output and the heads' input.
pub(crate) fn features_info() -> pb::ValueInfoProto {
    value_info(FEATURES_NAME, &[None, Some(FEATURE_DIM as i64)])
}

/// The classifier's head as ONNX bytes: `features` → Gemm → Softmax → `probs`.
pub fn export_head(head: &Head, model_id: &str) -> Result<Vec<u8>> {
    let (classes, dim) = head.weight.dims2()?;
    if dim != FEATURE_DIM {
        return Err(Error::Export(format!(
            "head expects {dim} features, backbone gives {FEATURE_DIM}"
        )));
    }
    let mut g = GraphBuilder::default();
    let w = g.initializer(
        "head.weight",
        &[classes, dim],
        &head.weight.flatten_all()?.to_vec1()?,
    );
    let b = g.initializer("head.bias", &[classes], &head.bias.to_vec1()?);
    let x = g.node(
        "Gemm",
        "head",
        vec![FEATURES_NAME.into(), w, b],
        vec![attr_int("transB", 1)],
    );
    g.output_node("Softmax", vec![x], vec![attr_int("axis", 1)], OUTPUT_NAME);
    let graph = g.finish(
        "edgeml-classifier-head",
        vec![features_info()],
        vec![value_info(OUTPUT_NAME, &[None, Some(classes as i64)])],
    );
    Ok(encode_model(
        graph,
        format!("linear classifier head of model {model_id}, on backbone features"),
    ))
}

/// The masked mean of word vectors, the text side of every graph that reads text:
/// `table [vocab, dim]` gathered at the `ids` input, weighted by the `mask` input, summed over
/// the words and divided by their number (at least 1, so an all-zero mask, no text, gives
/// zeros) → `[batch, dim]`.
pub(crate) fn masked_mean(g: &mut GraphBuilder, table: String) -> String {
    let axis1 = g.initializer_i64("axes.1", &[1]);
    let axis2 = g.initializer_i64("axes.2", &[2]);
    let one = g.initializer("text.one", &[], &[1.0]);
    let words = g.node(
        "Gather",
        "text.gather",
        vec![table, IDS_NAME.into()],
        vec![attr_int("axis", 0)],
    );
    let mask3 = g.node(
        "Unsqueeze",
        "text.mask3",
        vec![MASK_NAME.into(), axis2],
        vec![],
    );
    let masked = g.node("Mul", "text.masked", vec![words, mask3], vec![]);
    let sum = g.node(
        "ReduceSum",
        "text.sum",
        vec![masked, axis1.clone()],
        vec![attr_int("keepdims", 0)],
    );
    let count = g.node(
        "ReduceSum",
        "text.count",
        vec![MASK_NAME.into(), axis1],
        vec![attr_int("keepdims", 1)],
    );
    let count = g.node("Max", "text.count1", vec![count, one], vec![]);
    g.node("Div", "text.mean", vec![sum, count], vec![])
}

pub(crate) fn encode_model(graph: pb::GraphProto, doc_string: String) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "edgeml-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string,
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}
