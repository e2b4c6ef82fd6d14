// ToMe bipartite soft matching with size-weighted merging (facebookresearch/ToMe
// `bipartite_soft_matching` + `merge_wavg` + `merge_source`), entirely on the GPU, one pass per
// entry point, no host round trip between them:
//   normalize   (here) m / ‖m‖ per token (no eps, as upstream), A (even tokens) then B (odd)
//   best_match  (tome_index.wgsl, tome_subgroup.wgsl) each A token's most similar B token
//               (the first B index wins a tie)
//   score       (here) that similarity; -f32::MAX for the class token (A 0) and when there
//               is no B token
//   rank        (tome_index.wgsl) position in the scores sorted descending, ties by index
//               ascending (a stable sort): a rank sort, O(na) per token, O(1) depth
//   place       (tome_index.wgsl) each A token's output row: merged (rank < r) into its B
//               match's row, unmerged in descending-similarity order, or original order with
//               a class token
//   merge       (tome_merge.wgsl) rows [unmerged A; all B]: Σ x·size / Σ size
//   source      (tome_index.wgsl) token → output row (upstream merge_source as an index)
// Features are activations (Act: f32 or f16); matching is f32 in either case; indices u32.
// Params and bindings 1, 2, 4 come from common/tome_layout.wgsl.

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// x = metric [batch, n, channels] -> out = normalised rows, A block then B block.
@compute @workgroup_size(64)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.batch * params.tokens {
        return;
    }
    let b = i / params.tokens;
    let t = i % params.tokens;
    let c = params.channels;
    var squares = 0.0;
    for (var k = 0u; k < c; k++) {
        let v = f32(x[i * c + k]);
        squares += v * v;
    }
    let inv = 1.0 / sqrt(squares);
    let o = unit_row(b, select(params.na + t / 2u, t / 2u, t % 2u == 0u));
    for (var k = 0u; k < c; k++) {
        out[o + k] = f32(x[i * c + k]) * inv;
    }
}

// values = unit rows, indices = best match [batch, na] -> out = its similarity [batch, na].
@compute @workgroup_size(64)
fn score(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.batch * params.na {
        return;
    }
    let b = i / params.na;
    let a = i % params.na;
    // The class token never merges; without B tokens nothing does.
    if (params.class_token == 1u && a == 0u) || params.nb == 0u {
        out[i] = LOWEST;
        return;
    }
    let a_row = unit_row(b, a);
    let b_row = unit_row(b, params.na + indices[i]);
    var dot = 0.0;
    for (var k = 0u; k < params.channels; k++) {
        dot += values[a_row + k] * values[b_row + k];
    }
    out[i] = dot;
}
