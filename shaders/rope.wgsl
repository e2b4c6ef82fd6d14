// 2D rotary position embedding, one invocation per output element:
//   y[r, c] = x[r, c] · cos a + s · x[r, partner] · sin a     for c < rotated (heads · D)
//   y[r, c] = x[r, c]                                          past them
// with d = c mod D, half = D / 2, partner = d ± half in the same head, s = −1 below half and
// +1 above (`rotate_half`), and a = positions[r, axis] · inverse frequency of pair j = d mod
// half: axis 0 (the patch's row) for j < D / 4, 1 (its column) past it. The frequency is
// 1 / θ^(2k / dim), in f32 as upstream computes it: Qwen2-VL k = j mod D/4 over dim D / 2,
// Pixtral k = 2 (j mod D/4) + axis over dim D.

struct Params {
    total: u32,     // elements of y
    width: u32,     // channels per row
    rotated: u32,   // leading channels rotated (heads · head_dim)
    head_dim: u32,
    theta: f32,
    pixtral: u32,   // 1: Pixtral's interleaved frequencies, 0: Qwen2-VL's axial ones
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;  // [rows, 2]: row, column
@group(0) @binding(2) var<storage, read_write> y: array<Act>;
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn rope2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.total {
        return;
    }
    let c = i % params.width;
    if c >= params.rotated {
        y[i] = x[i];
        return;
    }
    let row = i / params.width;
    let d = c % params.head_dim;
    let half = params.head_dim / 2u;
    let quarter = params.head_dim / 4u;
    let j = d % half;
    let axis = select(0u, 1u, j >= quarter);
    let pair = j - axis * quarter;
    var k = pair;
    var dim = half;
    if params.pixtral == 1u {
        k = 2u * pair + axis;
        dim = params.head_dim;
    }
    let inverse = 1.0 / pow(params.theta, f32(2u * k) / f32(dim));
    let a = f32(positions[2u * row + axis]) * inverse;
    // Reduced to [-π, π] (Cody-Waite, 2π = 6.28125 + 0.00193530718: n · 6.28125 is exact), where
    // the shading languages bound cos and sin; upstream's angles reach ~100 radians.
    let n = round(a * 0.159154943);
    let reduced = (a - n * 6.28125) - n * 0.0019353071795864769;
    let below = d < half;
    let partner = select(i - half, i + half, below);
    let turned = select(1.0, -1.0, below) * f32(x[partner]);
    y[i] = Act(f32(x[i]) * cos(reduced) + turned * sin(reduced));
}
