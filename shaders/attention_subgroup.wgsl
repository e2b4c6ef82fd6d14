// Flash attention with the same semantics and layout as `flash` in attention.wgsl, for devices
// with SUBGROUP and subgroups of at least 8 lanes (like gemm.wgsl; attention.wgsl covers the
// rest). Register-blocked like gemm.wgsl: each invocation owns QUERY_BLOCKS query rows (1, 2
// or 4) and their online-softmax state, and takes keys 16 at a time: lane l loads keys
// j0 + l % 8 and j0 + 8 + l % 8, and `subgroupBroadcast` hands each to every lane, so a key or
// value element is loaded once per 8 lanes and used by every query row of each. On llvmpipe the
// broadcasts were the cost; four query rows per invocation take 4x fewer per multiply-add.
//
// A workgroup is one (batch, head) and 64 · QUERY_BLOCKS consecutive queries: invocation i owns
// queries i, i + 64, ... of the block, so every lane of a subgroup reads the same head's keys.
// Lanes past the last query compute along (broadcasts need the whole subgroup) and store
// nothing.

@group(0) @binding(4) var<storage, read_write> out: array<Act>;

override QUERY_BLOCKS: u32 = 1u;

// Query row r's values and running state; row 0's query is the layout's q4. Named arrays, not
// one indexed by r: llvmpipe keeps dynamically indexed arrays in memory.
var<private> q1: array<vec4<f32>, MAX_D4>;
var<private> q2: array<vec4<f32>, MAX_D4>;
var<private> q3: array<vec4<f32>, MAX_D4>;
var<private> acc0: array<vec4<f32>, MAX_D4>;
var<private> acc1: array<vec4<f32>, MAX_D4>;
var<private> acc2: array<vec4<f32>, MAX_D4>;
var<private> acc3: array<vec4<f32>, MAX_D4>;
var<private> run_max: vec4<f32>;
var<private> run_sum: vec4<f32>;
var<private> any_kept: vec4<bool>;
// Per query row, bit 4g + t: key j0 + 4g + t of the block is one it attends (left by logits).
var<private> kept_keys: vec4<u32>;

// Four dims of the dot products of four keys with four query rows: column r holds row r's.
fn dots(k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>, k3: vec4<f32>, qs: mat4x4<f32>) -> mat4x4<f32> {
    return transpose(mat4x4(k0, k1, k2, k3)) * qs;
}

// Query row r's logits for keys j0 .. j0 + 15 (column g: keys j0 + 4g ..) from their dot
// products and key scales: FILL where masked or past the last key (those get weight 0 in
// `fold`, even in a fully masked row where FILL logits are averaged).
fn logits(r: u32, s: mat4x4<f32>, k_scale: mat4x4<f32>, b: u32, qi: u32, j0: u32) -> mat4x4<f32> {
    var l = mat4x4<f32>();
    var bits = 0u;
    for (var g = 0u; g < 4u; g++) {
        for (var t = 0u; t < 4u; t++) {
            let j = j0 + 4u * g + t;
            var logit = FILL;
            if j < keys() && kept(b, qi, j) {
                any_kept[r] = true;
                bits |= 1u << (4u * g + t);
                logit = s[g][t] * k_scale[g][t] + mask_add(b, qi, j);
            }
            l[g][t] = logit;
        }
    }
    kept_keys[r] = bits;
    return l;
}

// One query row's Σ value · weight over the block's 16 keys (column t of v_g is key
// j0 + 4g + t). With segment bounds (MASK = 4) the block may hold keys of other queries'
// segments: those are skipped, not weighed by 0, since upstream attends each segment alone and
// 0 · a NaN value there would leak in. Keep masks weigh masked keys by 0, as upstream does.
fn weigh(v: array<mat4x4<f32>, 4>, p: mat4x4<f32>, keys: u32) -> vec4<f32> {
    if MASK != 4u {
        return v[0] * p[0] + v[1] * p[1] + v[2] * p[2] + v[3] * p[3];
    }
    var sum = vec4(0.0);
    for (var g = 0u; g < 4u; g++) {
        for (var t = 0u; t < 4u; t++) {
            if ((keys >> (4u * g + t)) & 1u) != 0u {
                sum += v[g][t] * p[g][t];
            }
        }
    }
    return sum;
}

// Folds query row r's block of 16 logits into its running max and sum. Returns the keys'
// weights; run_max's old value is left in `correction` for the caller's accumulator.
var<private> correction: f32;

fn fold(r: u32, l: mat4x4<f32>, present: mat4x4<f32>) -> mat4x4<f32> {
    let block_max = max(max(l[0], l[1]), max(l[2], l[3]));
    let m = max(run_max[r], max(max(block_max.x, block_max.y), max(block_max.z, block_max.w)));
    correction = exp(run_max[r] - m);
    // `present` is 1 for keys below the last, 0 past it.
    let p = mat4x4(
        exp(l[0] - m) * present[0], exp(l[1] - m) * present[1],
        exp(l[2] - m) * present[2], exp(l[3] - m) * present[3],
    );
    run_sum[r] = run_sum[r] * correction + dot(p[0] + p[1] + p[2] + p[3], vec4(1.0));
    run_max[r] = m;
    return p;
}

// Query row r's output row (zero_times(mean) where MASKED_ROWS zeroes a fully masked row, so a
// non-finite value still makes it NaN, as in attention.wgsl).
fn store_row(r: u32, b: u32, h: u32, qi: u32, d4: u32, acc: vec4<f32>) {
    let zero = MASKED_ROWS == 1u && !any_kept[r];
    let o = out_start(b, h, qi) + 4u * d4;
    for (var t = 0u; t < 4u; t++) {
        if 4u * d4 + t < HEAD_DIM {
            let mean = acc[t] / run_sum[r];
            out[o + t] = Act(select(mean, zero_times(mean), zero));
        }
    }
}

@compute @workgroup_size(64)
fn flash_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let per_block = WORKGROUP * QUERY_BLOCKS;
    let blocks = (params.queries + per_block - 1u) / per_block;
    let group = workgroup_index(wid, groups);
    // Uniform per workgroup, so the subgroup operations below stay in uniform control flow.
    if group >= params.batch * params.heads * blocks {
        return;
    }
    let h = (group / blocks) % params.heads;
    let b = group / (blocks * params.heads);
    let q_raw = vec4((group % blocks) * per_block + lid) + vec4(0u, 1u, 2u, 3u) * WORKGROUP;
    let q = min(q_raw, vec4(params.queries - 1u));
    // load_query fills the layout's q4: rows 3, 2, 1 are copied out before row 0 stays there.
    for (var r = QUERY_BLOCKS; r > 1u; r--) {
        load_query(q_start(b, h, q[r - 1u]));
        for (var d4 = 0u; d4 < D4; d4++) {
            switch r - 1u {
                case 1u: { q1[d4] = q4[d4]; }
                case 2u: { q2[d4] = q4[d4]; }
                default: { q3[d4] = q4[d4]; }
            }
        }
    }
    load_query(q_start(b, h, q[0]));
    for (var d4 = 0u; d4 < D4; d4++) {
        acc0[d4] = vec4(0.0);
        acc1[d4] = vec4(0.0);
        acc2[d4] = vec4(0.0);
        acc3[d4] = vec4(0.0);
    }
    // Starting at the fill value keeps a fully masked row uniform: exp(FILL - FILL) = 1.
    run_max = vec4(FILL);
    run_sum = vec4(0.0);
    any_kept = vec4(false);
    // The keys any query of the block attends: with segment bounds (MASK = 4, starts and ends
    // in query order) from its first query's start to its last's end, read at indices uniform
    // across the workgroup, so the loop bounds are too; kept() drops the others' keys.
    let first_query = (group % blocks) * per_block;
    let last_query = min(first_query + per_block, params.queries) - 1u;
    let lo = key_range(b, first_query).x;
    let n = key_range(b, last_query).y;
    for (var j0 = lo; j0 < n; j0 += 16u) {
        // The two keys this lane fetches for the whole subgroup (clamped; logits() drops extras).
        let ja = min(j0 + (lane & 7u), n - 1u);
        let jb = min(j0 + 8u + (lane & 7u), n - 1u);
        let row_a = kv_row(b, ja) + kv_head(h) * HEAD_DIM;
        let row_b = kv_row(b, jb) + kv_head(h) * HEAD_DIM;
        // Dot products: column r of s_g holds query row r with keys j0 + 4g .. j0 + 4g + 3 (the
        // rows past QUERY_BLOCKS are never read, so they compile away).
        var s0 = mat4x4<f32>(); var s1 = mat4x4<f32>(); var s2 = mat4x4<f32>(); var s3 = mat4x4<f32>();
        // This lane's two keys' sums of squares, for their key_scale (QK_NORM).
        var squares = vec2(0.0);
        for (var d4 = 0u; d4 < D4; d4++) {
            let ka = kv4(ja, row_a + k_col(ja), d4);
            let kb = kv4(jb, row_b + k_col(jb), d4);
            squares += vec2(dot(ka, ka), dot(kb, kb));
            let qs = mat4x4(q4[d4], q1[d4], q2[d4], q3[d4]);
            s0 += dots(subgroupBroadcast(ka, 0u), subgroupBroadcast(ka, 1u), subgroupBroadcast(ka, 2u), subgroupBroadcast(ka, 3u), qs);
            s1 += dots(subgroupBroadcast(ka, 4u), subgroupBroadcast(ka, 5u), subgroupBroadcast(ka, 6u), subgroupBroadcast(ka, 7u), qs);
            s2 += dots(subgroupBroadcast(kb, 0u), subgroupBroadcast(kb, 1u), subgroupBroadcast(kb, 2u), subgroupBroadcast(kb, 3u), qs);
            s3 += dots(subgroupBroadcast(kb, 4u), subgroupBroadcast(kb, 5u), subgroupBroadcast(kb, 6u), subgroupBroadcast(kb, 7u), qs);
        }
        let scale_a = key_scale(squares.x);
        let scale_b = key_scale(squares.y);
        let k_scale = mat4x4(
            vec4(subgroupBroadcast(scale_a, 0u), subgroupBroadcast(scale_a, 1u), subgroupBroadcast(scale_a, 2u), subgroupBroadcast(scale_a, 3u)),
            vec4(subgroupBroadcast(scale_a, 4u), subgroupBroadcast(scale_a, 5u), subgroupBroadcast(scale_a, 6u), subgroupBroadcast(scale_a, 7u)),
            vec4(subgroupBroadcast(scale_b, 0u), subgroupBroadcast(scale_b, 1u), subgroupBroadcast(scale_b, 2u), subgroupBroadcast(scale_b, 3u)),
            vec4(subgroupBroadcast(scale_b, 4u), subgroupBroadcast(scale_b, 5u), subgroupBroadcast(scale_b, 6u), subgroupBroadcast(scale_b, 7u)),
        );
        let j = vec4(j0) + vec4(0u, 1u, 2u, 3u);
        let present = mat4x4(
            select(vec4(0.0), vec4(1.0), j < vec4(n)), select(vec4(0.0), vec4(1.0), j + 4u < vec4(n)),
            select(vec4(0.0), vec4(1.0), j + 8u < vec4(n)), select(vec4(0.0), vec4(1.0), j + 12u < vec4(n)),
        );
        let p0 = fold(0u, logits(0u, mat4x4(s0[0], s1[0], s2[0], s3[0]), k_scale, b, q[0], j0), present);
        let c0 = correction;
        var p1 = mat4x4<f32>(); var p2 = mat4x4<f32>(); var p3 = mat4x4<f32>();
        var c = vec3(1.0);
        if QUERY_BLOCKS > 1u {
            p1 = fold(1u, logits(1u, mat4x4(s0[1], s1[1], s2[1], s3[1]), k_scale, b, q[1], j0), present);
            c.x = correction;
        }
        if QUERY_BLOCKS > 2u {
            p2 = fold(2u, logits(2u, mat4x4(s0[2], s1[2], s2[2], s3[2]), k_scale, b, q[2], j0), present);
            c.y = correction;
            p3 = fold(3u, logits(3u, mat4x4(s0[3], s1[3], s2[3], s3[3]), k_scale, b, q[3], j0), present);
            c.z = correction;
        }
        // Past the last key a lane shares zeros: its weight is 0, and 0 · (the clamped key's
        // value) would turn an infinite value into NaN.
        let present_a = j0 + (lane & 7u) < n;
        let present_b = j0 + 8u + (lane & 7u) < n;
        for (var d4 = 0u; d4 < D4; d4++) {
            let va = select(vec4(0.0), kv4(ja, row_a + v_col(ja), d4), present_a);
            let vb = select(vec4(0.0), kv4(jb, row_b + v_col(jb), d4), present_b);
            // Column t of v_g is value j0 + 4g + t, so v_g · p[g] weighs four values at once.
            let v0 = mat4x4(subgroupBroadcast(va, 0u), subgroupBroadcast(va, 1u), subgroupBroadcast(va, 2u), subgroupBroadcast(va, 3u));
            let v1 = mat4x4(subgroupBroadcast(va, 4u), subgroupBroadcast(va, 5u), subgroupBroadcast(va, 6u), subgroupBroadcast(va, 7u));
            let v2 = mat4x4(subgroupBroadcast(vb, 0u), subgroupBroadcast(vb, 1u), subgroupBroadcast(vb, 2u), subgroupBroadcast(vb, 3u));
            let v3 = mat4x4(subgroupBroadcast(vb, 4u), subgroupBroadcast(vb, 5u), subgroupBroadcast(vb, 6u), subgroupBroadcast(vb, 7u));
            let v = array(v0, v1, v2, v3);
            acc0[d4] = acc0[d4] * c0 + weigh(v, p0, kept_keys[0]);
            if QUERY_BLOCKS > 1u {
                acc1[d4] = acc1[d4] * c.x + weigh(v, p1, kept_keys[1]);
            }
            if QUERY_BLOCKS > 2u {
                acc2[d4] = acc2[d4] * c.y + weigh(v, p2, kept_keys[2]);
                acc3[d4] = acc3[d4] * c.z + weigh(v, p3, kept_keys[3]);
            }
        }
    }
    for (var d4 = 0u; d4 < D4; d4++) {
        if q_raw[0] < params.queries {
            store_row(0u, b, h, q[0], d4, acc0[d4]);
        }
        if QUERY_BLOCKS > 1u && q_raw[1] < params.queries {
            store_row(1u, b, h, q[1], d4, acc1[d4]);
        }
        if QUERY_BLOCKS > 2u && q_raw[2] < params.queries {
            store_row(2u, b, h, q[2], d4, acc2[d4]);
        }
        if QUERY_BLOCKS > 2u && q_raw[3] < params.queries {
            store_row(3u, b, h, q[3], d4, acc3[d4]);
        }
    }
}
