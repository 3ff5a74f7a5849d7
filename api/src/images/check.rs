//! Upload validation: file and uploader names, captions, and the image check (format sniffed
//! from content, header dimensions within limits before any pixel is decoded, truncated
//! JPEGs refused, full decode with the shared decoder under an allocation cap and a
//! server-wide decode budget, content hash).

use std::io::Cursor;

use bytes::Bytes;

use crate::{Error, Result};

/// Limits applied to every uploaded image.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest side in pixels.
    pub max_side: u32,
    /// Largest area in pixels.
    pub max_pixels: u64,
}

/// A file that passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Client-side name.
    pub filename: String,
    /// Hex sha256 of the bytes: the blob's key and the dedupe key.
    pub sha256: String,
    /// Format sniffed from the content (`png`, `jpeg`, `webp`, `gif`, `bmp`).
    pub format: &'static str,
    /// Width in pixels, from the header.
    pub width: u32,
    /// Height in pixels, from the header.
    pub height: u32,
    /// The file as uploaded (stored unchanged).
    pub bytes: Bytes,
    /// Captions to store with the image (ranking datasets); may be empty.
    pub captions: Vec<String>,
    /// Boxes to store with the image (detection datasets, where they are required).
    pub boxes: Vec<super::boxes::ImageBox>,
    /// Its own label, over the request's (images of a COCO import: their largest box's).
    pub label: Option<String>,
}

/// Longest caption accepted, in characters.
pub const MAX_CAPTION_CHARS: usize = 500;

/// Captions are short plain text: not empty, no control characters, at most
/// [`MAX_CAPTION_CHARS`].
pub fn validate_caption(caption: &str) -> Result<()> {
    let n = caption.chars().count();
    if caption.trim().is_empty() || n > MAX_CAPTION_CHARS || caption.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "a caption must be 1 to {MAX_CAPTION_CHARS} characters of text without control characters (got {n})"
        )));
    }
    Ok(())
}

/// Reject names that could be mistaken for paths or that carry control characters.
pub fn validate_filename(name: &str) -> Result<()> {
    let bad = name.len() > 255
        || name.contains('/')
        || name.contains('\\')
        || name.contains("..")
        || name.chars().any(char::is_control);
    if bad {
        return Err(Error::BadRequest(format!(
            "invalid file name {name:?}: no paths, '..', or control characters (max 255 bytes)"
        )));
    }
    Ok(())
}

/// Validate an uploader name given in the `X-Uploader` header.
pub fn validate_uploader(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | ' '));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "X-Uploader must be 1-64 letters, digits, spaces or _-.@".into(),
        ))
    }
}

/// What the header of an acceptable image says, before any pixel is decoded.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Sniffed format name.
    pub format: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes a full decode allocates (decoder buffer + RGBA8 result).
    pub decode_bytes: u64,
}

/// The cheap checks of one uploaded file: name, content-sniffed allowed format, header
/// dimensions within limits, a complete JPEG; and what decoding it will cost.
pub fn inspect(filename: &str, bytes: &[u8], limits: Limits) -> Result<Header> {
    validate_filename(filename)?;
    if bytes.is_empty() {
        return Err(Error::InvalidImage(format!("{filename:?} is empty")));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        Error::UnsupportedFormat(format!(
            "{filename:?} is not a PNG, JPEG, WebP, GIF or BMP image (checked by content, not by name or content type)"
        ))
    })?;
    let name = match format {
        image::ImageFormat::Png => "png",
        image::ImageFormat::Jpeg => "jpeg",
        image::ImageFormat::WebP => "webp",
        image::ImageFormat::Gif => "gif",
        image::ImageFormat::Bmp => "bmp",
        other => {
            return Err(Error::UnsupportedFormat(format!(
                "{filename:?} is {other:?}; accepted formats: PNG, JPEG, WebP, GIF, BMP"
            )));
        }
    };
    let (width, height) = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| Error::InvalidImage(format!("{filename:?}: unreadable {name} header: {e}")))?;
    if width == 0 || height == 0 {
        return Err(Error::InvalidImage(format!("{filename:?} has no pixels")));
    }
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(Error::ImageTooLarge(format!(
            "{filename:?} is {width}×{height}; limits are {} px per side and {} px in total",
            limits.max_side, limits.max_pixels
        )));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(Error::InvalidImage(format!(
            "{filename:?} is a truncated JPEG (no end-of-image marker)"
        )));
    }
    let decode_bytes = wasm_infer::decode::decode_cost(bytes)
        .map_err(|e| Error::InvalidImage(format!("{filename:?}: unreadable {name} header: {e}")))?;
    Ok(Header {
        format: name,
        width,
        height,
        decode_bytes,
    })
}

/// Decode an inspected file with the shared decoder, allocating at most what its header
/// announced (plus slack), and hash it.
fn decode(filename: &str, bytes: Bytes, h: Header) -> Result<(Checked, image::RgbaImage)> {
    let pixels = wasm_infer::decode::decode_image_within(&bytes, h.decode_bytes + (1 << 20))
        .map_err(|e| Error::InvalidImage(format!("{filename:?} does not decode: {e}")))?;
    let (sha256, _) = trainer::dataset::digest(&bytes);
    let checked = Checked {
        filename: filename.to_string(),
        sha256,
        format: h.format,
        width: h.width,
        height: h.height,
        bytes,
        captions: Vec::new(),
        boxes: Vec::new(),
        label: None,
    };
    Ok((checked, pixels))
}

/// Check one uploaded file: [`inspect`], then a full decode and the hash (on this thread,
/// outside any budget: for imports and tests; requests go through [`DecodeBudget`]).
pub fn check_image(filename: &str, bytes: Bytes, limits: Limits) -> Result<Checked> {
    check_and_decode(filename, bytes, limits).map(|(c, _)| c)
}

/// [`check_image`], also returning the decoded pixels.
pub fn check_and_decode(
    filename: &str,
    bytes: Bytes,
    limits: Limits,
) -> Result<(Checked, image::RgbaImage)> {
    let h = inspect(filename, &bytes, limits)?;
    decode(filename, bytes, h)
}

/// Bounds the memory and threads image decoding takes across all requests: each decode holds
/// its header-announced size against a byte budget and one of a fixed number of decode
/// threads (`DECODE_THREADS`); a file larger than the whole budget is refused (422), and a request
/// that cannot get budget within the wait is turned away (503 + Retry-After).
pub struct DecodeBudget {
    mib: std::sync::Arc<tokio::sync::Semaphore>,
    total_mib: u32,
    threads: std::sync::Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
}

impl DecodeBudget {
    /// `total_mib` of decoded pixels at once on `threads` threads; wait at most `wait`.
    pub fn new(total_mib: u32, threads: usize, wait: std::time::Duration) -> Self {
        DecodeBudget {
            mib: std::sync::Arc::new(tokio::sync::Semaphore::new(total_mib as usize)),
            total_mib,
            threads: std::sync::Arc::new(tokio::sync::Semaphore::new(threads.max(1))),
            wait,
        }
    }

    /// Inspect, then decode and hash within the budget, and run `then` on the result while
    /// the budget is still held (so whatever it does with the pixels counts too).
    pub async fn with_decoded<T: Send + 'static>(
        &self,
        filename: String,
        bytes: Bytes,
        limits: Limits,
        then: impl FnOnce(Checked, image::RgbaImage) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let h = inspect(&filename, &bytes, limits)?;
        let mib = u32::try_from(h.decode_bytes.div_ceil(1 << 20).max(1)).unwrap_or(u32::MAX);
        if mib > self.total_mib {
            return Err(Error::ImageTooLarge(format!(
                "{filename:?} ({}×{}) needs {mib} MiB to decode; the server decodes at most {} MiB at once",
                h.width, h.height, self.total_mib
            )));
        }
        let busy = || {
            Error::Busy(
                2,
                "the server is decoding as many images as it can; retry shortly".into(),
            )
        };
        let wait = tokio::time::timeout(self.wait, async {
            let m = self.mib.clone().acquire_many_owned(mib).await;
            let t = self.threads.clone().acquire_owned().await;
            (m, t)
        })
        .await;
        let (Ok(m), Ok(t)) = wait.map_err(|_| busy())? else {
            return Err(busy());
        };
        tokio::task::spawn_blocking(move || {
            let _held = (m, t);
            let (checked, pixels) = decode(&filename, bytes, h)?;
            then(checked, pixels)
        })
        .await
        .map_err(|e| Error::Internal(format!("decode thread: {e}")))?
    }

    /// Inspect, decode and hash within the budget; the pixels are dropped before the budget
    /// is released.
    pub async fn check(&self, filename: String, bytes: Bytes, limits: Limits) -> Result<Checked> {
        self.with_decoded(filename, bytes, limits, |c, _| Ok(c))
            .await
    }
}

/// JPEG decoders fill missing scan data with grey instead of failing; a complete file ends
/// with the EOI marker (0xFFD9), possibly followed by padding.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_side: 8192,
        max_pixels: 40_000_000,
    };

    fn png(w: u32, h: u32) -> Bytes {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        Bytes::from(out)
    }

    #[test]
    fn file_names_cannot_be_paths() {
        for bad in [
            "../etc/passwd",
            "a/b.png",
            "..\\x.png",
            "x\u{0}.png",
            "..",
            &"a".repeat(300),
        ] {
            assert!(
                matches!(validate_filename(bad), Err(Error::BadRequest(_))),
                "{bad:?}"
            );
        }
        for good in ["cat.png", "IMG 0001.JPG", "été.webp", ""] {
            validate_filename(good).unwrap();
        }
    }

    #[test]
    fn accepts_a_real_png_and_reports_its_facts() {
        let c = check_image("red.png", png(3, 2), LIMITS).unwrap();
        assert_eq!((c.format, c.width, c.height), ("png", 3, 2));
        assert_eq!(c.sha256.len(), 64);
    }

    #[test]
    fn sniffs_content_not_names() {
        let e =
            check_image("photo.jpg", Bytes::from_static(b"hello, I am text"), LIMITS).unwrap_err();
        assert!(matches!(e, Error::UnsupportedFormat(_)), "{e:?}");
        // A PNG named .jpg is a PNG.
        assert_eq!(
            check_image("photo.jpg", png(2, 2), LIMITS).unwrap().format,
            "png"
        );
    }

    #[test]
    fn header_dimensions_are_checked_before_decoding() {
        let small = Limits {
            max_side: 4,
            max_pixels: 100,
        };
        let e = check_image("big.png", png(5, 1), small).unwrap_err();
        assert!(matches!(e, Error::ImageTooLarge(_)), "{e:?}");
        let e = check_image(
            "area.png",
            png(4, 4),
            Limits {
                max_side: 4,
                max_pixels: 15,
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::ImageTooLarge(_)), "{e:?}");
    }

    #[test]
    fn truncated_files_are_invalid() {
        let p = png(64, 64);
        let e = check_image("cut.png", p.slice(..p.len() - 20), LIMITS).unwrap_err();
        assert!(matches!(e, Error::InvalidImage(_)), "{e:?}");
    }
}
