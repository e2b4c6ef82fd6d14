// GEMM weights stored as bf16, two per u32 word (element 2j in the low half), widened by a
// shift (gemm_portable.wgsl). Needs no device feature.
@group(0) @binding(1) var<storage, read> w: array<u32>;

fn weight(i: u32) -> f32 {
    let word = w[i / 2u];
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}
