//! Decoding image files on the host as transformers' `convert_rgb` sees them.

use std::path::Path;

use super::Rgb8;
use crate::error::{Error, Result};

/// Pillow's `Image.MAX_IMAGE_PIXELS`: past twice this Pillow refuses to open an image as a
/// decompression bomb; so does [`decode`].
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Reads an image file as 8-bit RGB, converted as transformers' `convert_rgb` does: RGB as is,
/// grey replicated, alpha composited over white (Pillow's integer `alpha_composite`), 16-bit
/// samples to their high byte (Pillow's `RGB;16B` and `LA;16B` unpacking) but 16-bit grey,
/// clipped at 255 (Pillow's `I;16` to RGB).
pub fn decode(path: impl AsRef<Path>) -> Result<Rgb8> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    decode_bytes(&bytes, &path.display().to_string())
}

/// [`decode`] from a file's bytes; `origin` names it in errors.
pub fn decode_bytes(bytes: &[u8], origin: &str) -> Result<Rgb8> {
    let error = |problem: String| Error::File { path: origin.into(), problem };
    let reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| error(e.to_string()))?;
    if reader.format().is_none() {
        return Err(error("not an image format vlbridge reads (PNG, JPEG, WebP, GIF)".into()));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !ends_its_last_scan(bytes) {
        // The decoder would fill the missing rows with grey; Pillow refuses the file.
        return Err(error("truncated: no end-of-image marker after the last scan".into()));
    }
    let (width, height) = reader.into_dimensions().map_err(|e| error(format!("unreadable header: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(error(format!("a zero-size image ({width} x {height})")));
    }
    if pixels > 2 * MAX_IMAGE_PIXELS {
        return Err(error(format!(
            "{width} x {height} = {pixels} pixels, past twice Pillow's MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS}): a decompression bomb"
        )));
    }
    let mut reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| error(e.to_string()))?;
    reader.no_limits();
    let decoded = reader.decode().map_err(|e| error(format!("cannot decode: {e}")))?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    use image::DynamicImage as D;
    let data = match decoded {
        D::ImageRgb8(img) => img.into_raw(),
        D::ImageLuma8(img) => img.into_raw().into_iter().flat_map(|v| [v; 3]).collect(),
        D::ImageRgba8(img) => over_white(img.into_raw().chunks(4).map(|p| [p[0], p[1], p[2], p[3]])),
        D::ImageLumaA8(img) => over_white(img.into_raw().chunks(2).map(|p| [p[0], p[0], p[0], p[1]])),
        D::ImageRgb16(img) => img.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
        // Pillow opens 16-bit grey as mode I;16, whose conversion to RGB clips at 255.
        D::ImageLuma16(img) => img.into_raw().into_iter().flat_map(|v| [v.min(255) as u8; 3]).collect(),
        // Pillow opens 16-bit grey with alpha as RGBA of the high bytes (its LA;16B unpacking).
        D::ImageLumaA16(img) => {
            over_white(img.into_raw().chunks(2).map(|p| [p[0], p[0], p[0], p[1]].map(|v| (v >> 8) as u8)))
        }
        D::ImageRgba16(img) => {
            over_white(img.into_raw().chunks(4).map(|p| [p[0], p[1], p[2], p[3]].map(|v| (v >> 8) as u8)))
        }
        other => return Err(error(format!("unsupported colour type {:?}", other.color()))),
    };
    Ok(Rgb8 { width: w, height: h, data })
}

/// Whether a JPEG's end-of-image marker (FF D9) comes after its last start-of-scan (FF DA):
/// entropy-coded data stuffs every FF, so neither pair occurs inside a scan, and an EXIF
/// thumbnail's markers all come before the main image's scans.
fn ends_its_last_scan(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xff, marker]);
    matches!((last(0xda), last(0xd9)), (Some(scan), Some(end)) if end > scan)
}

/// `Image.alpha_composite(white, rgba).convert("RGB")` in Pillow's integer arithmetic.
fn over_white(pixels: impl Iterator<Item = [u8; 4]>) -> Vec<u8> {
    const BITS: u32 = 7;
    let shift_div_255 = |a: u32| ((a >> 8) + a) >> 8;
    pixels
        .flat_map(|[r, g, b, a]| {
            let a = u32::from(a);
            // dst is opaque white: outa255 = 255 · 255.
            let coef1 = a * 255 * 255 * (1 << BITS) / (255 * 255);
            let coef2 = 255 * (1 << BITS) - coef1;
            [r, g, b].map(|c| {
                let t = u32::from(c) * coef1 + 255 * coef2 + (0x80 << BITS);
                (shift_div_255(t) >> BITS) as u8
            })
        })
        .collect()
}

pub(super) fn file_error(path: &Path, problem: String) -> Error {
    Error::File { path: path.display().to_string(), problem }
}
