//! CPU reference implementations: plain loops, f64 accumulation, no GPU types. Every kernel is
//! tested against these.

mod compare;
mod linear;

pub use compare::{Comparison, compare};
pub use linear::{gelu, gelu_erf, gelu_tanh, linear, mlp};
