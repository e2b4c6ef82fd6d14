// dst = src rounded to the activation storage type: f32 parameters (learnable queries,
// latents) entering a graph whose activations are f16. Round to nearest even, as PyTorch's
// `.half()` (values past f16's range: ±Inf on IEEE devices; WGSL leaves them to the device).

struct Params {
    len: u32,    // elements
    total: u32,  // elements written: len
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<Act>;
@group(0) @binding(2) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn convert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i < params.len {
        dst[i] = Act(src[i]);
    }
}
