//! Broadcast along a new leading dimension (`shaders/repeat.wgsl`).

use super::{Access, Cost, KernelId, KernelSpec, Meta, check_arity, check_u32_elements};
use crate::error::{Error, Result};
use crate::shader;

/// Mirrors `Params` in `shaders/repeat.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements of x.
    pub len: u32,
    /// Elements of the output.
    pub total: u32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
}

impl Params {
    pub(crate) fn new(times: usize, inputs: &[&Meta]) -> Self {
        let len = inputs[0].shape.iter().product::<usize>();
        Self { len: len as u32, total: (len * times) as u32, _pad0: 0, _pad1: 0 }
    }
}

const WORKGROUP: u32 = 256;

/// Broadcast along a new leading dimension.
pub const SPEC: KernelSpec = KernelSpec {
    id: KernelId::Repeat,
    name: "repeat",
    file: "repeat.wgsl",
    prelude: &[],
    body: shader::REPEAT,
    entry: "repeat",
    bindings: &[Access::Read, Access::ReadWrite, Access::Uniform],
    workgroup_size: [WORKGROUP, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::empty(),
};

/// Input: x of any shape. Output: `[times, ..x.shape]`.
pub(crate) fn check(times: usize, inputs: &[&Meta]) -> Result<Meta> {
    check_arity(SPEC.name, inputs, 1)?;
    if times == 0 {
        return Err(Error::shape(SPEC.name, "times", ">= 1", 0));
    }
    let mut out = vec![times];
    out.extend(&inputs[0].shape);
    check_u32_elements(SPEC.name, "output", &out)?;
    Ok(Meta::f32(&out))
}

pub(crate) fn workgroups(times: usize, inputs: &[&Meta]) -> u64 {
    u64::from(Params::new(times, inputs).total).div_ceil(u64::from(WORKGROUP))
}

pub(crate) fn cost(times: usize, inputs: &[&Meta]) -> Cost {
    let p = Params::new(times, inputs);
    Cost { flops: 0.0, bytes: inputs[0].dtype.size() as f64 * f64::from(p.len + p.total) }
}
