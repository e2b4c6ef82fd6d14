// Microbenchmarks for an adapter's measured ceilings, so every bench row can say how close it
// is to the limit of the device it ran on (a roofline):
//   fma_peak        8 independent vec4 FMA chains per invocation (32 FMAs per iteration, no
//                   memory traffic); the result is stored so the compiler cannot drop it
//   copy_bandwidth  dst = src in vec4s, one per invocation

struct Params {
    iterations: u32,  // fma_peak: loop trips per invocation
    len: u32,         // vec4 elements of src / dst
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> params: Params;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn fma_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    let seed = f32(i & 1023u) * 1e-6;
    var a0 = vec4(seed); var a1 = a0 + 0.1; var a2 = a0 + 0.2; var a3 = a0 + 0.3;
    var a4 = a0 + 0.4; var a5 = a0 + 0.5; var a6 = a0 + 0.6; var a7 = a0 + 0.7;
    let m = vec4(0.9999999);
    let c = vec4(1e-7);
    for (var k = 0u; k < params.iterations; k++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    dst[i % params.len] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

@compute @workgroup_size(256)
fn copy_bandwidth(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, groups, WORKGROUP, lid);
    if i < params.len {
        dst[i] = src[i];
    }
}
