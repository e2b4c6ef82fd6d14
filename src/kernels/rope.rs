//! Rotary pairs (`shaders/rope.wgsl`): adjacent channel pairs of the leading heads of every row
//! turned by the row's (cos, sin) table, the rest copied. The towers fuse this turn into their
//! QKV GEMM's epilogue ([`crate::ops::Epilogue::rotary`]); this node is what that lowers to
//! where it is not fused (`VLBRIDGE_FORCE=rope=separate`), and the measured baseline.
//!
//! Precision: the table is exact to f32 (the host takes cos and sin in f64), so the kernel
//! differs from the f64 reference by its two products and their sum, each rounded to f32:
//! 3e-7 of |x| + |partner| per element.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, SUBNORMAL_FLOOR, Tolerance, Values, huge_for, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, product};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::rope::NAME;
use crate::ops::{Meta, Operand, Rope2d, RopeFrequencies, RotaryPairs, rows_cols};
use crate::pipeline::Access;
use crate::reference;

/// Mirrors `Params` in `shaders/rope.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements written.
    pub total: u32,
    /// Channels per row.
    pub width: u32,
    /// Leading channels turned.
    pub rotated: u32,
    /// Dims per head.
    pub head_dim: u32,
}

const WORKGROUP: u32 = 256;
const SOURCE: &str = include_str!("../../shaders/rope.wgsl");
const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];

/// The only variant.
pub static ROTARY_PAIRS: KernelSpec = KernelSpec::new(
    "rotary_pairs",
    "rope.wgsl",
    SOURCE,
    "rotary_pairs",
    BINDINGS,
    WORKGROUP,
    std::mem::size_of::<Params>(),
);

/// The rotary family.
pub static FAMILY: KernelFamily =
    KernelFamily { name: NAME, specs: &[&ROTARY_PAIRS], fuzz: Some(fuzz), bench, precision, ..KernelFamily::BASE };

impl Kernel for RotaryPairs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn operand(&self, i: usize) -> Operand {
        if i == 1 { Operand::Param } else { Operand::Activation }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        RotaryPairs::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&ROTARY_PAIRS]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let (rows, width) = rows_cols(&inputs[0].shape);
        let p = Params {
            total: (rows * width) as u32,
            width: width as u32,
            rotated: self.channels() as u32,
            head_dim: self.head_dim as u32,
        };
        Dispatch::new(&p, u64::from(p.total).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let (rows, width) = rows_cols(&inputs[0].shape);
        let rotated = product(&[rows, self.channels()]);
        Cost {
            flops: 3.0 * rotated,
            bytes: 2.0 * bytes(inputs[0].dtype, rows * width) + bytes(DType::F32, inputs[1].len()),
        }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let (_, width) = rows_cols(&metas[0].shape);
        let mut y = inputs[0].to_vec();
        reference::rotate_pairs(&mut y, inputs[1], width, *self);
        y
    }
}

/// A random fused-QKV-like row: `heads` turned heads then `extra` copied ones, each row's turn
/// from a random patch position on a `grid`-sided image (so angles reach ~100 radians).
struct Shape {
    rows: usize,
    heads: usize,
    extra: usize,
    head_dim: usize,
    grid: usize,
    frequencies: RopeFrequencies,
    storage: DType,
}

fn case(rng: &mut CaseRng, s: Shape, kind: Values, inject: bool) -> Result<Case> {
    let rope = Rope2d { head_dim: s.head_dim, heads: s.heads, theta: 10000.0, frequencies: s.frequencies };
    let width = (s.heads + s.extra) * s.head_dim;
    let values = rng.values(s.rows * width, kind, huge_for(s.storage, 1e37), inject);
    let positions: Vec<u32> = (0..2 * s.rows).map(|_| rng.range(0, s.grid - 1) as u32).collect();
    let table = rope.table(&positions)?;
    // Two f32 products and their sum: 3e-7 of the two values each output combines.
    let extra: Vec<f64> = (0..s.rows * width)
        .map(|i| {
            if i % width >= s.heads * s.head_dim {
                return 0.0;
            }
            3e-7 * f64::from(values[i].abs() + values[i ^ 1].abs())
        })
        .collect();
    let mut c = Case::builder(NAME);
    let x = c.input("x", &[s.rows, width], s.storage, values);
    let t = c.constant("table", &[s.rows, s.head_dim / 2, 2], DType::F32, table);
    let y = c.node(rope.pairs(), &[x, t])?;
    let description = format!(
        "{:?} {} rows, {}+{} heads of {}, grid {} {} {kind:?}",
        s.frequencies, s.rows, s.heads, s.extra, s.head_dim, s.grid, s.storage
    );
    Ok(c.finish(&[y], description, Tolerance::new(SUBNORMAL_FLOOR, 2e-7).with_extra(extra)))
}

fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let frequencies = if rng.bool(0.5) { RopeFrequencies::Axial } else { RopeFrequencies::Interleaved };
    let shape = Shape {
        rows: rng.edge(60),
        heads: rng.range(1, 4),
        extra: rng.range(0, 2),
        head_dim: 4 * rng.range(1, 40),
        grid: rng.range(1, 120),
        frequencies,
        storage,
    };
    case(rng, shape, kind, inject)
}

/// Qwen2-VL-7B's query and key heads (16 of 80 each, values copied) at 448 px: 1024 patches.
fn bench() -> Vec<BenchCase> {
    vec![BenchCase::new("1024 x 3840, 32 of 48 heads of 80 turned", || {
        let shape = Shape {
            rows: 1024,
            heads: 32,
            extra: 16,
            head_dim: 80,
            grid: 32,
            frequencies: RopeFrequencies::Axial,
            storage: DType::F32,
        };
        case(&mut CaseRng::new(1), shape, Values::Normal, false)
    })]
}

fn precision() -> Result<Vec<Case>> {
    let shape = Shape {
        rows: 37,
        heads: 2,
        extra: 1,
        head_dim: 12,
        grid: 90,
        frequencies: RopeFrequencies::Interleaved,
        storage: DType::F16,
    };
    Ok(vec![case(&mut CaseRng::new(3), shape, Values::Normal, false)?])
}
