//! Building compute pipelines from a [`PipelineDesc`], cached per device.

use std::sync::Arc;

use super::Gpu;
use crate::error::{Error, Result};
use crate::pipeline::{Access, Pipeline, PipelineDesc};

impl Gpu {
    /// Returns the pipeline for `desc`, building it on first use. A device without the
    /// features the shader needs is [`Error::Unsupported`], one binding fewer storage buffers
    /// than it reads and writes is [`Error::Limit`]; a shader that does not compile is
    /// [`Error::ShaderCompile`].
    pub fn pipeline(&self, desc: &PipelineDesc<'_>) -> Result<Arc<Pipeline>> {
        if !self.features().contains(desc.features) {
            return Err(Error::Unsupported {
                kernel: desc.label,
                what: format!("device features {:?}", desc.features - self.features()),
            });
        }
        // A host's device may have been requested with fewer storage buffers than a kernel
        // binds (WebGPU's default is 8; the GEMMs bind 10): said here, not as a device error.
        let storage = desc.bindings.iter().filter(|a| **a != Access::Uniform).count() as u64;
        let max = u64::from(self.device().limits().max_storage_buffers_per_shader_stage);
        if storage > max {
            return Err(Error::Limit {
                kernel: desc.label,
                limit: "storage buffers per shader stage",
                requested: storage,
                max,
            });
        }
        let key = desc.key();
        let poisoned = || Error::device("pipeline cache", "lock poisoned");
        let cache = &self.shared().pipelines;
        if let Some(p) = cache.read().map_err(|_| poisoned())?.get(&key) {
            return Ok(Arc::clone(p));
        }
        // Built under the write lock, after looking again: two threads planning the same graph
        // compile each pipeline once.
        let mut pipelines = cache.write().map_err(|_| poisoned())?;
        if let Some(p) = pipelines.get(&key) {
            return Ok(Arc::clone(p));
        }
        let pipeline = Arc::new(self.build_pipeline(desc)?);
        pipelines.insert(key, Arc::clone(&pipeline));
        self.shared().built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(pipeline)
    }

    /// Pipelines this device (and the devices [`Gpu::with_forced`] made from it) has compiled.
    pub fn pipelines_built(&self) -> usize {
        self.shared().built.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn build_pipeline(&self, desc: &PipelineDesc<'_>) -> Result<Pipeline> {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = desc
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
                        min_binding_size: wgpu::BufferSize::new(desc.uniform_size),
                    },
                },
                count: None,
            })
            .collect();
        let compile_error = |e: Error| match e {
            Error::Device { source, .. } => Error::ShaderCompile { kernel: desc.label, diagnostic: source.0 },
            other => other,
        };
        let device = self.device();
        self.scoped("building a pipeline", || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(desc.label),
                source: wgpu::ShaderSource::Wgsl((desc.source)().into()),
            });
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(desc.label),
                entries: &entries,
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(desc.label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(desc.label),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(desc.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: desc.overrides,
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
