//! What a compute pipeline is built from: a core-level description (WGSL source, entry point,
//! binding list, override constants) and the built pipeline with the bind-group layout derived
//! from the binding list. Knows no kernel (`kernels::KernelSpec` produces the description) and
//! no device ([`crate::Gpu::pipeline`] builds and caches).

use crate::dtype::DType;

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

/// Everything a compute pipeline is built from. Its [`PipelineDesc::key`] names it in the
/// device's cache, so the WGSL source is assembled only when the pipeline is built.
pub struct PipelineDesc<'a> {
    /// Names the pipeline in errors and debuggers; unique per shader entry point of the crate.
    pub label: &'static str,
    /// The entry point.
    pub entry: &'a str,
    /// The storage type of the activations the source is assembled for.
    pub storage: DType,
    /// Assembles the full WGSL source.
    pub source: &'a dyn Fn() -> String,
    /// Access of bindings 0, 1, .. in group 0.
    pub bindings: &'a [Access],
    /// Byte size of the uniform binding's struct.
    pub uniform_size: u64,
    /// Device features the shader needs.
    pub features: wgpu::Features,
    /// Override constants.
    pub overrides: &'a [(&'static str, f64)],
}

impl std::fmt::Debug for PipelineDesc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineDesc").field("label", &self.label).field("entry", &self.entry).finish()
    }
}

impl PipelineDesc<'_> {
    /// What the pipeline is keyed by: (kernel, entry, storage type, override constants).
    pub fn key(&self) -> PipelineKey {
        PipelineKey {
            label: self.label,
            entry: self.entry.to_string(),
            storage: self.storage,
            overrides: self.overrides.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        }
    }
}

/// Cache key of a pipeline (override values as bit patterns, so the key is `Eq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    label: &'static str,
    entry: String,
    storage: DType,
    overrides: Vec<(&'static str, u64)>,
}

/// A compute pipeline and the layout of its single bind group.
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}
