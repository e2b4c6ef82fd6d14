//! Kernel units: each op's WGSL, its variants per device, `Params`, dispatch math, cost and
//! f64 reference, and the fuzz, bench and precision cases it offers. [`Op`] is what graph
//! nodes hold; the registry at the bottom is the one list of them that the shader test,
//! the fuzzer, `vlbridge bench`, the precision tests and the CLI iterate over.
//!
//! Adding a kernel: `shaders/foo.wgsl`, `src/kernels/foo.rs` (a type implementing [`Kernel`]
//! and its [`KernelFamily`]), the f64 function in `src/reference/`, one line in the registry, one
//! proptest block.

pub mod anyres;
pub mod attention;
pub mod cases;
pub mod concat;
pub mod elementwise;
mod family;
pub mod gemm;
pub mod lowering;
pub mod norm;
pub mod patch;
pub mod pool;
pub mod probe;
pub mod rope;
pub mod rows;
pub mod shuffle;
pub mod tome;
pub mod wgsl;

use std::fmt;

pub use cases::{BenchCase, Case, CaseRng, CaseTarget, Tolerance};
pub use family::KernelFamily;
pub use lowering::{Lowering, Slot};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Caps;
use crate::ops::{Meta, Operand};
use crate::pipeline::{Access, PipelineDesc};

/// One shader entry point as the host sees it: source, entry point, bindings, workgroup size
/// and the byte size of its `Params` uniform. `tests/shaders.rs` checks all of it against
/// naga's reflection of the WGSL.
#[derive(Debug)]
pub struct KernelSpec {
    /// Label in errors, reports and debuggers (unique across the crate).
    pub name: &'static str,
    /// The variant this is of its kernel (`subgroup`, `portable`, `tiled`, ..): what
    /// [`crate::GpuOptions::force_variants`] names.
    pub variant: &'static str,
    /// Path under `shaders/`, for messages.
    pub file: &'static str,
    /// The `shaders/common/` files the body uses directly (what those build on goes in front
    /// of them by itself).
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
    /// Smallest subgroup the shader works with (0: it uses no subgroup operations).
    pub min_subgroup: u32,
}

impl KernelSpec {
    /// A spec with no prelude, no features, variant `default`: the fields kernels override.
    pub const fn new(
        name: &'static str,
        file: &'static str,
        body: &'static str,
        entry: &'static str,
        bindings: &'static [Access],
        workgroup_size: u32,
        params_size: usize,
    ) -> Self {
        Self {
            name,
            variant: "default",
            file,
            prelude: &[],
            body,
            entry,
            bindings,
            workgroup_size: [workgroup_size, 1, 1],
            params_size: params_size as u64,
            features: wgpu::Features::empty(),
            min_subgroup: 0,
        }
    }

    /// Full WGSL source with activations stored as `storage`: the storage prelude, the grid
    /// contract, the kernel's prelude files after the common files they build on
    /// ([`wgsl::with_dependencies`]), then its body.
    pub fn source_for(&self, storage: DType) -> String {
        let prelude: Vec<&str> =
            [wgsl::for_storage(storage), wgsl::GRID].into_iter().chain(wgsl::with_dependencies(self.prelude)).collect();
        wgsl::assemble(&prelude, self.body)
    }

    /// Device features the kernel needs with activations stored as `storage`.
    pub fn features_for(&self, storage: DType) -> wgpu::Features {
        match storage {
            DType::F16 => self.features | wgpu::Features::SHADER_F16,
            _ => self.features,
        }
    }

    /// Whether a device with `caps` can run it (activations aside).
    pub fn runs_on(&self, caps: &Caps) -> bool {
        caps.features.contains(self.features) && (self.min_subgroup == 0 || caps.subgroups_of(self.min_subgroup))
    }

    /// The pipeline description for `storage` and `overrides`; `source` assembles the WGSL
    /// (`|| spec.source_for(storage)`), only called when the device has not built it yet.
    pub fn pipeline<'a>(
        &'a self,
        storage: DType,
        overrides: &'a [(&'static str, f64)],
        source: &'a dyn Fn() -> String,
    ) -> PipelineDesc<'a> {
        PipelineDesc {
            label: self.name,
            entry: self.entry,
            storage,
            source,
            bindings: self.bindings,
            uniform_size: self.params_size,
            features: self.features_for(storage),
            overrides,
        }
    }
}

/// Work of one run, for GFLOP/s and GB/s.
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

/// What the planner knows of the device's binding limits.
#[derive(Debug, Clone, Copy)]
pub struct BindLimits {
    /// Largest storage binding in bytes.
    pub max_binding: u64,
    /// Storage binding offsets must be multiples of this.
    pub offset_alignment: u64,
}

/// One dispatch of a node, as the planner records it.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The `Params` uniform bytes.
    pub params: Vec<u8>,
    /// Workgroups before folding into a grid.
    pub workgroups: u64,
    /// A byte range `(input, offset, size)` of one input bound instead of the whole tensor
    /// (GEMM weights larger than one binding run over row ranges).
    pub partial: Option<(usize, u64, u64)>,
}

impl Dispatch {
    /// A dispatch of `workgroups` with these Params.
    pub fn new<P: bytemuck::Pod>(params: &P, workgroups: u64) -> Self {
        Self { params: bytemuck::bytes_of(params).to_vec(), workgroups, partial: None }
    }
}

/// An operation as a unit: everything the planner, the reference and the harnesses need of
/// it. Implemented by each op's configuration type (see the registry).
pub trait Kernel: fmt::Debug + Send + Sync {
    /// Its one name: errors, `--kernel`, bench rows, JSON, test names.
    fn name(&self) -> &'static str;

    /// How it reads input `i`.
    fn operand(&self, i: usize) -> Operand;

    /// Checks input shapes (dtypes are checked from [`Kernel::operand`] first); returns the
    /// output's shape and dtype.
    fn check(&self, inputs: &[&Meta]) -> Result<Meta>;

    /// Every variant that can run these inputs, preferred first.
    fn variants(&self, inputs: &[&Meta]) -> Vec<&'static KernelSpec>;

    /// The variant for a device with `caps`: by default the first one the device can run
    /// (the last as a fallback, which then reports what the device lacks).
    fn choose(&self, caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
        let variants = self.variants(inputs);
        let last = variants[variants.len() - 1];
        variants.into_iter().find(|s| s.runs_on(caps)).unwrap_or(last)
    }

    /// The problem class a measured tune keys its choice by (`thin`, `wide`, ..): the classes
    /// of the family's `tune` problems.
    fn tune_class(&self, _inputs: &[&Meta]) -> &'static str {
        "all"
    }

    /// Override constants that specialise the shader for these (checked) inputs.
    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// For each read-only binding of `spec`, in binding order, the index of the input bound
    /// to it; `None` where the op has no such input (the shader never reads it).
    fn read_slots(&self, spec: &KernelSpec) -> Vec<Option<usize>> {
        let reads = spec.bindings.iter().filter(|a| **a == Access::Read).count();
        (0..reads).map(Some).collect()
    }

    /// The dispatches that run the op: one, unless an input is larger than one binding.
    fn dispatches(&self, spec: &KernelSpec, inputs: &[&Meta], _limits: &BindLimits) -> Result<Vec<Dispatch>> {
        Ok(vec![self.dispatch(spec, inputs)])
    }

    /// The single dispatch of the op on these (checked) inputs.
    fn dispatch(&self, spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch;

    /// FLOPs and minimum bytes moved of one run.
    fn cost(&self, inputs: &[&Meta]) -> Cost;

    /// The f64 reference on host data (inputs as the node takes them, already checked).
    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64>;

    /// The nodes that run this op on a device with `caps` when they are not the op itself: a
    /// fused node split where the split runs faster there, a pass split in two. `None` keeps
    /// the node. Called once per node at plan time, and again on the nodes it returns.
    fn lower(&self, _caps: &Caps, _inputs: &[&Meta], _output: &Meta) -> Result<Option<Lowering>> {
        Ok(None)
    }

    /// The activation storage type of the node: its pipeline is built for it.
    fn storage(&self, inputs: &[&Meta]) -> DType {
        if self.operand(0) == Operand::Activation { inputs.first().map_or(DType::F32, |m| m.dtype) } else { DType::F32 }
    }
}

impl Op {
    /// Its kernel's name.
    pub fn name(&self) -> &'static str {
        self.kernel().name()
    }

    /// Checks input dtypes (activations f32 or f16, one type per node; parameters f32;
    /// indices u32; masks u8; weights any float) and shapes; returns the output.
    pub fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        let kernel = self.kernel();
        let storage = kernel.storage(inputs);
        let name = kernel.name();
        if !matches!(storage, DType::F32 | DType::F16) {
            let what = "activations (bf16 is a weight format)".into();
            return Err(Error::DType { kernel: name, what, expected: "f32 or f16".into(), got: storage.to_string() });
        }
        for (i, m) in inputs.iter().enumerate() {
            let operand = kernel.operand(i);
            let ok = match operand {
                Operand::Activation => m.dtype == storage,
                Operand::Param => m.dtype == DType::F32,
                Operand::Index => m.dtype == DType::U32,
                Operand::Mask => m.dtype == DType::U8,
                Operand::Weight => m.dtype.is_float(),
                Operand::ShapeOnly => true,
            };
            if !ok {
                let expected = match operand {
                    Operand::Activation => storage.to_string(),
                    Operand::Param => "f32".into(),
                    Operand::Index => "u32".into(),
                    Operand::Mask => "u8".into(),
                    _ => "f32, f16 or bf16".into(),
                };
                let what = format!("input {i} ({operand:?})");
                return Err(Error::DType { kernel: name, what, expected, got: m.dtype.to_string() });
            }
        }
        kernel.check(inputs)
    }

    /// The variant that runs this op on a device with `caps`: the one forced for this kernel
    /// when it can run these inputs, else the kernel's choice.
    pub fn select(&self, caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
        let kernel = self.kernel();
        caps.forced(kernel.name())
            .and_then(|forced| kernel.variants(inputs).into_iter().find(|s| s.variant == forced))
            .unwrap_or_else(|| kernel.choose(caps, inputs))
    }

    /// FLOPs and minimum bytes moved of one run on `inputs`.
    pub fn cost(&self, inputs: &[&Meta]) -> Cost {
        self.kernel().cost(inputs)
    }

    /// The f64 reference on host data.
    pub fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        self.kernel().reference(inputs, metas)
    }
}

/// Folds a 1-D workgroup count into a grid within `max_per_dim` per dimension. Shaders take
/// the linear index back with `workgroup_index` (`shaders/common/grid.wgsl`, in front of every
/// kernel) and return past `count`.
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

/// Bytes of `n` elements of `dtype`, as f64 for costs.
pub(crate) fn bytes(dtype: DType, n: usize) -> f64 {
    dtype.size() as f64 * n as f64
}

/// The product of `factors` as f64, for costs: on 32-bit targets (wasm32) a usize product of a
/// real-size GEMM's m·n·k passes 2^32.
pub(crate) fn product(factors: &[usize]) -> f64 {
    factors.iter().map(|&f| f as f64).product()
}

/// Declares [`Op`] (one variant per kernel, holding its configuration), [`Op::kernel`] (the
/// one match on it) and [`FAMILIES`] (every kernel family, once).
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($ty:ty) => $family:path,)*) => {
        /// One GPU operation with its static configuration: what a graph node runs.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum Op {
            $($(#[$doc])* $variant($ty),)*
        }

        impl Op {
            /// The kernel unit that runs this op.
            pub fn kernel(&self) -> &dyn Kernel {
                match self {
                    $(Op::$variant(k) => k,)*
                }
            }
        }

        $(impl From<$ty> for Op {
            fn from(k: $ty) -> Op {
                Op::$variant(k)
            }
        })*

        /// Every kernel family, once, in registry order.
        pub static FAMILIES: &[&KernelFamily] = &[$(&$family,)*];
    };
}

registry! {
    /// `nn.Linear` with a fused epilogue (see [`crate::ops::Epilogue`]).
    Linear(crate::ops::Epilogue) => gemm::FAMILY,
    /// Elementwise GELU (the unfused baseline of the fused epilogue).
    Gelu(crate::ops::GeluForm) => elementwise::GELU_FAMILY,
    /// `nn.LayerNorm` over the last dimension.
    LayerNorm(crate::ops::LayerNorm) => norm::LAYER_NORM_FAMILY,
    /// RMSNorm over the last dimension (plain, or Gemma's 1 + w).
    RmsNorm(crate::ops::RmsNorm) => norm::RMS_NORM_FAMILY,
    /// `[times, ..x.shape]` copies of x.
    Repeat(crate::ops::Repeat) => elementwise::REPEAT_FAMILY,
    /// An f32 tensor rounded to the activation storage type.
    Convert(crate::ops::Convert) => elementwise::CONVERT_FAMILY,
    /// A row of f32 added to each row of its group.
    AddRows(crate::ops::AddRows) => elementwise::ADD_ROWS_FAMILY,
    /// Multi-head attention, online softmax (no score matrix).
    Attention(crate::ops::Attention) => attention::FAMILY,
    /// One pass of the naive three-pass attention (the measured baseline).
    AttentionNaive(crate::ops::Naive) => attention::NAIVE_FAMILY,
    /// One pass of the attention with its keys split across workgroups (long keys on GPUs).
    AttentionKeySplit(crate::ops::KeySplit) => attention::KEY_SPLIT_FAMILY,
    /// An attention sublayer (attention, output projection, residual, post-norm) in one
    /// dispatch.
    AttentionRows(crate::ops::AttentionRows) => rows::ATTENTION_ROWS_FAMILY,
    /// A feed-forward sublayer (norm, Linear, activation, Linear, residual, post-norm) in one
    /// dispatch.
    MlpRows(crate::ops::MlpRows) => rows::MLP_ROWS_FAMILY,
    /// `k × k` average pooling of a token grid.
    AvgPool(crate::ops::AvgPool) => pool::AVG_POOL_FAMILY,
    /// Bilinear halving of a token grid.
    BilinearHalf(crate::ops::BilinearHalf) => pool::BILINEAR_FAMILY,
    /// Pixel shuffle (space to depth) of token grids.
    PixelShuffle(crate::ops::PixelShuffle) => shuffle::FAMILY,
    /// One pass of ToMe merging.
    Tome(crate::ops::TomeStep) => tome::FAMILY,
    /// Tokens selected and joined: layers side by side, a range of items, two in a row.
    Concat(crate::ops::Concat) => concat::FAMILY,
    /// A ViT's patch embedding with class token and positions, reading patches in place.
    PatchEmbed(crate::ops::PatchEmbed) => patch::FAMILY,
    /// Adjacent channel pairs turned by a per-row table (2D rotary embedding: Qwen2-VL, Pixtral).
    RotaryPairs(crate::ops::RotaryPairs) => rope::FAMILY,
    /// AnyRes packing of one image's tile features with the newline vector.
    AnyRes(crate::ops::AnyResLayout) => anyres::FAMILY,
    /// Roofline microbenchmark: peak FMA throughput.
    RooflineFma(probe::FmaPeak) => probe::FMA_FAMILY,
    /// Roofline microbenchmark: copy bandwidth.
    RooflineCopy(probe::CopyBandwidth) => probe::COPY_FAMILY,
    /// Driver probe: a counted loop of more than 65,535 iterations.
    LoopProbe(probe::LoopProbe) => probe::LOOP_FAMILY,
}
