//! Elementwise kernels: GELU (`shaders/gelu.wgsl`, the unfused baseline of the fused GEMM
//! epilogue), repeat (`shaders/repeat.wgsl`: learnable queries broadcast over the batch),
//! convert (`shaders/convert.wgsl`: f32 parameters into f16 graphs) and row-broadcast adds
//! (`shaders/add_rows.wgsl`: Mllama's per-tile embedding over the tile's tokens).

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, SUBNORMAL_FLOOR, Tolerance, huge_for, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, wgsl};
use crate::dtype::{DType, round_to};
use crate::error::Result;
use crate::ops::elementwise::check_unary;
use crate::ops::{AddRows, Convert, GeluForm, Meta, Operand, Repeat};
use crate::pipeline::Access;
use crate::reference;

/// Mirrors `Params` in `shaders/gelu.wgsl`, `repeat.wgsl` and `convert.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements read.
    pub len: u32,
    /// Elements written (repeat: times · len).
    pub total: u32,
    /// Padding to 16 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
}

const WORKGROUP: u32 = 256;
const UNARY: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
const PARAMS: usize = std::mem::size_of::<Params>();

/// One invocation per output element.
fn dispatch(len: usize, total: usize) -> Dispatch {
    let p = Params { len: len as u32, total: total as u32, _pad0: 0, _pad1: 0 };
    Dispatch::new(&p, (total as u64).div_ceil(u64::from(WORKGROUP)))
}

const GELU: &str = "gelu";

/// Elementwise GELU.
pub static GELU_SPEC: KernelSpec = KernelSpec {
    prelude: &[wgsl::ACTIVATIONS],
    ..KernelSpec::new(GELU, "gelu.wgsl", include_str!("../../shaders/gelu.wgsl"), "gelu", UNARY, WORKGROUP, PARAMS)
};

/// The GELU family.
pub static GELU_FAMILY: KernelFamily = KernelFamily {
    name: GELU,
    specs: &[&GELU_SPEC],
    fuzz: Some(fuzz_gelu),
    bench: bench_gelu,
    precision: precision_gelu,
    ..KernelFamily::BASE
};

impl Kernel for GeluForm {
    fn name(&self) -> &'static str {
        GELU
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::Activation
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        check_unary(GELU, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&GELU_SPEC]
    }

    fn overrides(&self, _spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        vec![("GELU_FORM", f64::from(GeluForm::code(Some(*self))))]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        dispatch(inputs[0].len(), inputs[0].len())
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let n = inputs[0].len();
        // ~20 flops for erfc + exp; reads and writes each element once.
        Cost { flops: 20.0 * n as f64, bytes: 2.0 * bytes(inputs[0].dtype, n) }
    }

    fn reference(&self, inputs: &[&[f64]], _metas: &[&Meta]) -> Vec<f64> {
        inputs[0].iter().map(|&v| reference::gelu(*self, v)).collect()
    }
}

fn fuzz_gelu(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let n = rng.edge(5000);
    let form = rng.pick(&GeluForm::ALL);
    let x = rng.values(n, kind, huge_for(storage, 1e30), inject);
    let mut c = Case::builder(GELU);
    let xi = c.input("x", &[n], storage, x.clone());
    let y = c.node(form, &[xi])?;
    // The tanh form cancels in 1 + tanh for x < -5, as PyTorch's f32 does: absolute error up
    // to ~|x|·1e-7 there.
    let extra = x.iter().map(|v| 2e-7 * f64::from(v.abs())).collect();
    let description = format!("{n} {form:?} {storage} {kind:?} inject={inject}");
    Ok(c.finish(&[y], description, Tolerance::new(SUBNORMAL_FLOOR, 1e-5).with_extra(extra)))
}

fn bench_gelu() -> Vec<BenchCase> {
    vec![BenchCase::new("576x4096", || unary_case(GELU, GeluForm::Erf, &[576, 4096], DType::F32, 1))]
}

fn precision_gelu() -> Result<Vec<Case>> {
    Ok(vec![unary_case(GELU, GeluForm::Erf, &[1001], DType::F16, 2)?])
}

/// `op` on one input of `shape` stored as `storage`, values uniform in [-1, 1).
fn unary_case(
    kernel: &'static str,
    op: impl Into<super::Op>,
    shape: &[usize],
    storage: DType,
    seed: u64,
) -> Result<Case> {
    let mut rng = CaseRng::new(seed);
    let mut c = Case::builder(kernel);
    let x = c.input("x", shape, storage, rng.signed(shape.iter().product()));
    let y = c.node(op, &[x])?;
    Ok(c.finish(&[y], format!("{shape:?} {storage}"), Tolerance::new(0.0, 1e-5)))
}

/// Broadcast along a new leading dimension.
pub static REPEAT_SPEC: KernelSpec = KernelSpec::new(
    Repeat::NAME,
    "repeat.wgsl",
    include_str!("../../shaders/repeat.wgsl"),
    "repeat",
    UNARY,
    WORKGROUP,
    PARAMS,
);

/// The repeat family.
pub static REPEAT_FAMILY: KernelFamily = KernelFamily {
    name: Repeat::NAME,
    specs: &[&REPEAT_SPEC],
    fuzz: Some(fuzz_repeat),
    bench: bench_repeat,
    precision: precision_repeat,
    ..KernelFamily::BASE
};

impl Kernel for Repeat {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::Activation
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        Repeat::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&REPEAT_SPEC]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        dispatch(inputs[0].len(), inputs[0].len() * self.times)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let n = inputs[0].len();
        Cost { flops: 0.0, bytes: bytes(inputs[0].dtype, n + n * self.times) }
    }

    fn reference(&self, inputs: &[&[f64]], _metas: &[&Meta]) -> Vec<f64> {
        inputs[0].repeat(self.times)
    }
}

fn fuzz_repeat(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (n, times) = (rng.edge(3000), rng.edge(9));
    let mut c = Case::builder(Repeat::NAME);
    let x = c.input("x", &[n], storage, rng.values(n, kind, huge_for(storage, 1e38), inject));
    let y = c.node(Repeat { times }, &[x])?;
    Ok(c.finish(&[y], format!("{n} x{times} {storage} {kind:?} inject={inject}"), Tolerance::exact()))
}

fn bench_repeat() -> Vec<BenchCase> {
    vec![BenchCase::new("64x1024 x 8", || unary_case(Repeat::NAME, Repeat { times: 8 }, &[64, 1024], DType::F32, 1))]
}

fn precision_repeat() -> Result<Vec<Case>> {
    Ok(vec![unary_case(Repeat::NAME, Repeat { times: 3 }, &[3, 11], DType::F16, 3)?])
}

/// f32 → activation storage type.
pub static CONVERT_SPEC: KernelSpec = KernelSpec::new(
    Convert::NAME,
    "convert.wgsl",
    include_str!("../../shaders/convert.wgsl"),
    "convert",
    UNARY,
    WORKGROUP,
    PARAMS,
);

/// The convert family.
pub static CONVERT_FAMILY: KernelFamily = KernelFamily {
    name: Convert::NAME,
    specs: &[&CONVERT_SPEC],
    fuzz: Some(fuzz_convert),
    bench: super::KernelFamily::no_bench,
    precision: precision_convert,
    ..KernelFamily::BASE
};

impl Kernel for Convert {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, _i: usize) -> Operand {
        Operand::Param
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        Convert::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&CONVERT_SPEC]
    }

    fn storage(&self, _inputs: &[&Meta]) -> DType {
        self.to
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        dispatch(inputs[0].len(), inputs[0].len())
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let n = inputs[0].len();
        Cost { flops: 0.0, bytes: bytes(DType::F32, n) + bytes(self.to, n) }
    }

    fn reference(&self, inputs: &[&[f64]], _metas: &[&Meta]) -> Vec<f64> {
        inputs[0].iter().map(|&v| round_to(self.to, v)).collect()
    }
}

/// Rounding f32 to the storage type, overflow to ±Inf included (f32's full range).
fn fuzz_convert(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let n = rng.edge(3000);
    let mut c = Case::builder(Convert::NAME);
    let x = c.input("x", &[n], DType::F32, rng.values(n, kind, 1e38, inject));
    let y = c.node(Convert { to: storage }, &[x])?;
    Ok(c.finish(&[y], format!("{n} to {storage} {kind:?} inject={inject}"), Tolerance::exact()))
}

fn precision_convert() -> Result<Vec<Case>> {
    let mut rng = CaseRng::new(8);
    let mut c = Case::builder(Convert::NAME);
    // Values past f16's range included.
    let x = c.constant("x", &[3, 11], DType::F32, rng.signed(33).iter().map(|v| v * 1e5).collect::<Vec<_>>());
    let y = c.node(Convert { to: DType::F16 }, &[x])?;
    Ok(vec![c.finish(&[y], "values past f16's range included".into(), Tolerance::new(0.0, 1e-5))])
}

/// Mirrors `Params` in `shaders/add_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AddRowsParams {
    /// Elements per row.
    pub cols: u32,
    /// Rows of x per row of t.
    pub group: u32,
    /// Elements of x.
    pub total: u32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

/// A row of f32 added to each row of a group.
pub static ADD_ROWS_SPEC: KernelSpec = KernelSpec::new(
    AddRows::NAME,
    "add_rows.wgsl",
    include_str!("../../shaders/add_rows.wgsl"),
    "add_rows",
    &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
    WORKGROUP,
    std::mem::size_of::<AddRowsParams>(),
);

/// The row-broadcast add family.
pub static ADD_ROWS_FAMILY: KernelFamily = KernelFamily {
    name: AddRows::NAME,
    specs: &[&ADD_ROWS_SPEC],
    fuzz: Some(fuzz_add_rows),
    bench: super::KernelFamily::no_bench,
    precision: precision_add_rows,
    ..KernelFamily::BASE
};

impl Kernel for AddRows {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, i: usize) -> Operand {
        if i == 0 { Operand::Activation } else { Operand::Param }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        AddRows::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&ADD_ROWS_SPEC]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let (total, cols) = (inputs[0].len(), inputs[1].shape[inputs[1].shape.len() - 1]);
        let p = AddRowsParams { cols: cols as u32, group: self.group as u32, total: total as u32, _pad: 0 };
        Dispatch::new(&p, (total as u64).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let n = inputs[0].len();
        Cost { flops: n as f64, bytes: 2.0 * bytes(inputs[0].dtype, n) + bytes(DType::F32, inputs[1].len()) }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let cols = metas[1].shape[metas[1].shape.len() - 1];
        let rows = inputs[0].chunks(cols).enumerate();
        rows.flat_map(|(r, x)| {
            x.iter().zip(&inputs[1][(r / self.group) * cols..]).map(|(a, b)| a + b).collect::<Vec<_>>()
        })
        .collect()
    }
}

/// Random rows, groups and widths; the sum rounded once to the storage type.
fn fuzz_add_rows(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let (groups, group, cols) = (rng.edge(9), rng.edge(40), rng.edge(70));
    let rows = groups * group;
    let mut c = Case::builder(AddRows::NAME);
    let x = c.input("x", &[rows, cols], storage, rng.values(rows * cols, kind, huge_for(storage, 1e30), inject));
    let t = c.input("t", &[groups, cols], DType::F32, rng.values(groups * cols, kind, 1e30, inject));
    let y = c.node(AddRows { group }, &[x, t])?;
    let description = format!("[{rows}, {cols}] in groups of {group} {storage} {kind:?} inject={inject}");
    Ok(c.finish(&[y], description, Tolerance::new(SUBNORMAL_FLOOR, 1e-6)))
}

fn precision_add_rows() -> Result<Vec<Case>> {
    let mut rng = CaseRng::new(9);
    let mut c = Case::builder(AddRows::NAME);
    let x = c.input("x", &[12, 7], DType::F16, rng.signed(84));
    let t = c.input("t", &[3, 7], DType::F32, rng.signed(21));
    let y = c.node(AddRows { group: 4 }, &[x, t])?;
    Ok(vec![c.finish(&[y], "[12, 7] in groups of 4, f16".into(), Tolerance::new(0.0, 1e-5))])
}
