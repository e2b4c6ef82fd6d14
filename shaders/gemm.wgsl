// y[m, n] = epilogue(Σ_k x[m, k] · w[n, k] + bias[n]): nn.Linear with PyTorch's weight layout
// [out, in], f32 accumulation. Needs SUBGROUP with subgroups of at least 8 lanes, and k % 4 == 0
// (rows are read as vec4); `gemm_portable.wgsl` covers the rest.
//
// Register-blocked, no workgroup memory but for the input norm's row statistics (slower on
// llvmpipe, where this was tuned; GPUs prefer
// shared-memory tiles, so tile shapes are a per-adapter choice). Each invocation owns 16 rows
// × 4 adjacent columns. The 16 rows are shared by its subgroup: lane l loads rows l % 8 and
// 8 + l % 8, then `subgroupBroadcast` hands each row to every lane. On llvmpipe that beat
// workgroup-uniform loads by 2-3×; it also needs no barrier.

// x is [m, k] activations read four at a time (Act4: f32 or f16, common/storage_*.wgsl); the
// weights (binding 1: f32, f16 or bf16 through weight4()) come from a common/weights_vec4_*.wgsl;
// Params, y, the bias, residual, gate and row-scale bindings and store() from
// common/gemm_epilogue.wgsl.
@group(0) @binding(0) var<storage, read> x: array<Act4>;

const WORKGROUP: u32 = 64u;
const TILE_M: u32 = 16u;
const TILE_N: u32 = 4u;

@compute @workgroup_size(64)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let tiles_m = (params.m + TILE_M - 1u) / TILE_M;
    let tiles_n = (params.n + WORKGROUP * TILE_N - 1u) / (WORKGROUP * TILE_N);
    // Uniform per workgroup, so every lane takes the same branch (subgroup ops stay legal).
    let tile = workgroup_index(wid, groups);
    if tile >= tiles_m * tiles_n {
        return;
    }
    // m varies fastest so consecutive workgroups reuse the same slab of w from cache.
    let origin = tile_origin(tile, tiles_m, TILE_M, WORKGROUP * TILE_N);
    let m0 = origin.x;
    let n0 = origin.y + lid * TILE_N;
    let k4 = params.k / 4u;

    // Out-of-range rows and columns read a clamped valid row and are never stored.
    let x_lo = min(m0 + (lane & 7u), params.m - 1u) * k4;
    let x_hi = min(m0 + 8u + (lane & 7u), params.m - 1u) * k4;
    let w0 = min(n0, params.n - 1u) * k4;
    let w1 = min(n0 + 1u, params.n - 1u) * k4;
    let w2 = min(n0 + 2u, params.n - 1u) * k4;
    let w3 = min(n0 + 3u, params.n - 1u) * k4;

    // The input norm's statistics of this lane's two rows (NORM_A).
    var stats_lo = vec2(0.0, 1.0);
    var stats_hi = vec2(0.0, 1.0);
    if NORM_A != 0u {
        tile_stats(m0, k4, lid);
        stats_lo = stats_sh[lane & 7u];
        stats_hi = stats_sh[8u + (lane & 7u)];
    }

    // Row i of the tile accumulates in c_i: 4 columns. Named registers, not an array: llvmpipe
    // keeps dynamically indexed arrays in memory.
    var c0 = vec4(0.0); var c1 = vec4(0.0); var c2 = vec4(0.0); var c3 = vec4(0.0);
    var c4 = vec4(0.0); var c5 = vec4(0.0); var c6 = vec4(0.0); var c7 = vec4(0.0);
    var c8 = vec4(0.0); var c9 = vec4(0.0); var c10 = vec4(0.0); var c11 = vec4(0.0);
    var c12 = vec4(0.0); var c13 = vec4(0.0); var c14 = vec4(0.0); var c15 = vec4(0.0);
    for (var kk = 0u; kk < k4; kk++) {
        // Columns of b are the 4 weight rows: (x row) * b gives the 4 dot products.
        let b = mat4x4(weight4(w0 + kk), weight4(w1 + kk), weight4(w2 + kk), weight4(w3 + kk));
        let lo = normed4(vec4<f32>(x[x_lo + kk]), kk * 4u, stats_lo);
        let hi = normed4(vec4<f32>(x[x_hi + kk]), kk * 4u, stats_hi);
        c0 += subgroupBroadcast(lo, 0u) * b;
        c1 += subgroupBroadcast(lo, 1u) * b;
        c2 += subgroupBroadcast(lo, 2u) * b;
        c3 += subgroupBroadcast(lo, 3u) * b;
        c4 += subgroupBroadcast(lo, 4u) * b;
        c5 += subgroupBroadcast(lo, 5u) * b;
        c6 += subgroupBroadcast(lo, 6u) * b;
        c7 += subgroupBroadcast(lo, 7u) * b;
        c8 += subgroupBroadcast(hi, 0u) * b;
        c9 += subgroupBroadcast(hi, 1u) * b;
        c10 += subgroupBroadcast(hi, 2u) * b;
        c11 += subgroupBroadcast(hi, 3u) * b;
        c12 += subgroupBroadcast(hi, 4u) * b;
        c13 += subgroupBroadcast(hi, 5u) * b;
        c14 += subgroupBroadcast(hi, 6u) * b;
        c15 += subgroupBroadcast(hi, 7u) * b;
    }

    let rows = array(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
    // SWIGLU pairs columns (j, j + 1): n is even and n0 a multiple of 4, so pairs never split.
    for (var j = 0u; j < TILE_N; j += 1u + SWIGLU) {
        let col = n0 + j;
        if col >= params.n {
            break;
        }
        for (var i = 0u; i < TILE_M; i++) {
            store(m0 + i, col, rows[i][j], rows[i][min(j + 1u, 3u)]);
        }
    }
}

// NORM_A statistics of the tile's 16 rows, computed once per workgroup: invocation i sums a
// quarter of row i % 16, the quarters meet in workgroup memory (two passes, as nn.LayerNorm).
var<workgroup> partial_sh: array<f32, 64>;
var<workgroup> stats_sh: array<vec2<f32>, 16>;

fn tile_stats(m0: u32, k4: u32, lid: u32) {
    let r = lid % TILE_M;
    let base = min(m0 + r, params.m - 1u) * k4;
    let quarter = (k4 + 3u) / 4u;
    let start = (lid / TILE_M) * quarter;
    let end = min(start + quarter, k4);
    var sum = vec4(0.0);
    if NORM_A == 1u {
        for (var kk = start; kk < end; kk++) {
            sum += vec4<f32>(x[base + kk]);
        }
    }
    partial_sh[lid] = dot(sum, vec4(1.0));
    workgroupBarrier();
    let total = ((partial_sh[r] + partial_sh[16u + r]) + partial_sh[32u + r]) + partial_sh[48u + r];
    let centre = norm_centre(total, k4 * 4u);
    workgroupBarrier();
    var squares = vec4(0.0);
    for (var kk = start; kk < end; kk++) {
        let d = vec4<f32>(x[base + kk]) - centre;
        squares += d * d;
    }
    partial_sh[lid] = dot(squares, vec4(1.0));
    workgroupBarrier();
    if lid < TILE_M {
        let spread = ((partial_sh[r] + partial_sh[16u + r]) + partial_sh[32u + r]) + partial_sh[48u + r];
        stats_sh[r] = norm_stats(centre, spread, k4 * 4u, params.norm_eps);
    }
    workgroupBarrier();
}
