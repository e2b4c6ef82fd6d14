//! A host engine that owns its wgpu device and its buffers, and runs two vlbridge connectors on
//! them: the LLaVA projector and a Perceiver Resampler read the engine's vision-feature buffer
//! and write into the engine's own buffers (`Plan::run_into`: no host copy, no readback); the
//! engine then consumes both outputs on the GPU with a compute pass of its own (per-token mean)
//! and reads back only that summary, which it checks against vlbridge's f64 reference.
//!
//! Run: `cargo run --release --example host_engine` (weights from `tests/data/`).

use std::path::Path;

use vlbridge::connectors::{LlavaProjector, PerceiverConfig, PerceiverResampler};
use vlbridge::ops::GeluForm;
use vlbridge::weights::Weights;
use vlbridge::{DType, Gpu, Tensor, wgpu};

/// The engine's own kernel: the mean of each token row (consuming vlbridge's outputs).
const ROW_MEANS: &str = r#"
@group(0) @binding(0) var<storage, read> tokens: array<f32>;
@group(0) @binding(1) var<storage, read_write> means: array<f32>;
@group(0) @binding(2) var<uniform> width: vec4<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x >= arrayLength(&means) { return; }
    var sum = 0.0;
    for (var i = 0u; i < width.x; i++) { sum += tokens[id.x * width.x + i]; }
    means[id.x] = sum / f32(width.x);
}
"#;

fn storage(device: &wgpu::Device, label: &str, floats: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (floats * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// The engine's pass over `tokens` (rows of `width`): returns the row means, read back.
fn row_means(device: &wgpu::Device, queue: &wgpu::Queue, tokens: &wgpu::Buffer, rows: usize, width: usize) -> Vec<f32> {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("engine row means"),
        source: wgpu::ShaderSource::Wgsl(ROW_MEANS.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("engine row means"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let means = storage(device, "engine means", rows);
    let uniform = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("engine width"),
        size: 16,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&uniform, 0, bytemuck::cast_slice(&[width as u32, 0, 0, 0]));
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: tokens.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: means.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: uniform.as_entire_binding() },
        ],
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("engine readback"),
        size: (rows * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(rows.div_ceil(64) as u32, 1, 1);
    }
    encoder.copy_buffer_to_buffer(&means, 0, &readback, 0, (rows * 4) as u64);
    queue.submit([encoder.finish()]);
    readback.map_async(wgpu::MapMode::Read, .., |r| r.expect("map the engine's readback"));
    device.poll(wgpu::PollType::wait_indefinitely()).expect("wait for the engine's pass");
    let data = bytemuck::pod_collect_to_vec(&readback.get_mapped_range(..).expect("mapped range"));
    readback.unmap();
    data
}

/// Runs the whole host program; returns the largest difference from the f64 reference.
pub fn run() -> vlbridge::Result<f64> {
    // The engine's device, chosen and configured by the engine.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).expect("an adapter");
    let features = adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: features,
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("a device");
    let gpu = Gpu::from_wgpu(device.clone(), queue.clone());

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let projector =
        LlavaProjector::from_weights(&gpu, &Weights::open(data.join("llava_mlp.safetensors"))?, GeluForm::Erf)?;
    let resampler_weights = Weights::open(data.join("perceiver_resampler.safetensors"))?;
    let resampler =
        PerceiverResampler::from_weights(&gpu, &resampler_weights, PerceiverConfig { heads: 4, ..Default::default() })?;

    // The engine's vision features: 4 images of 17 tokens of 64, in its own buffer.
    let (items, tokens, dim) = (4, 17, 64);
    let features = resampler_weights.f32("x", None)?;
    let vision = storage(&device, "engine vision features", features.len());
    queue.write_buffer(&vision, 0, bytemuck::cast_slice(&features));
    let vision = Tensor::from_buffer(&gpu, vision, &[items, tokens, dim], DType::F32)?;

    // vlbridge writes straight into the engine's buffers.
    let projector_plan = projector.plan(&gpu, items, tokens)?;
    let [.., width] = projector.dims();
    let projected = Tensor::from_buffer(
        &gpu,
        storage(&device, "engine projected", items * tokens * width),
        projector_plan.output_shape(),
        DType::F32,
    )?;
    projector_plan.plan().run_into(&[&vision], &[&projected])?;
    let resampler_plan = resampler.plan(&gpu, items, tokens)?;
    let [latents, ..] = resampler.dims();
    let resampled = Tensor::from_buffer(
        &gpu,
        storage(&device, "engine latents", items * latents * dim),
        resampler_plan.output_shape(),
        DType::F32,
    )?;
    resampler_plan.plan().run_into(&[&vision], &[&resampled])?;

    // The engine consumes both on the GPU; only the per-token means come back.
    let got = [
        row_means(&device, &queue, projected.buffer(), items * tokens, width),
        row_means(&device, &queue, resampled.buffer(), items * latents, dim),
    ];
    let mut worst = 0.0f64;
    for (plan, got, width) in [(&projector_plan, &got[0], width), (&resampler_plan, &got[1], dim)] {
        let reference = plan.project_reference(&features)?;
        for (row, mean) in reference.chunks(width).map(|r| r.iter().sum::<f64>() / width as f64).enumerate() {
            worst = worst.max((mean - f64::from(got[row])).abs());
        }
    }
    Ok(worst)
}

#[allow(dead_code)]
fn main() -> vlbridge::Result<()> {
    let worst = run()?;
    println!(
        "projector and resampler ran in the engine's buffers; per-token means within {worst:.2e} of the f64 reference"
    );
    assert!(worst < 1e-4, "host-engine outputs differ from the reference by {worst}");
    Ok(())
}
