//! Llama 3.2 Vision's tower configuration and each batch's tiles laid out on the host.

use super::super::patch_rows;
use crate::connectors::StateDict;
use crate::error::{Error, Result};
use crate::ops::GeluForm;

/// Tokens of a tile are padded to a multiple of this.
const PAD_TO: usize = 8;

/// The tower's hyper-parameters, from its `vision_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct MllamaVisionConfig {
    /// `hidden_size`.
    pub hidden: usize,
    /// `intermediate_size`.
    pub intermediate: usize,
    /// `num_hidden_layers`: the local transformer.
    pub layers: usize,
    /// `num_global_layers`.
    pub global_layers: usize,
    /// `attention_heads`.
    pub heads: usize,
    /// `image_size`: a tile's side in pixels.
    pub image_size: usize,
    /// `patch_size`.
    pub patch: usize,
    /// `num_channels`.
    pub channels: usize,
    /// `max_num_tiles`.
    pub max_tiles: usize,
    /// `supported_aspect_ratios`: aspect ratio id `i + 1` is entry `i` (0 is a padding image).
    pub aspect_ratios: Vec<(usize, usize)>,
    /// `intermediate_layers_indices`: the local layers whose outputs are concatenated after the
    /// final hidden state.
    pub intermediate_indices: Vec<usize>,
    /// `norm_eps`.
    pub eps: f32,
    /// `hidden_act`.
    pub act: GeluForm,
}

impl MllamaVisionConfig {
    /// Reads a `vision_config`; `field` names it in errors.
    pub fn from_json(field: &str, v: &serde_json::Value) -> Result<Self> {
        let config_error = |key: &str, problem: String| Error::Config { field: format!("{field}.{key}"), problem };
        let size = |key: &str| -> Result<usize> {
            match v[key].as_u64() {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(config_error(key, format!("{} (a positive integer)", v[key]))),
            }
        };
        let aspect_ratios = v["supported_aspect_ratios"]
            .as_array()
            .and_then(|list| {
                list.iter()
                    .map(|r| match (r[0].as_u64(), r[1].as_u64()) {
                        (Some(h), Some(w)) if h > 0 && w > 0 => Some((h as usize, w as usize)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                let problem = format!("{} (a list of [rows, columns] tile counts)", v["supported_aspect_ratios"]);
                config_error("supported_aspect_ratios", problem)
            })?;
        let indices = v["intermediate_layers_indices"]
            .as_array()
            .and_then(|list| list.iter().map(|i| i.as_u64().map(|i| i as usize)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                let problem = format!("{} (a list of layer indices)", v["intermediate_layers_indices"]);
                config_error("intermediate_layers_indices", problem)
            })?;
        let act_name = v["hidden_act"].as_str().unwrap_or("gelu");
        let config = Self {
            hidden: size("hidden_size")?,
            intermediate: size("intermediate_size")?,
            layers: size("num_hidden_layers")?,
            global_layers: size("num_global_layers")?,
            heads: size("attention_heads")?,
            image_size: size("image_size")?,
            patch: size("patch_size")?,
            channels: if v["num_channels"].is_null() { 3 } else { size("num_channels")? },
            max_tiles: size("max_num_tiles")?,
            aspect_ratios,
            intermediate_indices: indices,
            eps: v["norm_eps"].as_f64().unwrap_or(1e-5) as f32,
            act: GeluForm::from_hf(&format!("{field}.hidden_act"), act_name)?,
        };
        if !config.hidden.is_multiple_of(config.heads) {
            let problem = format!("{} heads do not divide hidden_size {}", config.heads, config.hidden);
            return Err(config_error("attention_heads", problem));
        }
        if config.image_size < config.patch {
            return Err(config_error("image_size", format!("{} is smaller than one patch", config.image_size)));
        }
        if let Some(&i) = config.intermediate_indices.iter().find(|&&i| i >= config.layers) {
            let problem = format!("{i} is past the {} local layers", config.layers);
            return Err(config_error("intermediate_layers_indices", problem));
        }
        if let Some(out) = v["vision_output_dim"].as_u64()
            && out as usize != config.output_width()
        {
            let problem = format!(
                "{out}, but hidden_size {} x (1 + {} intermediate layers) is {}",
                config.hidden,
                config.intermediate_indices.len(),
                config.output_width()
            );
            return Err(config_error("vision_output_dim", problem));
        }
        Ok(config)
    }

    /// Patches per tile side.
    pub fn side(&self) -> usize {
        self.image_size / self.patch
    }

    /// Tokens per tile: the class token and the patches.
    pub fn tokens(&self) -> usize {
        self.side() * self.side() + 1
    }

    /// Tokens per tile in the transformers: [`MllamaVisionConfig::tokens`] padded to a
    /// multiple of 8.
    pub fn padded_tokens(&self) -> usize {
        self.tokens().next_multiple_of(PAD_TO)
    }

    /// Values per patch row: `num_channels · patch_size²`.
    pub fn row_width(&self) -> usize {
        self.channels * self.patch * self.patch
    }

    /// Channels of the projector's input: the final hidden state and each intermediate one.
    pub fn output_width(&self) -> usize {
        self.hidden * (1 + self.intermediate_indices.len())
    }

    /// Aspect ratio ids: the supported ratios and the padding image's 0.
    pub fn aspect_ratio_ids(&self) -> usize {
        self.aspect_ratios.len() + 1
    }

    /// FLOPs of `images` images of `max_num_tiles` tiles each through the tower and a projector
    /// to `text` channels (an FMA counts 2).
    pub fn flops(&self, images: usize, text: usize) -> f64 {
        let (c, f) = (self.hidden as f64, self.intermediate as f64);
        let rows = (images * self.max_tiles * self.padded_tokens()) as f64;
        let per_image = (self.max_tiles * self.padded_tokens()) as f64;
        let layer = 2.0 * rows * c * (4.0 * c + 2.0 * f) + 4.0 * rows * per_image * c;
        let embed = 2.0 * (images * self.max_tiles * self.tokens()) as f64 * c * self.row_width() as f64;
        let projector = 2.0 * rows * self.output_width() as f64 * text as f64;
        embed + (self.layers + self.global_layers) as f64 * layer + projector
    }

    /// The tensors a checkpoint holds for the tower (names under `vision_model.`) and a
    /// projector to `text` channels (`multi_modal_projector.`): what the demo and the bench
    /// load at real size.
    pub fn state_dict(&self, text: usize) -> StateDict {
        let (c, f, p) = (self.hidden, self.intermediate, self.patch);
        let (ids, tiles, tokens) = (self.aspect_ratio_ids(), self.max_tiles, self.tokens());
        let mut t = StateDict::default();
        let v = |name: &str| format!("vision_model.{name}");
        t.tensor(v("patch_embedding.weight"), &[c, self.channels, p, p]);
        t.tensor(v("class_embedding"), &[c]);
        t.tensor(v("gated_positional_embedding.embedding"), &[tokens, c]);
        t.tensor(v("gated_positional_embedding.gate"), &[1]);
        t.tensor(v("gated_positional_embedding.tile_embedding.weight"), &[ids, tiles * tokens * c]);
        for tile in ["pre_tile_positional_embedding", "post_tile_positional_embedding"] {
            t.tensor(v(&format!("{tile}.embedding.weight")), &[ids, tiles * c]);
            t.tensor(v(&format!("{tile}.gate")), &[1]);
        }
        t.norm(&v("layernorm_pre"), c, true);
        t.norm(&v("layernorm_post"), c, true);
        let stacks = [("transformer", self.layers, false), ("global_transformer", self.global_layers, true)];
        for (stack, layers, gated) in stacks {
            for i in 0..layers {
                let l = v(&format!("{stack}.layers.{i}"));
                t.norm(&format!("{l}.input_layernorm"), c, true);
                for x in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                    t.linear(&format!("{l}.self_attn.{x}"), c, c, false);
                }
                t.norm(&format!("{l}.post_attention_layernorm"), c, true);
                t.linear(&format!("{l}.mlp.fc1"), f, c, true);
                t.linear(&format!("{l}.mlp.fc2"), c, f, true);
                if gated {
                    t.tensor(format!("{l}.gate_attn"), &[1]);
                    t.tensor(format!("{l}.gate_ffn"), &[1]);
                }
            }
        }
        t.linear("multi_modal_projector", text, self.output_width(), true);
        t
    }
}

/// One batch's tiles on the host: patch rows, each token's embedding, the padding.
#[derive(Debug, Clone, PartialEq)]
pub struct MllamaLayout {
    /// Images (`batch · concurrent media`).
    pub images: usize,
    /// Patch rows `[images · tiles · tokens, C_in·P·P]`, a zero row for each class token.
    pub rows: Vec<f32>,
    /// Each image's aspect ratio id.
    pub aspect_ratio_ids: Vec<usize>,
    /// `aspect_ratio_mask` `[images, tiles]`: 1 for a tile of the image, 0 for a padding tile.
    pub tile_mask: Vec<bool>,
}

impl MllamaLayout {
    /// Checks the processor's `pixel_values` `[batch, media, tiles, C_in, S, S]` (`shape`),
    /// `aspect_ratio_ids` `[batch, media]` and `aspect_ratio_mask` `[batch, media, tiles]`
    /// against `config` and cuts the patch rows. Ids past the config's ratios, tiles past
    /// `max_num_tiles` and masks that are not 0/1 are [`Error::Input`]s naming the input.
    pub fn new(
        config: &MllamaVisionConfig,
        pixels: &[f32],
        shape: &[usize],
        aspect_ratio_ids: &[usize],
        aspect_ratio_mask: &[usize],
    ) -> Result<Self> {
        let input = |name: &str, problem: String| Error::Input { name: name.into(), problem };
        let (s, ch, tiles) = (config.image_size, config.channels, config.max_tiles);
        let [batch, media, t, c, h, w] = shape[..] else {
            return Err(input(
                "pixel_values",
                format!("shape {shape:?}, expected [batch, images, tiles, {ch}, {s}, {s}]"),
            ));
        };
        if t > tiles {
            return Err(input("pixel_values", format!("{t} tiles, more than max_num_tiles {tiles}")));
        }
        if (t, c, h, w) != (tiles, ch, s, s) {
            let problem = format!(
                "shape {shape:?}, expected [batch, images, {tiles}, {ch}, {s}, {s}] (tiles padded to max_num_tiles)"
            );
            return Err(input("pixel_values", problem));
        }
        let images = batch * media;
        if aspect_ratio_ids.len() != images {
            let problem = format!("{} ids for {batch} x {media} images", aspect_ratio_ids.len());
            return Err(input("aspect_ratio_ids", problem));
        }
        let ids = config.aspect_ratio_ids();
        let aspect_ratio_ids = aspect_ratio_ids
            .iter()
            .map(|&id| {
                if id < ids {
                    return Ok(id);
                }
                let problem = format!("{id} is out of range: the config has ids 0..={}", ids - 1);
                Err(input("aspect_ratio_ids", problem))
            })
            .collect::<Result<Vec<_>>>()?;
        if aspect_ratio_mask.len() != images * tiles {
            let problem = format!("{} entries, expected {batch} x {media} x {tiles}", aspect_ratio_mask.len());
            return Err(input("aspect_ratio_mask", problem));
        }
        let tile_mask = aspect_ratio_mask
            .iter()
            .map(|&m| match m {
                0 | 1 => Ok(m == 1),
                other => Err(input("aspect_ratio_mask", format!("holds {other} (0 or 1)"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let (side, width) = (config.side(), config.row_width());
        let mut rows = Vec::with_capacity(images * tiles * config.tokens() * width);
        for tile in pixels.chunks_exact(ch * s * s) {
            rows.extend(std::iter::repeat_n(0.0, width));
            patch_rows(tile, (ch, s, s), config.patch, (side, side), &mut rows);
        }
        Ok(Self { images, rows, aspect_ratio_ids, tile_mask })
    }

    /// Patch rows in all (class tokens included).
    pub fn tokens(&self, config: &MllamaVisionConfig) -> usize {
        self.images * config.max_tiles * config.tokens()
    }
}
