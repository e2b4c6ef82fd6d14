//! Flamingo's gated cross-attention block (open_flamingo `GatedCrossAttentionBlock`):
//! `y = x + tanh(attn_gate)·XAttn(LN(x), media)`, then `y = y + tanh(ff_gate)·FF(y)`. Both gated
//! residuals ride in the epilogue of the output GEMMs; the gates are 1-element GPU tensors, so
//! [`GatedXAttnBlock::set_gates`] changes them without a re-plan.

use super::{ConnectorPlan, StateDict};
use crate::dtype::{DType, HostVec};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::host::{HostTensor, Tensors};
use crate::nn::FeedForward;
use crate::nn::{Linear, Norm, Skip, head_dim};
use crate::ops::{Attention, MaskedRows};
use crate::tensor::Tensor;
use crate::weights::Weights;

const NAME: &str = "gated_xattn";

/// open_flamingo's `GatedCrossAttentionBlock` arguments: the hyper-parameters weights do not
/// carry, and the sizes a state dict of it has ([`GatedXAttnBlock::state_dict`]; loading takes
/// the sizes from the checkpoint).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatedXAttnConfig {
    /// Attention heads (open_flamingo's `heads`, 8 by default).
    pub heads: usize,
    /// Text attends only to the latest image before it (OpenFlamingo's setting), else to
    /// every image before it.
    pub only_attend_immediate_media: bool,
    /// LayerNorm epsilon (1e-5).
    pub layer_norm_eps: f32,
    /// `dim`: the language model's width (4096 for OpenFlamingo-9B's MPT-7B).
    pub dim: usize,
    /// `dim_visual`: the media width (1024).
    pub dim_visual: usize,
    /// `dim_head` (64).
    pub dim_head: usize,
    /// `ff_mult` (4).
    pub ff_mult: usize,
}

impl Default for GatedXAttnConfig {
    /// OpenFlamingo-9B's: 8 heads of 64, immediate media only, eps 1e-5, 4096 over 1024, FFN ×4.
    fn default() -> Self {
        Self {
            heads: 8,
            only_attend_immediate_media: true,
            layer_norm_eps: 1e-5,
            dim: 4096,
            dim_visual: 1024,
            dim_head: 64,
            ff_mult: 4,
        }
    }
}

/// A gated cross-attention block with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct GatedXAttnBlock {
    norm: Norm,
    to_q: Linear,
    to_kv: Linear,
    to_out: Linear,
    ff: FeedForward,
    attn_gate: Tensor,
    ff_gate: Tensor,
    config: GatedXAttnConfig,
    dim: usize,
    dim_visual: usize,
    inner: usize,
    activations: DType,
}

impl GatedXAttnBlock {
    /// Loads `{prefix}attn_gate`, `{prefix}ff_gate`, `{prefix}attn.{norm,to_q,to_kv,to_out}`
    /// and `{prefix}ff.{0,1,3}`; OpenFlamingo's prefix for layer i is
    /// `lang_encoder.gated_cross_attn_layers.{i}.`.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, prefix: &str, config: GatedXAttnConfig) -> Result<Self> {
        let q_name = format!("{prefix}attn.to_q.weight");
        let q_shape = weights.shape(&q_name)?;
        let [inner, dim] = q_shape[..] else {
            return Err(Error::Weights { name: q_name, problem: format!("shape {q_shape:?}, expected [inner, dim]") });
        };
        head_dim(NAME, inner, config.heads)?;
        let kv_name = format!("{prefix}attn.to_kv.weight");
        let kv_shape = weights.shape(&kv_name)?;
        let [kv_rows, dim_visual] = kv_shape[..] else {
            return Err(Error::Weights {
                name: kv_name,
                problem: format!("shape {kv_shape:?}, expected [2·inner, dim_visual]"),
            });
        };
        if kv_rows != 2 * inner {
            return Err(Error::Weights {
                name: kv_name,
                problem: format!("{kv_rows} rows, expected 2·{inner} ([K; V])"),
            });
        }
        let eps = config.layer_norm_eps;
        let gate = |leaf: &str| {
            let name = format!("{prefix}{leaf}");
            Tensor::from_f32(gpu, &[1], &weights.f32(&name, Some(&[1]))?)
        };
        let block = Self {
            norm: Norm::load(gpu, weights, &format!("{prefix}attn.norm"), dim, eps)?,
            to_q: Linear::load(gpu, weights, &format!("{prefix}attn.to_q"), dim, false)?,
            to_kv: Linear::load(gpu, weights, &format!("{prefix}attn.to_kv"), dim_visual, false)?,
            to_out: Linear::load(gpu, weights, &format!("{prefix}attn.to_out"), inner, false)?,
            ff: FeedForward::load(gpu, weights, &format!("{prefix}ff"), dim, eps)?,
            attn_gate: gate("attn_gate")?,
            ff_gate: gate("ff_gate")?,
            config,
            dim,
            dim_visual,
            inner,
            activations: DType::F32,
        };
        gpu.flush("uploading gated cross-attention weights")?;
        Ok(block)
    }

    /// Runs later plans with activations stored as `dtype` (f32, the default, or f16: f32
    /// arithmetic, half the activation memory and traffic; needs `SHADER_F16`). Text and media
    /// inputs are then declared f16 (the mask stays f32) (`Plan::run` rounds the f32 data it is given) and so are outputs.
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// The tensors a checkpoint of this configuration holds under `prefix`
    /// (`lang_encoder.gated_cross_attn_layers.{i}.` in OpenFlamingo), gates included.
    pub fn state_dict(config: &GatedXAttnConfig, prefix: &str) -> StateDict {
        let (dim, inner, ff) = (config.dim, config.heads * config.dim_head, config.ff_mult * config.dim);
        let mut t = StateDict::default();
        t.tensor("attn_gate", &[1]);
        t.tensor("ff_gate", &[1]);
        t.norm("attn.norm", dim, true);
        t.linear("attn.to_q", inner, dim, false);
        t.linear("attn.to_kv", 2 * inner, config.dim_visual, false);
        t.linear("attn.to_out", dim, inner, false);
        t.norm("ff.0", dim, true);
        t.linear("ff.1", ff, dim, false);
        t.linear("ff.3", dim, ff, false);
        t.prefixed(prefix)
    }

    /// `[dim, dim_visual, inner]`.
    pub fn dims(&self) -> [usize; 3] {
        [self.dim, self.dim_visual, self.inner]
    }

    /// Overwrites the two gates (raw values; the block applies tanh). Plans made earlier see
    /// the new values on their next run.
    pub fn set_gates(&self, attn_gate: f32, ff_gate: f32) -> Result<()> {
        self.attn_gate.write_f32(&[attn_gate])?;
        self.ff_gate.write_f32(&[ff_gate])?;
        self.attn_gate.gpu().flush("writing gates")
    }

    /// Plans the block for `batch` sequences of `text` tokens over `media` items of `latents`
    /// visual tokens each. Inputs: `x`, `media` (flattened `(t n)`), the keep `mask`
    /// ([`GatedXAttnBlock::media_mask`]); output `hidden_states`.
    pub fn plan(&self, gpu: &Gpu, batch: usize, text: usize, media: usize, latents: usize) -> Result<ConnectorPlan> {
        let mut g = Graph::new();
        let x = g.input_as("x", &[batch, text, self.dim], self.activations)?;
        let visual = g.input_as("media", &[batch, media * latents, self.dim_visual], self.activations)?;
        let mask = g.input_as("mask", &[batch, text, media * latents], DType::U8)?;
        let d = head_dim(NAME, self.inner, self.config.heads)?;
        let immediate = self.config.only_attend_immediate_media;
        // Upstream zeroes the rows of text before the first image only in immediate mode.
        let rows = if immediate { MaskedRows::Zero } else { MaskedRows::Uniform };
        let attention = Attention::new(self.config.heads as u32, d).masked(rows);

        let q = self.to_q.add_normed(&mut g, "attn.to_q", &self.norm, x, None, Skip::None)?;
        let kv = self.to_kv.add(&mut g, "attn.to_kv", visual, None, Skip::None)?;
        let attended = g.add(attention, &[q, kv, mask])?;
        let attn_gate = g.constant("attn_gate", &self.attn_gate);
        let y = self.to_out.add(&mut g, "attn.to_out", attended, None, Skip::Gated(x, attn_gate))?;
        let ff_gate = g.constant("ff_gate", &self.ff_gate);
        let out = self.ff.add(&mut g, "ff", y, Skip::Gated(y, ff_gate))?;
        g.output(out)?;
        ConnectorPlan::new(gpu, g, &["hidden_states"])
    }

    /// The keep mask `[batch, text, media·latents]` from `media_locations`, as upstream:
    /// `text_time = cumsum(media_locations)` (a media token counts itself), `media_time =
    /// 1 + j / latents`, keep `text_time == media_time` (immediate) or `>=`.
    /// The named inputs of a plan of `[batch, text, media, latents]`: `x` `[batch, text,
    /// dim]`, `media` `[batch, media, latents, dim_visual]` and the `mask` made from
    /// `media_locations` `[batch, text]` ([`GatedXAttnBlock::media_mask`]).
    pub fn inputs(
        &self,
        [batch, text, media, latents]: [usize; 4],
        x: &[f32],
        visual: &[f32],
        media_locations: &[u8],
    ) -> Result<Tensors> {
        let x = HostTensor::new(&[batch, text, self.dim], HostVec::F32(x.to_vec()))?;
        let visual = HostTensor::new(&[batch, media * latents, self.dim_visual], HostVec::F32(visual.to_vec()))?;
        let mask = self.media_mask(media_locations, batch, text, media, latents)?;
        Ok([("x".to_string(), x), ("media".to_string(), visual), ("mask".to_string(), mask)].into())
    }

    /// The plan's `mask` input, `[batch, text]` locations over `media` items of `latents`
    /// tokens each.
    pub fn media_mask(
        &self,
        media_locations: &[u8],
        batch: usize,
        text: usize,
        media: usize,
        latents: usize,
    ) -> Result<HostTensor> {
        if media_locations.len() != batch * text {
            return Err(Error::shape(
                NAME,
                "media_locations length ([batch, text])",
                batch * text,
                media_locations.len(),
            ));
        }
        let keys = media * latents;
        let mut mask = Vec::with_capacity(batch * text * keys);
        for row in media_locations.chunks(text.max(1)) {
            let mut text_time = 0;
            for &location in row {
                text_time += usize::from(location != 0);
                if text_time > media {
                    return Err(Error::shape(
                        NAME,
                        "media tokens in a media_locations row (at most the media items)",
                        media,
                        text_time,
                    ));
                }
                mask.extend((0..keys).map(|j| {
                    let media_time = 1 + j / latents;
                    let keep = if self.config.only_attend_immediate_media {
                        text_time == media_time
                    } else {
                        text_time >= media_time
                    };
                    u8::from(keep)
                }));
            }
        }
        HostTensor::new(&[batch, text, media * latents], HostVec::U8(mask))
    }
}
