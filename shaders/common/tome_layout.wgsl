// Params, bindings and helpers of the ToMe passes (tome.wgsl, tome_index.wgsl,
// tome_merge.wgsl, tome_subgroup.wgsl).

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

// Bindings 0 and 3 are declared by each file in the type its passes read and write (features
// as Act, f32 values, u32 indices). Binding 1 holds f32 values (unit rows, scores, sizes),
// binding 2 u32 indices (best matches, output rows).
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

const WORKGROUP: u32 = 64u;
const LOWEST: f32 = -0x1.fffffep+127f;

// Row `slot` of batch item b in the unit rows (A tokens in slots 0..na, B tokens after).
fn unit_row(b: u32, slot: u32) -> u32 {
    return (b * params.tokens + slot) * params.channels;
}
