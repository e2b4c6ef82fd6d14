//! f32 → activation storage type (`shaders/convert.wgsl`): f32 parameters such as learnable
//! queries entering a graph whose activations are f16.

use super::gelu::Params;
use super::{Access, Cost, KernelId, KernelSpec, Meta};
use crate::error::{Error, Result};
use crate::shader;
use crate::tensor::DType;

const WORKGROUP: u32 = 256;

/// f32 → activation storage type.
pub const SPEC: KernelSpec = KernelSpec {
    id: KernelId::Convert,
    name: "convert",
    file: "convert.wgsl",
    prelude: &[],
    body: shader::CONVERT,
    entry: "convert",
    bindings: &[Access::Read, Access::ReadWrite, Access::Uniform],
    workgroup_size: [WORKGROUP, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::empty(),
};

/// Input: an f32 tensor of any shape. Output: the same shape in `to` (f32 or f16).
pub(crate) fn check(to: DType, inputs: &[&Meta]) -> Result<Meta> {
    super::check_arity(SPEC.name, inputs, 1)?;
    super::check_u32_elements(SPEC.name, "input", &inputs[0].shape)?;
    if to == DType::BF16 {
        return Err(Error::DType {
            kernel: SPEC.name,
            what: "target".into(),
            expected: "f32 or f16".into(),
            got: to.to_string(),
        });
    }
    Ok(Meta { shape: inputs[0].shape.clone(), dtype: to })
}

pub(crate) fn workgroups(inputs: &[&Meta]) -> u64 {
    (inputs[0].shape.iter().product::<usize>() as u64).div_ceil(u64::from(WORKGROUP))
}

pub(crate) fn cost(to: DType, inputs: &[&Meta]) -> Cost {
    let n = inputs[0].shape.iter().product::<usize>() as f64;
    Cost { flops: 0.0, bytes: n * (4 + to.size()) as f64 }
}
