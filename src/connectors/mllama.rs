//! Llama 3.2 Vision (mllama): the `multi_modal_projector` that turns the vision tower's output
//! into `cross_attention_states`, and the text model's cross-attention decoder layer that reads
//! them (`MllamaCrossAttentionDecoderLayer`), as transformers computes them:
//!
//! ```text
//! h = x + tanh(attn_gate) · o_proj(attn(q_norm(q_proj(rms(x))), k_norm(k_proj(S)), v_proj(S), mask))
//! y = h + tanh(mlp_gate) · row_mask · down(silu(gate(rms(h))) · up(rms(h)))
//! ```
//!
//! Six dispatches: the q projection (its RMSNorm applied as the GEMM loads x) and the fused
//! k/v projection, flash attention with grouped key/value heads, the per-head q/k norms and the
//! additive mask inside, `o_proj` with the gated residual in its epilogue, the SwiGLU gate/up
//! GEMM (its RMSNorm on the way in), and `down_proj` with the row mask and the second gated
//! residual in its epilogue. As transformers 5 does (and Meta's
//! reference does not), a text row with no image to attend to still gets its attention
//! residual; only its MLP branch is zeroed.

use super::{ConnectorPlan, StateDict};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Norm, Skip};
use crate::ops::{Attention, Epilogue, Pass, Residual, RmsNorm, interleave_rows};
use crate::tensor::Tensor;
use crate::weights::Weights;

const NAME: &str = "mllama cross-attention";

/// The text config fields the layer uses (Llama-3.2-11B-Vision's by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MllamaConfig {
    /// `hidden_size` (4096).
    pub hidden_size: usize,
    /// `num_attention_heads` (32).
    pub heads: usize,
    /// `num_key_value_heads` (8).
    pub kv_heads: usize,
    /// `intermediate_size` (14336).
    pub intermediate_size: usize,
    /// `rms_norm_eps` (1e-5), of every RMSNorm of the layer.
    pub rms_norm_eps: f32,
}

impl Default for MllamaConfig {
    fn default() -> Self {
        Self { hidden_size: 4096, heads: 32, kv_heads: 8, intermediate_size: 14336, rms_norm_eps: 1e-5 }
    }
}

impl MllamaConfig {
    fn head_dim(&self) -> usize {
        self.hidden_size / self.heads.max(1)
    }

    /// The tensors of one cross-attention layer under `prefix` (the on-disk checkpoint names:
    /// `language_model.model.layers.{i}.`).
    pub fn state_dict(&self, prefix: &str) -> StateDict {
        let (h, d, i) = (self.hidden_size, self.head_dim(), self.intermediate_size);
        let mut t = StateDict::default();
        t.tensor("cross_attn_attn_gate", &[1]);
        t.tensor("cross_attn_mlp_gate", &[1]);
        t.linear("cross_attn.q_proj", self.heads * d, h, false);
        t.linear("cross_attn.k_proj", self.kv_heads * d, h, false);
        t.linear("cross_attn.v_proj", self.kv_heads * d, h, false);
        t.linear("cross_attn.o_proj", h, self.heads * d, false);
        t.norm("cross_attn.q_norm", d, false);
        t.norm("cross_attn.k_norm", d, false);
        t.norm("input_layernorm", h, false);
        t.linear("mlp.gate_proj", i, h, false);
        t.linear("mlp.up_proj", i, h, false);
        t.linear("mlp.down_proj", h, i, false);
        t.norm("post_attention_layernorm", h, false);
        t.prefixed(prefix)
    }
}

/// One `MllamaCrossAttentionDecoderLayer` with its weights on the GPU.
#[derive(Debug, Clone)]
pub struct MllamaCrossAttention {
    config: MllamaConfig,
    input_norm: Norm,
    q_proj: Linear,
    kv_proj: Linear,
    o_proj: Linear,
    qk_norms: Tensor,
    post_norm: Norm,
    gate_up: Linear,
    down: Linear,
    attn_gate: Tensor,
    mlp_gate: Tensor,
    activations: DType,
}

impl MllamaCrossAttention {
    /// Loads the layer under `prefix` (e.g. `language_model.model.layers.3.`). k and v are
    /// stacked into one GEMM, gate and up interleaved into one (SwiGLU epilogue).
    pub fn from_weights(gpu: &Gpu, weights: &Weights, prefix: &str, config: MllamaConfig) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        if config.heads == 0
            || config.kv_heads == 0
            || !h.is_multiple_of(config.heads)
            || !config.heads.is_multiple_of(config.kv_heads)
        {
            let problem = format!("{} heads, {} kv heads over {h}", config.heads, config.kv_heads);
            return Err(Error::Config { field: "num_attention_heads / num_key_value_heads".into(), problem });
        }
        let d = config.head_dim();
        let at = |name: &str| format!("{prefix}{name}");
        let rms = |name: &str, dim| Norm::load_rms(gpu, weights, &at(name), dim, RmsNorm::new(config.rms_norm_eps));
        let (q_norm, k_norm) = (at("cross_attn.q_norm.weight"), at("cross_attn.k_norm.weight"));
        let norms = [weights.f32(&q_norm, Some(&[d]))?, weights.f32(&k_norm, Some(&[d]))?].concat();
        let (gate, up) = (at("mlp.gate_proj.weight"), at("mlp.up_proj.weight"));
        for name in [&gate, &up] {
            let shape = weights.shape(name)?;
            if shape != [i, h] {
                return Err(Error::Weights {
                    name: name.clone(),
                    problem: format!("shape {shape:?}, expected [{i}, {h}]"),
                });
            }
        }
        let gate_up = weights.upload_arranged(gpu, &[&gate, &up], &[2 * i, h], |v| interleave_rows(&v[0], &v[1], h))?;
        let gate_value = |name: &str| Tensor::from_f32(gpu, &[1], &weights.f32(&at(name), Some(&[1]))?);
        let layer = Self {
            config,
            input_norm: rms("input_layernorm", h)?,
            q_proj: Linear::load(gpu, weights, &at("cross_attn.q_proj"), h, false)?,
            kv_proj: Linear::concat(gpu, weights, &[&at("cross_attn.k_proj"), &at("cross_attn.v_proj")], h, false)?,
            o_proj: Linear::load(gpu, weights, &at("cross_attn.o_proj"), config.heads * d, false)?,
            qk_norms: Tensor::from_f32(gpu, &[2, d], &norms)?,
            post_norm: rms("post_attention_layernorm", h)?,
            gate_up: Linear::from_tensors(NAME, gate_up, None)?,
            down: Linear::load(gpu, weights, &at("mlp.down_proj"), i, false)?,
            attn_gate: gate_value("cross_attn_attn_gate")?,
            mlp_gate: gate_value("cross_attn_mlp_gate")?,
            activations: DType::F32,
        };
        if layer.q_proj.out_features() != config.heads * d || layer.kv_proj.out_features() != 2 * config.kv_heads * d {
            let problem = format!(
                "q/k/v projections do not match {} heads and {} kv heads of {d}",
                config.heads, config.kv_heads
            );
            return Err(Error::Weights { name: at("cross_attn"), problem });
        }
        gpu.flush("uploading the cross-attention layer")?;
        Ok(layer)
    }

    /// Runs later plans with activations stored as `dtype` (f32 or f16; the masks stay f32).
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// Its config.
    pub fn config(&self) -> &MllamaConfig {
        &self.config
    }

    /// Plans the layer for `batch` sequences of `text` tokens over `vision` cross-attention
    /// states each (`n_images · n_tiles · tokens_per_tile`).
    /// Inputs `hidden_states` `[batch, text, hidden]`, `cross_attention_states` `[batch,
    /// vision, hidden]`, the additive `cross_attention_mask` `[batch, text, vision]` and
    /// `full_text_row_masked_out_mask` `[batch · text]` (as transformers builds them,
    /// [`cross_attention_masks`]); output `hidden_states`.
    pub fn plan(&self, gpu: &Gpu, batch: usize, text: usize, vision: usize) -> Result<ConnectorPlan> {
        ConnectorPlan::new(gpu, self.graph(batch, text, vision, false)?, &["hidden_states"])
    }

    /// The measured baseline's graph: the same layer with the naive three-pass attention that
    /// materialises the scores.
    pub fn baseline_graph(&self, batch: usize, text: usize, vision: usize) -> Result<Graph> {
        self.graph(batch, text, vision, true)
    }

    fn graph(&self, batch: usize, text: usize, vision: usize, naive: bool) -> Result<Graph> {
        let (h, c) = (self.config.hidden_size, &self.config);
        let d = c.head_dim() as u32;
        let mut g = Graph::new();
        let x = g.input_as("hidden_states", &[batch, text, h], self.activations)?;
        let states = g.input_as("cross_attention_states", &[batch, vision, h], self.activations)?;
        let mask = g.input("cross_attention_mask", &[batch, text, vision])?;
        let row_mask = g.input("full_text_row_masked_out_mask", &[batch * text])?;
        let (attn_gate, mlp_gate) = (g.constant("attn_gate", &self.attn_gate), g.constant("mlp_gate", &self.mlp_gate));

        let q = self.q_proj.add_normed(&mut g, "q_proj", &self.input_norm, x, None, Skip::None)?;
        let kv = self.kv_proj.add(&mut g, "kv_proj", states, None, Skip::None)?;
        let attention = Attention::new(c.heads as u32, d)
            .grouped(c.kv_heads as u32)
            .offsets(0, 0, c.kv_heads as u32 * d)
            .additive_mask()
            .qk_norm(c.rms_norm_eps);
        let norms = g.constant("qk_norms", &self.qk_norms);
        let attended = if naive {
            let scores = g.add(attention.naive(Pass::Scores), &[q, kv, mask, norms])?;
            let weights = g.add(attention.naive(Pass::Softmax), &[scores, mask])?;
            g.add(attention.naive(Pass::WeightedSum), &[weights, kv])?
        } else {
            g.add(attention, &[q, kv, mask, norms])?
        };
        let h1 = self.o_proj.add(&mut g, "o_proj", attended, None, Skip::Gated(x, attn_gate))?;
        let act = self.gate_up.add_normed_with(&mut g, "gate_up_proj", &self.post_norm, h1, Epilogue::SWIGLU, &[])?;
        let epilogue = Epilogue::NONE.with_residual(Residual::Gated).with_row_scale();
        let y = self.down.add_epilogue(&mut g, "down_proj", act, epilogue, &[h1, mlp_gate, row_mask])?;
        g.output(y)?;
        Ok(g)
    }
}

/// mllama's `multi_modal_projector` (`nn.Linear(vision_output_dim, hidden_size)` with bias)
/// and the reshape `MllamaModel` applies: `[batch, images, tiles, tokens, vision_output_dim]`
/// → `[batch · images · tiles, tokens, hidden]`.
#[derive(Debug, Clone)]
pub struct MllamaProjector {
    linear: Linear,
    activations: DType,
}

impl MllamaProjector {
    /// Loads `multi_modal_projector.{weight,bias}`.
    pub fn from_weights(gpu: &Gpu, weights: &Weights) -> Result<Self> {
        let name = "multi_modal_projector.weight";
        let shape = weights.shape(name)?;
        let [_, vision] = shape[..] else {
            return Err(Error::Weights { name: name.into(), problem: format!("shape {shape:?}, expected rank 2") });
        };
        let linear = Linear::load(gpu, weights, "multi_modal_projector", vision, true)?;
        gpu.flush("uploading the projector")?;
        Ok(Self { linear, activations: DType::F32 })
    }

    /// The tensors of a projector from `vision` (`vision_output_dim`) to `text` channels.
    pub fn state_dict(vision: usize, text: usize) -> StateDict {
        let mut t = StateDict::default();
        t.linear("multi_modal_projector", text, vision, true);
        t
    }

    /// Runs later plans with activations stored as `dtype`.
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// `[vision_output_dim, hidden]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.linear.in_features(), self.linear.out_features()]
    }

    /// Plans it for `vision_outputs` of `shape` (`[.., tokens, vision_output_dim]`).
    pub fn plan(&self, gpu: &Gpu, shape: &[usize]) -> Result<ConnectorPlan> {
        ConnectorPlan::new(gpu, self.graph(shape)?.0, &["cross_attention_states"])
    }

    /// Its graph for `vision_outputs` of `shape`: `[.., tokens, vision_output_dim]` in, the
    /// leading dims flattened, `[tiles, tokens, hidden]` out. Returns (graph, input, output).
    pub fn graph(&self, shape: &[usize]) -> Result<(Graph, TensorId, TensorId)> {
        let [vision, text] = self.dims();
        let [lead @ .., tokens, width] = shape else {
            return Err(Error::Input { name: "vision_outputs".into(), problem: format!("shape {shape:?}, rank < 2") });
        };
        if *width != vision {
            let problem = format!("shape {shape:?}, expected [.., tokens, {vision}]");
            return Err(Error::Input { name: "vision_outputs".into(), problem });
        }
        let mut g = Graph::new();
        let x = g.input_as("vision_outputs", &[lead.iter().product(), *tokens, vision], self.activations)?;
        let y = self.linear.add(&mut g, "multi_modal_projector", x, None, Skip::None)?;
        g.output(y)?;
        debug_assert_eq!(g.shape(y).map(|s| s[2]), Some(text));
        Ok((g, x, y))
    }
}

/// transformers' `_prepare_cross_attention_mask` from the int mask `[batch, text, images,
/// tiles]` (1 = the token sees that tile): the additive mask `[batch, text, images · tiles ·
/// tokens_per_tile]` (0 or `finfo(f32).min`, zeroed on rows that see nothing) and
/// `full_text_row_masked_out_mask` `[batch, text]` (1 where the row sees something).
pub fn cross_attention_masks(int_mask: &[i64], shape: [usize; 4], tokens_per_tile: usize) -> (Vec<f32>, Vec<f32>) {
    let [batch, text, images, tiles] = shape;
    let keys = images * tiles * tokens_per_tile;
    let (mut additive, mut rows) = (Vec::with_capacity(batch * text * keys), Vec::with_capacity(batch * text));
    for row in int_mask.chunks(images * tiles).take(batch * text) {
        let sees = row.iter().any(|&m| m != 0);
        rows.push(f32::from(u8::from(sees)));
        additive.extend(row.iter().flat_map(|&m| {
            let v = if m != 0 || !sees { 0.0 } else { f32::MIN };
            std::iter::repeat_n(v, tokens_per_tile)
        }));
    }
    (additive, rows)
}
