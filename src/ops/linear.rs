//! `nn.Linear` with a fused epilogue: `y = residual (+ tanh(gate)·) act(x·Wᵀ + b)`.

use super::{GeluForm, Meta, check_arity, check_u32_elements, rows_cols};
use crate::error::{Error, Result};

/// Name in errors and reports.
pub const NAME: &str = "linear";

/// What is added to the output after the activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Residual {
    /// Nothing.
    None,
    /// `residual + v`: pre- and post-LN residual streams.
    Add,
    /// `residual + tanh(gate)·v` with a 1-element `gate` tensor: Flamingo's gated blocks.
    Gated,
}

/// What happens to each accumulated output `acc` before it is stored:
/// `residual (+ tanh(gate)·) activation(acc + bias)`. The op's inputs: x `[.., K]`, the weight
/// `[N, K]` (PyTorch's `nn.Linear` layout), then in this order the bias `[N]`, the residual
/// (the output's shape) and the gate `[1]`, each when the epilogue has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epilogue {
    /// Adds a bias `[N]` (an input after the weight).
    pub bias: bool,
    /// GELU after the bias.
    pub activation: Option<GeluForm>,
    /// What is added last.
    pub residual: Residual,
}

impl Epilogue {
    /// `x·Wᵀ`
    pub const NONE: Epilogue = Epilogue { bias: false, activation: None, residual: Residual::None };
    /// `x·Wᵀ + b`
    pub const BIAS: Epilogue = Epilogue { bias: true, ..Self::NONE };

    /// `gelu(x·Wᵀ + b)`
    pub const fn bias_gelu(form: GeluForm) -> Epilogue {
        Epilogue { bias: true, activation: Some(form), residual: Residual::None }
    }

    /// The same epilogue followed by `residual`.
    pub const fn with_residual(self, residual: Residual) -> Epilogue {
        Epilogue { residual, ..self }
    }

    /// Whether the op takes a bias input.
    pub fn has_bias(self) -> bool {
        self.bias
    }

    /// Number of inputs the op takes: x, weight, then the optional ones.
    pub fn arity(self) -> usize {
        2 + usize::from(self.bias) + self.residual_inputs()
    }

    fn residual_inputs(self) -> usize {
        match self.residual {
            Residual::None => 0,
            Residual::Add => 1,
            Residual::Gated => 2,
        }
    }

    /// The input index of (x, weight, bias, residual, gate); `None` where absent.
    pub fn slots(self) -> [Option<usize>; 5] {
        let mut next = 2..;
        let mut take = |present: bool| if present { next.next() } else { None };
        let bias = take(self.bias);
        let residual = take(self.residual != Residual::None);
        let gate = take(self.residual == Residual::Gated);
        [Some(0), Some(1), bias, residual, gate]
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
        let (_, k) = rows_cols(x);
        if w[1] != k {
            return Err(Error::shape(NAME, "weight in-features (dim 1) vs x's last dim", k, w[1]));
        }
        let slots = self.slots();
        if let Some(b) = slots[2]
            && inputs[b].shape.as_slice() != [w[0]]
        {
            return Err(Error::shape(NAME, "bias shape", format!("[{}]", w[0]), format!("{:?}", inputs[b].shape)));
        }
        let mut out = x.clone();
        if let Some(last) = out.last_mut() {
            *last = w[0];
        }
        check_u32_elements(NAME, "output", &out)?;
        if let Some(r) = slots[3]
            && inputs[r].shape != out
        {
            let got = format!("{:?}", inputs[r].shape);
            return Err(Error::shape(NAME, "residual shape (the output's)", format!("{out:?}"), got));
        }
        if let Some(g) = slots[4]
            && inputs[g].len() != 1
        {
            return Err(Error::shape(NAME, "gate elements", 1, format!("{:?}", inputs[g].shape)));
        }
        Ok(Meta { shape: out, dtype: inputs[0].dtype })
    }
}

/// `(m, n, k)` of a linear op on these (checked) inputs.
pub fn dims(inputs: &[&Meta]) -> (usize, usize, usize) {
    let (m, k) = rows_cols(&inputs[0].shape);
    (m, inputs[1].shape[0], k)
}
