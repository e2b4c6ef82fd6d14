//! 2×2 average pooling and bilinear halving of token grids (`shaders/downsample.wgsl`).

use super::{Access, Cost, KernelId, KernelSpec, Meta, check_arity, check_u32_elements};
use crate::error::{Error, Result};
use crate::shader;

/// How a grid of `[batch, h·w, channels]` tokens is downsampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Downsample {
    /// `avg_pool2d(2, stride 2)`; `ceil_mode` keeps partial windows of odd grids.
    AvgPool2x2 {
        /// Grid rows.
        h: usize,
        /// Grid columns.
        w: usize,
        /// Keep the partial last window of an odd axis (divided by its in-bounds count).
        ceil_mode: bool,
    },
    /// Bilinear to `ceil(h/2) × ceil(w/2)`, `align_corners=False`, no antialias.
    BilinearHalf {
        /// Grid rows.
        h: usize,
        /// Grid columns.
        w: usize,
    },
}

impl Downsample {
    /// The input grid.
    pub fn grid(self) -> (usize, usize) {
        match self {
            Downsample::AvgPool2x2 { h, w, .. } | Downsample::BilinearHalf { h, w } => (h, w),
        }
    }

    /// The output grid.
    pub fn output_grid(self) -> (usize, usize) {
        match self {
            Downsample::AvgPool2x2 { h, w, ceil_mode: false } => (h / 2, w / 2),
            Downsample::AvgPool2x2 { h, w, ceil_mode: true } | Downsample::BilinearHalf { h, w } => {
                (h.div_ceil(2), w.div_ceil(2))
            }
        }
    }
}

/// Mirrors `Params` in `shaders/downsample.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Batch items.
    pub batch: u32,
    /// Input grid rows.
    pub h: u32,
    /// Input grid columns.
    pub w: u32,
    /// Feature width.
    pub channels: u32,
    /// Output grid rows.
    pub out_h: u32,
    /// Output grid columns.
    pub out_w: u32,
    /// Bilinear: h / out_h.
    pub scale_h: f32,
    /// Bilinear: w / out_w.
    pub scale_w: f32,
}

impl Params {
    pub(crate) fn new(op: Downsample, inputs: &[&Meta]) -> Self {
        let s = &inputs[0].shape;
        let ((h, w), (out_h, out_w)) = (op.grid(), op.output_grid());
        Self {
            batch: s[0] as u32,
            h: h as u32,
            w: w as u32,
            channels: s[2] as u32,
            out_h: out_h as u32,
            out_w: out_w as u32,
            // PyTorch's scale is in/out in f32 (27/14 = 1.9286 for a 27 grid, not 2).
            scale_h: h as f32 / out_h.max(1) as f32,
            scale_w: w as f32 / out_w.max(1) as f32,
        }
    }
}

const WORKGROUP: u32 = 256;

const fn spec(id: KernelId, name: &'static str) -> KernelSpec {
    KernelSpec {
        id,
        name,
        file: "downsample.wgsl",
        prelude: &[],
        body: shader::DOWNSAMPLE,
        entry: name,
        bindings: &[Access::Read, Access::ReadWrite, Access::Uniform],
        workgroup_size: [WORKGROUP, 1, 1],
        params_size: std::mem::size_of::<Params>() as u64,
        features: wgpu::Features::empty(),
    }
}

/// 2×2 average pooling.
pub const AVG_POOL_SPEC: KernelSpec = spec(KernelId::AvgPool2x2, "avg_pool_2x2");
/// Bilinear halving.
pub const BILINEAR_SPEC: KernelSpec = spec(KernelId::BilinearHalf, "bilinear");

pub(crate) fn spec_of(op: Downsample) -> &'static KernelSpec {
    match op {
        Downsample::AvgPool2x2 { .. } => &AVG_POOL_SPEC,
        Downsample::BilinearHalf { .. } => &BILINEAR_SPEC,
    }
}

/// Input: tokens `[batch, h·w, channels]`. Output: `[batch, out_h·out_w, channels]`.
pub(crate) fn check(op: Downsample, inputs: &[&Meta]) -> Result<Meta> {
    let name = spec_of(op).name;
    check_arity(name, inputs, 1)?;
    let s = &inputs[0].shape;
    check_u32_elements(name, "tokens", s)?;
    let [batch, tokens, channels] = s[..] else {
        return Err(Error::shape(name, "tokens rank ([batch, h·w, channels])", 3, s.len()));
    };
    let (h, w) = op.grid();
    if h == 0 || w == 0 || h.checked_mul(w) != Some(tokens) {
        return Err(Error::shape(name, "tokens (a grid of h·w)", format!("{h}·{w}"), tokens));
    }
    let (out_h, out_w) = op.output_grid();
    if out_h == 0 || out_w == 0 {
        return Err(Error::shape(
            name,
            "output grid (a 1-wide grid without ceil_mode is empty)",
            ">= 1x1",
            format!("{out_h}x{out_w}"),
        ));
    }
    Ok(Meta::f32(&[batch, out_h * out_w, channels]))
}

pub(crate) fn workgroups(op: Downsample, inputs: &[&Meta]) -> u64 {
    let p = Params::new(op, inputs);
    (u64::from(p.batch) * u64::from(p.out_h) * u64::from(p.out_w) * u64::from(p.channels))
        .div_ceil(u64::from(WORKGROUP))
}

pub(crate) fn cost(op: Downsample, inputs: &[&Meta]) -> Cost {
    let p = Params::new(op, inputs);
    let out = f64::from(p.batch) * f64::from(p.out_h) * f64::from(p.out_w) * f64::from(p.channels);
    let input = f64::from(p.batch) * f64::from(p.h) * f64::from(p.w) * f64::from(p.channels);
    Cost { flops: 4.0 * out, bytes: inputs[0].dtype.size() as f64 * (input + out) }
}
