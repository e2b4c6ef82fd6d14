// Multi-head attention out = softmax(q·kᵀ · scale (masked)) · v, per batch item and head.
//
// Queries are [batch, queries, q_stride] with head h at columns q_offset + h·HEAD_DIM. Keys
// and values come from one or two sources read in place, never concatenated: key j < keys_a
// is row j of kv_a, later keys are rows of kv_b (the Perceiver attends to concat(media,
// latents)). In a source row, head h's key starts at column k_offset + h·HEAD_DIM and its
// value at v_offset + h·HEAD_DIM, so fused QKV / KV projections are read without a split.
// The output is [batch, queries, heads·HEAD_DIM], heads concatenated as `(h d)`.
//
// Masking follows open_flamingo: a masked logit is set to -f32::MAX (not -inf), so a fully
// masked row becomes a uniform average of the values; MASKED_ROWS = 1 instead zeroes such
// rows, as upstream does for text before the first image with only_attend_immediate_media.
//
// `flash` never stores the queries × keys scores: one invocation per (batch, head, query)
// streams the keys with an online softmax. `scores`, `softmax_rows` and `weighted_sum` are
// the naive three-pass version that materialises them, kept as the measured baseline.

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
override MASK: u32 = 0u;        // 1: `mask` holds a keep flag (non-zero) per (query, key)
override MASKED_ROWS: u32 = 0u; // fully masked rows: 0 uniform average (upstream fill), 1 zero

// Binding 0 is the queries for `flash` and `scores`, the scores or weights for the others.
@group(0) @binding(0) var<storage, read> lhs: array<f32>;
@group(0) @binding(1) var<storage, read> kv_a: array<f32>;
@group(0) @binding(2) var<storage, read> kv_b: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;  // [batch, queries, keys]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
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
        return kv_a[i];
    }
    return kv_b[i];
}

fn kept(b: u32, qi: u32, j: u32) -> bool {
    return MASK == 0u || mask[(b * params.queries + qi) * keys() + j] != 0.0;
}

fn q_start(b: u32, h: u32, qi: u32) -> u32 {
    return (b * params.queries + qi) * params.q_stride + params.q_offset + h * HEAD_DIM;
}

fn out_start(b: u32, h: u32, qi: u32) -> u32 {
    return (b * params.queries + qi) * params.heads * HEAD_DIM + h * HEAD_DIM;
}

// Per-invocation state of `flash`.
var<private> q_row: array<f32, MAX_HEAD_DIM>;
var<private> acc: array<f32, MAX_HEAD_DIM>;
var<private> run_max: f32;
var<private> run_sum: f32;

// Folds logit `s` into the running max and sum, rescales the accumulated values, and returns
// the weight of the new key's value.
fn online_softmax_step(s: f32) -> f32 {
    let m = max(run_max, s);
    let correction = exp(run_max - m);
    if correction != 1.0 {
        for (var d = 0u; d < HEAD_DIM; d++) {
            acc[d] *= correction;
        }
    }
    let p = exp(s - m);
    run_sum = run_sum * correction + p;
    run_max = m;
    return p;
}

@compute @workgroup_size(64)
fn flash(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    // Query fastest, so a workgroup's invocations walk the same keys together.
    let index = invocation(wid, groups, lid);
    if index >= params.batch * params.heads * params.queries {
        return;
    }
    let qi = index % params.queries;
    let h = (index / params.queries) % params.heads;
    let b = index / (params.queries * params.heads);
    let q0 = q_start(b, h, qi);
    for (var d = 0u; d < HEAD_DIM; d++) {
        q_row[d] = lhs[q0 + d] * params.scale;
        acc[d] = 0.0;
    }
    // Starting at the fill value keeps a fully masked row uniform: exp(FILL - FILL) = 1.
    run_max = FILL;
    run_sum = 0.0;
    var any_kept = false;
    for (var j = 0u; j < keys(); j++) {
        let row = kv_row(b, j) + h * HEAD_DIM;
        var s = FILL;
        if kept(b, qi, j) {
            any_kept = true;
            s = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                s += q_row[d] * kv_read(j, row + params.k_offset + d);
            }
        }
        let p = online_softmax_step(s);
        for (var d = 0u; d < HEAD_DIM; d++) {
            acc[d] += p * kv_read(j, row + params.v_offset + d);
        }
    }
    let zero = MASKED_ROWS == 1u && !any_kept;
    let o = out_start(b, h, qi);
    for (var d = 0u; d < HEAD_DIM; d++) {
        out[o + d] = select(acc[d] / run_sum, 0.0, zero);
    }
}

// Naive pass 1: out[b, h, q, j] = logit, masked ones set to FILL.
@compute @workgroup_size(64)
fn scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let index = invocation(wid, groups, lid);
    let n = keys();
    if index >= params.batch * params.heads * params.queries * n {
        return;
    }
    let j = index % n;
    let qi = (index / n) % params.queries;
    let h = (index / (n * params.queries)) % params.heads;
    let b = index / (n * params.queries * params.heads);
    var s = FILL;
    if kept(b, qi, j) {
        let q0 = q_start(b, h, qi);
        let k0 = kv_row(b, j) + h * HEAD_DIM + params.k_offset;
        s = 0.0;
        for (var d = 0u; d < HEAD_DIM; d++) {
            s += (lhs[q0 + d] * params.scale) * kv_read(j, k0 + d);
        }
    }
    out[index] = s;
}

// Naive pass 2: softmax of each [b, h, q] row of the scores in `lhs`.
@compute @workgroup_size(64)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = invocation(wid, groups, lid);
    if row >= params.batch * params.heads * params.queries {
        return;
    }
    let n = keys();
    let qi = row % params.queries;
    let b = row / (params.queries * params.heads);
    var m = FILL;
    var any_kept = false;
    for (var j = 0u; j < n; j++) {
        m = max(m, lhs[row * n + j]);
        any_kept = any_kept || kept(b, qi, j);
    }
    var sum = 0.0;
    for (var j = 0u; j < n; j++) {
        sum += exp(lhs[row * n + j] - m);
    }
    let zero = MASKED_ROWS == 1u && !any_kept;
    for (var j = 0u; j < n; j++) {
        out[row * n + j] = select(exp(lhs[row * n + j] - m) / sum, 0.0, zero);
    }
}

// Naive pass 3: out[b, q, h·d] = Σ_j weights[b, h, q, j] · v_j.
@compute @workgroup_size(64)
fn weighted_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let index = invocation(wid, groups, lid);
    if index >= params.batch * params.queries * params.heads * HEAD_DIM {
        return;
    }
    let d = index % HEAD_DIM;
    let h = (index / HEAD_DIM) % params.heads;
    let qi = (index / (HEAD_DIM * params.heads)) % params.queries;
    let b = index / (HEAD_DIM * params.heads * params.queries);
    let n = keys();
    let weights = ((b * params.heads + h) * params.queries + qi) * n;
    var sum = 0.0;
    for (var j = 0u; j < n; j++) {
        sum += lhs[weights + j] * kv_read(j, kv_row(b, j) + h * HEAD_DIM + params.v_offset + d);
    }
    out[index] = sum;
}
