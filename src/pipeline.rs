//! Compute pipelines built from a [`KernelSpec`], with explicit bind-group layouts derived from
//! the spec's binding list, cached per (kernel, override constants).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Access, KernelId, KernelSpec};
use crate::tensor::DType;

/// Cache key: the kernel, its activation storage type and the exact override values (as bit
/// patterns, so the key is `Eq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    id: KernelId,
    storage: DType,
    overrides: Vec<(&'static str, u64)>,
}

/// A compute pipeline and the layout of its single bind group.
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

impl Gpu {
    /// Returns the pipeline for `spec` with activations stored as `storage`, specialised with
    /// `overrides`, building it on first use.
    pub(crate) fn pipeline(
        &self,
        spec: &KernelSpec,
        storage: DType,
        overrides: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        let needs = spec.features_for(storage);
        if !self.features().contains(needs) {
            return Err(Error::Unsupported {
                kernel: spec.name,
                what: format!("device features {:?} (activations in {storage})", needs - self.features()),
            });
        }
        let key =
            PipelineKey { id: spec.id, storage, overrides: overrides.iter().map(|&(n, v)| (n, v.to_bits())).collect() };
        let poisoned = |_| Error::device("pipeline cache", "lock poisoned");
        if let Some(p) = self.pipelines.lock().map_err(poisoned)?.get(&key) {
            return Ok(Arc::clone(p));
        }
        let pipeline = Arc::new(self.build_pipeline(spec, storage, overrides)?);
        self.pipelines.lock().map_err(poisoned)?.insert(key, Arc::clone(&pipeline));
        Ok(pipeline)
    }

    fn build_pipeline(&self, spec: &KernelSpec, storage: DType, overrides: &[(&'static str, f64)]) -> Result<Pipeline> {
        let source = spec.source_for(storage);
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, access)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match access {
                    Access::Read => storage_binding(true),
                    Access::ReadWrite => storage_binding(false),
                    Access::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(spec.params_size),
                    },
                },
                count: None,
            })
            .collect();
        let compile_error = |e: Error| match e {
            Error::Device { source, .. } => Error::ShaderCompile { kernel: spec.name, diagnostic: source.0 },
            other => other,
        };
        self.scoped("building a pipeline", || {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(spec.name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(spec.name),
                entries: &entries,
            });
            let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(spec.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(spec.name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(spec.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: overrides,
                    // Our kernels initialise any workgroup memory they read; zero-filling it
                    // costs seconds per first dispatch on GL.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            Pipeline { pipeline, layout }
        })
        .map_err(compile_error)
    }
}

fn storage_binding(read_only: bool) -> wgpu::BindingType {
    wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Storage { read_only },
        has_dynamic_offset: false,
        min_binding_size: None,
    }
}
