//! How each family's processor sizes one image: resize, crop, pad and tile, as the Pillow
//! backend does (the 8-bit images that rescaling and normalisation then read).

use super::{Preprocessor, Rgb8, Sizing};
use crate::ops::anyres::select_best_resolution;

impl Preprocessor {
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
            &Sizing::Canvas { tile, max_tiles } => return self.canvas(image, tile, max_tiles),
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

    /// Mllama's resize into its canvas (`get_image_size_fit_to_canvas`: the image's sides
    /// clamped to [tile, canvas], the tighter scale taken, the other side floored), the
    /// canvas padded bottom-right with black and cut into tiles row-major.
    fn canvas(&self, image: &Rgb8, tile: usize, max_tiles: usize) -> Vec<Rgb8> {
        let (h, w) = (image.height, image.width);
        let (rows, columns) = tiled_canvas(h, w, tile, max_tiles);
        let (canvas_h, canvas_w) = (rows * tile, columns * tile);
        let (target_h, target_w) = (h.clamp(tile, canvas_h), w.clamp(tile, canvas_w));
        let (scale_h, scale_w) = (target_h as f64 / h as f64, target_w as f64 / w as f64);
        let (nh, nw) = if scale_w < scale_h {
            (((h as f64 * scale_w).floor() as usize).max(1).min(target_h), target_w)
        } else {
            (target_h, ((w as f64 * scale_h).floor() as usize).max(1).min(target_w))
        };
        let padded = image.resize(nw, nh, self.filter).pad(canvas_w, canvas_h, 0, 0);
        (0..rows * columns).map(|i| padded.crop((i % columns) * tile, (i / columns) * tile, tile, tile)).collect()
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
}

/// Mllama's tile grids (rows, columns) of at most `max_tiles` tiles, in upstream's order
/// (`get_all_supported_aspect_ratios`): `aspect_ratio_ids` are 1 + an index into it.
pub(super) fn tile_arrangements(max_tiles: usize) -> Vec<(usize, usize)> {
    (1..=max_tiles).flat_map(|a| (1..=max_tiles / a).map(move |b| (a, b))).collect()
}

/// Mllama's `get_optimal_tiled_canvas` for an `height × width` image: the grid whose canvas
/// needs the least upscaling (the scale of the tighter side), else the least downscaling;
/// among equal scales the smallest canvas, the first in [`tile_arrangements`] order.
pub(super) fn tiled_canvas(height: usize, width: usize, tile: usize, max_tiles: usize) -> (usize, usize) {
    let grids = tile_arrangements(max_tiles);
    let scale = |&(r, c): &(usize, usize)| ((r * tile) as f64 / height as f64).min((c * tile) as f64 / width as f64);
    let scales: Vec<f64> = grids.iter().map(scale).collect();
    let up = scales.iter().copied().filter(|&s| s >= 1.0).reduce(f64::min);
    let chosen = up.unwrap_or_else(|| scales.iter().copied().filter(|&s| s < 1.0).fold(f64::MIN, f64::max));
    grids
        .iter()
        .zip(&scales)
        .filter(|&(_, &s)| s == chosen)
        .map(|(&g, _)| g)
        .min_by_key(|&(r, c)| r * c)
        .unwrap_or((1, 1))
}

/// Qwen2-VL's `smart_resize`: both sides rounded (half to even, as Python) to multiples of
/// `factor`, scaled down or up to stay within `[min_pixels, max_pixels]`.
pub(super) fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> (usize, usize) {
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
