//! Llama 3.2 Vision (`mllama`): `multi_modal_projector` and the reshape to
//! `cross_attention_states` that `MllamaModel` applies before the text model, from the vision
//! tower's output or, where the checkpoint holds the tower, from the processor's tiles. The
//! text model's cross-attention layers that read them are
//! [`crate::connectors::MllamaCrossAttention`].

use std::sync::OnceLock;

use serde::Deserialize;

use super::config::{ConfigJson, required};
use super::vision::{TowerSpec, finite_pixels};
use super::{Built, Model, ModelFamily, Runner, Tensors, input_f32, input_ints};
use crate::connectors::{MllamaProjector, StateDict};
use crate::dtype::{DType, HostVec};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::host::HostTensor;
use crate::towers::{MllamaLayout, MllamaTower, MllamaVisionConfig};
use crate::weights::Weights;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MllamaJson {
    vision_config: VisionJson,
    text_config: TextJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VisionJson {
    vision_output_dim: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    max_num_tiles: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TextJson {
    hidden_size: Option<usize>,
    cross_attention_layers: Option<Vec<usize>>,
}

/// An mllama connector described by its config.
pub(super) struct Mllama {
    vision: usize,
    text: usize,
    tokens_per_tile: Option<usize>,
    max_tiles: Option<usize>,
    cross_attention_layers: Vec<usize>,
    tower: TowerSpec,
}

impl Mllama {
    pub(super) fn new(config: &ConfigJson) -> Result<Self> {
        let c: MllamaJson = config.parse()?;
        let v = &c.vision_config;
        Ok(Self {
            vision: required("vision_config.vision_output_dim", v.vision_output_dim)?,
            text: required("text_config.hidden_size", c.text_config.hidden_size)?,
            // The tower emits (image_size / patch_size)² patches and a class token per tile.
            tokens_per_tile: v.image_size.zip(v.patch_size).map(|(i, p)| (i / p.max(1)).pow(2) + 1),
            max_tiles: v.max_num_tiles,
            cross_attention_layers: c.text_config.cross_attention_layers.clone().unwrap_or_default(),
            tower: TowerSpec::new(ModelFamily::Mllama, config)?,
        })
    }
}

impl Model for Mllama {
    fn connector(&self) -> &'static str {
        "multi_modal_projector (+ MllamaModel's reshape to cross_attention_states)"
    }

    fn dims(&self) -> Vec<(String, String)> {
        vec![("projector".into(), format!("{} -> {} (bias)", self.vision, self.text))]
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![("text cross_attention_layers".into(), format!("{:?}", self.cross_attention_layers))]
    }

    fn tokens(&self) -> (String, String) {
        // The config fixes a tile's tokens and the most tiles; each image's tile count is the
        // input's (its aspect ratio).
        match (self.tokens_per_tile, self.max_tiles) {
            (Some(t), Some(tiles)) => (
                format!("{t} per tile (class token + patches), 1 to {tiles} tiles per image as the input holds"),
                format!("{t} per tile, as many tiles as the input"),
            ),
            _ => ("tiles x tokens per tile".into(), "the same".into()),
        }
    }

    fn shape_fields(&self) -> &'static str {
        "vision_config.vision_output_dim / text_config.hidden_size"
    }

    fn state_dict(&self) -> StateDict {
        MllamaProjector::state_dict(self.vision, self.text)
    }

    fn load(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Box<dyn Runner>> {
        if let Some(tower) = self.tower.load_tiled(gpu, weights, activations)? {
            let weights = weights.clone();
            return Ok(Box::new(TowerRun { gpu: gpu.clone(), tower, weights, projector: OnceLock::new() }));
        }
        let projector = MllamaProjector::from_weights(gpu, weights)?.with_activations(activations);
        Ok(Box::new(ProjectorRun { projector }))
    }

    fn tower(&self) -> Option<&TowerSpec> {
        Some(&self.tower)
    }
}

/// The tower and the projector from the processor's tiles.
struct TowerRun {
    gpu: Gpu,
    tower: MllamaTower,
    /// For the projector on its own, uploaded the first time `vision_outputs` are given (the
    /// tower's copy is split by the state it reads).
    weights: Weights,
    projector: OnceLock<ProjectorRun>,
}

impl Runner for TowerRun {
    fn inputs(&self) -> &'static [&'static str] {
        &["vision_outputs"]
    }

    fn vision_inputs(&self) -> &'static [&'static str] {
        &["pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"]
    }

    fn build(&self, inputs: &Tensors) -> Result<Built> {
        if !inputs.contains_key("pixel_values") && inputs.contains_key("vision_outputs") {
            if self.projector.get().is_none() {
                let projector = MllamaProjector::from_weights(&self.gpu, &self.weights)?;
                let _ = self
                    .projector
                    .set(ProjectorRun { projector: projector.with_activations(self.tower.activations()) });
            }
            return self
                .projector
                .get()
                .map_or_else(|| Err(Error::Graph("the projector did not load".into())), |p| p.build(inputs));
        }
        let config = self.tower.config();
        let (t, pixels) = finite_pixels(inputs)?;
        let ints = |name: &str| {
            let len = inputs.get(name).map_or(0, |t| t.data.len());
            input_ints(inputs, name, len)
        };
        let layout =
            MllamaLayout::new(config, pixels, &t.shape, &ints("aspect_ratio_ids")?, &ints("aspect_ratio_mask")?)?;
        let mut g = Graph::new();
        let mut feeds = Tensors::new();
        let dtype = self.tower.activations();
        let (tokens, width, c) = (layout.tokens(config), config.row_width(), config.hidden);
        let rows = g.input_as("pixel_values", &[1, tokens, width], dtype)?;
        let embeddings = g.input_as("embeddings", &[1, tokens, c], dtype)?;
        feeds.insert("pixel_values".into(), HostTensor::new(&[1, tokens, width], HostVec::F32(layout.rows.clone()))?);
        let table = self.tower.token_embeddings(&layout);
        feeds.insert("embeddings".into(), HostTensor::new(&[1, tokens, c], HostVec::F32(table))?);
        g.set_stage("tower");
        let out = self.tower.add_to(&self.gpu, &mut g, (rows, embeddings), &layout)?;
        g.output(out)?;
        Ok(Built { graph: g, outputs: &["image_features"], feeds })
    }
}

/// What `inspect` says of the tiled tower.
pub(super) fn describe_tower(c: &MllamaVisionConfig) -> Vec<(String, String)> {
    vec![
        (
            "vision tower".into(),
            format!(
                "MllamaVisionModel ({} local + {} global layers; width {}, {} heads, MLP {}, {:?})",
                c.layers, c.global_layers, c.hidden, c.heads, c.intermediate, c.act
            ),
        ),
        (
            "image".into(),
            format!(
                "up to {} tiles of {1} x {1} px, patch {2}; aspect ratios {3:?}",
                c.max_tiles, c.image_size, c.patch, c.aspect_ratios
            ),
        ),
        ("feature layers".into(), format!("final + intermediate {:?}", c.intermediate_indices)),
        ("tower tokens".into(), format!("{} per tile ({} in the transformers)", c.tokens(), c.padded_tokens())),
    ]
}

struct ProjectorRun {
    projector: MllamaProjector,
}

impl Runner for ProjectorRun {
    fn inputs(&self) -> &'static [&'static str] {
        &["vision_outputs"]
    }

    fn build(&self, inputs: &Tensors) -> Result<Built> {
        let rank = inputs.get("vision_outputs").map_or(5, |t| t.shape.len().max(2));
        let (shape, x) = input_f32(inputs, "vision_outputs", rank)?;
        Built::one(self.projector.graph(shape)?.0, x, &["cross_attention_states"])
    }
}
