// Multi-head attention out = softmax(q·kᵀ · scale (masked)) · v, per batch item and head.
//
// Queries are [batch, queries, q_stride] with head h at columns q_offset + h·HEAD_DIM. Keys
// and values come from one or two sources read in place, never concatenated: key j < keys_a
// is row j of kv_a, later keys are rows of kv_b (the Perceiver attends to concat(media,
// latents)). In a source row, head h's key starts at column k_offset + h·HEAD_DIM and its
// value at v_offset + h·HEAD_DIM (k_offset_b / v_offset_b in kv_b's rows), so fused QKV / KV
// projections are read without a split.
// The output is [batch, queries, heads·HEAD_DIM], heads concatenated as `(h d)`.
//
// Query head h reads key/value head h / (heads / kv_heads) (grouped-query attention). With
// QK_NORM each head of q and k is RMS-normalised and scaled by its norm weight first (Mllama).
//
// A keep mask (MASK = 1) follows open_flamingo: a masked logit is set to -f32::MAX (not -inf),
// so a fully masked row becomes a uniform average of the values; MASKED_ROWS = 1 instead
// zeroes such rows, as upstream does for text before the first image with
// only_attend_immediate_media. An additive mask (MASK = 2) is added to the scaled logits.
//
// `flash` never stores the queries × keys scores: one invocation per (batch, head, query)
// streams the keys with an online softmax. `scores`, `softmax_rows` and `weighted_sum` are
// the naive three-pass version that materialises them, kept as the measured baseline.
//
// The Params, bindings and row helpers come from common/attention_layout.wgsl, the online
// softmax and the key-split merge from common/attention_stream.wgsl.

@group(0) @binding(4) var<storage, read_write> out: array<Act>;

@compute @workgroup_size(64)
fn flash(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    // Query fastest, so a workgroup's invocations walk the same keys together.
    let index = invocation(wid, groups, WORKGROUP, lid);
    if index >= params.batch * params.heads * params.queries {
        return;
    }
    let qi = index % params.queries;
    let h = (index / params.queries) % params.heads;
    let b = index / (params.queries * params.heads);
    let any_kept = stream_keys(b, h, qi, 0u, keys(), 1u);
    // Upstream zeroes such rows by multiplying their weights by 0, so a non-finite value
    // still makes them NaN: zero_times(mean) keeps that.
    let zero = MASKED_ROWS == 1u && !any_kept;
    let o = out_start(b, h, qi);
    for (var d = 0u; d < HEAD_DIM; d++) {
        let mean = acc4[d / 4u][d % 4u] / run_sum;
        out[o + d] = Act(select(mean, zero_times(mean), zero));
    }
}

// Naive pass 1: out[b, h, q, j] = logit, masked ones set to the storage type's -max (FILL in
// f32, as upstream fills with its dtype's -max), additively masked ones at least that.
@compute @workgroup_size(64)
fn scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let index = invocation(wid, groups, WORKGROUP, lid);
    let n = keys();
    if index >= params.batch * params.heads * params.queries * n {
        return;
    }
    let j = index % n;
    let qi = (index / n) % params.queries;
    let h = (index / (n * params.queries)) % params.heads;
    let b = index / (n * params.queries * params.heads);
    var s = -ACT_MAX;
    if kept(b, qi, j) {
        load_query(q_start(b, h, qi));
        s = logit(b, qi, j, kv_row(b, j) + kv_head(h) * HEAD_DIM);
        if MASK == 2u {
            // finfo(f32).min added: stored as the storage type's -max (not f16's -inf), so a
            // row masked throughout stays a uniform average, as in `flash`. A -inf logit (a
            // -inf key) stays -inf, weight 0 as in `flash` and upstream, even in such a row.
            // Comparisons, not max(): a NaN logit must stay NaN.
            if s < -ACT_MAX && s >= FILL {
                s = -ACT_MAX;
            }
        }
    }
    out[index] = Act(s);
}

// Naive pass 2: softmax of each [b, h, q] row of the scores in `lhs`.
@compute @workgroup_size(64)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = invocation(wid, groups, WORKGROUP, lid);
    if row >= params.batch * params.heads * params.queries {
        return;
    }
    let n = keys();
    let qi = row % params.queries;
    let b = row / (params.queries * params.heads);
    var m = FILL;
    var any_kept = false;
    for (var j = 0u; j < n; j++) {
        m = max(m, f32(lhs[row * n + j]));
        any_kept = any_kept || kept(b, qi, j);
    }
    var sum = 0.0;
    for (var j = 0u; j < n; j++) {
        sum += exp(f32(lhs[row * n + j]) - m);
    }
    let zero = MASKED_ROWS == 1u && !any_kept;
    for (var j = 0u; j < n; j++) {
        out[row * n + j] = Act(select(exp(f32(lhs[row * n + j]) - m) / sum, 0.0, zero));
    }
}

// Naive pass 3: out[b, q, h·d] = Σ_j weights[b, h, q, j] · v_j.
@compute @workgroup_size(64)
fn weighted_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let index = invocation(wid, groups, WORKGROUP, lid);
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
        sum += f32(lhs[weights + j]) * kv_read(j, kv_row(b, j) + kv_head(h) * HEAD_DIM + v_col(j) + d);
    }
    out[index] = Act(sum);
}

// `flash_split`, for GPUs: one workgroup per (batch, head, block of SPLIT_Q queries), its 64
// invocations SPLIT_Q queries × SPLIT_K key slices (common/attention_stream.wgsl). 8x the
// invocations of `flash` on the same problem (the Q-Former's 384 rows become 3072
// invocations), no subgroup operations.
var<private> split_out: u32;       // where this invocation's query row starts in `out`
var<private> split_stores: bool;   // false for the clamped rows past the last query

fn take_merged(d: u32, v: f32) {
    if split_stores {
        out[split_out + d] = Act(v);
    }
}

@compute @workgroup_size(64)
fn flash_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let blocks = (params.queries + SPLIT_Q - 1u) / SPLIT_Q;
    let group = workgroup_index(wid, groups);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if group >= params.batch * params.heads * blocks {
        return;
    }
    let h = (group / blocks) % params.heads;
    let b = group / (blocks * params.heads);
    let qi_raw = (group % blocks) * SPLIT_Q + lid / SPLIT_K;
    let qi = min(qi_raw, params.queries - 1u);
    split_out = out_start(b, h, qi);
    split_stores = qi_raw < params.queries;
    merge_split(lid, stream_keys(b, h, qi, lid % SPLIT_K, keys(), SPLIT_K), true);
}
