//! Vision towers as graphs: first the ViTs with learned absolute positions (CLIP, SigLIP, BLIP-2's
//! EVA layout, InternViT), loaded by their on-disk names from the checkpoint's own
//! `vision_config`, built up to the last layer a model reads and no further.
//!
//! A tower adds its nodes to a model's graph ([`VisionTower::add_to`]): the patch embedding
//! (one GEMM reading patches in place, class token and positions in its epilogue), an optional
//! pre-norm, pre-LN layers of three fused dispatches each (QKV with its input norm, attention
//! with output projection and residual, the MLP with its residual), and the hidden states the
//! model selects.
//!
//! The rotary towers at native resolution are [`QwenTower`] (Qwen2-VL, Qwen2.5-VL: processor
//! rows in, window attention) and [`PixtralTower`] (Mistral 3: padded images of their own
//! sizes): patch rows through one GEMM, 2D rotary positions, block-diagonal attention.
//!
//! [`MllamaTower`] is Llama 3.2 Vision's: tiles with gated position and tile embeddings, padded
//! tokens masked pad-to-pad, local then gated global layers, intermediate layers concatenated
//! for the projector.

mod mllama;
mod pixtral;
mod qwen;
mod rotary;
mod vit;

pub use mllama::{MllamaLayout, MllamaTower, MllamaVisionConfig};
pub use pixtral::{PixtralConfig, PixtralLayout, PixtralTower};
pub use qwen::{GridThw, QwenConfig, QwenKind, QwenLayout, QwenTower};
pub use vit::{TowerSelect, VisionTower};

use crate::connectors::StateDict;
use crate::error::{Error, Result};
use crate::ops::GeluForm;

/// The tower layouts served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TowerKind {
    /// `CLIPVisionModel`: class token, `pre_layrnorm`, quick_gelu, no patch bias.
    Clip,
    /// `SiglipVisionModel` (and Idefics3's / SmolVLM's copy): patch bias, no class token,
    /// `post_layernorm`.
    Siglip,
    /// `Blip2VisionModel`: class token, patch bias, one fused `qkv`, `post_layernorm`.
    Blip2,
    /// `InternVLVisionModel`: class token, patch bias, layer scale, LayerNorm or RMSNorm.
    InternVit,
}

impl TowerKind {
    /// The upstream class.
    pub fn upstream(self) -> &'static str {
        match self {
            TowerKind::Clip => "CLIPVisionModel",
            TowerKind::Siglip => "SiglipVisionModel",
            TowerKind::Blip2 => "Blip2VisionModel",
            TowerKind::InternVit => "InternVLVisionModel",
        }
    }

    /// Whether it prepends a class token.
    pub fn class_token(self) -> bool {
        !matches!(self, TowerKind::Siglip)
    }
}

/// The norm a tower's layers use (InternViT's `norm_type`; LayerNorm elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TowerNorm {
    /// `nn.LayerNorm`.
    Layer,
    /// RMSNorm.
    Rms,
}

/// A ViT's hyper-parameters, from its `vision_config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TowerConfig {
    /// The layout.
    pub kind: TowerKind,
    /// `hidden_size`.
    pub hidden: usize,
    /// `intermediate_size`.
    pub intermediate: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `image_size` in pixels (square).
    pub image_size: usize,
    /// `patch_size` in pixels.
    pub patch: usize,
    /// `hidden_act`.
    pub act: GeluForm,
    /// `layer_norm_eps`.
    pub eps: f32,
    /// `norm_type` (InternViT).
    pub norm: TowerNorm,
}

impl TowerConfig {
    /// Reads a resolved `vision_config` (every field filled with transformers' defaults).
    /// `field` names it in errors (`vision_config`).
    pub fn from_json(kind: TowerKind, field: &str, v: &serde_json::Value) -> Result<Self> {
        let config_error = |key: &str, problem: String| Error::Config { field: format!("{field}.{key}"), problem };
        let size = |key: &str| -> Result<usize> {
            let value = &v[key];
            let n = value.as_u64().or_else(|| value.as_array().and_then(|a| a.first()).and_then(|x| x.as_u64()));
            match n {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(config_error(key, format!("{value} (a positive integer)"))),
            }
        };
        let act_name = v["hidden_act"].as_str().ok_or_else(|| config_error("hidden_act", "missing".into()))?;
        let act = GeluForm::from_hf(&format!("{field}.hidden_act"), act_name)?;
        let norm = match v["norm_type"].as_str() {
            None | Some("layer_norm") => TowerNorm::Layer,
            Some("rms_norm") => TowerNorm::Rms,
            Some(other) => {
                return Err(config_error("norm_type", format!("unsupported `{other}` (layer_norm, rms_norm)")));
            }
        };
        if kind == TowerKind::InternVit {
            if v["use_qk_norm"].as_bool() == Some(true) {
                return Err(config_error("use_qk_norm", "true is not supported (InternViT-6B's q/k norm)".into()));
            }
            if v["use_absolute_position_embeddings"].as_bool() == Some(false) {
                let problem = "false (relative position bias) is not supported".into();
                return Err(config_error("use_absolute_position_embeddings", problem));
            }
        }
        let eps = v["layer_norm_eps"].as_f64().ok_or_else(|| config_error("layer_norm_eps", "missing".into()))?;
        let config = Self {
            kind,
            hidden: size("hidden_size")?,
            intermediate: size("intermediate_size")?,
            layers: size("num_hidden_layers")?,
            heads: size("num_attention_heads")?,
            image_size: size("image_size")?,
            patch: size("patch_size")?,
            act,
            eps: eps as f32,
            norm,
        };
        if !config.hidden.is_multiple_of(config.heads) {
            let problem = format!("{} heads do not divide hidden_size {}", config.heads, config.hidden);
            return Err(config_error("num_attention_heads", problem));
        }
        if config.image_size < config.patch {
            return Err(config_error("image_size", format!("{} is smaller than one patch", config.image_size)));
        }
        Ok(config)
    }

    /// Patches per side.
    pub fn side(&self) -> usize {
        self.image_size / self.patch
    }

    /// Tokens per image: the class token (where the tower has one) and the patches.
    pub fn tokens(&self) -> usize {
        usize::from(self.kind.class_token()) + self.side() * self.side()
    }

    /// FLOPs of one image through `layers` layers: patch embedding, QKV, attention, output
    /// projection and MLP (an FMA counts 2).
    pub fn flops(&self, layers: usize) -> f64 {
        let (t, c, f) = (self.tokens() as f64, self.hidden as f64, self.intermediate as f64);
        let patches = (self.side() * self.side()) as f64;
        let embed = 2.0 * patches * c * (3 * self.patch * self.patch) as f64;
        let layer = 2.0 * t * c * (4.0 * c + 2.0 * f) + 4.0 * t * t * c;
        embed + layers as f64 * layer
    }

    /// The tensors a checkpoint of this tower holds for `layers` layers (names relative to
    /// the tower's prefix), with `post_layernorm` where the layout has one: what the demo and
    /// the bench load at real size.
    pub fn state_dict(&self, layers: usize) -> StateDict {
        let (c, f, p) = (self.hidden, self.intermediate, self.patch);
        let names = vit::names(self.kind);
        let mut t = StateDict::default();
        t.tensor(format!("{}.weight", names.patch), &[c, 3, p, p]);
        if self.kind != TowerKind::Clip {
            t.tensor(format!("{}.bias", names.patch), &[c]);
        }
        if let Some(class) = names.class_token {
            t.tensor(class, &[c]);
        }
        t.tensor(names.positions, &[self.tokens(), c]);
        if self.kind == TowerKind::Clip {
            t.norm("pre_layrnorm", c, true);
        }
        for i in 0..layers {
            let l = format!("{}.{i}", names.layer);
            t.norm(&format!("{l}.{}", names.norm1), c, true);
            match self.kind {
                TowerKind::Blip2 => t.linear(&format!("{l}.self_attn.qkv"), 3 * c, c, true),
                TowerKind::InternVit => {
                    for x in ["q_proj", "k_proj", "v_proj"] {
                        t.linear(&format!("{l}.attention.{x}"), c, c, false);
                    }
                    t.tensor(format!("{l}.lambda_1"), &[c]);
                    t.tensor(format!("{l}.lambda_2"), &[c]);
                }
                _ => {
                    for x in ["q_proj", "k_proj", "v_proj"] {
                        t.linear(&format!("{l}.self_attn.{x}"), c, c, true);
                    }
                }
            }
            t.linear(&format!("{l}.{}", names.out), c, c, true);
            t.norm(&format!("{l}.{}", names.norm2), c, true);
            t.linear(&format!("{l}.mlp.fc1"), f, c, true);
            t.linear(&format!("{l}.mlp.fc2"), c, f, true);
        }
        if self.kind != TowerKind::InternVit {
            t.norm("post_layernorm", c, true);
        }
        t
    }

    /// `hidden_states` index `index` (negative from the end, as Python) as 0..=layers.
    pub fn hidden_state(&self, field: &str, index: i64) -> Result<usize> {
        let n = self.layers as i64 + 1;
        let i = if index < 0 { n + index } else { index };
        if !(0..n).contains(&i) {
            return Err(Error::Config {
                field: field.into(),
                problem: format!("{index} is out of range for {} layers (hidden_states has {n} entries)", self.layers),
            });
        }
        Ok(i as usize)
    }
}

/// Appends the `p`×`p` patches in the top-left `grid` (rows, columns) of `image` `[C, H, W]`
/// to `rows`, row-major, each as `C·p·p` values in a conv weight's (channel, y, x) order: the
/// patch conv as one GEMM over them.
pub(crate) fn patch_rows(
    image: &[f32],
    (channels, height, width): (usize, usize, usize),
    p: usize,
    (grid_h, grid_w): (usize, usize),
    rows: &mut Vec<f32>,
) {
    for (py, px) in (0..grid_h).flat_map(|y| (0..grid_w).map(move |x| (y, x))) {
        for c in 0..channels {
            for dy in 0..p {
                let start = (c * height + py * p + dy) * width + px * p;
                rows.extend_from_slice(&image[start..start + p]);
            }
        }
    }
}
