//! Image decoding shared by the trainer, the api and the browser: the format is sniffed from the
//! content (never the name), the dimensions are checked from the header before any pixel is
//! allocated, and the result is RGBA8. Decoding in wasm with this code (instead of a canvas,
//! which premultiplies alpha and may colour-convert) gives the browser the same pixels as the
//! server. The wasm32 build reads PNG and JPEG (what cameras and most uploads are); the
//! browser hands WebP, GIF and BMP to its own decoder first (`public/worker.js`), which keeps
//! their decoders out of the module.

use image::RgbaImage;

/// Largest side accepted (a decompression-bomb guard; photos are far smaller).
pub const MAX_SIDE: u32 = 8192;

/// Decode PNG, JPEG, WebP, GIF or BMP bytes (PNG and JPEG in wasm32) into RGBA8 (the image
/// crate's default allocation cap applies).
pub fn decode_image(bytes: &[u8]) -> std::result::Result<RgbaImage, String> {
    decode_image_within(
        bytes,
        image::Limits::default().max_alloc.unwrap_or(u64::MAX),
    )
}

fn reader(bytes: &[u8]) -> std::result::Result<image::ImageReader<std::io::Cursor<&[u8]>>, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    match reader.format() {
        None => return Err("not a recognised image format".into()),
        Some(f) if !f.reading_enabled() => {
            return Err(format!("{f:?} images are not decoded by this build"));
        }
        Some(_) => {}
    }
    Ok(reader)
}

/// Bytes decoding will allocate, read from the header alone: the decoder's buffer in the
/// file's own pixel format (16-bit RGBA is 8 bytes a pixel) plus the RGBA8 result.
pub fn decode_cost(bytes: &[u8]) -> std::result::Result<u64, String> {
    use image::ImageDecoder;
    let decoder = reader(bytes)?.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    Ok(decoder.total_bytes() + u64::from(w) * u64::from(h) * 4)
}

/// [`decode_image`] with an explicit cap on what the decoder may allocate.
pub fn decode_image_within(bytes: &[u8], max_alloc: u64) -> std::result::Result<RgbaImage, String> {
    let (w, h) = reader(bytes)?
        .into_dimensions()
        .map_err(|e| e.to_string())?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!("{w}×{h} exceeds the {MAX_SIDE}-pixel limit"));
    }
    let mut reader = reader(bytes)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?;
    Ok(img.into_rgba8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_by_content_and_refuses_text() {
        let img = image::RgbaImage::from_pixel(3, 2, image::Rgba([1, 2, 3, 4]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let back = decode_image(&png).unwrap();
        assert_eq!(back.as_raw(), img.as_raw());
        assert!(decode_image(b"plain text").is_err());
        // RGBA8 in, RGBA8 out: the decoder's buffer and the result.
        assert_eq!(decode_cost(&png).unwrap(), 2 * 3 * 2 * 4);
        assert!(decode_image_within(&png, 4).is_err());
        assert_eq!(
            decode_image_within(&png, 1 << 20).unwrap().as_raw(),
            img.as_raw()
        );
    }
}
