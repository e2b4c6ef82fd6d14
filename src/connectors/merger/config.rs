//! Which merger a family has and its settings: the upstream names, inputs and outputs of each
//! kind, and the checkpoint layout its weights follow.

use crate::connectors::StateDict;
use crate::error::{Error, Result};
use crate::ops::GeluForm;
use crate::weights::Weights;

/// Which family's merger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergerKind {
    /// Qwen2-VL: LayerNorm (with bias) per token.
    Qwen2Vl,
    /// Qwen2.5-VL: RMSNorm per token.
    Qwen25Vl,
    /// InternVL (3, 3.5; `-hf` checkpoints).
    InternVl,
    /// Idefics3 and SmolVLM / SmolVLM2.
    Idefics3,
    /// Gemma 3.
    Gemma3,
    /// Mistral 3 (Mistral-Small-3.1) with its Pixtral tower.
    Mistral3,
}

impl MergerKind {
    /// The upstream module(s) it reproduces.
    pub fn upstream(self) -> &'static str {
        match self {
            MergerKind::Qwen2Vl => "PatchMerger (Qwen2-VL)",
            MergerKind::Qwen25Vl => "Qwen2_5_VLPatchMerger",
            MergerKind::InternVl => "InternVLModel.pixel_shuffle + InternVLMultiModalProjector",
            MergerKind::Idefics3 => "Idefics3Connector / SmolVLMConnector",
            MergerKind::Gemma3 => "Gemma3MultiModalProjector",
            MergerKind::Mistral3 => "Mistral3MultiModalProjector (Mistral3RMSNorm + Mistral3PatchMerger)",
        }
    }

    /// The input names upstream calls the vision features (and image sizes).
    pub fn input_names(self) -> &'static [&'static str] {
        match self {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => &["x"],
            MergerKind::InternVl => &["vision_features"],
            MergerKind::Idefics3 => &["image_hidden_states"],
            MergerKind::Gemma3 => &["vision_outputs"],
            MergerKind::Mistral3 => &["image_features", "image_sizes"],
        }
    }

    /// The output names: the connector's result first, then the intermediates transformers'
    /// tests expose.
    pub fn output_names(self) -> &'static [&'static str] {
        match self {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => &["merged"],
            MergerKind::InternVl | MergerKind::Idefics3 => &["projected", "pixel_shuffled"],
            MergerKind::Gemma3 => &["projected"],
            MergerKind::Mistral3 => &["projected", "patch_merged"],
        }
    }
}

/// A merger's settings, as config.json gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergerConfig {
    /// The family.
    pub kind: MergerKind,
    /// Side of a merged block: `spatial_merge_size` (Qwen, Mistral), `1 / downsample_ratio`
    /// (InternVL), `scale_factor` (Idefics3), the pool window (Gemma 3: patches per side /
    /// tokens per side).
    pub scale: usize,
    /// The norm's eps (Idefics3 has no norm).
    pub eps: f32,
    /// The MLP's GELU form (`projector_hidden_act`; Qwen's `nn.GELU()` is exact).
    pub act: GeluForm,
    /// Pixels per patch: Mistral 3's `image_sizes` are in pixels.
    pub patch_size: usize,
}

impl MergerConfig {
    /// A config of `kind` with block side `scale` and the family's upstream eps.
    pub fn new(kind: MergerKind, scale: usize) -> Self {
        let eps = match kind {
            MergerKind::InternVl | MergerKind::Mistral3 => 1e-5,
            _ => 1e-6,
        };
        Self { kind, scale, eps, act: GeluForm::Erf, patch_size: 14 }
    }

    pub(super) fn merged(&self, vision: usize) -> usize {
        self.scale * self.scale * vision
    }

    /// The tensors of a merger from `vision` channels to `text`, under the on-disk checkpoint
    /// names; `bias` is Mistral 3's `multimodal_projector_bias` (the others are fixed).
    pub fn state_dict(&self, vision: usize, text: usize, bias: bool) -> StateDict {
        let (c, merged) = (vision, self.merged(vision));
        let mut t = StateDict::default();
        match self.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => {
                t.norm("visual.merger.ln_q", c, self.kind == MergerKind::Qwen2Vl);
                t.linear("visual.merger.mlp.0", merged, merged, true);
                t.linear("visual.merger.mlp.2", text, merged, true);
            }
            MergerKind::InternVl => {
                t.norm("multi_modal_projector.layer_norm", merged, true);
                t.linear("multi_modal_projector.linear_1", text, merged, true);
                t.linear("multi_modal_projector.linear_2", text, text, true);
            }
            MergerKind::Idefics3 => t.linear("model.connector.modality_projection.proj", text, merged, false),
            MergerKind::Gemma3 => {
                t.tensor("multi_modal_projector.mm_input_projection_weight", &[c, text]);
                t.norm("multi_modal_projector.mm_soft_emb_norm", c, false);
            }
            MergerKind::Mistral3 => {
                t.norm("multi_modal_projector.norm", c, false);
                t.linear("multi_modal_projector.patch_merger.merging_layer", c, merged, false);
                t.linear("multi_modal_projector.linear_1", text, c, bias);
                t.linear("multi_modal_projector.linear_2", text, text, bias);
            }
        }
        t
    }

    /// (vision channels, output width, biases) read off a checkpoint's shapes.
    pub(super) fn dims(&self, weights: &Weights) -> Result<(usize, usize, bool)> {
        let s2 = self.scale * self.scale;
        let (name, transposed) = match self.kind {
            MergerKind::Qwen2Vl | MergerKind::Qwen25Vl => ("visual.merger.mlp.2.weight", false),
            MergerKind::InternVl => ("multi_modal_projector.linear_1.weight", false),
            MergerKind::Idefics3 => ("model.connector.modality_projection.proj.weight", false),
            MergerKind::Gemma3 => ("multi_modal_projector.mm_input_projection_weight", true),
            MergerKind::Mistral3 => ("multi_modal_projector.linear_1.weight", false),
        };
        let shape = weights.shape(name)?;
        let [rows, cols] = shape[..] else {
            return Err(Error::Weights { name: name.into(), problem: format!("shape {shape:?}, expected rank 2") });
        };
        let (out, input) = if transposed { (cols, rows) } else { (rows, cols) };
        let vision = match self.kind {
            MergerKind::Gemma3 | MergerKind::Mistral3 => input,
            _ if input.is_multiple_of(s2) => input / s2,
            _ => {
                let problem = format!("shape {shape:?}: in-features not a multiple of scale² = {s2}");
                return Err(Error::Weights { name: name.into(), problem });
            }
        };
        let bias = weights.contains("multi_modal_projector.linear_1.bias");
        Ok((vision, out, bias))
    }
}
