// The second pass of attention_chunks.wgsl: merges each query's per-chunk records into the
// attention output with a log-sum-exp reduction, in chunk order (deterministic):
//   m = max_c max_c;  out = Σ_c exp(max_c - m) · values_c / Σ_c exp(max_c - m) · sum_c
// One invocation per output element [batch, queries, heads · head_dim], heads as `(h d)`.
// Fully masked rows stay uniform averages (their maxima are all -f32::MAX), or are zeroed as
// `flash` does with MASKED_ROWS = 1 when no chunk kept a key.

struct Params {
    batch: u32,
    queries: u32,
    heads: u32,
    head_dim: u32,
    chunks: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override MASKED_ROWS: u32 = 0u;  // as attention_layout.wgsl

@group(0) @binding(0) var<storage, read> partials: array<f32>;  // [batch, heads, queries, chunks, record]
@group(0) @binding(1) var<storage, read_write> out: array<Act>;
@group(0) @binding(2) var<uniform> params: Params;

const STATS: u32 = 3u;  // max, sum, kept: in front of the values in every record
const FILL: f32 = -0x1.fffffep+127f;

@compute @workgroup_size(64)
fn attention_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let index = invocation(wid, groups, 64u, lid);
    let width = params.heads * params.head_dim;
    if index >= params.batch * params.queries * width {
        return;
    }
    let d = index % params.head_dim;
    let h = (index / params.head_dim) % params.heads;
    let qi = (index / width) % params.queries;
    let b = index / (width * params.queries);
    let size = params.head_dim + STATS;
    let first = ((b * params.heads + h) * params.queries + qi) * params.chunks * size;
    var m = FILL;
    var kept = false;
    for (var c = 0u; c < params.chunks; c++) {
        m = max(m, partials[first + c * size]);
        kept = kept || partials[first + c * size + 2u] != 0.0;
    }
    var total = 0.0;
    var sum = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
        let r = first + c * size;
        let weight = exp(partials[r] - m);
        total += partials[r + 1u] * weight;
        sum += partials[r + STATS + d] * weight;
    }
    let mean = sum / total;
    out[index] = Act(select(mean, zero_times(mean), MASKED_ROWS == 1u && !kept));
}
