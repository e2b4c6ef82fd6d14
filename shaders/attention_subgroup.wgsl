// Flash attention with the same semantics and layout as `flash` in attention.wgsl, for devices
// with SUBGROUP and subgroups of at least 8 lanes (like gemm.wgsl; attention.wgsl covers the
// rest). Each invocation still owns one query row and its online-softmax state, but keys are
// taken 8 at a time: lane l loads key j0 + l % 8 and `subgroupBroadcast` hands it to every
// lane, so each key/value element is loaded once per 8 queries instead of once per query.
// On llvmpipe the loads were the cost (2x from dropping the value loads alone).
//
// A workgroup is one (batch, head) and 64 consecutive queries, so every lane of a subgroup
// reads the same head's keys; lanes past the last query compute along (broadcasts need the
// whole subgroup) and store nothing.

@group(0) @binding(4) var<storage, read_write> out: array<Act>;

var<private> acc4: array<vec4<f32>, MAX_D4>;
var<private> any_kept: bool;

// Key j's logit from its dot-product partials and its key_scale, or FILL where masked or past
// the last key (those get weight 0 below, even in a fully masked row where FILL logits are
// averaged).
fn logit(dots: vec4<f32>, k_scale: f32, b: u32, qi: u32, j: u32) -> f32 {
    if j >= keys() || !kept(b, qi, j) {
        return FILL;
    }
    any_kept = true;
    return dot(dots, vec4(1.0)) * k_scale + mask_add(b, qi, j);
}

@compute @workgroup_size(64)
fn flash_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let blocks = (params.queries + WORKGROUP - 1u) / WORKGROUP;
    let group = workgroup_index(wid, groups);
    // Uniform per workgroup, so the subgroup operations below stay in uniform control flow.
    if group >= params.batch * params.heads * blocks {
        return;
    }
    let h = (group / blocks) % params.heads;
    let b = group / (blocks * params.heads);
    let qi_raw = (group % blocks) * WORKGROUP + lid;
    let qi = min(qi_raw, params.queries - 1u);
    load_query(q_start(b, h, qi));
    for (var d4 = 0u; d4 < D4; d4++) {
        acc4[d4] = vec4(0.0);
    }
    var run_max = FILL;
    var run_sum = 0.0;
    any_kept = false;
    let n = keys();
    for (var j0 = 0u; j0 < n; j0 += 8u) {
        // The key this lane fetches for the whole subgroup (clamped; logit() drops extras).
        let jl = min(j0 + (lane & 7u), n - 1u);
        let row = kv_row(b, jl) + kv_head(h) * HEAD_DIM;
        var s0 = vec4(0.0); var s1 = vec4(0.0); var s2 = vec4(0.0); var s3 = vec4(0.0);
        var s4 = vec4(0.0); var s5 = vec4(0.0); var s6 = vec4(0.0); var s7 = vec4(0.0);
        // This lane's key's sum of squares, for its key_scale (QK_NORM).
        var squares = vec4(0.0);
        for (var d4 = 0u; d4 < D4; d4++) {
            let k = kv4(jl, row + k_col(jl), d4);
            squares += k * k;
            let q = q4[d4];
            s0 += q * subgroupBroadcast(k, 0u);
            s1 += q * subgroupBroadcast(k, 1u);
            s2 += q * subgroupBroadcast(k, 2u);
            s3 += q * subgroupBroadcast(k, 3u);
            s4 += q * subgroupBroadcast(k, 4u);
            s5 += q * subgroupBroadcast(k, 5u);
            s6 += q * subgroupBroadcast(k, 6u);
            s7 += q * subgroupBroadcast(k, 7u);
        }
        let k_scale = key_scale(dot(squares, vec4(1.0)));
        let l0 = logit(s0, subgroupBroadcast(k_scale, 0u), b, qi, j0);
        let l1 = logit(s1, subgroupBroadcast(k_scale, 1u), b, qi, j0 + 1u);
        let l2 = logit(s2, subgroupBroadcast(k_scale, 2u), b, qi, j0 + 2u);
        let l3 = logit(s3, subgroupBroadcast(k_scale, 3u), b, qi, j0 + 3u);
        let l4 = logit(s4, subgroupBroadcast(k_scale, 4u), b, qi, j0 + 4u);
        let l5 = logit(s5, subgroupBroadcast(k_scale, 5u), b, qi, j0 + 5u);
        let l6 = logit(s6, subgroupBroadcast(k_scale, 6u), b, qi, j0 + 6u);
        let l7 = logit(s7, subgroupBroadcast(k_scale, 7u), b, qi, j0 + 7u);
        let block_max = max(max(max(l0, l1), max(l2, l3)), max(max(l4, l5), max(l6, l7)));
        // Online softmax over the block: one rescale per 8 keys.
        let m = max(run_max, block_max);
        let correction = exp(run_max - m);
        let p_lo = select(vec4(0.0), exp(vec4(l0, l1, l2, l3) - m), vec4(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4(n));
        let p_hi = select(vec4(0.0), exp(vec4(l4, l5, l6, l7) - m), vec4(j0 + 4u, j0 + 5u, j0 + 6u, j0 + 7u) < vec4(n));
        run_sum = run_sum * correction + dot(p_lo + p_hi, vec4(1.0));
        run_max = m;
        // Past the last key a lane shares zeros: its weight is 0, and 0 · (the clamped key's
        // value) would turn an infinite value into NaN.
        let present = j0 + (lane & 7u) < n;
        for (var d4 = 0u; d4 < D4; d4++) {
            let v = select(vec4(0.0), kv4(jl, row + v_col(jl), d4), present);
            acc4[d4] = acc4[d4] * correction
                + p_lo.x * subgroupBroadcast(v, 0u) + p_lo.y * subgroupBroadcast(v, 1u)
                + p_lo.z * subgroupBroadcast(v, 2u) + p_lo.w * subgroupBroadcast(v, 3u)
                + p_hi.x * subgroupBroadcast(v, 4u) + p_hi.y * subgroupBroadcast(v, 5u)
                + p_hi.z * subgroupBroadcast(v, 6u) + p_hi.w * subgroupBroadcast(v, 7u);
        }
    }
    if qi_raw >= params.queries {
        return;
    }
    // As in attention.wgsl: zero_times(mean), so a non-finite value still makes the row NaN.
    let zero = MASKED_ROWS == 1u && !any_kept;
    let o = out_start(b, h, qi);
    for (var d = 0u; d < HEAD_DIM; d++) {
        let mean = acc4[d / 4u][d % 4u] / run_sum;
        out[o + d] = Act(select(mean, zero_times(mean), zero));
    }
}
