//! CPU reference implementations: plain loops, f64 accumulation, no GPU types (this module
//! builds on `ops` only). Every kernel is tested against these.

mod attention;
mod compare;
mod compress;
mod linear;
mod norm;
mod patch;
mod rotary;

pub use attention::{
    MASK_FILL, MaskInput, attention, attention_combine, attention_partials, attention_scores, softmax_rows,
    weighted_sum,
};
pub use compare::{Comparison, F16_FLUSH, compare, compare_with, f16_rounding};
pub use compress::{
    anyres_pack, avg_pool, bilinear_half, pixel_shuffle, resize_bilinear, separated_tokens, tome, tome_step,
};
pub use linear::{epilogue, gelu, gelu_erf, gelu_tanh, layer_scale, linear, mlp, scale_rows, silu, swiglu_pairs};
pub use norm::{layer_norm, rms_norm};
pub use patch::{PatchInputs, patch_embed};
pub use rotary::rotate_pairs;
