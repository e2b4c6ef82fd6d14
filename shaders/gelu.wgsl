// Standalone elementwise GELU: y = gelu(x). Exists as the unfused baseline that the fused
// GEMM epilogue is measured against.

struct Params {
    len: u32,    // elements
    total: u32,  // elements written: len
    _pad0: u32,
    _pad1: u32,
}

override GELU_FORM: u32 = 1u; // see activate(): 1 exact (erf), 2 tanh approximation, 3 quick

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read_write> y: array<Act>;
@group(0) @binding(2) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i >= params.len {
        return;
    }
    y[i] = Act(activate(GELU_FORM, f32(x[i])));
}
