// GEMM weights stored as f16, read four at a time and widened (gemm.wgsl); needs SHADER_F16.
enable f16;

@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;

fn weight4(i: u32) -> vec4<f32> {
    return vec4<f32>(w[i]);
}
