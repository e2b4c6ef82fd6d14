#!/usr/bin/env python3
"""Makes what the browser peer run (scripts/web_peer.sh) loads, in OUT:

- `model/`: a LLaVA-1.5 model directory saved by transformers (`save_pretrained`), CLIP ViT-L/14
  at 336 px (width 1024, 16 heads, MLP 4096) cut to LAYERS encoder layers, feature layer -1,
  the real projector (1024 -> 4096 -> 4096, erf GELU) and a language model of no layers (its
  weights are never read); random weights from transformers' own initialisation, seed 0;
- `projector.onnx`: `model.multi_modal_projector` exported by torch's ONNX exporter,
  `image_features [1, 576, 1024] -> [1, 576, 4096]`;
- `vision.onnx`: `get_image_features` (CLIP tower, drop CLS, projector) exported the same way,
  `pixel_values [1, 3, 336, 336] -> [576, 4096]`;
- `inputs.safetensors` (`image_features`, `pixel_values`) and `torch.safetensors` (what torch
  computed from them, f32 on the CPU: `projector`, `vision`).

Needs torch, transformers, onnx, onnxscript and safetensors (scripts/web_peer.sh installs
them in a virtual environment). Usage: web_peer_export.py OUT [--layers N]
"""
import argparse
import pathlib

import torch
from safetensors.torch import save_file
from transformers import LlavaConfig, LlavaForConditionalGeneration


class ImageFeatures(torch.nn.Module):
    """LLaVA's vision path as one module: pixel_values to the LLM's image embeddings."""

    def __init__(self, llava):
        super().__init__()
        self.llava = llava

    def forward(self, pixel_values):
        return torch.cat(list(self.llava.get_image_features(pixel_values=pixel_values).pooler_output))


def export(module, example, name, out):
    # One self-contained file: the browser fetches it whole (no external data).
    program = torch.onnx.export(module, (example,), dynamo=True, input_names=[name], output_names=["out"],
                                optimize=True, external_data=False)
    program.save(str(out), external_data=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096,
                           num_attention_heads=16, num_hidden_layers=args.layers, image_size=336,
                           patch_size=14, projection_dim=768, hidden_act="quick_gelu"),
        text_config=dict(model_type="llama", hidden_size=4096, intermediate_size=16, num_attention_heads=32,
                         num_key_value_heads=1, num_hidden_layers=0, vocab_size=64, max_position_embeddings=64),
        vision_feature_layer=-1, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        image_token_index=63)
    torch.manual_seed(0)
    llava = LlavaForConditionalGeneration(config).eval()
    llava.save_pretrained(args.out / "model", max_shard_size="100MB")

    generator = torch.Generator().manual_seed(1)
    image_features = torch.randn(1, 576, 1024, generator=generator)
    pixel_values = torch.randn(1, 3, 336, 336, generator=generator)
    projector = llava.model.multi_modal_projector
    vision = ImageFeatures(llava).eval()
    with torch.no_grad():
        want = {"projector": projector(image_features), "vision": vision(pixel_values)}
        export(projector, image_features, "image_features", args.out / "projector.onnx")
        export(vision, pixel_values, "pixel_values", args.out / "vision.onnx")
    save_file({"image_features": image_features, "pixel_values": pixel_values}, args.out / "inputs.safetensors")
    save_file({k: v.contiguous() for k, v in want.items()}, args.out / "torch.safetensors")
    print(f"{args.out}: model/, projector.onnx, vision.onnx ({args.layers} CLIP layers), inputs, torch outputs")


if __name__ == "__main__":
    main()
