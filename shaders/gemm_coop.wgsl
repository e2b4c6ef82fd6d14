// y[m, n] = epilogue(Σ_k x[m, k] · w[n, k] + bias[n]) on cooperative matrices (tensor cores,
// Metal simdgroup matrices): f16 operands, f32 accumulation, through wgpu's experimental
// `wgpu_cooperative_matrix` (coop_mat16x16). Needs EXPERIMENTAL_COOPERATIVE_MATRIX, SHADER_F16,
// f16 weights, and subgroups of exactly 32 lanes: a workgroup is one subgroup.
//
// A workgroup computes a 32 × 32 block of y as 2 × 2 fragments of 16 × 16. Each 16-wide K step
// stages x (converted to f16: with f32 activations that rounding is the caller's opt-in, see
// the README's error model) and w in workgroup memory with zero padding, so any m, n, k
// work; then the fused epilogue runs on the f32 block staged once more in workgroup memory.

enable f16;
enable wgpu_cooperative_matrix;

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read> w: array<f16>;

const LANES: u32 = 32u;
const BLOCK: u32 = 32u;
const FRAG: u32 = 16u;

var<workgroup> a_sh: array<f16, 512>;   // 32 rows × 16 k, row-major
var<workgroup> b_sh: array<f16, 512>;   // 16 k × 32 columns, row-major
var<workgroup> c_sh: array<f32, 1024>;  // the 32 × 32 block, row-major

@compute @workgroup_size(32)
fn gemm_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let tiles_m = (params.m + BLOCK - 1u) / BLOCK;
    let tiles_n = (params.n + BLOCK - 1u) / BLOCK;
    // Uniform per workgroup (= subgroup): cooperative operations need uniform control flow.
    // `workgroup_index` (common/grid.wgsl) written out: naga's uniformity analysis does not
    // carry uniformity through a function's result.
    let tile = wid.y * groups.x + wid.x;
    if tile >= tiles_m * tiles_n {
        return;
    }
    let origin = tile_origin(tile, tiles_m, BLOCK, BLOCK);
    let m0 = origin.x;
    let n0 = origin.y;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < params.k; k0 += FRAG) {
        // Invocation lid stages row lid of the x slab and column lid of the w slab.
        let row = m0 + lid;
        let col = n0 + lid;
        for (var kk = 0u; kk < FRAG; kk++) {
            let k = k0 + kk;
            let in_x = row < params.m && k < params.k;
            let in_w = col < params.n && k < params.k;
            a_sh[lid * FRAG + kk] = select(f16(0.0), f16(x[min(row * params.k + k, arrayLength(&x) - 1u)]), in_x);
            b_sh[kk * BLOCK + lid] = select(f16(0.0), w[min(col * params.k + k, arrayLength(&w) - 1u)], in_w);
        }
        workgroupBarrier();
        let a_stride = FRAG;
        let b_stride = BLOCK;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_sh[0], a_stride);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_sh[256], a_stride);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_sh[0], b_stride);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_sh[16], b_stride);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        workgroupBarrier();
    }
    let c_stride = BLOCK;
    coopStoreT(c00, &c_sh[0], c_stride);
    coopStoreT(c01, &c_sh[16], c_stride);
    coopStoreT(c10, &c_sh[512], c_stride);
    coopStoreT(c11, &c_sh[528], c_stride);
    workgroupBarrier();
    // Each invocation finishes one row of the block, pairs of columns at a time.
    for (var c = 0u; c < BLOCK; c += 2u) {
        let e = lid * BLOCK + c;
        store(m0 + lid, n0 + c, c_sh[e], c_sh[e + 1u]);
        if SWIGLU == 0u {
            store(m0 + lid, n0 + c + 1u, c_sh[e + 1u], 0.0);
        }
    }
}
