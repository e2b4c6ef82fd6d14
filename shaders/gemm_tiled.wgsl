// y[m, n] = epilogue(Σ_k x[m, k] · w[n, k] + bias[n]) with workgroup-memory tiles, for GPUs
// (gemm.wgsl's register blocking without workgroup memory is what llvmpipe wants instead).
//
// `gemm_tiled`: a workgroup computes a TILE_M × TILE_N block of y (override constants, at most
// 64 × 64). Each K step stages a TILE_M × 16 slab of x and a TILE_N × 16 slab of w in workgroup
// memory; the next slabs are fetched into registers while the current ones are multiplied
// (double buffering through registers), so global latency hides behind the FMAs. Invocation
// (tx, ty) of the 8 × 8 grid owns rows ty + 8i and the column pairs 16q + 2tx + {0, 1}:
// strided, so neighbouring invocations read neighbouring workgroup-memory words, and SWIGLU's
// gate/up pairs stay in one invocation.
//
// `gemm_splitk`: for thin problems (the Q-Former's 32 rows) whose 64 × 64 tiles cannot fill a
// GPU. A workgroup computes a 16 × 16 block with its 64 invocations split into 4 slices of K;
// each slice accumulates 4 × 4 outputs per invocation over every fourth 16-wide step of K, and
// the slices are summed through workgroup memory in a fixed order: deterministic, with 16x the
// workgroups of a 64 × 64 tiling.
//
// Any m, n, k (scalar loads, zero padding at the edges). Weights through weight()
// (common/weights_scalar_*.wgsl), the epilogue from common/gemm_epilogue.wgsl.

override TILE_M: u32 = 64u;  // rows of y per workgroup: 8, 16, 32 or 64
override TILE_N: u32 = 64u;  // columns of y per workgroup: 16, 32 or 64
const TILE_K: u32 = 16u;
const MAX_TILE: u32 = 64u;
const GRID: u32 = 8u;        // the 8 × 8 invocation grid of gemm_tiled
const MAX_PER: u32 = 8u;     // MAX_TILE / GRID
// Slab elements each invocation stages per K step.
override LOADS_A: u32 = TILE_M * TILE_K / 64u;
override LOADS_B: u32 = TILE_N * TILE_K / 64u;

var<workgroup> a_sh: array<f32, 1024>;  // [TILE_K][MAX_TILE]
var<workgroup> b_sh: array<f32, 1024>;  // [TILE_K][MAX_TILE]
var<workgroup> stats_sh: array<vec2<f32>, 64>;  // NORM_A statistics of the tile's rows

// x[row, col] normalised as NORM_A says, `stats` the row's; 0 outside x.
fn x_at(row: u32, col: u32, stats: vec2<f32>) -> f32 {
    if row < params.m && col < params.k {
        return normed(f32(x[row * params.k + col]), col, stats);
    }
    return 0.0;
}

// The NORM_A statistics of rows m0 .. m0 + rows, one row per invocation, into stats_sh.
fn tile_stats(m0: u32, rows: u32, lid: u32) {
    if lid < rows {
        stats_sh[lid] = vec2(0.0, 1.0);
        if NORM_A != 0u {
            stats_sh[lid] = x_row_stats(min(m0 + lid, params.m - 1u), params.k, params.norm_eps);
        }
    }
    workgroupBarrier();
}

fn w_at(row: u32, col: u32) -> f32 {
    if row < params.n && col < params.k {
        return weight(row * params.k + col);
    }
    return 0.0;
}

@compute @workgroup_size(64)
fn gemm_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let tiles_m = (params.m + TILE_M - 1u) / TILE_M;
    let tiles_n = (params.n + TILE_N - 1u) / TILE_N;
    // Uniform per workgroup: the barriers below stay in uniform control flow.
    let tile = workgroup_index(wid, groups);
    if tile >= tiles_m * tiles_n {
        return;
    }
    let origin = tile_origin(tile, tiles_m, TILE_M, TILE_N);
    let m0 = origin.x;
    let n0 = origin.y;
    let tx = lid % GRID;
    let ty = lid / GRID;
    let per_m = TILE_M / GRID;
    let per_n = TILE_N / GRID;

    tile_stats(m0, TILE_M, lid);
    var acc: array<f32, 64>;  // [MAX_PER][MAX_PER]
    var next_a: array<f32, 16>;
    var next_b: array<f32, 16>;
    // Slab element e of this invocation: row e / TILE_K, column e % TILE_K (16 invocations
    // read 16 consecutive k of one row).
    for (var i = 0u; i < LOADS_A; i++) {
        let e = lid + 64u * i;
        next_a[i] = x_at(m0 + e / TILE_K, e % TILE_K, stats_sh[e / TILE_K]);
    }
    for (var i = 0u; i < LOADS_B; i++) {
        let e = lid + 64u * i;
        next_b[i] = w_at(n0 + e / TILE_K, e % TILE_K);
    }
    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        for (var i = 0u; i < LOADS_A; i++) {
            let e = lid + 64u * i;
            a_sh[(e % TILE_K) * MAX_TILE + e / TILE_K] = next_a[i];
        }
        for (var i = 0u; i < LOADS_B; i++) {
            let e = lid + 64u * i;
            b_sh[(e % TILE_K) * MAX_TILE + e / TILE_K] = next_b[i];
        }
        workgroupBarrier();
        // Fetch the next slabs while this one is multiplied.
        let k1 = k0 + TILE_K;
        for (var i = 0u; i < LOADS_A; i++) {
            let e = lid + 64u * i;
            next_a[i] = x_at(m0 + e / TILE_K, k1 + e % TILE_K, stats_sh[e / TILE_K]);
        }
        for (var i = 0u; i < LOADS_B; i++) {
            let e = lid + 64u * i;
            next_b[i] = w_at(n0 + e / TILE_K, k1 + e % TILE_K);
        }
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a: array<f32, 8>;
            var b: array<f32, 8>;
            for (var i = 0u; i < per_m; i++) {
                a[i] = a_sh[kk * MAX_TILE + ty + GRID * i];
            }
            for (var j = 0u; j < per_n; j++) {
                b[j] = b_sh[kk * MAX_TILE + column(tx, j)];
            }
            for (var i = 0u; i < per_m; i++) {
                for (var j = 0u; j < per_n; j++) {
                    acc[i * MAX_PER + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < per_m; i++) {
        for (var j = 0u; j < per_n; j++) {
            let next = acc[i * MAX_PER + min(j + 1u, per_n - 1u)];
            store(m0 + ty + GRID * i, n0 + column(tx, j), acc[i * MAX_PER + j], next);
        }
    }
}

// Column j of invocation tx's block: the pairs 16q + 2tx + {0, 1}.
fn column(tx: u32, j: u32) -> u32 {
    return (j / 2u) * 16u + tx * 2u + j % 2u;
}

const SPLIT: u32 = 4u;      // slices of K per workgroup
const SPLIT_TILE: u32 = 16u;

@compute @workgroup_size(64)
fn gemm_splitk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let tiles_m = (params.m + SPLIT_TILE - 1u) / SPLIT_TILE;
    let tiles_n = (params.n + SPLIT_TILE - 1u) / SPLIT_TILE;
    let tile = workgroup_index(wid, groups);
    if tile >= tiles_m * tiles_n {
        return;
    }
    let origin = tile_origin(tile, tiles_m, SPLIT_TILE, SPLIT_TILE);
    let m0 = origin.x;
    let n0 = origin.y;
    tile_stats(m0, SPLIT_TILE, lid);
    let slice = lid / 16u;
    let t = lid % 16u;
    // This invocation's 4 × 4 block of the 16 × 16 tile.
    let r0 = m0 + (t / 4u) * 4u;
    let c0 = n0 + (t % 4u) * 4u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = slice * TILE_K; k0 < params.k; k0 += SPLIT * TILE_K) {
        let k_end = min(k0 + TILE_K, params.k);
        for (var kk = k0; kk < k_end; kk++) {
            let b = vec4(w_at(c0, kk), w_at(c0 + 1u, kk), w_at(c0 + 2u, kk), w_at(c0 + 3u, kk));
            for (var i = 0u; i < 4u; i++) {
                acc[i] += x_at(r0 + i, kk, stats_sh[r0 + i - m0]) * b;
            }
        }
    }
    // Partial sums of the 4 slices, added in slice order.
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let e = ((t / 4u) * 4u + i) * SPLIT_TILE + (t % 4u) * 4u + j;
            a_sh[slice * 256u + e] = acc[i][j];
        }
    }
    workgroupBarrier();
    for (var e = lid * 4u; e < lid * 4u + 4u; e++) {
        a_sh[e] = ((a_sh[e] + a_sh[256u + e]) + a_sh[512u + e]) + a_sh[768u + e];
    }
    workgroupBarrier();
    for (var e = lid * 4u; e < lid * 4u + 4u; e++) {
        let next = select(0.0, a_sh[e + 1u], e % SPLIT_TILE + 1u < SPLIT_TILE);
        store(m0 + e / SPLIT_TILE, n0 + e % SPLIT_TILE, a_sh[e], next);
    }
}
