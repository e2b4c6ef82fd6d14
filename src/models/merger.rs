//! The spatial-merge families: Qwen2-VL (`qwen2_vl`), Qwen2.5-VL (`qwen2_5_vl`), InternVL
//! (`internvl`), Idefics3 (`idefics3`), SmolVLM (`smolvlm`), Gemma 3 (`gemma3`) and Mistral 3
//! (`mistral3`): their config fields mapped onto a [`Merger`].

use serde::Deserialize;

use super::config::{ConfigJson, Side, required};
use super::rotary;
use super::vision::{Frames, Rotary, Tower, TowerSpec, all_slabs};
use super::{Built, Model, ModelFamily, Runner, Tensors, input_f32};
use crate::connectors::{Merger, MergerConfig, MergerKind, StateDict};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::ops::{Concat, GeluForm};
use crate::weights::Weights;

/// Every field these families' configs use, each optional; a family reads its own.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MergerJson {
    vision_config: VisionJson,
    text_config: TextJson,
    projector_hidden_act: Option<String>,
    multimodal_projector_bias: Option<bool>,
    downsample_ratio: Option<f64>,
    scale_factor: Option<usize>,
    spatial_merge_size: Option<usize>,
    mm_tokens_per_image: Option<usize>,
    vision_feature_layer: Option<serde_json::Value>,
    vision_feature_select_strategy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VisionJson {
    hidden_size: Option<usize>,
    embed_dim: Option<usize>,
    out_hidden_size: Option<usize>,
    spatial_merge_size: Option<usize>,
    image_size: Option<Side>,
    patch_size: Option<Side>,
    layer_norm_eps: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TextJson {
    hidden_size: Option<usize>,
    rms_norm_eps: Option<f32>,
}

/// A spatial-merge connector described by its config.
#[derive(Debug, Clone)]
pub(super) struct MergerModel {
    config: MergerConfig,
    vision: usize,
    text: usize,
    bias: bool,
    /// Patches per side of a tile (square-grid families), for the token counts.
    side: Option<usize>,
    settings: Vec<(String, String)>,
    family: ModelFamily,
    tower: TowerSpec,
}

impl MergerModel {
    pub(super) fn new(family: ModelFamily, config: &ConfigJson) -> Result<Self> {
        let c: MergerJson = config.parse()?;
        let v = &c.vision_config;
        let text_hidden = || required("text_config.hidden_size", c.text_config.hidden_size);
        let vision_hidden = || required("vision_config.hidden_size", v.hidden_size);
        let side = v.image_size.zip(v.patch_size).map(|(i, p)| i.get() / p.get().max(1));
        // The Qwen mergers' GELU is fixed by the architecture (their configs have no field).
        let act = match &c.projector_hidden_act {
            Some(name) => GeluForm::from_hf("projector_hidden_act", name)?,
            None => GeluForm::Erf,
        };
        let mut settings = Vec::new();
        let (kind, scale, vision, text) = match family {
            ModelFamily::Qwen2Vl => {
                let merge = required("vision_config.spatial_merge_size", v.spatial_merge_size)?;
                let c_in = required("vision_config.embed_dim", v.embed_dim)?;
                (MergerKind::Qwen2Vl, merge, c_in, vision_hidden()?)
            }
            ModelFamily::Qwen25Vl => {
                let merge = required("vision_config.spatial_merge_size", v.spatial_merge_size)?;
                let out = required("vision_config.out_hidden_size", v.out_hidden_size)?;
                (MergerKind::Qwen25Vl, merge, vision_hidden()?, out)
            }
            ModelFamily::InternVl => {
                let ratio = required("downsample_ratio", c.downsample_ratio)?;
                let scale = (1.0 / ratio).round();
                if !(ratio > 0.0 && (scale * ratio - 1.0).abs() < 1e-9) {
                    return Err(Error::Config {
                        field: "downsample_ratio".into(),
                        problem: format!("{ratio} (1 / an integer)"),
                    });
                }
                settings.push(("downsample_ratio".into(), ratio.to_string()));
                (MergerKind::InternVl, scale as usize, vision_hidden()?, text_hidden()?)
            }
            ModelFamily::Idefics3 | ModelFamily::SmolVlm => {
                let scale = required("scale_factor", c.scale_factor)?;
                (MergerKind::Idefics3, scale, vision_hidden()?, text_hidden()?)
            }
            ModelFamily::Gemma3 => {
                let patches = required("vision_config.image_size / patch_size", side)?;
                let tokens = required("mm_tokens_per_image", c.mm_tokens_per_image)?;
                let per_side = (tokens as f64).sqrt() as usize;
                if per_side == 0 || !patches.is_multiple_of(per_side) {
                    return Err(Error::Config {
                        field: "mm_tokens_per_image".into(),
                        problem: format!("{tokens}: √ of it does not divide the {patches} patches per side"),
                    });
                }
                settings.push(("mm_tokens_per_image".into(), tokens.to_string()));
                (MergerKind::Gemma3, patches / per_side, vision_hidden()?, text_hidden()?)
            }
            _ => {
                let merge = required("spatial_merge_size", c.spatial_merge_size)?;
                (MergerKind::Mistral3, merge, vision_hidden()?, text_hidden()?)
            }
        };
        let mut merger = MergerConfig { act, ..MergerConfig::new(kind, scale) };
        match kind {
            MergerKind::Gemma3 => merger.eps = required("vision_config.layer_norm_eps", v.layer_norm_eps)?,
            MergerKind::Mistral3 => {
                merger.eps = required("text_config.rms_norm_eps", c.text_config.rms_norm_eps)?;
                merger.patch_size = required("vision_config.patch_size", v.patch_size)?.get();
            }
            _ => {}
        }
        if let Some(layer) = &c.vision_feature_layer {
            settings.push(("vision_feature_layer".into(), layer.to_string()));
        }
        if let Some(strategy) = &c.vision_feature_select_strategy {
            settings.push(("vision_feature_select_strategy".into(), strategy.clone()));
        }
        // Only Mistral 3's projector has a bias switch; the others' biases are fixed.
        let bias = match kind {
            MergerKind::Mistral3 => required("multimodal_projector_bias", c.multimodal_projector_bias)?,
            _ => true,
        };
        let side =
            if matches!(kind, MergerKind::Qwen2Vl | MergerKind::Qwen25Vl | MergerKind::Mistral3) { None } else { side };
        let tower = TowerSpec::new(family, config)?;
        Ok(Self { config: merger, vision, text, bias, side, settings, family, tower })
    }
}

impl Model for MergerModel {
    fn connector(&self) -> &'static str {
        self.config.kind.upstream()
    }

    fn dims(&self) -> Vec<(String, String)> {
        let s = self.config.scale;
        let merged = s * s * self.vision;
        let line = match self.config.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => {
                format!("{} per token, {s}x{s} -> {merged} -> {merged} -> {} (gelu)", self.vision, self.text)
            }
            MergerKind::InternVl => {
                format!("{}, pixel shuffle {s} -> {merged} -> {} -> {}", self.vision, self.text, self.text)
            }
            MergerKind::Idefics3 => {
                format!("{}, pixel shuffle {s} -> {merged} -> {} (no bias)", self.vision, self.text)
            }
            MergerKind::Gemma3 => format!("{}, avg pool {s}x{s} -> {} (x @ W)", self.vision, self.text),
            MergerKind::Mistral3 => format!(
                "{}, unfold {s}x{s} -> {merged} -> {} -> {} -> {} (bias {})",
                self.vision, self.vision, self.text, self.text, self.bias
            ),
        };
        vec![("merger".into(), line), ("norm eps".into(), format!("{:e}", self.config.eps))]
    }

    fn settings(&self) -> Vec<(String, String)> {
        self.settings.clone()
    }

    fn tokens(&self) -> (String, String) {
        let s2 = self.config.scale * self.config.scale;
        // Gemma 3 encodes one fixed-size image; the tiling families one tile at a time.
        let unit = if self.config.kind == MergerKind::Gemma3 { "image" } else { "tile (tiles per image: the input's)" };
        match self.side {
            Some(side) => {
                let out = (side / self.config.scale).pow(2);
                (format!("{} per {unit}", side * side), format!("{out} per {unit}"))
            }
            None => {
                let grids = match self.config.kind {
                    MergerKind::Mistral3 => "each image's own patch grid, from image_sizes",
                    _ => "the patch grids of the input",
                };
                (format!("N: {grids}"), format!("N / {s2}"))
            }
        }
    }

    fn shape_fields(&self) -> &'static str {
        "vision_config / text_config hidden sizes and the merge scale"
    }

    fn state_dict(&self) -> StateDict {
        self.config.state_dict(self.vision, self.text, self.bias)
    }

    fn load(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Box<dyn Runner>> {
        let merger = Merger::from_weights(gpu, weights, self.config)?.with_activations(activations);
        let (mut tower, mut rotary) = (None, None);
        if matches!(self.family, ModelFamily::Qwen2Vl | ModelFamily::Qwen25Vl | ModelFamily::Mistral3) {
            rotary = self.tower.load_rotary(gpu, weights, activations)?;
        } else {
            tower = self.tower.load(gpu, weights, activations)?;
        }
        Ok(Box::new(MergerRun { gpu: gpu.clone(), merger, tower, rotary, family: self.family }))
    }

    fn tower(&self) -> Option<&TowerSpec> {
        Some(&self.tower)
    }
}

struct MergerRun {
    gpu: Gpu,
    merger: Merger,
    tower: Option<Tower>,
    /// The Qwen families' and Mistral 3's rotary towers.
    rotary: Option<Rotary>,
    family: ModelFamily,
}

impl MergerRun {
    /// `pixel_values` → tower → merger: InternVL and Gemma 3 `[images, 3, H, W]`, Idefics3 and
    /// SmolVLM `[batch, images, 3, H, W]` with `pixel_attention_mask` (padding images dropped,
    /// padded patches masked as keys, bucketed positions), their features concatenated.
    fn build_vision(&self, tower: &Tower, inputs: &Tensors) -> Result<Built> {
        let mut g = Graph::new();
        let mut feeds = Tensors::new();
        let frames = matches!(self.family, ModelFamily::Idefics3 | ModelFamily::SmolVlm);
        let pixels = tower.pixels(&mut g, inputs, if frames { 5 } else { 4 }, &mut feeds)?;
        let features = if frames {
            let patch = tower.tower.config().patch;
            let f = Frames::new(inputs, &pixels, patch, self.family == ModelFamily::SmolVlm)?;
            tower.features(&self.gpu, &mut g, &pixels, &f.images, Some(&f.position_ids), Some(&f.key_mask))?
        } else {
            tower.features(&self.gpu, &mut g, &pixels, &all_slabs(&pixels), None, None)?
        };
        let mut out = self.merger.add_to(&self.gpu, &mut g, features)?[0];
        if frames {
            // torch.cat of every real image's tokens.
            out = g.add(Concat::Flatten, &[out])?;
        }
        g.output(out)?;
        Ok(Built { graph: g, outputs: &["image_features"], feeds })
    }
}

impl Runner for MergerRun {
    fn inputs(&self) -> &'static [&'static str] {
        self.merger.config().kind.input_names()
    }

    fn vision_inputs(&self) -> &'static [&'static str] {
        match &self.rotary {
            Some(Rotary::Qwen(_)) => return &["pixel_values", "image_grid_thw"],
            Some(Rotary::Pixtral(_)) => return &["pixel_values", "image_sizes"],
            None => {}
        }
        match (&self.tower, self.family) {
            (None, _) => &[],
            (_, ModelFamily::Idefics3 | ModelFamily::SmolVlm) => &["pixel_values", "pixel_attention_mask"],
            _ => &["pixel_values"],
        }
    }

    fn build(&self, inputs: &Tensors) -> Result<Built> {
        match (&self.rotary, inputs.contains_key("pixel_values")) {
            (Some(Rotary::Qwen(tower)), true) => return rotary::build_qwen(&self.gpu, &self.merger, tower, inputs),
            (Some(Rotary::Pixtral(tower)), true) => {
                return rotary::build_pixtral(&self.gpu, &self.merger, tower, inputs);
            }
            _ => {}
        }
        if let Some(tower) = &self.tower
            && inputs.contains_key("pixel_values")
        {
            return self.build_vision(tower, inputs);
        }
        let kind = self.merger.config().kind;
        let name = kind.input_names()[0];
        let rank = match kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl | MergerKind::Mistral3 => 2,
            _ => 3,
        };
        let (shape, x) = input_f32(inputs, name, rank)?;
        let sizes = if kind == MergerKind::Mistral3 { rotary::image_sizes(inputs)? } else { Vec::new() };
        Built::one(self.merger.graph(&self.gpu, shape, &sizes)?.0, x, kind.output_names())
    }
}
