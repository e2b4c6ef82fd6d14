//! Images in: decoding on the host (the `image` crate) and each family's image processor as
//! transformers 5.24's Pillow backend computes it, every setting from the directory's
//! `preprocessor_config.json`. The 8-bit resize is Pillow's own fixed-point arithmetic
//! ([`resample`]), so the resized image is bit-identical to Pillow's and only the float
//! rescale and normalisation remain (within 1e-6 of upstream's `pixel_values`).
//!
//! Served so far: CLIP's shortest-edge resize and centre crop (LLaVA-1.5), LLaVA-NeXT's and
//! OneVision's AnyRes tiles, InternVL's aspect-ratio tiles and thumbnail, Idefics3's and
//! SmolVLM's split frames, Qwen2-VL's smart resize and patch rows, Pixtral's longest-edge fit,
//! and the fixed-size resize of BLIP-2 and Gemma 3. EXIF orientation is not applied, as transformers does not.

pub mod resample;

use std::path::Path;

use serde::Deserialize;

pub use resample::{Filter, Rgb8};

use crate::dtype::HostVec;
use crate::error::{Error, Result};
use crate::host::{HostTensor, Tensors};
use crate::ops::anyres::select_best_resolution;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: past twice this Pillow refuses to open an image as a
/// decompression bomb; so does [`decode`].
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Reads an image file as 8-bit RGB, converted as transformers' `convert_rgb` does: RGB as is,
/// grey replicated, alpha composited over white (Pillow's integer `alpha_composite`), 16-bit
/// samples to their high byte (Pillow's `RGB;16B` unpacking).
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
        D::ImageRgba16(img) => {
            over_white(img.into_raw().chunks(4).map(|p| [p[0], p[1], p[2], p[3]].map(|v| (v >> 8) as u8)))
        }
        other => return Err(error(format!("unsupported colour type {:?}", other.color()))),
    };
    Ok(Rgb8 { width: w, height: h, data })
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

fn file_error(path: &Path, problem: String) -> Error {
    Error::File { path: path.display().to_string(), problem }
}

/// The fields of `preprocessor_config.json` the served processors read.
#[derive(Debug, Clone, Deserialize)]
struct ProcessorJson {
    image_processor_type: Option<String>,
    size: Option<serde_json::Value>,
    crop_size: Option<serde_json::Value>,
    resample: Option<u64>,
    do_resize: Option<bool>,
    do_center_crop: Option<bool>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f64>>,
    image_std: Option<Vec<f64>>,
    image_grid_pinpoints: Option<Vec<(usize, usize)>>,
    crop_to_patches: Option<bool>,
    max_image_size: Option<serde_json::Value>,
    /// A number (Qwen) or `{height, width}` (Pixtral).
    patch_size: Option<serde_json::Value>,
    merge_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    min_pixels: Option<usize>,
    max_pixels: Option<usize>,
    do_image_splitting: Option<bool>,
    min_patches: Option<usize>,
    max_patches: Option<usize>,
}

/// How a processor sizes an image.
#[derive(Debug, Clone, PartialEq)]
enum Sizing {
    /// CLIP: shortest edge to `edge` (the other `int(edge · long / short)`), then a centre crop.
    ShortestEdgeCrop { edge: usize, crop: (usize, usize) },
    /// BLIP-2, Gemma 3: squashed to `(height, width)`.
    Fixed { height: usize, width: usize },
    /// LLaVA-NeXT / OneVision: the base image squashed to `tile`, then the image resized into
    /// the best pinpoint keeping its aspect, zero-padded centred, cut into `tile`-sized tiles.
    AnyRes { tile: usize, pinpoints: Vec<(usize, usize)> },
    /// InternVL (`GotOcr2ImageProcessor` with `crop_to_patches`): squashed to the grid of
    /// `tile`s closest in aspect among `min..=max` tiles, cut row-major, the whole image squashed
    /// to one tile appended last when there are several.
    Patches { tile: usize, min: usize, max: usize },
    /// Idefics3 / SmolVLM: the longest edge to `longest` (the other side made even), then with
    /// `split` up to multiples of `tile` and cut into tiles with the whole image squashed to one
    /// tile last; frames are zero-padded bottom-right to the largest, with a pixel mask.
    Frames { longest: usize, tile: usize, split: bool },
    /// Qwen2-VL / 2.5-VL: `smart_resize` to multiples of `patch · merge` within the pixel
    /// bounds, then patch rows of `3 · temporal · patch²` in merge-block order.
    Patchify { patch: usize, merge: usize, temporal: usize, min_pixels: usize, max_pixels: usize },
    /// Pixtral / Mistral 3: scaled down (floored) to fit `longest`, each side then up to a
    /// multiple of `patch`; a batch zero-padded (after normalisation) to its largest image.
    Longest { longest: usize, patch: usize },
}

/// A model directory's image processor.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    class: String,
    sizing: Sizing,
    filter: Filter,
    do_resize: bool,
    rescale: Option<f64>,
    normalize: Option<([f64; 3], [f64; 3])>,
    /// Gemma 3 also returns `num_crops` (0 without pan and scan).
    num_crops: bool,
}

impl Preprocessor {
    /// Reads `dir/preprocessor_config.json`.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("preprocessor_config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e.to_string()))?;
        let c: ProcessorJson = serde_json::from_str(&text).map_err(|e| file_error(&path, e.to_string()))?;
        let config_error = |field: &str, problem: String| Error::Config { field: field.into(), problem };
        let class = c.image_processor_type.clone().unwrap_or_default();
        let int = |v: &serde_json::Value, key: &str| v[key].as_u64().map(|n| n as usize);
        let size = c.size.clone().unwrap_or_default();
        let sizing = match class.trim_end_matches("Fast").trim_end_matches("Pil") {
            "CLIPImageProcessor" => {
                let edge = int(&size, "shortest_edge")
                    .ok_or_else(|| config_error("size.shortest_edge", format!("missing from {size}")))?;
                let crop = c.crop_size.clone().unwrap_or_default();
                let crop = match (int(&crop, "height"), int(&crop, "width")) {
                    (Some(h), Some(w)) if c.do_center_crop.unwrap_or(true) => (h, w),
                    _ => (edge, edge),
                };
                Sizing::ShortestEdgeCrop { edge, crop }
            }
            "LlavaNextImageProcessor" | "LlavaOnevisionImageProcessor" => {
                let tile = int(&size, "shortest_edge")
                    .or_else(|| int(&size, "height"))
                    .ok_or_else(|| config_error("size", format!("{size} (shortest_edge, or height and width)")))?;
                let pinpoints = c.image_grid_pinpoints.clone().filter(|p| !p.is_empty()).ok_or_else(|| {
                    config_error("image_grid_pinpoints", "missing from preprocessor_config.json".into())
                })?;
                Sizing::AnyRes { tile, pinpoints }
            }
            "Idefics3ImageProcessor" | "SmolVLMImageProcessor" => {
                let longest = int(&size, "longest_edge")
                    .ok_or_else(|| config_error("size.longest_edge", format!("missing from {size}")))?;
                let max = c.max_image_size.clone().unwrap_or_default();
                let tile = int(&max, "longest_edge")
                    .ok_or_else(|| config_error("max_image_size.longest_edge", format!("missing from {max}")))?;
                Sizing::Frames { longest, tile, split: c.do_image_splitting.unwrap_or(true) }
            }
            "PixtralImageProcessor" => {
                let longest = int(&size, "longest_edge")
                    .ok_or_else(|| config_error("size.longest_edge", format!("missing from {size}")))?;
                let patch = c.patch_size.as_ref().and_then(|p| int(p, "height")).unwrap_or(16);
                Sizing::Longest { longest, patch }
            }
            "Qwen2VLImageProcessor" | "Qwen2_5_VLImageProcessor" => Sizing::Patchify {
                patch: c.patch_size.as_ref().and_then(serde_json::Value::as_u64).map_or(14, |p| p as usize),
                merge: c.merge_size.unwrap_or(2),
                temporal: c.temporal_patch_size.unwrap_or(2),
                min_pixels: int(&size, "shortest_edge").or(c.min_pixels).unwrap_or(56 * 56),
                max_pixels: int(&size, "longest_edge").or(c.max_pixels).unwrap_or(28 * 28 * 1280),
            },
            "GotOcr2ImageProcessor" if c.crop_to_patches == Some(true) => {
                let tile = int(&size, "height").ok_or_else(|| config_error("size", format!("{size} (height)")))?;
                Sizing::Patches { tile, min: c.min_patches.unwrap_or(1), max: c.max_patches.unwrap_or(12) }
            }
            "BlipImageProcessor" | "Gemma3ImageProcessor" | "SiglipImageProcessor" | "GotOcr2ImageProcessor" => {
                let (Some(height), Some(width)) = (int(&size, "height"), int(&size, "width")) else {
                    return Err(config_error("size", format!("{size} (height and width)")));
                };
                Sizing::Fixed { height, width }
            }
            other => {
                return Err(config_error(
                    "image_processor_type",
                    format!(
                        "`{other}` is not served yet (CLIPImageProcessor, BlipImageProcessor, Gemma3ImageProcessor)"
                    ),
                ));
            }
        };
        let code = c.resample.unwrap_or(3);
        let filter = Filter::from_pil(code)
            .ok_or_else(|| config_error("resample", format!("{code} (1 LANCZOS, 2 BILINEAR, 3 BICUBIC)")))?;
        let triple = |v: &Option<Vec<f64>>, field: &str| -> Result<[f64; 3]> {
            match v.as_deref() {
                Some([a, b, c]) => Ok([*a, *b, *c]),
                other => Err(config_error(field, format!("{other:?} (three values)"))),
            }
        };
        let normalize = if c.do_normalize.unwrap_or(true) {
            Some((triple(&c.image_mean, "image_mean")?, triple(&c.image_std, "image_std")?))
        } else {
            None
        };
        Ok(Self {
            num_crops: class.starts_with("Gemma3"),
            class,
            sizing,
            filter,
            do_resize: c.do_resize.unwrap_or(true),
            rescale: c.do_rescale.unwrap_or(true).then(|| c.rescale_factor.unwrap_or(1.0 / 255.0)),
            normalize,
        })
    }

    /// The processor class the config names.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The 8-bit images (tiles) the processor hands to rescaling for one image: resized,
    /// cropped, padded and tiled as the Pillow backend does.
    pub fn resized(&self, image: &Rgb8) -> Vec<Rgb8> {
        if !self.do_resize {
            return vec![image.clone()];
        }
        vec![match &self.sizing {
            Sizing::Fixed { height, width } => image.resize(*width, *height, self.filter),
            Sizing::AnyRes { tile, pinpoints } => return self.anyres(image, *tile, pinpoints),
            &Sizing::Patches { tile, min, max } => return self.patches(image, tile, min, max),
            &Sizing::Frames { longest, tile, split } => return self.frames(image, longest, tile, split),
            &Sizing::Longest { longest, patch } => {
                let (h, w) = (image.height as f64, image.width as f64);
                let ratio = (h / longest as f64).max(w / longest as f64);
                let (h, w) = if ratio > 1.0 { ((h / ratio).floor(), (w / ratio).floor()) } else { (h, w) };
                let up = |v: f64| ((v as usize).max(1) - 1) / patch * patch + patch;
                image.resize(up(w), up(h), self.filter)
            }
            &Sizing::Patchify { patch, merge, min_pixels, max_pixels, .. } => {
                let (h, w) = smart_resize(image.height, image.width, patch * merge, min_pixels, max_pixels);
                image.resize(w, h, self.filter)
            }
            &Sizing::ShortestEdgeCrop { edge, crop: (ch, cw) } => {
                let (h, w) = (image.height, image.width);
                let (short, long) = (h.min(w), h.max(w));
                let other = (edge as f64 * long as f64 / short as f64) as usize;
                let (nh, nw) = if h <= w { (edge, other) } else { (other, edge) };
                let resized = image.resize(nw, nh, self.filter);
                // transformers pads when the crop is larger; the served configs never are.
                let (ch, cw) = (ch.min(nh), cw.min(nw));
                resized.crop((nw - cw) / 2, (nh - ch) / 2, cw, ch)
            }
        }]
    }

    /// Idefics3's resize to the longest edge (`_resize_output_size_rescale_to_max_len`, the
    /// other side even, capped at 4096), then `resize_for_vision_encoder` and `split_image`.
    fn frames(&self, image: &Rgb8, longest: usize, tile: usize, split: bool) -> Vec<Rgb8> {
        let (h, w) = (image.height, image.width);
        let aspect = w as f64 / h as f64;
        let (mut nh, mut nw) = if w >= h {
            let nh = (longest as f64 / aspect) as usize;
            (nh + nh % 2, longest)
        } else {
            let nw = (longest as f64 * aspect) as usize;
            (longest, nw + nw % 2)
        };
        const MAX_IMAGE_SIZE: usize = 4096;
        let aspect = nw as f64 / nh as f64;
        if nw >= nh && nw > MAX_IMAGE_SIZE {
            (nw, nh) = (MAX_IMAGE_SIZE, (MAX_IMAGE_SIZE as f64 / aspect) as usize);
        } else if nh > nw && nh > MAX_IMAGE_SIZE {
            (nh, nw) = (MAX_IMAGE_SIZE, (MAX_IMAGE_SIZE as f64 * aspect) as usize);
        }
        let resized = image.resize(nw.max(1), nh.max(1), self.filter);
        if !split {
            return vec![resized.resize(tile, tile, self.filter)];
        }
        // resize_for_vision_encoder: the longer side up to a multiple of the tile, the other
        // from the aspect, then up to a multiple too.
        let (h, w) = (resized.height, resized.width);
        let aspect = w as f64 / h as f64;
        let up = |v: usize| v.div_ceil(tile) * tile;
        let (eh, ew) = if w >= h {
            let ew = up(w);
            (up((ew as f64 / aspect) as usize), ew)
        } else {
            let eh = up(h);
            (eh, up((eh as f64 * aspect) as usize))
        };
        let image = resized.resize(ew, eh, self.filter);
        let mut frames = Vec::new();
        if eh > tile || ew > tile {
            let (rows, columns) = (eh.div_ceil(tile), ew.div_ceil(tile));
            let (th, tw) = (eh.div_ceil(rows), ew.div_ceil(columns));
            for r in 0..rows {
                for c in 0..columns {
                    let (x, y) = (c * tw, r * th);
                    frames.push(image.crop(x, y, tw.min(ew - x), th.min(eh - y)));
                }
            }
            frames.push(image.resize(tile, tile, self.filter));
        } else {
            frames.push(image);
        }
        frames
    }

    /// GotOcr2's `crop_image_to_patches`: the grid (columns, rows) whose aspect is closest to
    /// the image's (`get_optimal_tiled_canvas`; ties go to the larger grid while it covers less
    /// than twice the image), the image squashed onto it and cut row-major, a thumbnail last.
    fn patches(&self, image: &Rgb8, tile: usize, min: usize, max: usize) -> Vec<Rgb8> {
        let (h, w) = (image.height as f64, image.width as f64);
        let mut grids: Vec<(usize, usize)> = (1..=max)
            .flat_map(|c| (1..=max).map(move |r| (c, r)))
            .filter(|&(c, r)| (min..=max).contains(&(c * r)))
            .collect();
        grids.sort_by_key(|&(c, r)| c * r); // stable, as Python's sorted
        let (aspect, area) = (w / h, w * h);
        let (mut best, mut best_diff) = ((1, 1), f64::INFINITY);
        for (c, r) in grids {
            let diff = (aspect - c as f64 / r as f64).abs();
            if diff < best_diff {
                (best, best_diff) = ((c, r), diff);
            } else if diff == best_diff && area > 0.5 * (tile * tile * c * r) as f64 {
                best = (c, r);
            }
        }
        let (columns, rows) = best;
        let resized = image.resize(tile * columns, tile * rows, self.filter);
        let mut tiles: Vec<Rgb8> =
            (0..columns * rows).map(|i| resized.crop((i % columns) * tile, (i / columns) * tile, tile, tile)).collect();
        if tiles.len() != 1 {
            tiles.push(image.resize(tile, tile, self.filter));
        }
        tiles
    }

    /// LLaVA-NeXT's `get_image_patches`: the base image squashed to the tile, then the image
    /// resized into its best pinpoint keeping the aspect (`get_patch_output_size`), padded
    /// centred with black, cut into tiles row-major.
    fn anyres(&self, image: &Rgb8, tile: usize, pinpoints: &[(usize, usize)]) -> Vec<Rgb8> {
        let (h, w) = (image.height, image.width);
        let (th, tw) = select_best_resolution((h, w), pinpoints);
        let (scale_w, scale_h) = (tw as f64 / w as f64, th as f64 / h as f64);
        let (nh, nw) = if scale_w < scale_h {
            (((h as f64 * scale_w).ceil() as usize).min(th), tw)
        } else {
            (th, ((w as f64 * scale_h).ceil() as usize).min(tw))
        };
        let padded = image.resize(nw, nh, self.filter).pad(tw, th, (tw - nw) / 2, (th - nh) / 2);
        let mut tiles = vec![image.resize(tile, tile, self.filter)];
        for y in (0..th).step_by(tile) {
            for x in (0..tw).step_by(tile) {
                tiles.push(padded.crop(x, y, tile.min(tw - x), tile.min(th - y)));
            }
        }
        tiles
    }

    /// What the processor returns for `images`, under transformers' key names: `pixel_values`
    /// `[images, 3, H, W]`, or `[images, tiles, 3, H, W]` with `image_sizes` (and OneVision's
    /// `batch_num_images`, each image its own sample) for AnyRes, the tiles of images with
    /// fewer zero-padded as upstream; Gemma 3's `num_crops`.
    pub fn process(&self, images: &[Rgb8]) -> Result<Tensors> {
        if images.is_empty() {
            return Err(Error::Input { name: "images".into(), problem: "none given".into() });
        }
        if let Sizing::Patchify { patch, merge, temporal, .. } = self.sizing {
            return self.patchified(images, patch, merge, temporal);
        }
        let tiles: Vec<Vec<Rgb8>> = images.iter().map(|i| self.resized(i)).collect();
        let (h, w) = (tiles[0][0].height, tiles[0][0].width);
        let most = tiles.iter().map(Vec::len).max().unwrap_or(1);
        let mut values = Vec::with_capacity(images.len() * most * 3 * h * w);
        for image in &tiles {
            for t in image {
                for c in 0..3 {
                    values.extend(t.data.iter().skip(c).step_by(3).map(|&v| self.normalized(v, c)));
                }
            }
            values.resize(values.len() + (most - image.len()) * 3 * h * w, 0.0);
        }
        let n = images.len();
        let mut out = Tensors::new();
        if let Sizing::AnyRes { .. } = self.sizing {
            out.insert("pixel_values".into(), HostTensor::new(&[n, most, 3, h, w], HostVec::F32(values))?);
            let sizes = images.iter().flat_map(|i| [i.height as u32, i.width as u32]).collect();
            out.insert("image_sizes".into(), HostTensor::new(&[n, 2], HostVec::U32(sizes))?);
            if self.class.starts_with("LlavaOnevision") {
                out.insert("batch_num_images".into(), HostTensor::new(&[n], HostVec::U32(vec![1; n]))?);
            }
        } else if let Sizing::Longest { .. } = self.sizing {
            // Each image top-left in the batch's largest size, the rest 0.0 (after normalising).
            let (h, w) = (
                tiles.iter().map(|t| t[0].height).max().unwrap_or(1),
                tiles.iter().map(|t| t[0].width).max().unwrap_or(1),
            );
            let mut padded = vec![0.0f32; n * 3 * h * w];
            for (i, t) in tiles.iter().enumerate() {
                let t = &t[0];
                for c in 0..3 {
                    for y in 0..t.height {
                        for x in 0..t.width {
                            padded[((i * 3 + c) * h + y) * w + x] =
                                self.normalized(t.data[(y * t.width + x) * 3 + c], c);
                        }
                    }
                }
            }
            out.insert("pixel_values".into(), HostTensor::new(&[n, 3, h, w], HostVec::F32(padded))?);
            let sizes = tiles.iter().flat_map(|t| [t[0].height as u32, t[0].width as u32]).collect();
            out.insert("image_sizes".into(), HostTensor::new(&[n, 2], HostVec::U32(sizes))?);
        } else if let Sizing::Frames { .. } = self.sizing {
            return self.padded_frames(&tiles);
        } else if let Sizing::Patches { .. } = self.sizing {
            // Every image's tiles one after the other, and how many each has.
            let counts: Vec<u32> = tiles.iter().map(|t| t.len() as u32).collect();
            let total = counts.iter().sum::<u32>() as usize;
            let values: Vec<f32> = tiles
                .iter()
                .zip(values.chunks(most * 3 * h * w))
                .flat_map(|(t, v)| v[..t.len() * 3 * h * w].iter().copied())
                .collect();
            out.insert("pixel_values".into(), HostTensor::new(&[total, 3, h, w], HostVec::F32(values))?);
            out.insert("num_patches".into(), HostTensor::new(&[n], HostVec::U32(counts))?);
        } else {
            out.insert("pixel_values".into(), HostTensor::new(&[n, 3, h, w], HostVec::F32(values))?);
        }
        if self.num_crops {
            out.insert("num_crops".into(), HostTensor::new(&[n], HostVec::U32(vec![0; n]))?);
        }
        Ok(out)
    }

    /// Qwen2-VL's `pixel_values` `[Σ t·h·w, 3 · temporal · patch²]`: each resized image's
    /// patches as rows `(channel, t, y, x)` (the still frame repeated `temporal` times), the
    /// `merge × merge` patches of a block consecutive, blocks row-major; `image_grid_thw`.
    fn patchified(&self, images: &[Rgb8], patch: usize, merge: usize, temporal: usize) -> Result<Tensors> {
        let width = 3 * temporal * patch * patch;
        let (mut values, mut grids) = (Vec::new(), Vec::new());
        for image in images {
            if image.height.max(image.width) > 200 * image.height.min(image.width) {
                let problem = format!("aspect ratio of {} x {} is over 200", image.width, image.height);
                return Err(Error::Input { name: "image".into(), problem });
            }
            let r = &self.resized(image)[0];
            let (gh, gw) = (r.height / patch, r.width / patch);
            grids.extend([1, gh as u32, gw as u32]);
            for bh in 0..gh / merge {
                for bw in 0..gw / merge {
                    for my in 0..merge {
                        for mx in 0..merge {
                            let (py, px) = (bh * merge + my, bw * merge + mx);
                            for c in 0..3 {
                                for _ in 0..temporal {
                                    for dy in 0..patch {
                                        let row = (py * patch + dy) * r.width + px * patch;
                                        values.extend(
                                            (0..patch).map(|dx| self.normalized(r.data[(row + dx) * 3 + c], c)),
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut out = Tensors::new();
        let rows = values.len() / width;
        out.insert("pixel_values".into(), HostTensor::new(&[rows, width], HostVec::F32(values))?);
        out.insert("image_grid_thw".into(), HostTensor::new(&[images.len(), 3], HostVec::U32(grids))?);
        Ok(out)
    }

    /// Idefics3's batch: every sample's frames zero-padded bottom-right to the largest frame,
    /// samples to the most frames; `pixel_attention_mask` 1 on real pixels.
    fn padded_frames(&self, samples: &[Vec<Rgb8>]) -> Result<Tensors> {
        let frames = samples.iter().map(Vec::len).max().unwrap_or(1);
        let h = samples.iter().flatten().map(|f| f.height).max().unwrap_or(1);
        let w = samples.iter().flatten().map(|f| f.width).max().unwrap_or(1);
        let n = samples.len();
        let mut values = vec![0.0f32; n * frames * 3 * h * w];
        let mut mask = vec![0u32; n * frames * h * w];
        for (i, sample) in samples.iter().enumerate() {
            for (j, f) in sample.iter().enumerate() {
                let slot = i * frames + j;
                for y in 0..f.height {
                    for x in 0..f.width {
                        mask[(slot * h + y) * w + x] = 1;
                        for c in 0..3 {
                            values[((slot * 3 + c) * h + y) * w + x] =
                                self.normalized(f.data[(y * f.width + x) * 3 + c], c);
                        }
                    }
                }
            }
        }
        let mut out = Tensors::new();
        out.insert("pixel_values".into(), HostTensor::new(&[n, frames, 3, h, w], HostVec::F32(values))?);
        out.insert("pixel_attention_mask".into(), HostTensor::new(&[n, frames, h, w], HostVec::U32(mask))?);
        Ok(out)
    }

    /// `(v · rescale − mean) / std`, in f64 and rounded once (upstream's f32 steps agree to
    /// within an ulp).
    fn normalized(&self, v: u8, channel: usize) -> f32 {
        let mut x = f64::from(v);
        if let Some(s) = self.rescale {
            x *= s;
        }
        if let Some((mean, std)) = self.normalize {
            x = (x - mean[channel]) / std[channel];
        }
        x as f32
    }
}

/// Qwen2-VL's `smart_resize`: both sides rounded (half to even, as Python) to multiples of
/// `factor`, scaled down or up to stay within `[min_pixels, max_pixels]`.
fn smart_resize(height: usize, width: usize, factor: usize, min_pixels: usize, max_pixels: usize) -> (usize, usize) {
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let (mut hb, mut wb) = ((h / f).round_ties_even() * f, (w / f).round_ties_even() * f);
    if hb * wb > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        hb = f.max((h / beta / f).floor() * f);
        wb = f.max((w / beta / f).floor() * f);
    } else if hb * wb < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        hb = (h * beta / f).ceil() * f;
        wb = (w * beta / f).ceil() * f;
    }
    (hb as usize, wb as usize)
}
