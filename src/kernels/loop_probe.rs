//! Driver probe (`shaders/loop_probe.wgsl`): runs a counted loop of more than 65,535
//! iterations and compares the count with what a correct driver produces: [`check`].

use super::{Access, KernelId, KernelSpec};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shader;
use crate::tensor::{DType, Tensor, read_buffer};

/// Mirrors `Params` in `shaders/loop_probe.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Outer loop count.
    pub outer: u32,
    /// Inner loop count.
    pub inner: u32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
}

/// The loop-count probe.
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

/// Runs the probe on `gpu` and fails with [`Error::Driver`] if the loop stopped early (Mesa
/// 22.3's lavapipe stops at ~65,535 iterations per invocation and returns wrong results).
pub fn check(gpu: &Gpu) -> Result<()> {
    const OUTER: u32 = 1000;
    const INNER: u32 = 1000;
    let pipeline = gpu.pipeline(&SPEC, crate::DType::F32, &[])?;
    let counts = Tensor::zeros(gpu, &[2], DType::F32)?;
    let params = Params { outer: OUTER, inner: INNER, _pad0: 0, _pad1: 0 };
    gpu.scoped("running the loop probe", || {
        let uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("loop probe params"),
            size: SPEC.params_size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("loop probe"),
            layout: &pipeline.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: counts.buffer().as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: uniform.as_entire_binding() },
            ],
        });
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        gpu.queue.submit([encoder.finish()]);
    })?;
    let bytes = read_buffer(gpu, counts.buffer(), 8)?;
    let got: [u32; 2] = bytemuck::pod_read_unaligned(&bytes[..8]);
    let want = expected(OUTER, INNER);
    if (got[0], got[1]) != want {
        let info = gpu.info();
        return Err(Error::Driver {
            adapter: info.name.clone(),
            driver: format!("{} {}", info.driver, info.driver_info),
            problem: format!(
                "a loop of {} iterations ran {} (state {:#x}, expected {:#x}): this driver truncates long loops \
                 and every kernel result on it is wrong; install Mesa >= 23 (scripts/setup.sh does)",
                want.0, got[0], got[1], want.1
            ),
        });
    }
    Ok(())
}
