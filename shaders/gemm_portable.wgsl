// y[m, n] = epilogue(Σ_k x[m, k] · w[n, k] + bias[n]), like gemm.wgsl but for any k and any
// device: scalar loads, no subgroup operations. Each invocation owns a 16 × 4 output block:
// 20 loads per 64 multiply-adds (a 4 × 4 block needs 8 per 16), 25% faster on SwiftShader.

// x (common/gemm_input_scalar.wgsl) and y are activations (Act: f32 or f16); the weights
// (binding 1: f32, f16 or bf16 through weight()) come from a common/weights_scalar_*.wgsl;
// Params, y, the bias, residual, gate and row-scale bindings and store() from
// common/gemm_epilogue.wgsl.

const WORKGROUP: u32 = 64u;
const ROWS: u32 = 16u;
const COLS: u32 = 4u;

@compute @workgroup_size(64)
fn gemm_portable(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    // Blocks are numbered row-major over a (m/16) × (n/4) grid, 64 per workgroup.
    let blocks_n = (params.n + COLS - 1u) / COLS;
    let block = invocation(wid, groups, WORKGROUP, lid);
    let m0 = (block / blocks_n) * ROWS;
    let n0 = (block % blocks_n) * COLS;
    if m0 >= params.m {
        return;
    }
    let k = params.k;
    var stats: array<vec2<f32>, ROWS>;
    for (var i = 0u; i < ROWS; i++) {
        stats[i] = vec2(0.0, 1.0);
        if NORM_A != 0u {
            stats[i] = x_row_stats(min(m0 + i, params.m - 1u), k, params.norm_eps);
        }
    }
    var acc: array<vec4<f32>, ROWS>;
    for (var kk = 0u; kk < k; kk++) {
        let b = vec4(weight(min(n0, params.n - 1u) * k + kk), weight(min(n0 + 1u, params.n - 1u) * k + kk),
                     weight(min(n0 + 2u, params.n - 1u) * k + kk), weight(min(n0 + 3u, params.n - 1u) * k + kk));
        for (var i = 0u; i < ROWS; i++) {
            acc[i] += normed(f32(x[min(m0 + i, params.m - 1u) * k + kk]), kk, stats[i]) * b;
        }
    }
    // SWIGLU pairs columns (j, j + 1): n is even and n0 a multiple of 4, so pairs never split.
    for (var i = 0u; i < ROWS; i++) {
        for (var j = 0u; j < COLS; j += 1u + SWIGLU) {
            store(m0 + i, n0 + j, acc[i][j], acc[i][min(j + 1u, 3u)]);
        }
    }
}
