//! What kernels may assume of a device: the per-adapter facts their variant choice reads, and
//! the choices forced or tuned for it. Facts only: the policies that read them live in the
//! kernel units.

/// What kernels may assume of a device when a variant is chosen for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Caps {
    /// `SUBGROUP` is enabled.
    pub subgroups: bool,
    /// Smallest subgroup the device may use (0 when unknown).
    pub subgroup_min_size: u32,
    /// Largest subgroup the device may use (0 when unknown).
    pub subgroup_max_size: u32,
    /// `SHADER_F16` is enabled.
    pub shader_f16: bool,
    /// Every feature enabled on the device.
    pub features: wgpu::Features,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: wgpu::DeviceType,
    /// Bytes of workgroup memory a workgroup may use.
    pub workgroup_storage: u32,
    /// Invocations a workgroup may have.
    pub workgroup_invocations: u32,
    /// Storage buffers a compute shader may bind (WebGPU's default limit is 10; native
    /// drivers allow more).
    pub storage_buffers: u32,
    /// Cooperative-matrix shapes the device lists (empty without the feature).
    pub cooperative_matrix: Vec<wgpu::CooperativeMatrixProperties>,
    /// Variants forced by [`super::GpuOptions::force_variants`], as (kernel, variant).
    pub forced: Vec<(String, String)>,
    /// The adapter's measured tune, as (kernel, problem class, variant) ([`crate::tune_table`]).
    pub tuned: Vec<(String, String, String)>,
}

impl Caps {
    /// No particular device (a CPU-less, feature-less one) with `forced` choices: for rewriting
    /// a graph before any device plans it.
    pub fn offline(forced: &[(&str, &str)]) -> Self {
        Self {
            subgroups: false,
            subgroup_min_size: 0,
            subgroup_max_size: 0,
            shader_f16: false,
            features: wgpu::Features::empty(),
            device_type: wgpu::DeviceType::Other,
            workgroup_storage: 0,
            workgroup_invocations: 0,
            storage_buffers: 0,
            cooperative_matrix: Vec::new(),
            forced: forced.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect(),
            tuned: Vec::new(),
        }
    }

    /// The variant forced for `kernel`, if any.
    pub fn forced(&self, kernel: &str) -> Option<&str> {
        self.forced.iter().rev().find(|(k, _)| k == kernel).map(|(_, v)| v.as_str())
    }

    /// The tuned variant of `kernel` for problems of `class`, if the tune has one.
    pub fn tuned(&self, kernel: &str, class: &str) -> Option<&str> {
        self.tuned.iter().find(|(k, c, _)| k == kernel && c == class).map(|(_, _, v)| v.as_str())
    }

    /// Subgroups are enabled and at least `lanes` wide.
    pub fn subgroups_of(&self, lanes: u32) -> bool {
        self.subgroups && self.subgroup_min_size >= lanes
    }

    /// The device lists a 16 × 16 × 16 cooperative-matrix shape with f16 operands and f32
    /// accumulation, and runs subgroups of exactly 32 lanes (`gemm_coop.wgsl` is one subgroup
    /// per workgroup).
    pub fn coop_f16_16x16(&self) -> bool {
        let f16_f32 = |p: &wgpu::CooperativeMatrixProperties| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        };
        self.cooperative_matrix.iter().any(f16_f32) && self.subgroup_min_size == 32 && self.subgroup_max_size == 32
    }

    /// A CPU rasteriser (lavapipe, WARP): register-blocked kernels without workgroup memory
    /// win there; GPUs want workgroup-memory tiles.
    pub fn is_cpu(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }
}
