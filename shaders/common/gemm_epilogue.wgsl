// What the GEMM kernels (gemm.wgsl, gemm_portable.wgsl) do to each accumulated output before
// storing it, chosen by override constants so one module serves every fused variant:
//   v = activation(acc + bias[col])                        (bias optional)
//   y = v | residual + v | residual + tanh(gate[0]) · v     (RESIDUAL 0 | 1 | 2)
// The gate is read from a 1-element buffer, not baked in, so changing it needs no re-plan;
// tanh(0) = 0 makes a zero gate an exact identity, as upstream's init intends.
// Bias and gate are f32 parameters; the residual is an activation (Act). Needs a storage
// prelude and activations.wgsl in front.

override HAS_BIAS: u32 = 1u;    // 1: add bias[col]
override ACTIVATION: u32 = 0u;  // see activate()
override RESIDUAL: u32 = 0u;    // 0: none, 1: add residual[row, col], 2: tanh-gated residual

@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<Act>;  // an activation
@group(0) @binding(4) var<storage, read> gate: array<f32>;

// The output element at flat index `out` of the result, in column `col`.
fn epilogue(acc: f32, out: u32, col: u32) -> f32 {
    var v = acc;
    if HAS_BIAS != 0u {
        v += bias[col];
    }
    v = activate(ACTIVATION, v);
    switch RESIDUAL {
        case 1u: { v = f32(residual[out]) + v; }
        case 2u: { v = f32(residual[out]) + tanh_safe(gate[0]) * v; }
        default: {}
    }
    return v;
}
