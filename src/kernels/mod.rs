//! The kernel registry: one module per shader file, each with its `Params` (mirroring the WGSL
//! struct), `SPEC`, shape `check`, `cost` and dispatch size. [`Op`] is what graph nodes hold.

pub mod gelu;
pub mod gemm;
pub mod loop_probe;

use crate::error::{Error, Result};
use crate::shader;
use crate::tensor::DType;

/// How a binding is accessed; the bind-group layout and the naga reflection test derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>` holding the kernel's `Params`.
    Uniform,
}

/// Every kernel the crate ships. Adding a variant forces every match below to handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelId {
    /// `x·Wᵀ (+ b) (then GELU)`, subgroup fast path.
    Gemm,
    /// The same for any `k` and any device.
    GemmPortable,
    /// Elementwise GELU.
    Gelu,
    /// Driver loop-count probe.
    LoopProbe,
}

impl KernelId {
    /// All kernels, for the shader tests, the CLI and the benches.
    pub const ALL: [KernelId; 4] = [KernelId::Gemm, KernelId::GemmPortable, KernelId::Gelu, KernelId::LoopProbe];

    /// The kernel's static description.
    pub fn spec(self) -> &'static KernelSpec {
        match self {
            KernelId::Gemm => &gemm::SPEC,
            KernelId::GemmPortable => &gemm::PORTABLE_SPEC,
            KernelId::Gelu => &gelu::SPEC,
            KernelId::LoopProbe => &loop_probe::SPEC,
        }
    }
}

/// What a kernel looks like from the host: source, entry point, bindings, workgroup size and
/// the byte size of its `Params` uniform. `tests/shaders.rs` checks all of it against naga's
/// reflection of the WGSL.
#[derive(Debug)]
pub struct KernelSpec {
    pub id: KernelId,
    pub name: &'static str,
    /// Path under `shaders/`, for messages.
    pub file: &'static str,
    pub prelude: &'static [&'static str],
    pub body: &'static str,
    pub entry: &'static str,
    pub bindings: &'static [Access],
    pub workgroup_size: [u32; 3],
    pub params_size: u64,
    /// Device features the shader needs.
    pub features: wgpu::Features,
}

impl KernelSpec {
    /// Full WGSL source: prelude then body.
    pub fn source(&self) -> String {
        shader::assemble(self.prelude, self.body)
    }
}

/// Work of one dispatch, for GFLOP/s and GB/s.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Floating-point operations (an FMA counts 2).
    pub flops: f64,
    /// Bytes that must cross the memory bus at least once.
    pub bytes: f64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost { flops: self.flops + o.flops, bytes: self.bytes + o.bytes }
    }
}

/// Folds a 1-D workgroup count into a grid within `max_per_dim` per dimension. Shaders
/// linearise `wid.y * num_workgroups.x + wid.x` and return past `count`.
pub fn fold_grid(kernel: &'static str, count: u64, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = u64::from(max_per_dim);
    if count <= max {
        return Ok([count.max(1) as u32, 1, 1]);
    }
    let y = count.div_ceil(max);
    if y > max {
        return Err(Error::Limit { kernel, limit: "workgroups per dispatch", requested: count, max: max * max });
    }
    Ok([count.div_ceil(y) as u32, y as u32, 1])
}

/// A tensor's shape and dtype as kernels see them at plan time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl Meta {
    pub fn f32(shape: &[usize]) -> Self {
        Self { shape: shape.to_vec(), dtype: DType::F32 }
    }
}

/// One GPU operation with its static parameters: what a graph node runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `nn.Linear` with a fused epilogue. Inputs: x `[.., K]`, weight `[N, K]`, bias `[N]`
    /// unless the epilogue is [`gemm::Epilogue::None`].
    Linear(gemm::Epilogue),
    /// Elementwise GELU. Input: any shape.
    Gelu(gelu::GeluForm),
}

/// What the planner knows of a device when it picks a kernel variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `SUBGROUP` is enabled.
    pub subgroups: bool,
    /// Smallest subgroup the device may use (0 when unknown).
    pub subgroup_min_size: u32,
}

impl Op {
    /// Short name for errors and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Linear(_) => gemm::NAME,
            Op::Gelu(_) => gelu::SPEC.name,
        }
    }

    /// The kernel variant that runs this op on a device with `caps`.
    pub fn spec(&self, caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
        match self {
            Op::Linear(_) => gemm::select(caps, inputs),
            Op::Gelu(_) => &gelu::SPEC,
        }
    }

    /// Override constants that specialise the shader.
    pub fn overrides(&self) -> Vec<(&'static str, f64)> {
        match self {
            Op::Linear(e) => gemm::overrides(*e),
            Op::Gelu(f) => gelu::overrides(*f),
        }
    }

    /// Checks input shapes/dtypes and returns the output's.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        expect_f32(self.name(), inputs)?;
        match self {
            Op::Linear(e) => gemm::check(*e, inputs),
            Op::Gelu(_) => gelu::check(inputs),
        }
    }

    /// The `Params` uniform bytes for these (already checked) inputs.
    pub fn params(&self, inputs: &[&Meta]) -> Vec<u8> {
        match self {
            Op::Linear(_) => bytemuck::bytes_of(&gemm::Params::new(inputs)).to_vec(),
            Op::Gelu(_) => bytemuck::bytes_of(&gelu::Params::new(inputs)).to_vec(),
        }
    }

    /// Number of workgroups `spec` needs (before folding into a grid).
    pub fn workgroups(&self, spec: &KernelSpec, inputs: &[&Meta]) -> u64 {
        match self {
            Op::Linear(_) => gemm::workgroups(spec, inputs),
            Op::Gelu(_) => gelu::workgroups(inputs),
        }
    }

    pub fn cost(&self, inputs: &[&Meta]) -> Cost {
        match self {
            Op::Linear(e) => gemm::cost(*e, inputs),
            Op::Gelu(_) => gelu::cost(inputs),
        }
    }
}

fn expect_f32(kernel: &'static str, inputs: &[&Meta]) -> Result<()> {
    for (i, m) in inputs.iter().enumerate() {
        if m.dtype != DType::F32 {
            return Err(Error::DType {
                kernel,
                what: format!("input {i}"),
                expected: "f32".into(),
                got: m.dtype.to_string(),
            });
        }
    }
    Ok(())
}

/// Collapses all leading dimensions: `[.., K]` → `(rows, K)`.
pub(crate) fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let cols = shape.last().copied().unwrap_or(0);
    (shape.iter().rev().skip(1).product(), cols)
}

pub(crate) fn check_arity(kernel: &'static str, inputs: &[&Meta], n: usize) -> Result<()> {
    if inputs.len() != n {
        return Err(Error::shape(kernel, "number of inputs", n, inputs.len()));
    }
    Ok(())
}

/// Rejects zero-size dimensions and, since shaders index with u32, tensors of 2^32 elements
/// or more.
pub(crate) fn check_u32_elements(kernel: &'static str, what: &str, shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::shape(kernel, format!("{what} shape"), "every dimension >= 1", format!("{shape:?}")));
    }
    let n = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).unwrap_or(u64::MAX);
    if n > u64::from(u32::MAX) {
        return Err(Error::Limit {
            kernel,
            limit: "elements per tensor (u32 indexing)",
            requested: n,
            max: u64::from(u32::MAX),
        });
    }
    Ok(())
}
