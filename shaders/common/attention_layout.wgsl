// Layout and masking shared by the attention kernels (attention.wgsl, attention_subgroup.wgsl):
// the Params, the bindings and where query, key/value and output rows live. See
// attention.wgsl for the semantics.

struct Params {
    batch: u32,
    queries: u32,
    keys_a: u32,       // rows of kv_a per batch item
    keys_b: u32,       // rows of kv_b per batch item (0: one source)
    heads: u32,
    q_stride: u32,     // floats per query row
    q_offset: u32,     // column of head 0's query
    kv_stride_a: u32,  // floats per kv_a row
    kv_stride_b: u32,  // floats per kv_b row
    k_offset: u32,     // column of head 0's key in a kv row
    v_offset: u32,     // column of head 0's value in a kv row
    scale: f32,        // applied to q before the dot product, as open_flamingo does
}

override HEAD_DIM: u32 = 64u;   // at most MAX_HEAD_DIM
override MASK: u32 = 0u;        // 1: `mask` holds a keep byte (non-zero) per (query, key)
override MASKED_ROWS: u32 = 0u; // fully masked rows: 0 uniform average (upstream fill), 1 zero

// Binding 0 is the queries for `flash` and `scores`, the scores or weights for the others.
// Every binding but the mask holds activations (Act, f32 or f16); the mask is u8, four per
// word.
@group(0) @binding(0) var<storage, read> lhs: array<Act>;
@group(0) @binding(1) var<storage, read> kv_a: array<Act>;
@group(0) @binding(2) var<storage, read> kv_b: array<Act>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;  // [batch, queries, keys] bytes
@group(0) @binding(4) var<storage, read_write> out: array<Act>;
@group(0) @binding(5) var<uniform> params: Params;

const WORKGROUP: u32 = 64u;
const MAX_HEAD_DIM: u32 = 128u;
// -finfo(float32).max: open_flamingo's masked_fill value.
const FILL: f32 = -3.40282347e+38;

fn invocation(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * groups.x + wid.x) * WORKGROUP + lid;
}

fn keys() -> u32 {
    return params.keys_a + params.keys_b;
}

// Start of key j's row (batch item b) in its source; keys below keys_a live in kv_a.
fn kv_row(b: u32, j: u32) -> u32 {
    if j < params.keys_a {
        return (b * params.keys_a + j) * params.kv_stride_a;
    }
    return (b * params.keys_b + j - params.keys_a) * params.kv_stride_b;
}

fn kv_read(j: u32, i: u32) -> f32 {
    if j < params.keys_a {
        return f32(kv_a[i]);
    }
    return f32(kv_b[i]);
}

fn kept(b: u32, qi: u32, j: u32) -> bool {
    if MASK == 0u {
        return true;
    }
    let i = (b * params.queries + qi) * keys() + j;
    return ((mask[i / 4u] >> ((i % 4u) * 8u)) & 0xffu) != 0u;
}

fn q_start(b: u32, h: u32, qi: u32) -> u32 {
    return (b * params.queries + qi) * params.q_stride + params.q_offset + h * HEAD_DIM;
}

fn out_start(b: u32, h: u32, qi: u32) -> u32 {
    return (b * params.queries + qi) * params.heads * HEAD_DIM + h * HEAD_DIM;
}

// The head dimension four at a time: loops over D4 have at most 32 constant-count iterations.
override D4: u32 = (HEAD_DIM + 3u) / 4u;
const MAX_D4: u32 = MAX_HEAD_DIM / 4u;

fn in_head(d: u32) -> vec4<bool> {
    return vec4(d, d + 1u, d + 2u, d + 3u) < vec4(HEAD_DIM);
}

// Dims 4·d4 .. 4·d4+3 of key/value j starting at index `i` of its source; dims past HEAD_DIM
// read as 0 (select discards the loads, so a neighbour's inf or NaN cannot leak in).
fn kv4(j: u32, i: u32, d4: u32) -> vec4<f32> {
    let d = d4 * 4u;
    let v = vec4(kv_read(j, i + d), kv_read(j, i + d + 1u), kv_read(j, i + d + 2u), kv_read(j, i + d + 3u));
    return select(vec4(0.0), v, in_head(d));
}

// Dims 4·d4 .. 4·d4+3 of the query starting at q0, pre-multiplied by the scale.
fn query4(q0: u32, d4: u32) -> vec4<f32> {
    let d = d4 * 4u;
    let v = vec4<f32>(vec4(lhs[q0 + d], lhs[q0 + d + 1u], lhs[q0 + d + 2u], lhs[q0 + d + 3u])) * params.scale;
    return select(vec4(0.0), v, in_head(d));
}

// What upstream's `0 · v` gives for a zeroed row: 0 for finite v, NaN for ±Inf or NaN. Written
// with integer tests because WGSL lets compilers assume finite values and fold 0 · v to 0.
fn zero_times(v: f32) -> f32 {
    let non_finite = (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
    return select(0.0, bitcast<f32>(0x7fc00000u | (params.batch & 0u)), non_finite);
}
