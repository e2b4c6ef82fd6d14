//! GEMM with a fused epilogue: `y = act(x·Wᵀ + b)` or SwiGLU's `silu(gate) · up`, then a row
//! scale, a residual or a tanh-gated residual, with `W` in PyTorch's `nn.Linear` layout
//! `[out, in]`, weights read as stored (f32, f16 or bf16).
//! Variants: `subgroup` (`shaders/gemm.wgsl`: register-blocked, rows shared by subgroup
//! broadcast, vec4 loads; tuned on llvmpipe), `tiled` / `tiled32` (`shaders/gemm_tiled.wgsl`:
//! workgroup-memory tiles of 64 × 64 / 32 × 32, double-buffered through registers; for GPUs),
//! `splitk` (the same file: 16 × 16 tiles with K split over four slices of the workgroup and
//! summed in a fixed order, for thin problems) and `portable` (`shaders/gemm_portable.wgsl`:
//! any `k`, any device; 16 × 4 register blocks, for CPU rasterisers without subgroups such as
//! SwiftShader). [`Kernel::choose`] picks per adapter: register blocking on CPU rasterisers,
//! workgroup-memory tiles on GPUs, split-K where the tiles are too few to fill one.

mod cases;
mod specs;
pub use cases::EPILOGUES;
pub use specs::*;

use super::lowering::{self, Lowering, Slot};
use super::{BindLimits, Cost, Dispatch, Kernel, KernelFamily, KernelSpec, bytes, product};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Caps;
use crate::ops::linear::{NAME, dims};
use crate::ops::{Epilogue, GeluForm, InputNorm, LayerNorm, Meta, Operand, Residual, RmsNorm, rows_cols};
use crate::reference;

/// Mirrors `Params` in `shaders/gemm.wgsl` and `shaders/gemm_portable.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of x (all leading dims folded).
    pub m: u32,
    /// Weight rows this dispatch computes (output features; twice them with SwiGLU).
    pub n: u32,
    /// Input features.
    pub k: u32,
    /// Row stride of y (all output features).
    pub y_stride: u32,
    /// First weight row this dispatch computes.
    pub y_col: u32,
    /// The input norm's eps.
    pub norm_eps: f32,
    /// Padding.
    pub _pad1: u32,
    /// Padding.
    pub _pad2: u32,
}

impl Params {
    /// The whole op in one dispatch.
    fn new(epilogue: &Epilogue, inputs: &[&Meta]) -> Self {
        let (m, n, k) = dims(inputs);
        let y_stride = if epilogue.swiglu { n / 2 } else { n };
        Self {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            y_stride: y_stride as u32,
            y_col: 0,
            norm_eps: epilogue.input_norm.map_or(0.0, InputNorm::eps),
            _pad1: 0,
            _pad2: 0,
        }
    }

    /// The dispatch for weight rows (output columns) `start .. start + rows`.
    fn columns(self, start: usize, rows: usize) -> Self {
        Self { n: rows as u32, y_col: start as u32, ..self }
    }
}

const WORKGROUP: u32 = 64;
/// Outputs per workgroup of `gemm.wgsl`: 16 rows × (64 invocations · 4 columns).
const TILE_M: u64 = 16;
const TILE_N: u64 = 64 * 4;
/// `gemm_portable.wgsl`: blocks of 16 rows × 4 columns, 64 per workgroup.
const PORTABLE_ROWS: u64 = 16;
const PORTABLE_COLS: u64 = 4;
/// `gemm_splitk`: 16 × 16 outputs per workgroup.
const SPLIT_TILE: u64 = 16;
/// Fewer workgroup tiles than this leave a GPU idle: split K instead.
const FILLS_A_GPU: u64 = 128;

/// The linear kernel family.
pub static FAMILY: KernelFamily = KernelFamily {
    name: NAME,
    specs: &[
        &SUBGROUP_F32,
        &SUBGROUP_F16,
        &SUBGROUP_BF16,
        &TILED_F32,
        &TILED_F16,
        &TILED_BF16,
        &TILED32_F32,
        &TILED32_F16,
        &TILED32_BF16,
        &SPLITK_F32,
        &SPLITK_F16,
        &SPLITK_BF16,
        &COOP_F16,
        &PORTABLE_F32,
        &PORTABLE_F16,
        &PORTABLE_BF16,
    ],
    fuzz: Some(cases::fuzz),
    bench: cases::bench,
    precision: cases::precision,
    tune: cases::tune,
    ..KernelFamily::BASE
};

/// Whether GEMMs normalise their input as they load it (one dispatch) rather than after a norm
/// node (two): on GPUs, where a dispatch costs more than recomputing each row's statistics per
/// tile; not on CPU rasterisers, where the fused load measured 25-40% slower on whole
/// connectors. `VLBRIDGE_FORCE=input_norm=fused|separate` decides instead.
pub fn fuses_input_norms(caps: &Caps) -> bool {
    lowering::switch(caps, "input_norm", "fused", "separate", !caps.is_cpu())
}

/// Whether the rotary towers' QKV GEMM turns its query and key pairs in its epilogue (one
/// dispatch, each turn computed once from two accumulators an invocation already holds)
/// rather than in a [`crate::ops::RotaryPairs`] node after it, which reads and writes the whole
/// QKV activation again: everywhere, as measured on llvmpipe (`vlbridge demo --towers ..
/// --rope-separate`). `VLBRIDGE_FORCE=rope=fused|separate` decides instead.
pub fn fuses_rotary(caps: &Caps) -> bool {
    lowering::switch(caps, "rope", "fused", "separate", true)
}

impl Kernel for Epilogue {
    fn name(&self) -> &'static str {
        NAME
    }

    /// On a device that does not fuse input norms ([`fuses_input_norms`]): the norm as a node
    /// of its own, then the GEMM without it; where rotary turns are not fused
    /// ([`fuses_rotary`]): the GEMM without its turn, then a [`crate::ops::RotaryPairs`] node.
    fn lower(&self, caps: &Caps, inputs: &[&Meta], output: &Meta) -> Result<Option<Lowering>> {
        let split_norm = self.input_norm.is_some() && !fuses_input_norms(caps);
        let split_rotary = self.rotary.is_some() && !fuses_rotary(caps);
        if !split_norm && !split_rotary {
            return Ok(None);
        }
        let slots = self.slots();
        let (mut l, mut gemm, mut x) = (Lowering::default(), *self, Slot::Input(0));
        if let (true, Some(norm), Some(weight)) = (split_norm, self.input_norm, slots[7]) {
            let normed = l.temp("input_norm", inputs[0].clone());
            match norm {
                InputNorm::Layer { eps } => {
                    let b = slots[8].unwrap_or(weight);
                    l.node(LayerNorm::new(eps), vec![Slot::Input(0), Slot::Input(weight), Slot::Input(b)], normed);
                }
                InputNorm::Rms { eps, unit_offset } => {
                    let op = RmsNorm { unit_offset, ..RmsNorm::new(eps) };
                    l.node(op, vec![Slot::Input(0), Slot::Input(weight)], normed);
                }
            }
            gemm.input_norm = None;
            x = normed;
        }
        let turn = if split_rotary { gemm.rotary.take().zip(slots[6]) } else { None };
        // The GEMM keeps the inputs its remaining epilogue reads, in the same order.
        let kept = gemm.slots().into_iter().zip(slots).filter_map(|(new, old)| new.and(old));
        let gemm_inputs = std::iter::once(x).chain(kept.skip(1).map(Slot::Input)).collect();
        match turn {
            Some((pairs, table)) => {
                let unturned = l.temp("unturned", output.clone());
                l.node(gemm, gemm_inputs, unturned);
                l.node(pairs, vec![unturned, Slot::Input(table)], Slot::Output);
            }
            None => l.node(gemm, gemm_inputs, Slot::Output),
        }
        Ok(Some(l))
    }

    fn operand(&self, i: usize) -> Operand {
        match self.slots().iter().position(|&s| s == Some(i)) {
            Some(0 | 3) => Operand::Activation,
            Some(1) => Operand::Weight,
            _ => Operand::Param,
        }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        Epilogue::check(*self, inputs)
    }

    /// For the weight's dtype: `subgroup` where rows are whole vec4s, the tiled ones, split-K,
    /// then `portable` (what runs anywhere).
    fn variants(&self, inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        let (_, k) = rows_cols(&inputs[0].shape);
        let family: &[&'static KernelSpec] = match inputs[1].dtype {
            DType::F16 => &[&SUBGROUP_F16, &TILED_F16, &TILED32_F16, &SPLITK_F16, &COOP_F16, &PORTABLE_F16],
            DType::BF16 => &[&SUBGROUP_BF16, &TILED_BF16, &TILED32_BF16, &SPLITK_BF16, &PORTABLE_BF16],
            _ => &[&SUBGROUP_F32, &TILED_F32, &TILED32_F32, &SPLITK_F32, &PORTABLE_F32],
        };
        // The cooperative-matrix GEMM takes no input norm.
        let usable = |s: &&KernelSpec| {
            (s.variant != "subgroup" || k.is_multiple_of(4)) && (s.variant != "coop" || self.input_norm.is_none())
        };
        family.iter().copied().filter(usable).collect()
    }

    /// Per adapter: the variant the adapter's measured tune chose for this problem class
    /// (`thin`: at most 64 rows, `wide`), if it was tuned ([`crate::tune`]); else on a CPU
    /// rasteriser register blocking (`subgroup`, else `portable`); on a
    /// GPU with cooperative matrices and f16 weights and activations, tensor cores; else
    /// workgroup-memory tiles, 64 × 64 where there are enough of them to fill the device,
    /// 32 × 32 where a quarter as many are, else split-K. f32 activations are never rounded to
    /// f16 unasked: forcing `coop` is the opt-in.
    fn choose(&self, caps: &Caps, inputs: &[&Meta]) -> &'static KernelSpec {
        let variants = self.variants(inputs);
        let pick = |variant: &str| variants.iter().copied().find(|s| s.variant == variant && s.runs_on(caps));
        let portable = variants[variants.len() - 1];
        let (m, n, _) = dims(inputs);
        // A measured tune of this adapter comes first.
        if let Some(tuned) = caps.tuned(NAME, self.tune_class(inputs)).and_then(pick) {
            return tuned;
        }
        if caps.is_cpu() {
            return pick("subgroup").unwrap_or(portable);
        }
        let tiles = |side: u64| (m as u64).div_ceil(side) * (n as u64).div_ceil(side);
        let f16 = inputs[0].dtype == DType::F16 && inputs[1].dtype == DType::F16;
        let variant = if f16 && caps.coop_f16_16x16() {
            "coop"
        } else if tiles(64) >= FILLS_A_GPU {
            "tiled"
        } else if tiles(32) >= FILLS_A_GPU {
            "tiled32"
        } else {
            "splitk"
        };
        pick(variant).unwrap_or(portable)
    }

    /// `thin` (at most 64 rows: split-K territory on a GPU) or `wide`.
    fn tune_class(&self, inputs: &[&Meta]) -> &'static str {
        if dims(inputs).0 <= 64 { "thin" } else { "wide" }
    }

    fn overrides(&self, spec: &KernelSpec, _inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        let residual = match self.residual {
            Residual::None => 0.0,
            Residual::Add => 1.0,
            Residual::Gated => 2.0,
            Residual::Scaled => 3.0,
        };
        vec![
            ("HAS_BIAS", f64::from(u8::from(self.bias))),
            ("ACTIVATION", f64::from(GeluForm::code(self.activation))),
            ("SWIGLU", f64::from(u8::from(self.swiglu))),
            ("ROW_SCALE", f64::from(u8::from(self.row_scale))),
            ("RESIDUAL", residual),
            (
                "NORM_A",
                match self.input_norm {
                    None => 0.0,
                    Some(InputNorm::Layer { .. }) => 1.0,
                    Some(InputNorm::Rms { .. }) => 2.0,
                },
            ),
            ("ROTARY", self.rotary.map_or(0.0, |r| r.channels() as f64)),
            ("ROTARY_HEAD", self.rotary.map_or(2.0, |r| r.head_dim as f64)),
            (
                "NORM_OFFSET",
                if matches!(self.input_norm, Some(InputNorm::Rms { unit_offset: true, .. })) { 1.0 } else { 0.0 },
            ),
        ]
        .into_iter()
        .chain(match spec.variant {
            "tiled" => vec![("TILE_M", 64.0), ("TILE_N", 64.0)],
            "tiled32" => vec![("TILE_M", 32.0), ("TILE_N", 32.0)],
            _ => vec![],
        })
        .collect()
    }

    /// The read bindings in binding order: the rotary table is the last binding (10) but sits
    /// before the norm parameters among the inputs.
    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        let s = self.slots();
        vec![s[0], s[1], s[2], s[3], s[4], s[5], s[7], s[8], s[6]]
    }

    /// One dispatch, or several over row ranges of a weight larger than one binding.
    fn dispatches(&self, spec: &KernelSpec, inputs: &[&Meta], limits: &BindLimits) -> Result<Vec<Dispatch>> {
        Ok(weight_chunks(self, inputs, limits)?
            .into_iter()
            .map(|((offset, size), p)| Dispatch {
                partial: Some((1, offset, size)),
                ..Dispatch::new(&p, workgroups(spec, &p))
            })
            .collect())
    }

    fn dispatch(&self, spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let p = Params::new(self, inputs);
        Dispatch::new(&p, workgroups(spec, &p))
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let (m, n, k) = dims(inputs);
        let a = inputs[0].dtype;
        let bias = if self.bias { 4.0 * n as f64 } else { 0.0 };
        let out = if self.swiglu { m * n / 2 } else { m * n };
        let residual = if self.residual == Residual::None { 0.0 } else { bytes(a, out) };
        let io = bytes(a, m * k) + bytes(a, out) + residual;
        let (turns, table) = match (self.rotary, self.slots()[6]) {
            (Some(r), Some(t)) => (3.0 * product(&[m, r.channels()]), bytes(DType::F32, inputs[t].len())),
            _ => (0.0, 0.0),
        };
        Cost { flops: 2.0 * product(&[m, n, k]) + turns, bytes: io + bias + table + bytes(inputs[1].dtype, n * k) }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let (m, n, k) = dims(metas);
        let slot = |i: usize| self.slots()[i].map(|s| inputs[s]);
        let x = match (self.input_norm, slot(7)) {
            (Some(InputNorm::Layer { eps }), Some(w)) => {
                reference::layer_norm(inputs[0], w, slot(8).unwrap_or_default(), k, f64::from(eps))
            }
            (Some(InputNorm::Rms { eps, unit_offset }), Some(w)) => {
                reference::rms_norm(inputs[0], w, k, f64::from(eps), f64::from(u8::from(unit_offset)))
            }
            _ => inputs[0].to_vec(),
        };
        let mut y = reference::linear(&x, inputs[1], slot(2), m, n, k);
        if let (Some(rotary), Some(table)) = (self.rotary, slot(6)) {
            reference::rotate_pairs(&mut y, table, n, rotary);
        }
        if self.swiglu {
            y = reference::swiglu_pairs(&y, self.activation);
        } else if let Some(form) = self.activation {
            y.iter_mut().for_each(|v| *v = reference::gelu(form, *v));
        }
        if let Some(scale) = slot(5) {
            reference::scale_rows(&mut y, scale);
        }
        match (self.residual, slot(4)) {
            (Residual::Scaled, Some(scale)) => reference::layer_scale(&mut y, slot(3).unwrap_or_default(), scale),
            _ => reference::epilogue(&mut y, None, slot(3), slot(4).map(|g| g[0])),
        }
        y
    }
}

/// Splits the weight `[n, k]` into row ranges whose bytes fit one storage binding and start at
/// offsets the device accepts: one range unless the weight is larger than the binding limit
/// (OpenFlamingo-9B's 16384 × 4096 f32 FFN weight is 256 MiB; lavapipe binds 128 MiB).
/// Returns, per dispatch, the byte range of the weight it binds (whole words: an odd count
/// of 2-byte weights reads 2 bytes past its rows, never used and still inside the buffer,
/// which is rounded up to 4) and its Params.
fn weight_chunks(epilogue: &Epilogue, inputs: &[&Meta], limits: &BindLimits) -> Result<Vec<((u64, u64), Params)>> {
    let whole = Params::new(epilogue, inputs);
    let (n, k) = (whole.n as usize, whole.k as usize);
    let row_bytes = (k * inputs[1].dtype.size()) as u64;
    let mut rows = (limits.max_binding / row_bytes) as usize;
    // Chunk starts must be multiples of the offset alignment: round rows down to a multiple
    // of alignment / gcd(row_bytes, alignment).
    let alignment = limits.offset_alignment.max(1);
    let step = (alignment / gcd(row_bytes, alignment)) as usize;
    // SwiGLU's gate/up pairs and rotary pairs stay in one chunk.
    let step = if epilogue.swiglu || epilogue.rotary.is_some() { step.next_multiple_of(2) } else { step };
    rows -= rows % step.max(1);
    if rows == 0 {
        return Err(Error::Limit {
            kernel: NAME,
            limit: "storage binding size in bytes (one weight row)",
            requested: row_bytes * step as u64,
            max: limits.max_binding,
        });
    }
    Ok((0..n)
        .step_by(rows)
        .map(|start| {
            let count = rows.min(n - start);
            let range = (start as u64 * row_bytes, (count as u64 * row_bytes).next_multiple_of(4));
            (range, whole.columns(start, count))
        })
        .collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn workgroups(spec: &KernelSpec, p: &Params) -> u64 {
    let (m, n) = (u64::from(p.m), u64::from(p.n));
    match spec.variant {
        "subgroup" => m.div_ceil(TILE_M) * n.div_ceil(TILE_N),
        "tiled" => m.div_ceil(64) * n.div_ceil(64),
        "tiled32" | "coop" => m.div_ceil(32) * n.div_ceil(32),
        "splitk" => m.div_ceil(SPLIT_TILE) * n.div_ceil(SPLIT_TILE),
        _ => (m.div_ceil(PORTABLE_ROWS) * n.div_ceil(PORTABLE_COLS)).div_ceil(u64::from(WORKGROUP)),
    }
}
