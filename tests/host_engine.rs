//! The host-engine example runs in the suite: a device the engine owns, its own buffers in and
//! out, outputs consumed by its own GPU pass.

#[path = "../examples/host_engine.rs"]
mod host_engine;

#[test]
#[ntest::timeout(300_000)]
fn host_engine_example_matches_the_reference() {
    let worst = host_engine::run().unwrap();
    assert!(worst < 1e-4, "per-token means differ from the f64 reference by {worst}");
}

/// A host device requested with WebGPU's default limits binds 8 storage buffers per stage; the
/// GEMM binds 10. Planning one is a typed limit error naming the kernel, not a device error.
#[test]
#[ntest::timeout(120_000)]
fn a_host_device_with_too_few_storage_buffers_is_a_typed_limit() {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).expect("an adapter");
    let limits = wgpu::Limits { max_storage_buffers_per_shader_stage: 8, ..adapter.limits() };
    let request = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&request)).expect("a device");
    let gpu = vlbridge::Gpu::from_wgpu(device, queue);
    let mut g = vlbridge::Graph::new();
    let x = g.input("x", &[3, 4]).unwrap();
    let w = g.constant("w", &vlbridge::Tensor::from_f32(&gpu, &[5, 4], &[0.5; 20]).unwrap());
    let y = g.add(vlbridge::ops::Epilogue::NONE, &[x, w]).unwrap();
    g.output(y).unwrap();
    let Err(e) = vlbridge::Plan::new(&gpu, &g) else { panic!("a GEMM planned on 8 storage buffers") };
    assert!(matches!(e, vlbridge::Error::Limit { .. }), "{e}");
    assert!(e.to_string().contains("storage buffers per shader stage of 10 exceeds the device maximum 8"), "{e}");
}
