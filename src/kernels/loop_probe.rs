//! Driver probe (`shaders/loop_probe.wgsl`): runs a counted loop of more than 65,535
//! iterations and compares the count. See [`crate::gpu::Gpu::check_loop_limit`].

use super::{Access, KernelId, KernelSpec};
use crate::shader;

/// Mirrors `Params` in `shaders/loop_probe.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub outer: u32,
    pub inner: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

pub const SPEC: KernelSpec = KernelSpec {
    id: KernelId::LoopProbe,
    name: "loop_probe",
    file: "loop_probe.wgsl",
    prelude: &[],
    body: shader::LOOP_PROBE,
    entry: "loop_probe",
    bindings: &[Access::ReadWrite, Access::Uniform],
    workgroup_size: [1, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::empty(),
};

/// The (count, LCG state) a correct driver produces for `outer × inner` iterations.
pub fn expected(outer: u32, inner: u32) -> (u32, u32) {
    let total = u64::from(outer) * u64::from(inner);
    let mut state = 1u32;
    for _ in 0..total {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
    }
    (total as u32, state)
}
