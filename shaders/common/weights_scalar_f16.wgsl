// GEMM weights stored as f16, read one at a time and widened (gemm_portable.wgsl); needs
// SHADER_F16.
enable f16;

@group(0) @binding(1) var<storage, read> w: array<f16>;

fn weight(i: u32) -> f32 {
    return f32(w[i]);
}
