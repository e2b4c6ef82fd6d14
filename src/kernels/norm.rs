//! Normalisation over the last dimension, one workgroup per row (`shaders/norm.wgsl`):
//! LayerNorm (two passes, so a large common offset loses no precision) and RMSNorm.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, Tolerance, huge_for, max_abs, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::norm::norm_dim;
use crate::ops::{LayerNorm, Meta, Operand, RmsNorm};
use crate::pipeline::Access;
use crate::reference;

/// Mirrors `Params` in `shaders/norm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows (leading dimensions folded).
    pub rows: u32,
    /// Normalised (last) dimension.
    pub dim: u32,
    /// Added to the variance.
    pub eps: f32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

const WORKGROUP: u32 = 64;
const SOURCE: &str = include_str!("../../shaders/norm.wgsl");
const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];
const PARAMS: usize = std::mem::size_of::<Params>();

/// LayerNorm, one workgroup per row.
pub static LAYER_NORM_SPEC: KernelSpec =
    KernelSpec::new(LayerNorm::NAME, "norm.wgsl", SOURCE, "layer_norm", BINDINGS, WORKGROUP, PARAMS);

/// The LayerNorm family.
pub static LAYER_NORM_FAMILY: KernelFamily = KernelFamily {
    name: LayerNorm::NAME,
    specs: &[&LAYER_NORM_SPEC],
    fuzz: Some(fuzz_layer_norm),
    bench: bench_layer_norm,
    precision: precision_layer_norm,
    ..KernelFamily::BASE
};

/// One workgroup per row of `dim` elements.
fn row_dispatch(inputs: &[&Meta], dim: usize, eps: f32) -> Dispatch {
    let rows = inputs[0].len() / dim;
    Dispatch::new(&Params { rows: rows as u32, dim: dim as u32, eps, _pad: 0 }, rows as u64)
}

/// Reads and writes each element once, reads each parameter once.
fn row_cost(inputs: &[&Meta], dim: usize, flops_per_element: f64) -> Cost {
    let n = inputs[0].len();
    Cost {
        flops: flops_per_element * n as f64,
        bytes: 2.0 * bytes(inputs[0].dtype, n) + bytes(DType::F32, dim * (inputs.len() - 1)),
    }
}

impl Kernel for LayerNorm {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, i: usize) -> Operand {
        if i == 0 { Operand::Activation } else { Operand::Param }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        LayerNorm::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&LAYER_NORM_SPEC]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        row_dispatch(inputs, norm_dim(inputs), self.eps)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        row_cost(inputs, norm_dim(inputs), 7.0)
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let dim = norm_dim(metas);
        reference::layer_norm(inputs[0], inputs[1], inputs[2], dim, f64::from(self.eps))
    }
}

/// RMSNorm, one workgroup per row.
pub static RMS_NORM_SPEC: KernelSpec =
    KernelSpec::new(RmsNorm::NAME, "norm.wgsl", SOURCE, "rms_norm", BINDINGS, WORKGROUP, PARAMS);

/// The RMSNorm family.
pub static RMS_NORM_FAMILY: KernelFamily = KernelFamily {
    name: RmsNorm::NAME,
    specs: &[&RMS_NORM_SPEC],
    fuzz: Some(fuzz_rms_norm),
    bench: bench_rms_norm,
    precision: precision_rms_norm,
    ..KernelFamily::BASE
};

impl Kernel for RmsNorm {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, i: usize) -> Operand {
        if i == 0 { Operand::Activation } else { Operand::Param }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        RmsNorm::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&RMS_NORM_SPEC]
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        vec![("WEIGHT_OFFSET", if self.unit_offset { 1.0 } else { 0.0 })]
    }

    /// x, weight; the bias binding is not read.
    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        vec![Some(0), Some(1), None]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        row_dispatch(inputs, norm_dim(inputs), self.eps)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        row_cost(inputs, norm_dim(inputs), 4.0)
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let dim = norm_dim(metas);
        reference::rms_norm(inputs[0], inputs[1], dim, f64::from(self.eps), f64::from(u8::from(self.unit_offset)))
    }
}

/// |y| <= |x|/rms·|w'|: f32 rounding of the sum of squares and the rsqrt, √dim ulps of it.
fn fuzz_rms_norm(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (rows, dim) = (rng.edge(64), rng.edge(300));
    let per_head = rng.bool(0.3);
    let heads = if per_head { rng.range(1, 4) } else { 1 };
    let op = RmsNorm { eps: rng.pick(&[1e-5, 1e-6]), unit_offset: rng.bool(0.5), per_head };
    // The sum of squares is f32: |x| up to 1e15 keeps it finite.
    let x = rng.values(rows * heads * dim, kind, huge_for(storage, 1e15), inject);
    let w = rng.normals(dim, 1.0);
    // Rows with ±Inf or NaN are all NaN or 0, which the parity check covers.
    let scale: Vec<f64> = x
        .chunks(dim)
        .map(|row| {
            let ms = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / dim as f64;
            let s = max_abs(row) / (ms + f64::from(op.eps)).sqrt();
            if s.is_finite() { s } else { 0.0 }
        })
        .collect();
    let offset = f32::from(u8::from(op.unit_offset));
    let extra = (0..x.len())
        .map(|i| 2e-6 * (dim as f64).sqrt() * scale[i / dim] * f64::from((w[i % dim] + offset).abs()))
        .collect();
    let (c, y) = norm_case(op, x, heads * dim, storage, vec![w])?;
    let description = format!("{rows}x{heads}x{dim} {op:?} {storage} {kind:?} inject={inject}");
    Ok(c.finish(&[y], description, Tolerance::new(1e-6, 1e-5).with_extra(extra)))
}

fn bench_rms_norm() -> Vec<BenchCase> {
    vec![BenchCase::new("4096x1280", || {
        let mut rng = CaseRng::new(1);
        let (c, y) = norm_case(
            RmsNorm::new(1e-6),
            rng.normals(4096 * 1280, 1.0),
            1280,
            DType::F32,
            vec![rng.normals(1280, 1.0)],
        )?;
        Ok(c.finish(&[y], String::new(), Tolerance::exact()))
    })]
}

fn precision_rms_norm() -> Result<Vec<Case>> {
    let mut rng = CaseRng::new(4);
    let op = RmsNorm { unit_offset: true, ..RmsNorm::new(1e-6) };
    let (c, y) = norm_case(op, rng.signed(5 * 67), 67, DType::F16, vec![rng.signed(67)])?;
    Ok(vec![c.finish(&[y], "5x67, 1 + w".into(), Tolerance::new(0.0, 1e-5))])
}

/// A norm case: x `[rows, width]` from `x`, one parameter tensor per entry of `params`.
fn norm_case(
    op: impl Into<super::Op>,
    x: Vec<f32>,
    dim: usize,
    storage: DType,
    params: Vec<Vec<f32>>,
) -> Result<(Case, usize)> {
    let op = op.into();
    let mut c = Case::builder(op.name());
    let mut inputs = vec![c.input("x", &[x.len() / dim, dim], storage, x)];
    for (i, p) in params.into_iter().enumerate() {
        inputs.push(c.constant(&format!("param{i}"), &[p.len()], DType::F32, p));
    }
    let y = c.node(op, &inputs)?;
    Ok((c, y))
}

/// Per-row f32 cancellation in `x - mean`: one ulp of the row's largest |x| over its standard
/// deviation (PyTorch's f32 loses the same), times |w|, plus √dim rounding.
fn cancellation_tolerance(x: &[f32], w: &[f32], dim: usize, eps: f32) -> Vec<f64> {
    let per_row: Vec<f64> = x
        .chunks(dim)
        .map(|row| {
            let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let mean = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
            let largest = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            4e-7 * largest / (var + f64::from(eps)).sqrt()
        })
        .collect();
    (0..x.len()).map(|i| f64::from(w[i % dim].abs()) * (2e-6 * (dim as f64).sqrt() + per_row[i / dim])).collect()
}

fn fuzz_layer_norm(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (rows, dim) = (rng.edge(64), rng.edge(300));
    let eps = rng.pick(&[1e-5, 1e-12]);
    // Per head: each `dim` chunk of a `[rows, heads·dim]` row on its own (Qwen2-VL's merger).
    let heads = if rng.bool(0.3) { rng.range(2, 4) } else { 1 };
    let op = if heads > 1 { LayerNorm::new(eps).per_head() } else { LayerNorm::new(eps) };
    // Variance is computed in f32, as PyTorch's: |x| up to 1e15 keeps it finite.
    let x = rng.values(rows * heads * dim, kind, huge_for(storage, 1e15), inject);
    let (w, b) = (rng.normals(dim, 1.0), rng.normals(dim, 1.0));
    let extra = cancellation_tolerance(&x, &w, dim, eps);
    let (c, y) = norm_case(op, x, heads * dim, storage, vec![w, b])?;
    let description = format!("{rows}x{heads}x{dim} eps {eps:e} {storage} {kind:?} inject={inject}");
    Ok(c.finish(&[y], description, Tolerance::new(1e-6, 1e-5).with_extra(extra)))
}

fn bench_layer_norm() -> Vec<BenchCase> {
    vec![BenchCase::new("577x1024", || {
        let mut rng = CaseRng::new(1);
        let (c, y) = norm_case(
            LayerNorm::new(1e-5),
            rng.normals(577 * 1024, 1.0),
            1024,
            DType::F32,
            vec![rng.normals(1024, 1.0), rng.normals(1024, 0.1)],
        )?;
        Ok(c.finish(&[y], String::new(), Tolerance::exact()))
    })]
}

fn precision_layer_norm() -> Result<Vec<Case>> {
    let mut rng = CaseRng::new(3);
    let (c, y) =
        norm_case(LayerNorm::new(1e-5), rng.signed(5 * 67), 67, DType::F16, vec![rng.signed(67), rng.signed(67)])?;
    Ok(vec![c.finish(&[y], "5x67".into(), Tolerance::new(0.0, 1e-5))])
}
