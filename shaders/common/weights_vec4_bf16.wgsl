// GEMM weights stored as bf16 (as checkpoints ship them), four per pair of u32 words: a bf16 is
// the high half of an f32, so widening is a shift (element 2j sits in the low half of word j).
@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;

fn weight4(i: u32) -> vec4<f32> {
    let p = w[i];
    return vec4(bitcast<f32>(p.x << 16u), bitcast<f32>(p.x & 0xffff0000u),
                bitcast<f32>(p.y << 16u), bitcast<f32>(p.y & 0xffff0000u));
}
