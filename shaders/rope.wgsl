// Adjacent channel pairs turned by a per-row table, one invocation per output element:
//   y[r, c] = x[r, c] · cos a − x[r, c + 1] · sin a     c even, below rotated (heads · D)
//   y[r, c] = x[r, c] · cos a + x[r, c − 1] · sin a     c odd, below rotated
//   y[r, c] = x[r, c]                                    past them
// with (cos a, sin a) = table[r, (c mod D) / 2], computed on the host (Rope2d::table): a
// shading language's sin and cos may be far less exact (SwiftShader's were 1e-4 off at 10
// radians). The towers' QKV GEMM does the same in its epilogue; this is its unfused form.

struct Params {
    total: u32,     // elements of y
    width: u32,     // channels per row
    rotated: u32,   // leading channels turned (heads · head_dim)
    head_dim: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;  // [rows, head_dim / 2]
@group(0) @binding(2) var<storage, read_write> y: array<Act>;
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn rotary_pairs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
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
    let turn = table[row * (params.head_dim / 2u) + (c % params.head_dim) / 2u];
    let even = c % 2u == 0u;
    let partner = f32(x[select(i - 1u, i + 1u, even)]);
    y[i] = Act(f32(x[i]) * turn.x + select(partner, -partner, even) * turn.y);
}
