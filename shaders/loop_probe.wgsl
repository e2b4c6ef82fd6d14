// Counts loop iterations. Mesa 22.3's lavapipe silently stops a loop after ~65,535 iterations
// per invocation; the probe makes that visible as a wrong count instead of wrong results.

struct Params {
    outer: u32,  // iterations of the outer loop
    inner: u32,  // iterations of the inner loop per outer iteration
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> counts: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(1)
fn loop_probe() {
    var n = 0u;
    // An LCG step per iteration, so the compiler cannot fold the loops into a product.
    var state = 1u;
    for (var i = 0u; i < params.outer; i++) {
        for (var j = 0u; j < params.inner; j++) {
            n += 1u;
            state = state * 1664525u + 1013904223u;
        }
    }
    counts[0] = n;
    counts[1] = state;
}
