#!/usr/bin/env bash
# Real-size connector timings in headless Chromium (web/tests/bench.rs: the LLaVA-1.5 projector
# and BLIP-2's Q-Former, then two GEMMs under the heuristic's variant and each variant forced;
# GPU timestamps), then the same connector rows natively on this machine's Vulkan adapter
# (`vlbridge bench`), back to back. The lines starting with `bench` are the browser's;
# docs/benchmarks.md holds a run of both.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-900}"
echo "== headless Chromium (WebGPU)"
(cd "$root/web" && cargo test --release --test bench -- --include-ignored --nocapture 2>&1 | grep -E '^bench ')
echo "== native (vlbridge bench)"
cd "$root"
cargo run -q --release -p vlbridge-cli -- bench --backend vulkan --quick --filter '^(llava_projector|qformer)'
