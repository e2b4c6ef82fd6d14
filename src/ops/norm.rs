//! Normalisation over the last dimension.

use super::{Meta, check_arity, check_u32_elements, rows_cols};
use crate::error::{Error, Result};

/// `nn.LayerNorm` over the last dimension: biased variance, affine weight and bias. Inputs:
/// x `[.., D]`, weight `[D]`, bias `[D]`; with `per_head`, weight and bias `[d]` for every
/// `d`-chunk of the last dimension (Qwen2-VL's merger normalises each token of a 2×2 group
/// read as one `[.., 4C]` row). Output: x's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorm {
    /// Added to the variance.
    pub eps: f32,
    /// Normalise each weight-sized chunk of the last dimension on its own.
    pub per_head: bool,
}

impl LayerNorm {
    /// Name in errors and reports.
    pub const NAME: &'static str = "layer_norm";

    /// LayerNorm with this eps.
    pub fn new(eps: f32) -> Self {
        Self { eps, per_head: false }
    }

    /// The same norm over each weight-sized chunk of the last dimension.
    pub fn per_head(self) -> Self {
        Self { per_head: true, ..self }
    }

    /// Checks x, weight and bias; returns y.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_norm(Self::NAME, self.eps, self.per_head, inputs, &["weight", "bias"])
    }
}

/// The length each row is normalised over: the weight's.
pub fn norm_dim(inputs: &[&Meta]) -> usize {
    inputs[1].len()
}

/// As [`check_params`]; with `per_head` the parameters may instead be `[d]` for a `d` that
/// divides the last dimension.
fn check_norm(kernel: &'static str, eps: f32, per_head: bool, inputs: &[&Meta], params: &[&str]) -> Result<Meta> {
    check_arity(kernel, inputs, 1 + params.len())?;
    let (_, last) = rows_cols(&inputs[0].shape);
    let d = inputs[1].len();
    let chunked = per_head && d > 0 && last.is_multiple_of(d) && inputs[1..].iter().all(|m| m.shape.as_slice() == [d]);
    if !chunked {
        return check_params(kernel, eps, inputs, params);
    }
    check_u32_elements(kernel, "x", &inputs[0].shape)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::shape(kernel, "eps", "finite and >= 0", eps));
    }
    Ok(inputs[0].clone())
}

/// x `[.., D]` then one `[D]` parameter per name; a finite eps >= 0.
pub(crate) fn check_params(kernel: &'static str, eps: f32, inputs: &[&Meta], params: &[&str]) -> Result<Meta> {
    check_arity(kernel, inputs, 1 + params.len())?;
    check_u32_elements(kernel, "x", &inputs[0].shape)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::shape(kernel, "eps", "finite and >= 0", eps));
    }
    let (_, dim) = rows_cols(&inputs[0].shape);
    for (what, m) in params.iter().zip(&inputs[1..]) {
        if m.shape.as_slice() != [dim] {
            return Err(Error::shape(kernel, format!("{what} shape"), format!("[{dim}]"), format!("{:?}", m.shape)));
        }
    }
    Ok(inputs[0].clone())
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · w` (Llama, Qwen2.5-VL, Mistral),
/// or `· (1 + w)` with `unit_offset` (Gemma, whose weight is stored as an offset from 1).
/// Inputs: x `[.., D]`, weight `[D]`; with `per_head`, weight `[d]` for every `d`-chunk of the
/// last dimension (Mllama's q/k norms over `[.., heads·d]`). Output: x's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNorm {
    /// Added to the mean square.
    pub eps: f32,
    /// Scale by `1 + w` (Gemma) instead of `w`.
    pub unit_offset: bool,
    /// Normalise each weight-sized chunk of the last dimension on its own (per head).
    pub per_head: bool,
}

impl RmsNorm {
    /// Name in errors and reports.
    pub const NAME: &'static str = "rms_norm";

    /// `x / rms · w`.
    pub fn new(eps: f32) -> Self {
        Self { eps, unit_offset: false, per_head: false }
    }

    /// The same norm over each weight-sized chunk of the last dimension.
    pub fn per_head(self) -> Self {
        Self { per_head: true, ..self }
    }

    /// Checks x and weight; returns y.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_norm(Self::NAME, self.eps, self.per_head, inputs, &["weight"])
    }
}
