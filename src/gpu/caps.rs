//! What kernels may assume of a device: the per-adapter facts their variant choice reads.

use crate::ops::{Geometry, KeySplit};

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
    /// Cooperative-matrix shapes the device lists (empty without the feature).
    pub cooperative_matrix: Vec<wgpu::CooperativeMatrixProperties>,
    /// Variants forced by [`super::GpuOptions::force_variants`], as (kernel, variant).
    pub forced: Vec<(String, String)>,
    /// The adapter's measured tune, as (kernel, problem class, variant) ([`crate::tune`]).
    pub tuned: Vec<(String, String, String)>,
}

impl Caps {
    /// The variant forced for `kernel`, if any.
    pub fn forced(&self, kernel: &str) -> Option<&str> {
        self.forced.iter().rev().find(|(k, _)| k == kernel).map(|(_, v)| v.as_str())
    }

    /// Whether GEMMs normalise their input as they load it (one dispatch) rather than after a
    /// norm node (two): on GPUs, where a dispatch costs more than recomputing each row's
    /// statistics per tile; not on CPU rasterisers, where the fused load measured 25-40% slower
    /// on whole connectors. `VLBRIDGE_FORCE=input_norm=fused|separate` decides instead.
    pub fn fuses_input_norms(&self) -> bool {
        match self.forced("input_norm") {
            Some("fused") => true,
            Some("separate") => false,
            _ => !self.is_cpu(),
        }
    }

    /// Whether the fused sublayers (`attention_rows`, `mlp_rows`) run as one dispatch each
    /// rather than as the attention, GEMM and norm dispatches they replace: on GPUs, where
    /// dispatches and stored intermediates cost; not on CPU rasterisers, where they measured
    /// 3-6x slower on whole connectors than what they replace (a workgroup's rows run on one
    /// core, its weight loads are gathers). `VLBRIDGE_FORCE=sublayers=fused|split` decides
    /// instead.
    pub fn fuses_sublayers(&self) -> bool {
        match self.forced("sublayers") {
            Some("fused") => true,
            Some("split") => false,
            _ => !self.is_cpu(),
        }
    }

    /// The key chunks an attention over `g` runs in across workgroups (1: one pass, no split).
    /// On GPUs [`KeySplit::chunks_for`]: a second pass where few (batch, head, query block)
    /// triples meet many keys. Never on CPU rasterisers, whose few cores the workgroups of one
    /// pass already fill. `VLBRIDGE_FORCE=key_split=off|on|N` decides instead: `on` splits in at
    /// least 2 chunks, `N` in N (both at most one key each).
    pub fn key_chunks(&self, g: &Geometry) -> u32 {
        let keys = g.keys().max(1);
        let at_most_keys = |n: u32| n.clamp(1, u32::try_from(keys).unwrap_or(u32::MAX));
        let natural = || KeySplit::chunks_for(g.batch * g.heads, g.queries, g.keys());
        match self.forced("key_split") {
            Some("off") => 1,
            Some("on") => at_most_keys(natural().max(2)),
            Some(n) if let Ok(n) = n.parse() => at_most_keys(n),
            _ if self.is_cpu() => 1,
            _ => natural(),
        }
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
