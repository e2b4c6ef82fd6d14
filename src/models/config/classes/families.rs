//! The twelve families' composite config classes.

use super::{ConfigClass, FieldDefault, SubConfig, d, n};

const fn sub(key: &'static str, model_type: &'static str) -> SubConfig {
    SubConfig { key, model_type, fixed_class: false, init_kwargs: &[] }
}

const fn fixed(key: &'static str, model_type: &'static str) -> SubConfig {
    SubConfig { key, model_type, fixed_class: true, init_kwargs: &[] }
}

const IMAGE_TOKEN: &[(&str, &str)] = &[("image_token_id", "image_token_index")];

/// LLaVA / LLaVA-NeXT's CLIP tower when `vision_config` is absent.
const LLAVA_CLIP: &[(&str, &str)] = &[
    ("intermediate_size", "4096"),
    ("hidden_size", "1024"),
    ("patch_size", "14"),
    ("image_size", "336"),
    ("num_hidden_layers", "24"),
    ("num_attention_heads", "16"),
    ("vocab_size", "32000"),
    ("projection_dim", "768"),
];

const LLAVA_PROJECTOR: [FieldDefault; 4] = [
    d("projector_hidden_act", "\"gelu\""),
    d("vision_feature_select_strategy", "\"default\""),
    d("vision_feature_layer", "-2"),
    d("multimodal_projector_bias", "true"),
];

const NEXT_PINPOINTS: &str = "[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]";
/// LLaVA-OneVision's default pinpoints: every (h, w) in {384, 768, ..., 2304}².
const ONEVISION_PINPOINTS: &str = "[[384, 384], [384, 768], [384, 1152], [384, 1536], [384, 1920], [384, 2304], \
    [768, 384], [768, 768], [768, 1152], [768, 1536], [768, 1920], [768, 2304], \
    [1152, 384], [1152, 768], [1152, 1152], [1152, 1536], [1152, 1920], [1152, 2304], \
    [1536, 384], [1536, 768], [1536, 1152], [1536, 1536], [1536, 1920], [1536, 2304], \
    [1920, 384], [1920, 768], [1920, 1152], [1920, 1536], [1920, 1920], [1920, 2304], \
    [2304, 384], [2304, 768], [2304, 1152], [2304, 1536], [2304, 1920], [2304, 2304]]";

/// The composite classes, one per family.
pub(super) const FAMILIES: &[ConfigClass] = &[
    ConfigClass {
        model_type: "llava",
        class: "LlavaConfig",
        defaults: &LLAVA_PROJECTOR,
        aliases: IMAGE_TOKEN,
        sub_configs: &[
            SubConfig { init_kwargs: LLAVA_CLIP, ..sub("vision_config", "clip_vision_model") },
            sub("text_config", "llama"),
        ],
    },
    ConfigClass {
        model_type: "llava_next",
        class: "LlavaNextConfig",
        defaults: &[
            LLAVA_PROJECTOR[0],
            LLAVA_PROJECTOR[1],
            LLAVA_PROJECTOR[2],
            LLAVA_PROJECTOR[3],
            n("image_grid_pinpoints", NEXT_PINPOINTS),
        ],
        aliases: IMAGE_TOKEN,
        sub_configs: &[
            sub("text_config", "llama"),
            SubConfig { init_kwargs: LLAVA_CLIP, ..sub("vision_config", "clip_vision_model") },
        ],
    },
    ConfigClass {
        model_type: "llava_onevision",
        class: "LlavaOnevisionConfig",
        defaults: &[
            d("projector_hidden_act", "\"gelu\""),
            d("vision_feature_select_strategy", "\"full\""),
            d("vision_feature_layer", "-1"),
            d("multimodal_projector_bias", "true"),
            d("vision_aspect_ratio", "\"anyres_max_9\""),
            n("image_grid_pinpoints", ONEVISION_PINPOINTS),
        ],
        aliases: &[("image_token_id", "image_token_index"), ("video_token_id", "video_token_index")],
        sub_configs: &[
            SubConfig {
                init_kwargs: &[
                    ("hidden_size", "1152"),
                    ("intermediate_size", "4304"),
                    ("patch_size", "14"),
                    ("image_size", "384"),
                    ("num_hidden_layers", "26"),
                    ("num_attention_heads", "16"),
                    ("vision_use_head", "false"),
                ],
                ..sub("vision_config", "siglip_vision_model")
            },
            sub("text_config", "qwen2"),
        ],
    },
    ConfigClass {
        model_type: "blip-2",
        class: "Blip2Config",
        defaults: &[d("num_query_tokens", "32")],
        aliases: IMAGE_TOKEN,
        sub_configs: &[
            sub("text_config", "opt"),
            fixed("vision_config", "blip_2_vision_model"),
            fixed("qformer_config", "blip_2_qformer"),
        ],
    },
    ConfigClass {
        model_type: "qwen2_vl",
        class: "Qwen2VLConfig",
        defaults: &[],
        aliases: &[],
        sub_configs: &[fixed("vision_config", "qwen2_vl_vision"), fixed("text_config", "qwen2_vl_text")],
    },
    ConfigClass {
        model_type: "qwen2_5_vl",
        class: "Qwen2_5_VLConfig",
        defaults: &[],
        aliases: &[],
        sub_configs: &[fixed("vision_config", "qwen2_5_vl_vision"), fixed("text_config", "qwen2_5_vl_text")],
    },
    ConfigClass {
        model_type: "internvl",
        class: "InternVLConfig",
        defaults: &[
            d("downsample_ratio", "0.5"),
            d("projector_hidden_act", "\"gelu\""),
            d("vision_feature_layer", "-1"),
            d("vision_feature_select_strategy", "\"default\""),
        ],
        aliases: &[],
        sub_configs: &[sub("text_config", "qwen2"), fixed("vision_config", "internvl_vision")],
    },
    ConfigClass {
        model_type: "idefics3",
        class: "Idefics3Config",
        defaults: &[d("scale_factor", "2")],
        aliases: &[],
        sub_configs: &[
            SubConfig { init_kwargs: &[("rms_norm_eps", "1e-05")], ..sub("text_config", "llama") },
            fixed("vision_config", "idefics3_vision"),
        ],
    },
    ConfigClass {
        model_type: "smolvlm",
        class: "SmolVLMConfig",
        defaults: &[d("scale_factor", "2")],
        aliases: &[],
        sub_configs: &[
            SubConfig { init_kwargs: &[("rms_norm_eps", "1e-05")], ..sub("text_config", "llama") },
            fixed("vision_config", "smolvlm_vision"),
        ],
    },
    ConfigClass {
        model_type: "gemma3",
        class: "Gemma3Config",
        defaults: &[d("mm_tokens_per_image", "256")],
        aliases: &[
            ("image_token_id", "image_token_index"),
            ("boi_token_id", "boi_token_index"),
            ("eoi_token_id", "eoi_token_index"),
        ],
        sub_configs: &[fixed("text_config", "gemma3_text"), sub("vision_config", "siglip_vision_model")],
    },
    ConfigClass {
        model_type: "mistral3",
        class: "Mistral3Config",
        defaults: &[
            d("projector_hidden_act", "\"gelu\""),
            d("vision_feature_layer", "-1"),
            d("multimodal_projector_bias", "false"),
            d("spatial_merge_size", "2"),
        ],
        aliases: IMAGE_TOKEN,
        sub_configs: &[
            SubConfig {
                init_kwargs: &[
                    ("attention_dropout", "0.0"),
                    ("head_dim", "128"),
                    ("hidden_act", "\"silu\""),
                    ("hidden_size", "5120"),
                    ("initializer_range", "0.02"),
                    ("intermediate_size", "32768"),
                    ("max_position_embeddings", "131072"),
                    ("model_type", "\"mistral\""),
                    ("num_attention_heads", "32"),
                    ("num_hidden_layers", "40"),
                    ("num_key_value_heads", "8"),
                    ("rms_norm_eps", "1e-05"),
                    ("rope_theta", "1000000000.0"),
                    ("sliding_window", "null"),
                    ("use_cache", "true"),
                    ("vocab_size", "131072"),
                ],
                ..sub("text_config", "mistral")
            },
            SubConfig {
                init_kwargs: &[
                    ("intermediate_size", "4096"),
                    ("hidden_size", "1024"),
                    ("patch_size", "14"),
                    ("image_size", "1540"),
                    ("num_hidden_layers", "24"),
                    ("num_attention_heads", "16"),
                    ("vocab_size", "32000"),
                    ("head_dim", "64"),
                    ("hidden_act", "\"gelu\""),
                ],
                ..sub("vision_config", "pixtral")
            },
        ],
    },
    ConfigClass {
        model_type: "mllama",
        class: "MllamaConfig",
        defaults: &[],
        aliases: IMAGE_TOKEN,
        sub_configs: &[fixed("text_config", "mllama_text_model"), fixed("vision_config", "mllama_vision_model")],
    },
];
