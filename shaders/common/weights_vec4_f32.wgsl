// GEMM weights stored as f32, read four at a time (gemm.wgsl).
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;

fn weight4(i: u32) -> vec4<f32> {
    return w[i];
}
