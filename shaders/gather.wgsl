// Row gather: y[m, :] = x[index[m], :] over x read as rows of `cols` elements, or zeros where
// index[m] is past x's rows. Qwen2.5-VL's inverse window permutation
// (`hidden_states[argsort(window_index)]`) after its merger, whose rows are the window-ordered
// merge units; Mllama's tiles padded to a multiple of 8 tokens with zeros. One invocation per
// output element, column fastest.

struct Params {
    cols: u32,   // elements per row
    rows: u32,   // rows of x: an index at or past it reads zeros
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
    let row = index[e / params.cols];
    // select() discards the clamped load for a zero row.
    let value = x[min(row, params.rows - 1u) * params.cols + e % params.cols];
    y[e] = select(Act(0.0), value, row < params.rows);
}
