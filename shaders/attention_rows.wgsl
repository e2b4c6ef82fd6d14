// A whole attention sublayer in one dispatch: multi-head attention with the semantics and
// layout of attention.wgsl, then its output projection, bias, residual and an optional
// post-LayerNorm: y = post_norm(attention(q, kv)·w_outᵀ + b_out + skip). BERT's (the
// Q-Former's) `BertAttention` and open_flamingo's `PerceiverAttention` to_out with its
// residual, where the unfused plan takes an attention, a GEMM and a norm dispatch.
//
// A workgroup is one batch item and SPLIT_Q = ROWS = 8 queries. For each head in turn its 64
// invocations run `flash_split`'s key split (common/attention_stream.wgsl) and leave the
// head's output in the chunk, which project_chunk multiplies into the head's columns of w_out
// (common/rows_epilogue.wgsl): the attention output is never stored, and no work is repeated.
// The output is [batch, queries, out_width].

@group(0) @binding(4) var<storage, read_write> out: array<Act>;

var<private> merged_row: u32;  // this invocation's query within the block

fn take_merged(d: u32, v: f32) {
    set_chunk(merged_row, d, v);
}

@compute @workgroup_size(64)
fn attention_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let blocks = (params.queries + SPLIT_Q - 1u) / SPLIT_Q;
    let group = workgroup_index(wid, groups);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if group >= params.batch * blocks {
        return;
    }
    let b = group / blocks;
    let q0 = (group % blocks) * SPLIT_Q;
    merged_row = lid / SPLIT_K;
    let qi = min(q0 + merged_row, params.queries - 1u);
    let width = params.heads * HEAD_DIM;
    clear_rows();
    for (var h = 0u; h < params.heads; h++) {
        merge_split(lid, stream_keys(b, h, qi, lid % SPLIT_K, keys(), SPLIT_K), true);
        // params.head_dim, not the constant: unrolled, this loop took llvmpipe half a minute
        // to compile.
        project_chunk(lid, params.head_dim, h * HEAD_DIM, width, params.out_width);
        workgroupBarrier();
    }
    finish_rows(lid, b * params.queries + q0, min(ROWS, params.queries - q0), params.out_width, params.post_eps);
}
