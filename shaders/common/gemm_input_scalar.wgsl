// x of the scalar-load GEMMs (gemm_portable.wgsl, gemm_tiled.wgsl): [m, k] activations, read
// one at a time, and the input norm's statistics of a row. Needs a storage prelude and
// gemm_epilogue.wgsl in front.

@group(0) @binding(0) var<storage, read> x: array<Act>;

// (centre, 1 / spread) of row `row` of x (`k` wide) for NORM_A, in two passes.
fn x_row_stats(row: u32, k: u32, eps: f32) -> vec2<f32> {
    var sum = 0.0;
    if NORM_A == 1u {
        for (var c = 0u; c < k; c++) {
            sum += f32(x[row * k + c]);
        }
    }
    let centre = norm_centre(sum, k);
    var squares = 0.0;
    for (var c = 0u; c < k; c++) {
        let d = f32(x[row * k + c]) - centre;
        squares += d * d;
    }
    return norm_stats(centre, squares, k, eps);
}
