#!/usr/bin/env bash
# vlbridge beside onnxruntime-web (transformers.js's runtime) in headless Chromium, on the same
# page, adapter and inputs: the LLaVA-1.5 projector and the CLIP ViT-L/14-336 vision path
# (2 layers at full width, then the projector).
#   1. a Python environment (target/peer-venv: torch, transformers, onnx, onnxscript) exports
#      the model directory, both ONNX files, the inputs and torch's outputs (web_peer_export.py)
#      into target/web-peer;
#   2. npm installs onnxruntime-web into web/peer (package.json pins it);
#   3. the demo's wasm bindings are built (web_demo.sh), the repository served, and the page
#      web/peer/ driven through chromedriver (web_screenshot.py).
# It writes docs/benchmarks/web_peer.{json,md,png}: the ratio table, the JSON behind it and the
# page. Run it again to remeasure; steps 1 and 2 are skipped when their outputs exist. Each row
# is the median of RUNS (default 2) alternating runs after one untimed run of each: on
# SwiftShader the vision row takes about a minute a run, the whole page about 15 minutes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/peer-venv"
data="$root/target/web-peer"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # The versions the committed table was made with.
  "$venv/bin/pip" install -q torch==2.15.0 transformers==5.25.0 onnx==1.23.2 onnxscript==0.7.2 safetensors==0.8.0
fi
[ -f "$data/vision.onnx" ] || "$venv/bin/python" "$root/scripts/web_peer_export.py" "$data"
(cd "$root/web/peer" && [ -d node_modules/onnxruntime-web ] || npm install --no-audit --no-fund)
bash "$root/scripts/web_demo.sh"
port=8766
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$root" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 1
out="$root/docs/benchmarks"
python3 "$root/scripts/web_screenshot.py" "http://127.0.0.1:$port/web/peer/?runs=${RUNS:-2}" "$out/web_peer.png" --timeout 2400 \
  --save json "$out/web_peer.json" --save markdown "$out/web_peer.md"
cat "$out/web_peer.md"
