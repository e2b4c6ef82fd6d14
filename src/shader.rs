//! WGSL sources. Each kernel family is one file in `shaders/`; the small shared functions in
//! `shaders/common/` are prepended by plain concatenation, so every file stays valid WGSL
//! that naga parses as-is (the kernels validate once their prelude is in front).

/// The activation storage type `Act` as f32 or f16: every kernel is assembled with one of
/// them in front (see [`for_storage`]).
pub const STORAGE_F32: &str = include_str!("../shaders/common/storage_f32.wgsl");
/// (see [`STORAGE_F32`])
pub const STORAGE_F16: &str = include_str!("../shaders/common/storage_f16.wgsl");
/// GELU in both forms and an overflow-safe tanh.
pub const ACTIVATIONS: &str = include_str!("../shaders/common/activations.wgsl");
/// The GEMM epilogue (bias, activation, residual, tanh gate) and its bindings.
pub const GEMM_EPILOGUE: &str = include_str!("../shaders/common/gemm_epilogue.wgsl");
/// GEMM weight readers, one per storage type: four at a time (`gemm.wgsl`) ...
pub const WEIGHTS_VEC4_F32: &str = include_str!("../shaders/common/weights_vec4_f32.wgsl");
/// (f16 weights, four at a time)
pub const WEIGHTS_VEC4_F16: &str = include_str!("../shaders/common/weights_vec4_f16.wgsl");
/// (bf16 weights, four at a time)
pub const WEIGHTS_VEC4_BF16: &str = include_str!("../shaders/common/weights_vec4_bf16.wgsl");
/// ... and one at a time (`gemm_portable.wgsl`).
pub const WEIGHTS_SCALAR_F32: &str = include_str!("../shaders/common/weights_scalar_f32.wgsl");
/// (f16 weights, one at a time)
pub const WEIGHTS_SCALAR_F16: &str = include_str!("../shaders/common/weights_scalar_f16.wgsl");
/// (bf16 weights, one at a time)
pub const WEIGHTS_SCALAR_BF16: &str = include_str!("../shaders/common/weights_scalar_bf16.wgsl");
/// Tiled, register-blocked `x·Wᵀ + b` with a fused epilogue.
pub const GEMM: &str = include_str!("../shaders/gemm.wgsl");
/// The same for any `k` and any device.
pub const GEMM_PORTABLE: &str = include_str!("../shaders/gemm_portable.wgsl");
/// Params, bindings and row helpers of the attention kernels.
pub const ATTENTION_LAYOUT: &str = include_str!("../shaders/common/attention_layout.wgsl");
/// Flash attention and the naive three-pass baseline.
pub const ATTENTION: &str = include_str!("../shaders/attention.wgsl");
/// Flash attention sharing keys across a subgroup.
pub const ATTENTION_SUBGROUP: &str = include_str!("../shaders/attention_subgroup.wgsl");
/// LayerNorm over the last dimension.
pub const LAYER_NORM: &str = include_str!("../shaders/layer_norm.wgsl");
/// Broadcast along a new leading dimension.
pub const REPEAT: &str = include_str!("../shaders/repeat.wgsl");
/// 2×2 average pooling and bilinear halving of token grids.
pub const DOWNSAMPLE: &str = include_str!("../shaders/downsample.wgsl");
/// Params, bindings and helpers of the ToMe passes.
pub const TOME_LAYOUT: &str = include_str!("../shaders/common/tome_layout.wgsl");
/// ToMe token merging: matching, rank sort, merge, mapping.
pub const TOME: &str = include_str!("../shaders/tome.wgsl");
/// ToMe's size-weighted merge.
pub const TOME_MERGE: &str = include_str!("../shaders/tome_merge.wgsl");
/// ToMe best match sharing B rows across a subgroup.
pub const TOME_SUBGROUP: &str = include_str!("../shaders/tome_subgroup.wgsl");
/// LLaVA-NeXT AnyRes packing gather.
pub const ANYRES: &str = include_str!("../shaders/anyres.wgsl");
/// Standalone elementwise GELU (the unfused baseline).
pub const GELU: &str = include_str!("../shaders/gelu.wgsl");
/// f32 → activation storage conversion.
pub const CONVERT: &str = include_str!("../shaders/convert.wgsl");
/// Peak FMA and copy-bandwidth microbenchmarks.
pub const ROOFLINE: &str = include_str!("../shaders/roofline.wgsl");
/// A long counted loop that detects drivers which truncate loops.
pub const LOOP_PROBE: &str = include_str!("../shaders/loop_probe.wgsl");

/// Every file under `shaders/common/`, with its path and the common files it needs in front,
/// for the no-GPU shader tests.
pub const COMMON: &[(&str, &str, &[&str])] = &[
    ("common/storage_f32.wgsl", STORAGE_F32, &[]),
    ("common/storage_f16.wgsl", STORAGE_F16, &[]),
    ("common/activations.wgsl", ACTIVATIONS, &[]),
    ("common/gemm_epilogue.wgsl", GEMM_EPILOGUE, &[STORAGE_F32, ACTIVATIONS]),
    ("common/attention_layout.wgsl", ATTENTION_LAYOUT, &[STORAGE_F32]),
    ("common/tome_layout.wgsl", TOME_LAYOUT, &[]),
    ("common/weights_vec4_f32.wgsl", WEIGHTS_VEC4_F32, &[]),
    ("common/weights_vec4_f16.wgsl", WEIGHTS_VEC4_F16, &[]),
    ("common/weights_vec4_bf16.wgsl", WEIGHTS_VEC4_BF16, &[]),
    ("common/weights_scalar_f32.wgsl", WEIGHTS_SCALAR_F32, &[]),
    ("common/weights_scalar_f16.wgsl", WEIGHTS_SCALAR_F16, &[]),
    ("common/weights_scalar_bf16.wgsl", WEIGHTS_SCALAR_BF16, &[]),
];

/// The prelude defining `Act` for activations stored as `storage` (f32 or f16; bf16 is a
/// weight format only).
pub fn for_storage(storage: crate::DType) -> &'static str {
    match storage {
        crate::DType::F16 => STORAGE_F16,
        crate::DType::F32 | crate::DType::BF16 => STORAGE_F32,
    }
}

/// The full source a pipeline is built from: prelude files, then the kernel file.
/// `enable` directives (`enable f16;`) are hoisted to the top, where WGSL requires them.
pub fn assemble(prelude: &[&str], kernel: &str) -> String {
    let parts = || prelude.iter().copied().chain([kernel]);
    let is_directive = |line: &str| line.trim_start().starts_with("enable ");
    let mut source = String::with_capacity(parts().map(str::len).sum::<usize>() + prelude.len());
    for part in parts() {
        for line in part.lines().filter(|l| is_directive(l)) {
            if !source.contains(line.trim()) {
                source.push_str(line.trim());
                source.push('\n');
            }
        }
    }
    for part in parts() {
        for line in part.lines().filter(|l| !is_directive(l)) {
            source.push_str(line);
            source.push('\n');
        }
    }
    source
}
