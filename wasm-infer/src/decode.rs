//! Image decoding shared by the trainer, the api and the browser: the format is sniffed from the
//! content (never the name), the dimensions are checked from the header before any pixel is
//! allocated, and the result is RGBA8. Decoding in wasm with this code (instead of a canvas,
//! which premultiplies alpha and may colour-convert) gives the browser the same pixels as the
//! server.

use image::RgbaImage;

/// Largest side accepted (a decompression-bomb guard; photos are far smaller).
pub const MAX_SIDE: u32 = 8192;

/// Decode PNG, JPEG, WebP, GIF or BMP bytes into RGBA8.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<RgbaImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let Some(format) = reader.format() else {
        return Err("not a recognised image format".into());
    };
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!("{w}×{h} exceeds the {MAX_SIDE}-pixel limit"));
    }
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| e.to_string())?;
    Ok(img.to_rgba8())
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
    }
}
