// Attention with the keys split across workgroups as well as within them (flash-decoding), for
// few (batch, head, query block) triples over many keys, where `flash_split`'s one workgroup
// per triple leaves most of a GPU idle. Two passes: `attention_partials` here, and
// `attention_combine` (attention_combine.wgsl), which merges the chunks with a log-sum-exp
// reduction. Semantics, layout and Params as attention.wgsl.
//
// A workgroup is one (batch, head, block of SPLIT_Q queries, chunk of chunk_keys keys). Its 64
// invocations run `flash_split`'s in-workgroup key split over the chunk's keys
// (common/attention_stream.wgsl) and store each query's unnormalised state as one record of
// `out`, f32 whatever the activations (a maximum rounded to f16 would scale the chunk's weights
// by up to e^(|max|·2⁻¹¹), and -f32::MAX has no f16):
//   out[b, h, q, chunk] = [max, sum of exp(logit - max), any key kept (0 or 1),
//                          Σ exp(logit - max) · v over HEAD_DIM dims]

@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const STATS: u32 = 3u;  // max, sum, kept: in front of the values in every record

var<private> record: u32;  // where this invocation's query's record starts in `out`
var<private> stores: bool; // false for the clamped rows past the last query

fn take_merged(d: u32, v: f32) {
    if stores {
        out[record + STATS + d] = v;
    }
}

@compute @workgroup_size(64)
fn attention_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let blocks = (params.queries + SPLIT_Q - 1u) / SPLIT_Q;
    let group = workgroup_index(wid, groups);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if group >= params.batch * params.heads * blocks * params.chunks {
        return;
    }
    let chunk = group % params.chunks;
    let block = (group / params.chunks) % blocks;
    let h = (group / (params.chunks * blocks)) % params.heads;
    let b = group / (params.chunks * blocks * params.heads);
    let qi_raw = block * SPLIT_Q + lid / SPLIT_K;
    let qi = min(qi_raw, params.queries - 1u);
    let first = chunk * params.chunk_keys;
    let end = min(first + params.chunk_keys, keys());
    record = (((b * params.heads + h) * params.queries + qi) * params.chunks + chunk) * (HEAD_DIM + STATS);
    stores = qi_raw < params.queries;
    merge_split(lid, stream_keys(b, h, qi, first + lid % SPLIT_K, end, SPLIT_K), false);
    if stores && lid % SPLIT_K == 0u {
        out[record] = merged_max;
        out[record + 1u] = merged_sum;
        out[record + 2u] = f32(merged_kept);
    }
}
