//! Spatial downsampling of token grids (`shaders/downsample.wgsl`), one invocation per output
//! element: `k × k` average pooling and LLaVA-OneVision's bilinear halving.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, SUBNORMAL_FLOOR, Tolerance, huge_for, max_abs, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, Op, bytes, wgsl};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{AvgPool, BilinearHalf, Meta, Operand};
use crate::pipeline::Access;
use crate::reference;

/// Mirrors `Params` in `shaders/downsample.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Batch items.
    pub batch: u32,
    /// Input grid rows.
    pub h: u32,
    /// Input grid columns.
    pub w: u32,
    /// Feature width.
    pub channels: u32,
    /// Output grid rows.
    pub out_h: u32,
    /// Output grid columns.
    pub out_w: u32,
    /// Pooling window side and stride.
    pub k: u32,
    /// Padding.
    pub _pad0: u32,
    /// Bilinear: h / out_h.
    pub scale_h: f32,
    /// Bilinear: w / out_w.
    pub scale_w: f32,
    /// Padding to 48 bytes.
    pub _pad1: u32,
    /// Padding.
    pub _pad2: u32,
}

const WORKGROUP: u32 = 256;
const SOURCE: &str = include_str!("../../shaders/downsample.wgsl");
const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
const PARAMS: usize = std::mem::size_of::<Params>();

const fn spec(name: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        prelude: &[wgsl::BILINEAR_TAPS],
        ..KernelSpec::new(name, "downsample.wgsl", SOURCE, entry, BINDINGS, WORKGROUP, PARAMS)
    }
}

/// `k × k` average pooling.
pub static AVG_POOL_SPEC: KernelSpec = spec(AvgPool::NAME, "avg_pool");
/// Bilinear halving.
pub static BILINEAR_SPEC: KernelSpec = spec(BilinearHalf::NAME, "bilinear");

/// The average-pooling family.
pub static AVG_POOL_FAMILY: KernelFamily = KernelFamily {
    name: AvgPool::NAME,
    specs: &[&AVG_POOL_SPEC],
    fuzz: Some(fuzz_avg_pool),
    bench: bench_avg_pool,
    precision: precision_avg_pool,
    ..KernelFamily::BASE
};

/// The bilinear-halving family.
pub static BILINEAR_FAMILY: KernelFamily = KernelFamily {
    name: BilinearHalf::NAME,
    specs: &[&BILINEAR_SPEC],
    fuzz: Some(fuzz_bilinear),
    bench: bench_bilinear,
    precision: precision_bilinear,
    ..KernelFamily::BASE
};

/// One invocation per output element, channel fastest.
fn dispatch(inputs: &[&Meta], grid: (usize, usize), out: (usize, usize), k: usize) -> Dispatch {
    let s = &inputs[0].shape;
    let p = Params {
        batch: s[0] as u32,
        h: grid.0 as u32,
        w: grid.1 as u32,
        channels: s[2] as u32,
        out_h: out.0 as u32,
        out_w: out.1 as u32,
        k: k as u32,
        _pad0: 0,
        // PyTorch's scale is in/out in f32 (27/14 = 1.9286 for a 27 grid, not 2).
        scale_h: grid.0 as f32 / out.0.max(1) as f32,
        scale_w: grid.1 as f32 / out.1.max(1) as f32,
        _pad1: 0,
        _pad2: 0,
    };
    Dispatch::new(&p, ((s[0] * out.0 * out.1 * s[2]) as u64).div_ceil(u64::from(WORKGROUP)))
}

/// Reads the grid once, writes the output once, `flops_per_output` each.
fn cost(inputs: &[&Meta], out: (usize, usize), flops_per_output: f64) -> Cost {
    let s = &inputs[0].shape;
    let n_out = s[0] * out.0 * out.1 * s[2];
    Cost { flops: flops_per_output * n_out as f64, bytes: bytes(inputs[0].dtype, inputs[0].len() + n_out) }
}

impl Kernel for AvgPool {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::Activation
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        AvgPool::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&AVG_POOL_SPEC]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        dispatch(inputs, (self.h, self.w), self.output_grid(), self.k)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        cost(inputs, self.output_grid(), (self.k * self.k) as f64)
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let s = &metas[0].shape;
        reference::avg_pool(self, inputs[0], s[0], s[2])
    }
}

impl Kernel for BilinearHalf {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::Activation
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        BilinearHalf::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&BILINEAR_SPEC]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        dispatch(inputs, (self.h, self.w), self.output_grid(), 2)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        cost(inputs, self.output_grid(), 4.0)
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let s = &metas[0].shape;
        reference::bilinear_half(self, inputs[0], s[0], s[2])
    }
}

/// A pool of `[batch, h·w, channels]` from the fuzz distributions; error up to a few ulps of
/// the largest input (a mean of at most k² of them).
fn fuzz_grid(
    rng: &mut CaseRng,
    target: &CaseTarget,
    op: impl FnOnce(&mut CaseRng, usize, usize) -> Op,
) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (h, w, batch, channels) = (rng.edge(64), rng.edge(64), rng.range(1, 2), rng.edge(9));
    let op = op(rng, h, w);
    let x = rng.values(batch * h * w * channels, kind, huge_for(storage, 1e30), inject);
    let tol = 2e-6 * max_abs(&x);
    let mut c = Case::builder(op.name());
    let xi = c.input("x", &[batch, h * w, channels], storage, x);
    let y = c.node(op, &[xi])?;
    let description = format!("{op:?} b{batch} c{channels} {storage} {kind:?} inject={inject}");
    Ok(c.finish(&[y], description, Tolerance::new(SUBNORMAL_FLOOR, 1e-6).plus(tol)))
}

fn fuzz_avg_pool(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    fuzz_grid(rng, target, |rng, h, w| {
        let k = rng.pick(&[2, 2, 3, 4]);
        // A grid narrower than the window has no full window: floor mode would be empty.
        Op::AvgPool(AvgPool { h, w, k, ceil_mode: h < k || w < k || rng.bool(0.5) })
    })
}

fn fuzz_bilinear(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    fuzz_grid(rng, target, |_, h, w| Op::BilinearHalf(BilinearHalf { h, w }))
}

/// `op` over a `[batch, h·w, channels]` grid, values uniform in [-1, 1).
fn grid_case(op: Op, (h, w): (usize, usize), batch: usize, channels: usize, storage: DType) -> Result<Case> {
    let mut rng = CaseRng::new(5);
    let mut c = Case::builder(op.name());
    let x = c.input("x", &[batch, h * w, channels], storage, rng.signed(batch * h * w * channels));
    let y = c.node(op, &[x])?;
    Ok(c.finish(&[y], format!("{op:?}"), Tolerance::new(0.0, 1e-5)))
}

fn bench_avg_pool() -> Vec<BenchCase> {
    vec![BenchCase::new("24x24x1024", || {
        grid_case(AvgPool::two_by_two(24, 24, false).into(), (24, 24), 1, 1024, DType::F32)
    })]
}

fn bench_bilinear() -> Vec<BenchCase> {
    vec![BenchCase::new("24x24x1024", || {
        grid_case(BilinearHalf { h: 24, w: 24 }.into(), (24, 24), 1, 1024, DType::F32)
    })]
}

fn precision_avg_pool() -> Result<Vec<Case>> {
    Ok(vec![grid_case(AvgPool::two_by_two(5, 7, true).into(), (5, 7), 2, 3, DType::F16)?])
}

fn precision_bilinear() -> Result<Vec<Case>> {
    Ok(vec![grid_case(BilinearHalf { h: 6, w: 9 }.into(), (6, 9), 2, 3, DType::F16)?])
}
