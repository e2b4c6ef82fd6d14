// The second half of the fused sublayers (attention_rows.wgsl, mlp_rows.wgsl): a workgroup of
// 64 invocations owns ROWS whole output rows. The first half leaves the projection's input in
// workgroup memory a chunk of columns at a time (a head's output, a block of hidden units);
// project_chunk multiplies each chunk into the output projection at once, so it is never
// stored. finish_rows then adds the bias and the residual and, owning whole rows, applies a
// post-LayerNorm over them (BERT's `LayerNorm(dense(x) + input)`) before the one store:
//   y = post_norm(x_chunks · w_outᵀ + b_out + skip)
// Invocation t owns output columns t, t + 64, .. (COLS of them) of every row. Needs a storage
// prelude, and `out` (the [rows, n] output, binding 4) from the kernel.

const ROWS: u32 = 8u;
const MAX_COLS: u32 = 16u;  // output columns per invocation: n ≤ 64 · MAX_COLS
const CHUNK: u32 = 128u;    // widest chunk of the projection's input

override COLS: u32 = 16u;        // ceil(n / 64)
override OUT_BIAS: u32 = 0u;     // 1: add b_out[col]
override SKIP: u32 = 0u;         // 1: add skip[row, col] (the residual)
override POST_NORM: u32 = 0u;    // 1: LayerNorm over each output row (post_weight, post_bias)
override WEIGHTS: u32 = 0u;      // storage of the weights: 0 f32, 1 f16, 2 bf16 (as u32 words)

@group(0) @binding(7) var<storage, read> w_out: array<u32>;  // [n, width of the input]
@group(0) @binding(8) var<storage, read> b_out: array<f32>;
@group(0) @binding(9) var<storage, read> skip: array<Act>;
@group(0) @binding(10) var<storage, read> post_weight: array<f32>;
@group(0) @binding(11) var<storage, read> post_bias: array<f32>;

// The chunk: element (row r, column c) at chunk4_sh[2c + r / 4][r % 4], so that one column's
// 8 rows are two vec4 loads.
var<workgroup> chunk4_sh: array<vec4<f32>, 256>;  // 2 · CHUNK
var<workgroup> row_sh: array<f32, 512>;           // 64 invocations × ROWS partial row sums
var<private> acc: array<vec4<f32>, 32>;           // column i's rows 0-3 at 2i, 4-7 at 2i + 1

// Weight element i of a buffer of WEIGHTS-typed values read as u32 words.
fn unpack_weight(word: u32, i: u32) -> f32 {
    switch WEIGHTS {
        case 1u: { return unpack2x16float(word)[i & 1u]; }
        case 2u: { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u)); }
        default: { return bitcast<f32>(word); }
    }
}

fn out_weight(i: u32) -> f32 {
    return unpack_weight(w_out[select(i, i / 2u, WEIGHTS != 0u)], i);
}

fn clear_rows() {
    for (var i = 0u; i < 2u * COLS; i++) {
        acc[i] = vec4(0.0);
    }
}

// Sets element (r, c) of the chunk.
fn set_chunk(r: u32, c: u32, v: f32) {
    chunk4_sh[2u * c + r / 4u][r % 4u] = v;
}

// acc += chunk[:, 0..width] · w_out[col, first .. first + width]ᵀ for each owned col: the
// chunk is columns first .. first + width of the projection's input, `in_width` wide.
fn project_chunk(lid: u32, width: u32, first: u32, in_width: u32, n: u32) {
    for (var i = 0u; i < COLS; i++) {
        let base = min(lid + 64u * i, n - 1u) * in_width + first;
        var lo = acc[2u * i];
        var hi = acc[2u * i + 1u];
        for (var c = 0u; c < width; c++) {
            let w = out_weight(base + c);
            lo += chunk4_sh[2u * c] * w;
            hi += chunk4_sh[2u * c + 1u] * w;
        }
        acc[2u * i] = lo;
        acc[2u * i + 1u] = hi;
    }
}

// Σ over the workgroup of each invocation's `part` of row r, for every r (row_sh partials,
// summed in a fixed order: deterministic).
fn row_totals(lid: u32, part: array<f32, 8>) -> array<f32, 8> {
    for (var r = 0u; r < ROWS; r++) {
        row_sh[lid * ROWS + r] = part[r];
    }
    workgroupBarrier();
    var total = array<f32, 8>();
    for (var t = 0u; t < 64u; t++) {
        for (var r = 0u; r < ROWS; r++) {
            total[r] += row_sh[t * ROWS + r];
        }
    }
    workgroupBarrier();
    return total;
}

// Adds bias and residual, applies the post-norm and stores rows row0 .. row0 + rows (rows ≤
// ROWS) of the [.., n] output. Call in uniform control flow.
fn finish_rows(lid: u32, row0: u32, rows: u32, n: u32, eps: f32) {
    var sums = array<f32, 8>();
    for (var i = 0u; i < COLS; i++) {
        let col = lid + 64u * i;
        for (var r = 0u; r < ROWS; r++) {
            var v = acc[2u * i + r / 4u][r % 4u];
            if col < n && r < rows {
                if OUT_BIAS != 0u {
                    v += b_out[col];
                }
                if SKIP != 0u {
                    v += f32(skip[(row0 + r) * n + col]);
                }
            } else {
                v = 0.0;
            }
            acc[2u * i + r / 4u][r % 4u] = v;
            sums[r] += v;
        }
    }
    var mean = array<f32, 8>();
    var inv_std = array<f32, 8>(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0);
    if POST_NORM != 0u {
        // Two passes, as nn.LayerNorm: the mean, then the mean square deviation from it.
        let totals = row_totals(lid, sums);
        var squares = array<f32, 8>();
        for (var r = 0u; r < ROWS; r++) {
            mean[r] = totals[r] / f32(n);
            for (var i = 0u; i < COLS; i++) {
                let d = acc[2u * i + r / 4u][r % 4u] - mean[r];
                squares[r] += select(0.0, d * d, lid + 64u * i < n);
            }
        }
        let spread = row_totals(lid, squares);
        for (var r = 0u; r < ROWS; r++) {
            inv_std[r] = inverseSqrt(spread[r] / f32(n) + eps);
        }
    }
    for (var i = 0u; i < COLS; i++) {
        let col = lid + 64u * i;
        for (var r = 0u; r < rows; r++) {
            if col < n {
                var v = acc[2u * i + r / 4u][r % 4u];
                if POST_NORM != 0u {
                    v = (v - mean[r]) * inv_std[r] * post_weight[col] + post_bias[col];
                }
                out[(row0 + r) * n + col] = Act(v);
            }
        }
    }
}
