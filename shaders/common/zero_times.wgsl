// Zeroing a row as upstream does, by multiplying it by 0. Needs a `params` uniform with a u32
// `batch` (a run-time value the NaN is built from, so naga cannot fold it as a constant).

// What upstream's `0 · v` gives for a zeroed row: 0 for finite v, NaN for ±Inf or NaN. Written
// with integer tests because WGSL lets compilers assume finite values and fold 0 · v to 0.
fn zero_times(v: f32) -> f32 {
    let non_finite = (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
    return select(0.0, bitcast<f32>(0x7fc00000u | (params.batch & 0u)), non_finite);
}
