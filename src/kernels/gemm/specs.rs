//! The linear kernel's shader entry points: one [`KernelSpec`] per variant and weight dtype.

use super::{Params, WORKGROUP};
use crate::kernels::{KernelSpec, wgsl};
use crate::pipeline::Access;

const SOURCE: &str = include_str!("../../../shaders/gemm.wgsl");
const PORTABLE_SOURCE: &str = include_str!("../../../shaders/gemm_portable.wgsl");
const TILED_SOURCE: &str = include_str!("../../../shaders/gemm_tiled.wgsl");
const COOP_SOURCE: &str = include_str!("../../../shaders/gemm_coop.wgsl");

/// x, weight, bias, residual, gate, y, params, row scale, input norm weight and bias, rotary
/// table.
const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::Uniform,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
];

const SUBGROUP: wgpu::Features = wgpu::Features::SUBGROUP;
const F16: wgpu::Features = wgpu::Features::SHADER_F16;
const PARAMS: usize = std::mem::size_of::<Params>();

/// The weight reader for the storage type, then what every GEMM needs (and the scalar x
/// reader for the scalar-load kernels).
macro_rules! prelude {
    ($weights:ident) => {
        &[wgsl::$weights, wgsl::GEMM_EPILOGUE]
    };
    ($weights:ident, scalar) => {
        &[wgsl::$weights, wgsl::GEMM_INPUT_SCALAR]
    };
}

const fn subgroup(name: &'static str, prelude: &'static [&'static str], features: wgpu::Features) -> KernelSpec {
    KernelSpec {
        variant: "subgroup",
        prelude,
        features: SUBGROUP.union(features),
        min_subgroup: 8,
        ..KernelSpec::new(name, "gemm.wgsl", SOURCE, "gemm", BINDINGS, WORKGROUP, PARAMS)
    }
}

const fn portable(name: &'static str, prelude: &'static [&'static str], features: wgpu::Features) -> KernelSpec {
    KernelSpec {
        variant: "portable",
        prelude,
        features,
        ..KernelSpec::new(name, "gemm_portable.wgsl", PORTABLE_SOURCE, "gemm_portable", BINDINGS, WORKGROUP, PARAMS)
    }
}

const fn tiled(
    name: &'static str,
    variant: &'static str,
    entry: &'static str,
    prelude: &'static [&'static str],
    features: wgpu::Features,
) -> KernelSpec {
    KernelSpec {
        variant,
        prelude,
        features,
        ..KernelSpec::new(name, "gemm_tiled.wgsl", TILED_SOURCE, entry, BINDINGS, WORKGROUP, PARAMS)
    }
}

/// The workgroup-memory tiled GEMM, 64 × 64 tiles, for each weight dtype.
pub static TILED_F32: KernelSpec =
    tiled("gemm_tiled", "tiled", "gemm_tiled", prelude!(WEIGHTS_SCALAR_F32, scalar), wgpu::Features::empty());
/// The same over f16 weights.
pub static TILED_F16: KernelSpec =
    tiled("gemm_tiled_f16w", "tiled", "gemm_tiled", prelude!(WEIGHTS_SCALAR_F16, scalar), F16);
/// The same over bf16 weights.
pub static TILED_BF16: KernelSpec =
    tiled("gemm_tiled_bf16w", "tiled", "gemm_tiled", prelude!(WEIGHTS_SCALAR_BF16, scalar), wgpu::Features::empty());
/// 32 × 32 tiles (smaller problems, less workgroup memory).
pub static TILED32_F32: KernelSpec =
    tiled("gemm_tiled32", "tiled32", "gemm_tiled", prelude!(WEIGHTS_SCALAR_F32, scalar), wgpu::Features::empty());
/// The same over f16 weights.
pub static TILED32_F16: KernelSpec =
    tiled("gemm_tiled32_f16w", "tiled32", "gemm_tiled", prelude!(WEIGHTS_SCALAR_F16, scalar), F16);
/// The same over bf16 weights.
pub static TILED32_BF16: KernelSpec = tiled(
    "gemm_tiled32_bf16w",
    "tiled32",
    "gemm_tiled",
    prelude!(WEIGHTS_SCALAR_BF16, scalar),
    wgpu::Features::empty(),
);
/// Split-K over four slices of each workgroup, for thin problems.
pub static SPLITK_F32: KernelSpec =
    tiled("gemm_splitk", "splitk", "gemm_splitk", prelude!(WEIGHTS_SCALAR_F32, scalar), wgpu::Features::empty());
/// The same over f16 weights.
pub static SPLITK_F16: KernelSpec =
    tiled("gemm_splitk_f16w", "splitk", "gemm_splitk", prelude!(WEIGHTS_SCALAR_F16, scalar), F16);
/// The same over bf16 weights.
pub static SPLITK_BF16: KernelSpec =
    tiled("gemm_splitk_bf16w", "splitk", "gemm_splitk", prelude!(WEIGHTS_SCALAR_BF16, scalar), wgpu::Features::empty());

/// Tensor cores through cooperative matrices (f16 operands, f32 accumulation; f16 weights;
/// subgroups of 32). Needs wgpu's experimental feature, asked for by
/// [`crate::GpuOptions::cooperative_matrix`].
pub static COOP_F16: KernelSpec = KernelSpec {
    variant: "coop",
    prelude: &[wgsl::GEMM_EPILOGUE],
    features: wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX.union(F16),
    min_subgroup: 32,
    ..KernelSpec::new("gemm_coop", "gemm_coop.wgsl", COOP_SOURCE, "gemm_coop", BINDINGS, 32, PARAMS)
};

/// Subgroup-broadcast, vec4-load GEMM with f32 weights.
pub static SUBGROUP_F32: KernelSpec = subgroup("gemm", prelude!(WEIGHTS_VEC4_F32), wgpu::Features::empty());
/// The same over f16 weights.
pub static SUBGROUP_F16: KernelSpec = subgroup("gemm_f16w", prelude!(WEIGHTS_VEC4_F16), F16);
/// The same over bf16 weights.
pub static SUBGROUP_BF16: KernelSpec = subgroup("gemm_bf16w", prelude!(WEIGHTS_VEC4_BF16), wgpu::Features::empty());
/// Scalar GEMM for any `k` on any device, f32 weights.
pub static PORTABLE_F32: KernelSpec =
    portable("gemm_portable", prelude!(WEIGHTS_SCALAR_F32, scalar), wgpu::Features::empty());
/// The portable GEMM over f16 weights.
pub static PORTABLE_F16: KernelSpec = portable("gemm_portable_f16w", prelude!(WEIGHTS_SCALAR_F16, scalar), F16);
/// The portable GEMM over bf16 weights.
pub static PORTABLE_BF16: KernelSpec =
    portable("gemm_portable_bf16w", prelude!(WEIGHTS_SCALAR_BF16, scalar), wgpu::Features::empty());
