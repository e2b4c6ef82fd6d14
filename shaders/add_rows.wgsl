// y = x + t[row / group]: each f32 row of t added to `group` consecutive rows of x. Mllama's
// post-tile embedding (one row per tile, gated on the host) over the tile's tokens. One
// invocation per element, column fastest.

struct Params {
    cols: u32,   // elements per row
    group: u32,  // rows of x per row of t
    total: u32,  // elements of x and y
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<Act>;
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn add_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = invocation(wid, groups, WORKGROUP, lid);
    if e >= params.total {
        return;
    }
    let row = e / params.cols;
    y[e] = Act(f32(x[e]) + t[(row / params.group) * params.cols + e % params.cols]);
}
