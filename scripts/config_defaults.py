#!/usr/bin/env python3
"""Writes tests/data/configs/transformers_defaults.json: what transformers' config classes fill in.

For every config class the crate tables (src/models/config/defaults.rs), the class's defaults
(`Class().to_dict()`), its `attribute_map` and its sub-config specs, plus what a composite class
builds for an absent sub-config; and for every published config.json under tests/data/configs/,
the config transformers resolves from it. tests/config_defaults.rs holds the Rust tables to
these. Run once per transformers version (`pip install transformers==5.24.0`; no torch needed):

    python3 scripts/config_defaults.py
"""
import json
import pathlib

import transformers
from transformers import CONFIG_MAPPING, AutoConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/data/configs/transformers_defaults.json"

# Every model_type the crate tables: composites first, then what they nest.
MODEL_TYPES = [
    "llava", "llava_next", "llava_onevision", "blip-2", "qwen2_vl", "qwen2_5_vl", "internvl",
    "idefics3", "smolvlm", "gemma3", "mistral3", "mllama",
    "clip_vision_model", "siglip_vision_model", "blip_2_vision_model", "blip_2_qformer",
    "qwen2_vl_vision", "qwen2_5_vl_vision", "internvl_vision", "idefics3_vision", "smolvlm_vision",
    "pixtral", "mllama_vision_model",
    "llama", "mistral", "qwen2", "qwen3", "opt", "t5", "gemma3_text", "qwen2_vl_text",
    "qwen2_5_vl_text", "mllama_text_model",
]


def plain(value):
    """JSON-able values only (a torch dtype or a class becomes its name)."""
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value)


def resolved(config):
    """A config and its sub-configs as plain dicts, with the attribute_map aliases readable."""
    out = plain(config.to_dict())
    for alias, field in type(config).attribute_map.items():
        out[alias] = plain(getattr(config, field, None))
    for key in (type(config).sub_configs_defaults or {}):
        sub = getattr(config, key, None)
        if sub is not None:
            out[key] = resolved(sub)
    return out


classes = {}
for model_type in MODEL_TYPES:
    cls = CONFIG_MAPPING[model_type]
    instance = cls()
    specs = {}
    for key, spec in (cls.sub_configs_defaults or {}).items():
        specs[key] = {
            "model_type": spec.model_type,
            "fixed_class": spec.config_class.__name__ != "AutoConfig",
            "init_kwargs": plain(spec.init_kwargs),
            "optional": spec.optional,
        }
    classes[model_type] = {
        "class": cls.__name__,
        "defaults": resolved(instance),
        "attribute_map": dict(cls.attribute_map),
        "sub_configs": specs,
    }

# Spellings the classes accept, written here by hand (not published files): old Qwen2-VL files
# with the text fields at the top level, aliases, scalar InternVL sizes, nested types by name.
LEGACY = {
    "qwen2_vl_top_level_text": {
        "model_type": "qwen2_vl", "hidden_size": 1536, "rms_norm_eps": 1e-06,
        "vision_config": {"model_type": "qwen2_vl", "depth": 32, "embed_dim": 1280, "hidden_size": 1536},
    },
    "qwen2_5_vl_minimal": {"model_type": "qwen2_5_vl", "vision_config": {"out_hidden_size": 2048}},
    "internvl_scalar_sizes": {"model_type": "internvl", "vision_config": {"image_size": 448, "patch_size": 14}},
    "blip2_t5": {"model_type": "blip-2", "text_config": {"model_type": "t5", "d_model": 2048}},
    "mllama_alias": {"model_type": "mllama", "vision_config": {"num_attention_heads": 8}, "torch_dtype": "bfloat16"},
    "llava_next_mistral": {"model_type": "llava_next", "text_config": {"model_type": "mistral"}},
    "gemma3_siglip_by_name": {"model_type": "gemma3", "vision_config": {"model_type": "siglip_vision_model"}},
    "mistral3_absent_subs": {"model_type": "mistral3"},
}

published = {}
for path in sorted((ROOT / "tests/data/configs").glob("*/config.json")):
    config = AutoConfig.for_model(**json.loads(path.read_text()))
    published[path.parent.name] = resolved(config)
legacy = {name: {"config": config, "resolved": resolved(AutoConfig.for_model(**json.loads(json.dumps(config))))}
          for name, config in LEGACY.items()}

OUT.write_text(json.dumps(
    {"transformers": transformers.__version__, "classes": classes, "published": published, "legacy": legacy},
    indent=1, sort_keys=True) + "\n")
print(f"wrote {OUT.relative_to(ROOT)}: {len(classes)} classes, {len(published)} published configs, "
      f"{len(legacy)} legacy spellings")
