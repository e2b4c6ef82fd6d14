//! Fused sublayers (see [`crate::ops::rows`]): `attention_rows` runs an attention sublayer and
//! `mlp_rows` a feed-forward one in one dispatch each, a workgroup owning 8 whole output rows
//! (`shaders/attention_rows.wgsl`, `shaders/mlp_rows.wgsl`, their shared second half in
//! `shaders/common/rows_epilogue.wgsl`). What they save is dispatches and the stores of the
//! intermediate activations, never FLOPs. One variant each; where the fused form is the slower
//! one (CPU rasterisers) a plan splits the nodes into the ones they fuse instead
//! ([`fuses_sublayers`]).

mod cases;

pub use cases::{SMALL_HEAD_DIMS, attention_case, mlp_case};

use super::attention::{self, io_bytes, mask_of};
use super::lowering::{self, Lowering, Slot};
use super::{Cost, Dispatch, Kernel, KernelFamily, KernelSpec, Op, bytes, product, wgsl};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::Caps;
use crate::ops::{
    AttentionRows, Epilogue, GeluForm, InputNorm, LayerNorm, Meta, MlpRows, Operand, Residual, RowsEpilogue,
};
use crate::pipeline::Access;
use crate::reference;

const ATTENTION_SOURCE: &str = include_str!("../../../shaders/attention_rows.wgsl");
const MLP_SOURCE: &str = include_str!("../../../shaders/mlp_rows.wgsl");

/// Workgroup size and rows per workgroup (`ROWS` in the shaders).
const WORKGROUP: u32 = 64;
const ROWS: usize = 8;

/// Bindings 0-6 are the attention's (q, kv_a, kv_b, mask, out, params, q/k norms) or the
/// FFN's (x, w_in, b_in, in-norm weight, out, params, in-norm bias); 7-11 are w_out, b_out,
/// skip, post-norm weight and bias.
const BINDINGS: &[Access] = {
    use Access::{Read as R, ReadWrite as W, Uniform as U};
    &[R, R, R, R, W, U, R, R, R, R, R, R]
};

/// Mirrors `Params` in `shaders/mlp_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct MlpParams {
    m: u32,
    n: u32,
    hidden: u32,
    k: u32,
    in_eps: f32,
    post_eps: f32,
    _pad: [u32; 2],
}

/// Attention sublayer in one dispatch.
pub static ATTENTION_ROWS: KernelSpec = KernelSpec {
    prelude: &[wgsl::ATTENTION_STREAM, wgsl::ROWS_EPILOGUE],
    ..KernelSpec::new(
        AttentionRows::NAME,
        "attention_rows.wgsl",
        ATTENTION_SOURCE,
        "attention_rows",
        BINDINGS,
        WORKGROUP,
        std::mem::size_of::<attention::Params>(),
    )
};

/// Feed-forward sublayer in one dispatch.
pub static MLP_ROWS: KernelSpec = KernelSpec {
    prelude: &[wgsl::ACTIVATIONS, wgsl::ROWS_EPILOGUE],
    ..KernelSpec::new(
        MlpRows::NAME,
        "mlp_rows.wgsl",
        MLP_SOURCE,
        "mlp_rows",
        BINDINGS,
        WORKGROUP,
        std::mem::size_of::<MlpParams>(),
    )
};

/// The attention sublayer family.
pub static ATTENTION_ROWS_FAMILY: KernelFamily = KernelFamily {
    name: AttentionRows::NAME,
    specs: &[&ATTENTION_ROWS],
    fuzz: Some(cases::fuzz_attention),
    bench: cases::bench_attention,
    precision: cases::precision_attention,
    ..KernelFamily::BASE
};

/// The feed-forward sublayer family.
pub static MLP_ROWS_FAMILY: KernelFamily = KernelFamily {
    name: MlpRows::NAME,
    specs: &[&MLP_ROWS],
    fuzz: Some(cases::fuzz_mlp),
    bench: cases::bench_mlp,
    precision: cases::precision_mlp,
    ..KernelFamily::BASE
};

/// The storage of the weights as `WEIGHTS` codes them.
fn weights_code(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 1.0,
        DType::BF16 => 2.0,
        _ => 0.0,
    }
}

/// The epilogue's override constants for an output `n` wide with weights of `weights`.
fn epilogue_overrides(e: RowsEpilogue, n: usize, weights: DType) -> Vec<(&'static str, f64)> {
    vec![
        ("COLS", n.div_ceil(WORKGROUP as usize) as f64),
        ("OUT_BIAS", f64::from(u8::from(e.bias))),
        ("SKIP", f64::from(u8::from(e.skip))),
        ("POST_NORM", f64::from(u8::from(e.post_norm.is_some()))),
        ("WEIGHTS", weights_code(weights)),
    ]
}

/// How the epilogue's inputs (from `first`) are read.
fn epilogue_operand(e: RowsEpilogue, first: usize, i: usize) -> Operand {
    let slots = e.slots(first);
    if i == slots.w_out {
        Operand::Weight
    } else if Some(i) == slots.skip {
        Operand::Activation
    } else {
        Operand::Param
    }
}

/// `post_norm(y + b_out + skip)` with `y = x·w_outᵀ` on host data (rows of `width`).
fn epilogue_reference(e: RowsEpilogue, inputs: &[&[f64]], first: usize, x: &[f64], width: usize) -> Vec<f64> {
    let slots = e.slots(first);
    let input = |slot: Option<usize>| slot.map(|i| inputs[i]);
    let w = inputs[slots.w_out];
    let (bias, skip) = (input(slots.bias), input(slots.skip));
    let (weight, post_bias) = (input(slots.post_weight), input(slots.post_bias));
    let n = w.len() / width;
    let mut y = reference::linear(x, w, bias, x.len() / width, n, width);
    reference::epilogue(&mut y, None, skip, None);
    match (e.post_norm, weight, post_bias) {
        (Some(eps), Some(g), Some(b)) => reference::layer_norm(&y, g, b, n, f64::from(eps)),
        _ => y,
    }
}

/// Bytes of the epilogue's parameters, skip and output for `rows` rows of `n`.
fn epilogue_bytes(e: RowsEpilogue, inputs: &[&Meta], first: usize, rows: usize, n: usize) -> f64 {
    let act = inputs[0].dtype;
    let w = inputs[first];
    let params = 4 * n * (usize::from(e.bias) + 2 * usize::from(e.post_norm.is_some()));
    bytes(w.dtype, w.len()) + params as f64 + bytes(act, rows * n) * (1.0 + f64::from(u8::from(e.skip)))
}

/// Whether the fused sublayers run as one dispatch each rather than as the attention, GEMM and
/// norm dispatches they replace: on GPUs, where dispatches and stored intermediates cost; not
/// on CPU rasterisers, where they measured 3-6x slower on whole connectors than what they
/// replace (a workgroup's rows run on one core, its weight loads are gathers); nor where the
/// device binds fewer storage buffers than they read (a browser's WebGPU allows 10).
/// `VLBRIDGE_FORCE=sublayers=fused|split` decides instead.
pub fn fuses_sublayers(caps: &Caps) -> bool {
    let storage = BINDINGS.iter().filter(|a| **a != Access::Uniform).count() as u32;
    lowering::switch(caps, "sublayers", "fused", "split", !caps.is_cpu() && caps.storage_buffers >= storage)
}

/// A sublayer as the nodes it fuses: `front` (reading the node's first `first` inputs) makes
/// the projection's input; the GEMM adds bias and residual; a LayerNorm follows where the
/// epilogue has one.
fn split_sublayer(
    front: Op,
    first: usize,
    epilogue: RowsEpilogue,
    inputs: &[&Meta],
    output: &Meta,
) -> Result<Lowering> {
    let mut l = Lowering::default();
    let x = l.temp("input", front.check(&inputs[..first])?);
    l.node(front, (0..first).map(Slot::Input).collect(), x);
    let slots = epilogue.slots(first);
    let residual = if slots.skip.is_some() { Residual::Add } else { Residual::None };
    let down = Epilogue { bias: epilogue.bias, residual, ..Epilogue::NONE };
    let sum = if epilogue.post_norm.is_some() { l.temp("sum", output.clone()) } else { Slot::Output };
    let down_inputs = [Some(slots.w_out), slots.bias, slots.skip].into_iter().flatten().map(Slot::Input);
    l.node(down, std::iter::once(x).chain(down_inputs).collect(), sum);
    if let (Some(eps), Some(w), Some(b)) = (epilogue.post_norm, slots.post_weight, slots.post_bias) {
        l.node(LayerNorm::new(eps), vec![sum, Slot::Input(w), Slot::Input(b)], Slot::Output);
    }
    Ok(l)
}

impl Kernel for AttentionRows {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// On a device that splits sublayers ([`fuses_sublayers`]): attention, then the GEMM.
    fn lower(&self, caps: &Caps, inputs: &[&Meta], output: &Meta) -> Result<Option<Lowering>> {
        if fuses_sublayers(caps) {
            return Ok(None);
        }
        let front = Op::from(self.attention);
        split_sublayer(front, self.attention.arity(), self.epilogue, inputs, output).map(Some)
    }

    fn operand(&self, i: usize) -> Operand {
        let first = self.attention.arity();
        if i < first {
            attention::operand(&self.attention, self.attention.mask_input(), i)
        } else {
            epilogue_operand(self.epilogue, first, i)
        }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        AttentionRows::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&ATTENTION_ROWS]
    }

    fn overrides(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        let w_out = inputs[self.attention.arity()];
        let mut overrides = attention::overrides(&self.attention);
        overrides.extend(epilogue_overrides(self.epilogue, w_out.shape[0], w_out.dtype));
        overrides
    }

    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        let a = &self.attention;
        let attention = [Some(0), Some(1), a.two_sources.then_some(2), a.mask_input(), a.norm_input()];
        attention.into_iter().chain(self.slots().bindings()).collect()
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let first = self.attention.arity();
        let g = self.attention.geometry(&inputs[..first]);
        let params = attention::Params {
            out_width: inputs[first].shape[0] as u32,
            post_eps: self.epilogue.post_norm.unwrap_or(0.0),
            ..attention::Params::from(&g)
        };
        Dispatch::new(&params, (g.batch * g.queries.div_ceil(ROWS)) as u64)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let first = self.attention.arity();
        let g = self.attention.geometry(&inputs[..first]);
        let (n, width, rows) = (inputs[first].shape[0], self.attention.width() as usize, g.batch * g.queries);
        let attention = 4.0 * product(&[g.rows(), g.keys(), g.head_dim]);
        // The attention's output is never stored: take it out of the attention's bytes.
        let io = io_bytes(&g, inputs[0].dtype, self.attention.mask) - bytes(inputs[0].dtype, g.rows() * g.head_dim);
        Cost {
            flops: attention + 2.0 * product(&[rows, n, width]),
            bytes: io + epilogue_bytes(self.epilogue, inputs, first, rows, n),
        }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let a = &self.attention;
        let first = a.arity();
        let g = a.geometry(&metas[..first]);
        let mask = mask_of(a, a.mask_input(), inputs);
        let kv = [inputs[1], if a.two_sources { inputs[2] } else { &[] }];
        let norms = a.norm_input().map(|n| inputs[n]);
        let attended = reference::attention(&g, a.zeroes_masked_rows(), inputs[0], kv, mask, norms);
        epilogue_reference(self.epilogue, inputs, first, &attended, a.width() as usize)
    }
}

impl Kernel for MlpRows {
    /// On a device that splits sublayers ([`fuses_sublayers`]): the first GEMM (input norm,
    /// bias, activation), then the second.
    fn lower(&self, caps: &Caps, inputs: &[&Meta], output: &Meta) -> Result<Option<Lowering>> {
        if fuses_sublayers(caps) {
            return Ok(None);
        }
        let up =
            Epilogue { bias: self.in_bias, activation: self.activation, input_norm: self.input_norm, ..Epilogue::NONE };
        split_sublayer(up.into(), self.front(), self.epilogue, inputs, output).map(Some)
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn operand(&self, i: usize) -> Operand {
        let (front, back) = self.slots();
        match i {
            0 => Operand::Activation,
            1 => Operand::Weight,
            _ if front.contains(&Some(i)) => Operand::Param,
            _ => epilogue_operand(self.epilogue, back.w_out, i),
        }
    }

    fn check(&self, inputs: &[&Meta]) -> Result<Meta> {
        MlpRows::check(self, inputs)
    }

    fn variants(&self, _inputs: &[&Meta]) -> Vec<&'static KernelSpec> {
        vec![&MLP_ROWS]
    }

    fn overrides(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Vec<(&'static str, f64)> {
        let (norm, offset) = match self.input_norm {
            None => (0.0, 0.0),
            Some(InputNorm::Layer { .. }) => (1.0, 0.0),
            Some(InputNorm::Rms { unit_offset, .. }) => (2.0, f64::from(u8::from(unit_offset))),
        };
        vec![
            ("IN_BIAS", f64::from(u8::from(self.in_bias))),
            ("ACTIVATION", f64::from(GeluForm::code(self.activation))),
            ("IN_NORM", norm),
            ("IN_NORM_OFFSET", offset),
        ]
        .into_iter()
        .chain(epilogue_overrides(self.epilogue, self.dims(inputs).3, inputs[1].dtype))
        .collect()
    }

    fn read_slots(&self, _spec: &KernelSpec) -> Vec<Option<usize>> {
        // Bindings 0-3 and 6 (x, w_in, b_in, in-norm weight, in-norm bias), then 7-11.
        let (front, back) = self.slots();
        front.into_iter().chain(back.bindings()).collect()
    }

    fn dispatch(&self, _spec: &KernelSpec, inputs: &[&Meta]) -> Dispatch {
        let (m, k, hidden, n) = self.dims(inputs);
        let params = MlpParams {
            m: m as u32,
            n: n as u32,
            hidden: hidden as u32,
            k: k as u32,
            in_eps: self.input_norm.map_or(0.0, InputNorm::eps),
            post_eps: self.epilogue.post_norm.unwrap_or(0.0),
            _pad: [0; 2],
        };
        Dispatch::new(&params, m.div_ceil(ROWS) as u64)
    }

    fn cost(&self, inputs: &[&Meta]) -> Cost {
        let (m, k, hidden, n) = self.dims(inputs);
        let (front, back) = self.slots();
        let w_in = inputs[1];
        let params = 4 * (hidden * usize::from(front[2].is_some()) + k * self.input_norm.map_or(0, InputNorm::inputs));
        Cost {
            flops: 2.0 * product(&[m, hidden, k + n]),
            bytes: bytes(inputs[0].dtype, m * k)
                + bytes(w_in.dtype, w_in.len())
                + params as f64
                + epilogue_bytes(self.epilogue, inputs, back.w_out, m, n),
        }
    }

    fn reference(&self, inputs: &[&[f64]], metas: &[&Meta]) -> Vec<f64> {
        let (m, k, hidden, _) = self.dims(metas);
        let ([_, _, bias, weight, norm_bias], back) = self.slots();
        let x = match (self.input_norm, weight, norm_bias) {
            (Some(InputNorm::Layer { eps }), Some(w), Some(b)) => {
                reference::layer_norm(inputs[0], inputs[w], inputs[b], k, f64::from(eps))
            }
            (Some(InputNorm::Rms { eps, unit_offset }), Some(w), _) => {
                reference::rms_norm(inputs[0], inputs[w], k, f64::from(eps), f64::from(u8::from(unit_offset)))
            }
            _ => inputs[0].to_vec(),
        };
        let mut h = reference::linear(&x, inputs[1], bias.map(|b| inputs[b]), m, hidden, k);
        if let Some(form) = self.activation {
            h.iter_mut().for_each(|v| *v = reference::gelu(form, *v));
        }
        epilogue_reference(self.epilogue, inputs, back.w_out, &h, hidden)
    }
}
