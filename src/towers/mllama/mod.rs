//! Llama 3.2 Vision's tiled tower (`MllamaVisionModel`) and its `multi_modal_projector`: each
//! image cut into up to `max_num_tiles` tiles by the processor, one aspect ratio per image.
//!
//! The graph, per batch of images:
//! - every tile's patches (and a zero row for its class token) as rows of `C_in·P·P` values,
//!   cut on the host, so the patch conv is one GEMM; its residual epilogue adds each token's
//!   class token, gated position and pre-tile embedding, summed on the host at load for each
//!   aspect ratio;
//! - `layernorm_pre`, then each tile padded to a multiple of 8 tokens with zeros by a row gather;
//! - the local layers over all tiles of an image, padding masked only against padding;
//! - `layernorm_post`, the gated post-tile embedding over each tile's tokens, the global layers
//!   with tanh-gated residuals;
//! - the projector over the final and `intermediate_layers_indices` hidden states: one GEMM
//!   per state, each adding into the last, with the weight's columns for that state taken at
//!   load from upstream's interleaved stack, so the 7680-wide concatenation is never stored
//!   (at 4 tiles in f32 it would pass a 128 MiB binding); then the padding dropped.

mod config;

pub use config::{MllamaLayout, MllamaVisionConfig};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Mlp, Norm, Skip};
use crate::ops::{AddRows, Attention, Concat, GeluForm, ZERO_ROW};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// A layer of the local or global transformer: `x += attn(norm1 x)`, `x += mlp(norm2 x)`, each
/// branch times `tanh(gate)` in the global layers.
#[derive(Debug, Clone)]
struct TileLayer {
    norm1: Norm,
    /// Q, K and V stacked `[3C, C]`, no bias.
    qkv: Linear,
    out: Linear,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
    /// `gate_attn`, `gate_ffn` `[1]` (global layers).
    gates: Option<[Tensor; 2]>,
}

impl TileLayer {
    fn load(gpu: &Gpu, weights: &Weights, config: &MllamaVisionConfig, prefix: &str) -> Result<Self> {
        let c = config.hidden;
        let at = |leaf: &str| format!("{prefix}.{leaf}");
        let qkv = ["q_proj", "k_proj", "v_proj"].map(|x| at(&format!("self_attn.{x}")));
        let gate = |leaf: &str| Tensor::from_f32(gpu, &[1], &weights.f32(&at(leaf), Some(&[1]))?);
        let gated = weights.contains(&at("gate_attn"));
        let fc1 = Linear::load(gpu, weights, &at("mlp.fc1"), c, true)?;
        Ok(Self {
            norm1: Norm::load(gpu, weights, &at("input_layernorm"), c, config.eps)?,
            qkv: Linear::concat(gpu, weights, &qkv.each_ref().map(String::as_str), c, false)?,
            out: Linear::load(gpu, weights, &at("self_attn.o_proj"), c, false)?,
            norm2: Norm::load(gpu, weights, &at("post_attention_layernorm"), c, config.eps)?,
            fc2: Linear::load(gpu, weights, &at("mlp.fc2"), fc1.out_features(), true)?,
            fc1,
            gates: gated.then(|| Ok::<_, Error>([gate("gate_attn")?, gate("gate_ffn")?])).transpose()?,
        })
    }

    fn add(
        &self,
        g: &mut Graph,
        name: &str,
        h: TensorId,
        (attention, padding): (Attention, TensorId),
        act: GeluForm,
    ) -> Result<TensorId> {
        let qkv = self.qkv.add_normed(g, &format!("{name}.qkv"), &self.norm1, h, None, Skip::None)?;
        let sources = [qkv, qkv, padding];
        let Some([gate_attn, gate_ffn]) = &self.gates else {
            let h = self.out.add_after_attention(g, &format!("{name}.out"), attention, &sources, Some(h), None)?;
            let mlp = Mlp { norm: Some(&self.norm2), up: &self.fc1, activation: Some(act), down: &self.fc2 };
            return mlp.add_named(g, [&format!("{name}.fc1"), &format!("{name}.fc2")], h, None);
        };
        let attended = g.add(attention, &sources)?;
        let gate = g.constant(&format!("{name}.gate_attn"), gate_attn);
        let h = self.out.add(g, &format!("{name}.out"), attended, None, Skip::Gated(h, gate))?;
        let up = self.fc1.add_normed(g, &format!("{name}.fc1"), &self.norm2, h, Some(act), Skip::None)?;
        let gate = g.constant(&format!("{name}.gate_ffn"), gate_ffn);
        self.fc2.add(g, &format!("{name}.fc2"), up, None, Skip::Gated(h, gate))
    }
}

/// Mllama's tower and projector with their weights on the GPU, and the embedding tables each
/// batch's aspect ratios pick from on the host.
#[derive(Debug, Clone)]
pub struct MllamaTower {
    config: MllamaVisionConfig,
    /// The patch conv as `[C, C_in·P·P]`, no bias.
    patch: Linear,
    /// For each aspect ratio id, `[tiles · tokens, C]`: the class token (on each tile's first
    /// token) or the gated pre-tile embedding, plus the gated position and tile position.
    embeddings: Vec<Vec<f32>>,
    /// For each aspect ratio id, `[tiles, C]`: `tanh(gate) ·` the post-tile embedding.
    post_tile: Vec<Vec<f32>>,
    layernorm_pre: Norm,
    layernorm_post: Norm,
    local: Vec<TileLayer>,
    global: Vec<TileLayer>,
    /// `multi_modal_projector` split by the state it reads: the final hidden state's columns
    /// (with the bias), then each intermediate layer's.
    projector: Vec<Linear>,
    activations: DType,
}

impl MllamaTower {
    /// The first tensor every checkpoint of the tower holds (under `vision_model.`).
    pub const PROBE: &'static str = "patch_embedding.weight";

    /// Loads the tower from `tower` (names under `vision_model.`) and the projector from
    /// `projector` (names under `multi_modal_projector.`). GEMM weights keep their stored dtype.
    pub fn from_weights(gpu: &Gpu, tower: &Weights, projector: &Weights, config: MllamaVisionConfig) -> Result<Self> {
        let (c, p, ch) = (config.hidden, config.patch, config.channels);
        let stored = tower.shape(Self::PROBE)?;
        if stored != [c, ch, p, p] {
            let problem = format!(
                "shape {stored:?}, expected [{c}, {ch}, {p}, {p}] (vision_config hidden_size, num_channels, patch_size)"
            );
            return Err(Error::Weights { name: Self::PROBE.into(), problem });
        }
        let patch = tower.upload_rows(gpu, &[Self::PROBE], &[c, config.row_width()])?;
        let patch = Linear::from_tensors("mllama_vision", patch, None)?;
        let [embeddings, post_tile] = embedding_tables(tower, &config)?;
        let stack = |name: &str, layers: usize| {
            (0..layers)
                .map(|i| TileLayer::load(gpu, tower, &config, &format!("{name}.layers.{i}")))
                .collect::<Result<Vec<_>>>()
        };
        let (local, global) =
            (stack("transformer", config.layers)?, stack("global_transformer", config.global_layers)?);
        if let Some(i) = global.iter().position(|l| l.gates.is_none()) {
            let name = format!("global_transformer.layers.{i}.gate_attn");
            return Err(Error::Weights { name, problem: "missing: the global layers are gated".into() });
        }
        let projector = load_projector(gpu, projector, &config)?;
        let tower = Self {
            layernorm_pre: Norm::load(gpu, tower, "layernorm_pre", c, config.eps)?,
            layernorm_post: Norm::load(gpu, tower, "layernorm_post", c, config.eps)?,
            config,
            patch,
            embeddings,
            post_tile,
            local,
            global,
            projector,
            activations: DType::F32,
        };
        gpu.flush("uploading vision tower weights")?;
        Ok(tower)
    }

    /// Builds later graphs with activations stored as `dtype` (f32, the default, or f16).
    pub fn with_activations(mut self, dtype: DType) -> Self {
        self.activations = dtype;
        self
    }

    /// Activations' storage type.
    pub fn activations(&self) -> DType {
        self.activations
    }

    /// Its configuration.
    pub fn config(&self) -> &MllamaVisionConfig {
        &self.config
    }

    /// The projector's output channels (the text model's width).
    pub fn text_width(&self) -> usize {
        self.projector[0].out_features()
    }

    /// Each patch row's embedding for `layout`, `[1, tokens, C]`: what the patch GEMM adds.
    pub fn token_embeddings(&self, layout: &MllamaLayout) -> Vec<f32> {
        layout.aspect_ratio_ids.iter().flat_map(|&id| self.embeddings[id].iter().copied()).collect()
    }

    /// Adds the tower and the projector on `rows` `[1, tokens, C_in·P·P]` and `embeddings`
    /// `[1, tokens, C]` (inputs of `g` in [`MllamaTower::activations`], holding `layout`'s rows
    /// and [`MllamaTower::token_embeddings`]) and returns `cross_attention_states`
    /// `[images · tiles, tokens per tile, text]`.
    pub fn add_to(
        &self,
        gpu: &Gpu,
        g: &mut Graph,
        (rows, embeddings): (TensorId, TensorId),
        layout: &MllamaLayout,
    ) -> Result<TensorId> {
        let config = &self.config;
        let (c, tiles, tokens, padded) = (config.hidden, config.max_tiles, config.tokens(), config.padded_tokens());
        let images = layout.images;
        // Each tile's tokens then zeros up to `padded`, and where they come from.
        let slot = |n: usize| (n % padded < tokens).then_some((n / padded) * tokens + n % padded);
        let pad_index: Vec<u32> =
            (0..images * tiles * padded).map(|n| slot(n).map_or(ZERO_ROW, |r| r as u32)).collect();
        let pad_index = constant(gpu, g, "embeddings.pad_index", &[images, tiles * padded], DType::U32, &pad_index)?;
        let real: Vec<u8> = (0..images * tiles * padded)
            .map(|n| u8::from(layout.tile_mask[n / padded] && n % padded < tokens))
            .collect();
        let real = constant(gpu, g, "transformer.padding", &[images, tiles * padded], DType::U8, &real)?;
        let heads = config.heads as u32;
        let d = (c / config.heads) as u32;
        let attention = (Attention::new(heads, d).offsets(0, c as u32, 2 * c as u32).pad_pairs(), real);

        let embedded = self.patch.add(g, "patch_embedding", rows, None, Skip::Add(embeddings))?;
        let normed = self.layernorm_pre.add(g, "layernorm_pre", embedded)?;
        let mut h = g.add(Concat::Gather { cols: c }, &[normed, pad_index])?;
        // Each local layer's output: transformers records `hidden_states` at the layers' outputs.
        let mut hidden = Vec::with_capacity(self.local.len());
        for (i, layer) in self.local.iter().enumerate() {
            h = layer.add(g, &format!("transformer.layers.{i}"), h, attention, config.act)?;
            hidden.push(h);
        }
        h = self.layernorm_post.add(g, "layernorm_post", h)?;
        let post: Vec<f32> =
            layout.aspect_ratio_ids.iter().flat_map(|&id| self.post_tile[id].iter().copied()).collect();
        let post = g.constant("post_tile_positional_embedding", &Tensor::from_f32(gpu, &[images * tiles, c], &post)?);
        h = g.add(AddRows { group: padded }, &[h, post])?;
        for (i, layer) in self.global.iter().enumerate() {
            h = layer.add(g, &format!("global_transformer.layers.{i}"), h, attention, config.act)?;
        }
        let mut projected = self.projector[0].add(g, "multi_modal_projector.final", h, None, Skip::None)?;
        for (k, (&i, part)) in config.intermediate_indices.iter().zip(&self.projector[1..]).enumerate() {
            let name = format!("multi_modal_projector.intermediate.{k}");
            projected = part.add(g, &name, hidden[i], None, Skip::Add(projected))?;
        }
        let unpad: Vec<u32> =
            (0..images * tiles * tokens).map(|n| ((n / tokens) * padded + n % tokens) as u32).collect();
        let unpad = constant(gpu, g, "multi_modal_projector.unpad", &[images * tiles, tokens], DType::U32, &unpad)?;
        g.add(Concat::Gather { cols: self.text_width() }, &[projected, unpad])
    }
}

/// `data` (u32 or u8) as a graph constant of `shape`.
fn constant<'a>(
    gpu: &Gpu,
    g: &mut Graph,
    name: &str,
    shape: &[usize],
    dtype: DType,
    data: impl Into<crate::dtype::HostData<'a>>,
) -> Result<TensorId> {
    Ok(g.constant(name, &Tensor::from_data(gpu, shape, dtype, data.into())?))
}

/// For each aspect ratio id, every token's additive embedding `[tiles · tokens, C]` and the
/// gated post-tile rows `[tiles, C]`, in f32 from the stored weights.
fn embedding_tables(weights: &Weights, config: &MllamaVisionConfig) -> Result<[Vec<Vec<f32>>; 2]> {
    let (c, tiles, tokens, ids) = (config.hidden, config.max_tiles, config.tokens(), config.aspect_ratio_ids());
    let gate = |name: &str| -> Result<f32> { Ok(weights.f32(name, Some(&[1]))?[0].tanh()) };
    let class = weights.f32("class_embedding", Some(&[c]))?;
    let positions = weights.f32("gated_positional_embedding.embedding", Some(&[tokens, c]))?;
    let tile_positions =
        weights.f32("gated_positional_embedding.tile_embedding.weight", Some(&[ids, tiles * tokens * c]))?;
    let pre = weights.f32("pre_tile_positional_embedding.embedding.weight", Some(&[ids, tiles * c]))?;
    let post = weights.f32("post_tile_positional_embedding.embedding.weight", Some(&[ids, tiles * c]))?;
    let g_pos = gate("gated_positional_embedding.gate")?;
    let g_pre = gate("pre_tile_positional_embedding.gate")?;
    let g_post = gate("post_tile_positional_embedding.gate")?;
    let embeddings = (0..ids)
        .map(|id| {
            let mut e = Vec::with_capacity(tiles * tokens * c);
            for t in 0..tiles {
                for n in 0..tokens {
                    let tile_pos = &tile_positions[((id * tiles + t) * tokens + n) * c..][..c];
                    let first = if n == 0 {
                        class.clone()
                    } else {
                        pre[(id * tiles + t) * c..][..c].iter().map(|v| g_pre * v).collect()
                    };
                    let pos = &positions[n * c..][..c];
                    e.extend((0..c).map(|k| first[k] + (1.0 - g_pos) * pos[k] + g_pos * tile_pos[k]));
                }
            }
            e
        })
        .collect();
    let post_tile = post.chunks(tiles * c).map(|row| row.iter().map(|v| g_post * v).collect()).collect();
    Ok([embeddings, post_tile])
}

/// `multi_modal_projector` `[D, C·(1 + K)]` as `1 + K` projections `[D, C]`: the final hidden
/// state's channel c is upstream's column c, intermediate k's channel c its column C + c·K + k
/// (`torch.stack(.., dim=-1)` then `cat`). The bias goes with the first.
fn load_projector(gpu: &Gpu, weights: &Weights, config: &MllamaVisionConfig) -> Result<Vec<Linear>> {
    let (c, k, width) = (config.hidden, config.intermediate_indices.len(), config.output_width());
    let name = "multi_modal_projector.weight";
    let shape = weights.shape(name)?;
    let [text, w] = shape[..] else {
        return Err(Error::Weights { name: name.into(), problem: format!("shape {shape:?}, expected rank 2") });
    };
    if w != width {
        let problem = format!("shape {shape:?}, expected [text, {width}] (vision_config.vision_output_dim)");
        return Err(Error::Weights { name: name.into(), problem });
    }
    // Part p's channel ch is upstream column column(p, ch).
    let column = |p: usize, ch: usize| if p == 0 { ch } else { c + ch * k + p - 1 };
    let bias = weights.f32("multi_modal_projector.bias", Some(&[text]))?;
    let mut bias = Some(Tensor::from_f32(gpu, &[text], &bias)?);
    (0..=k)
        .map(|p| {
            let weight = weights.upload_arranged(gpu, &[name], &[text, c], |v| {
                v[0].chunks(width).flat_map(|row| (0..c).map(move |ch| row[column(p, ch)])).collect()
            })?;
            Linear::from_tensors("mllama_projector", weight, bias.take())
        })
        .collect()
}
