//! LLaVA-NeXT AnyRes packing (`shaders/anyres.wgsl`): the layout is computed on the host from
//! the image size (a few scalars), the per-token gather runs on the GPU.

use super::{Access, Cost, KernelId, KernelSpec, Meta, check_arity, check_u32_elements};
use crate::error::{Error, Result};
use crate::shader;

/// Name in errors and reports.
pub const NAME: &str = "anyres";

/// Where every packed token comes from, for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnyResLayout {
    /// Patches per tile side (vision image size / patch size).
    pub side: usize,
    /// Tiles (excluding the base tile) as (rows, columns).
    pub grid: (usize, usize),
    /// The chosen pinpoint as (height, width) in pixels.
    pub best_resolution: (usize, usize),
    /// The unpadded feature grid (H_u, W_u).
    pub unpadded: (usize, usize),
    /// First kept (row, column) of the stitched grid.
    pub offset: (usize, usize),
}

impl AnyResLayout {
    /// `transformers`' `select_best_resolution`, `get_anyres_image_grid_shape` and
    /// `unpad_image` for an image of `image_hw` pixels, pinpoints as (height, width), square
    /// tiles of `tile` pixels and `patch`-pixel patches.
    pub fn new(image_hw: (usize, usize), pinpoints: &[(usize, usize)], tile: usize, patch: usize) -> Result<Self> {
        let (h, w) = image_hw;
        if h == 0 || w == 0 {
            return Err(Error::shape(NAME, "image size (height, width)", "both >= 1", format!("{h}x{w}")));
        }
        if pinpoints.is_empty() {
            return Err(Error::shape(NAME, "grid pinpoints", "at least one", 0));
        }
        if tile == 0 || patch == 0 || !tile.is_multiple_of(patch) {
            return Err(Error::shape(NAME, "tile size (a multiple of the patch size)", format!("k·{patch}"), tile));
        }
        let best = select_best_resolution((h, w), pinpoints);
        let grid = (best.0 / tile, best.1 / tile);
        if grid.0 == 0 || grid.1 == 0 {
            return Err(Error::shape(
                NAME,
                "pinpoint (at least one tile per side)",
                format!(">= {tile}"),
                format!("{best:?}"),
            ));
        }
        let side = tile / patch;
        let (cur_h, cur_w) = (grid.0 * side, grid.1 * side);
        // unpad_image, with Python's float arithmetic and int(round(v, 7)).
        let round7 = |v: f64| ((v * 1e7).round() / 1e7) as usize;
        let (unpadded, offset) = if w as f64 / h as f64 > cur_w as f64 / cur_h as f64 {
            let new_h = round7(h as f64 * (cur_w as f64 / w as f64));
            let pad = cur_h.saturating_sub(new_h) / 2;
            ((cur_h - 2 * pad, cur_w), (pad, 0))
        } else {
            let new_w = round7(w as f64 * (cur_h as f64 / h as f64));
            let pad = cur_w.saturating_sub(new_w) / 2;
            ((cur_h, cur_w - 2 * pad), (0, pad))
        };
        Ok(Self { side, grid, best_resolution: best, unpadded, offset })
    }

    /// Tiles the vision tower encodes: the base tile and the grid.
    pub fn tiles(&self) -> usize {
        1 + self.grid.0 * self.grid.1
    }

    /// Packed tokens: `side² + H_u·(W_u + 1)`.
    pub fn tokens(&self) -> usize {
        self.side * self.side + self.unpadded.0 * (self.unpadded.1 + 1)
    }
}

/// `select_best_resolution`: the pinpoint keeping the most effective pixels, then the least
/// waste, then the first listed.
fn select_best_resolution((h, w): (usize, usize), pinpoints: &[(usize, usize)]) -> (usize, usize) {
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

/// Mirrors `Params` in `shaders/anyres.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Feature width.
    pub channels: u32,
    /// Patches per tile side.
    pub side: u32,
    /// Tiles per row of the grid.
    pub grid_w: u32,
    /// Unpadded rows of patches.
    pub rows: u32,
    /// Unpadded columns of patches.
    pub cols: u32,
    /// First unpadded row.
    pub top: u32,
    /// First unpadded column.
    pub left: u32,
    /// Output tokens.
    pub tokens: u32,
}

impl Params {
    pub(crate) fn new(layout: &AnyResLayout, inputs: &[&Meta]) -> Self {
        Self {
            channels: inputs[0].shape[2] as u32,
            side: layout.side as u32,
            grid_w: layout.grid.1 as u32,
            rows: layout.unpadded.0 as u32,
            cols: layout.unpadded.1 as u32,
            top: layout.offset.0 as u32,
            left: layout.offset.1 as u32,
            tokens: layout.tokens() as u32,
        }
    }
}

const WORKGROUP: u32 = 256;

/// The AnyRes packing gather.
pub const SPEC: KernelSpec = KernelSpec {
    id: KernelId::AnyResPack,
    name: "anyres_pack",
    file: "anyres.wgsl",
    prelude: &[],
    body: shader::ANYRES,
    entry: "anyres_pack",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
    workgroup_size: [WORKGROUP, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::empty(),
};

/// Inputs: tile features `[tiles, side², D]` (base tile first), `image_newline` `[D]`.
/// Output: `[tokens, D]`.
pub(crate) fn check(layout: &AnyResLayout, inputs: &[&Meta]) -> Result<Meta> {
    check_arity(NAME, inputs, 2)?;
    let s = &inputs[0].shape;
    check_u32_elements(NAME, "tile features", s)?;
    let expected = [layout.tiles(), layout.side * layout.side];
    if s.len() != 3 || s[..2] != expected {
        return Err(Error::shape(
            NAME,
            "tile features shape ([tiles, side², D])",
            format!("[{}, {}, D]", expected[0], expected[1]),
            format!("{s:?}"),
        ));
    }
    if inputs[1].shape.as_slice() != [s[2]] {
        return Err(Error::shape(NAME, "image_newline shape", format!("[{}]", s[2]), format!("{:?}", inputs[1].shape)));
    }
    let out = [layout.tokens(), s[2]];
    check_u32_elements(NAME, "output", &out)?;
    Ok(Meta::f32(&out))
}

pub(crate) fn workgroups(layout: &AnyResLayout, inputs: &[&Meta]) -> u64 {
    let p = Params::new(layout, inputs);
    (u64::from(p.tokens) * u64::from(p.channels)).div_ceil(u64::from(WORKGROUP))
}

pub(crate) fn cost(layout: &AnyResLayout, inputs: &[&Meta]) -> Cost {
    let p = Params::new(layout, inputs);
    Cost { flops: 0.0, bytes: 2.0 * inputs[0].dtype.size() as f64 * f64::from(p.tokens) * f64::from(p.channels) }
}
