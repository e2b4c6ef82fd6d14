//! The pre-LN ViT with learned absolute positions: its weights by on-disk name for each
//! layout, and its graph.

use super::{TowerConfig, TowerKind, TowerNorm};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::nn::{Linear, Mlp, Norm};
use crate::ops::{Attention, Epilogue, LayerNorm, PatchEmbed, Residual, RmsNorm};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// What a model reads of its tower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TowerSelect {
    /// `hidden_states[i]` for each `i` (0: the input of layer 0, after any pre-norm; `k`: the
    /// output of layer `k`), in this order; layers past the largest are never loaded.
    Hidden(Vec<usize>),
    /// `last_hidden_state` after `post_layernorm` (SigLIP for Gemma 3 and Idefics3, BLIP-2).
    PostNormed,
}

#[derive(Debug, Clone)]
struct Layer {
    norm1: Norm,
    /// Q, K and V stacked into one `[3C, C]` projection.
    qkv: Linear,
    out: Linear,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
    /// InternViT's `lambda_1`, `lambda_2`.
    scale: Option<[Tensor; 2]>,
}

/// A ViT with its weights on the GPU, up to the last layer its model reads.
#[derive(Debug, Clone)]
pub struct VisionTower {
    config: TowerConfig,
    select: TowerSelect,
    /// The Conv2d weight `[C, 3·p²]`, stored dtype.
    patch_weight: Tensor,
    patch_bias: Option<Tensor>,
    class_token: Option<Tensor>,
    /// `[positions, C]`.
    positions: Tensor,
    pre_norm: Option<Norm>,
    layers: Vec<Layer>,
    post_norm: Option<Norm>,
    activations: DType,
}

/// The on-disk names of one layout, relative to the tower's prefix.
pub(super) struct Names {
    pub(super) class_token: Option<&'static str>,
    pub(super) patch: &'static str,
    pub(super) positions: &'static str,
    pub(super) layer: &'static str,
    pub(super) norm1: &'static str,
    pub(super) norm2: &'static str,
    pub(super) out: &'static str,
}

/// The names of `kind`'s tensors.
pub(super) fn names(kind: TowerKind) -> Names {
    Names::of(kind)
}

impl Names {
    fn of(kind: TowerKind) -> Self {
        let vit = Names {
            class_token: Some("embeddings.class_embedding"),
            patch: "embeddings.patch_embedding",
            positions: "embeddings.position_embedding.weight",
            layer: "encoder.layers",
            norm1: "layer_norm1",
            norm2: "layer_norm2",
            out: "self_attn.out_proj",
        };
        match kind {
            TowerKind::Clip => vit,
            TowerKind::Siglip => Names { class_token: None, ..vit },
            TowerKind::Blip2 => {
                Names { positions: "embeddings.position_embedding", out: "self_attn.projection", ..vit }
            }
            TowerKind::InternVit => Names {
                class_token: Some("embeddings.cls_token"),
                patch: "embeddings.patch_embeddings.projection",
                positions: "embeddings.position_embeddings",
                layer: "encoder.layer",
                norm1: "layernorm_before",
                norm2: "layernorm_after",
                out: "attention.projection_layer",
            },
        }
    }
}

impl VisionTower {
    /// The first tensor every checkpoint of `kind` holds (whether a checkpoint has a tower).
    pub fn probe(kind: TowerKind) -> String {
        format!("{}.weight", Names::of(kind).patch)
    }

    /// Loads the tower from `weights` (names relative to its prefix, e.g. `vision_tower.`):
    /// the embeddings, the layers `select` needs, and the norms it reads. GEMM weights keep
    /// their stored dtype.
    pub fn from_weights(gpu: &Gpu, weights: &Weights, config: TowerConfig, select: TowerSelect) -> Result<Self> {
        let names = Names::of(config.kind);
        let (c, p) = (config.hidden, config.patch);
        let k = 3 * p * p;
        let patch_name = format!("{}.weight", names.patch);
        let stored = weights.shape(&patch_name)?;
        if stored != [c, 3, p, p] {
            return Err(Error::Weights {
                name: patch_name,
                problem: format!(
                    "shape {stored:?}, expected [{c}, 3, {p}, {p}] (vision_config hidden_size, patch_size)"
                ),
            });
        }
        let patch_weight = weights.upload_rows(gpu, &[&patch_name], &[c, k])?;
        let vector = |name: &str| -> Result<Tensor> {
            let v = weights.f32(name, None)?;
            if v.len() != c {
                let problem = format!("{} elements, expected {c} (vision_config.hidden_size)", v.len());
                return Err(Error::Weights { name: name.into(), problem });
            }
            Tensor::from_f32(gpu, &[c], &v)
        };
        let patch_bias = match config.kind {
            TowerKind::Clip => None,
            _ => Some(vector(&format!("{}.bias", names.patch))?),
        };
        let class_token = names.class_token.map(&vector).transpose()?;
        let positions = weights.f32(names.positions, None)?;
        let tokens = config.tokens();
        if positions.len() != tokens * c {
            let problem = format!(
                "{} elements, expected {tokens} positions x {c} (image_size {} / patch_size {p}{})",
                positions.len(),
                config.image_size,
                if config.kind.class_token() { " + the class token" } else { "" }
            );
            return Err(Error::Weights { name: names.positions.into(), problem });
        }
        let positions = Tensor::from_f32(gpu, &[tokens, c], &positions)?;
        let norm = |prefix: &str| match config.norm {
            TowerNorm::Layer => Norm::load(gpu, weights, prefix, c, config.eps),
            TowerNorm::Rms => Norm::load_rms(gpu, weights, prefix, c, RmsNorm::new(config.eps)),
        };
        let pre_norm = (config.kind == TowerKind::Clip).then(|| norm("pre_layrnorm")).transpose()?;
        let depth = match &select {
            TowerSelect::Hidden(indices) => indices.iter().copied().max().unwrap_or(0),
            TowerSelect::PostNormed => config.layers,
        };
        if depth > config.layers {
            return Err(Error::Config {
                field: "vision_feature_layer".into(),
                problem: format!("hidden state {depth} of a {}-layer tower", config.layers),
            });
        }
        let layers = (0..depth).map(|i| load_layer(gpu, weights, &config, &names, i)).collect::<Result<Vec<_>>>()?;
        let post_norm = (select == TowerSelect::PostNormed).then(|| norm("post_layernorm")).transpose()?;
        gpu.flush("uploading vision tower weights")?;
        let tower = Self {
            config,
            select,
            patch_weight,
            patch_bias,
            class_token,
            positions,
            pre_norm,
            layers,
            post_norm,
            activations: DType::F32,
        };
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
    pub fn config(&self) -> &TowerConfig {
        &self.config
    }

    /// What it outputs.
    pub fn select(&self) -> &TowerSelect {
        &self.select
    }

    /// Layers on the GPU (those before the last one read).
    pub fn layers_loaded(&self) -> usize {
        self.layers.len()
    }

    /// The patch embedding of `pixels` `[slabs, 3, H, W]` for the slabs `images` lists, with
    /// `position_ids` `[images, patches]` in place of each token's own position when given.
    fn embed(
        &self,
        gpu: &Gpu,
        g: &mut Graph,
        pixels: TensorId,
        images: &[u32],
        position_ids: Option<&[u32]>,
    ) -> Result<TensorId> {
        let op = PatchEmbed {
            patch: self.config.patch,
            bias: self.patch_bias.is_some(),
            class_token: self.class_token.is_some(),
            position_ids: position_ids.is_some(),
        };
        let table = Tensor::from_data(gpu, &[images.len()], DType::U32, images.into())?;
        let mut inputs = vec![
            pixels,
            g.constant("embeddings.patch.weight", &self.patch_weight),
            g.constant("embeddings.images", &table),
            g.constant("embeddings.positions", &self.positions),
        ];
        if let Some(b) = &self.patch_bias {
            inputs.push(g.constant("embeddings.patch.bias", b));
        }
        if let Some(t) = &self.class_token {
            inputs.push(g.constant("embeddings.class_token", t));
        }
        if let Some(ids) = position_ids {
            let patches = ids.len() / images.len().max(1);
            let ids = Tensor::from_data(gpu, &[images.len(), patches], DType::U32, ids.into())?;
            inputs.push(g.constant("embeddings.position_ids", &ids));
        }
        g.add(op, &inputs)
    }

    /// Adds the tower over the slabs `images` of `pixels` `[slabs, 3, H, W]` (an input of
    /// `g` in [`VisionTower::activations`]) and returns what its [`TowerSelect`] names, in
    /// order: each `[images, tokens, C]`. Idefics3's padded patches come as `key_mask`
    /// `[images, patches]` (1 = real: padded patches are never attended as keys) and their
    /// bucketed `position_ids` `[images, patches]`.
    pub fn add_to(
        &self,
        gpu: &Gpu,
        g: &mut Graph,
        pixels: TensorId,
        images: &[u32],
        position_ids: Option<&[u32]>,
        key_mask: Option<&[u8]>,
    ) -> Result<Vec<TensorId>> {
        let c = self.config.hidden;
        let heads = self.config.heads as u32;
        let d = (c / self.config.heads) as u32;
        let mut h = self.embed(gpu, g, pixels, images, position_ids)?;
        if let Some(norm) = &self.pre_norm {
            h = norm.add(g, "pre_layrnorm", h)?;
        }
        let mut attention = Attention::new(heads, d).offsets(0, c as u32, 2 * c as u32);
        let mask = match key_mask {
            Some(mask) => {
                attention = attention.key_mask();
                let tokens = mask.len() / images.len().max(1);
                let t = Tensor::from_data(gpu, &[images.len(), tokens], DType::U8, mask.into())?;
                Some(g.constant("encoder.key_mask", &t))
            }
            None => None,
        };
        let mut hidden = vec![h];
        let last = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layer.{i}");
            let qkv = layer.qkv.add_normed(g, &format!("{name}.qkv"), &layer.norm1, h, None, crate::nn::Skip::None)?;
            let sources: Vec<TensorId> = [qkv, qkv].into_iter().chain(mask).collect();
            let post = if i + 1 == last { self.post_norm.as_ref() } else { None };
            h = match &layer.scale {
                None => {
                    let out = format!("{name}.out");
                    h = layer.out.add_after_attention(g, &out, attention, &sources, Some(h), None)?;
                    let mlp = Mlp {
                        norm: Some(&layer.norm2),
                        up: &layer.fc1,
                        activation: Some(self.config.act),
                        down: &layer.fc2,
                    };
                    mlp.add_named(g, [&format!("{name}.fc1"), &format!("{name}.fc2")], h, post)?
                }
                Some([lambda1, lambda2]) => {
                    // x + λ ⊙ branch(x): the layer scale in the residual epilogue.
                    let scaled = Epilogue::NONE.with_residual(Residual::Scaled);
                    let attended = g.add(attention, &sources)?;
                    let l1 = g.constant(&format!("{name}.lambda_1"), lambda1);
                    h = layer.out.add_epilogue(g, &format!("{name}.out"), attended, scaled, &[h, l1])?;
                    let up = layer.fc1.add_normed(
                        g,
                        &format!("{name}.fc1"),
                        &layer.norm2,
                        h,
                        Some(self.config.act),
                        crate::nn::Skip::None,
                    )?;
                    let l2 = g.constant(&format!("{name}.lambda_2"), lambda2);
                    let out = layer.fc2.add_epilogue(g, &format!("{name}.fc2"), up, scaled, &[h, l2])?;
                    match post {
                        Some(norm) => norm.add(g, "post_layernorm", out)?,
                        None => out,
                    }
                }
            };
            hidden.push(h);
        }
        Ok(match &self.select {
            TowerSelect::Hidden(indices) => indices.iter().map(|&i| hidden[i]).collect(),
            TowerSelect::PostNormed => vec![h],
        })
    }
}

fn load_layer(gpu: &Gpu, weights: &Weights, config: &TowerConfig, names: &Names, i: usize) -> Result<Layer> {
    let c = config.hidden;
    let p = format!("{}.{i}", names.layer);
    let norm = |leaf: &str| {
        let prefix = format!("{p}.{leaf}");
        match config.norm {
            TowerNorm::Layer => Norm::load_layer(gpu, weights, &prefix, c, LayerNorm::new(config.eps)),
            TowerNorm::Rms => Norm::load_rms(gpu, weights, &prefix, c, RmsNorm::new(config.eps)),
        }
    };
    let qkv = match config.kind {
        TowerKind::Blip2 => blip2_qkv(gpu, weights, &format!("{p}.self_attn"), c)?,
        TowerKind::InternVit => {
            let a = format!("{p}.attention");
            let bias = weights.contains(&format!("{a}.q_proj.bias"));
            let parts = ["q_proj", "k_proj", "v_proj"].map(|x| format!("{a}.{x}"));
            Linear::concat(gpu, weights, &parts.each_ref().map(String::as_str), c, bias)?
        }
        _ => {
            let parts = ["q_proj", "k_proj", "v_proj"].map(|x| format!("{p}.self_attn.{x}"));
            Linear::concat(gpu, weights, &parts.each_ref().map(String::as_str), c, true)?
        }
    };
    let fc1 = Linear::load(gpu, weights, &format!("{p}.mlp.fc1"), c, true)?;
    let scale = if config.kind == TowerKind::InternVit {
        let lambda = |leaf: &str| -> Result<Tensor> {
            let name = format!("{p}.{leaf}");
            Tensor::from_f32(gpu, &[c], &weights.f32(&name, Some(&[c]))?)
        };
        Some([lambda("lambda_1")?, lambda("lambda_2")?])
    } else {
        None
    };
    Ok(Layer {
        norm1: norm(names.norm1)?,
        qkv,
        out: Linear::load(gpu, weights, &format!("{p}.{}", names.out), c, true)?,
        norm2: norm(names.norm2)?,
        fc2: Linear::load(gpu, weights, &format!("{p}.mlp.fc2"), fc1.out_features(), true)?,
        fc1,
        scale,
    })
}

/// BLIP-2's fused `qkv` `[3C, C]`: its bias is stored whole (`qkv.bias`, transformers 5), or
/// as `q_bias` and `v_bias` with the key's bias zero (the original EVA checkpoints).
fn blip2_qkv(gpu: &Gpu, weights: &Weights, prefix: &str, c: usize) -> Result<Linear> {
    let name = format!("{prefix}.qkv");
    if weights.contains(&format!("{name}.bias")) {
        return Linear::load(gpu, weights, &name, c, true);
    }
    let weight = Linear::load(gpu, weights, &name, c, false)?;
    let q = weights.f32(&format!("{prefix}.q_bias"), Some(&[c]))?;
    let v = weights.f32(&format!("{prefix}.v_bias"), Some(&[c]))?;
    let bias: Vec<f32> = q.into_iter().chain(std::iter::repeat_n(0.0, c)).chain(v).collect();
    Linear::from_tensors("blip2_vision", weight.weight, Some(Tensor::from_f32(gpu, &[3 * c], &bias)?))
}
