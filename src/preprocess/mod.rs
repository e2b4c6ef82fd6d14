//! Images in: decoding on the host (the `image` crate) and each family's image processor as
//! transformers 5.24's Pillow backend computes it, every setting from the directory's
//! `preprocessor_config.json`. The 8-bit resize is Pillow's own fixed-point arithmetic
//! ([`resample`]), so the resized image is bit-identical to Pillow's and only the float
//! rescale and normalisation remain (within 1e-6 of upstream's `pixel_values`).
//!
//! Served so far: CLIP's shortest-edge resize and centre crop (LLaVA-1.5), LLaVA-NeXT's and
//! OneVision's AnyRes tiles, InternVL's aspect-ratio tiles and thumbnail, Idefics3's and
//! SmolVLM's split frames, Qwen2-VL's smart resize and patch rows, Pixtral's longest-edge fit,
//! Mllama's tiled canvas, and the fixed-size resize of BLIP-2 and Gemma 3. EXIF orientation is not applied, as transformers does not.

mod decode;
mod layouts;
pub mod resample;

use std::path::Path;

use serde::Deserialize;

pub use decode::{MAX_IMAGE_PIXELS, decode, decode_bytes};
pub use resample::{Filter, Rgb8};

use crate::dtype::HostVec;
use crate::error::{Error, Result};
use crate::files::ModelFiles;
use crate::host::{HostTensor, Tensors};

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
    max_image_tiles: Option<usize>,
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
    /// Mllama: resized to fit the best canvas of at most `max_tiles` `tile`-sized tiles, padded
    /// bottom-right with black, cut row-major; the batch's images padded to `max_tiles` tiles.
    Canvas { tile: usize, max_tiles: usize },
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
        Self::from_files(&ModelFiles::Dir(dir.as_ref().to_path_buf()))
    }

    /// [`Preprocessor::from_pretrained`] wherever the directory's files are.
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        let name = "preprocessor_config.json";
        let text = files.read_text(name)?;
        let c: ProcessorJson = serde_json::from_str(&text).map_err(|e| files.error(name, e.to_string()))?;
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
            "MllamaImageProcessor" => {
                let tile = int(&size, "height").ok_or_else(|| config_error("size", format!("{size} (height)")))?;
                let max_tiles = c.max_image_tiles.unwrap_or(4);
                if max_tiles == 0 || int(&size, "width").is_some_and(|w| w != tile) {
                    let problem = format!("{max_tiles} tiles of {size} (at least one square tile)");
                    return Err(config_error("max_image_tiles", problem));
                }
                Sizing::Canvas { tile, max_tiles }
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
                        "`{other}` is not served (CLIP, LlavaNext, LlavaOnevision, Blip, Siglip, Gemma3, \
                         GotOcr2, Idefics3, SmolVLM, Qwen2VL, Qwen2_5_VL, Pixtral and Mllama image processors)"
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

    /// What the processor returns for `images`, under transformers' key names: `pixel_values`
    /// `[images, 3, H, W]`, or `[images, tiles, 3, H, W]` with `image_sizes` (and OneVision's
    /// `batch_num_images`, each image its own sample) for AnyRes, the tiles of images with
    /// fewer zero-padded as upstream; Gemma 3's `num_crops`.
    pub fn process(&self, images: &[Rgb8]) -> Result<Tensors> {
        if images.is_empty() {
            return Err(Error::Input { name: "images".into(), problem: "none given".into() });
        }
        if let Some((i, image)) = images
            .iter()
            .enumerate()
            .find(|(_, i)| i.width == 0 || i.height == 0 || i.data.len() != 3 * i.width * i.height)
        {
            let problem = format!(
                "{} x {} with {} bytes (needs a non-empty RGB image)",
                image.width,
                image.height,
                image.data.len()
            );
            return Err(Error::Input { name: format!("images[{i}]"), problem });
        }
        if let Sizing::Patchify { patch, merge, temporal, .. } = self.sizing {
            return self.patchified(images, patch, merge, temporal);
        }
        let tiles: Vec<Vec<Rgb8>> = images.iter().map(|i| self.resized(i)).collect();
        let (h, w) = (tiles[0][0].height, tiles[0][0].width);
        let most = match self.sizing {
            Sizing::Canvas { max_tiles, .. } => max_tiles,
            _ => tiles.iter().map(Vec::len).max().unwrap_or(1),
        };
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
        } else if let Sizing::Canvas { tile, max_tiles } = self.sizing {
            // One sample holding every image, as upstream nests a flat list of images.
            let grids: Vec<(usize, usize)> =
                images.iter().map(|i| layouts::tiled_canvas(i.height, i.width, tile, max_tiles)).collect();
            let arrangements = layouts::tile_arrangements(max_tiles);
            let ids = grids.iter().map(|g| 1 + arrangements.iter().position(|a| a == g).unwrap_or(0) as u32);
            let mask = grids.iter().flat_map(|&(r, c)| (0..max_tiles).map(move |t| u32::from(t == 0 || t < r * c)));
            let counts = grids.iter().map(|&(r, c)| (r * c) as u32);
            out.insert("pixel_values".into(), HostTensor::new(&[1, n, most, 3, h, w], HostVec::F32(values))?);
            out.insert("aspect_ratio_ids".into(), HostTensor::new(&[1, n], HostVec::U32(ids.collect()))?);
            out.insert("aspect_ratio_mask".into(), HostTensor::new(&[1, n, most], HostVec::U32(mask.collect()))?);
            out.insert("num_tiles".into(), HostTensor::new(&[1, n], HostVec::U32(counts.collect()))?);
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
