//! LayerNorm over the last dimension (`shaders/layer_norm.wgsl`).

use super::{Access, Cost, KernelId, KernelSpec, Meta, check_arity, check_u32_elements, rows_cols};
use crate::error::{Error, Result};
use crate::shader;

/// Mirrors `Params` in `shaders/layer_norm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows (leading dimensions folded).
    pub rows: u32,
    /// Normalised (last) dimension.
    pub dim: u32,
    /// Added to the variance.
    pub eps: f32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

impl Params {
    pub(crate) fn new(eps: f32, inputs: &[&Meta]) -> Self {
        let (rows, dim) = rows_cols(&inputs[0].shape);
        Self { rows: rows as u32, dim: dim as u32, eps, _pad: 0 }
    }
}

/// LayerNorm, one workgroup per row.
pub const SPEC: KernelSpec = KernelSpec {
    id: KernelId::LayerNorm,
    name: "layer_norm",
    file: "layer_norm.wgsl",
    prelude: &[],
    body: shader::LAYER_NORM,
    entry: "layer_norm",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
    workgroup_size: [64, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::empty(),
};

/// Inputs: x `[.., D]`, weight `[D]`, bias `[D]`. Output: x's shape.
pub(crate) fn check(eps: f32, inputs: &[&Meta]) -> Result<Meta> {
    let name = SPEC.name;
    check_arity(name, inputs, 3)?;
    check_u32_elements(name, "x", &inputs[0].shape)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::shape(name, "eps", "finite and >= 0", eps));
    }
    let (_, dim) = rows_cols(&inputs[0].shape);
    for (what, m) in [("weight", inputs[1]), ("bias", inputs[2])] {
        if m.shape.as_slice() != [dim] {
            return Err(Error::shape(name, format!("{what} shape"), format!("[{dim}]"), format!("{:?}", m.shape)));
        }
    }
    Ok(inputs[0].clone())
}

/// One workgroup per row.
pub(crate) fn workgroups(inputs: &[&Meta]) -> u64 {
    rows_cols(&inputs[0].shape).0 as u64
}

pub(crate) fn cost(inputs: &[&Meta]) -> Cost {
    let (rows, dim) = rows_cols(&inputs[0].shape);
    let n = (rows * dim) as f64;
    let a = inputs[0].dtype.size() as f64;
    Cost { flops: 7.0 * n, bytes: a * 2.0 * n + 4.0 * 2.0 * dim as f64 }
}
