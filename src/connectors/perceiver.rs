//! Flamingo's Perceiver Resampler (open_flamingo `PerceiverResampler`): learnable latents
//! attend to `concat(norm_media(x), norm_latents(latents))`, then a no-bias FFN, both with
//! residuals, and a final LayerNorm; every media item is resampled independently to the same
//! number of latents whatever its token count.

use super::blocks::{FeedForward, Linear, Norm, Skip, activation_constant, count_layers, find_prefix, head_dim};
use super::{ConnectorPlan, StateDict, finish};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
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
    norm_media: Norm,
    norm_latents: Norm,
    to_q: Linear,
    to_kv: Linear,
    to_out: Linear,
    ff: FeedForward,
}

/// A Perceiver Resampler with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct PerceiverResampler {
    latents: Tensor,
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
        for i in 0..depth {
            let (attn, ff) = (format!("{prefix}layers.{i}.0"), format!("{prefix}layers.{i}.1"));
            let to_q = Linear::load(gpu, weights, &format!("{attn}.to_q"), dim, false)?;
            inner = to_q.out_features();
            head_dim(NAME, inner, config.heads)?;
            let to_kv = Linear::load(gpu, weights, &format!("{attn}.to_kv"), dim, false)?;
            if to_kv.out_features() != 2 * inner {
                return Err(Error::Weights {
                    name: format!("{attn}.to_kv.weight"),
                    problem: format!("{} rows, expected 2·{inner} ([K; V])", to_kv.out_features()),
                });
            }
            layers.push(Layer {
                norm_media: Norm::load(gpu, weights, &format!("{attn}.norm_media"), dim, eps)?,
                norm_latents: Norm::load(gpu, weights, &format!("{attn}.norm_latents"), dim, eps)?,
                to_q,
                to_kv,
                to_out: Linear::load(gpu, weights, &format!("{attn}.to_out"), inner, false)?,
                ff: FeedForward::load(gpu, weights, &ff, dim, eps)?,
            });
        }
        let latents = Tensor::from_f32(gpu, &[num_latents, dim], &weights.f32(&latents_name, None)?)?;
        let norm = Norm::load(gpu, weights, &format!("{prefix}norm"), dim, eps)?;
        gpu.flush("uploading resampler weights")?;
        Ok(Self { latents, layers, norm, heads: config.heads, dim, inner, activations: DType::F32 })
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
    pub fn graph(&self, items: usize, tokens: usize) -> Result<(Graph, TensorId, TensorId)> {
        let mut g = Graph::new();
        let x = g.input_as("x", &[items, tokens, self.dim], self.activations)?;
        let latents = activation_constant(&mut g, "latents", &self.latents, self.activations)?;
        let mut latents = g.add(Repeat { times: items }, &[latents])?;
        let d = head_dim(NAME, self.inner, self.heads)?;
        let attention = Attention::new(self.heads as u32, d).two_sources();
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layers.{i}");
            let media = layer.norm_media.add(&mut g, &format!("{name}.norm_media"), x)?;
            let normed = layer.norm_latents.add(&mut g, &format!("{name}.norm_latents"), latents)?;
            let q = layer.to_q.add(&mut g, &format!("{name}.to_q"), normed, None, Skip::None)?;
            // K/V of the media and of the latents, attended as one sequence without a concat.
            let kv_media = layer.to_kv.add(&mut g, &format!("{name}.to_kv"), media, None, Skip::None)?;
            let kv_latents = layer.to_kv.add(&mut g, &format!("{name}.to_kv"), normed, None, Skip::None)?;
            let attended = g.add(attention, &[q, kv_media, kv_latents])?;
            latents = layer.to_out.add(&mut g, &format!("{name}.to_out"), attended, None, Skip::Add(latents))?;
            latents = layer.ff.add(&mut g, &format!("{name}.1"), latents, Skip::Add(latents))?;
        }
        let out = self.norm.add(&mut g, "norm", latents)?;
        g.output(out)?;
        Ok((g, x, out))
    }

    /// Plans the resampler for `items` media items of `tokens` tokens each.
    pub fn plan(&self, gpu: &Gpu, items: usize, tokens: usize) -> Result<ConnectorPlan> {
        finish(gpu, self.graph(items, tokens)?)
    }
}
