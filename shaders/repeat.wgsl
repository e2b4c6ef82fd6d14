// y = x repeated `times` along a new leading dimension: y[i] = x[i % len(x)]. Broadcasts
// learnable queries / latents over the batch so later kernels see one dense tensor.

struct Params {
    len: u32,    // elements of x
    total: u32,  // elements of y = times · len
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Act>;
@group(0) @binding(1) var<storage, read_write> y: array<Act>;
@group(0) @binding(2) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn repeat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i < params.total {
        y[i] = x[i % params.len];
    }
}
