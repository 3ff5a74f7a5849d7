//! Decoded pixels → model input tensor. Defined once; the trainer, the api and the browser all
//! call these functions, so a model sees the same numbers wherever it runs.
//!
//! Steps, all in `f32` and in a fixed order (no fused multiply-add, no platform maths), so the
//! result is bit-identical on x86-64 and wasm32:
//! 1. composite each pixel over [`Preprocess::background`] using its alpha;
//! 2. take a crop box (for inference the centred square of side `crop_fraction × min(w, h)`,
//!    or the whole image for detection ([`crate::Fit`]); a random box for training augmentation) and resample it to `size × size` with a separable
//!    triangle filter whose support widens when downscaling (antialiased bilinear);
//! 3. optionally mirror horizontally;
//! 4. scale to `[0, 1]`, subtract `mean`, divide by `std`, write planar RGB (CHW).

use crate::{Error, Fit, Preprocess, Result};

/// Channel order of the pixel buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 3 bytes per pixel.
    Rgb8,
    /// 4 bytes per pixel, straight (not premultiplied) alpha, as canvas `ImageData` gives.
    Rgba8,
}

impl PixelFormat {
    fn channels(self) -> usize {
        match self {
            PixelFormat::Rgb8 => 3,
            PixelFormat::Rgba8 => 4,
        }
    }
}

/// A borrowed, decoded image.
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channel layout of `data`.
    pub format: PixelFormat,
    /// Row-major pixel bytes, `width × height × channels` long.
    pub data: &'a [u8],
}

impl<'a> Pixels<'a> {
    /// Wrap a buffer, checking that its length matches the dimensions.
    pub fn new(width: u32, height: u32, format: PixelFormat, data: &'a [u8]) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::Image(format!("empty image ({width}×{height})")));
        }
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(format.channels()))
            .ok_or_else(|| Error::Image(format!("image {width}×{height} is too large")))?;
        if data.len() != expected {
            return Err(Error::Image(format!(
                "{width}×{height} {format:?} needs {expected} bytes, got {}",
                data.len()
            )));
        }
        Ok(Pixels {
            width,
            height,
            format,
            data,
        })
    }
}

/// A region of the source image in pixel coordinates (may be fractional).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width (> 0).
    pub w: f32,
    /// Height (> 0).
    pub h: f32,
}

impl CropBox {
    /// The whole image.
    pub fn whole(width: u32, height: u32) -> Self {
        CropBox {
            x: 0.0,
            y: 0.0,
            w: width as f32,
            h: height as f32,
        }
    }

    /// The centred square whose side is `fraction × min(width, height)`.
    pub fn center(width: u32, height: u32, fraction: f32) -> Self {
        let side = fraction * width.min(height) as f32;
        CropBox {
            x: (width as f32 - side) * 0.5,
            y: (height as f32 - side) * 0.5,
            w: side,
            h: side,
        }
    }
}

/// The inference tensor for one image: the region [`Preprocess::fit`] names (the centred
/// crop, or the whole image), no flip. `3 × size × size` values, CHW.
pub fn image_to_tensor(pixels: &Pixels<'_>, p: &Preprocess) -> Result<Vec<f32>> {
    let crop = match p.fit {
        Fit::CenterCrop => CropBox::center(pixels.width, pixels.height, p.crop_fraction),
        Fit::Stretch => CropBox::whole(pixels.width, pixels.height),
    };
    image_to_tensor_with(pixels, p, crop, false)
}

/// The tensor for one image from an explicit crop box, optionally mirrored (augmentation).
pub fn image_to_tensor_with(
    pixels: &Pixels<'_>,
    p: &Preprocess,
    crop: CropBox,
    flip: bool,
) -> Result<Vec<f32>> {
    let (sw, sh) = (pixels.width as usize, pixels.height as usize);
    let valid = |v: f32| v.is_finite();
    if !(valid(crop.x) && valid(crop.y) && valid(crop.w) && valid(crop.h))
        || crop.w <= 0.0
        || crop.h <= 0.0
    {
        return Err(Error::Image(format!("invalid crop box {crop:?}")));
    }
    let size = p.size as usize;
    let xs = Taps::new(crop.x, crop.w, sw, size);
    let ys = Taps::new(crop.y, crop.h, sh, size);

    // Rows of the source that any output row reads.
    let row_lo = ys.start.iter().copied().min().unwrap_or(0);
    let row_hi = (0..size)
        .map(|i| ys.start[i] + ys.weights(i).len())
        .max()
        .unwrap_or(0);
    let rows = row_hi - row_lo;

    // Horizontal pass over the needed rows: composite a source row (RGB interleaved), then
    // resample it to `size` columns, into planes `[3, rows, size]`.
    let bg = p.background.map(f32::from);
    let ch = pixels.format.channels();
    let mut line = vec![0f32; 3 * sw];
    let mut horiz = vec![0f32; 3 * rows * size];
    for (r, y) in (row_lo..row_hi).enumerate() {
        let src = &pixels.data[y * sw * ch..(y + 1) * sw * ch];
        if ch == 4 {
            for (rgb, px) in line.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                let a = f32::from(px[3]) / 255.0;
                rgb[0] = f32::from(px[0]) * a + bg[0] * (1.0 - a);
                rgb[1] = f32::from(px[1]) * a + bg[1] * (1.0 - a);
                rgb[2] = f32::from(px[2]) * a + bg[2] * (1.0 - a);
            }
        } else {
            for (v, &byte) in line.iter_mut().zip(src) {
                *v = f32::from(byte);
            }
        }
        for ox in 0..size {
            // Output column `ox` reads source column `from + k` with weight `weights[k]`.
            let (from, weights) = if flip {
                (xs.start[size - 1 - ox], xs.weights(size - 1 - ox))
            } else {
                (xs.start[ox], xs.weights(ox))
            };
            let mut acc = [0f32; 3];
            for (rgb, &w) in line[from * 3..].chunks_exact(3).zip(weights) {
                acc[0] += rgb[0] * w;
                acc[1] += rgb[1] * w;
                acc[2] += rgb[2] * w;
            }
            for (c, v) in acc.into_iter().enumerate() {
                horiz[(c * rows + r) * size + ox] = v;
            }
        }
    }

    // Vertical pass, a whole output row at a time (the same sums, in the same order, as one
    // pixel at a time), then normalise into planar RGB.
    let mut tensor = vec![0f32; 3 * size * size];
    let mut acc = vec![0f32; size];
    for c in 0..3 {
        let scale = 1.0 / (255.0 * p.std[c]);
        let shift = p.mean[c] / p.std[c];
        let plane = &horiz[c * rows * size..][..rows * size];
        for oy in 0..size {
            acc.fill(0.0);
            let first = ys.start[oy] - row_lo;
            for (k, &w) in ys.weights(oy).iter().enumerate() {
                let src = &plane[(first + k) * size..][..size];
                for (a, &v) in acc.iter_mut().zip(src) {
                    *a += v * w;
                }
            }
            let out = &mut tensor[(c * size + oy) * size..][..size];
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = a * scale - shift;
            }
        }
    }
    Ok(tensor)
}

/// Triangle-filter taps mapping `[origin, origin + extent)` of a `src_len` axis onto `out_len`
/// pixels: output pixel `i` reads source pixels `start[i]..start[i] + weights(i).len()`.
/// The filter support grows with the downscale factor (antialiasing); samples outside the
/// image clamp to the edge pixel.
struct Taps {
    start: Vec<usize>,
    /// Where each output pixel's weights begin in `all` (and end: `out_len + 1` entries).
    at: Vec<usize>,
    all: Vec<f32>,
}

impl Taps {
    fn new(origin: f32, extent: f32, src_len: usize, out_len: usize) -> Self {
        let scale = extent / out_len as f32;
        let support = scale.max(1.0);
        let last = src_len as isize - 1;
        let mut taps = Taps {
            start: Vec::with_capacity(out_len),
            at: Vec::with_capacity(out_len + 1),
            all: Vec::new(),
        };
        taps.at.push(0);
        for i in 0..out_len {
            let center = origin + (i as f32 + 0.5) * scale;
            let lo = (center - support).floor() as isize;
            let hi = (center + support).ceil() as isize;
            // Accumulate weights per clamped source index.
            let first = lo.clamp(0, last);
            let end = hi.clamp(0, last);
            let from = taps.all.len();
            taps.all.resize(from + (end - first + 1) as usize, 0.0);
            let weights = &mut taps.all[from..];
            let mut total = 0f32;
            for j in lo..=hi {
                let d = ((j as f32 + 0.5) - center) / support;
                let w = (1.0 - d.abs()).max(0.0);
                if w > 0.0 {
                    weights[(j.clamp(0, last) - first) as usize] += w;
                    total += w;
                }
            }
            if total > 0.0 {
                for w in weights.iter_mut() {
                    *w /= total;
                }
            } else {
                // Degenerate box thinner than a sample: nearest pixel.
                let nearest = (center.floor() as isize).clamp(0, last);
                weights.iter_mut().for_each(|w| *w = 0.0);
                weights[(nearest - first) as usize] = 1.0;
            }
            taps.start.push(first as usize);
            taps.at.push(taps.all.len());
        }
        taps
    }

    /// Output pixel `i`'s weights.
    fn weights(&self, i: usize) -> &[f32] {
        &self.all[self.at[i]..self.at[i + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(size: u32) -> Preprocess {
        Preprocess {
            size,
            crop_fraction: 1.0,
            ..Preprocess::efficientnet_lite()
        }
    }

    // The resampling as it was, one output pixel at a time (kept here as the reference): the
    // tensor must not change by a single bit, or cached features and parity fixtures would.
    fn reference(
        pixels: &Pixels<'_>,
        p: &Preprocess,
        crop: CropBox,
        flip: bool,
    ) -> Result<Vec<f32>> {
        let (sw, sh) = (pixels.width as usize, pixels.height as usize);
        let valid = |v: f32| v.is_finite();
        if !(valid(crop.x) && valid(crop.y) && valid(crop.w) && valid(crop.h))
            || crop.w <= 0.0
            || crop.h <= 0.0
        {
            return Err(Error::Image(format!("invalid crop box {crop:?}")));
        }
        let size = p.size as usize;
        let xs = reference_taps(crop.x, crop.w, sw, size);
        let ys = reference_taps(crop.y, crop.h, sh, size);

        // Rows of the source that any output row reads.
        let row_lo = ys.iter().map(|t| t.start).min().unwrap_or(0);
        let row_hi = ys
            .iter()
            .map(|t| t.start + t.weights.len())
            .max()
            .unwrap_or(0);

        // Horizontal pass over the needed rows: composite, then resample to `size` columns.
        let bg = p.background.map(f32::from);
        let ch = pixels.format.channels();
        let mut row_rgb = vec![0f32; sw * 3];
        let mut horiz = vec![0f32; (row_hi - row_lo) * size * 3];
        for (r, y) in (row_lo..row_hi).enumerate() {
            let src = &pixels.data[y * sw * ch..(y + 1) * sw * ch];
            for x in 0..sw {
                let px = &src[x * ch..x * ch + ch];
                for c in 0..3 {
                    row_rgb[x * 3 + c] = if ch == 4 {
                        let a = f32::from(px[3]) / 255.0;
                        f32::from(px[c]) * a + bg[c] * (1.0 - a)
                    } else {
                        f32::from(px[c])
                    };
                }
            }
            let out = &mut horiz[r * size * 3..(r + 1) * size * 3];
            for (ox, tap) in xs.iter().enumerate() {
                let mut acc = [0f32; 3];
                for (k, w) in tap.weights.iter().enumerate() {
                    let s = (tap.start + k) * 3;
                    for c in 0..3 {
                        acc[c] += row_rgb[s + c] * w;
                    }
                }
                out[ox * 3..ox * 3 + 3].copy_from_slice(&acc);
            }
        }

        // Vertical pass, then normalise into planar RGB.
        let mut tensor = vec![0f32; 3 * size * size];
        let scale: [f32; 3] = [0, 1, 2].map(|c| 1.0 / (255.0 * p.std[c]));
        let shift: [f32; 3] = [0, 1, 2].map(|c| p.mean[c] / p.std[c]);
        for (oy, tap) in ys.iter().enumerate() {
            for ox in 0..size {
                let mut acc = [0f32; 3];
                for (k, w) in tap.weights.iter().enumerate() {
                    let s = ((tap.start - row_lo + k) * size + ox) * 3;
                    for c in 0..3 {
                        acc[c] += horiz[s + c] * w;
                    }
                }
                let tx = if flip { size - 1 - ox } else { ox };
                for c in 0..3 {
                    tensor[c * size * size + oy * size + tx] = acc[c] * scale[c] - shift[c];
                }
            }
        }
        Ok(tensor)
    }

    /// Contributions of source pixels `start..start + weights.len()` to one output pixel.
    struct Tap {
        start: usize,
        weights: Vec<f32>,
    }

    /// Triangle-filter taps mapping `[origin, origin + extent)` of a `src_len` axis onto `out_len`
    /// pixels. The filter support grows with the downscale factor (antialiasing); samples outside
    /// the image clamp to the edge pixel.
    fn reference_taps(origin: f32, extent: f32, src_len: usize, out_len: usize) -> Vec<Tap> {
        let scale = extent / out_len as f32;
        let support = scale.max(1.0);
        let last = src_len as isize - 1;
        (0..out_len)
            .map(|i| {
                let center = origin + (i as f32 + 0.5) * scale;
                let lo = (center - support).floor() as isize;
                let hi = (center + support).ceil() as isize;
                // Accumulate weights per clamped source index.
                let first = lo.clamp(0, last);
                let end = hi.clamp(0, last);
                let mut weights = vec![0f32; (end - first + 1) as usize];
                let mut total = 0f32;
                for j in lo..=hi {
                    let d = ((j as f32 + 0.5) - center) / support;
                    let w = (1.0 - d.abs()).max(0.0);
                    if w > 0.0 {
                        weights[(j.clamp(0, last) - first) as usize] += w;
                        total += w;
                    }
                }
                if total > 0.0 {
                    for w in &mut weights {
                        *w /= total;
                    }
                } else {
                    // Degenerate box thinner than a sample: nearest pixel.
                    let nearest = (center.floor() as isize).clamp(0, last);
                    weights.iter_mut().for_each(|w| *w = 0.0);
                    weights[(nearest - first) as usize] = 1.0;
                }
                Tap {
                    start: first as usize,
                    weights,
                }
            })
            .collect()
    }

    #[test]
    fn resampling_is_bit_identical_to_the_pixel_at_a_time_reference() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let p = Preprocess::efficientnet_lite();
        let mut cases = 0;
        for (w, h) in [
            (131u32, 100u32),
            (46, 50),
            (400, 239),
            (224, 224),
            (1, 7),
            (517, 3),
        ] {
            for format in [PixelFormat::Rgba8, PixelFormat::Rgb8] {
                let data: Vec<u8> = (0..w as usize * h as usize * format.channels())
                    .map(|_| next() as u8)
                    .collect();
                let px = Pixels::new(w, h, format, &data).unwrap();
                let unit = |n: u64| (n % 1000) as f32 / 1000.0;
                let crops = [
                    CropBox::center(w, h, 0.875),
                    CropBox::whole(w, h),
                    CropBox {
                        x: unit(next()) * w as f32 * 0.5,
                        y: unit(next()) * h as f32 * 0.5,
                        w: (0.05 + unit(next())) * w as f32,
                        h: (0.05 + unit(next())) * h as f32,
                    },
                ];
                for crop in crops {
                    for flip in [false, true] {
                        for size in [224, 33] {
                            let p = Preprocess { size, ..p.clone() };
                            let got = image_to_tensor_with(&px, &p, crop, flip).unwrap();
                            let want = reference(&px, &p, crop, flip).unwrap();
                            let bits =
                                |t: &[f32]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                            assert!(
                                bits(&got) == bits(&want),
                                "{w}×{h} {format:?} {crop:?} flip {flip} size {size}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 144);
    }

    #[test]
    fn uniform_colour_maps_to_its_normalised_value() {
        let data: Vec<u8> = [10u8, 128, 250].repeat(37 * 23);
        let px = Pixels::new(37, 23, PixelFormat::Rgb8, &data).unwrap();
        let p = prep(8);
        let t = image_to_tensor(&px, &p).unwrap();
        for c in 0..3 {
            let v = [10.0f32, 128.0, 250.0][c];
            let expected = (v / 255.0 - p.mean[c]) / p.std[c];
            for x in &t[c * 64..(c + 1) * 64] {
                assert!((x - expected).abs() < 1e-5, "{x} vs {expected}");
            }
        }
    }

    #[test]
    fn transparent_pixels_take_the_background() {
        // Fully transparent red over white background → white.
        let data: Vec<u8> = [255u8, 0, 0, 0].repeat(16);
        let px = Pixels::new(4, 4, PixelFormat::Rgba8, &data).unwrap();
        let p = prep(2);
        let t = image_to_tensor(&px, &p).unwrap();
        for c in 0..3 {
            let white = (1.0 - p.mean[c]) / p.std[c];
            assert!(
                t[c * 4..(c + 1) * 4]
                    .iter()
                    .all(|x| (x - white).abs() < 1e-5)
            );
        }
    }

    #[test]
    fn two_to_one_downscale_averages_neighbourhoods() {
        // 4×1 grey row 0, 100, 200, 255 → 2 pixels, each the triangle-weighted mean of its
        // neighbourhood: taps at x = 1.0 → weights 1/8, 3/8, 3/8, 1/8 over 0, 0, 100, 200.
        let row = [0u8, 100, 200, 255];
        let data: Vec<u8> = row.iter().flat_map(|v| [*v, *v, *v]).collect();
        let px = Pixels::new(4, 1, PixelFormat::Rgb8, &data).unwrap();
        let p = Preprocess {
            size: 2,
            crop_fraction: 1.0,
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
            ..Preprocess::efficientnet_lite()
        };
        let crop = CropBox {
            x: 0.0,
            y: 0.0,
            w: 4.0,
            h: 1.0,
        };
        let t = image_to_tensor_with(&px, &p, crop, false).unwrap();
        // Left output: centre 1.0, support 2: source 0 (edge-clamped twice) … 2.
        let left = (0.0 * 0.25 + 0.0 * 0.75 + 100.0 * 0.75 + 200.0 * 0.25) / 2.0;
        let right = (100.0 * 0.25 + 200.0 * 0.75 + 255.0 * 0.75 + 255.0 * 0.25) / 2.0;
        assert!((t[0] - left).abs() < 1e-3, "{} vs {left}", t[0]);
        assert!((t[1] - right).abs() < 1e-3, "{} vs {right}", t[1]);
        let flipped = image_to_tensor_with(&px, &p, crop, true).unwrap();
        assert_eq!((flipped[0], flipped[1]), (t[1], t[0]));
    }

    #[test]
    fn center_crop_box_is_centred_square() {
        let b = CropBox::center(400, 200, 0.875);
        assert_eq!(
            b,
            CropBox {
                x: 112.5,
                y: 12.5,
                w: 175.0,
                h: 175.0
            }
        );
    }

    #[test]
    fn wrong_buffer_length_is_refused() {
        let err = Pixels::new(10, 10, PixelFormat::Rgba8, &[0u8; 399]).unwrap_err();
        assert!(
            err.to_string().contains("needs 400 bytes, got 399"),
            "{err}"
        );
        assert!(Pixels::new(0, 10, PixelFormat::Rgb8, &[]).is_err());
    }
}
