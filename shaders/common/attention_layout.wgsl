// Layout and masking shared by the attention kernels (attention.wgsl, attention_subgroup.wgsl,
// attention_rows.wgsl): the Params, the bindings and where query, key/value and output rows
// live. See attention.wgsl for the semantics.

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
    kv_heads: u32,     // key/value heads; query head h reads kv head h / (heads / kv_heads)
    norm_eps: f32,     // QK_NORM's RMSNorm eps
    k_offset_b: u32,   // k_offset and v_offset in kv_b's rows
    v_offset_b: u32,
    out_width: u32,    // attention_rows: the output projection's width
    post_eps: f32,     // attention_rows: the post-LayerNorm's eps
    head_dim: u32,     // attention_rows: HEAD_DIM as a run-time value (see there)
    chunks: u32,       // attention_partials: key chunks, one workgroup each
    chunk_keys: u32,   // attention_partials: keys per chunk (the last may hold fewer)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override HEAD_DIM: u32 = 64u;   // at most MAX_HEAD_DIM
override MASK: u32 = 0u;        // 1: `mask` holds a keep byte (non-zero) per (query, key);
                                // 2: an f32 added to the logit (bitcast from the u32 words);
                                // 3: a keep byte per key (padding), the same for every query
                                // 4: segment bounds, u32 [start, end) of each query's keys
                                // 5: a real byte per token (self-attention): only pad-pad
                                //    pairs are masked
override MASKED_ROWS: u32 = 0u; // fully masked rows: 0 uniform average (upstream fill), 1 zero
override QK_NORM: u32 = 0u;     // 1: RMS-normalise each head of q and k (weights in `norms`)

// Binding 0 is the queries for `flash` and `scores`, the scores or weights for the others.
// Bindings 0-2 hold activations (Act, f32 or f16); a keep mask is u8, four per word, an
// additive one f32; the norm weights are f32 [2, HEAD_DIM] (q's, then k's). Binding 4, `out`,
// is the kernel file's: Act, or f32 for the key-chunk partials.
@group(0) @binding(0) var<storage, read> lhs: array<Act>;
@group(0) @binding(1) var<storage, read> kv_a: array<Act>;
@group(0) @binding(2) var<storage, read> kv_b: array<Act>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;  // [batch, queries, keys or 2]
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<storage, read> norms: array<f32>;

const WORKGROUP: u32 = 64u;
const MAX_HEAD_DIM: u32 = 128u;
// -finfo(float32).max: open_flamingo's masked_fill value.
const FILL: f32 = -0x1.fffffep+127f;

fn keys() -> u32 {
    return params.keys_a + params.keys_b;
}

// The key/value head query head h reads (grouped-query attention).
fn kv_head(h: u32) -> u32 {
    return h / (params.heads / params.kv_heads);
}

// Start of key j's row (batch item b) in its source; keys below keys_a live in kv_a.
fn kv_row(b: u32, j: u32) -> u32 {
    if j < params.keys_a {
        return (b * params.keys_a + j) * params.kv_stride_a;
    }
    return (b * params.keys_b + j - params.keys_a) * params.kv_stride_b;
}

// Columns of head 0's key and value in key j's row (kv_b may lay its rows out differently).
fn k_col(j: u32) -> u32 {
    return select(params.k_offset_b, params.k_offset, j < params.keys_a);
}

fn v_col(j: u32) -> u32 {
    return select(params.v_offset_b, params.v_offset, j < params.keys_a);
}

fn kv_read(j: u32, i: u32) -> f32 {
    if j < params.keys_a {
        return f32(kv_a[i]);
    }
    return f32(kv_b[i]);
}

// The keys query qi (batch item b) may attend: [start, end) of its segment with MASK = 4
// (clamped to the keys), else all of them.
fn key_range(b: u32, qi: u32) -> vec2<u32> {
    if MASK != 4u {
        return vec2(0u, keys());
    }
    let i = 2u * (b * params.queries + qi);
    let end = min(mask[i + 1u], keys());
    return vec2(min(mask[i], end), end);
}

// Byte i of the u8 mask, non-zero or not.
fn real_token(i: u32) -> bool {
    return ((mask[i / 4u] >> ((i % 4u) * 8u)) & 0xffu) != 0u;
}

fn kept(b: u32, qi: u32, j: u32) -> bool {
    if MASK == 4u {
        let range = key_range(b, qi);
        return j >= range.x && j < range.y;
    }
    if MASK == 5u {
        return real_token(b * keys() + qi) || real_token(b * keys() + j);
    }
    if MASK != 1u && MASK != 3u {
        return true;
    }
    let i = select((b * params.queries + qi) * keys() + j, b * keys() + j, MASK == 3u);
    return ((mask[i / 4u] >> ((i % 4u) * 8u)) & 0xffu) != 0u;
}

// What the additive mask adds to logit (qi, j); 0 without one.
fn mask_add(b: u32, qi: u32, j: u32) -> f32 {
    if MASK != 2u {
        return 0.0;
    }
    return bitcast<f32>(mask[(b * params.queries + qi) * keys() + j]);
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

// The query of one invocation, four dims per vec4 (see D4).
var<private> q4: array<vec4<f32>, MAX_D4>;

// Dims 4·d4 .. 4·d4+3 of norm weight row `which` (0: q, 1: k); 0 past HEAD_DIM.
fn norm4(which: u32, d4: u32) -> vec4<f32> {
    let d = d4 * 4u;
    let i = min(vec4(d, d + 1u, d + 2u, d + 3u), vec4(HEAD_DIM - 1u)) + which * HEAD_DIM;
    return select(vec4(0.0), vec4(norms[i.x], norms[i.y], norms[i.z], norms[i.w]), in_head(d));
}

// Loads the query starting at q0 into q4, times the scale. With QK_NORM it is RMS-normalised
// and multiplied by both norm weights: q_norm's, and k_norm's, so that a key only needs its
// own 1 / rms (key_scale) instead of a normalised copy.
fn load_query(q0: u32) {
    var squares = 0.0;
    for (var d4 = 0u; d4 < D4; d4++) {
        let d = d4 * 4u;
        let v = vec4<f32>(vec4(lhs[q0 + d], lhs[q0 + d + 1u], lhs[q0 + d + 2u], lhs[q0 + d + 3u]));
        q4[d4] = select(vec4(0.0), v, in_head(d));
        squares += dot(q4[d4], q4[d4]);
    }
    let inv_rms = inverseSqrt(squares / f32(HEAD_DIM) + params.norm_eps);
    for (var d4 = 0u; d4 < D4; d4++) {
        if QK_NORM != 0u {
            q4[d4] *= inv_rms * norm4(0u, d4) * norm4(1u, d4);
        }
        q4[d4] *= params.scale;
    }
}

// What multiplies a key's dot product: its 1 / rms with QK_NORM (from its sum of squares).
fn key_scale(squares: f32) -> f32 {
    if QK_NORM == 0u {
        return 1.0;
    }
    return inverseSqrt(squares / f32(HEAD_DIM) + params.norm_eps);
}
