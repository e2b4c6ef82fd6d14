// A whole feed-forward sublayer in one dispatch:
//   y = post_norm(act(in_norm(x)·w_inᵀ + b_in)·w_outᵀ + b_out + skip)
// BERT's (the Q-Former's) intermediate + output with its post-LayerNorm, open_flamingo's
// pre-LN `FeedForward` with its residual: where the unfused plan takes two GEMMs (and a norm).
//
// A workgroup owns ROWS = 8 rows of x. It computes the hidden activations 64 units at a
// time, invocation t unit t of the block for all 8 rows (x staged through workgroup memory a
// 64-column tile at a time, normalised on the way in), and hands each block to project_chunk
// (common/rows_epilogue.wgsl): the [rows, hidden] activations are never stored, and no work
// is repeated. Weights (both of one storage type) are read as u32 words.

struct Params {
    m: u32,       // rows of x
    n: u32,       // output width (rows of w_out)
    hidden: u32,  // hidden width (rows of w_in)
    k: u32,       // input width
    in_eps: f32,  // IN_NORM's eps
    post_eps: f32,
    _pad0: u32,
    _pad1: u32,
}

override IN_BIAS: u32 = 0u;        // 1: add b_in
override ACTIVATION: u32 = 0u;     // see activate() (activations.wgsl)
override IN_NORM: u32 = 0u;        // x normalised as loaded: 0 no, 1 LayerNorm, 2 RMSNorm
override IN_NORM_OFFSET: f32 = 0.0;  // IN_NORM = 2: 1 scales by 1 + w

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read> w_in: array<u32>;  // [hidden, k]
@group(0) @binding(2) var<storage, read> b_in: array<f32>;
@group(0) @binding(3) var<storage, read> in_norm_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<Act>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<storage, read> in_norm_bias: array<f32>;

const TILE: u32 = 64u;  // hidden units per block, and x columns per staged tile

// A tile of x: column c's 8 rows at x4_sh[2c], x4_sh[2c + 1].
var<workgroup> x4_sh: array<vec4<f32>, 128>;
var<workgroup> stats_sh: array<vec2<f32>, 8>;  // (centre, 1 / spread) per row

fn in_weight(i: u32) -> f32 {
    return unpack_weight(w_in[select(i, i / 2u, WEIGHTS != 0u)], i);
}

// IN_NORM's statistics of rows row0 .. row0 + 7 (clamped to the last row) into stats_sh:
// invocation t sums an eighth of row t / 8, in two passes as nn.LayerNorm.
fn in_norm_stats(lid: u32, row0: u32) {
    let r = lid / 8u;
    let base = min(row0 + r, params.m - 1u) * params.k;
    let eighth = (params.k + 7u) / 8u;
    let start = min((lid % 8u) * eighth, params.k);
    let end = min(start + eighth, params.k);
    var sum = 0.0;
    for (var c = start; c < end; c++) {
        sum += f32(x[base + c]);
    }
    var part = array<f32, 8>();
    part[r] = sum;
    let sums = row_totals(lid, part);
    let centre = select(0.0, sums[r] / f32(params.k), IN_NORM == 1u);
    var squares = 0.0;
    for (var c = start; c < end; c++) {
        let d = f32(x[base + c]) - centre;
        squares += d * d;
    }
    part[r] = squares;
    let spread = row_totals(lid, part);
    if lid % 8u == 0u {
        stats_sh[r] = vec2(centre, inverseSqrt(spread[r] / f32(params.k) + params.in_eps));
    }
    workgroupBarrier();
}

// x[row, col], row r of the block, as the first GEMM reads it.
fn x_in(r: u32, row: u32, col: u32) -> f32 {
    let v = f32(x[row * params.k + col]);
    let s = stats_sh[r];
    switch IN_NORM {
        case 1u: { return (v - s.x) * s.y * in_norm_weight[col] + in_norm_bias[col]; }
        case 2u: { return v * s.y * (IN_NORM_OFFSET + in_norm_weight[col]); }
        default: { return v; }
    }
}

@compute @workgroup_size(64)
fn mlp_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let group = workgroup_index(wid, groups);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if group * ROWS >= params.m {
        return;
    }
    let row0 = group * ROWS;
    if IN_NORM != 0u {
        in_norm_stats(lid, row0);
    }
    clear_rows();
    for (var h0 = 0u; h0 < params.hidden; h0 += TILE) {
        // Hidden unit h0 + lid of the 8 rows (a clamped unit past the last is never used).
        let unit = min(h0 + lid, params.hidden - 1u) * params.k;
        var lo = vec4(0.0);
        var hi = vec4(0.0);
        for (var k0 = 0u; k0 < params.k; k0 += TILE) {
            let col = k0 + lid;
            var tile = array<f32, 8>();
            for (var r = 0u; r < ROWS; r++) {
                if col < params.k {
                    tile[r] = x_in(r, min(row0 + r, params.m - 1u), col);
                }
            }
            x4_sh[2u * lid] = vec4(tile[0], tile[1], tile[2], tile[3]);
            x4_sh[2u * lid + 1u] = vec4(tile[4], tile[5], tile[6], tile[7]);
            workgroupBarrier();
            let width = min(TILE, params.k - k0);
            for (var c = 0u; c < width; c++) {
                let w = in_weight(unit + k0 + c);
                lo += x4_sh[2u * c] * w;
                hi += x4_sh[2u * c + 1u] * w;
            }
            workgroupBarrier();
        }
        let b = select(0.0, b_in[min(h0 + lid, params.hidden - 1u)], IN_BIAS != 0u);
        for (var r = 0u; r < ROWS; r++) {
            let pre = select(hi[r % 4u], lo[r % 4u], r < 4u) + b;
            set_chunk(r, lid, activate(ACTIVATION, pre));
        }
        workgroupBarrier();
        project_chunk(lid, min(TILE, params.hidden - h0), h0, params.hidden, params.n);
        workgroupBarrier();
    }
    finish_rows(lid, row0, min(ROWS, params.m - row0), params.n, params.post_eps);
}
