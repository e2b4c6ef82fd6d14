//! Kernels that measure the device rather than compute a model: the roofline microbenchmarks
//! (`shaders/roofline.wgsl`: peak FMA throughput, copy bandwidth) and the driver loop probe
//! (`shaders/loop_probe.wgsl`). They run as graph nodes like every other kernel; the
//! measurements themselves are in `crate::diagnostics`.

use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{Meta, Operand, check_arity};
use crate::pipeline::Access;

/// Mirrors `Params` in `shaders/roofline.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// fma_peak: loop trips per invocation.
    pub iterations: u32,
    /// copy_bandwidth: vec4 elements copied; fma_peak: vec4s of the sink.
    pub len: u32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
}

/// Mirrors `Params` in `shaders/loop_probe.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LoopParams {
    /// Outer loop count.
    pub outer: u32,
    /// Inner loop count.
    pub inner: u32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
}

const WORKGROUP: u32 = 256;
const ROOFLINE: &str = include_str!("../../shaders/roofline.wgsl");
const UNARY: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
const PARAMS: usize = std::mem::size_of::<Params>();

/// Vec4 FMA chains on `invocations` invocations of `iterations` trips each (64 FLOP per trip).
/// Input: any f32 tensor (not read); output: a sink of at least 4 floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FmaPeak {
    /// Invocations.
    pub invocations: u32,
    /// Loop trips per invocation.
    pub iterations: u32,
}

/// `dst = src` in vec4s, `repeats` times. Input and output: f32 tensors of a multiple of 4
/// elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyBandwidth {
    /// Dispatches of the copy.
    pub repeats: u32,
}

/// A counted loop of `outer × inner` iterations with an LCG step in each; no input, output
/// u32 `[2]` (count, state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopProbe {
    /// Outer loop count.
    pub outer: u32,
    /// Inner loop count.
    pub inner: u32,
}

/// Peak FMA throughput.
pub static FMA_SPEC: KernelSpec =
    KernelSpec::new("roofline_fma", "roofline.wgsl", ROOFLINE, "fma_peak", UNARY, WORKGROUP, PARAMS);
/// Copy bandwidth.
pub static COPY_SPEC: KernelSpec =
    KernelSpec::new("roofline_copy", "roofline.wgsl", ROOFLINE, "copy_bandwidth", UNARY, WORKGROUP, PARAMS);
/// The loop-count probe.
pub static LOOP_SPEC: KernelSpec = KernelSpec::new(
    "loop_probe",
    "loop_probe.wgsl",
    include_str!("../../shaders/loop_probe.wgsl"),
    "loop_probe",
    &[Access::ReadWrite, Access::Uniform],
    1,
    std::mem::size_of::<LoopParams>(),
);

/// The FMA microbenchmark.
pub static FMA_FAMILY: KernelFamily = KernelFamily {
    name: "roofline_fma",
    specs: &[&FMA_SPEC],
    fuzz: None,
    bench: KernelFamily::no_bench,
    precision: KernelFamily::no_cases,
    ..KernelFamily::BASE
};
/// The copy microbenchmark.
pub static COPY_FAMILY: KernelFamily = KernelFamily {
    name: "roofline_copy",
    specs: &[&COPY_SPEC],
    fuzz: None,
    bench: KernelFamily::no_bench,
    precision: KernelFamily::no_cases,
    ..KernelFamily::BASE
};
/// The driver probe.
pub static LOOP_FAMILY: KernelFamily = KernelFamily {
    name: "loop_probe",
    specs: &[&LOOP_SPEC],
    fuzz: None,
    bench: KernelFamily::no_bench,
    precision: KernelFamily::no_cases,
    ..KernelFamily::BASE
};

fn params(iterations: u32, len: u32) -> Params {
    Params { iterations, len, _pad0: 0, _pad1: 0 }
}

impl Kernel for FmaPeak {
    fn name(&self) -> &'static str {
        FMA_FAMILY.name
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::ShapeOnly
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(self.name(), inputs, 1)?;
        Ok(Meta::f32(&[4 * 1024]))
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&FMA_SPEC]
    }

    fn dispatch(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Dispatch {
        Dispatch::new(&params(self.iterations, 1024), u64::from(self.invocations).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, _inputs: &[&Meta]) -> Cost {
        Cost { flops: 64.0 * f64::from(self.invocations) * f64::from(self.iterations), bytes: 0.0 }
    }

    fn reference(&self, _inputs: &[&[f64]], _metas: &[&Meta]) -> Vec<f64> {
        Vec::new()
    }
}

impl Kernel for CopyBandwidth {
    fn name(&self) -> &'static str {
        COPY_FAMILY.name
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::Param
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(self.name(), inputs, 1)?;
        Ok(inputs[0].clone())
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&COPY_SPEC]
    }

    fn dispatches(&self, spec: &KernelSpec, inputs: &[&Meta], _limits: &super::BindLimits) -> Result<Vec<Dispatch>> {
        Ok(vec![self.dispatch(spec, inputs); self.repeats.max(1) as usize])
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let vec4s = inputs[0].len() / 4;
        Dispatch::new(&params(0, vec4s as u32), (vec4s as u64).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        Cost { flops: 0.0, bytes: 2.0 * 4.0 * inputs[0].len() as f64 * f64::from(self.repeats.max(1)) }
    }

    fn reference(&self, inputs: &[&[f64]], _metas: &[&Meta]) -> Vec<f64> {
        inputs[0].to_vec()
    }
}

impl Kernel for LoopProbe {
    fn name(&self) -> &'static str {
        LOOP_FAMILY.name
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::ShapeOnly
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_arity(self.name(), inputs, 0)?;
        Ok(Meta::new(&[2], DType::U32))
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&LOOP_SPEC]
    }

    fn dispatch(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Dispatch {
        Dispatch::new(&LoopParams { outer: self.outer, inner: self.inner, _pad0: 0, _pad1: 0 }, 1)
    }

    fn cost(&self, _inputs: &[&Meta]) -> Cost {
        Cost::default()
    }

    /// The (count, LCG state) a correct driver produces.
    fn reference(&self, _inputs: &[&[f64]], _metas: &[&Meta]) -> Vec<f64> {
        let total = u64::from(self.outer) * u64::from(self.inner);
        let mut state = 1u32;
        for _ in 0..total {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        }
        vec![f64::from(total as u32), f64::from(state)]
    }
}
