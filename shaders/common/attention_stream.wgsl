// The online softmax of one query over a strided slice of the keys, and the merge of a
// workgroup's key slices: what `flash` and `flash_split` (attention.wgsl), the key-chunk
// partials (attention_chunks.wgsl) and the fused attention sublayer (attention_rows.wgsl) are
// made of. Needs attention_layout.wgsl and zero_times.wgsl in front, and from the kernel file
// `take_merged(d, v)`: where a merged output dim goes.

// Per-invocation state of the online softmax, four dims per vec4 (see D4); q4 is in the layout.
var<private> acc4: array<vec4<f32>, MAX_D4>;
var<private> run_max: f32;
var<private> run_sum: f32;

// Folds logit `s` into the running max and sum, rescales the accumulated values, and returns
// the weight of the new key's value.
fn online_softmax_step(s: f32) -> f32 {
    let m = max(run_max, s);
    let correction = exp(run_max - m);
    if correction != 1.0 {
        for (var d4 = 0u; d4 < D4; d4++) {
            acc4[d4] *= correction;
        }
    }
    let p = exp(s - m);
    run_sum = run_sum * correction + p;
    run_max = m;
    return p;
}

// The loaded query's logit for key j, whose head starts at `row` of its source: the scaled
// dot product (q/k norms applied) plus the additive mask. The keep mask is the caller's.
fn logit(b: u32, qi: u32, j: u32, row: u32) -> f32 {
    var dots = vec4(0.0);
    var squares = vec4(0.0);
    for (var d4 = 0u; d4 < D4; d4++) {
        let k = kv4(j, row + k_col(j), d4);
        dots += q4[d4] * k;
        squares += k * k;
    }
    return dot(dots, vec4(1.0)) * key_scale(dot(squares, vec4(1.0))) + mask_add(b, qi, j);
}

// Runs the online softmax of query qi (batch b, head h) over keys first, first + stride, ..
// below `end` into acc4, run_max and run_sum; returns whether the keep mask kept any of them.
fn stream_keys(b: u32, h: u32, qi: u32, first: u32, end: u32, stride: u32) -> bool {
    load_query(q_start(b, h, qi));
    for (var d4 = 0u; d4 < D4; d4++) {
        acc4[d4] = vec4(0.0);
    }
    // Starting at the fill value keeps a fully masked row uniform: exp(FILL - FILL) = 1.
    run_max = FILL;
    run_sum = 0.0;
    var any_kept = false;
    // Only the keys of the query's segment (MASK = 4), in the same slice of the stride.
    let range = key_range(b, qi);
    let start = select(first, first + (range.x - first + stride - 1u) / stride * stride, range.x > first);
    for (var j = start; j < min(end, range.y); j += stride) {
        let row = kv_row(b, j) + kv_head(h) * HEAD_DIM;
        var s = FILL;
        if kept(b, qi, j) {
            any_kept = true;
            s = logit(b, qi, j, row);
        }
        let p = online_softmax_step(s);
        for (var d4 = 0u; d4 < D4; d4++) {
            acc4[d4] += p * kv4(j, row + v_col(j), d4);
        }
    }
    return any_kept;
}

// The key split: SPLIT_Q queries × SPLIT_K key slices per 64-invocation workgroup. Invocation
// (q, s) = (lid / SPLIT_K, lid % SPLIT_K) streams keys s, s + SPLIT_K, .. of query q.
const SPLIT_Q: u32 = 8u;
const SPLIT_K: u32 = 8u;

var<workgroup> split_max: array<f32, 64>;
var<workgroup> split_sum: array<f32, 64>;
var<workgroup> split_kept: array<u32, 64>;
var<workgroup> split_acc: array<f32, 1024>;  // 64 invocations × 16 dims

// The merged state of the invocation's query, left by merge_split: max, sum of weights
// relative to it, and whether the keep mask kept any key.
var<private> merged_max: f32;
var<private> merged_sum: f32;
var<private> merged_kept: bool;

// Merges the slices' states (max, sum, accumulated values, left by stream_keys) of each
// query through workgroup memory, 16 dims at a time, and hands every merged dim of the
// invocation's query to take_merged (each slice 2 of the 16): the attention output when
// `normalise`, else the values' weighted sum relative to merged_max (a partial state for a
// merge across workgroups, fully masked rows not yet zeroed). Call in uniform control flow.
fn merge_split(lid: u32, any_kept: bool, normalise: bool) {
    let q = lid / SPLIT_K;
    let slice = lid % SPLIT_K;
    split_max[lid] = run_max;
    split_sum[lid] = run_sum;
    split_kept[lid] = u32(any_kept);
    workgroupBarrier();
    // The query's merged max and sum; this slice's share of them.
    let first = q * SPLIT_K;
    var m = FILL;
    var kept_any = 0u;
    for (var t = 0u; t < SPLIT_K; t++) {
        m = max(m, split_max[first + t]);
        kept_any |= split_kept[first + t];
    }
    var total = 0.0;
    for (var t = 0u; t < SPLIT_K; t++) {
        total += split_sum[first + t] * exp(split_max[first + t] - m);
    }
    merged_max = m;
    merged_sum = total;
    merged_kept = kept_any != 0u;
    let share = exp(run_max - m) / select(1.0, total, normalise);
    let zero = normalise && MASKED_ROWS == 1u && kept_any == 0u;
    for (var c4 = 0u; c4 < D4; c4 += 4u) {
        for (var i = 0u; i < 4u; i++) {
            let v = select(vec4(0.0), acc4[min(c4 + i, D4 - 1u)] * share, c4 + i < D4);
            split_acc[lid * 16u + i * 4u] = v.x;
            split_acc[lid * 16u + i * 4u + 1u] = v.y;
            split_acc[lid * 16u + i * 4u + 2u] = v.z;
            split_acc[lid * 16u + i * 4u + 3u] = v.w;
        }
        workgroupBarrier();
        for (var e = slice * 2u; e < slice * 2u + 2u; e++) {
            var mean = 0.0;
            for (var t = 0u; t < SPLIT_K; t++) {
                mean += split_acc[(first + t) * 16u + e];
            }
            let d = c4 * 4u + e;
            if d < HEAD_DIM {
                take_merged(d, select(mean, zero_times(mean), zero));
            }
        }
        workgroupBarrier();
    }
}
