// Activations stored as f16 (f32 arithmetic; see storage_f32.wgsl); needs SHADER_F16.
enable f16;

alias Act = f16;
alias Act4 = vec4<f16>;
// Largest finite Act: what a masked logit is stored as (open_flamingo fills with the
// dtype's -max).
const ACT_MAX: f32 = 65504.0;
