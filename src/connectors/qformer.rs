//! BLIP-2's Q-Former (`transformers` `Blip2QFormerModel` fed with the learnable
//! `query_tokens`): LayerNorm on the queries, then BERT-style post-LN layers with
//! self-attention, cross-attention to the image features every `cross_attention_frequency`
//! layers (layer 0 included), and the query FFN.

use super::{ConnectorPlan, StateDict};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::Mlp;
use crate::nn::{Linear, Norm, Skip, activation_constant, count_layers, head_dim};
use crate::ops::{Attention, GeluForm, Repeat};
use crate::reference;
use crate::tensor::Tensor;
use crate::weights::Weights;

const NAME: &str = "qformer";

/// `Blip2QFormerConfig`: the hyper-parameters weights do not carry, and the sizes a state
/// dict of it has ([`QFormer::state_dict`]; loading takes the sizes from the checkpoint).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QFormerConfig {
    /// `num_attention_heads` (12).
    pub num_attention_heads: usize,
    /// Cross-attention every this many layers, from layer 0 (2).
    pub cross_attention_frequency: usize,
    /// LayerNorm epsilon (1e-12).
    pub layer_norm_eps: f32,
    /// The FFN activation (`hidden_act`, exact GELU).
    pub hidden_act: GeluForm,
    /// `hidden_size` (768).
    pub hidden_size: usize,
    /// `num_hidden_layers` (12).
    pub num_hidden_layers: usize,
    /// `intermediate_size` (3072).
    pub intermediate_size: usize,
    /// `encoder_hidden_size`: the vision tower's width (1408 for ViT-g).
    pub encoder_hidden_size: usize,
    /// `num_query_tokens` of the model config (32).
    pub num_query_tokens: usize,
}

impl Default for QFormerConfig {
    /// BLIP-2's: 12 heads, cross-attention every 2 layers, eps 1e-12, exact GELU, 32 queries of
    /// 768 over ViT-g's 1408, 12 layers, FFN 3072.
    fn default() -> Self {
        Self {
            num_attention_heads: 12,
            cross_attention_frequency: 2,
            layer_norm_eps: 1e-12,
            hidden_act: GeluForm::Erf,
            hidden_size: 768,
            num_hidden_layers: 12,
            intermediate_size: 3072,
            encoder_hidden_size: 1408,
            num_query_tokens: 32,
        }
    }
}

impl QFormerConfig {
    /// Reads the keys of a HF `qformer_config` JSON object; missing keys keep BLIP-2's values.
    pub fn from_json(config: &serde_json::Value) -> Result<Self> {
        let d = Self::default();
        let usize_key = |key: &str, default: usize| config[key].as_u64().map_or(default, |v| v as usize);
        let act = match config["hidden_act"].as_str() {
            None => d.hidden_act,
            Some(name) => GeluForm::from_hf("qformer_config.hidden_act", name)?,
        };
        Ok(Self {
            num_attention_heads: usize_key("num_attention_heads", d.num_attention_heads),
            cross_attention_frequency: usize_key("cross_attention_frequency", d.cross_attention_frequency),
            layer_norm_eps: config["layer_norm_eps"].as_f64().map_or(d.layer_norm_eps, |v| v as f32),
            hidden_act: act,
            hidden_size: usize_key("hidden_size", d.hidden_size),
            num_hidden_layers: usize_key("num_hidden_layers", d.num_hidden_layers),
            intermediate_size: usize_key("intermediate_size", d.intermediate_size),
            encoder_hidden_size: usize_key("encoder_hidden_size", d.encoder_hidden_size),
            num_query_tokens: usize_key("num_query_tokens", d.num_query_tokens),
        })
    }
}

#[derive(Debug, Clone)]
struct Sublayer {
    /// Self: Q, K, V fused into one `[3H, H]` projection. Cross: the query projection.
    query: Linear,
    output: Linear,
    norm: Norm,
}

#[derive(Debug, Clone)]
struct Layer {
    attention: Sublayer,
    cross: Option<Sublayer>,
    intermediate: Linear,
    output: Linear,
    norm: Norm,
}

/// A BLIP-2 Q-Former with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct QFormer {
    /// `qformer.layernorm(query_tokens)`: input-independent, so computed once at load.
    query_states: Tensor,
    /// The K and V projections of every cross-attention layer stacked into one GEMM over the
    /// image features: `[key₀; value₀; key₂; value₂; ..]`.
    cross_key_value: Linear,
    layers: Vec<Layer>,
    config: QFormerConfig,
    hidden: usize,
    encoder_width: usize,
    activations: DType,
    /// BLIP-2's `language_projection` into the language model's width, when loaded.
    projection: Option<Linear>,
}

impl QFormer {
    /// Loads `query_tokens` and `qformer.*` (the `Blip2ForConditionalGeneration` names). The
    /// layer count is the number of `qformer.encoder.layer.{i}` present.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, config: QFormerConfig) -> Result<Self> {
        let tokens_shape = weights.shape("query_tokens")?;
        let (&hidden, queries) = tokens_shape
            .split_last()
            .map(|(h, rest)| (h, rest.iter().product::<usize>()))
            .ok_or_else(|| Error::Weights { name: "query_tokens".into(), problem: "rank 0".into() })?;
        head_dim(NAME, hidden, config.num_attention_heads)?;
        let eps = config.layer_norm_eps;
        let layer_count =
            count_layers(weights, |i| format!("qformer.encoder.layer.{i}.attention.attention.query.weight"))?;
        if layer_count == 0 {
            return Err(Error::Weights {
                name: "qformer.encoder.layer.0.attention.attention.query.weight".into(),
                problem: "no Q-Former layers in the checkpoint".into(),
            });
        }
        let mut encoder_width = 0;
        let mut cross_kv = Vec::new();
        let mut layers = Vec::with_capacity(layer_count);
        for i in 0..layer_count {
            let p = format!("qformer.encoder.layer.{i}");
            let attention = Sublayer {
                query: Linear::concat(
                    gpu,
                    weights,
                    &[
                        &format!("{p}.attention.attention.query"),
                        &format!("{p}.attention.attention.key"),
                        &format!("{p}.attention.attention.value"),
                    ],
                    hidden,
                    true,
                )?,
                output: Linear::load(gpu, weights, &format!("{p}.attention.output.dense"), hidden, true)?,
                norm: Norm::load(gpu, weights, &format!("{p}.attention.output.LayerNorm"), hidden, eps)?,
            };
            let cross = if i % config.cross_attention_frequency.max(1) == 0 {
                let c = format!("{p}.crossattention");
                let key = weights.shape(&format!("{c}.attention.key.weight"))?;
                encoder_width = key.get(1).copied().unwrap_or(0);
                cross_kv.extend([format!("{c}.attention.key"), format!("{c}.attention.value")]);
                Some(Sublayer {
                    query: Linear::load(gpu, weights, &format!("{c}.attention.query"), hidden, true)?,
                    output: Linear::load(gpu, weights, &format!("{c}.output.dense"), hidden, true)?,
                    norm: Norm::load(gpu, weights, &format!("{c}.output.LayerNorm"), hidden, eps)?,
                })
            } else {
                None
            };
            let intermediate = Linear::load(gpu, weights, &format!("{p}.intermediate_query.dense"), hidden, true)?;
            let output =
                Linear::load(gpu, weights, &format!("{p}.output_query.dense"), intermediate.out_features(), true)?;
            let norm = Norm::load(gpu, weights, &format!("{p}.output_query.LayerNorm"), hidden, eps)?;
            layers.push(Layer { attention, cross, intermediate, output, norm });
        }
        let prefixes: Vec<&str> = cross_kv.iter().map(String::as_str).collect();
        if prefixes.is_empty() {
            return Err(Error::Weights {
                name: "qformer.encoder.layer.0.crossattention.attention.key.weight".into(),
                problem: "no cross-attention layer in the checkpoint".into(),
            });
        }
        let cross_key_value = Linear::concat(gpu, weights, &prefixes, encoder_width, true)?;
        // The embedding LayerNorm of the learnable queries, once, in f64.
        let tokens = weights.f32("query_tokens", None)?;
        let [gamma, beta] =
            ["weight", "bias"].map(|leaf| weights.f32(&format!("qformer.layernorm.{leaf}"), Some(&[hidden])));
        let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
        let normed = reference::layer_norm(&wide(&tokens), &wide(&gamma?), &wide(&beta?), hidden, f64::from(eps));
        let normed: Vec<f32> = normed.iter().map(|&v| v as f32).collect();
        let query_states = Tensor::from_f32(gpu, &[queries, hidden], &normed)?;
        gpu.flush("uploading Q-Former weights")?;
        Ok(Self {
            query_states,
            cross_key_value,
            layers,
            config,
            hidden,
            encoder_width,
            activations: DType::F32,
            projection: None,
        })
    }

    /// Adds BLIP-2's `language_projection` (`[text_dim, hidden]`, with its bias when stored):
    /// plans then output the language model's inputs, and the Q-Former's last hidden state as
    /// a second output.
    pub fn with_language_projection(mut self, gpu: &Gpu, weights: &Weights) -> Result<Self> {
        let bias = weights.contains("language_projection.bias");
        self.projection = Some(Linear::load(gpu, weights, "language_projection", self.hidden, bias)?);
        gpu.flush("uploading language_projection")?;
        Ok(self)
    }

    /// Runs later plans with activations stored as `dtype` (f32, the default, or f16: f32
    /// arithmetic, half the activation memory and traffic; needs `SHADER_F16`). Inputs are
    /// then declared f16 (`Plan::run` rounds the f32 data it is given) and so are outputs.
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// The tensors a checkpoint of this configuration holds (`Blip2ForConditionalGeneration`
    /// names: `query_tokens`, `qformer.*`).
    pub fn state_dict(config: &QFormerConfig) -> StateDict {
        let (hidden, encoder) = (config.hidden_size, config.encoder_hidden_size);
        let mut t = StateDict::default();
        t.tensor("query_tokens", &[1, config.num_query_tokens, hidden]);
        t.norm("qformer.layernorm", hidden, true);
        for i in 0..config.num_hidden_layers {
            let p = format!("qformer.encoder.layer.{i}");
            for part in ["query", "key", "value"] {
                t.linear(&format!("{p}.attention.attention.{part}"), hidden, hidden, true);
            }
            t.linear(&format!("{p}.attention.output.dense"), hidden, hidden, true);
            t.norm(&format!("{p}.attention.output.LayerNorm"), hidden, true);
            if i % config.cross_attention_frequency.max(1) == 0 {
                let c = format!("{p}.crossattention");
                t.linear(&format!("{c}.attention.query"), hidden, hidden, true);
                t.linear(&format!("{c}.attention.key"), hidden, encoder, true);
                t.linear(&format!("{c}.attention.value"), hidden, encoder, true);
                t.linear(&format!("{c}.output.dense"), hidden, hidden, true);
                t.norm(&format!("{c}.output.LayerNorm"), hidden, true);
            }
            t.linear(&format!("{p}.intermediate_query.dense"), config.intermediate_size, hidden, true);
            t.linear(&format!("{p}.output_query.dense"), hidden, config.intermediate_size, true);
            t.norm(&format!("{p}.output_query.LayerNorm"), hidden, true);
        }
        t
    }

    /// The language model's width after `language_projection`, when loaded.
    pub fn text_dim(&self) -> Option<usize> {
        self.projection.as_ref().map(Linear::out_features)
    }

    /// `[queries, hidden, encoder_width, layers]`.
    pub fn dims(&self) -> [usize; 4] {
        [self.query_states.shape()[0], self.hidden, self.encoder_width, self.layers.len()]
    }

    /// The graph for `image_embeds` `[batch, tokens, encoder_width]` → `[batch, queries,
    /// hidden]` (or `[batch, queries, text_dim]` with the language projection, the hidden state
    /// then a second output). Each attention sublayer (attention, output projection, residual,
    /// post-LayerNorm) and each FFN is one fused dispatch where it fits. Returns (graph, input,
    /// output).
    pub fn graph(&self, batch: usize, tokens: usize) -> Result<(Graph, TensorId, TensorId)> {
        let mut g = Graph::new();
        let image = g.input_as("encoder_hidden_states", &[batch, tokens, self.encoder_width], self.activations)?;
        let (out, hidden) = self.add_to(&mut g, image)?;
        g.output(out)?;
        if let Some(h) = hidden {
            g.output(h)?;
        }
        Ok((g, image, out))
    }

    /// Adds the Q-Former to `g` over `image` `[batch, tokens, encoder_width]`; returns its
    /// result (after the language projection when loaded) and, with the projection, the
    /// Q-Former's last hidden state. Marks neither as an output.
    pub fn add_to(&self, g: &mut Graph, image: TensorId) -> Result<(TensorId, Option<TensorId>)> {
        let batch = g.shape(image).map_or(1, |s| s[0]);
        // Upstream's outputs are [batch, queries, width]: one image takes the queries as
        // [1, queries, width] (no copy), more take copies.
        let queries = match batch {
            1 => self.query_states.reshape(&[&[1], self.query_states.shape()].concat())?,
            _ => self.query_states.clone(),
        };
        let mut h = activation_constant(g, "query_states", &queries, self.activations)?;
        if batch > 1 {
            h = g.add(Repeat { times: batch }, &[h])?;
        }
        let heads = self.config.num_attention_heads as u32;
        let d = head_dim(NAME, self.hidden, self.config.num_attention_heads)?;
        let width = heads * d;
        // Every cross-attention layer's K and V in one GEMM; layer j reads its columns.
        let kv = self.cross_key_value.add(g, "cross.key_value", image, None, Skip::None)?;
        let mut cross_index = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layer.{i}");
            let a = &layer.attention;
            let qkv = a.query.add(g, &format!("{name}.qkv"), h, None, Skip::None)?;
            let attention = Attention::new(heads, d).offsets(0, width, 2 * width);
            let output = format!("{name}.attention.output");
            h = a.output.add_after_attention(g, &output, attention, &[qkv, qkv], Some(h), Some(&a.norm))?;
            if let Some(c) = &layer.cross {
                let q = c.query.add(g, &format!("{name}.cross.query"), h, None, Skip::None)?;
                let base = 2 * width * cross_index;
                cross_index += 1;
                let attention = Attention::new(heads, d).offsets(0, base, base + width);
                let output = format!("{name}.cross.output");
                h = c.output.add_after_attention(g, &output, attention, &[q, kv], Some(h), Some(&c.norm))?;
            }
            let ffn = Mlp {
                norm: None,
                up: &layer.intermediate,
                activation: Some(self.config.hidden_act),
                down: &layer.output,
            };
            let names = [&format!("{name}.intermediate_query") as &str, &format!("{name}.output_query")];
            h = ffn.add_named(g, names, h, Some(&layer.norm))?;
        }
        let Some(projection) = &self.projection else {
            return Ok((h, None));
        };
        let projected = projection.add(g, "language_projection", h, None, Skip::None)?;
        Ok((projected, Some(h)))
    }

    /// Plans the Q-Former for `[batch, tokens]` image features ([`QFormer::output_names`]).
    pub fn plan(&self, gpu: &Gpu, batch: usize, tokens: usize) -> Result<ConnectorPlan> {
        ConnectorPlan::new(gpu, self.graph(batch, tokens)?.0, self.output_names())
    }

    /// Its outputs: `language_model_inputs` and the Q-Former's `qformer_last_hidden_state`
    /// with the language projection, else `last_hidden_state`.
    pub fn output_names(&self) -> &'static [&'static str] {
        if self.projection.is_some() {
            &["language_model_inputs", "qformer_last_hidden_state"]
        } else {
            &["last_hidden_state"]
        }
    }
}
