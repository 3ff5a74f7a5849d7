//! Every compiled copy of the channel-last depthwise kernel (AVX-512, AVX2 + FMA, the
//! browsers' four-lane blocks on plain `f32` lanes, one lane) against the channels-first op,
//! on one CPU: `depthwise::limit_simd` caps the instruction
//! set process-wide, so this file holds one test (its own process, nothing else running in
//! it). Copies the CPU lacks fall back to the next narrower one, which this still checks.

mod common;
use common::noise;
use tract_nnef::prelude::*;
use wasm_infer::depthwise::{DepthwiseConv, Geometry, Simd, limit_simd};

#[test]
fn every_instruction_set_gives_the_channels_first_values() -> TractResult<()> {
    // (n, c, h, w, k, stride, pad): channel counts that hit blocks of 4, 2 and 1 registers
    // of both widths and the one-lane tail; borders, strides, a batch.
    let cases = [
        (1, 115, 14, 14, 5, 2, 2),
        (2, 24, 9, 11, 3, 1, 1),
        (1, 32, 20, 17, 3, 1, 1),
        (1, 7, 6, 5, 3, 2, 0),
        (1, 200, 7, 7, 5, 1, 2),
    ];
    for (n, c, h, w, k, s, pad) in cases {
        let (oh, ow) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
        let geo = Geometry {
            n,
            c,
            h,
            w,
            oh,
            ow,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pad_top: pad,
            pad_left: pad,
        };
        let planar = DepthwiseConv::new(geo.clone(), &noise(c * k * k, 1), &noise(c, 2))?
            .with_clip(-0.5, 0.75)?;
        let input = noise(n * c * h * w, 3);
        let mut want = vec![f32::NAN; n * c * oh * ow];
        planar.run(&input, &mut want)?;
        // The same input and output, pixel by pixel.
        let plane = |len: usize| len / (n * c);
        let to_last = |x: &[f32]| -> Vec<f32> {
            let p = plane(x.len());
            (0..x.len())
                .map(|i| {
                    let (img, rest) = (i / (p * c), i % (p * c));
                    x[(img * c + rest % c) * p + rest / c]
                })
                .collect()
        };
        let last = planar.clone().channel_last()?;
        let want = to_last(&want);
        for simd in [Simd::Avx512, Simd::Avx2, Simd::Quad, Simd::Portable] {
            limit_simd(simd);
            let mut got = vec![f32::NAN; want.len()];
            last.run(&to_last(&input), &mut got)?;
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{simd:?}, {geo:?}: max |Δ| {worst}");
        }
        limit_simd(Simd::Avx512);
    }
    Ok(())
}
