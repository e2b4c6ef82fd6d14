// Bilinear resampling along one axis, shared by downsample.wgsl (halving) and anyres.wgsl
// (anyres_max_N resizes).

// Source index pair and weight of the second along one axis (PyTorch's
// area_pixel_compute_source_index with align_corners=False, then the two taps).
fn taps(dst: u32, scale: f32, size: u32) -> vec3<f32> {
    // WGSL lets compilers fuse `p·scale - 0.5` into one FMA (NVIDIA does), which rounds the
    // coordinate differently from PyTorch's f32 and moves the weight by up to one ulp of src
    // (~4e-6 at 64): the max() between product and subtraction (a no-op, as p >= 0.5 when
    // downsampling) leaves nothing to fuse, so the product rounds first as upstream's does.
    let p = (f32(dst) + 0.5) * scale;
    let src = max(max(p, 0.5) - 0.5, 0.0);
    let i0 = min(u32(floor(src)), size - 1u);
    let i1 = min(i0 + 1u, size - 1u);
    return vec3(f32(i0), f32(i1), src - f32(i0));
}
