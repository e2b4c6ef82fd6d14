// Row gather: y[m, :] = x[index[m], :] over x read as rows of `cols` elements. Qwen2.5-VL's
// inverse window permutation (`hidden_states[argsort(window_index)]`) after its merger, whose
// rows are the window-ordered merge units. One invocation per output element, column fastest.

struct Params {
    cols: u32,   // elements per row
    rows: u32,   // rows of x: every index is below it
    total: u32,  // elements of y
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<Act>;
@group(0) @binding(3) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = invocation(wid, groups, WORKGROUP, lid);
    if e >= params.total {
        return;
    }
    // The table is a permutation built on the host; the clamp keeps a bad one inside x.
    let row = min(index[e / params.cols], params.rows - 1u);
    y[e] = x[row * params.cols + e % params.cols];
}
