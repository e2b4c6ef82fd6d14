//! GEMM with a fused epilogue (`shaders/gemm.wgsl`): `y = act(x·Wᵀ + b)` with `W` in
//! PyTorch's `nn.Linear` layout `[out, in]`.

use super::gelu::GeluForm;
use super::{Access, Caps, Cost, KernelId, KernelSpec, Meta, rows_cols};
use crate::error::{Error, Result};
use crate::shader;

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
/// `residual (+ tanh(gate)·) activation(acc + bias)`. The optional inputs follow x and the
/// weight in this order: bias `[N]`, residual (the output's shape), gate `[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epilogue {
    pub bias: bool,
    pub activation: Option<GeluForm>,
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

    /// For each optional binding (bias, residual, gate), the input index bound to it.
    pub(crate) fn read_slots(self) -> Vec<Option<usize>> {
        let mut next = 2..;
        let mut take = |present: bool| if present { next.next() } else { None };
        let bias = take(self.bias);
        let residual = take(self.residual != Residual::None);
        let gate = take(self.residual == Residual::Gated);
        vec![Some(0), Some(1), bias, residual, gate]
    }
}

/// Name in errors and reports.
pub const NAME: &str = "linear";

/// Mirrors `Params` in `shaders/gemm.wgsl` and `shaders/gemm_portable.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of x (all leading dims folded).
    pub m: u32,
    /// Output features.
    pub n: u32,
    /// Input features.
    pub k: u32,
    pub _pad: u32,
}

impl Params {
    pub(crate) fn new(inputs: &[&Meta]) -> Self {
        let (m, k) = rows_cols(&inputs[0].shape);
        Self { m: m as u32, n: inputs[1].shape[0] as u32, k: k as u32, _pad: 0 }
    }
}

const WORKGROUP: u32 = 64;
/// Outputs per workgroup of `gemm.wgsl`: 16 rows × (64 invocations · 4 columns).
const TILE_M: u64 = 16;
const TILE_N: u64 = 64 * 4;
/// `gemm_portable.wgsl`: 4 × 4 blocks, 64 per workgroup.
const BLOCK: u64 = 4;

/// x, weight, bias, residual, gate, y, params.
const BINDINGS: &[Access] =
    &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];

/// Subgroup-broadcast, vec4-load GEMM: the fast path.
pub const SPEC: KernelSpec = KernelSpec {
    id: KernelId::Gemm,
    name: "gemm",
    file: "gemm.wgsl",
    prelude: &[shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    body: shader::GEMM,
    entry: "gemm",
    bindings: BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::SUBGROUP,
};

/// Scalar GEMM for any `k` on any device.
pub const PORTABLE_SPEC: KernelSpec = KernelSpec {
    id: KernelId::GemmPortable,
    name: "gemm_portable",
    file: "gemm_portable.wgsl",
    prelude: &[shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    body: shader::GEMM_PORTABLE,
    entry: "gemm_portable",
    bindings: BINDINGS,
    workgroup_size: [WORKGROUP, 1, 1],
    params_size: std::mem::size_of::<Params>() as u64,
    features: wgpu::Features::empty(),
};

/// The fast kernel when the device has subgroups of 8+ lanes and rows are whole vec4s.
pub(crate) fn select(caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
    let (_, k) = rows_cols(&inputs[0].shape);
    if caps.subgroups && caps.subgroup_min_size >= 8 && k % 4 == 0 { &SPEC } else { &PORTABLE_SPEC }
}

pub(crate) fn overrides(epilogue: Epilogue) -> Vec<(&'static str, f64)> {
    let residual = match epilogue.residual {
        Residual::None => 0.0,
        Residual::Add => 1.0,
        Residual::Gated => 2.0,
    };
    vec![
        ("HAS_BIAS", f64::from(u8::from(epilogue.bias))),
        ("ACTIVATION", super::gelu::activation_code(epilogue.activation)),
        ("RESIDUAL", residual),
    ]
}

/// Inputs: x `[.., K]`, weight `[N, K]`, and bias `[N]` when the epilogue has one.
/// Output: `[.., N]`.
pub(crate) fn check(epilogue: Epilogue, inputs: &[&Meta]) -> Result<Meta> {
    let name = NAME;
    super::check_arity(name, inputs, epilogue.arity())?;
    let (x, w) = (&inputs[0].shape, &inputs[1].shape);
    super::check_u32_elements(name, "x", x)?;
    super::check_u32_elements(name, "weight", w)?;
    if w.len() != 2 {
        return Err(Error::shape(name, "weight rank ([out, in])", 2, w.len()));
    }
    let (_, k) = rows_cols(x);
    if w[1] != k {
        return Err(Error::shape(name, "weight in-features (dim 1) vs x's last dim", k, w[1]));
    }
    if epilogue.has_bias() {
        let b = &inputs[2].shape;
        if b.as_slice() != [w[0]] {
            return Err(Error::shape(name, "bias shape", format!("[{}]", w[0]), format!("{b:?}")));
        }
    }
    let mut out = x.clone();
    *out.last_mut().unwrap_or(&mut 0) = w[0];
    super::check_u32_elements(name, "output", &out)?;
    let slots = epilogue.read_slots();
    if let Some(r) = slots[3]
        && inputs[r].shape != out
    {
        return Err(Error::shape(
            name,
            "residual shape (the output's)",
            format!("{out:?}"),
            format!("{:?}", inputs[r].shape),
        ));
    }
    if let Some(g) = slots[4]
        && inputs[g].shape.iter().product::<usize>() != 1
    {
        return Err(Error::shape(name, "gate elements", 1, format!("{:?}", inputs[g].shape)));
    }
    Ok(Meta { shape: out, dtype: inputs[0].dtype })
}

pub(crate) fn workgroups(spec: &KernelSpec, inputs: &[&Meta]) -> u64 {
    let p = Params::new(inputs);
    let (m, n) = (u64::from(p.m), u64::from(p.n));
    if spec.id == KernelId::Gemm {
        m.div_ceil(TILE_M) * n.div_ceil(TILE_N)
    } else {
        (m.div_ceil(BLOCK) * n.div_ceil(BLOCK)).div_ceil(u64::from(WORKGROUP))
    }
}

pub(crate) fn cost(epilogue: Epilogue, inputs: &[&Meta]) -> Cost {
    let p = Params::new(inputs);
    let (m, n, k) = (f64::from(p.m), f64::from(p.n), f64::from(p.k));
    let bias = if epilogue.has_bias() { n } else { 0.0 };
    let residual = if epilogue.residual == Residual::None { 0.0 } else { m * n };
    Cost { flops: 2.0 * m * n * k, bytes: 4.0 * (m * k + n * k + bias + residual + m * n) }
}
