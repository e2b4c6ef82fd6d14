//! CPU reference implementations: plain loops, f64 accumulation, no GPU types. Every kernel is
//! tested against these.

mod attention;
mod compare;
mod compress;
mod linear;

pub use attention::{MASK_FILL, attention, attention_scores, layer_norm, softmax_rows, weighted_sum};
pub use compare::{Comparison, F16_FLUSH, compare, compare_with, f16_rounding};
pub use compress::{anyres_pack, downsample, separated_tokens, tome, tome_step};
pub use linear::{epilogue, gelu, gelu_erf, gelu_tanh, linear, mlp};
