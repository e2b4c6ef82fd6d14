//! The classes the families nest: vision towers, the Q-Former and language models.

use super::{ConfigClass, d, n};

/// Qwen2-VL's vision configs spell heads and layers their own way.
const HEADS_DEPTH: &[(&str, &str)] = &[("num_attention_heads", "num_heads"), ("num_hidden_layers", "depth")];

/// A ViT's common fields.
macro_rules! vit {
    ($hidden:literal, $inter:literal, $layers:literal, $heads:literal, $image:literal, $patch:literal, $act:literal, $eps:literal) => {
        [
            d("hidden_size", $hidden),
            d("intermediate_size", $inter),
            d("num_hidden_layers", $layers),
            d("num_attention_heads", $heads),
            d("image_size", $image),
            d("patch_size", $patch),
            d("hidden_act", $act),
            d("layer_norm_eps", $eps),
        ]
    };
}

/// A decoder's width and norm epsilon.
macro_rules! text {
    ($hidden:literal, $eps:literal) => {
        [d("hidden_size", $hidden), d("rms_norm_eps", $eps)]
    };
}

/// The nested classes.
pub(super) const NESTED: &[ConfigClass] = &[
    // Vision towers.
    ConfigClass {
        model_type: "clip_vision_model",
        class: "CLIPVisionConfig",
        defaults: &vit!("768", "3072", "12", "12", "224", "32", "\"quick_gelu\"", "1e-05"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "siglip_vision_model",
        class: "SiglipVisionConfig",
        defaults: &vit!("768", "3072", "12", "12", "224", "16", "\"gelu_pytorch_tanh\"", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "blip_2_vision_model",
        class: "Blip2VisionConfig",
        defaults: &vit!("1408", "6144", "39", "16", "224", "14", "\"gelu\"", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "blip_2_qformer",
        class: "Blip2QFormerConfig",
        defaults: &[
            d("hidden_size", "768"),
            d("num_hidden_layers", "12"),
            d("num_attention_heads", "12"),
            d("intermediate_size", "3072"),
            d("hidden_act", "\"gelu\""),
            d("layer_norm_eps", "1e-12"),
            d("cross_attention_frequency", "2"),
            d("encoder_hidden_size", "1408"),
        ],
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "qwen2_vl_vision",
        class: "Qwen2VLVisionConfig",
        defaults: &[
            d("depth", "32"),
            d("embed_dim", "1280"),
            d("hidden_size", "3584"),
            d("hidden_act", "\"quick_gelu\""),
            d("mlp_ratio", "4"),
            d("num_heads", "16"),
            d("in_channels", "3"),
            d("patch_size", "14"),
            d("spatial_merge_size", "2"),
            d("temporal_patch_size", "2"),
        ],
        aliases: HEADS_DEPTH,
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "qwen2_5_vl_vision",
        class: "Qwen2_5_VLVisionConfig",
        defaults: &[
            d("depth", "32"),
            d("hidden_size", "3584"),
            d("hidden_act", "\"silu\""),
            d("intermediate_size", "3420"),
            d("num_heads", "16"),
            d("in_channels", "3"),
            d("patch_size", "14"),
            d("spatial_merge_size", "2"),
            d("temporal_patch_size", "2"),
            d("window_size", "112"),
            d("out_hidden_size", "3584"),
            d("fullatt_block_indexes", "[7, 15, 23, 31]"),
        ],
        aliases: HEADS_DEPTH,
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "internvl_vision",
        class: "InternVLVisionConfig",
        defaults: &[
            d("hidden_size", "1024"),
            d("num_hidden_layers", "24"),
            d("num_attention_heads", "16"),
            d("intermediate_size", "4096"),
            d("hidden_act", "\"gelu\""),
            d("layer_norm_eps", "1e-06"),
            d("norm_type", "\"layer_norm\""),
            d("image_size", "[448, 448]"),
            d("patch_size", "[14, 14]"),
            d("attention_bias", "false"),
            d("use_qk_norm", "false"),
            d("layer_scale_init_value", "0.1"),
            d("use_absolute_position_embeddings", "true"),
            d("use_mean_pooling", "true"),
        ],
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "idefics3_vision",
        class: "Idefics3VisionConfig",
        defaults: &vit!("1152", "3072", "12", "16", "224", "32", "\"gelu_pytorch_tanh\"", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "smolvlm_vision",
        class: "SmolVLMVisionConfig",
        defaults: &vit!("1152", "3072", "12", "16", "224", "32", "\"gelu_pytorch_tanh\"", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "pixtral",
        class: "PixtralVisionConfig",
        defaults: &[
            d("hidden_size", "1024"),
            d("intermediate_size", "4096"),
            d("num_hidden_layers", "24"),
            d("num_attention_heads", "16"),
            d("image_size", "1024"),
            d("patch_size", "16"),
            d("hidden_act", "\"gelu\""),
            d("head_dim", "64"),
        ],
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "mllama_vision_model",
        class: "MllamaVisionConfig",
        defaults: &[
            d("hidden_size", "1280"),
            d("hidden_act", "\"gelu\""),
            d("num_hidden_layers", "32"),
            d("num_global_layers", "8"),
            d("attention_heads", "16"),
            d("intermediate_size", "5120"),
            d("vision_output_dim", "7680"),
            d("image_size", "448"),
            d("patch_size", "14"),
            d("norm_eps", "1e-05"),
            d("max_num_tiles", "4"),
            n("intermediate_layers_indices", "[3, 7, 15, 23, 30]"),
            n("supported_aspect_ratios", "[[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]"),
        ],
        aliases: &[("num_attention_heads", "attention_heads")],
        sub_configs: &[],
    },
    // Language models: the width a connector projects to.
    ConfigClass {
        model_type: "llama",
        class: "LlamaConfig",
        defaults: &text!("4096", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "mistral",
        class: "MistralConfig",
        defaults: &text!("4096", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "qwen2",
        class: "Qwen2Config",
        defaults: &text!("4096", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "qwen3",
        class: "Qwen3Config",
        defaults: &text!("4096", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "opt",
        class: "OPTConfig",
        defaults: &[d("hidden_size", "768")],
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "t5",
        class: "T5Config",
        defaults: &[d("d_model", "512")],
        aliases: &[
            ("head_dim", "d_kv"),
            ("hidden_size", "d_model"),
            ("num_attention_heads", "num_heads"),
            ("num_hidden_layers", "num_layers"),
        ],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "gemma3_text",
        class: "Gemma3TextConfig",
        defaults: &text!("2304", "1e-06"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "qwen2_vl_text",
        class: "Qwen2VLTextConfig",
        defaults: &text!("8192", "1e-05"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "qwen2_5_vl_text",
        class: "Qwen2_5_VLTextConfig",
        defaults: &text!("8192", "1e-05"),
        aliases: &[],
        sub_configs: &[],
    },
    ConfigClass {
        model_type: "mllama_text_model",
        class: "MllamaTextConfig",
        defaults: &[
            d("hidden_size", "4096"),
            d("rms_norm_eps", "1e-05"),
            n("cross_attention_layers", "[3, 8, 13, 18, 23, 28, 33, 38]"),
        ],
        aliases: &[],
        sub_configs: &[],
    },
];
