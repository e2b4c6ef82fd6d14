//! Activation functions by name.

use crate::error::{Error, Result};

/// Which GELU formula. Mixing them up is the most common parity bug of connectors: they differ
/// by up to ~1e-3 at O(1) inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeluForm {
    /// `0.5·x·(1 + erf(x/√2))`, PyTorch's default (HF `gelu`).
    Erf,
    /// `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`, HF `gelu_pytorch_tanh`.
    Tanh,
    /// `x·sigmoid(1.702·x)`, HF `quick_gelu`: CLIP's and Qwen2-VL's vision towers.
    Quick,
}

impl GeluForm {
    /// Every form, for the fuzzer and the proptests to draw from.
    pub const ALL: [GeluForm; 3] = [GeluForm::Erf, GeluForm::Tanh, GeluForm::Quick];
    /// No activation or one of every form: what a fused epilogue may apply.
    pub const OR_NONE: [Option<GeluForm>; 4] = [None, Some(GeluForm::Erf), Some(GeluForm::Tanh), Some(GeluForm::Quick)];

    /// The form a Hugging Face `hidden_act` / `projector_hidden_act` string names; `field`
    /// names the config key in the error.
    pub fn from_hf(field: &str, name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(GeluForm::Erf),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(GeluForm::Tanh),
            "quick_gelu" => Ok(GeluForm::Quick),
            other => Err(Error::Config {
                field: field.into(),
                problem: format!(
                    "unsupported activation `{other}` (gelu, gelu_pytorch_tanh, gelu_new, gelu_fast, quick_gelu)"
                ),
            }),
        }
    }

    /// The code `activate()` in `shaders/common/activations.wgsl` takes.
    pub fn code(form: Option<GeluForm>) -> u32 {
        match form {
            None => 0,
            Some(GeluForm::Erf) => 1,
            Some(GeluForm::Tanh) => 2,
            Some(GeluForm::Quick) => 3,
        }
    }
}
