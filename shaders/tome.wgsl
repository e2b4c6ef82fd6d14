// ToMe bipartite soft matching with size-weighted merging (facebookresearch/ToMe
// `bipartite_soft_matching` + `merge_wavg` + `merge_source`), entirely on the GPU, one pass per
// entry point, no host round trip between them:
//   normalize   m / ‖m‖ per token (no eps, as upstream), A (even tokens) then B (odd tokens)
//   best_match  for each A token: max and argmax of its cosine similarity to every B token
//               (the first B index wins a tie); the class token (A 0) gets -f32::MAX
//   rank        each A token's position in node_max sorted descending, ties by index
//               ascending (a stable sort): a rank sort, O(na) per token, O(1) depth
//   place       each A token's output row: merged (rank < r) into its B match's row,
//               unmerged in descending-similarity order, or original order with a class token
//   merge       (tome_merge.wgsl) output rows [unmerged A; all B]: Σ x·size / Σ size over the tokens merged
//               into each row (MERGE = 1 writes Σ size instead: the new sizes)
//   source      token → output row (upstream merge_source as an index)
// Indices are stored as f32 (exact below 2^24 tokens). Features are activations (Act: f32 or
// f16): normalize reads them and writes f32 unit rows, so matching is f32 in either case; in0
// is Act in every pass, which runs the index passes with Act = f32.
//
// Params, bindings 1, 2 and 4 and helpers come from common/tome_layout.wgsl; tome_subgroup.wgsl has a
// faster best_match for devices with subgroups.

@group(0) @binding(0) var<storage, read> in0: array<Act>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// in0 = metric [batch, n, channels] -> out = normalised rows, A block then B block.
@compute @workgroup_size(64)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, lid);
    if i >= params.batch * params.tokens {
        return;
    }
    let b = i / params.tokens;
    let t = i % params.tokens;
    let c = params.channels;
    var squares = 0.0;
    for (var k = 0u; k < c; k++) {
        let v = f32(in0[i * c + k]);
        squares += v * v;
    }
    let inv = 1.0 / sqrt(squares);
    let slot = select(params.na + t / 2u, t / 2u, t % 2u == 0u);
    let o = (b * params.tokens + slot) * c;
    for (var k = 0u; k < c; k++) {
        out[o + k] = f32(in0[i * c + k]) * inv;
    }
}

// in0 = normalised rows -> out = [batch, na, 2]: (best similarity, its B index).
@compute @workgroup_size(64)
fn best_match(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, lid);
    if i >= params.batch * params.na {
        return;
    }
    let b = i / params.na;
    let a = i % params.na;
    let c = params.channels;
    let a_row = (b * params.tokens + a) * c;
    var best = LOWEST;
    var best_j = 0u;
    if !(params.class_token == 1u && a == 0u) {
        for (var j = 0u; j < params.nb; j++) {
            let b_row = (b * params.tokens + params.na + j) * c;
            var dot = 0.0;
            for (var k = 0u; k < c; k++) {
                dot += f32(in0[a_row + k]) * f32(in0[b_row + k]);
            }
            // Strictly greater: the first index keeps a tie.
            if dot > best || j == 0u {
                best = dot;
                best_j = j;
            }
        }
    }
    out[2u * i] = best;
    out[2u * i + 1u] = f32(best_j);
}

// in0 = node [batch, na, 2] -> out = rank [batch, na].
@compute @workgroup_size(64)
fn rank(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, lid);
    if i >= params.batch * params.na {
        return;
    }
    let b = i / params.na;
    let a = i % params.na;
    let mine = f32(in0[2u * i]);
    var ahead = 0u;
    for (var k = 0u; k < params.na; k++) {
        let other = f32(in0[2u * (b * params.na + k)]);
        if other > mine || (other == mine && k < a) {
            ahead += 1u;
        }
    }
    out[i] = f32(ahead);
}

// in0 = node, in1 = rank -> out = output row of each A token [batch, na].
@compute @workgroup_size(64)
fn place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, lid);
    if i >= params.batch * params.na {
        return;
    }
    let b = i / params.na;
    let a = i % params.na;
    let rank = u32(in1[i]);
    if rank < params.r {
        out[i] = f32(params.nu + u32(f32(in0[2u * i + 1u])));
    } else if params.class_token == 1u {
        // Unmerged A tokens in their original order.
        var before = 0u;
        for (var k = 0u; k < a; k++) {
            before += u32(u32(in1[b * params.na + k]) >= params.r);
        }
        out[i] = f32(before);
    } else {
        out[i] = f32(rank - params.r);
    }
}

// in0 = A rows [batch, na] -> out = output row of every token [batch, n].
@compute @workgroup_size(64)
fn source(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, lid);
    if i >= params.batch * params.tokens {
        return;
    }
    let b = i / params.tokens;
    let t = i % params.tokens;
    out[i] = select(f32(params.nu + t / 2u), f32(in0[b * params.na + t / 2u]), t % 2u == 0u);
}
