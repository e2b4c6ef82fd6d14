//! The measured ceilings of an adapter (`shaders/roofline.wgsl`): peak FMA throughput and
//! copy bandwidth, each timed until a run lasts long enough to trust.

use super::{Access, KernelId, KernelSpec, fold_grid};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::shader;
use crate::tensor::{DType, Tensor};
use crate::timing::Timer;

/// Mirrors `Params` in `shaders/roofline.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// FMA iterations per invocation.
    pub iterations: u32,
    /// Elements copied.
    pub len: u32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
}

const WORKGROUP: u32 = 256;

const fn spec(id: KernelId, name: &'static str) -> KernelSpec {
    KernelSpec {
        id,
        name,
        file: "roofline.wgsl",
        prelude: &[],
        body: shader::ROOFLINE,
        entry: name,
        bindings: &[Access::Read, Access::ReadWrite, Access::Uniform],
        workgroup_size: [WORKGROUP, 1, 1],
        params_size: std::mem::size_of::<Params>() as u64,
        features: wgpu::Features::empty(),
    }
}

/// Peak FMA throughput.
pub const FMA_SPEC: KernelSpec = spec(KernelId::RooflineFma, "fma_peak");
/// Copy bandwidth.
pub const COPY_SPEC: KernelSpec = spec(KernelId::RooflineCopy, "copy_bandwidth");

/// An adapter's measured limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceilings {
    /// Peak f32 FMA throughput, GFLOP/s (an FMA counts 2).
    pub gflops: f64,
    /// Copy bandwidth, GB/s (bytes read plus bytes written).
    pub gbps: f64,
}

impl Ceilings {
    /// The roofline: the most GFLOP/s a kernel of `intensity` FLOP per byte can reach.
    pub fn bound(&self, intensity: f64) -> f64 {
        self.gflops.min(intensity * self.gbps)
    }
}

/// Runs `dispatches` of `spec` over `invocations` in one pass; returns milliseconds.
fn run(
    gpu: &Gpu,
    timer: &Timer,
    spec: &KernelSpec,
    params: Params,
    invocations: u64,
    dispatches: u32,
    buffers: (&Tensor, &Tensor),
) -> Result<f64> {
    let pipeline = gpu.pipeline(spec, crate::DType::F32, &[])?;
    let grid = fold_grid(
        spec.name,
        invocations.div_ceil(u64::from(WORKGROUP)),
        gpu.limits().max_compute_workgroups_per_dimension,
    )?;
    let bind_group = gpu.scoped("binding a roofline kernel", || {
        let uniform = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("roofline params"),
            size: spec.params_size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue().write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
        gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(spec.name),
            layout: &pipeline.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: buffers.0.buffer().as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: buffers.1.buffer().as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: uniform.as_entire_binding() },
            ],
        })
    })?;
    timer.time(gpu, |encoder, timestamp_writes| {
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(spec.name), timestamp_writes });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        for _ in 0..dispatches {
            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        }
    })
}

/// Doubles `work` from `start` until one timed run lasts `min_ms`; returns (work, ms) of the
/// best of three runs at that size.
fn until_long_enough(start: u32, min_ms: f64, mut timed: impl FnMut(u32) -> Result<f64>) -> Result<(u32, f64)> {
    let mut work = start;
    loop {
        let ms = timed(work)?;
        if ms >= min_ms || work >= 1 << 20 {
            let best = [ms, timed(work)?, timed(work)?].into_iter().fold(f64::INFINITY, f64::min);
            return Ok((work, best));
        }
        work *= 2;
    }
}

/// Measures `gpu`'s ceilings. Each microbenchmark grows until a run takes `min_ms`.
pub fn measure(gpu: &Gpu, timer: &Timer, min_ms: f64) -> Result<Ceilings> {
    // FMA: enough invocations to fill a large GPU, growing the loop.
    let invocations: u64 = 1 << 20;
    let (unused, sink) = (Tensor::zeros(gpu, &[4], DType::F32)?, Tensor::zeros(gpu, &[4 * 1024], DType::F32)?);
    let (iterations, ms) = until_long_enough(16, min_ms, |iterations| {
        let params = Params { iterations, len: 1024, _pad0: 0, _pad1: 0 };
        run(gpu, timer, &FMA_SPEC, params, invocations, 1, (&unused, &sink))
    })?;
    let gflops = invocations as f64 * f64::from(iterations) * 64.0 / (ms * 1e6);

    // Copy: a buffer well past the caches (or the binding limit), copied repeatedly.
    let max = gpu.limits().max_storage_buffer_binding_size.min(256 << 20);
    let vec4s = (max / 16).min(u64::from(u32::MAX)) as usize;
    let (src, dst) = (Tensor::zeros(gpu, &[vec4s * 4], DType::F32)?, Tensor::zeros(gpu, &[vec4s * 4], DType::F32)?);
    let (repeats, ms) = until_long_enough(1, min_ms, |repeats| {
        let params = Params { iterations: 0, len: vec4s as u32, _pad0: 0, _pad1: 0 };
        run(gpu, timer, &COPY_SPEC, params, vec4s as u64, repeats, (&src, &dst))
    })?;
    let gbps = 2.0 * 16.0 * vec4s as f64 * f64::from(repeats) / (ms * 1e6);
    Ok(Ceilings { gflops, gbps })
}
