//! The pre-norm layer the rotary towers share (Qwen2-VL, Qwen2.5-VL, Pixtral): the QKV GEMM
//! with its input norm and, in its epilogue, the 2D rotary turn of its query and key heads
//! (their weight rows stored in paired order, [`Rope2d::paired_rows`]), block-diagonal
//! attention from a segment table with the output projection and residual, and a GELU or
//! SwiGLU feed-forward with its residual.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Mlp, Norm, Skip};
use crate::ops::{Attention, Epilogue, GeluForm, Rope2d, RotaryPairs, interleave_rows, segment_bounds};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// A rotary tower layer's feed-forward.
#[derive(Debug, Clone)]
pub(super) enum FeedForward {
    /// `fc2(act(fc1(x)))` (Qwen2-VL).
    Gelu { fc1: Linear, act: GeluForm, fc2: Linear },
    /// `down(act(gate(x)) · up(x))`, gate and up interleaved into one GEMM; `act` is SiLU, or
    /// the GELU `gate` names (Pixtral's `hidden_act`).
    SwiGlu { gate_up: Linear, gate: Option<GeluForm>, down: Linear },
}

impl FeedForward {
    /// `{prefix}.gate_proj`, `{prefix}.up_proj` (`[f, c]`, biases when `bias`) and
    /// `{prefix}.down_proj`: the SwiGLU GEMM's rows and biases interleaved once, at load.
    pub(super) fn swiglu(
        gpu: &Gpu,
        weights: &Weights,
        prefix: &str,
        (c, f): (usize, usize),
        bias: bool,
        gate: Option<GeluForm>,
    ) -> Result<Self> {
        let [gate_proj, up] = ["gate_proj", "up_proj"].map(|x| format!("{prefix}.{x}"));
        let names = [format!("{gate_proj}.weight"), format!("{up}.weight")];
        for name in &names {
            let shape = weights.shape(name)?;
            if shape != [f, c] {
                let problem =
                    format!("shape {shape:?}, expected [{f}, {c}] (vision_config intermediate_size, hidden_size)");
                return Err(Error::Weights { name: name.clone(), problem });
            }
        }
        let weight =
            weights.upload_arranged(gpu, &[&names[0], &names[1]], &[2 * f, c], |v| interleave_rows(&v[0], &v[1], c))?;
        let biases = if bias {
            let [g, u] = [&gate_proj, &up].map(|p| weights.f32(&format!("{p}.bias"), Some(&[f])));
            Some(Tensor::from_f32(gpu, &[2 * f], &interleave_rows(&g?, &u?, 1))?)
        } else {
            None
        };
        Ok(FeedForward::SwiGlu {
            gate_up: Linear::from_tensors("rotary_tower", weight, biases)?,
            gate,
            down: Linear::load(gpu, weights, &format!("{prefix}.down_proj"), f, bias)?,
        })
    }
}

/// One layer: `x += proj(attention(rope(qkv(norm1 x))))`, `x += ffn(norm2 x)`; `qkv` holds
/// its query and key rows in paired order ([`Linear::concat_paired`]), which attention's
/// scores do not see.
#[derive(Debug, Clone)]
pub(super) struct RotaryLayer {
    pub(super) norm1: Norm,
    /// Q, K and V stacked `[3C, C]`.
    pub(super) qkv: Linear,
    pub(super) proj: Linear,
    pub(super) norm2: Norm,
    pub(super) ffn: FeedForward,
}

impl RotaryLayer {
    /// Checks the stacked QKV's width against the tower's (`name` the weight in errors).
    pub(super) fn check(&self, name: &str, c: usize) -> Result<()> {
        if self.qkv.out_features() != 3 * c {
            let problem = format!("{} outputs, expected 3 x {c}", self.qkv.out_features());
            return Err(Error::Weights { name: name.into(), problem });
        }
        Ok(())
    }

    /// Adds the layer on `h` `[1, rows, C]` with the rotary turn by `table` ([`table`]) and
    /// `segments`.
    pub(super) fn add(
        &self,
        g: &mut Graph,
        name: &str,
        h: TensorId,
        (pairs, table): (RotaryPairs, TensorId),
        segments: Segments,
    ) -> Result<TensorId> {
        let epilogue = Epilogue::NONE.with_rotary(pairs);
        let turned = self.qkv.add_normed_with(g, &format!("{name}.qkv"), &self.norm1, h, epilogue, &[table])?;
        let sources = [turned, turned, segments.table];
        let h =
            self.proj.add_after_attention(g, &format!("{name}.proj"), segments.attention, &sources, Some(h), None)?;
        match &self.ffn {
            FeedForward::Gelu { fc1, act, fc2 } => {
                let mlp = Mlp { norm: Some(&self.norm2), up: fc1, activation: Some(*act), down: fc2 };
                mlp.add_named(g, [&format!("{name}.fc1"), &format!("{name}.fc2")], h, None)
            }
            FeedForward::SwiGlu { gate_up, gate, down } => {
                let up = format!("{name}.gate_up");
                let epilogue = Epilogue { activation: *gate, ..Epilogue::SWIGLU };
                let gated = gate_up.add_normed_with(g, &up, &self.norm2, h, epilogue, &[])?;
                down.add(g, &format!("{name}.down"), gated, None, Skip::Add(h))
            }
        }
    }
}

/// A block-diagonal attention and its segment table in the graph.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segments {
    attention: Attention,
    table: TensorId,
}

impl Segments {
    /// `heads` × `head_dim` attention over a fused `[q | k | v]` row of `rows` tokens, in
    /// segments of `lengths` (summing to `rows`), its table a constant named `name`.
    pub(super) fn new(
        gpu: &Gpu,
        g: &mut Graph,
        name: &str,
        (heads, head_dim): (usize, usize),
        lengths: &[usize],
    ) -> Result<Self> {
        let rows: usize = lengths.iter().sum();
        let c = (heads * head_dim) as u32;
        let attention = Attention::new(heads as u32, head_dim as u32).offsets(0, c, 2 * c).segments(lengths);
        let table = Tensor::from_data(gpu, &[1, rows, 2], DType::U32, segment_bounds(lengths)[..].into())?;
        Ok(Self { attention, table: g.constant(name, &table) })
    }
}

/// The head dim of `heads` over `hidden` channels: a whole multiple of 4 (D/4 rotary pairs per
/// axis), else an [`Error::Config`] naming `field`.
pub(super) fn head_dim(field: &str, hidden: usize, heads: usize) -> Result<usize> {
    let d = hidden / heads;
    if !hidden.is_multiple_of(heads) || !d.is_multiple_of(4) {
        let problem = format!("{heads} heads of width {hidden}: head dim must be a multiple of 4 (2D rotary)");
        return Err(Error::Config { field: field.into(), problem });
    }
    Ok(d)
}

/// A `vision_config`'s rotary base: `rope_parameters.rope_theta` (transformers 5), the older
/// top-level `rope_theta`, or 10000.
pub(super) fn theta(v: &serde_json::Value) -> f32 {
    v["rope_parameters"]["rope_theta"].as_f64().or_else(|| v["rope_theta"].as_f64()).unwrap_or(1e4) as f32
}

/// `rope`'s turn of each row from its (row, column) in `positions` (`[rows, 2]`): the pairs
/// and their (cos, sin) table `[rows, D/2, 2]` as a graph constant.
pub(super) fn table(gpu: &Gpu, g: &mut Graph, rope: &Rope2d, positions: &[u32]) -> Result<(RotaryPairs, TensorId)> {
    let t = Tensor::from_f32(gpu, &[positions.len() / 2, rope.head_dim / 2, 2], &rope.table(positions)?)?;
    Ok((rope.pairs(), g.constant("rotary.table", &t)))
}
