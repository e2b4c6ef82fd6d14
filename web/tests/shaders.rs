//! Every kernel of the registry compiled by the browser's own WGSL compiler (Tint in Chromium,
//! stricter than naga in places): each spec's module and its compute pipeline at the default
//! overrides, with activations stored as f32 and, where the adapter has shader-f16, as f16.
//! A failure names the kernel, its file and the compiler's message; specs whose features the
//! adapter lacks (subgroups, cooperative matrices) or that bind more storage buffers than it
//! allows (the fused sublayers: 11 of WebGPU's default 10, which the planner then does not
//! choose) are counted as skipped. Also: real-size costs on a 32-bit target.

use vlbridge::kernels::FAMILIES;
use vlbridge::pipeline::Access;
use vlbridge::wgpu;
use vlbridge::{DType, Gpu, GpuOptions};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn every_shader_compiles_in_the_browser() {
    let gpu = Gpu::open(&GpuOptions::default()).await.expect("the page's WebGPU adapter");
    let device = gpu.device();
    let (mut compiled, mut skipped, mut failures) = (0, Vec::new(), Vec::new());
    for spec in FAMILIES.iter().flat_map(|f| f.specs.iter()) {
        for storage in [DType::F32, DType::F16] {
            let storage_buffers = spec.bindings.iter().filter(|a| **a != Access::Uniform).count() as u32;
            let binds = storage_buffers <= gpu.caps().storage_buffers;
            if !device.features().contains(spec.features_for(storage)) || !spec.runs_on(gpu.caps()) || !binds {
                skipped.push(format!("{} ({storage})", spec.name));
                continue;
            }
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(spec.name),
                source: wgpu::ShaderSource::Wgsl(spec.source_for(storage).into()),
            });
            let _pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(spec.name),
                layout: None,
                module: &module,
                entry_point: Some(spec.entry),
                compilation_options: Default::default(),
                cache: None,
            });
            match scope.pop().await {
                Some(e) => failures.push(format!("{} ({}, {storage}): {e}", spec.name, spec.file)),
                None => compiled += 1,
            }
        }
    }
    console_log!("{compiled} compiled, {} skipped on this adapter: {}", skipped.len(), skipped.join(", "));
    assert!(failures.is_empty(), "{} failed to compile:\n{}", failures.len(), failures.join("\n\n"));
}

/// Costs at real size on a 32-bit target: the LLaVA projector's second GEMM is 576·4096·4096
/// multiply-adds, past 2^32, which a usize product wraps (release) or panics on (debug, as
/// this test is built) on wasm32.
#[wasm_bindgen_test]
fn real_size_costs_do_not_overflow_on_wasm32() {
    use vlbridge::kernels::Op;
    use vlbridge::ops::{Epilogue, GeluForm, Meta};
    let meta = |shape: &[usize]| Meta { shape: shape.to_vec(), dtype: DType::F32 };
    let (x, w, bias) = (meta(&[576, 4096]), meta(&[4096, 4096]), meta(&[4096]));
    let cost = Op::Linear(Epilogue::bias_gelu(GeluForm::Erf)).cost(&[&x, &w, &bias]);
    assert_eq!(cost.flops, 2.0 * 576.0 * 4096.0 * 4096.0);
    assert!(cost.bytes >= 4.0 * 4096.0 * 4096.0, "{} bytes", cost.bytes);
}
