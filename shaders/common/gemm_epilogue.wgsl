// What the GEMM kernels (gemm.wgsl, gemm_portable.wgsl, gemm_tiled.wgsl, gemm_coop.wgsl) do
// to each row of x as they load it and to each accumulated output before storing it, chosen
// by override constants so one module serves every fused variant. On the way in:
//   x̂ = (x - mean) / std · norm_weight + norm_bias   (NORM_A = 1: the LayerNorm before a GEMM)
//   x̂ = x / rms · (NORM_OFFSET + norm_weight)         (NORM_A = 2: RMSNorm, Gemma's 1 + w)
// with each row's statistics computed by the kernel (normed() applies them). On the way out:
//   v = activation(acc + bias[col])                        (bias optional)
//   v = silu(acc_gate + bias) · (acc_up + bias)            (SWIGLU: columns 2i, 2i+1 -> i;
//                                                           ACTIVATION's GELU for silu if set)
//   v = row_scale[row] · v                                 (ROW_SCALE)
//   (v₂ⱼ, v₂ⱼ₊₁) → (v₂ⱼ c − v₂ⱼ₊₁ s, v₂ⱼ₊₁ c + v₂ⱼ s)         (ROTARY: after the bias, the first
//                                                           ROTARY columns in adjacent pairs,
//                                                           (c, s) = rotary[row, pair of head])
//   y = v | residual + v | residual + tanh(gate[0]) · v     (RESIDUAL 0 | 1 | 2)
//   y = residual + gate[col] · v                           (RESIDUAL 3: a per-column layer scale)
// The gate is read from a 1-element buffer, not baked in, so changing it needs no re-plan;
// tanh(0) = 0 makes a zero gate an exact identity, as upstream's init intends.
// Bias, gate and row scale are f32 parameters; the residual is an activation (Act). Needs a
// storage prelude and activations.wgsl in front. Also here: the Params every GEMM takes, y,
// and store(), which every kernel's results leave through.

struct Params {
    m: u32,  // rows of x (tokens, batch folded in)
    n: u32,  // output features (rows of w) of this dispatch
    k: u32,  // input features
    // y is [m, y_stride]; this dispatch computes weight rows y_col .. y_col + n (a weight too
    // large for one binding runs as several dispatches over row ranges of w).
    y_stride: u32,
    y_col: u32,
    norm_eps: f32,  // NORM_A's eps
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(5) var<storage, read_write> y: array<Act>;
@group(0) @binding(6) var<uniform> params: Params;

override HAS_BIAS: u32 = 1u;    // 1: add bias[col]
override ACTIVATION: u32 = 0u;  // see activate()
override SWIGLU: u32 = 0u;      // 1: weight rows interleave gate/up; output column = pair / 2
override ROW_SCALE: u32 = 0u;   // 1: multiply by row_scale[row]
override RESIDUAL: u32 = 0u;    // 0: none, 1: add residual[row, col], 2: tanh-gated, 3: layer scale

@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<Act>;  // an activation
@group(0) @binding(4) var<storage, read> gate: array<f32>;
@group(0) @binding(7) var<storage, read> row_scale: array<f32>;

override NORM_A: u32 = 0u;        // x normalised as loaded: 0 no, 1 LayerNorm, 2 RMSNorm
override NORM_OFFSET: f32 = 0.0;  // NORM_A = 2: 1 scales by 1 + w
@group(0) @binding(8) var<storage, read> norm_weight: array<f32>;
@group(0) @binding(9) var<storage, read> norm_bias: array<f32>;

override ROTARY: u32 = 0u;       // leading output columns turned in adjacent pairs; 0: none
override ROTARY_HEAD: u32 = 2u;  // dims per turned head
// [m, ROTARY_HEAD / 2, 2]: each row's (cos, sin) per pair of a head. Scalars, not vec2: an
// unused binding is bound to x, which may be a single 4-byte element.
@group(0) @binding(10) var<storage, read> rotary: array<f32>;

// The centre of a row for NORM_A: its mean (from `sum`) for LayerNorm, 0 for RMSNorm.
fn norm_centre(sum: f32, k: u32) -> f32 {
    return select(0.0, sum / f32(k), NORM_A == 1u);
}

// (centre, 1 / spread) of a row from its centre and Σ(x - centre)² (two passes, as nn.LayerNorm).
fn norm_stats(centre: f32, squares: f32, k: u32, eps: f32) -> vec2<f32> {
    return vec2(centre, inverseSqrt(squares / f32(k) + eps));
}

// Element `col` of a row with statistics `stats`, normalised as NORM_A says.
fn normed(v: f32, col: u32, stats: vec2<f32>) -> f32 {
    switch NORM_A {
        case 1u: { return (v - stats.x) * stats.y * norm_weight[col] + norm_bias[col]; }
        case 2u: { return v * stats.y * (NORM_OFFSET + norm_weight[col]); }
        default: { return v; }
    }
}

// Elements col .. col + 3 (col a multiple of 4).
fn normed4(v: vec4<f32>, col: u32, stats: vec2<f32>) -> vec4<f32> {
    return vec4(normed(v.x, col, stats), normed(v.y, col + 1u, stats), normed(v.z, col + 2u, stats),
                normed(v.w, col + 3u, stats));
}

fn biased(acc: f32, col: u32) -> f32 {
    if HAS_BIAS != 0u {
        return acc + bias[col];
    }
    return acc;
}

// Row scale and residual of the output element at flat index `out`, in row `row`, column `col`.
fn finish(value: f32, out: u32, row: u32, col: u32) -> f32 {
    var v = value;
    if ROW_SCALE != 0u {
        v *= row_scale[row];
    }
    switch RESIDUAL {
        case 1u: { v = f32(residual[out]) + v; }
        case 2u: { v = f32(residual[out]) + tanh_safe(gate[0]) * v; }
        case 3u: { v = f32(residual[out]) + gate[col] * v; }
        default: {}
    }
    return v;
}

// The output element at flat index `out` (row `row`) from weight row `col`.
fn epilogue(acc: f32, out: u32, row: u32, col: u32) -> f32 {
    return finish(activate(ACTIVATION, biased(acc, col)), out, row, col);
}

// SWIGLU: the output element at `out` from weight rows `col` (gate) and `col + 1` (up).
fn epilogue_swiglu(gate_acc: f32, up_acc: f32, out: u32, row: u32, col: u32) -> f32 {
    let g = biased(gate_acc, col);
    let gated = select(silu(g), activate(ACTIVATION, g), ACTIVATION != 0u);
    return finish(gated * biased(up_acc, col + 1u), out, row, col / 2u);
}

// Where weight row `col` of output row `row` is stored in y [m, y_stride]: SWIGLU stores
// each gate/up pair once.
fn out_index(row: u32, col: u32, y_stride: u32) -> u32 {
    return row * y_stride + select(col, col / 2u, SWIGLU != 0u);
}

// Stores the output of weight row `col` of this dispatch for x row `row` from its accumulator
// `v`; with SWIGLU an even `col` stores the pair (gate `v`, up `v_next`) once and an odd one
// nothing, and likewise a turned ROTARY pair is stored, both columns, by its even one.
// Nothing outside y.
fn store(row: u32, col: u32, v: f32, v_next: f32) {
    if row >= params.m || col >= params.n {
        return;
    }
    let c = params.y_col + col;
    let out = out_index(row, c, params.y_stride);
    if c < ROTARY {
        // A turned pair (c, c + 1): the even column stores both (y_col is even).
        if c % 2u == 0u {
            let t = 2u * (row * (ROTARY_HEAD / 2u) + (c % ROTARY_HEAD) / 2u);
            let a = biased(v, c);
            let b = biased(v_next, c + 1u);
            y[out] = Act(a * rotary[t] - b * rotary[t + 1u]);
            y[out + 1u] = Act(b * rotary[t] + a * rotary[t + 1u]);
        }
        return;
    }
    if SWIGLU != 0u {
        if col % 2u == 0u {
            y[out] = Act(epilogue_swiglu(v, v_next, out, row, c));
        }
    } else {
        y[out] = Act(epilogue(v, out, row, c));
    }
}

// The first (row, column) of output tile `tile` when tiles of `rows` x `cols` run down m first
// (`tiles_m` of them per column of tiles): the order every GEMM entry point walks its grid in.
fn tile_origin(tile: u32, tiles_m: u32, rows: u32, cols: u32) -> vec2<u32> {
    return vec2<u32>((tile % tiles_m) * rows, (tile / tiles_m) * cols);
}
