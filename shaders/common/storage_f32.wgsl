// Activations stored as f32. Kernels declare activation tensors as array<Act> (or
// array<Act4>), widen with f32() on load and narrow with Act() on store, so one body serves
// both storage types (storage_f16.wgsl is the other); arithmetic is always f32.
alias Act = f32;
alias Act4 = vec4<f32>;
// Largest finite Act: what a masked logit is stored as (open_flamingo fills with the
// dtype's -max). f32 literals at its edge are written in hex: Tint reads the decimal
// 3.40282347e+38 as a value past f32's range and rejects it.
const ACT_MAX: f32 = 0x1.fffffep+127f;
