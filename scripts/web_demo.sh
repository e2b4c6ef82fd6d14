#!/usr/bin/env bash
# Builds the demo page (web/demo: the crate for wasm32 in release, its JS bindings in
# web/demo/pkg) and, with --screenshot FILE, serves the repository, loads the page in headless
# Chromium (scripts/web_screenshot.py), waits for its result and saves what it shows. Without it, serve the repository root yourself
# (python3 -m http.server) and open http://localhost:8000/web/demo/ in a WebGPU browser.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out=""
if [ "${1:-}" = "--screenshot" ]; then
  out="$(realpath -m "${2:?--screenshot FILE}")"
fi
cd "$root/web"
cargo build --release --lib
wasm-bindgen --target web --no-typescript --out-dir demo/pkg target/wasm32-unknown-unknown/release/vlbridge_web.wasm
if [ -n "$out" ]; then
  port=8765
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$root" >/dev/null 2>&1 &
  server=$!
  trap 'kill $server' EXIT
  sleep 1
  # Through chromedriver: the page fetches, runs and reports in its title before the shot.
  python3 "$root/scripts/web_screenshot.py" "http://127.0.0.1:$port/web/demo/" "$out"
fi
