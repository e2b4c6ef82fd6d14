//! Flamingo's Perceiver Resampler (open_flamingo `PerceiverResampler`): learnable latents
//! attend to `concat(norm_media(x), norm_latents(latents))`, then a no-bias FFN, both with
//! residuals, and a final LayerNorm; every media item is resampled independently to the same
//! number of latents whatever its token count.
//!
//! The media's K/V do not depend on the latents: each layer's `norm_media` affine is folded into
//! its `to_kv` rows at load (`LN(x)·Wᵀ = x̂·(W·diag γ)ᵀ + W·β`), so one LayerNorm and one GEMM give
//! every layer's media K/V. Each layer's q, k and v of the latents are one GEMM too (`to_q` and
//! `to_kv` stacked), read in place by the attention's two sources.

use super::{ConnectorPlan, StateDict};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::FeedForward;
use crate::nn::{Linear, Norm, Skip, activation_constant, count_layers, find_prefix, head_dim};
use crate::ops::{Attention, Repeat};
use crate::tensor::Tensor;
use crate::weights::Weights;

const NAME: &str = "perceiver_resampler";

/// open_flamingo's `PerceiverResampler` arguments: the hyper-parameters weights do not carry,
/// and the sizes a state dict of it has ([`PerceiverResampler::state_dict`]; loading takes the
/// sizes from the checkpoint).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerceiverConfig {
    /// Attention heads (open_flamingo's `heads`).
    pub heads: usize,
    /// LayerNorm epsilon (1e-5).
    pub layer_norm_eps: f32,
    /// `dim`: the width of media and latents (1024 for CLIP ViT-L).
    pub dim: usize,
    /// `depth` (6).
    pub depth: usize,
    /// `dim_head` (64).
    pub dim_head: usize,
    /// `num_latents` (64).
    pub num_latents: usize,
    /// `ff_mult` (4).
    pub ff_mult: usize,
}

impl Default for PerceiverConfig {
    /// open_flamingo's: 8 heads of 64, eps 1e-5, 64 latents of 1024, depth 6, FFN ×4.
    fn default() -> Self {
        Self { heads: 8, layer_norm_eps: 1e-5, dim: 1024, depth: 6, dim_head: 64, num_latents: 64, ff_mult: 4 }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    norm_latents: Norm,
    /// `[to_q; to_kv]`: the latents' q, k and v in one GEMM.
    to_qkv: Linear,
    to_out: Linear,
    ff: FeedForward,
}

/// A Perceiver Resampler with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct PerceiverResampler {
    latents: Tensor,
    /// LayerNorm without affine over the media: what every layer's `norm_media` shares.
    media_norm: Norm,
    /// Every layer's `to_kv` with its `norm_media` affine folded in, stacked: `[depth·2·inner, dim]`.
    media_kv: Linear,
    layers: Vec<Layer>,
    norm: Norm,
    heads: usize,
    dim: usize,
    inner: usize,
    activations: DType,
}

impl PerceiverResampler {
    /// Loads by open_flamingo names, under `perceiver.` (a Flamingo checkpoint) or bare (the
    /// module's own state dict). The depth is the number of `layers.{i}` present.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, config: PerceiverConfig) -> Result<Self> {
        let prefix = find_prefix(weights, &["perceiver.", ""], "latents")?;
        let latents_name = format!("{prefix}latents");
        let shape = weights.shape(&latents_name)?;
        let [num_latents, dim] = shape[..] else {
            return Err(Error::Weights {
                name: latents_name,
                problem: format!("shape {shape:?}, expected [latents, dim]"),
            });
        };
        let eps = config.layer_norm_eps;
        let depth = count_layers(weights, |i| format!("{prefix}layers.{i}.0.to_q.weight"))?;
        if depth == 0 {
            return Err(Error::Weights {
                name: format!("{prefix}layers.0.0.to_q.weight"),
                problem: "no resampler layers in the checkpoint".into(),
            });
        }
        let mut layers = Vec::with_capacity(depth);
        let mut inner = 0;
        let mut media_kv = Vec::new();
        for i in 0..depth {
            let (attn, ff) = (format!("{prefix}layers.{i}.0"), format!("{prefix}layers.{i}.1"));
            let (q_name, kv_name) = (format!("{attn}.to_q"), format!("{attn}.to_kv"));
            inner = weights.shape(&format!("{q_name}.weight"))?.first().copied().unwrap_or(0);
            head_dim(NAME, inner, config.heads)?;
            let to_qkv = Linear::concat(gpu, weights, &[&q_name, &kv_name], dim, false)?;
            if to_qkv.out_features() != 3 * inner {
                return Err(Error::Weights {
                    name: format!("{kv_name}.weight"),
                    problem: format!("{} rows, expected 2·{inner} ([K; V])", to_qkv.out_features() - inner),
                });
            }
            media_kv.push((format!("{kv_name}.weight"), format!("{attn}.norm_media")));
            layers.push(Layer {
                norm_latents: Norm::load(gpu, weights, &format!("{attn}.norm_latents"), dim, eps)?,
                to_qkv,
                to_out: Linear::load(gpu, weights, &format!("{attn}.to_out"), inner, false)?,
                ff: FeedForward::load(gpu, weights, &ff, dim, eps)?,
            });
        }
        let media_kv = fold_media_norms(gpu, weights, &media_kv, dim)?;
        let media_norm = Norm::plain(gpu, dim, eps)?;
        let latents = Tensor::from_f32(gpu, &[num_latents, dim], &weights.f32(&latents_name, None)?)?;
        let norm = Norm::load(gpu, weights, &format!("{prefix}norm"), dim, eps)?;
        gpu.flush("uploading resampler weights")?;
        Ok(Self {
            latents,
            media_norm,
            media_kv,
            layers,
            norm,
            heads: config.heads,
            dim,
            inner,
            activations: DType::F32,
        })
    }

    /// Runs later plans with activations stored as `dtype` (f32, the default, or f16: f32
    /// arithmetic, half the activation memory and traffic; needs `SHADER_F16`). Inputs are
    /// then declared f16 (`Plan::run` rounds the f32 data it is given) and so are outputs.
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// The tensors a checkpoint of this configuration holds, under `prefix` (`perceiver.` in
    /// a Flamingo checkpoint, empty for the module's own state dict).
    pub fn state_dict(config: &PerceiverConfig, prefix: &str) -> StateDict {
        let (dim, inner, ff) = (config.dim, config.heads * config.dim_head, config.ff_mult * config.dim);
        let mut t = StateDict::default();
        t.tensor("latents", &[config.num_latents, dim]);
        for i in 0..config.depth {
            let (a, f) = (format!("layers.{i}.0"), format!("layers.{i}.1"));
            t.norm(&format!("{a}.norm_media"), dim, true);
            t.norm(&format!("{a}.norm_latents"), dim, true);
            t.linear(&format!("{a}.to_q"), inner, dim, false);
            t.linear(&format!("{a}.to_kv"), 2 * inner, dim, false);
            t.linear(&format!("{a}.to_out"), dim, inner, false);
            t.norm(&format!("{f}.0"), dim, true);
            t.linear(&format!("{f}.1"), ff, dim, false);
            t.linear(&format!("{f}.3"), dim, ff, false);
        }
        t.norm("norm", dim, true);
        t.prefixed(prefix)
    }

    /// `[latents, dim, depth]`.
    pub fn dims(&self) -> [usize; 3] {
        [self.latents.shape()[0], self.dim, self.layers.len()]
    }

    /// The graph for `x` `[items, tokens, dim]` (items = batch · media, tokens = frames ·
    /// tokens per frame, upstream's `[b, T, F, v, D]` flattened) → `[items, latents, dim]`.
    /// Each attention's output projection with its residual, and each FFN with its input norm
    /// and residual (the last with the final norm), is one fused dispatch where it fits.
    pub fn graph(&self, items: usize, tokens: usize) -> Result<(Graph, TensorId, TensorId)> {
        let mut g = Graph::new();
        let x = g.input_as("x", &[items, tokens, self.dim], self.activations)?;
        let mut latents = activation_constant(&mut g, "latents", &self.latents, self.activations)?;
        if items > 1 {
            latents = g.add(Repeat { times: items }, &[latents])?;
        }
        let d = head_dim(NAME, self.inner, self.heads)?;
        let inner = self.inner as u32;
        // Every layer's media K/V: `[items, tokens, depth · [K | V]]`.
        let kv_media = self.media_kv.add_normed(&mut g, "to_kv.media", &self.media_norm, x, None, Skip::None)?;
        let mut final_norm = Some(&self.norm);
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layers.{i}");
            let qkv = layer.to_qkv.add_normed(
                &mut g,
                &format!("{name}.to_qkv"),
                &layer.norm_latents,
                latents,
                None,
                Skip::None,
            )?;
            // Media keys first (this layer's columns), then the latents' from their [q | k | v].
            let base = 2 * inner * i as u32;
            let attention = Attention::new(self.heads as u32, d)
                .offsets(0, base, base + inner)
                .second_source_offsets(inner, 2 * inner);
            let inputs = [qkv, kv_media, qkv];
            let to_out = format!("{name}.to_out");
            latents = layer.to_out.add_after_attention(&mut g, &to_out, attention, &inputs, Some(latents), None)?;
            // The final norm rides on the last FFN where that one is fused.
            let last = i + 1 == self.layers.len();
            let post_norm = if last && layer.ff.fuses(&self.norm) { final_norm.take() } else { None };
            latents = layer.ff.add_residual(&mut g, &format!("{name}.1"), latents, post_norm)?;
        }
        let out = match final_norm {
            Some(norm) => norm.add(&mut g, "norm", latents)?,
            None => latents,
        };
        g.output(out)?;
        Ok((g, x, out))
    }

    /// Plans the resampler for `items` media items of `tokens` tokens each.
    pub fn plan(&self, gpu: &Gpu, items: usize, tokens: usize) -> Result<ConnectorPlan> {
        ConnectorPlan::new(gpu, self.graph(items, tokens)?.0, &["latents"])
    }
}

/// Every layer's `to_kv` (`W`, `[2·inner, dim]`) with its `norm_media` affine (`γ`, `β`) folded
/// in, stacked: weight rows `W·diag γ` (in the checkpoint's dtype), bias `W·β` (in f64), so
/// that `LN(x)·Wᵀ = x̂·(W·diag γ)ᵀ + W·β` with `x̂` the media normalised without affine.
fn fold_media_norms(gpu: &Gpu, weights: &Weights, layers: &[(String, String)], dim: usize) -> Result<Linear> {
    let mut norms = Vec::with_capacity(layers.len());
    let mut bias = Vec::new();
    for (kv, norm) in layers {
        let [gamma, beta] = ["weight", "bias"].map(|leaf| weights.f32(&format!("{norm}.{leaf}"), Some(&[dim])));
        let (gamma, beta) = (gamma?, beta?);
        let w = weights.f32(kv, None)?;
        bias.extend(
            w.chunks(dim)
                .map(|row| row.iter().zip(&beta).map(|(&w, &b)| f64::from(w) * f64::from(b)).sum::<f64>() as f32),
        );
        norms.push(gamma);
    }
    let names: Vec<&str> = layers.iter().map(|(kv, _)| kv.as_str()).collect();
    let rows = bias.len();
    let weight = weights.upload_arranged(gpu, &names, &[rows, dim], |values| {
        values
            .iter()
            .zip(&norms)
            .flat_map(|(w, gamma)| w.chunks(dim).flat_map(move |row| row.iter().zip(gamma).map(|(w, g)| w * g)))
            .collect()
    })?;
    Linear::from_tensors(NAME, weight, Some(Tensor::from_f32(gpu, &[rows], &bias)?))
}
