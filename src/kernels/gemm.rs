//! GEMM with a fused epilogue (`shaders/gemm.wgsl`): `y = act(x·Wᵀ + b)` with `W` in
//! PyTorch's `nn.Linear` layout `[out, in]`.

use super::gelu::GeluForm;
use super::{Access, Caps, Cost, KernelId, KernelSpec, Meta, rows_cols};
use crate::error::{Error, Result};
use crate::shader;
use crate::tensor::DType;

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
    /// Row stride of y (all output features).
    pub y_stride: u32,
    /// First output column this dispatch writes.
    pub y_col: u32,
    /// Padding to 32 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
    /// Padding.
    pub _pad2: u32,
}

impl Params {
    /// The whole op in one dispatch.
    pub(crate) fn new(inputs: &[&Meta]) -> Self {
        let (m, k) = rows_cols(&inputs[0].shape);
        let n = inputs[1].shape[0] as u32;
        Self { m: m as u32, n, k: k as u32, y_stride: n, y_col: 0, _pad0: 0, _pad1: 0, _pad2: 0 }
    }

    /// The dispatch for weight rows (output columns) `start .. start + rows`.
    fn columns(self, start: usize, rows: usize) -> Self {
        Self { n: rows as u32, y_col: start as u32, ..self }
    }
}

/// Splits the weight `[n, k]` into row ranges whose bytes fit one storage binding and start at
/// offsets the device accepts: one range unless the weight is larger than the binding limit
/// (OpenFlamingo-9B's 16384 × 4096 f32 FFN weight is 256 MiB; lavapipe binds 128 MiB).
/// Returns, per dispatch, the byte range of the weight it binds (whole words: an odd count
/// of 2-byte weights reads 2 bytes past its rows, never used and still inside the buffer,
/// which is rounded up to 4) and its Params.
pub(crate) fn weight_chunks(
    inputs: &[&Meta],
    max_binding: u64,
    offset_alignment: u64,
) -> Result<Vec<((u64, u64), Params)>> {
    let whole = Params::new(inputs);
    let (n, k) = (whole.n as usize, whole.k as usize);
    let row_bytes = (k * inputs[1].dtype.size()) as u64;
    let mut rows = (max_binding / row_bytes) as usize;
    // Chunk starts must be multiples of the offset alignment: round rows down to a multiple
    // of alignment / gcd(row_bytes, alignment).
    let step = (offset_alignment / gcd(row_bytes, offset_alignment.max(1))) as usize;
    rows -= rows % step.max(1);
    if rows == 0 {
        return Err(Error::Limit {
            kernel: NAME,
            limit: "storage binding size in bytes (one weight row)",
            requested: row_bytes * step as u64,
            max: max_binding,
        });
    }
    Ok((0..n)
        .step_by(rows)
        .map(|start| {
            let count = rows.min(n - start);
            let bytes = (start as u64 * row_bytes, (count as u64 * row_bytes).next_multiple_of(4));
            (bytes, whole.columns(start, count))
        })
        .collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
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

const fn spec(
    id: KernelId,
    name: &'static str,
    fast: bool,
    prelude: &'static [&'static str],
    features: wgpu::Features,
) -> KernelSpec {
    KernelSpec {
        id,
        name,
        file: if fast { "gemm.wgsl" } else { "gemm_portable.wgsl" },
        prelude,
        body: if fast { shader::GEMM } else { shader::GEMM_PORTABLE },
        entry: if fast { "gemm" } else { "gemm_portable" },
        bindings: BINDINGS,
        workgroup_size: [WORKGROUP, 1, 1],
        params_size: std::mem::size_of::<Params>() as u64,
        features,
    }
}

const SUBGROUP: wgpu::Features = wgpu::Features::SUBGROUP;
const F16: wgpu::Features = wgpu::Features::SHADER_F16;

/// Subgroup-broadcast, vec4-load GEMM with f32 weights: the fast path.
pub const SPEC: KernelSpec = spec(
    KernelId::Gemm,
    "gemm",
    true,
    &[shader::WEIGHTS_VEC4_F32, shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    SUBGROUP,
);
/// The fast path over f16 weights.
pub const F16_SPEC: KernelSpec = spec(
    KernelId::GemmF16,
    "gemm_f16w",
    true,
    &[shader::WEIGHTS_VEC4_F16, shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    SUBGROUP.union(F16),
);
/// The fast path over bf16 weights.
pub const BF16_SPEC: KernelSpec = spec(
    KernelId::GemmBf16,
    "gemm_bf16w",
    true,
    &[shader::WEIGHTS_VEC4_BF16, shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    SUBGROUP,
);
/// Scalar GEMM for any `k` on any device, f32 weights.
pub const PORTABLE_SPEC: KernelSpec = spec(
    KernelId::GemmPortable,
    "gemm_portable",
    false,
    &[shader::WEIGHTS_SCALAR_F32, shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    wgpu::Features::empty(),
);
/// The portable GEMM over f16 weights.
pub const PORTABLE_F16_SPEC: KernelSpec = spec(
    KernelId::GemmPortableF16,
    "gemm_portable_f16w",
    false,
    &[shader::WEIGHTS_SCALAR_F16, shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    F16,
);
/// The portable GEMM over bf16 weights.
pub const PORTABLE_BF16_SPEC: KernelSpec = spec(
    KernelId::GemmPortableBf16,
    "gemm_portable_bf16w",
    false,
    &[shader::WEIGHTS_SCALAR_BF16, shader::ACTIVATIONS, shader::GEMM_EPILOGUE],
    wgpu::Features::empty(),
);

/// The kernel for the weight's dtype: the fast path when the device has subgroups of 8+
/// lanes and rows are whole vec4s, the portable one otherwise.
pub(crate) fn select(caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
    let (_, k) = rows_cols(&inputs[0].shape);
    let fast = caps.subgroups && caps.subgroup_min_size >= 8 && k % 4 == 0;
    match (fast, inputs[1].dtype) {
        (true, DType::F32) => &SPEC,
        (true, DType::F16) => &F16_SPEC,
        (true, DType::BF16) => &BF16_SPEC,
        (false, DType::F32) => &PORTABLE_SPEC,
        (false, DType::F16) => &PORTABLE_F16_SPEC,
        (false, DType::BF16) => &PORTABLE_BF16_SPEC,
    }
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

pub(crate) fn workgroups(spec: &KernelSpec, p: &Params) -> u64 {
    let (m, n) = (u64::from(p.m), u64::from(p.n));
    if matches!(spec.id, KernelId::Gemm | KernelId::GemmF16 | KernelId::GemmBf16) {
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
    let (activation, weight) = (inputs[0].dtype.size() as f64, inputs[1].dtype.size() as f64);
    Cost { flops: 2.0 * m * n * k, bytes: activation * (m * k + residual + m * n) + 4.0 * bias + weight * n * k }
}
