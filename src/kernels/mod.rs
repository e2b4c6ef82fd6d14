//! The kernel registry: one module per shader file, each with its `Params` (mirroring the WGSL
//! struct), `SPEC`, shape `check`, `cost` and dispatch size. [`Op`] is what graph nodes hold.

pub mod anyres;
pub mod attention;
pub mod convert;
pub mod downsample;
pub mod gelu;
pub mod gemm;
mod id;
pub mod layer_norm;
pub mod loop_probe;
pub mod repeat;
pub mod roofline;
pub mod tome;

pub use id::KernelId;

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

/// What a kernel looks like from the host: source, entry point, bindings, workgroup size and
/// the byte size of its `Params` uniform. `tests/shaders.rs` checks all of it against naga's
/// reflection of the WGSL.
#[derive(Debug)]
pub struct KernelSpec {
    /// Which kernel this is.
    pub id: KernelId,
    /// Short name for errors, reports and pipeline labels.
    pub name: &'static str,
    /// Path under `shaders/`, for messages.
    pub file: &'static str,
    /// `shaders/common/` files put in front of the body.
    pub prelude: &'static [&'static str],
    /// The kernel file's WGSL.
    pub body: &'static str,
    /// The entry point.
    pub entry: &'static str,
    /// Access of bindings 0, 1, .. in group 0.
    pub bindings: &'static [Access],
    /// The entry point's `@workgroup_size`.
    pub workgroup_size: [u32; 3],
    /// Byte size of the `Params` uniform.
    pub params_size: u64,
    /// Device features the shader needs.
    pub features: wgpu::Features,
}

impl KernelSpec {
    /// Full WGSL source with activations stored as f32.
    pub fn source(&self) -> String {
        self.source_for(DType::F32)
    }

    /// Full WGSL source with activations stored as `storage`: the storage prelude, the
    /// kernel's prelude, then its body.
    pub fn source_for(&self, storage: DType) -> String {
        let prelude: Vec<&str> =
            std::iter::once(shader::for_storage(storage)).chain(self.prelude.iter().copied()).collect();
        shader::assemble(&prelude, self.body)
    }

    /// Device features the kernel needs with activations stored as `storage`.
    pub fn features_for(&self, storage: DType) -> wgpu::Features {
        match storage {
            DType::F16 => self.features | wgpu::Features::SHADER_F16,
            DType::F32 | DType::BF16 => self.features,
        }
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
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

impl Meta {
    /// An f32 tensor of `shape`.
    pub fn f32(shape: &[usize]) -> Self {
        Self { shape: shape.to_vec(), dtype: DType::F32 }
    }
}

/// One GPU operation with its static parameters: what a graph node runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `nn.Linear` with a fused epilogue. Inputs: x `[.., K]`, weight `[N, K]`, bias `[N]`
    /// when the epilogue has one, then residual
    /// and gate as the epilogue asks (see [`gemm::Epilogue`]).
    Linear(gemm::Epilogue),
    /// Elementwise GELU. Input: any shape.
    Gelu(gelu::GeluForm),
    /// `nn.LayerNorm` over the last dim with this eps. Inputs: x, weight, bias.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// `[times, ..x.shape]` copies of x.
    Repeat {
        /// Copies (the batch).
        times: usize,
    },
    /// Multi-head attention, one pass of it (see [`attention::Attention`] for the inputs).
    Attention(attention::Pass, attention::Attention),
    /// 2×2 average pooling or bilinear halving of `[batch, h·w, C]` tokens.
    Downsample(downsample::Downsample),
    /// One pass of ToMe merging (see [`tome::Step`] for the inputs).
    Tome(tome::Step, tome::Tome),
    /// AnyRes packing of one image's tile features with the newline vector.
    AnyRes(anyres::AnyResLayout),
    /// An f32 tensor rounded to this activation storage type (f32: a copy, f16: round to
    /// nearest): f32 parameters such as learnable queries entering an f16 graph.
    Convert(DType),
}

/// What an op expects of one input's dtype (see [`Op::operand`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// An activation: stored as the node's storage type, f32 or f16, and read as such.
    Activation,
    /// A parameter kernels read as f32 whatever the activations are: bias, norm weight and
    /// bias, gate, mask, AnyRes newline, ToMe sizes, matches and indices.
    Param,
    /// A GEMM weight: f32, f16 or bf16, read in the type it is stored in.
    Weight,
    /// Only its shape is used.
    ShapeOnly,
}

/// One dispatch of a node, as the planner records it.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    /// The `Params` uniform bytes.
    pub(crate) params: Vec<u8>,
    /// Workgroups before folding into a grid.
    pub(crate) workgroups: u64,
    /// For a GEMM: the byte range of the weight (input 1) this dispatch binds.
    pub(crate) weight_bytes: Option<(u64, u64)>,
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
            Op::LayerNorm { .. } => layer_norm::SPEC.name,
            Op::Repeat { .. } => repeat::SPEC.name,
            Op::Attention(pass, _) => attention::spec_of(*pass).name,
            Op::Downsample(d) => downsample::spec_of(*d).name,
            Op::Tome(step, _) => tome::spec_of(*step).name,
            Op::AnyRes(_) => anyres::NAME,
            Op::Convert(_) => convert::SPEC.name,
        }
    }

    /// The kernel variant that runs this op on a device with `caps`.
    pub fn spec(&self, caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
        match self {
            Op::Linear(_) => gemm::select(caps, inputs),
            Op::Gelu(_) => &gelu::SPEC,
            Op::LayerNorm { .. } => &layer_norm::SPEC,
            Op::Repeat { .. } => &repeat::SPEC,
            Op::Attention(pass, _) => attention::select(*pass, caps),
            Op::Downsample(d) => downsample::spec_of(*d),
            Op::Tome(step, _) => tome::select(*step, caps),
            Op::AnyRes(_) => &anyres::SPEC,
            Op::Convert(_) => &convert::SPEC,
        }
    }

    /// For each read-only binding of `spec`, in binding order, the index of the input bound
    /// to it; `None` where the op has no such input (the shader never reads it).
    pub(crate) fn read_slots(&self, spec: &KernelSpec) -> Vec<Option<usize>> {
        match self {
            Op::Linear(e) => e.read_slots(),
            Op::Attention(pass, cfg) => attention::read_slots(*pass, cfg),
            Op::Tome(step, _) => tome::read_slots(*step),
            Op::Gelu(_)
            | Op::LayerNorm { .. }
            | Op::Repeat { .. }
            | Op::Downsample(_)
            | Op::AnyRes(_)
            | Op::Convert(_) => {
                let reads = spec.bindings.iter().filter(|a| **a == Access::Read).count();
                (0..reads).map(Some).collect()
            }
        }
    }

    /// Override constants that specialise the shader.
    pub fn overrides(&self) -> Vec<(&'static str, f64)> {
        match self {
            Op::Linear(e) => gemm::overrides(*e),
            Op::Gelu(f) => gelu::overrides(*f),
            Op::Attention(_, cfg) => attention::overrides(cfg),
            Op::Tome(step, _) => tome::overrides(*step),
            Op::LayerNorm { .. } | Op::Repeat { .. } | Op::Downsample(_) | Op::AnyRes(_) | Op::Convert(_) => Vec::new(),
        }
    }

    /// How the op reads input `i` (see [`Operand`]).
    pub fn operand(&self, i: usize) -> Operand {
        use Operand::{Activation, Param, ShapeOnly, Weight};
        use tome::Step;
        match self {
            Op::Linear(e) => match i {
                0 => Activation,
                1 => Weight,
                2 if e.bias => Param,
                // The residual, then the gate of a gated residual.
                _ if i == 2 + usize::from(e.bias) => Activation,
                _ => Param,
            },
            Op::Attention(pass, cfg) => {
                let activations = match pass {
                    attention::Pass::Softmax => 1,
                    _ => 1 + cfg.kv_inputs(),
                };
                if i < activations { Activation } else { Param }
            }
            Op::Tome(step, _) => match (step, i) {
                (Step::Normalize | Step::MergeFeatures, 0) => Activation,
                (Step::Source, 0) => ShapeOnly,
                _ => Param,
            },
            Op::Gelu(_) | Op::Repeat { .. } | Op::Downsample(_) => Activation,
            Op::LayerNorm { .. } | Op::AnyRes(_) => {
                if i == 0 {
                    Activation
                } else {
                    Param
                }
            }
            Op::Convert(_) => Param,
        }
    }

    /// The type activations are stored in at this node: its pipeline is built for it.
    pub fn storage(&self, inputs: &[&Meta]) -> DType {
        match self {
            Op::Convert(to) => *to,
            // Every op whose first input is an activation stores its activations in that type.
            _ if self.operand(0) == Operand::Activation => inputs.first().map_or(DType::F32, |m| m.dtype),
            _ => DType::F32,
        }
    }

    /// Checks input shapes/dtypes and returns the output's.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        let storage = self.storage(inputs);
        check_dtypes(self, storage, inputs)?;
        let mut out = self.check_shapes(inputs)?;
        // ToMe's index passes and the f32 unit rows stay f32.
        let f32_out = matches!(self, Op::Tome(step, _) if *step != tome::Step::MergeFeatures);
        out.dtype = if f32_out { DType::F32 } else { storage };
        Ok(out)
    }

    fn check_shapes(&self, inputs: &[&Meta]) -> Result<Meta> {
        match self {
            Op::Linear(e) => gemm::check(*e, inputs),
            Op::Gelu(_) => gelu::check(inputs),
            Op::LayerNorm { eps } => layer_norm::check(*eps, inputs),
            Op::Repeat { times } => repeat::check(*times, inputs),
            Op::Attention(pass, cfg) => attention::check(*pass, cfg, inputs),
            Op::Downsample(d) => downsample::check(*d, inputs),
            Op::Tome(step, cfg) => tome::check(*step, cfg, inputs),
            Op::AnyRes(layout) => anyres::check(layout, inputs),
            Op::Convert(to) => convert::check(*to, inputs),
        }
    }

    /// The dispatches that run this op on a device binding at most `max_binding` bytes at
    /// offsets aligned to `offset_alignment`: one, except for a GEMM whose weight is larger
    /// than one binding, which runs over row ranges of it.
    pub(crate) fn dispatches(
        &self,
        spec: &KernelSpec,
        inputs: &[&Meta],
        max_binding: u64,
        offset_alignment: u64,
    ) -> Result<Vec<Dispatch>> {
        match self {
            Op::Linear(_) => Ok(gemm::weight_chunks(inputs, max_binding, offset_alignment)?
                .into_iter()
                .map(|(bytes, p)| Dispatch {
                    params: bytemuck::bytes_of(&p).to_vec(),
                    workgroups: gemm::workgroups(spec, &p),
                    weight_bytes: Some(bytes),
                })
                .collect()),
            _ => Ok(vec![Dispatch {
                params: self.params(inputs),
                workgroups: self.workgroups(spec, inputs),
                weight_bytes: None,
            }]),
        }
    }

    /// The `Params` uniform bytes for these (already checked) inputs.
    fn params(&self, inputs: &[&Meta]) -> Vec<u8> {
        match self {
            Op::Linear(_) => bytemuck::bytes_of(&gemm::Params::new(inputs)).to_vec(),
            Op::Gelu(_) => bytemuck::bytes_of(&gelu::Params::new(inputs)).to_vec(),
            Op::LayerNorm { eps } => bytemuck::bytes_of(&layer_norm::Params::new(*eps, inputs)).to_vec(),
            Op::Repeat { times } => bytemuck::bytes_of(&repeat::Params::new(*times, inputs)).to_vec(),
            Op::Attention(pass, cfg) => bytemuck::bytes_of(&attention::params(*pass, cfg, inputs)).to_vec(),
            Op::Downsample(d) => bytemuck::bytes_of(&downsample::Params::new(*d, inputs)).to_vec(),
            Op::Tome(_, cfg) => bytemuck::bytes_of(&tome::Params::new(cfg, inputs)).to_vec(),
            Op::AnyRes(layout) => bytemuck::bytes_of(&anyres::Params::new(layout, inputs)).to_vec(),
            Op::Convert(_) => bytemuck::bytes_of(&gelu::Params::new(inputs)).to_vec(),
        }
    }

    /// Number of workgroups `spec` needs (before folding into a grid).
    fn workgroups(&self, spec: &KernelSpec, inputs: &[&Meta]) -> u64 {
        match self {
            Op::Linear(_) => gemm::workgroups(spec, &gemm::Params::new(inputs)),
            Op::Gelu(_) => gelu::workgroups(inputs),
            Op::LayerNorm { .. } => layer_norm::workgroups(inputs),
            Op::Repeat { times } => repeat::workgroups(*times, inputs),
            Op::Attention(pass, cfg) => attention::workgroups(spec, *pass, cfg, inputs),
            Op::Downsample(d) => downsample::workgroups(*d, inputs),
            Op::Tome(step, cfg) => tome::workgroups(spec, *step, cfg, inputs),
            Op::AnyRes(layout) => anyres::workgroups(layout, inputs),
            Op::Convert(_) => convert::workgroups(inputs),
        }
    }

    /// The f64 reference of this op on host data (inputs as the node takes them, already
    /// checked with [`Op::check`]).
    pub fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        use crate::reference;
        match self {
            Op::Linear(e) => {
                let p = gemm::Params::new(metas);
                let slots = e.read_slots();
                let input = |slot: usize| slots[slot].map(|i| inputs[i]);
                let mut y = reference::linear(inputs[0], inputs[1], input(2), p.m as usize, p.n as usize, p.k as usize);
                reference::epilogue(&mut y, e.activation, input(3), input(4).map(|g| g[0]));
                y
            }
            Op::Gelu(form) => inputs[0].iter().map(|&v| reference::gelu(*form, v)).collect(),
            Op::LayerNorm { eps } => {
                let dim = rows_cols(&metas[0].shape).1;
                reference::layer_norm(inputs[0], inputs[1], inputs[2], dim, f64::from(*eps))
            }
            Op::Repeat { times } => inputs[0].repeat(*times),
            Op::Attention(pass, cfg) => {
                use attention::Pass;
                let p = attention::params(*pass, cfg, metas);
                let d = cfg.head_dim as usize;
                let zero = cfg.masked_rows == attention::MaskedRows::Zero;
                let mask = cfg.mask.then(|| inputs[inputs.len() - 1]);
                let kv = |first: usize| [inputs[first], if cfg.two_sources { inputs[first + 1] } else { &[] }];
                match pass {
                    Pass::Flash => reference::attention(&p, d, zero, inputs[0], kv(1), mask),
                    Pass::Scores => reference::attention_scores(&p, d, inputs[0], kv(1), mask),
                    Pass::Softmax => {
                        let s = &metas[0].shape;
                        reference::softmax_rows(inputs[0], s[3], s[2], s[1], mask, zero)
                    }
                    Pass::WeightedSum => reference::weighted_sum(&p, d, inputs[0], kv(1)),
                }
            }
            Op::Downsample(d) => {
                let s = &metas[0].shape;
                reference::downsample(*d, inputs[0], s[0], s[2])
            }
            Op::Tome(step, cfg) => {
                let s = &metas[0].shape;
                reference::tome_step(*step, cfg, inputs, s[0], s.get(2).copied().unwrap_or(1))
            }
            Op::AnyRes(layout) => reference::anyres_pack(layout, inputs[0], inputs[1]),
            Op::Convert(to) => inputs[0].iter().map(|&v| round_to(*to, v)).collect(),
        }
    }

    /// FLOPs and minimum bytes moved of one run on `inputs`.
    pub fn cost(&self, inputs: &[&Meta]) -> Cost {
        match self {
            Op::Linear(e) => gemm::cost(*e, inputs),
            Op::Gelu(_) => gelu::cost(inputs),
            Op::LayerNorm { .. } => layer_norm::cost(inputs),
            Op::Repeat { times } => repeat::cost(*times, inputs),
            Op::Attention(pass, cfg) => attention::cost(*pass, cfg, inputs),
            Op::Downsample(d) => downsample::cost(*d, inputs),
            Op::Tome(step, cfg) => tome::cost(*step, cfg, inputs),
            Op::AnyRes(layout) => anyres::cost(layout, inputs),
            Op::Convert(to) => convert::cost(*to, inputs),
        }
    }
}

/// Activations must be f32 or f16 and all of the node's storage type, parameters f32.
fn check_dtypes(op: &Op, storage: DType, inputs: &[&Meta]) -> Result<()> {
    let kernel = op.name();
    if storage == DType::BF16 {
        let what = "activations (bf16 is a weight format)".into();
        return Err(Error::DType { kernel, what, expected: "f32 or f16".into(), got: storage.to_string() });
    }
    for (i, m) in inputs.iter().enumerate() {
        let expected = match op.operand(i) {
            Operand::Activation => storage,
            Operand::Param => DType::F32,
            Operand::Weight | Operand::ShapeOnly => continue,
        };
        if m.dtype != expected {
            return Err(Error::DType {
                kernel,
                what: format!("input {i} ({:?})", op.operand(i)),
                expected: expected.to_string(),
                got: m.dtype.to_string(),
            });
        }
    }
    Ok(())
}

/// `v` as stored in `dtype` (f16 and bf16 round to nearest even), for the references.
pub fn round_to(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => f64::from(v as f32),
        DType::F16 => f64::from(half::f16::from_f64(v).to_f32()),
        DType::BF16 => f64::from(half::bf16::from_f64(v).to_f32()),
    }
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
