//! Compute pipelines built from a core-level description (WGSL source, entry point, binding
//! list, override constants), with explicit bind-group layouts derived from the binding list,
//! cached per device. Knows no kernel: `kernels::KernelSpec` produces the description.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// How a binding is accessed; the bind-group layout and the naga reflection test derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>` holding the kernel's `Params`.
    Uniform,
}

/// Everything a compute pipeline is built from.
#[derive(Debug, Clone)]
pub struct PipelineDesc<'a> {
    /// Names the pipeline in errors and debuggers.
    pub label: &'static str,
    /// The full WGSL source.
    pub source: String,
    /// The entry point.
    pub entry: &'a str,
    /// Access of bindings 0, 1, .. in group 0.
    pub bindings: &'a [Access],
    /// Byte size of the uniform binding's struct.
    pub uniform_size: u64,
    /// Device features the shader needs.
    pub features: wgpu::Features,
    /// Override constants.
    pub overrides: &'a [(&'static str, f64)],
}

/// Cache key: the description (override values as bit patterns, so the key is `Eq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    source: String,
    entry: String,
    bindings: Vec<Access>,
    uniform_size: u64,
    overrides: Vec<(&'static str, u64)>,
}

/// A compute pipeline and the layout of its single bind group.
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

impl Gpu {
    /// Returns the pipeline for `desc`, building it on first use. A device without the
    /// features the shader needs is [`Error::Unsupported`]; a shader that does not compile is
    /// [`Error::ShaderCompile`].
    pub fn pipeline(&self, desc: &PipelineDesc<'_>) -> Result<Arc<Pipeline>> {
        if !self.features().contains(desc.features) {
            return Err(Error::Unsupported {
                kernel: desc.label,
                what: format!("device features {:?}", desc.features - self.features()),
            });
        }
        let key = PipelineKey {
            source: desc.source.clone(),
            entry: desc.entry.to_string(),
            bindings: desc.bindings.to_vec(),
            uniform_size: desc.uniform_size,
            overrides: desc.overrides.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        };
        let poisoned = |_| Error::device("pipeline cache", "lock poisoned");
        if let Some(p) = self.pipelines().lock().map_err(poisoned)?.get(&key) {
            return Ok(Arc::clone(p));
        }
        let pipeline = Arc::new(self.build_pipeline(desc)?);
        self.pipelines().lock().map_err(poisoned)?.insert(key, Arc::clone(&pipeline));
        Ok(pipeline)
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
                source: wgpu::ShaderSource::Wgsl(desc.source.as_str().into()),
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
