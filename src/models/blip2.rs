//! BLIP-2 (`blip-2`): `language_projection(QFormer(query_tokens, image_embeds))`, as
//! `Blip2ForConditionalGeneration.get_image_features` computes after the vision tower.

use serde::Deserialize;

use super::config::{ConfigJson, TextConfig, VisionConfig, required};
use super::vision::{Tower, TowerSpec, all_slabs};
use super::{Built, Model, ModelFamily, Runner, Tensors, input_f32, input_shape_error};
use crate::connectors::{QFormer, QFormerConfig, StateDict};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::weights::Weights;

#[derive(Debug, Deserialize)]
struct Blip2Json {
    qformer_config: Option<serde_json::Value>,
    num_query_tokens: Option<usize>,
    vision_config: Option<VisionConfig>,
    text_config: Option<TextConfig>,
}

/// A BLIP-2 connector described by its config.
pub(super) struct Blip2 {
    qformer: QFormerConfig,
    text: usize,
    vision_tokens: Option<usize>,
    tower: TowerSpec,
}

impl Blip2 {
    pub(super) fn new(config: &ConfigJson) -> Result<Self> {
        let c: Blip2Json = config.parse()?;
        let mut qformer = QFormerConfig::from_json(required("qformer_config", c.qformer_config.as_ref())?)?;
        qformer.num_query_tokens = required("num_query_tokens", c.num_query_tokens)?;
        let vision = c.vision_config;
        // transformers 5 fills encoder_hidden_size from the vision tower when absent.
        if let Some(width) = vision.and_then(|v| v.hidden_size) {
            qformer.encoder_hidden_size = width;
        }
        let text = required("text_config.hidden_size", required("text_config", c.text_config)?.hidden_size)?;
        let vision_tokens = vision.and_then(|v| Some((v.image_size?.get() / v.patch_size?.get().max(1)).pow(2) + 1));
        let tower = TowerSpec::new(ModelFamily::Blip2, config)?;
        Ok(Self { qformer, text, vision_tokens, tower })
    }
}

impl Model for Blip2 {
    fn connector(&self) -> &'static str {
        "Blip2QFormerModel + language_projection"
    }

    fn dims(&self) -> Vec<(String, String)> {
        let q = &self.qformer;
        vec![
            ("query tokens".into(), format!("{} of {}", q.num_query_tokens, q.hidden_size)),
            (
                "qformer".into(),
                format!(
                    "{} layers, {} heads, intermediate {}, cross-attention every {} over {}",
                    q.num_hidden_layers,
                    q.num_attention_heads,
                    q.intermediate_size,
                    q.cross_attention_frequency,
                    q.encoder_hidden_size
                ),
            ),
            ("language_projection".into(), format!("{} -> {}", q.hidden_size, self.text)),
        ]
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![("layer_norm_eps".into(), format!("{:e}", self.qformer.layer_norm_eps))]
    }

    fn tokens(&self) -> (String, String) {
        let input = self.vision_tokens.map_or_else(|| "any".to_string(), |t| format!("{t} (with the class token)"));
        (input, self.qformer.num_query_tokens.to_string())
    }

    fn shape_fields(&self) -> &'static str {
        "qformer_config / num_query_tokens / vision_config.hidden_size / text_config.hidden_size"
    }

    fn state_dict(&self) -> StateDict {
        let mut t = QFormer::state_dict(&self.qformer);
        t.linear("language_projection", self.text, self.qformer.hidden_size, true);
        t
    }

    fn load(&self, gpu: &Gpu, weights: &Weights, activations: DType) -> Result<Box<dyn Runner>> {
        let qformer = QFormer::from_weights(gpu, weights, self.qformer)?.with_language_projection(gpu, weights)?;
        let tower = self.tower.load(gpu, weights, activations)?;
        Ok(Box::new(Run { qformer: qformer.with_activations(activations), tower, gpu: gpu.clone() }))
    }

    fn tower(&self) -> Option<&TowerSpec> {
        Some(&self.tower)
    }
}

struct Run {
    qformer: QFormer,
    tower: Option<Tower>,
    gpu: Gpu,
}

impl Runner for Run {
    fn inputs(&self) -> &'static [&'static str] {
        &["image_embeds"]
    }

    fn vision_inputs(&self) -> &'static [&'static str] {
        if self.tower.is_some() { &["pixel_values"] } else { &[] }
    }

    /// From `pixel_values`: the tower's post-normed `last_hidden_state` (the Q-Former's
    /// `image_embeds`), the Q-Former, `language_projection`.
    fn build(&self, inputs: &Tensors) -> Result<Built> {
        if let Some(tower) = &self.tower
            && inputs.contains_key("pixel_values")
        {
            let (mut g, mut feeds) = (Graph::new(), Tensors::new());
            let pixels = tower.pixels(&mut g, inputs, 4, &mut feeds)?;
            let embeds = tower.features(&self.gpu, &mut g, &pixels, &all_slabs(&pixels), None, None)?;
            let (out, hidden) = self.qformer.add_to(&mut g, embeds)?;
            g.output(out)?;
            let outputs: &'static [&'static str] = match hidden {
                Some(h) => {
                    g.output(h)?;
                    &["image_features", "qformer_last_hidden_state"]
                }
                None => &["image_features"],
            };
            return Ok(Built { graph: g, outputs, feeds });
        }
        let (shape, x) = input_f32(inputs, "image_embeds", 3)?;
        let encoder = self.qformer.dims()[2];
        if shape[2] != encoder {
            return Err(input_shape_error("image_embeds", shape, format!("[batch, tokens, {encoder}]")));
        }
        let (mut graph, input, _) = self.qformer.graph(shape[0], shape[1])?;
        // The Q-Former's encoder_hidden_states are the vision tower's image_embeds.
        graph.rename(input, "image_embeds")?;
        Built::one(graph, x, self.qformer.output_names())
    }
}
