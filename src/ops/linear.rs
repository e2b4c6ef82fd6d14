//! `nn.Linear` with a fused epilogue: `y = residual (+ tanh(gate)· | λ[col]·) scale[row] · act(x·Wᵀ + b)`,
//! or SwiGLU's `silu(gate) · up` from one GEMM over interleaved gate/up weights.

use super::{GeluForm, Meta, RotaryPairs, check_arity, check_u32_elements, rows_cols};
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "linear";

/// A norm applied to each row of x as the GEMM loads it (its statistics computed in the GEMM,
/// once per row per workgroup): the LayerNorm or RMSNorm that precedes a projection, without
/// a dispatch or a stored normalised copy of its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputNorm {
    /// `nn.LayerNorm(K, eps)` with weight and bias (two inputs).
    Layer {
        /// Added to the variance.
        eps: f32,
    },
    /// RMSNorm `x / rms · (offset + w)` with its weight (one input); `unit_offset` is Gemma's
    /// `1 + w`.
    Rms {
        /// Added to the mean square.
        eps: f32,
        /// Scale by `1 + w`.
        unit_offset: bool,
    },
}

impl InputNorm {
    /// One of each kind at `eps`: LayerNorm, RMSNorm, and RMSNorm of `1 + w`.
    pub fn each_kind(eps: f32) -> [InputNorm; 3] {
        [
            InputNorm::Layer { eps },
            InputNorm::Rms { eps, unit_offset: false },
            InputNorm::Rms { eps, unit_offset: true },
        ]
    }

    /// Its parameter inputs: weight (and bias for LayerNorm).
    pub fn inputs(self) -> usize {
        match self {
            InputNorm::Layer { .. } => 2,
            InputNorm::Rms { .. } => 1,
        }
    }

    /// Its eps.
    pub fn eps(self) -> f32 {
        match self {
            InputNorm::Layer { eps } | InputNorm::Rms { eps, .. } => eps,
        }
    }
}

impl Eq for InputNorm {}

impl std::hash::Hash for InputNorm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        self.eps().to_bits().hash(state);
        if let InputNorm::Rms { unit_offset, .. } = self {
            unit_offset.hash(state);
        }
    }
}

/// What is added to the output after the activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Residual {
    /// Nothing.
    None,
    /// `residual + v`: pre- and post-LN residual streams.
    Add,
    /// `residual + tanh(gate)·v` with a 1-element `gate` tensor: Flamingo's gated blocks.
    Gated,
    /// `residual + λ ⊙ v` with a per-column `λ` `[N]` (in the gate's slot): InternViT's layer
    /// scale (`lambda_1`, `lambda_2`).
    Scaled,
}

/// What happens to each accumulated output `acc` before it is stored:
/// `residual (+ tanh(gate)·) scale[row] · activation(acc + bias)`, and to x as it is loaded
/// (`input_norm`). The op's inputs: x `[.., K]`, the weight `[N, K]` (PyTorch's `nn.Linear`
/// layout), then in this order the bias `[N]`, the residual (the output's shape), the gate
/// `[1]`, the row scale (one f32 per output row), the rotary table and the input norm's
/// weight and bias `[K]`, each when the op has it.
///
/// With `swiglu` the weight's rows interleave two projections, `[gate₀, up₀, gate₁, up₁, ..]`
/// (see [`interleave_rows`]), and output column `i` is `silu(gate_i + b) · (up_i + b)`: Llama's
/// MLP `silu(gate_proj(x)) · up_proj(x)` as one GEMM whose output is `[.., N/2]`; with an
/// `activation` the gate takes that GELU instead (GEGLU: Pixtral's `hidden_act: gelu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epilogue {
    /// Adds a bias `[N]` (an input after the weight).
    pub bias: bool,
    /// GELU after the bias (with `swiglu`: on the gate, in place of SiLU).
    pub activation: Option<GeluForm>,
    /// Pairs of outputs become `silu(gate) · up` (`activation(gate) · up` with one).
    pub swiglu: bool,
    /// Multiplies each output row by its entry of a row-scale input (Mllama's
    /// `full_text_row_masked_out_mask`), before the residual.
    pub row_scale: bool,
    /// What is added last.
    pub residual: Residual,
    /// Normalises each row of x on the way in.
    pub input_norm: Option<InputNorm>,
    /// Turns adjacent output pairs of the leading heads by a per-row (cos, sin) table after
    /// the bias ([`RotaryPairs`]: the rotary towers' queries and keys). Only with a bias and
    /// an input norm: nothing else follows or precedes it in those towers.
    pub rotary: Option<RotaryPairs>,
}

impl Epilogue {
    /// `x·Wᵀ`
    pub const NONE: Epilogue = Epilogue {
        bias: false,
        activation: None,
        swiglu: false,
        row_scale: false,
        residual: Residual::None,
        input_norm: None,
        rotary: None,
    };
    /// `x·Wᵀ + b`
    pub const BIAS: Epilogue = Epilogue { bias: true, ..Self::NONE };
    /// `silu(x·W_gateᵀ) · (x·W_upᵀ)` over interleaved weight rows.
    pub const SWIGLU: Epilogue = Epilogue { swiglu: true, ..Self::NONE };

    /// `gelu(x·Wᵀ + b)`
    pub const fn bias_gelu(form: GeluForm) -> Epilogue {
        Epilogue { bias: true, activation: Some(form), ..Self::NONE }
    }

    /// The same epilogue followed by `residual`.
    pub const fn with_residual(self, residual: Residual) -> Epilogue {
        Epilogue { residual, ..self }
    }

    /// The same op normalising x's rows as it loads them.
    pub const fn with_input_norm(self, norm: InputNorm) -> Epilogue {
        Epilogue { input_norm: Some(norm), ..self }
    }

    /// The same op turning its leading heads' output pairs by a table input ([`RotaryPairs`]).
    pub const fn with_rotary(self, rotary: RotaryPairs) -> Epilogue {
        Epilogue { rotary: Some(rotary), ..self }
    }

    /// The same epilogue with a per-row scale before the residual.
    pub const fn with_row_scale(self) -> Epilogue {
        Epilogue { row_scale: true, ..self }
    }

    /// Whether the op takes a bias input.
    pub fn has_bias(self) -> bool {
        self.bias
    }

    /// Number of inputs the op takes: x, weight, then the optional ones.
    pub fn arity(self) -> usize {
        2 + usize::from(self.bias)
            + self.residual_inputs()
            + usize::from(self.row_scale)
            + usize::from(self.rotary.is_some())
            + self.input_norm.map_or(0, InputNorm::inputs)
    }

    fn residual_inputs(self) -> usize {
        match self.residual {
            Residual::None => 0,
            Residual::Add => 1,
            Residual::Gated | Residual::Scaled => 2,
        }
    }

    /// The input index of (x, weight, bias, residual, gate, row scale, rotary table, norm
    /// weight, norm bias); `None` where absent.
    pub fn slots(self) -> [Option<usize>; 9] {
        let mut next = 2..;
        let mut take = |present: bool| if present { next.next() } else { None };
        let bias = take(self.bias);
        let residual = take(self.residual != Residual::None);
        let gate = take(matches!(self.residual, Residual::Gated | Residual::Scaled));
        let row_scale = take(self.row_scale);
        let rotary = take(self.rotary.is_some());
        let norm_weight = take(self.input_norm.is_some());
        let norm_bias = take(matches!(self.input_norm, Some(InputNorm::Layer { .. })));
        [Some(0), Some(1), bias, residual, gate, row_scale, rotary, norm_weight, norm_bias]
    }

    /// Checks x `[.., K]`, weight `[N, K]`, bias `[N]`, residual and gate; returns y `[.., N]`
    /// (dtype: x's).
    pub fn check(self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(NAME, inputs, self.arity())?;
        let (x, w) = (&inputs[0].shape, &inputs[1].shape);
        check_u32_elements(NAME, "x", x)?;
        check_u32_elements(NAME, "weight", w)?;
        if w.len() != 2 {
            return Err(Error::shape(NAME, "weight rank ([out, in])", 2, w.len()));
        }
        let (m, k) = rows_cols(x);
        if w[1] != k {
            return Err(Error::shape(NAME, "weight in-features (dim 1) vs x's last dim", k, w[1]));
        }
        if self.swiglu && !w[0].is_multiple_of(2) {
            let what = "swiglu weight rows (interleaved gate/up pairs)";
            return Err(Error::shape(NAME, what, "an even count", format!("{} rows", w[0])));
        }
        let slots = self.slots();
        if let Some(b) = slots[2]
            && inputs[b].shape.as_slice() != [w[0]]
        {
            return Err(Error::shape(NAME, "bias shape", format!("[{}]", w[0]), format!("{:?}", inputs[b].shape)));
        }
        let mut out = x.clone();
        if let Some(last) = out.last_mut() {
            *last = if self.swiglu { w[0] / 2 } else { w[0] };
        }
        check_u32_elements(NAME, "output", &out)?;
        if let Some(r) = slots[3]
            && inputs[r].shape != out
        {
            let got = format!("{:?}", inputs[r].shape);
            return Err(Error::shape(NAME, "residual shape (the output's)", format!("{out:?}"), got));
        }
        if let Some(g) = slots[4] {
            let (what, want) = match self.residual {
                Residual::Scaled => ("layer scale shape (one per output column)", vec![out[out.len() - 1]]),
                _ => ("gate shape", vec![1]),
            };
            if inputs[g].shape != want {
                return Err(Error::shape(NAME, what, format!("{want:?}"), format!("{:?}", inputs[g].shape)));
            }
        }
        if let Some(r) = slots[5]
            && inputs[r].len() != m
        {
            return Err(Error::shape(NAME, "row scale elements (one per row)", m, format!("{:?}", inputs[r].shape)));
        }
        if let (Some(rotary), Some(t)) = (self.rotary, slots[6]) {
            let alone = self.activation.is_none() && !self.swiglu && !self.row_scale && self.residual == Residual::None;
            if !alone {
                let what =
                    "rotary epilogue (a bias and an input norm only; no activation, SwiGLU, row scale or residual)";
                return Err(Error::shape(NAME, what, "none of them", format!("{self:?}")));
            }
            rotary.check_table(NAME, m, w[0], inputs[t])?;
        }
        for slot in [slots[7], slots[8]].into_iter().flatten() {
            if inputs[slot].shape.as_slice() != [k] {
                let got = format!("{:?}", inputs[slot].shape);
                return Err(Error::shape(NAME, "input norm parameter shape", format!("[{k}]"), got));
            }
        }
        if let Some(norm) = self.input_norm
            && !(norm.eps().is_finite() && norm.eps() >= 0.0)
        {
            return Err(Error::shape(NAME, "input norm eps", "finite and >= 0", norm.eps()));
        }
        Ok(Meta { shape: out, dtype: inputs[0].dtype })
    }
}

/// `[gate₀, up₀, gate₁, up₁, ..]` from two `[n, k]` row-major weights: the layout
/// [`Epilogue::swiglu`] reads (one GEMM, both projections of a row in one tile).
pub fn interleave_rows<T: Copy>(gate: &[T], up: &[T], k: usize) -> Vec<T> {
    gate.chunks(k.max(1)).zip(up.chunks(k.max(1))).flat_map(|(g, u)| g.iter().chain(u).copied()).collect()
}

/// `(m, n, k)` of a linear op on these (checked) inputs.
pub fn dims(inputs: &[&Meta]) -> (usize, usize, usize) {
    let (m, k) = rows_cols(&inputs[0].shape);
    (m, inputs[1].shape[0], k)
}
