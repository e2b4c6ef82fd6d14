// ToMe's index passes (see tome.wgsl for the whole algorithm): best match, rank, place and
// source, each writing u32. Params and bindings 1, 2, 4 come from common/tome_layout.wgsl;
// binding 0 holds the ranks for `place`.

@group(0) @binding(0) var<storage, read> ranks: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

// values = unit rows -> out = best B index of each A token [batch, na].
@compute @workgroup_size(64)
fn best_match(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.batch * params.na {
        return;
    }
    let b = i / params.na;
    let a = i % params.na;
    let c = params.channels;
    let a_row = unit_row(b, a);
    var best = LOWEST;
    var best_j = 0u;
    if !(params.class_token == 1u && a == 0u) {
        for (var j = 0u; j < params.nb; j++) {
            let b_row = unit_row(b, params.na + j);
            var dot = 0.0;
            for (var k = 0u; k < c; k++) {
                dot += values[a_row + k] * values[b_row + k];
            }
            // Strictly greater: the first index keeps a tie.
            if dot > best || j == 0u {
                best = dot;
                best_j = j;
            }
        }
    }
    out[i] = best_j;
}

// values = scores [batch, na] -> out = rank [batch, na].
@compute @workgroup_size(64)
fn rank(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.batch * params.na {
        return;
    }
    let b = i / params.na;
    let a = i % params.na;
    let mine = values[i];
    var ahead = 0u;
    for (var k = 0u; k < params.na; k++) {
        let other = values[b * params.na + k];
        if other > mine || (other == mine && k < a) {
            ahead += 1u;
        }
    }
    out[i] = ahead;
}

// indices = best matches, ranks -> out = output row of each A token [batch, na].
@compute @workgroup_size(64)
fn place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.batch * params.na {
        return;
    }
    let b = i / params.na;
    let a = i % params.na;
    let rank = ranks[i];
    if rank < params.r {
        out[i] = params.nu + indices[i];
    } else if params.class_token == 1u {
        // Unmerged A tokens in their original order.
        var before = 0u;
        for (var k = 0u; k < a; k++) {
            before += u32(ranks[b * params.na + k] >= params.r);
        }
        out[i] = before;
    } else {
        out[i] = rank - params.r;
    }
}

// indices = A rows [batch, na] -> out = output row of every token [batch, n].
@compute @workgroup_size(64)
fn source(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.batch * params.tokens {
        return;
    }
    let b = i / params.tokens;
    let t = i % params.tokens;
    out[i] = select(params.nu + t / 2u, indices[b * params.na + t / 2u], t % 2u == 0u);
}
