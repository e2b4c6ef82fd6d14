//! Spatial downsampling of a token grid: tokens `[batch, h·w, channels]` are a row-major
//! `h × w` image (token `t = y·w + x`), and the output is a row-major grid again.

use super::{Meta, check_arity, check_u32_elements};
use crate::error::{Error, Result};

/// `avg_pool2d(k, stride k, padding 0)` over the token grid: LLaVA-NeXT-Video's 2×2 pooler,
/// Gemma 3's `k × k` pooling. With `ceil_mode` the last window of an axis that `k` does not
/// divide is partial and divides by its in-bounds count; without it that remainder is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvgPool {
    /// Grid rows.
    pub h: usize,
    /// Grid columns.
    pub w: usize,
    /// Window side and stride.
    pub k: usize,
    /// Keep the partial last window of an axis.
    pub ceil_mode: bool,
}

impl AvgPool {
    /// Name in errors and reports.
    pub const NAME: &'static str = "avg_pool";

    /// 2×2 pooling of an `h × w` grid.
    pub fn two_by_two(h: usize, w: usize, ceil_mode: bool) -> Self {
        Self { h, w, k: 2, ceil_mode }
    }

    /// The output grid.
    pub fn output_grid(&self) -> (usize, usize) {
        let k = self.k.max(1);
        if self.ceil_mode { (self.h.div_ceil(k), self.w.div_ceil(k)) } else { (self.h / k, self.w / k) }
    }

    /// Checks `[batch, h·w, channels]`; returns `[batch, out_h·out_w, channels]`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        if self.k == 0 {
            return Err(Error::shape(Self::NAME, "window (k)", ">= 1", 0));
        }
        check_grid(Self::NAME, (self.h, self.w), self.output_grid(), inputs)
    }
}

/// Bilinear to `ceil(h/2) × ceil(w/2)`, `align_corners=False`, no antialias: LLaVA-OneVision's
/// pooling (scale `in/out`, computed in f32 as PyTorch does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BilinearHalf {
    /// Grid rows.
    pub h: usize,
    /// Grid columns.
    pub w: usize,
}

impl BilinearHalf {
    /// Name in errors and reports.
    pub const NAME: &'static str = "bilinear_half";

    /// The output grid.
    pub fn output_grid(&self) -> (usize, usize) {
        (self.h.div_ceil(2), self.w.div_ceil(2))
    }

    /// Checks `[batch, h·w, channels]`; returns `[batch, out_h·out_w, channels]`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_grid(Self::NAME, (self.h, self.w), self.output_grid(), inputs)
    }
}

fn check_grid(name: &'static str, (h, w): (usize, usize), (oh, ow): (usize, usize), inputs: &[&Meta]) -> Result<Meta> {
    check_arity(name, inputs, 1)?;
    let s = &inputs[0].shape;
    check_u32_elements(name, "tokens", s)?;
    let [batch, tokens, channels] = s[..] else {
        return Err(Error::shape(name, "tokens rank ([batch, h·w, channels])", 3, s.len()));
    };
    if h == 0 || w == 0 || h.checked_mul(w) != Some(tokens) {
        return Err(Error::shape(name, "tokens (a grid of h·w)", format!("{h}·{w}"), tokens));
    }
    if oh == 0 || ow == 0 {
        let what = "output grid (a grid narrower than the window without ceil_mode is empty)";
        return Err(Error::shape(name, what, ">= 1x1", format!("{oh}x{ow}")));
    }
    Ok(Meta { shape: vec![batch, oh * ow, channels], dtype: inputs[0].dtype })
}
