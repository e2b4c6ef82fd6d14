//! Standalone GELU (`shaders/gelu.wgsl`): the unfused baseline for the projector bench.

use super::{Access, Cost, KernelId, KernelSpec, Meta};
use crate::error::Result;
use crate::shader;

/// Which GELU formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeluForm {
    /// `0.5·x·(1 + erf(x/√2))`, PyTorch's default.
    Erf,
    /// `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`, HF `gelu_pytorch_tanh`.
    Tanh,
}

/// Mirrors `Params` in `shaders/gelu.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements.
    pub len: u32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
    /// Padding.
    pub _pad2: u32,
}

impl Params {
    pub(crate) fn new(inputs: &[&Meta]) -> Self {
        Self { len: inputs[0].shape.iter().product::<usize>() as u32, _pad0: 0, _pad1: 0, _pad2: 0 }
    }
}

const WORKGROUP: u32 = 256;

/// Elementwise GELU.
pub const SPEC: KernelSpec = KernelSpec {
    id: KernelId::Gelu,
    name: "gelu",
    file: "gelu.wgsl",
    prelude: &[shader::ACTIVATIONS],
    body: shader::GELU,
    entry: "gelu",
    bindings: &[Access::Read, Access::ReadWrite, Access::Uniform],
    workgroup_size: [WORKGROUP, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::empty(),
};

/// The code `activate()` in `shaders/common/activations.wgsl` takes.
pub(crate) fn activation_code(form: Option<GeluForm>) -> f64 {
    match form {
        None => 0.0,
        Some(GeluForm::Erf) => 1.0,
        Some(GeluForm::Tanh) => 2.0,
    }
}

pub(crate) fn overrides(form: GeluForm) -> Vec<(&'static str, f64)> {
    vec![("GELU_FORM", activation_code(Some(form)))]
}

pub(crate) fn check(inputs: &[&Meta]) -> Result<Meta> {
    super::check_arity(SPEC.name, inputs, 1)?;
    super::check_u32_elements(SPEC.name, "input", &inputs[0].shape)?;
    Ok(inputs[0].clone())
}

pub(crate) fn workgroups(inputs: &[&Meta]) -> u64 {
    (inputs[0].shape.iter().product::<usize>() as u64).div_ceil(u64::from(WORKGROUP))
}

pub(crate) fn cost(inputs: &[&Meta]) -> Cost {
    let n = inputs[0].shape.iter().product::<usize>() as f64;
    // ~20 flops for erfc + exp; reads and writes each element once.
    Cost { flops: 20.0 * n, bytes: 2.0 * inputs[0].dtype.size() as f64 * n }
}
