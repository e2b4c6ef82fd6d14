//! LLaVA-NeXT AnyRes packing: where every packed token of one image comes from.

use super::{Meta, check_arity, check_u32_elements};
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "anyres_pack";

/// Where every packed token comes from, for one image. Inputs of the op: tile features
/// `[tiles, side², D]` (base tile first) and `image_newline` `[D]`; output `[tokens, D]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnyResLayout {
    /// Patches per tile side (vision image size // patch size, floored as upstream).
    pub side: usize,
    /// Tiles (excluding the base tile) as (rows, columns).
    pub grid: (usize, usize),
    /// The chosen pinpoint as (height, width) in pixels.
    pub best_resolution: (usize, usize),
    /// The unpadded feature grid (H_u, W_u).
    pub unpadded: (usize, usize),
    /// First kept (row, column) of the stitched grid.
    pub offset: (usize, usize),
    /// LLaVA-OneVision's `anyres_max_N`: the unpadded grid bilinearly resized to this
    /// (rows, columns) before the newlines go in; `None` keeps it.
    pub resized: Option<(usize, usize)>,
}

impl AnyResLayout {
    /// `transformers`' `select_best_resolution`, `get_anyres_image_grid_shape` and
    /// `unpad_image` for an image of `image_hw` pixels, pinpoints as (height, width), square
    /// tiles of `tile` pixels and `patch`-pixel patches: the tile grid is each pinpoint side
    /// `// tile`, a tile holds `tile // patch` patches per side.
    pub fn new(image_hw: (usize, usize), pinpoints: &[(usize, usize)], tile: usize, patch: usize) -> Result<Self> {
        let (h, w) = image_hw;
        if h == 0 || w == 0 {
            return Err(Error::shape(NAME, "image size (height, width)", "both >= 1", format!("{h}x{w}")));
        }
        if pinpoints.is_empty() {
            return Err(Error::shape(NAME, "grid pinpoints", "at least one", 0));
        }
        // transformers takes `image_size // patch_size` patches per side: SigLIP-so400m's
        // 384-pixel tiles of 14-pixel patches give 27 (the last 6 pixels are never a patch).
        if patch == 0 || tile < patch {
            return Err(Error::shape(NAME, "tile size (at least one patch)", format!(">= {patch}"), tile));
        }
        let best = select_best_resolution((h, w), pinpoints);
        let grid = (best.0 / tile, best.1 / tile);
        if grid.0 == 0 || grid.1 == 0 {
            let what = "pinpoint (at least one tile per side)";
            return Err(Error::shape(NAME, what, format!(">= {tile}"), format!("{best:?}")));
        }
        let side = tile / patch;
        let (unpadded, offset) = unpad((h, w), (grid.0 * side, grid.1 * side));
        Ok(Self { side, grid, best_resolution: best, unpadded, offset, resized: None })
    }

    /// LLaVA-OneVision's `anyres_max_{max_patches}` rule: when the unpadded grid holds more
    /// than 1.1² times `max_patches` tiles' worth of patches, it is resized (bilinear,
    /// `align_corners=False`) by `ratio = sqrt(H_u·W_u / (max_patches·side²))` to
    /// `(int(H_u // ratio), int(W_u // ratio))`.
    pub fn with_max_patches(self, max_patches: usize) -> Self {
        let (h, w) = (self.unpadded.0 as f64, self.unpadded.1 as f64);
        let ratio = (h * w / (max_patches * self.side * self.side) as f64).sqrt();
        let resized = (ratio > 1.1).then(|| ((h / ratio).floor() as usize, (w / ratio).floor() as usize));
        Self { resized, ..self }
    }

    /// The (rows, columns) of patches that get a newline each row: unpadded, or resized.
    pub fn packed_grid(&self) -> (usize, usize) {
        self.resized.unwrap_or(self.unpadded)
    }

    /// Tiles the vision tower encodes: the base tile and the grid.
    pub fn tiles(&self) -> usize {
        1 + self.grid.0 * self.grid.1
    }

    /// Packed tokens: `side² + H·(W + 1)` for the packed grid.
    pub fn tokens(&self) -> usize {
        let (rows, cols) = self.packed_grid();
        self.side * self.side + rows * (cols + 1)
    }

    /// Checks the tile features and the newline; returns `[tokens, D]`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(NAME, inputs, 2)?;
        let s = &inputs[0].shape;
        check_u32_elements(NAME, "tile features", s)?;
        let expected = [self.tiles(), self.side * self.side];
        if s.len() != 3 || s[..2] != expected {
            return Err(Error::shape(
                NAME,
                "tile features shape ([tiles, side², D])",
                format!("[{}, {}, D]", expected[0], expected[1]),
                format!("{s:?}"),
            ));
        }
        if inputs[1].shape.as_slice() != [s[2]] {
            let got = format!("{:?}", inputs[1].shape);
            return Err(Error::shape(NAME, "image_newline shape", format!("[{}]", s[2]), got));
        }
        if self.resized.is_some_and(|(r, c)| r == 0 || c == 0) {
            return Err(Error::shape(NAME, "resized grid", ">= 1x1", format!("{:?}", self.resized)));
        }
        let out = [self.tokens(), s[2]];
        check_u32_elements(NAME, "output", &out)?;
        Ok(Meta { shape: out.to_vec(), dtype: inputs[0].dtype })
    }
}

/// `unpad_image` on a `current` feature grid for an image of `image` pixels, with Python's
/// float arithmetic and `int(round(v, 7))`: the kept (rows, columns) and the first kept
/// (row, column).
pub fn unpad((h, w): (usize, usize), (cur_h, cur_w): (usize, usize)) -> ((usize, usize), (usize, usize)) {
    let round7 = |v: f64| ((v * 1e7).round() / 1e7) as usize;
    if w as f64 / h as f64 > cur_w as f64 / cur_h as f64 {
        let new_h = round7(h as f64 * (cur_w as f64 / w as f64));
        let pad = cur_h.saturating_sub(new_h) / 2;
        ((cur_h - 2 * pad, cur_w), (pad, 0))
    } else {
        let new_w = round7(w as f64 * (cur_h as f64 / h as f64));
        let pad = cur_w.saturating_sub(new_w) / 2;
        ((cur_h, cur_w - 2 * pad), (0, pad))
    }
}

/// `select_best_resolution`: the pinpoint keeping the most effective pixels, then the least
/// waste, then the first listed.
pub fn select_best_resolution((h, w): (usize, usize), pinpoints: &[(usize, usize)]) -> (usize, usize) {
    let mut best = pinpoints[0];
    let (mut max_effective, mut min_waste) = (0usize, usize::MAX);
    for &(ph, pw) in pinpoints {
        let scale = (pw as f64 / w as f64).min(ph as f64 / h as f64);
        let (dw, dh) = ((w as f64 * scale) as usize, (h as f64 * scale) as usize);
        let effective = (dw * dh).min(w * h);
        let waste = (ph * pw).saturating_sub(effective);
        if effective > max_effective || (effective == max_effective && waste < min_waste) {
            (max_effective, min_waste, best) = (effective, waste, (ph, pw));
        }
    }
    best
}
