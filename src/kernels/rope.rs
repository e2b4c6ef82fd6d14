//! 2D rotary position embedding (`shaders/rope.wgsl`): the leading heads of every row turned
//! by their patch's row and column, the rest copied.
//!
//! Precision: the reference takes upstream's f32 inverse frequencies and f32 angles
//! ([`Rope2d::frequency`]) and does the rest in f64; the kernel differs by its `pow`, `cos`
//! and `sin` (a few f32 ulps of the angle, which reaches ~100 radians at 100 patches a side),
//! so each element gets 2e-5 of |x| + |partner| on top of f32 rounding.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, SUBNORMAL_FLOOR, Tolerance, huge_for, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, product};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::rope::NAME;
use crate::ops::{Meta, Operand, Rope2d, RopeFrequencies, rows_cols};
use crate::pipeline::Access;

/// Mirrors `Params` in `shaders/rope.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements written.
    pub total: u32,
    /// Channels per row.
    pub width: u32,
    /// Leading channels rotated.
    pub rotated: u32,
    /// Dims per head.
    pub head_dim: u32,
    /// Pair j's inverse frequency at `[j / 4][j % 4]` ([`Rope2d::frequency`]).
    pub inverse: [[f32; 4]; 16],
}

const WORKGROUP: u32 = 256;
const SOURCE: &str = include_str!("../../shaders/rope.wgsl");
const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];

/// The only variant.
pub static ROPE2D: KernelSpec =
    KernelSpec::new("rope2d", "rope.wgsl", SOURCE, "rope2d", BINDINGS, WORKGROUP, std::mem::size_of::<Params>());

/// The rotary family.
pub static FAMILY: KernelFamily =
    KernelFamily { name: NAME, specs: &[&ROPE2D], fuzz: Some(fuzz), bench, precision, ..KernelFamily::BASE };

/// Each pair's inverse frequency as the shader reads it, four to a `vec4`.
fn inverse_table(op: &Rope2d) -> [[f32; 4]; 16] {
    let mut table = [[0.0; 4]; 16];
    for j in 0..op.head_dim / 2 {
        table[j / 4][j % 4] = op.frequency(j).0;
    }
    table
}

impl Kernel for Rope2d {
    fn name(&self) -> &'static str {
        NAME
    }

    fn operand(&self, i: usize) -> Operand {
        if i == 1 { Operand::Index } else { Operand::Activation }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        Rope2d::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&ROPE2D]
    }

    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        vec![Some(0), Some(1)]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let (rows, width) = rows_cols(&inputs[0].shape);
        let p = Params {
            total: (rows * width) as u32,
            width: width as u32,
            rotated: (self.heads * self.head_dim) as u32,
            head_dim: self.head_dim as u32,
            inverse: inverse_table(self),
        };
        Dispatch::new(&p, u64::from(p.total).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let (rows, width) = rows_cols(&inputs[0].shape);
        let rotated = product(&[rows, self.heads, self.head_dim]);
        Cost { flops: 3.0 * rotated, bytes: 2.0 * bytes(inputs[0].dtype, rows * width) + 8.0 * rows as f64 }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let (x, positions) = (inputs[0], inputs[1]);
        let (_, width) = rows_cols(&metas[0].shape);
        let (d, half) = (self.head_dim, self.head_dim / 2);
        let mut y = x.to_vec();
        for (r, row) in x.chunks(width).enumerate() {
            for c in 0..self.heads * d {
                let (within, start) = (c % d, c - c % d);
                let (inverse, axis) = self.frequency(within % half);
                // Upstream's angle: an f32 position times the f32 inverse frequency.
                let angle = f64::from(positions[2 * r + axis] as f32 * inverse);
                let turned = if within < half { -row[start + within + half] } else { row[start + within - half] };
                y[r * width + c] = row[c] * angle.cos() + turned * angle.sin();
            }
        }
        y
    }
}

/// A random fused-QKV-like row: `heads` rotated heads then `extra` copied ones.
struct Shape {
    rows: usize,
    heads: usize,
    extra: usize,
    head_dim: usize,
    grid: usize,
    frequencies: RopeFrequencies,
    storage: DType,
}

fn case(rng: &mut CaseRng, s: Shape, kind: super::cases::Values, inject: bool) -> Result<Case> {
    let op = Rope2d { head_dim: s.head_dim, heads: s.heads, theta: 10000.0, frequencies: s.frequencies };
    let width = (s.heads + s.extra) * s.head_dim;
    let huge = huge_for(s.storage, 1e37);
    let values = rng.values(s.rows * width, kind, huge, inject);
    let positions: Vec<u32> = (0..2 * s.rows).map(|_| rng.range(0, s.grid - 1) as u32).collect();
    // 2e-5 of the two values each output combines (the angle's f32 error), per element.
    let extra: Vec<f64> = (0..s.rows * width)
        .map(|i| {
            let c = i % width;
            if c >= s.heads * s.head_dim {
                return 0.0;
            }
            let half = s.head_dim / 2;
            let partner = if c % s.head_dim < half { i + half } else { i - half };
            2e-5 * f64::from(values[i].abs() + values[partner].abs())
        })
        .collect();
    let mut c = Case::builder(NAME);
    let x = c.input("x", &[s.rows, width], s.storage, values);
    let p = c.constant("positions", &[s.rows, 2], DType::U32, positions);
    let y = c.node(op, &[x, p])?;
    let description = format!(
        "{:?} {} rows, {}+{} heads of {}, grid {} {} {kind:?}",
        s.frequencies, s.rows, s.heads, s.extra, s.head_dim, s.grid, s.storage
    );
    Ok(c.finish(&[y], description, Tolerance::new(SUBNORMAL_FLOOR, 2e-6).with_extra(extra)))
}

fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let frequencies = if rng.bool(0.5) { RopeFrequencies::Axial } else { RopeFrequencies::Interleaved };
    let shape = Shape {
        rows: rng.edge(60),
        heads: rng.range(1, 4),
        extra: rng.range(0, 2),
        head_dim: 4 * rng.range(1, 32),
        grid: rng.range(1, 120),
        frequencies,
        storage,
    };
    case(rng, shape, kind, inject)
}

/// Qwen2-VL-7B's query and key heads (16 of 80 each, values copied) at 448 px: 1024 patches.
fn bench() -> Vec<BenchCase> {
    vec![BenchCase::new("1024 x 3840, 32 of 48 heads of 80 rotated", || {
        let shape = Shape {
            rows: 1024,
            heads: 32,
            extra: 16,
            head_dim: 80,
            grid: 32,
            frequencies: RopeFrequencies::Axial,
            storage: DType::F32,
        };
        case(&mut CaseRng::new(1), shape, super::cases::Values::Normal, false)
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
    Ok(vec![case(&mut CaseRng::new(3), shape, super::cases::Values::Normal, false)?])
}
