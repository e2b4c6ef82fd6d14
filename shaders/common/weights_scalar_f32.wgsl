// GEMM weights stored as f32, read one at a time (gemm_portable.wgsl).
@group(0) @binding(1) var<storage, read> w: array<f32>;

fn weight(i: u32) -> f32 {
    return w[i];
}
