"""Writes tests/data/jpeg/: JPEG encodings of the shared photo (and an edge-heavy synthetic
image) that Pillow decodes with libjpeg-turbo, next to what Pillow makes of each as RGB
(`Image.open(f).convert("RGB")`, the way transformers' convert_rgb sees it) saved as PNG.
tests/preprocess.rs holds vlbridge's decoder (the `image` crate) to those.

    pip install pillow && python3 scripts/make_jpeg_cases.py
"""
import json
import pathlib

import PIL
from PIL import Image, ImageDraw, features

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "tests/data/jpeg"
out.mkdir(parents=True, exist_ok=True)
photo = Image.open(root / "tests/data/vision/llava/preprocess/photo.png").convert("RGB")

# Sharp edges and saturated colours: where chroma upsampling and IDCT rounding differ most.
synthetic = Image.new("RGB", (97, 61), (255, 255, 255))
draw = ImageDraw.Draw(synthetic)
for i in range(0, 97, 6):
    draw.line([(i, 0), (96 - i, 60)], fill=(255 * (i % 2), 40 + 2 * i, 255 - 2 * i), width=1)
draw.rectangle([10, 10, 40, 30], fill=(220, 20, 60))
draw.ellipse([50, 20, 90, 58], fill=(20, 60, 230))

cases = {
    # Pillow's default: quality 75, 4:2:0 chroma subsampling.
    "photo_q75_420": (photo, dict(quality=75)),
    "photo_q95_444": (photo, dict(quality=95, subsampling=0)),
    "photo_q50_422": (photo, dict(quality=50, subsampling=1)),
    "synthetic_q90_420": (synthetic, dict(quality=90)),
    "grey_q85": (photo.convert("L"), dict(quality=85)),
    # Adobe CMYK (Pillow writes it inverted with an APP14 marker, as Photoshop does).
    "cmyk_q90": (photo.convert("CMYK"), dict(quality=90)),
}
manifest = {"pillow": PIL.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"), "cases": {}}
for name, (image, options) in cases.items():
    path = out / f"{name}.jpg"
    image.save(path, "JPEG", **options)
    decoded = Image.open(path)
    mode = decoded.mode
    decoded.convert("RGB").save(out / f"{name}.pillow.png")
    manifest["cases"][name] = {"mode": mode, "size_wh": list(decoded.size), "save": options}
(out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(json.dumps(manifest, indent=2))
