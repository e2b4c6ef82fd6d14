//! vlbridge inside a host engine's command encoder: the engine writes the connector's input
//! into the plan's own tensor, records the plan into its encoder with `ConnectorPlan::encode`,
//! adds its own copy of the output after it, and submits once. The output is checked against
//! the f64 reference.
//!
//! Run: `cargo run --release --example encode` (the tiny LLaVA directory in `tests/data/`).

use std::path::Path;

use vlbridge::models::{self, HostTensor, Tensors};
use vlbridge::{Gpu, GpuOptions, HostData, HostVec, reference, wgpu};

/// Records the plan and a copy of its output into one encoder; returns the largest error
/// against the reference relative to its tolerance (at most 1 passes).
pub fn run() -> vlbridge::Result<f64> {
    let gpu = Gpu::with_options(&GpuOptions::from_env()?)?;
    let model = models::from_pretrained(&gpu, Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/llava"))?;
    let features: Vec<f32> = (0..2 * 16 * 32).map(|i| ((i * 7919 % 2001) as f32) / 1000.0 - 1.0).collect();
    let inputs: Tensors =
        [("image_features".to_string(), HostTensor::new(&[2, 16, 32], HostVec::F32(features.clone()))?)].into();
    let plan = model.plan(&inputs)?;

    // The input goes straight into the plan's tensor; the engine owns the readback buffer.
    let input = plan.tensor("image_features").expect("the plan's input");
    input.write(HostData::F32(&features))?;
    let output = plan.tensor("projected").expect("the plan's output");
    let device = gpu.device();
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("engine readback"),
        size: output.buffer().size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("engine frame") });
    plan.encode(&mut encoder);
    encoder.copy_buffer_to_buffer(output.buffer(), 0, &readback, 0, output.buffer().size());
    gpu.queue().submit([encoder.finish()]);
    readback.map_async(wgpu::MapMode::Read, .., |r| r.expect("map the readback"));
    gpu.wait("the engine's frame")?;
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&readback.get_mapped_range(..).expect("mapped range"));
    readback.unmap();

    let want = plan.reference(&inputs)?;
    let check = reference::compare(&got, &want["projected"].1, 1e-4, 1e-3);
    println!("projected {:?} through the engine's encoder: {check}", want["projected"].0);
    Ok(if check.passed() { check.tolerance_used } else { f64::INFINITY })
}

#[allow(dead_code)]
fn main() -> vlbridge::Result<()> {
    let worst = run()?;
    assert!(worst <= 1.0, "worst error at {worst} of its tolerance");
    Ok(())
}
