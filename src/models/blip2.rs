//! BLIP-2 (`blip-2`): `language_projection(QFormer(query_tokens, image_embeds))`, as
//! `Blip2ForConditionalGeneration.get_image_features` computes after the vision tower.

use serde::Deserialize;

use super::config::{ConfigJson, TextConfig, VisionConfig, required};
use super::{HostTensor, Model, Runner, Tensors, input_f32, input_shape_error};
use crate::connectors::{QFormer, QFormerConfig, StateDict};
use crate::dtype::{DType, HostData, HostVec};
use crate::error::Result;
use crate::gpu::Gpu;
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
        let vision_tokens = vision.and_then(|v| Some((v.image_size? / v.patch_size?).pow(2) + 1));
        Ok(Self { qformer, text, vision_tokens })
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
        Ok(Box::new(Run { gpu: gpu.clone(), qformer: qformer.with_activations(activations) }))
    }
}

struct Run {
    gpu: Gpu,
    qformer: QFormer,
}

impl Runner for Run {
    fn inputs(&self) -> &'static [&'static str] {
        &["image_embeds"]
    }

    fn run(&self, inputs: &Tensors) -> Result<Tensors> {
        let (shape, x) = input_f32(inputs, "image_embeds", 3)?;
        let [queries, hidden, encoder, _] = self.qformer.dims();
        if shape[2] != encoder {
            return Err(input_shape_error("image_embeds", shape, format!("[batch, tokens, {encoder}]")));
        }
        let plan = self.qformer.plan(&self.gpu, shape[0], shape[1])?;
        let mut outputs = plan.plan().run(&[HostData::F32(x)])?.into_iter();
        let text = self.qformer.text_dim().unwrap_or(hidden);
        let mut take = |dim: usize| -> Result<HostTensor> {
            HostTensor::new(
                &[shape[0], queries, dim],
                HostVec::F32(outputs.next().map(HostVec::into_f32).unwrap_or_default()),
            )
        };
        Ok([("language_model_inputs".into(), take(text)?), ("qformer_last_hidden_state".into(), take(hidden)?)].into())
    }
}
