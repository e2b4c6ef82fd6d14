//! WGSL assembly. Each kernel family is one file in `shaders/`, its source constant in its
//! kernel unit; the small shared files in `shaders/common/` are prepended by plain
//! concatenation, so every file stays valid WGSL that naga parses as-is (the kernels validate
//! once their prelude is in front).

use crate::dtype::DType;

/// The activation storage type `Act` as f32 or f16: every kernel is assembled with one of
/// them in front (see [`for_storage`]).
pub const STORAGE_F32: &str = include_str!("../../shaders/common/storage_f32.wgsl");
/// (see [`STORAGE_F32`])
pub const STORAGE_F16: &str = include_str!("../../shaders/common/storage_f16.wgsl");
/// The grid contract with [`super::fold_grid`]: `workgroup_index`, `invocation` (every
/// kernel has it in front, after the storage type).
pub const GRID: &str = include_str!("../../shaders/common/grid.wgsl");
/// GELU in both forms and an overflow-safe tanh.
pub const ACTIVATIONS: &str = include_str!("../../shaders/common/activations.wgsl");
/// The GEMM epilogue (bias, activation, residual, tanh gate) and its bindings.
pub const GEMM_EPILOGUE: &str = include_str!("../../shaders/common/gemm_epilogue.wgsl");
/// x of the scalar-load GEMMs and the input norm's row statistics.
pub const GEMM_INPUT_SCALAR: &str = include_str!("../../shaders/common/gemm_input_scalar.wgsl");
/// GEMM weight readers, one per storage type: four at a time ...
pub const WEIGHTS_VEC4_F32: &str = include_str!("../../shaders/common/weights_vec4_f32.wgsl");
/// (f16 weights, four at a time)
pub const WEIGHTS_VEC4_F16: &str = include_str!("../../shaders/common/weights_vec4_f16.wgsl");
/// (bf16 weights, four at a time)
pub const WEIGHTS_VEC4_BF16: &str = include_str!("../../shaders/common/weights_vec4_bf16.wgsl");
/// ... and one at a time.
pub const WEIGHTS_SCALAR_F32: &str = include_str!("../../shaders/common/weights_scalar_f32.wgsl");
/// (f16 weights, one at a time)
pub const WEIGHTS_SCALAR_F16: &str = include_str!("../../shaders/common/weights_scalar_f16.wgsl");
/// (bf16 weights, one at a time)
pub const WEIGHTS_SCALAR_BF16: &str = include_str!("../../shaders/common/weights_scalar_bf16.wgsl");
/// Params, bindings and row helpers of the attention kernels.
pub const ATTENTION_LAYOUT: &str = include_str!("../../shaders/common/attention_layout.wgsl");
/// The online softmax over a slice of the keys and the key-split merge (needs the layout and
/// [`ZERO_TIMES`]).
pub const ATTENTION_STREAM: &str = include_str!("../../shaders/common/attention_stream.wgsl");
/// Upstream's `0 · v` for zeroed attention rows (needs a `params` uniform with a `batch`).
pub const ZERO_TIMES: &str = include_str!("../../shaders/common/zero_times.wgsl");
/// The fused sublayers' output projection, bias, residual and post-norm over whole rows.
pub const ROWS_EPILOGUE: &str = include_str!("../../shaders/common/rows_epilogue.wgsl");
/// One axis of a bilinear resample: source taps and weight, rounded as PyTorch's f32.
pub const BILINEAR_TAPS: &str = include_str!("../../shaders/common/bilinear_taps.wgsl");
/// Params, bindings and helpers of the ToMe passes.
pub const TOME_LAYOUT: &str = include_str!("../../shaders/common/tome_layout.wgsl");

/// Every file under `shaders/common/`, with its path and the common files it needs in front,
/// for the no-GPU shader tests.
pub const COMMON: &[(&str, &str, &[&str])] = &[
    ("common/storage_f32.wgsl", STORAGE_F32, &[]),
    ("common/storage_f16.wgsl", STORAGE_F16, &[]),
    ("common/grid.wgsl", GRID, &[]),
    ("common/activations.wgsl", ACTIVATIONS, &[]),
    ("common/gemm_epilogue.wgsl", GEMM_EPILOGUE, &[STORAGE_F32, ACTIVATIONS]),
    ("common/gemm_input_scalar.wgsl", GEMM_INPUT_SCALAR, &[STORAGE_F32, ACTIVATIONS, GEMM_EPILOGUE]),
    ("common/attention_layout.wgsl", ATTENTION_LAYOUT, &[STORAGE_F32]),
    ("common/zero_times.wgsl", ZERO_TIMES, &[BATCH_PARAMS]),
    ("common/attention_stream.wgsl", ATTENTION_STREAM, &[STORAGE_F32, ATTENTION_LAYOUT, ZERO_TIMES, TAKE_MERGED]),
    ("common/rows_epilogue.wgsl", ROWS_EPILOGUE, &[STORAGE_F32, ROWS_OUT]),
    ("common/tome_layout.wgsl", TOME_LAYOUT, &[]),
    ("common/bilinear_taps.wgsl", BILINEAR_TAPS, &[]),
    ("common/weights_vec4_f32.wgsl", WEIGHTS_VEC4_F32, &[]),
    ("common/weights_vec4_f16.wgsl", WEIGHTS_VEC4_F16, &[]),
    ("common/weights_vec4_bf16.wgsl", WEIGHTS_VEC4_BF16, &[]),
    ("common/weights_scalar_f32.wgsl", WEIGHTS_SCALAR_F32, &[]),
    ("common/weights_scalar_f16.wgsl", WEIGHTS_SCALAR_F16, &[]),
    ("common/weights_scalar_bf16.wgsl", WEIGHTS_SCALAR_BF16, &[]),
];

/// What zero_times.wgsl needs of its kernel (a `params.batch`), for validating it alone.
const BATCH_PARAMS: &str = "struct Params { batch: u32 }\n@group(0) @binding(0) var<uniform> params: Params;";
/// What attention_stream.wgsl needs of its kernel, for validating it alone.
const TAKE_MERGED: &str = "fn take_merged(d: u32, v: f32) {}";
/// What rows_epilogue.wgsl needs of its kernel, for validating it alone.
const ROWS_OUT: &str = "@group(0) @binding(4) var<storage, read_write> out: array<Act>;";

/// The prelude defining `Act` for activations stored as `storage` (f32 or f16; the other
/// types are not activation storage).
pub fn for_storage(storage: DType) -> &'static str {
    match storage {
        DType::F16 => STORAGE_F16,
        _ => STORAGE_F32,
    }
}

/// `files` with every common file each needs ([`COMMON`]) in front of it, each once, in an
/// order where a file follows what it builds on: a kernel names only the files it uses
/// directly. The storage type and the grid contract are every kernel's and are left out.
pub fn with_dependencies(files: &[&'static str]) -> Vec<&'static str> {
    fn visit(file: &'static str, out: &mut Vec<&'static str>) {
        // By content: a `const` may be a different copy at each use.
        let same = |a: &str, b: &str| a.len() == b.len() && a == b;
        if out.iter().any(|f| same(f, file)) || [STORAGE_F32, STORAGE_F16, GRID].iter().any(|f| same(f, file)) {
            return;
        }
        // A need that is no common file is a stand-in of the kernel's own code (validation only).
        if let Some((_, _, needs)) = COMMON.iter().find(|(_, source, _)| same(source, file)) {
            for need in needs.iter().filter(|n| COMMON.iter().any(|(_, s, _)| same(s, n))) {
                visit(need, out);
            }
        }
        out.push(file);
    }
    let mut out = Vec::new();
    for file in files {
        visit(file, &mut out);
    }
    out
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
