//! WGSL sources. Each kernel family is one file in `shaders/`; the small shared functions in
//! `shaders/common/` are prepended by plain concatenation, so every file stays valid WGSL
//! that naga parses as-is (the kernels validate once their prelude is in front).

/// GELU in both forms and an overflow-safe tanh.
pub const ACTIVATIONS: &str = include_str!("../shaders/common/activations.wgsl");
/// The GEMM epilogue (bias, activation, residual, tanh gate) and its bindings.
pub const GEMM_EPILOGUE: &str = include_str!("../shaders/common/gemm_epilogue.wgsl");
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
/// ToMe best match sharing B rows across a subgroup.
pub const TOME_SUBGROUP: &str = include_str!("../shaders/tome_subgroup.wgsl");
/// LLaVA-NeXT AnyRes packing gather.
pub const ANYRES: &str = include_str!("../shaders/anyres.wgsl");
/// Standalone elementwise GELU (the unfused baseline).
pub const GELU: &str = include_str!("../shaders/gelu.wgsl");
/// Peak FMA and copy-bandwidth microbenchmarks.
pub const ROOFLINE: &str = include_str!("../shaders/roofline.wgsl");
/// A long counted loop that detects drivers which truncate loops.
pub const LOOP_PROBE: &str = include_str!("../shaders/loop_probe.wgsl");

/// Every file under `shaders/common/`, with its path, for the no-GPU shader tests; each may use
/// the ones before it.
pub const COMMON: &[(&str, &str)] = &[
    ("common/activations.wgsl", ACTIVATIONS),
    ("common/gemm_epilogue.wgsl", GEMM_EPILOGUE),
    ("common/attention_layout.wgsl", ATTENTION_LAYOUT),
];

/// The full source a pipeline is built from: prelude files, then the kernel file.
pub fn assemble(prelude: &[&str], kernel: &str) -> String {
    let mut source = String::with_capacity(prelude.iter().map(|p| p.len()).sum::<usize>() + kernel.len());
    for part in prelude {
        source.push_str(part);
        source.push('\n');
    }
    source.push_str(kernel);
    source
}
