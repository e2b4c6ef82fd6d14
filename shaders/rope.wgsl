// 2D rotary position embedding, one invocation per output element:
//   y[r, c] = x[r, c] · cos a + s · x[r, partner] · sin a     for c < rotated (heads · D)
//   y[r, c] = x[r, c]                                          past them
// with d = c mod D, half = D / 2, partner = d ± half in the same head, s = −1 below half and
// +1 above (`rotate_half`), and a = positions[r, axis] · inverse frequency of pair j = d mod
// half: axis 0 (the patch's row) for j < D / 4, 1 (its column) past it. The frequencies
// 1 / θ^(2k / dim) come from the host (Rope2d::frequency, f32 as upstream computes them):
// a shading language's pow may be far less exact (SwiftShader's was 1e-4 off at 10 radians).

struct Params {
    total: u32,     // elements of y
    width: u32,     // channels per row
    rotated: u32,   // leading channels rotated (heads · head_dim)
    head_dim: u32,
    inverse: array<vec4<f32>, 16>,  // pair j's inverse frequency at [j / 4][j % 4]
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
    let a = f32(positions[2u * row + axis]) * params.inverse[j / 4u][j % 4u];
    let below = d < half;
    let partner = select(i - half, i + half, below);
    let turned = select(1.0, -1.0, below) * f32(x[partner]);
    let sc = sin_cos(a);
    y[i] = Act(f32(x[i]) * sc.y + turned * sc.x);
}

// (sin a, cos a) to about 1e-7 for the angles rope meets (up to ~1000 radians): reduced by
// quarter turns (Cody-Waite, π/2 = 1.5703125 + 4.8382679489e-4: q · 1.5703125 is exact),
// then odd and even Taylor polynomials on [-π/4, π/4]. WGSL bounds its own sin and cos only
// to 2⁻¹¹ inside [-π, π], and SwiftShader's were 1e-4 off there.
fn sin_cos(a: f32) -> vec2<f32> {
    let q = round(a * 0.63661977);
    let r = (a - q * 1.5703125) - q * 4.8382679489e-4;
    let r2 = r * r;
    let s = r * (1.0 + r2 * (-1.6666667e-1 + r2 * (8.3333333e-3 + r2 * (-1.9841270e-4 + r2 * 2.7557319e-6))));
    let c = 1.0 + r2 * (-0.5 + r2 * (4.1666667e-2 + r2 * (-1.3888889e-3 + r2 * 2.4801587e-5)));
    switch ((i32(q) % 4) + 4) % 4 {
        case 1: { return vec2(c, -s); }
        case 2: { return vec2(-s, -c); }
        case 3: { return vec2(-c, s); }
        default: { return vec2(s, c); }
    }
}
