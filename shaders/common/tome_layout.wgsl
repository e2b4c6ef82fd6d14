// Params, bindings and helpers of the ToMe passes (tome.wgsl, tome_subgroup.wgsl).

struct Params {
    batch: u32,
    tokens: u32,       // n
    channels: u32,
    r: u32,            // A tokens merged away
    class_token: u32,  // 1: A token 0 is never merged and keeps its place
    na: u32,           // A tokens: ceil(n / 2)
    nb: u32,           // B tokens: floor(n / 2)
    nu: u32,           // unmerged A tokens: na - r
}

// Bindings 0 (in0) and 3 (out) are declared by each kernel file: tome.wgsl reads features
// (Act) in normalize and writes f32 (matches, ranks, indices), tome_merge.wgsl reads and writes
// features (Act).
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const WORKGROUP: u32 = 64u;
const LOWEST: f32 = -3.40282347e+38;

fn invocation(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * groups.x + wid.x) * WORKGROUP + lid;
}
