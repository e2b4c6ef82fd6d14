#!/usr/bin/env python3
"""AnyRes packing at the published tile geometries, generated with transformers 5.24 (torch, CPU).

1. tests/data/models/llava_onevision_384 and llava_onevision_384_max9: tiny LLaVA-OneVision
   directories saved by `save_pretrained`, with SigLIP-so400m's geometry (384-pixel tiles of
   14-pixel patches, 27 per side), the default 36 pinpoints and anyres_max_9; random weights as
   in shared/models (W ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), image_newline ~ N(0, 1)), the
   connector's inputs and the outputs of transformers' own modules.
2. tests/data/configs/anyres_token_counts.json: tiles and packed tokens for many image sizes,
   LLaVA-NeXT at 336/14 and LLaVA-OneVision at 384/14 with their default pinpoints, from
   `pack_image_features` itself.

    pip install transformers==5.24.0 torch==2.15.0 safetensors && python3 scripts/make_anyres_cases.py
"""
import json
import pathlib
import types

import torch
from safetensors.torch import save_file
from transformers import LlavaNextConfig, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
from transformers.models.llava_next.modeling_llava_next import LlavaNextModel, image_size_to_num_patches
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

ROOT = pathlib.Path(__file__).resolve().parent.parent
torch.manual_seed(20261203)


def onevision_config():
    return LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 384, "patch_size": 14},
        text_config={"model_type": "qwen2", "hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 256},
        image_token_index=250, video_token_index=251,
    )


def redraw(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                p.normal_(0, p.shape[1] ** -0.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
            elif "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 1)


def onevision_case(name, image_hw):
    config = onevision_config()
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    redraw(model)
    out = ROOT / "tests/data/models" / name
    model.save_pretrained(out, max_shard_size="60KB")
    side = config.vision_config.image_size // config.vision_config.patch_size
    tiles = image_size_to_num_patches(image_hw, config.image_grid_pinpoints, config.vision_config.image_size)
    features = torch.randn(tiles, side * side, config.vision_config.hidden_size)
    size = torch.tensor(image_hw, dtype=torch.int64)
    with torch.no_grad():
        projected = model.model.multi_modal_projector(features)
        packed, _ = model.model.pack_image_features(
            [projected], size[None], model.model.image_newline, vision_aspect_ratio=config.vision_aspect_ratio)
    save_file({"image_features": features, "image_size": size}, out / "connector_inputs.safetensors")
    save_file({"packed": packed[0].contiguous(), "projected_tiles": projected.contiguous()},
              out / "connector_outputs.safetensors")
    case = {
        "family": "llava_onevision",
        "model_class": "LlavaOnevisionForConditionalGeneration",
        "inputs": {"image_features": list(features.shape), "image_size": [2]},
        "outputs": {"packed": list(packed[0].shape), "projected_tiles": list(projected.shape)},
        "primary_outputs": ["packed"],
        "notes": [
            f"One image of (h, w) = {tuple(image_hw)} px; SigLIP-so400m geometry: image_size 384, patch_size 14 "
            f"-> 384 // 14 = {side} patches per side (not a multiple: the last 6 pixels are no patch); the default "
            f"36 pinpoints divided by image_size 384; {tiles} tiles (base first).",
            "packed = model.model.pack_image_features([multi_modal_projector(image_features)], image_size[None], "
            "image_newline, vision_aspect_ratio='anyres_max_9')[0]",
        ],
    }
    (out / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    print(name, tiles, "tiles ->", tuple(packed[0].shape))


def counts(model_cls, config, sizes, **kw):
    fake = types.SimpleNamespace(config=config)
    side = config.vision_config.image_size // config.vision_config.patch_size
    rows = []
    for hw in sizes:
        tiles = image_size_to_num_patches(hw, config.image_grid_pinpoints, config.vision_config.image_size)
        features = torch.zeros(tiles, side * side, 1)
        packed, _ = model_cls.pack_image_features(fake, [features], torch.tensor([hw]), image_newline=torch.zeros(1), **kw)
        rows.append({"image_size": list(hw), "tiles": tiles, "tokens": packed[0].shape[0]})
    return {"image_size": config.vision_config.image_size, "patch_size": config.vision_config.patch_size,
            "image_grid_pinpoints": config.image_grid_pinpoints, "cases": rows}


onevision_case("llava_onevision_384", (500, 700))
onevision_case("llava_onevision_384_max9", (1000, 2000))

SIZES = [(336, 336), (384, 384), (500, 700), (700, 500), (1000, 2000), (2000, 1000), (1080, 1920), (3024, 4032),
         (100, 3000), (3000, 100), (1, 1), (27, 1000), (767, 769), (2304, 2304), (5000, 5000), (224, 1344)]
next_config = LlavaNextConfig(vision_config={"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14})
table = {
    "llava_next_336_14": counts(LlavaNextModel, next_config, SIZES, vision_feature_select_strategy="default"),
    "llava_onevision_384_14": counts(LlavaOnevisionModel, onevision_config(), SIZES, vision_aspect_ratio="anyres_max_9"),
}
(ROOT / "tests/data/configs/anyres_token_counts.json").write_text(json.dumps(table, indent=1) + "\n")
print("wrote tests/data/configs/anyres_token_counts.json")
