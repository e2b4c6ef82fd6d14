//! Token selection and joining (`shaders/concat.wgsl`): layers' hidden states side by side with
//! the class token dropped, a range of items, two tensors one after the other, merge units
//! regrouped (`shaders/concat.wgsl`) or gathered by index (`shaders/gather.wgsl`). Exact copies.

use super::cases::{BenchCase, Case, CaseRng, CaseTarget, Tolerance, huge_for, pick_storage};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::concat::{NAME, ZERO_ROW};
use crate::ops::{Concat, Meta, Operand};
use crate::pipeline::Access;

/// Mirrors `Params` in `shaders/concat.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements written.
    pub total: u32,
    /// `concat_channels`: tokens per output item.
    pub tokens_out: u32,
    /// `concat_channels`: tokens per input item.
    pub tokens_in: u32,
    /// `concat_channels`: leading tokens dropped.
    pub skip: u32,
    /// `concat_channels`: channels of the first input.
    pub width_a: u32,
    /// `concat_channels`: channels of the second (0: none).
    pub width_b: u32,
    /// `concat_flat`: first element of the first input read.
    pub offset: u32,
    /// `concat_flat`: elements taken from the first input.
    pub len_a: u32,
}

/// Mirrors `Params` in `shaders/gather.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    /// Elements per row.
    pub cols: u32,
    /// Rows of the source.
    pub rows: u32,
    /// Elements written.
    pub total: u32,
    /// Uniform padding.
    pub pad: u32,
}

const WORKGROUP: u32 = 256;
const SOURCE: &str = include_str!("../../shaders/concat.wgsl");
const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];
const PARAMS: usize = std::mem::size_of::<Params>();

/// Channels joined, leading tokens dropped.
pub static CHANNELS: KernelSpec = KernelSpec {
    variant: "channels",
    ..KernelSpec::new("concat_channels", "concat.wgsl", SOURCE, "concat_channels", BINDINGS, WORKGROUP, PARAMS)
};
/// A slice of the leading dimension, or two tensors in a row.
pub static FLAT: KernelSpec = KernelSpec {
    variant: "flat",
    ..KernelSpec::new("concat_flat", "concat.wgsl", SOURCE, "concat_flat", BINDINGS, WORKGROUP, PARAMS)
};

/// Rows picked by a u32 index.
pub static GATHER: KernelSpec = KernelSpec {
    variant: "gather",
    ..KernelSpec::new(
        "concat_gather",
        "gather.wgsl",
        include_str!("../../shaders/gather.wgsl"),
        "gather_rows",
        BINDINGS,
        WORKGROUP,
        std::mem::size_of::<GatherParams>(),
    )
};

/// The concat family: its entries serve different ops, so nothing is forceable.
pub static FAMILY: KernelFamily = KernelFamily {
    name: NAME,
    specs: &[&CHANNELS, &FLAT, &GATHER],
    forceable: false,
    fuzz: Some(fuzz),
    bench,
    precision,
    ..KernelFamily::BASE
};

impl Kernel for Concat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn operand(&self, i: usize) -> Operand {
        if i == 1 && matches!(self, Concat::Gather { .. }) { Operand::Index } else { Operand::Activation }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        Concat::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![match self {
            Concat::Channels { .. } => &CHANNELS,
            Concat::Gather { .. } => &GATHER,
            _ => &FLAT,
        }]
    }

    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        vec![Some(0), (self.arity() == 2).then_some(1)]
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        if let Concat::Gather { cols } = *self {
            let total = inputs[1].len() * cols;
            let p =
                GatherParams { cols: cols as u32, rows: (inputs[0].len() / cols) as u32, total: total as u32, pad: 0 };
            return Dispatch::new(&p, total.div_ceil(WORKGROUP as usize) as u64);
        }
        let p = params(self, inputs);
        Dispatch::new(&p, u64::from(p.total).div_ceil(u64::from(WORKGROUP)))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let total = match *self {
            Concat::Gather { cols } => inputs[1].len() * cols,
            _ => params(self, inputs).total as usize,
        };
        Cost { flops: 0.0, bytes: 2.0 * bytes(inputs[0].dtype, total) }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        match *self {
            Concat::Channels { skip, two } => {
                let (tokens, ca) = (metas[0].shape[1], metas[0].shape[2]);
                let cb = if two { metas[1].shape[2] } else { 0 };
                let mut out = Vec::new();
                for (row, a) in inputs[0].chunks(ca).enumerate() {
                    if row % tokens < skip {
                        continue;
                    }
                    out.extend_from_slice(a);
                    if two {
                        out.extend_from_slice(&inputs[1][row * cb..(row + 1) * cb]);
                    }
                }
                out
            }
            Concat::Rows => [inputs[0], inputs[1]].concat(),
            Concat::Flatten | Concat::Regroup { .. } => inputs[0].to_vec(),
            Concat::Gather { cols } => inputs[1]
                .iter()
                .flat_map(|&i| {
                    let row = inputs[0].get(i as usize * cols..(i as usize + 1) * cols);
                    row.map_or_else(|| vec![0.0; cols], <[f64]>::to_vec)
                })
                .collect(),
            Concat::Slice { start, len } => {
                let item = metas[0].len() / metas[0].shape[0];
                inputs[0][start * item..(start + len) * item].to_vec()
            }
        }
    }
}

fn params(op: &Concat, inputs: &[&Meta]) -> Params {
    let a = &inputs[0].shape;
    match *op {
        Concat::Channels { skip, two } => {
            let cb = if two { inputs[1].shape[2] } else { 0 };
            let tokens_out = a[1] - skip;
            Params {
                total: (a[0] * tokens_out * (a[2] + cb)) as u32,
                tokens_out: tokens_out as u32,
                tokens_in: a[1] as u32,
                skip: skip as u32,
                width_a: a[2] as u32,
                width_b: cb as u32,
                ..Params::default()
            }
        }
        Concat::Rows => {
            let len_a = inputs[0].len();
            Params { total: (len_a + inputs[1].len()) as u32, len_a: len_a as u32, ..Params::default() }
        }
        Concat::Flatten | Concat::Regroup { .. } | Concat::Gather { .. } => {
            let total = inputs[0].len() as u32;
            Params { total, len_a: total, ..Params::default() }
        }
        Concat::Slice { start, len } => {
            let item = inputs[0].len() / a[0];
            let total = len * item;
            Params { total: total as u32, offset: (start * item) as u32, len_a: total as u32, ..Params::default() }
        }
    }
}

/// Random shapes for each form; exact.
fn fuzz(rng: &mut CaseRng, target: &CaseTarget) -> Result<Case> {
    let (kind, inject, storage) = (rng.distribution(), rng.bool(0.25), pick_storage(rng, target));
    let huge = huge_for(storage, 1e38);
    let mut c = Case::builder(NAME);
    let (batch, tokens, width) = (rng.edge(7), rng.edge(40), rng.edge(70));
    let a = c.input("a", &[batch, tokens, width], storage, rng.values(batch * tokens * width, kind, huge, inject));
    let (op, inputs) = match rng.range(0, 5) {
        0 => {
            let two = rng.bool(0.6);
            let op = Concat::Channels { skip: rng.range(0, tokens - 1), two };
            let mut inputs = vec![a];
            if two {
                let cb = rng.edge(50);
                inputs.push(c.input(
                    "b",
                    &[batch, tokens, cb],
                    storage,
                    rng.values(batch * tokens * cb, kind, huge, inject),
                ));
            }
            (op, inputs)
        }
        1 => {
            let rows = rng.edge(9);
            let b =
                c.input("b", &[rows, tokens, width], storage, rng.values(rows * tokens * width, kind, huge, inject));
            (Concat::Rows, vec![a, b])
        }
        2 => (Concat::Flatten, vec![a]),
        3 | 4 => {
            // A row width dividing the elements: a multiple of the channels, or a divisor.
            let len = batch * tokens * width;
            let widths: Vec<usize> = (1..=len).filter(|w| len.is_multiple_of(*w) && *w <= 4 * width).collect();
            let cols = rng.pick(&widths);
            if rng.bool(0.5) {
                (Concat::Regroup { cols }, vec![a])
            } else {
                // Any rows, repeated or left out, in any order, some zero rows; the index of
                // rank 1 or 2.
                let (outer, m) = if rng.bool(0.5) { (1, rng.edge(30)) } else { (rng.edge(4), rng.edge(12)) };
                let rows = len / cols;
                let index: Vec<u32> = (0..outer * m)
                    .map(|_| {
                        if rng.bool(0.15) { rng.pick(&[rows as u32, ZERO_ROW]) } else { rng.range(0, rows - 1) as u32 }
                    })
                    .collect();
                let shape = if outer == 1 { vec![m] } else { vec![outer, m] };
                (Concat::Gather { cols }, vec![a, c.input("index", &shape, DType::U32, index)])
            }
        }
        _ => {
            let start = rng.range(0, batch - 1);
            (Concat::Slice { start, len: rng.range(1, batch - start) }, vec![a])
        }
    };
    let y = c.node(op, &inputs)?;
    Ok(c.finish(&[y], format!("{op:?} on [{batch}, {tokens}, {width}] {storage} {kind:?}"), Tolerance::exact()))
}

fn channels_case(shape: [usize; 3], storage: DType, seed: u64) -> Result<Case> {
    let mut rng = CaseRng::new(seed);
    let n = shape.iter().product();
    let mut c = Case::builder(NAME);
    let a = c.input("a", &shape, storage, rng.signed(n));
    let b = c.input("b", &shape, storage, rng.signed(n));
    let y = c.node(Concat::Channels { skip: 1, two: true }, &[a, b])?;
    Ok(c.finish(&[y], format!("{shape:?} x2, class token dropped {storage}"), Tolerance::exact()))
}

/// Qwen2.5-VL-7B's merge units at 1344 px (2304 of 4 x 1280) read back out of window order.
fn gather_case() -> Result<Case> {
    let (units, cols) = (2304, 4 * 1280);
    let mut rng = CaseRng::new(3);
    let mut c = Case::builder(NAME);
    let x = c.input("x", &[units * 4, 1280], DType::F32, rng.signed(units * cols));
    // A fixed scatter of the units: a stride coprime to their count.
    let index: Vec<u32> = (0..units).map(|i| ((i * 7) % units) as u32).collect();
    let index = c.constant("index", &[units], DType::U32, index);
    let y = c.node(Concat::Gather { cols }, &[x, index])?;
    Ok(c.finish(&[y], format!("{units} rows of {cols} gathered"), Tolerance::exact()))
}

/// LLaVA-NeXT's two feature layers of CLIP-L/14-336 joined, the class token dropped; Qwen2.5-VL's
/// inverse window order at 1344 px.
fn bench() -> Vec<BenchCase> {
    vec![
        BenchCase::new("5x577x1024 x2 skip 1", || channels_case([5, 577, 1024], DType::F32, 1)),
        BenchCase::new("gather 2304x5120 (qwen2.5-vl 1344 px units)", gather_case),
    ]
}

fn precision() -> Result<Vec<Case>> {
    Ok(vec![channels_case([2, 9, 13], DType::F16, 2)?])
}
