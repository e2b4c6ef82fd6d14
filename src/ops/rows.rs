//! Fused sublayers: a whole transformer sublayer in one dispatch, its workgroups each owning
//! whole output rows, so that the output projection consumes its input a chunk at a time (never
//! stored) and a post-LayerNorm over the row needs no dispatch of its own.
//! [`AttentionRows`]: attention → output projection; [`MlpRows`]: `in_norm` → Linear →
//! activation → Linear. Both end in [`RowsEpilogue`]: `post_norm(y + b_out + skip)`.

use super::{Attention, GeluForm, InputNorm, Meta, check_arity, check_u32_elements, expect_shape, rows_cols};
use crate::error::{Error, Result};

/// The widest output row a workgroup owns: 64 invocations × 16 columns.
pub const MAX_WIDTH: usize = 1024;

/// What follows the output projection `y = x·w_outᵀ`: `post_norm(y + b_out + skip)`. Inputs,
/// after the producer's and `w_out` `[N, width]`: `b_out` `[N]`, `skip` (the output's shape),
/// the post-norm's weight and bias `[N]`, each when present.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowsEpilogue {
    /// Adds `b_out`.
    pub bias: bool,
    /// Adds the residual `skip`.
    pub skip: bool,
    /// `nn.LayerNorm(N, eps)` over each output row, last.
    pub post_norm: Option<f32>,
}

impl RowsEpilogue {
    /// `y + b_out + skip` (with or without the bias), no norm.
    pub fn residual(bias: bool) -> Self {
        Self { bias, skip: true, post_norm: None }
    }

    /// The same, then `nn.LayerNorm(eps)` over the row.
    pub fn post_norm(self, eps: f32) -> Self {
        Self { post_norm: Some(eps), ..self }
    }

    fn arity(self) -> usize {
        1 + usize::from(self.bias) + usize::from(self.skip) + 2 * usize::from(self.post_norm.is_some())
    }

    /// Where its inputs are when they start at `first`.
    pub fn slots(self, first: usize) -> EpilogueSlots {
        let mut next = first + 1..;
        let mut take = |present: bool| if present { next.next() } else { None };
        let bias = take(self.bias);
        let skip = take(self.skip);
        let (post_weight, post_bias) = (take(self.post_norm.is_some()), take(self.post_norm.is_some()));
        EpilogueSlots { w_out: first, bias, skip, post_weight, post_bias }
    }

    /// Checks the epilogue's inputs from `first` for an input `width` wide and an output of
    /// `out` (whose last dim is replaced by N); returns the output meta.
    fn check(self, kernel: &'static str, inputs: &[&Meta], first: usize, width: usize, out: &Meta) -> Result<Meta> {
        let slots = self.slots(first);
        let shape_of = |slot: Option<usize>| slot.map(|i| &inputs[i].shape);
        let (w, bias, skip) = (&inputs[slots.w_out].shape, shape_of(slots.bias), shape_of(slots.skip));
        let (weight, post_bias) = (shape_of(slots.post_weight), shape_of(slots.post_bias));
        if w.len() != 2 || w[1] != width {
            return Err(Error::shape(
                kernel,
                "w_out shape ([N, input width])",
                format!("[N, {width}]"),
                format!("{w:?}"),
            ));
        }
        let n = w[0];
        if n == 0 || n > MAX_WIDTH {
            return Err(Error::Limit {
                kernel,
                limit: "output width (w_out rows)",
                requested: n as u64,
                max: MAX_WIDTH as u64,
            });
        }
        let mut shape = out.shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        check_u32_elements(kernel, "output", &shape)?;
        for (what, s) in [("b_out", bias), ("post-norm weight", weight), ("post-norm bias", post_bias)] {
            if let Some(s) = s {
                expect_shape(kernel, what, s, &[n])?;
            }
        }
        if let Some(s) = skip {
            expect_shape(kernel, "skip (residual)", s, &shape)?;
        }
        if let Some(eps) = self.post_norm
            && !(eps.is_finite() && eps >= 0.0)
        {
            return Err(Error::shape(kernel, "post-norm eps", "finite and >= 0", eps));
        }
        Ok(Meta::new(&shape, out.dtype))
    }
}

/// The input indices of a [`RowsEpilogue`]'s operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpilogueSlots {
    /// The output projection's weight `[N, width]`.
    pub w_out: usize,
    /// `b_out` `[N]`.
    pub bias: Option<usize>,
    /// The residual.
    pub skip: Option<usize>,
    /// The post-norm's weight `[N]`.
    pub post_weight: Option<usize>,
    /// The post-norm's bias `[N]`.
    pub post_bias: Option<usize>,
}

impl EpilogueSlots {
    /// The input bound to each of the epilogue's bindings (w_out, b_out, skip, post-norm
    /// weight and bias), in binding order.
    pub fn bindings(self) -> [Option<usize>; 5] {
        [Some(self.w_out), self.bias, self.skip, self.post_weight, self.post_bias]
    }
}

/// An attention sublayer: `post_norm(attention(..)·w_outᵀ + b_out + skip)`. Inputs: the
/// attention's ([`Attention::arity`]), then the epilogue's (see [`RowsEpilogue`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionRows {
    /// The attention.
    pub attention: Attention,
    /// What follows its output projection.
    pub epilogue: RowsEpilogue,
}

impl AttentionRows {
    /// Name in errors and reports.
    pub const NAME: &'static str = "attention_rows";

    /// Number of inputs.
    pub fn arity(&self) -> usize {
        self.attention.arity() + self.epilogue.arity()
    }

    /// Input indices of the epilogue's operands.
    pub fn slots(&self) -> EpilogueSlots {
        self.epilogue.slots(self.attention.arity())
    }

    /// Checks the attention's inputs and the epilogue's; returns `[.., queries, N]`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(Self::NAME, inputs, self.arity())?;
        let first = self.attention.arity();
        let attended = self.attention.check(&inputs[..first])?;
        self.epilogue.check(Self::NAME, inputs, first, self.attention.width() as usize, &attended)
    }
}

/// A feed-forward sublayer: `post_norm(act(in_norm(x)·w_inᵀ + b_in)·w_outᵀ + b_out + skip)`.
/// Inputs: x `[.., K]`, `w_in` `[H, K]`, `b_in` `[H]`, the input norm's weight (and bias)
/// `[K]`, each when present, then the epilogue's. Both weights have one storage type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpRows {
    /// Adds `b_in`.
    pub in_bias: bool,
    /// After the first Linear.
    pub activation: Option<GeluForm>,
    /// Normalises each row of x on the way in (pre-LN blocks).
    pub input_norm: Option<InputNorm>,
    /// What follows the second Linear.
    pub epilogue: RowsEpilogue,
}

impl MlpRows {
    /// Name in errors and reports.
    pub const NAME: &'static str = "mlp_rows";

    /// Number of inputs before the epilogue's: x, w_in, b_in and the input norm's.
    pub fn front(&self) -> usize {
        2 + usize::from(self.in_bias) + self.input_norm.map_or(0, InputNorm::inputs)
    }

    /// Number of inputs.
    pub fn arity(&self) -> usize {
        self.front() + self.epilogue.arity()
    }

    /// Input indices of (x, w_in, b_in, norm weight, norm bias), then of the epilogue's.
    pub fn slots(&self) -> ([Option<usize>; 5], EpilogueSlots) {
        let mut next = 2..;
        let mut take = |present: bool| if present { next.next() } else { None };
        let bias = take(self.in_bias);
        let weight = take(self.input_norm.is_some());
        let norm_bias = take(matches!(self.input_norm, Some(InputNorm::Layer { .. })));
        ([Some(0), Some(1), bias, weight, norm_bias], self.epilogue.slots(self.front()))
    }

    /// (rows, K, hidden, N) of checked inputs.
    pub fn dims(&self, inputs: &[&Meta]) -> (usize, usize, usize, usize) {
        let (m, k) = rows_cols(&inputs[0].shape);
        let w_out = &inputs[self.front()].shape;
        (m, k, inputs[1].shape[0], w_out[0])
    }

    /// Checks x, the weights, biases, norms and skip; returns `[.., N]`.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        let name = Self::NAME;
        check_arity(name, inputs, self.arity())?;
        let (x, w) = (&inputs[0].shape, &inputs[1].shape);
        check_u32_elements(name, "x", x)?;
        check_u32_elements(name, "w_in", w)?;
        let (_, k) = rows_cols(x);
        if w.len() != 2 || w[1] != k {
            return Err(Error::shape(name, "w_in shape ([hidden, K])", format!("[hidden, {k}]"), format!("{w:?}")));
        }
        let ([_, _, bias, norm_weight, norm_bias], back) = self.slots();
        if let Some(b) = bias {
            expect_shape(name, "b_in", &inputs[b].shape, &[w[0]])?;
        }
        for i in [norm_weight, norm_bias].into_iter().flatten() {
            expect_shape(name, "input norm parameter", &inputs[i].shape, &[k])?;
        }
        if let Some(norm) = self.input_norm
            && !(norm.eps().is_finite() && norm.eps() >= 0.0)
        {
            return Err(Error::shape(name, "input norm eps", "finite and >= 0", norm.eps()));
        }
        let (w_in_type, w_out_type) = (inputs[1].dtype, inputs[back.w_out].dtype);
        if w_in_type != w_out_type {
            return Err(Error::DType {
                kernel: name,
                what: "w_out (one storage type for both weights)".into(),
                expected: w_in_type.to_string(),
                got: w_out_type.to_string(),
            });
        }
        self.epilogue.check(name, inputs, self.front(), w[0], inputs[0])
    }
}
